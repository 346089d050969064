/* Private to src/parallel: the strategies behind mt_sync (sync.h). Each
 * strategy is one file: sync_allreduce.c (MPI_Iallreduce per bucket),
 * sync_ring.c (our ring, one bucket at a time), sync_ps.c (the parameter
 * server); chain.c is the deterministic one, which the trainer drives
 * group by group. */
#ifndef MPITRAIN_PARALLEL_SYNC_INTERNAL_H
#define MPITRAIN_PARALLEL_SYNC_INTERNAL_H

#include "mpitrain/optim.h"
#include "mpitrain/sync.h"

struct mt_sync_ops {
    const char *name;
    /* Before backward of a step (more than one rank); may be NULL. */
    void (*begin)(mt_sync *s);
    /* Starts buckets [s->next, ready) and advances those in flight,
     * without blocking (during backward, overlap on). */
    int (*progress)(mt_sync *s, size_t ready, char *err);
    /* Starts whatever is left and waits: afterwards s->grads hold the sum
     * over the ranks (more than one rank). */
    int (*finish)(mt_sync *s, char *err);
    /* The optimizer step on the parameters this rank owns; afterwards
     * every worker holds the updated parameters. */
    int (*apply)(mt_sync *s, mt_optim *o, float *params, float lr,
                 char *err);
    /* Asynchronous strategies: the meeting point (mt_sync_fence). */
    int (*fence)(mt_sync *s, char *err);
};

extern const mt_sync_ops mt__sync_allreduce;
extern const mt_sync_ops mt__sync_ring;
extern const mt_sync_ops mt__sync_allreduce_sharded;
extern const mt_sync_ops mt__sync_ring_sharded;
extern const mt_sync_ops mt__sync_ps;
extern const mt_sync_ops mt__sync_ps_async;
extern const mt_sync_ops mt__sync_shm;
/* The parameter server's pieces and buffers (after the buckets). */
int mt__sync_ps_init(mt_sync *s, char *err);
void mt__sync_ps_free(mt_sync *s);
/* The asynchronous mode's buffers (after mt__sync_ps_init), and their
 * release (cancels the receives left posted). */
int mt__ps_async_init(mt_sync *s, char *err);
void mt__ps_async_free(mt_sync *s);
int mt__ps_async_wait(mt_sync *s, MPI_Request *req, char *err);

/* The progress thread (sync_progress.c): started by mt_sync_init where
 * it applies, stopped by mt_sync_free; between begin and end it calls the
 * strategy's progress with the buckets `ready` says backward finished. */
int mt__progress_start(mt_sync *s, char *err);
void mt__progress_stop(mt_sync *s);
void mt__progress_begin(mt_sync *s);
void mt__progress_ready(mt_sync *s, size_t layer);
int mt__progress_end(mt_sync *s, char *err);

/* Buckets [0, k) are ready once backward is at or below their layers:
 * k counted on from bucket `from` (those before it are known ready). */
size_t mt__ready_from(const mt_sync *s, size_t from, size_t layer);

/* Every bucket waiting again, none started (a step's start). */
void mt__sync_reset(mt_sync *s);

/* apply with defer_update (sync_defer.c): the step count and the last
 * bucket now, the others left to mt_sync_apply_upto. */
int mt__sync_apply_deferred(mt_sync *s, mt_optim *o, float *params,
                            float lr, char *err);

/* Global-norm clipping's factor from this rank's part sq of the squared
 * norm, summed over comm (MPI_COMM_NULL: sq is all of it): *f = 1 if the
 * norm is at most max, else max / norm (as PyTorch's clip_grad_norm_). */
int mt__clip_factor(MPI_Comm comm, double sq, double max, float *f,
                    char *err);

/* apply for strategies that leave every rank the whole summed gradient:
 * every rank steps the whole arena alike. */
int mt__sync_apply_all(mt_sync *s, mt_optim *o, float *params, float lr,
                       char *err);

/* shard_optimizer (sync_shard.c). init: each bucket's blocks and
 * this rank's (after the ring is sized); land: the allreduce strategy's
 * received blocks copied to the gradients; apply_ring / apply_mpi: each
 * rank steps its blocks, then the ring's all-gather or MPI_Allgatherv
 * hands the new parameters round; clip: the norm from the blocks. */
int mt__shard_init(mt_sync *s, char *err);
void mt__shard_free(mt_sync *s);
int mt__shard_land(mt_sync *s, char *err);
int mt__shard_apply_ring(mt_sync *s, mt_optim *o, float *params, float lr,
                         char *err);
int mt__shard_apply_mpi(mt_sync *s, mt_optim *o, float *params, float lr,
                        char *err);
int mt__shard_clip(mt_sync *s, double max, char *err);

/* shared_memory (sync_shm.c). init: the node's window with m's arenas
 * placed in it, or nothing where every node has one rank (s->shm stays
 * NULL); collective. free: the arenas handed back to m. clip and
 * gather_slots as the sharded ones, over the node's blocks. */
int mt__shm_init(mt_sync *s, mt_model *m, char *err);
void mt__shm_free(mt_sync *s);
int mt__shm_clip(mt_sync *s, double max, char *err);
int mt__shm_gather_slots(mt_sync *s, char *err);

#endif
