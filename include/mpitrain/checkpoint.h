/* mpitrain checkpoints: one HDF5 file per save, written collectively with
 * parallel HDF5, describing the logical model and training state (never
 * the rank layout), so any rank count can resume from it. Layout in
 * docs/checkpoint.md:
 *
 *   /                attrs format, format_version, mpitrain_version,
 *                    created, complete (written last)
 *   /config          the resolved INI text
 *   /model/<layer>/<tensor>            parameters and state, natural shape
 *   /optimizer/<layer>/<tensor>/<slot> momentum, or Adam's m and v
 *   /trainer         attrs step, epoch, position, seen, sums, optimizer_t,
 *                    ranks (informative)
 *   /metrics         the metrics log (JSON lines) up to this step
 *
 * Every dataset carries the Fletcher-32 checksum. A save goes to
 * DIR/ckpt-<step>.h5.partial, is closed and fsync'ed, renamed, and then
 * DIR/latest (a one-line text file naming it) is replaced the same way;
 * DIR/best names the best checkpoint by [checkpoint] best, which pruning
 * never deletes. */
#ifndef MPITRAIN_CHECKPOINT_H
#define MPITRAIN_CHECKPOINT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/model.h"
#include "mpitrain/optim.h"

#define MT_CKPT_FORMAT "mpitrain-checkpoint"
#define MT_CKPT_VERSION 1

/* Training state besides tensors. */
typedef struct mt_ckpt_state {
    uint64_t step;     /* optimizer steps taken */
    uint64_t epoch;    /* the epoch in progress (0-based) */
    uint64_t position; /* global samples of this epoch already trained */
    uint64_t seen;     /* samples trained in this epoch (for the summary) */
    double sums[3];    /* this epoch's loss sum, correct, "no accuracy" */
    double seconds;    /* training seconds so far */
    double best;       /* best value of [checkpoint] best so far, or NaN */
    /* Early stopping: best monitored value, epochs since, and (if kept)
     * the best weights, in the layout of the model's params and state
     * arenas (NULL: none). Saved as /early_stopping/<layer>/<tensor>. */
    double lr_scale, pl_best; /* reduce-on-plateau: factor so far, best */
    uint64_t pl_wait;
    double es_best;
    uint64_t es_wait, es_epoch;
    float *es_params, *es_state;
    int ranks;         /* rank count at save time (informative only) */
    /* Where the model is not replicated, the running statistics this
     * rank writes: arena [state_lo, state_hi) of m->state if state_own
     * (a pipeline stage's first replica: its layers'); without
     * state_own rank 0 writes them all (a parameter server's workers
     * all hold them). */
    int state_own;
    size_t state_lo, state_hi;
} mt_ckpt_state;

/* Collective over comm: writes DIR/ckpt-<step>.h5 atomically, updates
 * DIR/latest (and DIR/best if is_best), then deletes all but the newest
 * `keep` checkpoints and the best one. Where every rank holds the whole
 * model and optimizer (o covers the arena), ranks split the writing by
 * chunks; where o holds a shard ([o->base, o->base + o->n), a parameter
 * server's or a pipeline stage's, cut at tensor rows), each rank writes
 * the parameters and slots of its shard, and the running statistics
 * st->state_own says (or rank 0 all of them). metrics may be
 * NULL. Every rank returns the same rc; on failure the previous
 * checkpoints are untouched and no .partial file is left. */
int mt_ckpt_save(MPI_Comm comm, const char *dir, mt_model *m,
                 const mt_optim *o, const mt_ckpt_state *st,
                 const char *config_text, const char *metrics, size_t keep,
                 int is_best, char *err);

/* Finds the checkpoint to resume from: `which` is a file, or "auto" for
 * the newest complete one in dir that passes its checksums (older ones are
 * tried when the newest is damaged; each rejection is reported in `note`,
 * which may be NULL). *path is malloc'd. With "auto" and no checkpoint
 * at all, returns MT_OK and *path NULL (start fresh); MT_EIO if there are
 * checkpoints but none is usable. */
int mt_ckpt_find(const char *dir, const char *which, char **path,
                 char *note, size_t note_len, char *err);

/* Reads a checkpoint into a model of the same architecture and its
 * optimizer (the slots of o's range [o->base, o->base + o->n) only: any
 * checkpoint resumes with any sharding); *metrics and *config (malloc'd, may be NULL; either pointer
 * may be NULL when not wanted) get the metrics log and the resolved
 * configuration it was saved with. Errors
 * name the file and tensor: missing, shape mismatch (expected vs found),
 * incomplete, wrong format or version, checksum failure. */
int mt_ckpt_load(const char *path, mt_model *m, mt_optim *o,
                 mt_ckpt_state *st, char **metrics, char **config,
                 char *err);

/* Prints a summary of a checkpoint (step, epoch, config, every tensor with
 * shape, the last metrics); as one JSON object if json. */
int mt_ckpt_inspect(const char *path, int json, char *err);

#endif
