/* mpitrain parallel plan: what every rank of a run does and owns.
 *
 * Built once from the config and the caller's communicator, before any
 * other collective of a run. The library never talks on the caller's
 * communicator: it duplicates it, and its copies return MPI errors
 * (MPI_ERRORS_RETURN) instead of aborting, so that a failure is agreed on
 * and reported (mt_dist_agree).
 *
 * Today every rank is a data-parallel worker: it holds the whole model
 * and optimizer state, trains a share of every batch and sums gradients
 * with the others, so `dp` is the whole run. The parameter server (server
 * ranks owning parameter shards), pipeline stages (ranks owning layer
 * ranges, a stage x replica grid) and search trials (groups of ranks)
 * become roles, communicators and ownership ranges here, and everything
 * else asks the plan instead of assuming one communicator. */
#ifndef MPITRAIN_PLAN_H
#define MPITRAIN_PLAN_H

#include <mpi.h>
#include <stddef.h>

#include "mpitrain/config.h"
#include "mpitrain/model.h"

/* Tags of the library's point-to-point messages: one table, so that no two
 * uses of a communicator collide. */
enum {
    MT_TAG_PREDICT = 3,     /* predict: a rank's CSV rows to rank 0 */
    MT_TAG_CHAIN_GRADS = 5, /* deterministic chain: the partial gradient */
    MT_TAG_CHAIN_SUMS = 6,  /* ...and its loss sums */
    MT_TAG_RING = 77,       /* ring-allreduce segments */
    MT_TAG_JOURNAL = 90     /* search: a leader's journal record */
};

typedef enum mt_role {
    MT_ROLE_WORKER = 0 /* forward, backward, a share of every batch */
} mt_role;

typedef struct mt_plan {
    /* Every rank of the run: error agreement, the stop flag, checkpoints
     * (collective HDF5), the watchdog's roll call. */
    MPI_Comm run;
    int rank, size;
    /* The data-parallel group this rank belongs to: ranks that hold the
     * same layers, split each batch and sum their gradients; samples of
     * the data files are shared over it. */
    MPI_Comm dp;
    int dp_rank, dp_size;
    mt_role role;
    /* What this rank owns: layers [layer_lo, layer_hi) of the model and
     * parameters [param_lo, param_hi) of the flat arena, the part whose
     * update it applies and checkpoints (all of them, for a worker). */
    size_t layer_lo, layer_hi;
    size_t param_lo, param_hi;
} mt_plan;

/* Builds the plan of `cfg` over comm (collective: duplicates comm).
 * Ownership of layers and parameters is set by mt_plan_own once the model
 * exists. MT_EIO if MPI fails. mt_plan_free frees the communicators. */
int mt_plan_init(mt_plan *p, const mt_config *cfg, MPI_Comm comm,
                 char *err);
/* Sets what this rank owns of model m. Local. */
void mt_plan_own(mt_plan *p, const mt_model *m);
/* Safe on a zeroed plan and twice. */
void mt_plan_free(mt_plan *p);

/* This rank's share [*lo, *hi) of n rows of a data file: contiguous,
 * uneven splits differing by at most one row (over the dp group). */
void mt_plan_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi);

/* One line per rank kind for --dry-run: role, ranks, layers, parameter
 * shard and memory (parameters, gradients, optimizer slots, state and
 * activations for batch max_batch). */
void mt_plan_describe(const mt_plan *p, const mt_model *m, size_t opt_slots,
                      void (*emit)(const char *line, void *user),
                      void *user);

#endif
