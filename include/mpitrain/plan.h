/* mpitrain parallel plan: what every rank of a run does and owns.
 *
 * Built once from the config and the caller's communicator, before any
 * other collective of a run. The library never talks on the caller's
 * communicator: it duplicates it, and its copies return MPI errors
 * (MPI_ERRORS_RETURN) instead of aborting, so that a failure is agreed on
 * and reported (mt_dist_agree).
 *
 * With sync = allreduce or ring every rank is a data-parallel worker: it
 * holds the whole model and optimizer state, trains a share of every
 * batch and sums gradients with the others, so `dp` is the whole run.
 * With sync = ps the parameter arena is cut into shards, one per server;
 * a server owns its shard's parameters and optimizer state and applies
 * their update. Servers are colocated (every rank is a worker and a
 * server) or dedicated (the last `servers` ranks, which train nothing;
 * rank 0 is always a worker). With stages = P > 1 (a pipeline) the run
 * is a P x R grid: run rank = replica x P + stage, so that a replica's
 * stages are neighbours (one node, in block placement); `pipe` holds a
 * replica's stages, `dp` a stage's replicas, which sum that stage's
 * gradients (with ps, colocated: its replicas are its servers, each of a
 * shard of the stage's parameters, and talk over dp). A stage holds only
 * its layers (mt_model_keep_layers): it owns their parameters, running
 * statistics and optimizer slots (with ps, its shard's), checkpoints them
 * and writes them to weights.h5; evaluations go through the stages.
 * Everything else asks the plan instead of assuming one communicator. */
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
    MT_TAG_PS_GRAD = 20,    /* parameter server: a gradient piece */
    MT_TAG_PS_PARAMS = 21,  /* ...and a shard's updated parameters */
    MT_TAG_PS_HEAD = 22,    /* async: a push's rate, clip factor, step */
    MT_TAG_PS_FENCE = 23,   /* async: a worker at a meeting point */
    MT_TAG_PIPE_ACT = 30,   /* pipeline: a micro-batch's activations */
    MT_TAG_PIPE_GRAD = 31,  /* ...and their gradient, going back */
    MT_TAG_PIPE_EVAL = 32,  /* ...and an evaluation chunk's activations */
    MT_TAG_PIPE_WEIGHTS = 33, /* ...weights.h5 written: the next stage's turn */
    MT_TAG_RING = 77,       /* ring-allreduce segments */
    MT_TAG_JOURNAL = 90,    /* search: a leader's record or request */
    MT_TAG_SEARCH_JOB = 91  /* search: rank 0's answer, the next job */
};

/* Roles are bits: a colocated parameter-server rank has both. */
typedef enum mt_role {
    MT_ROLE_WORKER = 1, /* forward, backward, a share of every batch */
    MT_ROLE_SERVER = 2  /* owns a parameter shard and applies its update */
} mt_role;

typedef struct mt_plan {
    /* Every rank of the run: error agreement, the stop flag, checkpoints
     * (collective HDF5), the watchdog's roll call. */
    MPI_Comm run;
    int rank, size;
    /* The data-parallel group of workers: ranks that hold the same
     * layers and split each batch (samples, evaluation). Run ranks
     * 0 .. dp_size - 1. On a dedicated server dp is MPI_COMM_NULL and
     * dp_rank -1 (dp_size still counts the workers). */
    MPI_Comm dp;
    int dp_rank, dp_size;
    int role; /* mt_role bits */
    /* sync = ps: server i (0 .. n_servers - 1) is run rank
     * mt_plan_server_rank(p, i) (in a pipeline: rank i of dp, a replica
     * of this stage) and owns parameters [shard[i], shard[i + 1]) of the
     * arena (of the stage's range); n_servers 0 otherwise. */
    int n_servers;
    int server_index; /* this rank's, or -1 */
    size_t *shard;    /* (n_servers + 1), set by mt_plan_own */
    /* What this rank owns: layers [layer_lo, layer_hi) of the model and
     * parameters [param_lo, param_hi) of the flat arena, the part whose
     * update it applies and checkpoints: all of them for a data-parallel
     * worker, its shard for a server, none for a worker of a dedicated
     * parameter server. */
    size_t layer_lo, layer_hi;
    size_t param_lo, param_hi;
    /* 1: every rank owns the whole arena (allreduce, ring). */
    int replicated;
    /* The pipeline grid: stages 1, stage 0, replicas = dp_size and pipe
     * MPI_COMM_NULL without one. bounds (stages + 1): stage s holds
     * layers [bounds[s], bounds[s + 1]), set by mt_plan_own. */
    int stages, stage, replica;
    MPI_Comm pipe;
    size_t *bounds;
    /* Ranks that evaluate (the workers; in a pipeline the replicas, each
     * through its stages, which all hold the replica's share): this
     * rank's index among them, or -1, and their count. */
    int eval_rank, eval_size;
} mt_plan;

/* Builds the plan of `cfg` over comm (collective: duplicates comm).
 * Ownership of layers and parameters is set by mt_plan_own once the model
 * exists. MT_EINVAL (the same on every rank) if the config asks for more
 * dedicated servers than leave a worker, or for stages that do not divide
 * the rank count; MT_EIO if MPI fails.
 * mt_plan_free frees the communicators. */
int mt_plan_init(mt_plan *p, const mt_config *cfg, MPI_Comm comm,
                 char *err);
/* Sets what this rank owns of model m: with servers, the arena is cut
 * into n_servers balanced contiguous shards at row boundaries of its
 * tensors (a tensor's dims[0]), so that a shard's part of a tensor is a
 * row range, which the checkpoint writer writes as it is. In a pipeline
 * stage s owns layers [bounds[s], bounds[s + 1]) (bounds: stages + 1
 * ascending layer indices from 0 to m->n_layers, copied) and their
 * parameters. Local. MT_ENOMEM. */
int mt_plan_own(mt_plan *p, const mt_model *m, const size_t *bounds,
                char *err);
/* Run rank of server i (a pipeline's: its rank in dp). */
int mt_plan_server_rank(const mt_plan *p, int i);
/* Safe on a zeroed plan and twice. */
void mt_plan_free(mt_plan *p);

/* This rank's share [*lo, *hi) of n rows or samples: contiguous, uneven
 * splits differing by at most one row, over the workers (none for a
 * dedicated server); in a pipeline over the replicas, so that the stages
 * of a replica draw the same samples. */
void mt_plan_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi);
/* ... over the ranks that evaluate (eval_rank, eval_size). */
void mt_plan_eval_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi);

/* One line per rank kind for --dry-run: role, ranks, layers, parameter
 * shard and memory (parameters, gradients, optimizer slots, state and
 * activations for batch max_batch; in a pipeline for act_rows[s]
 * samples at stage s, NULL: max_batch). */
void mt_plan_describe(const mt_plan *p, const mt_model *m, size_t opt_slots,
                      const size_t *act_rows,
                      void (*emit)(const char *line, void *user),
                      void *user);

#endif
