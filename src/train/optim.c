#include "mpitrain/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"

static const char *const names[] = {"sgd", "adam", "adamw", NULL};

const char *mt_optim_name(mt_optim_kind k)
{
    return (unsigned)k < 3 ? names[k] : NULL;
}

int mt_optim_from_name(const char *name)
{
    return mt_name_index(names, name);
}

int mt_optim_init(mt_optim *o, const mt_optim_cfg *cfg, size_t n, char *err)
{
    return mt_optim_init_range(o, cfg, 0, n, err);
}

int mt_optim_init_range(mt_optim *o, const mt_optim_cfg *cfg, size_t base,
                        size_t n, char *err)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->base = base;
    o->n = n;
    /* n may be 0 (a worker of dedicated servers owns no parameters). */
    o->m = mt_calloc(n + 1, sizeof(float));
    if (cfg->kind != MT_OPT_SGD)
        o->v = mt_calloc(n + 1, sizeof(float));
    if (!o->m || (cfg->kind != MT_OPT_SGD && !o->v)) {
        mt_optim_free(o);
        mt_seterr(err, "optimizer: out of memory for %zu slots", n);
        return MT_ENOMEM;
    }
    return MT_OK;
}

void mt_optim_free(mt_optim *o)
{
    mt_free(o->m);
    mt_free(o->v);
    mt_free(o->pen);
    o->pen = NULL;
    o->n_pen = 0;
}

void mt_optim_part(const mt_optim *o, size_t off, size_t n, size_t *lo,
                   size_t *hi)
{
    size_t end = o->base + o->n;
    *lo = o->base > off ? o->base - off : 0;
    *hi = end < off ? 0 : end - off < n ? end - off : n;
    *lo = *lo < *hi ? *lo : *hi;
}

int mt_optim_set_penalties(mt_optim *o, const mt_penalty *ranges, size_t n,
                           char *err)
{
    /* Fill the gaps with cfg's penalties so that the step walks one list
     * of ranges that covers the buffer. */
    mt_penalty *pen = mt_calloc(2 * n + 1, sizeof *pen);
    if (!pen) {
        mt_seterr(err, "optimizer: out of memory for penalties");
        return MT_ENOMEM;
    }
    size_t k = 0, at = 0, prev_end = 0, lo = o->base, hi = o->base + o->n;
    mt_penalty global = {0, 0, o->cfg.weight_decay, o->cfg.l1};
    for (size_t i = 0; i < n; i++) {
        if (ranges[i].begin < prev_end || ranges[i].end < ranges[i].begin) {
            mt_free(pen);
            mt_seterr(err, "optimizer: penalty range %zu [%zu, %zu) is out "
                           "of order",
                      i, ranges[i].begin, ranges[i].end);
            return MT_EINVAL;
        }
        prev_end = ranges[i].end;
        /* In slot positions, cut to the slots held. */
        mt_penalty r = ranges[i];
        r.begin = r.begin < lo ? 0 : r.begin > hi ? o->n : r.begin - lo;
        r.end = r.end < lo ? 0 : r.end > hi ? o->n : r.end - lo;
        if (r.end <= r.begin)
            continue;
        if (r.begin > at) {
            global.begin = at;
            global.end = r.begin;
            pen[k++] = global;
        }
        pen[k++] = r;
        at = r.end;
    }
    if (at < o->n) {
        global.begin = at;
        global.end = o->n;
        pen[k++] = global;
    }
    mt_free(o->pen);
    o->pen = pen;
    o->n_pen = k;
    return MT_OK;
}

/* The loops below are written so that the compiler vectorizes them:
 * restrict pointers, constants hoisted, no branch inside. */

/* The gradient with the penalties: L2 (unless decoupled) and L1, whose
 * subgradient at 0 is 0. */
static inline float penalized(float g, float p, float wd, float l1)
{
    float sign = (float)(p > 0.0f) - (float)(p < 0.0f);
    return g + wd * p + l1 * sign;
}

MT_VECTOR(static, sgd,
          (mt_optim *o, const mt_penalty *r, float *restrict p,
           const float *restrict g, float lr),
          (o, r, p, g, lr))
{
    float mu = o->cfg.momentum, wd = r->weight_decay, l1 = r->l1;
    float *restrict m = o->m + r->begin;
    size_t n = r->end - r->begin;
    p += r->begin;
    g += r->begin;
    if (mu == 0.0f) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * penalized(g[i], p[i], wd, l1);
    } else if (o->cfg.nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = penalized(g[i], p[i], wd, l1);
            m[i] = mu * m[i] + d;
            p[i] -= lr * (d + mu * m[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            m[i] = mu * m[i] + penalized(g[i], p[i], wd, l1);
            p[i] -= lr * m[i];
        }
    }
}

MT_VECTOR_256(static, adam,
          (mt_optim *o, const mt_penalty *r, float *restrict p,
           const float *restrict g, float lr),
          (o, r, p, g, lr))
{
    float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    float *restrict m = o->m + r->begin, *restrict v = o->v + r->begin;
    p += r->begin;
    g += r->begin;
    double t = (double)o->t;
    float inv_c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float inv_c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    /* Adam adds L2 to the gradient; AdamW shrinks the weights directly. */
    float wd_grad = o->cfg.kind == MT_OPT_ADAMW ? 0.0f : r->weight_decay;
    float shrink = o->cfg.kind == MT_OPT_ADAMW ? 1.0f - lr * r->weight_decay
                                               : 1.0f;
    float l1 = r->l1;
    for (size_t i = 0, n = r->end - r->begin; i < n; i++) {
        float d = penalized(g[i], p[i], wd_grad, l1);
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        p[i] = shrink * p[i] -
               lr * (m[i] * inv_c1) / (sqrtf(v[i] * inv_c2) + eps);
    }
}

void mt_optim_tick(mt_optim *o)
{
    o->t++;
}

void mt_optim_step_range(mt_optim *o, float *params, const float *grads,
                         float lr, size_t lo, size_t hi)
{
    mt_penalty all = {0, o->n, o->cfg.weight_decay, o->cfg.l1};
    const mt_penalty *r = o->n_pen ? o->pen : &all;
    for (size_t i = 0, n = o->n_pen ? o->n_pen : 1; i < n; i++) {
        mt_penalty part = r[i];
        part.begin = part.begin > lo ? part.begin : lo;
        part.end = part.end < hi ? part.end : hi;
        if (part.begin >= part.end)
            continue;
        if (o->cfg.kind == MT_OPT_SGD)
            sgd(o, &part, params, grads, lr);
        else
            adam(o, &part, params, grads, lr);
    }
}

void mt_optim_step(mt_optim *o, float *params, const float *grads, float lr)
{
    mt_optim_tick(o);
    mt_optim_step_range(o, params, grads, lr, 0, o->n);
}
