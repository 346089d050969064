/* mpitrain gradient synchronisation (DESIGN.md decision 5).
 *
 * The ring: our own allreduce (sum) over MPI point-to-point, as a state
 * machine so that it can run while backward is still computing. With P
 * ranks the buffer is cut into P blocks; P - 1 reduce-scatter steps leave
 * rank r with the sum of block (r + 1) mod P, and P - 1 all-gather steps
 * pass the sums around. Each block travels in segments, so that a large
 * buffer streams: segment k is added while k + 1 is on the wire.
 *
 * Worked example, P = 3, blocks A B C, rank r sends right and receives
 * from the left; a digit is a rank whose contribution is included:
 *
 *   start           r0: A0 B0 C0   r1: A1 B1 C1   r2: A2 B2 C2
 *   reduce step 0   r0 gets C2 -> C02   r1 gets A0 -> A01   r2 gets B1 -> B12
 *   reduce step 1   r0 gets B12 -> B012  r1 gets C02 -> C012  r2 gets A01 -> A012
 *   gather step 0   r0 gets A012  r1 gets B012  r2 gets C012
 *   gather step 1   every rank has A012 B012 C012
 *
 * The two halves also run alone (mt_ring_start_phase): with
 * [parallel] shard_optimizer each rank steps only the block it holds
 * summed after the reduce-scatter and the all-gather passes the updated
 * parameters around instead of the gradients (ZeRO stage 1: Rajbhandari
 * et al., SC 2020).
 *
 * The sync object groups the gradient arena into buckets in reverse layer
 * order and starts each bucket's reduction as soon as backward has passed
 * its layers (MPI_Iallreduce for sync = allreduce, the ring for
 * sync = ring), or all at the end when overlap is off. */
#ifndef MPITRAIN_SYNC_H
#define MPITRAIN_SYNC_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/model.h"
#include "mpitrain/optim.h"
#include "mpitrain/plan.h"

typedef enum mt_sync_kind {
    MT_SYNC_ALLREDUCE,
    MT_SYNC_RING,
    MT_SYNC_PS /* parameter server: src/parallel/sync_ps.c */
} mt_sync_kind;
typedef enum mt_compress { MT_COMPRESS_NONE, MT_COMPRESS_BF16 } mt_compress;
/* What a ring operation does: both halves (a sum on every rank), the
 * reduce-scatter alone (each rank left with its block's sum:
 * mt_ring_owned), or the all-gather alone (each rank's block passed to
 * every rank, in float32 even with compression: it carries parameters). */
typedef enum mt_ring_phase {
    MT_RING_ALLREDUCE,
    MT_RING_SCATTER,
    MT_RING_GATHER
} mt_ring_phase;

/* One ring allreduce in flight. */
typedef struct mt_ring {
    MPI_Comm comm;
    int rank, size, tag;
    mt_compress compress;
    size_t seg;         /* elements per segment */
    size_t cap;         /* largest block this ring was sized for */
    float *tmp;         /* (cap): received values */
    uint16_t *send16;   /* (cap): bf16 payload out, if compressing */
    uint16_t *recv16;   /* (cap): bf16 payload in, if compressing */
    /* the operation in flight */
    float *buf;
    size_t n;
    int step;           /* first .. last; == last when done */
    int first, last;    /* 0 .. 2 (P - 1): the steps of the phase */
    int wire16;         /* this operation sends bf16 */
    int posted;         /* requests of this step are posted */
    size_t nseg, next;  /* segments this step, next one to reduce */
    MPI_Request *req;   /* (1 + max segments): send, then receives */
    size_t max_seg;
    size_t small_n;     /* buffers of fewer floats go to MPI_Iallreduce */
    int small_on;       /* the operation in flight is such a one */
    MPI_Request small_req;
} mt_ring;

/* Sizes the ring for buffers of up to max_n floats. seg_bytes is the
 * pipelining segment (e.g. 256 KiB). */
int mt_ring_init(mt_ring *r, MPI_Comm comm, size_t max_n, size_t seg_bytes,
                 mt_compress compress, int tag, char *err);
void mt_ring_free(mt_ring *r);
/* From 3 ranks on, buffers of fewer than n floats are handed to MPI
 * (MPI_Iallreduce when started, MPI_Allreduce in mt_ring_allreduce):
 * there the ring's 2 (P - 1) latency steps lose to MPI's tree
 * algorithms. They are summed in float32 even with bf16 compression.
 * 0 (the default after init): the ring for every size. */
void mt_ring_set_small(mt_ring *r, size_t n);
/* Starts summing buf[0..n) over the ranks, n <= max_n. */
int mt_ring_start(mt_ring *r, float *buf, size_t n, char *err);
/* The same for one phase. A buffer handed to MPI (small) is summed whole
 * by MT_RING_SCATTER and left alone by MT_RING_GATHER: every rank owns
 * it. */
int mt_ring_start_phase(mt_ring *r, float *buf, size_t n, mt_ring_phase ph,
                        char *err);
