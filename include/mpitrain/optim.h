/* mpitrain optimizers: one loop over a flat parameter buffer (or a slice
 * of it, as a parameter-server shard will be). Semantics follow PyTorch's
 * SGD, Adam and AdamW, so results can be compared with it. */
#ifndef MPITRAIN_OPTIM_H
#define MPITRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef enum mt_optim_kind { MT_OPT_SGD, MT_OPT_ADAM, MT_OPT_ADAMW } mt_optim_kind;

typedef struct mt_optim_cfg {
    mt_optim_kind kind;
    float lr;
    float momentum;     /* sgd */
    int nesterov;       /* sgd */
    float beta1, beta2; /* adam, adamw */
    float eps;          /* adam, adamw */
    float weight_decay; /* L2 added to the gradient (sgd, adam) or
                           decoupled (adamw) */
    float l1;           /* L1: l1 * sign(p) added to the gradient */
} mt_optim_cfg;

/* The penalties of one range [begin, end) of the parameter buffer, for
 * per-layer L1/L2 (a layer's weight_decay and l1 keys). */
typedef struct mt_penalty {
    size_t begin, end;
    float weight_decay, l1;
} mt_penalty;

typedef struct mt_optim {
    mt_optim_cfg cfg;
    /* The slots belong to parameters [base, base + n) of the model's
     * arena: all of them, or a parameter server's shard. */
    size_t base;
    size_t n;
    mt_penalty *pen; /* (n_pen) ranges in order covering [0, n); NULL:
                        cfg's penalties everywhere */
    size_t n_pen;
    float *m;   /* (n): momentum buffer, or Adam's first moment */
    float *v;   /* (n): Adam's second moment; NULL for sgd */
    uint64_t t; /* steps taken, for Adam's bias correction */
} mt_optim;

const char *mt_optim_name(mt_optim_kind k);
int mt_optim_from_name(const char *name); /* -1 if unknown */

/* Allocates the slots for n parameters (base 0). */
int mt_optim_init(mt_optim *o, const mt_optim_cfg *cfg, size_t n, char *err);
/* ... for the n parameters from arena position base on. */
int mt_optim_init_range(mt_optim *o, const mt_optim_cfg *cfg, size_t base,
                        size_t n, char *err);
void mt_optim_free(mt_optim *o);
/* The part [*lo, *hi) of the n values at arena position off (a tensor,
 * in its own positions) whose slots o holds; empty (*lo == *hi) if
 * none. */
void mt_optim_part(const mt_optim *o, size_t off, size_t n, size_t *lo,
                   size_t *hi);
/* Gives ranges of the arena their own penalties; the ranges must be in
 * order and not overlap, and are cut to [base, base + n). Parameters
 * outside them keep cfg's. */
int mt_optim_set_penalties(mt_optim *o, const mt_penalty *ranges, size_t n,
                           char *err);
/* One step over params[0..n) with gradients grads[0..n) and rate lr
 * (pointers to arena position base). */
void mt_optim_step(mt_optim *o, float *params, const float *grads, float lr);
/* The same step in parts: mt_optim_tick once (Adam's step count), then
 * mt_optim_step_range over parts [lo, hi) of the n positions (relative to
 * base) that together cover them once; the same floats as mt_optim_step. */
void mt_optim_tick(mt_optim *o);
void mt_optim_step_range(mt_optim *o, float *params, const float *grads,
                         float lr, size_t lo, size_t hi);

#endif
