/* mpitrain pipeline schedules: the order in which each stage of a
 * pipeline runs its micro-batches' passes, and what that order costs.
 *
 * A pipeline of P stages trains a global batch as M micro-batches. Stage
 * s runs, for each micro-batch i, a forward pass F (after stage s - 1's
 * F of i), and a backward pass after stage s + 1's (the last stage's
 * after its own F). The backward is one pass B (input and weight
 * gradients) for gpipe and 1f1b; zb splits it into B (the input gradient,
 * which the stage below waits for) and W (the weight gradient, which no
 * one waits for).
 *
 *   gpipe  every F, then every B: M micro-batches of activations held
 *   1f1b   P - s warm-up forwards, then one F one B (PipeDream-flush):
 *          at most P - s micro-batches held at stage s
 *   zb     B before F before W, so W passes fill the bubbles (after
 *          ZB-H1 of "Zero Bubble Pipeline Parallelism", Qi et al., ICLR
 *          2024): at most P - s micro-batches between F and B, and one
 *          more than that between F and W (a deferred W keeps the
 *          activations it needs): 0.35-0.69 of 1f1b's bubble
 *
 * Each stage's order is derived once by list scheduling on a model of the
 * passes' costs (a stage takes the first pass its policy prefers whose
 * inputs are ready), so the order is free of deadlock by construction;
 * the executor runs that order with real messages. The same simulation
 * gives the expected bubble: the stages' idle fraction of the makespan,
 * (P - 1) / (M + P - 1) for gpipe and 1f1b with uniform stages. */
#ifndef MPITRAIN_PIPELINE_H
#define MPITRAIN_PIPELINE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/loss.h"
#include "mpitrain/model.h"

typedef enum mt_pipe_schedule {
    MT_PIPE_GPIPE,
    MT_PIPE_1F1B,
    MT_PIPE_ZB
} mt_pipe_schedule;

typedef enum mt_pipe_pass {
    MT_PIPE_F, /* forward */
    MT_PIPE_B, /* backward: input gradient (zb), or all of it */
    MT_PIPE_W  /* zb: the weight gradient */
} mt_pipe_pass;

typedef struct mt_pipe_op {
    mt_pipe_pass pass;
    int micro;   /* micro-batch, 0 .. M - 1 */
    double start; /* in the cost model */
} mt_pipe_op;

/* The cost model: seconds of one micro-batch's F, B and W at each stage
 * (for gpipe and 1f1b a B costs b + w). */
typedef struct mt_pipe_costs {
    double f, b, w;
} mt_pipe_costs;

/* A schedule laid out: ops[s * ops_per_stage ...] is stage s's order. */
typedef struct mt_pipe_plan {
    mt_pipe_schedule schedule;
    int stages, micro;
    size_t ops_per_stage; /* 2M, or 3M for zb */
    mt_pipe_op *ops;
    double makespan;   /* in the cost model */
    double bubble;     /* idle fraction: 1 - busy / (stages x makespan) */
    int *peak_held;     /* (stages): most micro-batches between F and
                           their last pass (B, or W for zb) */
    int *peak_deferred; /* (stages) zb: most between B and W */
} mt_pipe_plan;

/* Lays out schedule `sch` for P >= 1 stages and M >= 1 micro-batches with
 * costs c per stage (c[s]; equal stages: the same values P times).
 * MT_EINVAL naming the value if P, M or a cost is out of range, MT_ENOMEM.
 * Free with mt_pipe_plan_free. */
int mt_pipe_plan_make(mt_pipe_plan *p, mt_pipe_schedule sch, int P, int M,
                      const mt_pipe_costs *c, char *err);
void mt_pipe_plan_free(mt_pipe_plan *p);

/* Stage s's order: ops_per_stage ops. */
const mt_pipe_op *mt_pipe_stage_ops(const mt_pipe_plan *p, int s);

/* Measures each layer of m on a batch of B <= m->max_batch samples of
 * whatever its activations hold (a training forward that leaves running
 * statistics alone, and a backward whose gradients are discarded):
 * costs[i] gets layer i's seconds, f its forward, b its input gradient
 * and w its weight gradient (0 for a layer that does not split); up to
 * the first layer with parameters, the backward training runs (no input
 * gradient there, nothing below it). The
 * best of three after a warm-up. Local; zeroes m's gradients, one layer
 * after another, handing their pages back (mt_model_release_grads).
 * forward_only (inference): the inference forward alone, b and w 0, no
 * gradient touched. */
void mt_pipe_profile(mt_model *m, size_t B, int forward_only,
                     mt_pipe_costs *costs);
/* Cuts layers 0 .. L - 1 with costs c into P contiguous stages of at
 * least one layer each, minimising the slowest stage (f + b + w):
 * bounds[0] = 0 < bounds[1] < ... < bounds[P] = L. Needs P <= L. */
void mt_pipe_split(const mt_pipe_costs *c, size_t L, int P, size_t *bounds);
/* Stage s's costs: the sums over its layers [bounds[s], bounds[s + 1]). */
void mt_pipe_stage_costs(const mt_pipe_costs *c, const size_t *bounds,
                         int P, mt_pipe_costs *out);

/* Names for config values and reports: "gpipe", "1f1b", "zb"; NULL-ended. */
extern const char *const mt_pipe_schedule_names[];

/* One rank's stage: layers [first, last) of model m (the one layout
 * every stage shares, holding only these layers: mt_model_keep_layers),
 * its neighbours in comm at rank stage - 1 and stage + 1. chunk: the
 * samples of an evaluation chunk (0: m->max_batch), the same on every
 * stage; the trainer's is a micro-batch's, so that evaluating touches
 * no more activation rows than training keeps. */