/* [*lo, *hi): the part of an n-float buffer this rank holds summed after
 * MT_RING_SCATTER, and sends in MT_RING_GATHER (all of it if small). The
 * part of rank `rank`, for any rank; *whole is set if every rank holds
 * all of it. */
void mt_ring_owned(const mt_ring *r, size_t n, int rank, size_t *lo,
                   size_t *hi, int *whole);
/* Advances without blocking; *done becomes 1 when the sum is complete. */
int mt_ring_test(mt_ring *r, int *done, char *err);
/* Blocks until the sum is complete. */
int mt_ring_wait(mt_ring *r, char *err);
/* Blocking convenience: start + wait. */
int mt_ring_allreduce(mt_ring *r, float *buf, size_t n, char *err);

/* [parallel] progress_thread: whether a thread keeps the buckets'
 * reductions moving while backward computes (sync_progress.c). */
typedef enum mt_progress_mode {
    MT_PROGRESS_THREAD_OFF, /* progress only where backward ends a layer */
    MT_PROGRESS_THREAD_ON   /* needs MPI_THREAD_SERIALIZED (an error) */
} mt_progress_mode;

/* [parallel] shared_memory (sync_shm.c): off; on (an error where it
 * cannot be: nodes of unequal rank counts); auto (on where every node
 * holds the same number of ranks, more than one; sync alone elsewhere). */
typedef enum mt_shm_mode { MT_SHM_OFF, MT_SHM_ON, MT_SHM_AUTO } mt_shm_mode;

/* How gradients are synchronised ([parallel] in the config). */
typedef struct mt_sync_cfg {
    mt_sync_kind kind;
    size_t bucket_bytes; /* gradient bytes per bucket */
    int overlap;         /* 1: reduce buckets during backward */
    int ps_async;        /* ps: stale-synchronous (ps_async.c) */
    size_t staleness;    /* ps async: steps ahead of the slowest */
    mt_compress compress; /* ring only */
    size_t segment_bytes; /* ring pipelining segment */
    size_t ring_min_bytes; /* smaller buffers: MPI_Iallreduce, not the ring */
    mt_progress_mode progress_thread;
    int defer_update; /* allreduce: buckets applied in the next forward */
    int shard_optimizer; /* allreduce, ring: each rank steps a block of
                            every bucket (sync_shard.c) */
    mt_shm_mode shared_memory; /* allreduce, ring: a node's ranks sum
                                  and step through one shared window */
} mt_sync_cfg;

/* The [parallel] settings of c; shared_memory = auto is off where it
 * does not apply (mt_config_shared_memory_applies). */
mt_sync_cfg mt_sync_cfg_of(const mt_config *c);

/* A contiguous slice [lo, hi) of the gradient arena, ready once backward
 * has finished layer `first_layer` (its lowest layer). */
typedef struct mt_bucket {
    size_t lo, hi;
    size_t first_layer;
    int state; /* 0 waiting, 1 reducing, 2 done */
    MPI_Request req; /* sync = allreduce: its MPI_Iallreduce */
    /* shard_optimizer: this rank's block [own_lo, own_hi) of the arena,
     * which it holds summed and steps; whole: every rank steps it all
     * (the ring handed it to MPI). */
    size_t own_lo, own_hi;
    int whole;
} mt_bucket;

/* A strategy's operations (src/parallel/sync_internal.h). */
typedef struct mt_sync_ops mt_sync_ops;

typedef struct mt_sync {
    const mt_sync_ops *ops;
    mt_sync_cfg cfg;
    const mt_plan *plan; /* who owns which parameters */
    MPI_Comm comm;       /* the plan's workers (dp), or the run for ps */
    int size;
    float *grads; /* the model's gradient arena */
    float *params; /* ...and its parameters */
    mt_optim *optim; /* the slots this rank owns (async servers step it) */
    /* ps_mode = async (more than one rank): steps are not in lockstep;
     * the trainer agrees on a step's sums and flags `staleness` steps
     * later and meets the others at mt_sync_fence. */
    int async;
    float step_lr;     /* this step's rate and clip norm, for the push */
    double step_clip;
    size_t base, n; /* the gradients summed: [base, base + n) (ps: all) */
    mt_bucket *b; /* in reverse layer order: b[0] holds the last layers */
    size_t nb;
    size_t next;   /* first bucket not yet started */
    size_t active; /* ring: the bucket on the ring, or nb */
    mt_ring ring;
    struct mt_ps *ps; /* sync = ps: pieces, requests, buffers */
    double wait_s; /* time spent blocked in mt_sync_finish, summed */
    struct mt__progress *thread; /* the progress thread, or NULL */
    /* defer_update: buckets [0, unapplied) are reduced or in flight but
     * not yet applied, at rate defer_lr (sync_defer.c). */
    size_t unapplied;
    float defer_lr;
    /* shard_optimizer (more than one rank): each bucket's blocks, rank by
     * rank (counts and displacements from the bucket's start: nb x size);
     * the allreduce strategy's reduce-scatter lands in shard_buf (arena
     * positions from base) before it is copied to the gradients. The
     * slots of blocks this rank does not own go stale until
     * mt_sync_gather_slots. */
    int shard;
    int *shard_counts, *shard_displs;
    float *shard_buf;
    /* shared_memory with more than one rank on a node: the window, the
     * node's and the cross-node groups, the blocks (sync_shm.c); the
     * model's parameters and gradients live in the window until
     * mt_sync_free, which hands them back (free the sync first). */
    struct mt__shm *shm;
    char shm_note[160]; /* shared_memory = auto: why it is not in use */
} mt_sync;

