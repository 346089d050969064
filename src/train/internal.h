/* Private to src/train: the trainer's state, shared by trainer.c (set-up,
 * epochs, evaluation, output) and step.c (one optimizer step). */
#ifndef MPITRAIN_TRAIN_INTERNAL_H
#define MPITRAIN_TRAIN_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/io.h"
#include "mpitrain/model.h"
#include "mpitrain/optim.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/plan.h"
#include "mpitrain/schedule.h"
#include "mpitrain/sync.h"
#include "mpitrain/train.h"

/* A step's sums, reduced over the ranks: loss sum, correct count, "no
 * accuracy" flag, NaN outputs, infinite outputs. */
#define MT__STEP_SUMS 5

typedef struct trainer {
    const mt_config *cfg;
    mt_plan plan;  /* roles, communicators, what this rank owns */
    MPI_Comm comm; /* plan.run (every rank is a data-parallel worker; the
                      parameter server and pipeline split it) */
    int rank, size;
    /* Each rank reads only its share of the files (DESIGN.md): */
    mt_dataset shard; /* this rank's rows of the training file */
    mt_dataset win[2]; /* samples of a window of steps, in order, fetched
                          from their owners: the one in use, win[cur], and
                          the next, on its way while win[cur] trains */
    int cur;
    mt_fetch *prefetch; /* the next window's fetch in flight, or NULL */
    mt_dataset val;   /* this rank's part of the validation split */
    mt_dataset test;  /* this rank's rows of the test file */
    mt_model model;
    mt_optim optim;
    mt_schedule sched;
    mt_sync sync;
    char hook_err[MT_ERR_LEN]; /* an error from a backward hook */
    int defer_rc; /* the step's first error applying a deferred bucket */
    float lr; /* the rate of the latest step */
    size_t K;           /* model outputs */
    size_t *order;      /* (n_train + n_val): shuffled positions; the last
                           n_val are the validation split */
    size_t n_train, n_val;
    mt_sampler sampler; /* which training positions an epoch visits */
    size_t *epoch_perm; /* (sampler.n_epoch): this epoch's file rows */
    size_t *need;       /* (sampler.n_epoch): rows this rank needs */
    size_t *step_first; /* (steps + 1): where each step's rows start in
                           need */
    size_t sample_bytes; /* a training sample as stored and fetched */
    size_t win_steps;   /* steps whose rows one fetch brings ([data]
                           fetch_mb) */
    size_t win_lo;      /* need[win_lo, ...) are in `epoch` */
    size_t win_end;     /* the step that needs the next fetch */
    size_t cursor;      /* next unused entry of need */
    size_t epoch_now;   /* the epoch being trained (augmentation key) */
    float *aug_tmp;     /* (sample size) scratch for augmentation */
    size_t *batch_idx;  /* (max_batch): indices into `epoch` */
    float *class_w;      /* ([train] class_weights) per class, or NULL */
    /* Early stopping ([train] monitor) */
    double es_best;      /* best monitored value, NaN before the first */
    uint64_t es_wait;    /* epochs since it improved */
    uint64_t es_epoch;   /* epoch (1-based) of the best value */
    float *es_params;    /* (n_params) the best weights, if restore_best */
    float *es_state;     /* (n_state) their running statistics */
    int early_stopped;
    double last_v[MT_MONITORS]; /* the last epoch's values (broadcast) */
    int monitors_checked; /* mt__check_monitors ran (first epoch) */
    /* Reduce-on-plateau ([optimizer] plateau_*) */
    double lr_scale;     /* product of the reductions so far */
    double pl_best;
    uint64_t pl_wait;
    /* ps_mode = async (lagged.c): agreements in flight, oldest first */
    double lag_local[MT__STEP_SUMS]; /* this step's own sums */
    double *lag_vec;        /* (lag_cap, sums + flags) */
    MPI_Request *lag_req;   /* (lag_cap) */
    uint64_t *lag_step;     /* (lag_cap) the step of each */
    size_t lag_head, lag_count, lag_cap;
    int lag_stop;           /* a drain found a stop request */
    /* Benchmarks only (MPITRAIN_BENCH_SLOW=RANK:FACTOR[:P], RANK a run
     * rank or "all"): this rank's steps take FACTOR times as long, each
     * with probability P (1 by default): a slow or a jittery worker.
     * slow_factor 0: off. */
    double slow_factor, slow_p;
    float *group_grads;  /* deterministic: (groups, n_params) */
    double *group_sums;  /* deterministic: (groups, MT__STEP_SUMS) */
    int32_t *labels;    /* (max_batch) */
    float *targets;     /* (max_batch, K) */
    char *config_text;  /* resolved INI, for weights.h5 and config.ini */
    /* Where training stands (saved in checkpoints). */
    uint64_t step;       /* optimizer steps taken */
    size_t resume_pos;   /* global position to start the current epoch at */
    double ep_sums[3];   /* this epoch: loss sum, correct, no-accuracy */
    size_t ep_seen;      /* this epoch: samples trained */
    double train_secs;   /* time in training steps, all sessions */
    size_t run_samples;  /* samples trained in this session */
    /* Checkpoints */
    const mt_train_opts *opts;
    char ckpt_dir[MT_PATH_LEN + 16];
    uint64_t saved_step; /* step of the last checkpoint, or UINT64_MAX */
    double last_save;    /* MPI_Wtime of the last checkpoint */
    double best;         /* best validation value by [checkpoint] best */
    mt_metrics_log log;
    mt_progress_out progress;
    double t0;
    uint64_t session_step0; /* t->step when this session's training began */
    double session_t0;      /* and MPI_Wtime then (for the ETA) */
    /* [parallel] stages > 1 (pipe_step.c) */
    mt_pipe_plan pipe_plan;  /* the schedule, micro_batches of a step */
    /* ...of a short step's n < micro samples (n micro-batches of one):
     * pipe_short[n - 1], made with the rest, so no step allocates. */
    mt_pipe_plan *pipe_short;
    mt_pipe_stage pipe_stage;
    mt_pipe_work pipe_work;
    float *pipe_x; /* (replica rows, input size) a step's inputs */
} trainer;

