/* mpitrain training and evaluation loops.
 *
 * Data parallel from the start: `batch` is the global batch, each rank of
 * the communicator takes a contiguous slice of every global batch, the
 * gradient of the mean loss over the global batch is summed across ranks
 * (DESIGN.md decision 4). With one rank this is plain training. */
#ifndef MPITRAIN_TRAIN_H
#define MPITRAIN_TRAIN_H

#include <mpi.h>
#include <signal.h>
#include <stddef.h>

#include "mpitrain/config.h"
#include "mpitrain/data.h"
#include "mpitrain/model.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/plan.h"

typedef struct mt_eval_result {
    double loss;     /* mean over samples */
    double accuracy; /* fraction correct; < 0 when the loss has none */
    size_t n;        /* samples evaluated */
} mt_eval_result;

typedef struct mt_train_result {
    mt_eval_result val, test; /* test.n == 0 if no test set */
    size_t steps;
    size_t epochs;        /* epochs done, over every session of the run */
    double seconds;       /* training time, without evaluation */
    double samples_per_s; /* training throughput over all ranks */
    double comm_wait_s;   /* rank 0's time blocked in gradient sync */
    int progress_thread;  /* 1: rank 0 had the progress thread */
    /* The last epoch's value of every metric a monitor can name
     * (mt_monitor_names), the same on every rank; NaN where the run has
     * none or trained no epoch in this session. */
    double last[MT_MONITORS];
} mt_train_result;

/* How a run starts and may be stopped. */
typedef struct mt_train_opts {
    const char *resume; /* NULL, "auto" (newest good checkpoint in the
                           checkpoint dir) or a checkpoint file */
    volatile sig_atomic_t *stop; /* set (by a signal handler) to ask all
                                    ranks to save and stop; may be NULL */
    uint64_t stop_after; /* > 0: behave as if stopped by a signal once this
                            many steps are done (tests, debugging) */
    /* > 0: end the run, as a finished one (evaluated, weights written, a
     * checkpoint left to resume from), once this many epochs are done;
     * schedules still span [train] epochs, so a run extended later (a
     * search promoting a trial) continues the same curve. */
    size_t until_epoch;
    int dry_run; /* read the data, build the model, find the checkpoint to
                    resume from and print the plan; train and write
                    nothing */
    /* Called on this rank after every step, if set: local work only, no
     * collective (the search's journal writer drains its messages). */
    void (*poll)(void *user);
    void *poll_user;
} mt_train_opts;

/* Trains as configured. Rank 0 prints progress and writes the run dir:
 * config.ini (resolved), metrics.jsonl, weights.h5, and checkpoints in
 * [checkpoint] dir. Every rank returns the same rc and message on error;
 * MT_ESTOPPED after a requested stop was saved. opts may be NULL. */
int mt_train(const mt_config *cfg, MPI_Comm comm, const mt_train_opts *opts,
             mt_train_result *res, char *err);

/* Builds the configured model for input shape `in`. */
int mt_model_from_config(const mt_config *cfg, mt_shape in, size_t max_batch,
                         mt_model *m, char *err);
/* The same without initial values (mt_model_build): a pipeline stage
 * sets its own layers' once it knows them (mt_model_init_params with the
 * config's seed). */
int mt_model_shape_from_config(const mt_config *cfg, mt_shape in,
                               size_t max_batch, mt_model *m, char *err);

/* Every rank of comm evaluates the samples it holds in ds (its share), in
 * chunks of the model's max_batch; loss sums and counts are summed over
 * the ranks, so the result is exact, not a mean of means. With pipe (NULL:
 * m is whole here) the rank is a pipeline stage and ds its replica's
 * share, the same on each of the replica's stages: the samples go through
 * the stages and the last one counts them. Collective.
 * MT_ENUMERIC on every rank, with the count of NaN and infinite outputs
 * in err, if any output was not finite (the caller names the split). */
int mt_evaluate(mt_model *m, const mt_pipe_stage *pipe, const mt_dataset *ds,
                MPI_Comm comm, mt_loss_kind loss, mt_eval_result *r,
                char *err);

/* Runs forward (evaluation mode) over the samples this rank holds in ds,
 * in chunks of the model's max_batch, and calls fn for each chunk with
 * its outputs (b, K), labels (b, or NULL) and targets (b, K), the chunk
 * starting at local sample `first`. Local with pipe NULL; with pipe
 * collective over the stages, and fn is called on the last stage only.
 * MT_ENOMEM if the chunk buffers cannot be had, MT_EIO if a stage's
 * message fails (err says which). */
