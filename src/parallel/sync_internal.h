/* Private to src/parallel: the strategies behind mt_sync (sync.h). Each
 * strategy is one file: sync_allreduce.c (MPI_Iallreduce per bucket),
 * sync_ring.c (our ring, one bucket at a time); chain.c is the
 * deterministic one, which the trainer drives group by group. */
#ifndef MPITRAIN_PARALLEL_SYNC_INTERNAL_H
#define MPITRAIN_PARALLEL_SYNC_INTERNAL_H

#include "mpitrain/optim.h"
#include "mpitrain/sync.h"

struct mt_sync_ops {
    const char *name;
    /* Starts buckets [s->next, ready) and advances those in flight,
     * without blocking (during backward, overlap on). */
    int (*progress)(mt_sync *s, size_t ready, char *err);
    /* Starts whatever is left and waits: afterwards s->grads hold the sum
     * over the ranks (more than one rank). */
    int (*finish)(mt_sync *s, char *err);
    /* The optimizer step on the parameters this rank owns. */
    void (*apply)(mt_sync *s, mt_optim *o, float *params, float lr);
};

extern const mt_sync_ops mt__sync_allreduce;
extern const mt_sync_ops mt__sync_ring;

/* apply for strategies that leave every rank the whole summed gradient:
 * every rank steps the whole arena alike. */
void mt__sync_apply_all(mt_sync *s, mt_optim *o, float *params, float lr);

#endif