/* Loss and accuracy sums of an evaluation, added chunk by chunk (one
 * forward pass serves them and the detailed metrics), then reduced. */
typedef struct mt__eval_sums {
    mt_loss_kind loss;
    size_t K;
    /* [0] loss, [1] correct, [2] samples, [3] 1 while accuracy exists,
     * [4] NaN outputs, [5] infinite outputs */
    double v[6];
} mt__eval_sums;

/* The sums before the first chunk. */
#define MT__EVAL_SUMS(loss, K) {(loss), (K), {0, 0, 0, 1, 0, 0}}

/* mt_forward_chunks for n models of one architecture (an ensemble's
 * members): each chunk goes through every member, here (pipes NULL) or
 * through its stages (pipes: n stages of one grid, pipes[j].m the
 * member's), and fn gets their n outputs. */
typedef void (*mt__members_fn)(void *user, const float *const *outs,
                               size_t n, const int32_t *labels,
                               const float *targets, size_t b,
                               size_t first);
/* Samples of an evaluation chunk: m->max_batch, or the stage's chunk. */
size_t mt__chunk_rows(const mt_model *m, const mt_pipe_stage *pipe);
/* One chunk of b samples forward: here (pipe NULL), or through the
 * stages (*out NULL on all but the last). */
int mt__forward_one(mt_model *m, const mt_pipe_stage *pipe, size_t b,
                    const float **out, char *err);
int mt__forward_members(mt_model *members, const mt_pipe_stage *pipes,
                        size_t n, const mt_dataset *ds, mt__members_fn fn,
                        void *user, char *err);

void mt__eval_sums_add(mt__eval_sums *e, const float *out,
                       const int32_t *labels, const float *targets,
                       size_t b);
/* Adds the NaN and the infinite values of v[0..n) to *nan and *inf. */
void mt__count_nonfinite(const float *v, size_t n, double *nan, double *inf);

/* sums[1 .. 4] (MT__STEP_SUMS) of B outputs: correct count, "no
 * accuracy" flag, NaN and infinite values. */
void mt__output_sums(const trainer *t, const float *out,
                     const int32_t *labels, const float *targets, size_t B,
                     double sums[MT__STEP_SUMS]);

/* Reads MPITRAIN_BENCH_SLOW into t->slow_factor and slow_p. */
void mt__slow_knob(trainer *t);