typedef void (*mt_chunk_fn)(void *user, const float *out,
                            const int32_t *labels, const float *targets,
                            size_t b, size_t first);
int mt_forward_chunks(mt_model *m, const mt_pipe_stage *pipe,
                      const mt_dataset *ds, mt_chunk_fn fn, void *user,
                      char *err);
/* 1 if this rank gets the outputs of mt_forward_chunks (pipe NULL, or
 * the last stage). */
int mt_forward_counts(const mt_pipe_stage *pipe);

/* Everything `mpitrain eval` reports for a classifier, exact over the
 * ranks: the confusion matrix is summed, and the scores are gathered to
 * rank 0 for the exact AUC. Only rank 0's auc and top-k are set. */
typedef struct mt_eval_detail {
    mt_eval_result basic;
    size_t K;          /* classes (2 for a single sigmoid output) */
    uint64_t *cm;      /* (K, K), row = label, column = prediction */
    double perplexity; /* exp(mean cross-entropy); NaN for other losses */
    double auc;        /* binary, or one-vs-rest macro; NaN if undefined */
    size_t auc_undefined; /* classes left out of the macro AUC */
    double top5;       /* top-5 accuracy, NaN when K <= 5 */
    double mse, mae, r2; /* regression (loss = mse); NaN otherwise */
} mt_eval_detail;

/* mt_evaluate plus the detail above; labels are needed (softmax_ce or
 * sigmoid_bce with one output). Collective. */
int mt_evaluate_detail(mt_model *m, const mt_pipe_stage *pipe,
                       const mt_dataset *ds, MPI_Comm comm,
                       mt_loss_kind loss, mt_eval_detail *d, char *err);
void mt_eval_detail_free(mt_eval_detail *d);
/* The same for an ensemble of n models of one architecture (n = 1: one
 * model): their probabilities averaged (softmax_ce, sigmoid_bce; for
 * other losses their outputs), evaluated as one model's. pipes: NULL
 * (each member whole here), or n stages of one grid (pipes[j].m is
 * members + j), each chunk going through member after member.
 * Collective. */
int mt_evaluate_ensemble(mt_model *members, const mt_pipe_stage *pipes,
                         size_t n, const mt_dataset *ds, MPI_Comm comm,
                         mt_loss_kind loss, mt_eval_detail *d, char *err);

/* Permutation importance (Breiman; scikit-learn's permutation_importance
 * with accuracy as the score): for each group of input features, the
 * accuracy lost when that group's values are shuffled across the first n
 * samples of ds (ds needs int labels). Groups are g x g pixel blocks
 * (all channels) for images, runs of g features for flat inputs;
 * *n_groups and the grid (*rows x *cols, for a heat map) are set, and
 * importance (malloc'd, *n_groups values) is returned in *out. Local with
 * pipe NULL (one process computes it); with pipe collective over the
 * stages of one replica, each holding the whole of ds, and every stage
 * gets the results. */
int mt_permutation_importance(mt_model *m, const mt_pipe_stage *pipe,
                              const mt_dataset *ds, size_t n, size_t g,
                              uint64_t seed, double **out, size_t *n_groups,
                              size_t *rows, size_t *cols, double *baseline,
                              char *err);

/* Inference through the stages of a pipeline (eval, predict, explain):
 * with plan (mt_plan_init of cfg) a grid of stages, cuts model m (built
 * without values, mt_model_shape_from_config) at [parallel] split or by
 * its layers' measured forward times, so that this rank keeps only its
 * stage's layers (mt_model_keep_layers), and sets *st. The caller loads
 * the weights (mt_weights_load reads only the layers held). Collective
 * over plan->run; every rank returns the same rc. */
int mt_pipe_infer_cut(const mt_config *cfg, mt_plan *plan, mt_model *m,
                      mt_pipe_stage *st, char *err);

/* Correct predictions among B outputs (argmax for several outputs, the
 * sign of the logit for one), or -1 when the loss has no accuracy. */
long mt_count_correct(mt_loss_kind loss, const float *out,
                      const int32_t *labels, const float *targets, size_t B,
                      size_t K);

#endif