/* Cuts the model's gradients into buckets and sizes the ring, or cuts the
 * buckets at the plan's shards. The plan (with mt_plan_own done) and o
 * (the optimizer of the parameters this rank owns) must outlive s. With
 * shared_memory in use m->params and m->grads move into the node's window
 * (pointers taken before are stale) until mt_sync_free, which must come
 * before mt_model_free. Collective. */
int mt_sync_init(mt_sync *s, mt_model *m, mt_optim *o,
                 const mt_sync_cfg *cfg, const mt_plan *plan, char *err);
void mt_sync_free(mt_sync *s);
/* Before backward of a step. */
void mt_sync_begin(mt_sync *s);
/* After backward has finished layer `layer` (layers go last to first):
 * starts the buckets that became ready and advances those in flight. */
int mt_sync_layer_done(mt_sync *s, size_t layer, char *err);
/* Starts whatever is left and waits: afterwards the gradients of the
 * parameters this rank owns (plan.h) hold the sum over all workers. */
int mt_sync_finish(mt_sync *s, char *err);
/* The rate and clip norm (0: none) of the step about to finish: an
 * asynchronous push carries them, since its server applies it alone. */
void mt_sync_step_info(mt_sync *s, float lr, double clip_norm);
/* Asynchronous mode: every rank waits (serving its shard meanwhile)
 * until all workers' pushes so far are applied, and every worker holds
 * the servers' current parameters. Call it on every rank at the same
 * step, before a blocking collective (fetch, evaluation, checkpoint):
 * a rank blocked there cannot serve the others. A no-op otherwise. */
int mt_sync_fence(mt_sync *s, char *err);
/* Waits for a request of the caller's (the trainer's late agreement);
 * in asynchronous mode it serves this rank's shard meanwhile, since a
 * slower worker may need it to get there. */
int mt_sync_wait(mt_sync *s, MPI_Request *req, char *err);
/* Asynchronous mode: 1 if an update on this rank's shard left a NaN or
 * an infinity (the trainer's agreement stops every rank on it). */
int mt_sync_nonfinite(const mt_sync *s);

/* Global-norm clipping (as PyTorch's clip_grad_norm_): scales the summed
 * gradients so that their L2 norm over the whole arena is at most max.
 * With shards the norm is reduced over the servers. Collective. In
 * asynchronous mode each push is clipped by its own norm instead (by its
 * server, mt_sync_step_info): a no-op here. */
int mt_sync_clip(mt_sync *s, double max, char *err);
/* The optimizer step with the synchronised gradients on the parameters
 * this rank owns (allreduce, ring: every rank steps the whole arena; ps:
 * each server its shard, then the workers pull the new values). o holds
 * the slots of those parameters only. Collective. */
/* defer_update: completes and applies the buckets the forward of layer
 * `layer` needs (those of layers <= layer); mt_sync_settle all of them,
 * before anything reads the parameters or the optimizer state (a
 * checkpoint, an evaluation) and before the next backward. */
int mt_sync_apply_upto(mt_sync *s, size_t layer, char *err);
int mt_sync_settle(mt_sync *s, char *err);
/* shard_optimizer: every rank gets the optimizer slots of every block
 * from their owners (before a checkpoint; a no-op otherwise). */
int mt_sync_gather_slots(mt_sync *s, char *err);
int mt_sync_apply(mt_sync *s, mt_optim *o, float *params, float lr,
                  char *err);

/* The deterministic strategy ([parallel] deterministic): rank r receives
 * the partial sums from rank r - 1 (acc: n floats, total: n_sums
 * doubles), adds its groups' gradients (groups: n_groups x n) and sums
 * (n_groups x n_sums) in order, passes them to r + 1, and the last rank
 * broadcasts the totals. The floats added and their order do not depend
 * on the rank count. Collective over comm. */
int mt_chain_sum(MPI_Comm comm, float *acc, const float *groups,
                 size_t n_groups, size_t n, double *total,
                 const double *sums, size_t n_sums, char *err);

/* shared_memory: 1 and the layout (ranks a node, nodes) if the node's
 * ranks share a window, 0 if not (every node has one rank, or it is
 * off). */
int mt_sync_shared_layout(const mt_sync *s, int *ranks_a_node,
                          int *nodes);

/* Round to the nearest bf16, ties to even (what the wire carries). */
uint16_t mt_bf16_from_float(float f);
float mt_bf16_to_float(uint16_t h);

#endif