/* Sums over the ranks into r. Collective; call after agreeing. Every rank
 * returns MT_ENUMERIC, saying how many outputs were NaN or infinite, if
 * any rank's were: no metric is computed from such outputs. */
int mt__eval_sums_reduce(MPI_Comm comm, mt__eval_sums *e, mt_eval_result *r,
                         char *err);

/* Optimizer steps in an epoch: each takes `accumulate` micro-batches of
 * `batch` samples, the last one what is left. */
static inline size_t mt__steps_per_epoch(const trainer *t)
{
    size_t span = t->cfg->batch * t->cfg->accumulate;
    return (t->sampler.n_epoch + span - 1) / span;
}

/* Samples [*lo, *hi) of a global batch of G that this rank computes: an
 * even share, or in deterministic mode whole groups of [parallel] group
 * samples. */
void mt__batch_slice(const trainer *t, size_t G, size_t *lo, size_t *hi);

/* MT_ENUMERIC naming the epoch and step if a step's (reduced) sums show
 * non-finite outputs or loss: the run diverged. */
int mt__step_diverged(const trainer *t, uint64_t step,
                      const double sums[MT__STEP_SUMS], char *err);

/* The next B samples of the epoch from t->cursor into x (B, input;
 * NULL: not wanted) and t->labels or t->targets, augmented; 1 if the
 * data has labels. */
int mt__gather_batch(trainer *t, size_t B, float *x);
/* 0 on a pipeline's stages after the first, which never read inputs:
 * they fetch labels (or targets) alone. */
int mt__reads_inputs(const trainer *t);

/* pipe_step.c: stage boundaries (measured or [parallel] split),
 * mt_plan_own, the schedule and buffers; collective (the profile's
 * mean). Freed by mt__pipe_free (safe when never set up). */
int mt__pipe_setup(trainer *t, char *err);
/* Stage boundaries (c->stages + 1 of them, into b) from [parallel] split
 * (layer numbers as the model summary shows them), or cut by the L
 * layers' costs; MT_EINVAL naming the config when a stage would be
 * empty. pipe_infer.c. */
int mt__stage_bounds(const mt_config *c, const mt_pipe_costs *cost, size_t L,
                     size_t *b, char *err);
void mt__pipe_free(trainer *t);
/* A pipeline's weights.h5: each stage's first replica writes its layers
 * in turn (mt_weights_save_part). Collective; the same rc everywhere. */
int mt__pipe_save_weights(trainer *t, const char *path, char *err);
/* The stage evaluations go through, NULL without a pipeline. */
const mt_pipe_stage *mt__eval_pipe(const trainer *t);
/* Rank 0's dry-run line: schedule, micro-batches, expected bubble. */
void mt__pipe_describe(const trainer *t);
/* Samples of activations each stage keeps at once (mt_plan_describe's
 * act_rows), malloc'd, or NULL. */
size_t *mt__pipe_act_rows(const trainer *t);
/* One optimizer step through the stages, into local (MT__STEP_SUMS,
 * reduced over the run like the other steps'). */
int mt__step_pipeline(trainer *t, uint64_t step, size_t g0, size_t G,
                      double local[MT__STEP_SUMS], char *err);

/* One optimizer step over global batch positions [g0, g0 + G) of this
 * epoch: this rank's slice is the next samples of the window from
 * t->cursor. Adds the global loss sum, correct count and "no accuracy"
 * flag to sums. Every rank returns the same rc. */
int mt__train_step(trainer *t, uint64_t step, size_t g0, size_t G,
                   double sums[3], char *err);

/* Parses or computes ([train] class_weights = auto) the class weights.
 * Collective (auto counts labels over the ranks). */
int mt__class_weights(trainer *t, char *err);

/* [train] sampling: the sampler (collective: gathers the labels of the
 * training split when it resamples) and the epoch's index buffers. */
int mt__sampler_setup(trainer *t, char *err);

/* Early stopping: buffers at set-up; after each epoch's evaluation
 * (returns 1 when training should stop); the best weights put back. */