typedef struct mt_pipe_stage {
    mt_model *m;
    size_t first, last;
    int stage, stages;
    MPI_Comm comm;
    size_t chunk;
} mt_pipe_stage;

/* The batch of one step as the stages see it: G samples cut into the
 * plan's M micro-batches (micro-batch i: rows [i G / M, (i + 1) G / M),
 * so M need not divide G). x (G, in) is read by stage 0, labels (G) or
 * targets (G, K) by the last; ctx as for mt_model_forward, its sample0
 * the batch's first sample (dropout is keyed by sample). */
typedef struct mt_pipe_batch {
    const float *x;
    const int32_t *labels;
    const float *targets;
    size_t G;
    mt_loss_kind loss;
    mt_step_ctx ctx;
    const mt_loss_opts *loss_opts; /* class weights, focal; NULL: plain */
    float scale; /* the loss gradient's factor: 1 / the samples of the
                    whole optimizer step (0: 1 / G) */
    /* The last stage: called with each micro-batch's output (rows
     * [row0, row0 + rows) of the batch) after its first forward, for the
     * caller's counts (accuracy, non-finite outputs); may be NULL. */
    void (*on_output)(void *user, const float *out, size_t row0,
                      size_t rows);
    void *user;
} mt_pipe_batch;

/* A stage's buffers for steps of up to max_G samples, allocated once.
 * Stash (the stage keeps its micro-batches' activations in the model's
 * buffers, each micro-batch in a slot of rows from its F to its last
 * pass): the buffers' bases and the slots. Recompute: every
 * micro-batch's stage input, the outputs and input gradients until their
 * sends complete, and (zb) what W needs. */
typedef struct mt_pipe_work {
    size_t max_G, max_micro;
    int stash;
    float **act_base, **dact_base; /* stash: m->act[first .. last], dact */
    float **scratch_base; /* stash: the stage's layers' scratch */
    int *slot, *slot_busy; /* (max_micro): micro-batch i's slot; in use */
    int *slot_req;  /* (2 max_micro): a slot's pending sends in reqs, -1 */
    int slots_used; /* the last step's slots (M without a ring): the
                       activations held are slots_used micro-batches' */
    float *kept, *sent, *dsent;
    float **wx, **wdy; /* zb: (n_w) per layer of the stage, NULL for a
                          layer that does not split */
    size_t n_w;
    MPI_Request *reqs; /* (2 max_micro) */
    size_t bytes;      /* what the float buffers take */
} mt_pipe_work;

/* Stashes where it can: unless recompute, when max_G fits the model's
 * max_batch and every layer of the stage can run its backward from its
 * activations alone (stateless_backward or the split backward).
 * MT_ENOMEM (err says how much). Free with mt_pipe_work_free (safe on a
 * zeroed one). */
int mt_pipe_work_init(mt_pipe_work *w, const mt_pipe_stage *st,
                      mt_pipe_schedule sch, size_t max_G, size_t max_micro,
                      int recompute, char *err);
void mt_pipe_work_free(mt_pipe_work *w);
/* Samples of activations stage s, layers [a, b) of m, keeps at once in
 * steps of G samples in plan p's order (what mt_pipe_work_init and
 * mt_pipe_step will do): peak_held[s] micro-batches' slots where it
 * keeps them, one micro-batch's where it recomputes (plus its kept
 * inputs, mt_pipe_work.bytes). For --dry-run. */
size_t mt_pipe_activation_rows(const mt_pipe_plan *p, int s,
                               const mt_model *m, size_t a, size_t b,
                               size_t G, int recompute);

/* What a step cost one stage: seconds in all, seconds blocked on the
 * neighbours (receives, and the sends' completion at the end), and the
 * forwards recomputed. */
typedef struct mt_pipe_stats {
    double seconds, wait_s;
    size_t recomputed;
} mt_pipe_stats;

/* Runs stage st's passes of one step in plan p's order: gradients of the
 * mean loss over the G samples are added into the stage's layers' grads
 * (as one rank's whole-batch backward would), activations go to the next
 * stage and their gradients back (MPI_Isend; receives in the order's
 * turn). A stage that stashes keeps each micro-batch's activations in
 * its rows; otherwise a micro-batch's activations are recomputed from its
 * kept stage input before its backward unless they are still in place
 * (1f1b's last stage). zb's B computes only the input gradients of
 * layers that split their backward (dense, conv, maxpool, batch norm),
 * keeping what their W needs; W adds their parameter gradients; other
 * layers do all of theirs in B.
 * *loss_sum: the summed loss on the last stage, 0 elsewhere; stats (may
 * be NULL) what the step cost. w: mt_pipe_work_init's for this stage and
 * schedule, G <= its max_G and p->micro <= its max_micro. Collective
 * over the stages. MT_EINVAL (G out of range: the same on every stage
 * given the same G) or MT_EIO (err says which micro-batch). */
int mt_pipe_step(const mt_pipe_plan *p, const mt_pipe_stage *st,
                 mt_pipe_work *w, const mt_pipe_batch *b, double *loss_sum,
                 mt_pipe_stats *stats, char *err);

/* Forward only (evaluation) of B <= m->max_batch samples through the
 * stages, with the model's inference behaviour: stage 0 starts from
 * m->act[0], which the caller filled; the others receive their input from
 * the stage above (MPI_Recv), and all but the last send their output on
 * (MPI_Send). *out: the last stage's output, m->act[m->n_layers]; NULL
 * on the others. Every stage calls it with the same B, chunk after chunk.
 * MT_EIO naming the stages. */
int mt_pipe_forward(const mt_pipe_stage *st, size_t B, const float **out,
                    char *err);

#endif
