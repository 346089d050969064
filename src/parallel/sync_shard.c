/* [parallel] shard_optimizer: the optimizer step cut over the ranks
 * (ZeRO stage 1, Rajbhandari et al., SC 2020), for sync = allreduce and
 * ring.
 *
 * A bucket's sum is made as a reduce-scatter: each rank ends with the sum
 * of one block of it (the ring's reduce-scatter half; MPI_Reduce_scatter
 * for allreduce), steps the parameters of that block alone, and an
 * all-gather hands the new parameters to every rank. Bytes on the wire
 * are those of an allreduce; the optimizer's work (Adam: a square root and
 * a division a parameter) is cut by the rank count. The floats are the
 * same as without shards for the ring (the same block sums, the same
 * elementwise update: tested bit for bit), and every rank ends with the
 * same parameters for both.
 *
 * Each rank keeps every slot but updates only its blocks', so the others
 * go stale; mt_sync_gather_slots brings them from their owners before a
 * checkpoint, which is written and read as a replicated one (any mode
 * resumes it). Clipping's norm is a sum over the blocks. */
#include <mpi.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "parallel/sync_internal.h"

/* Rank `rank`'s block of an n-float bucket. */
static void block_of(const mt_sync *s, size_t n, int rank, size_t *lo,
                     size_t *hi, int *whole)
{
    if (s->cfg.kind == MT_SYNC_RING) {
        mt_ring_owned(&s->ring, n, rank, lo, hi, whole);
        return;
    }
    *whole = 0;
    mt_dist_share(n, rank, s->size, lo, hi);
}

int mt__shard_init(mt_sync *s, char *err)
{
    int P = s->size, me;
    MPI_Comm_rank(s->comm, &me);
    s->shard_counts = mt_calloc(s->nb * (size_t)P, sizeof(int));
    s->shard_displs = mt_calloc(s->nb * (size_t)P, sizeof(int));
    int mpi = s->cfg.kind == MT_SYNC_ALLREDUCE;
    s->shard_buf = mpi ? mt_calloc(s->n ? s->n : 1, sizeof(float)) : NULL;
    if (!s->shard_counts || !s->shard_displs || (mpi && !s->shard_buf)) {
        mt_seterr(err, "shard_optimizer: out of memory for %zu buckets",
                  s->nb);
        return MT_ENOMEM;
    }
    for (size_t k = 0; k < s->nb; k++) {
        mt_bucket *b = &s->b[k];
        size_t n = b->hi - b->lo, lo, hi;
        for (int j = 0; j < P; j++) {
            block_of(s, n, j, &lo, &hi, &b->whole);
            s->shard_counts[k * (size_t)P + (size_t)j] = (int)(hi - lo);
            s->shard_displs[k * (size_t)P + (size_t)j] = (int)lo;
        }
        block_of(s, n, me, &lo, &hi, &b->whole);
        b->own_lo = b->lo + lo;
        b->own_hi = b->lo + hi;
    }
    return MT_OK;
}

void mt__shard_free(mt_sync *s)
{
    mt_free(s->shard_counts);
    mt_free(s->shard_displs);
    mt_free(s->shard_buf);
    s->shard_counts = s->shard_displs = NULL;
    s->shard_buf = NULL;
}

int mt__shard_land(mt_sync *s, char *err)
{
    (void)err;
    for (size_t k = 0; k < s->nb; k++) {
        const mt_bucket *b = &s->b[k];
        memcpy(s->grads + b->own_lo, s->shard_buf + (b->own_lo - s->base),
               (b->own_hi - b->own_lo) * sizeof(float));
    }
    return MT_OK;
}

/* The step on this rank's blocks only. */
static void step_blocks(mt_sync *s, mt_optim *o, float *params, float lr)
{
    mt_optim_tick(o);
    for (size_t k = 0; k < s->nb; k++) {
        const mt_bucket *b = &s->b[k];
        if (b->own_hi > b->own_lo)
            mt_optim_step_range(o, params + o->base, s->grads + o->base, lr,
                                b->own_lo - o->base, b->own_hi - o->base);
    }
}

/* Every rank's blocks of arr (arena position i at arr[i - base]) to every
 * rank, bucket by bucket; `what` names them in an error. */
static int allgather(mt_sync *s, float *arr, size_t base, const char *what,
                     char *err)
{
    for (size_t k = 0; k < s->nb; k++) {
        const mt_bucket *b = &s->b[k];
        size_t at = k * (size_t)s->size;
        if (!b->whole &&
            MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL,
                           arr + (b->lo - base), s->shard_counts + at,
                           s->shard_displs + at, MPI_FLOAT,
                           s->comm) != MPI_SUCCESS) {
            mt_seterr(err, "shard_optimizer: MPI_Allgatherv of the %s of "
                           "bucket %zu (%zu floats) failed",
                      what, k, b->hi - b->lo);
            return MT_EIO;
        }
    }
    return MT_OK;
}

int mt__shard_apply_ring(mt_sync *s, mt_optim *o, float *params, float lr,
                         char *err)
{
    step_blocks(s, o, params, lr);
    int rc = MT_OK;
    for (size_t k = 0; k < s->nb && rc == MT_OK; k++) {
        const mt_bucket *b = &s->b[k];
        rc = mt_ring_start_phase(&s->ring, params + b->lo, b->hi - b->lo,
                                 MT_RING_GATHER, err);
        if (rc == MT_OK)
            rc = mt_ring_wait(&s->ring, err);
    }
    return rc;
}

int mt__shard_apply_mpi(mt_sync *s, mt_optim *o, float *params, float lr,
                        char *err)
{
    step_blocks(s, o, params, lr);
    return allgather(s, params, 0, "parameters", err);
}

int mt_sync_gather_slots(mt_sync *s, char *err)
{
    if (s->shm)
        return mt__shm_gather_slots(s, err);
    if (!s->shard)
        return MT_OK;
    const mt_optim *o = s->optim;
    int rc = o->m ? allgather(s, o->m, o->base, "optimizer slots", err)
                  : MT_OK;
    if (rc == MT_OK && o->v)
        rc = allgather(s, o->v, o->base, "optimizer slots", err);
    return rc;
}

int mt__shard_clip(mt_sync *s, double max, char *err)
{
    int me;
    MPI_Comm_rank(s->comm, &me);
    double sq = 0.0;
    for (size_t k = 0; k < s->nb; k++) {
        const mt_bucket *b = &s->b[k];
        if (b->whole && me != 0) /* every rank holds it: counted once */
            continue;
        for (size_t i = b->own_lo; i < b->own_hi; i++)
            sq += (double)s->grads[i] * s->grads[i];
    }
    /* Blocks of every replica, and of every stage, add up. */
    float f;
    int rc = mt__clip_factor(s->plan->run, sq, max, &f, err);
    if (rc || f == 1.0f)
        return rc;
    for (size_t k = 0; k < s->nb; k++)
        for (size_t i = s->b[k].own_lo; i < s->b[k].own_hi; i++)
            s->grads[i] *= f;
    return MT_OK;
}