int mt__es_init(trainer *t, char *err);
int mt__es_after_epoch(trainer *t, size_t epoch, const double v[MT_MONITORS]);
void mt__es_restore(trainer *t);
/* Reduce-on-plateau after an epoch's evaluation. */
void mt__plateau_after_epoch(trainer *t, const double v[MT_MONITORS]);
/* MT_EINVAL naming the key when a watched metric has no value (NaN) in
 * the first epoch's v. */
int mt__check_monitors(const trainer *t, const double v[MT_MONITORS],
                       char *err);
/* Every metric a monitor can name, by mt_monitor, from this epoch's
 * training sums and validation detail; NaN where the run has none. */
void mt__epoch_values(const double sums[3], size_t seen,
                      const mt_eval_detail *vd, double v[MT_MONITORS]);

/* report.c, rank 0's output. Accuracy of epoch sums, or -1 without. */
double mt__acc_of(const double sums[3], size_t n);
/* The metrics beyond loss and accuracy, as JSON members for the metrics
 * log, from the values mt__epoch_values derived from d. */
void mt__detail_json(const mt_eval_detail *d, const double v[MT_MONITORS],
                     char *buf, size_t len);
/* The epoch's records in metrics.jsonl and, on rank 0, its line. */
void mt__report_epoch(trainer *t, size_t epoch, uint64_t step,
                      const double sums[3], size_t n, double secs,
                      const mt_eval_detail *vd, const double v[MT_MONITORS]);
/* Rank 0's banner before training (and the plan of a dry run). */
void mt__print_plan(const trainer *t, size_t epoch);

/* window.c: the epoch's order and this rank's rows of every step, from
 * global position skip_to on (a resumed epoch). */
void mt__prepare_epoch(trainer *t, size_t epoch, size_t skip_to);
/* At the first step s of a window: its rows fetched (or prefetched), the
 * next window's fetch started. Collective. */
int mt__fetch_window(trainer *t, size_t s, size_t steps, char *err);
/* Completes a prefetch left in flight when an epoch ends early.
 * Collective. */
void mt__drop_prefetch(trainer *t);

/* A numeric failure (rc MT_ENUMERIC; others pass through) says where it
 * happened: "epoch E, step S: <what> <err>; the run diverged". what names
 * the split ("validation") or the object ("checkpoint not written:"). */
int mt__numeric_where(int rc, const char *what, size_t epoch,
                      uint64_t step, char *err);

/* lagged.c: ps_mode = async. Buffers (none in lockstep modes); after a
 * step: its sums and flags sent, the agreement of `staleness` steps ago
 * completed and acted on (diverged, save due, stop: MT_ESTOPPED after
 * saving); a meeting point (fence, every agreement completed; a no-op in
 * lockstep modes) before evaluation and checkpoints. Collective. */
int mt__lag_init(trainer *t, char *err);
void mt__lag_free(trainer *t);
int mt__lag_after_step(trainer *t, size_t epoch, uint64_t position,
                       char *err);
int mt__lag_drain(trainer *t, char *err);
int mt__lag_meet(trainer *t, char *err);

/* Checkpoint of the current state: epoch `epoch`, `position` global
 * samples into it. Collective. */
int mt__save(trainer *t, size_t epoch, uint64_t position, int is_best,
             char *err);
/* After an epoch's evaluation: saves a checkpoint marked best when the
 * [checkpoint] best metric improved. Collective. */
int mt__after_epoch(trainer *t, size_t epoch, const double v[MT_MONITORS],
                    char *err);
/* This rank's view after a step, before any agreement: flags[0] a stop
 * was asked (signal or opts->stop_after), flags[1] rank 0's clock says a
 * checkpoint is due ([checkpoint] every_minutes). */
void mt__step_flags(const trainer *t, int flags[2]);
/* After a step: every rank agrees on a pending stop request and on rank
 * 0's clock, and saves when a checkpoint is due. MT_ESTOPPED after saving
 * for a stop request. Collective. */
int mt__after_step(trainer *t, size_t epoch, uint64_t position, char *err);
/* MT_ESTOPPED with "stopped on request at step S; resume with --resume
 * auto", once the stop's checkpoint is saved. */
int mt__stopped(const trainer *t, char *err);
/* Restores model, optimizer and position from opts->resume; returns the
 * epoch to continue with in *epoch. Collective. */
int mt__resume(trainer *t, size_t *epoch, char *err);

#endif
