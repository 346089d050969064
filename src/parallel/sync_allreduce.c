/* sync = allreduce: MPI_Iallreduce per bucket while backward runs, or
 * with shard_optimizer MPI_Ireduce_scatter (each rank receives its block's
 * sum, sync_shard.c); see sync.h. */
#include <mpi.h>

#include "mpitrain/core.h"
#include "parallel/sync_internal.h"

/* Starts (or, blocking, completes) bucket b's reduction. */
static int reduce(mt_sync *s, mt_bucket *b, int blocking, char *err)
{
    float *g = s->grads + b->lo;
    int n = (int)(b->hi - b->lo), rc;
    const char *what;
    if (s->shard) {
        const int *counts = s->shard_counts + (b - s->b) * s->size;
        float *dst = s->shard_buf + (b->own_lo - s->base);
        what = "MPI_Reduce_scatter";
        rc = blocking ? MPI_Reduce_scatter(g, dst, counts, MPI_FLOAT, MPI_SUM,
                                           s->comm)
                      : MPI_Ireduce_scatter(g, dst, counts, MPI_FLOAT,
                                            MPI_SUM, s->comm, &b->req);
    } else {
        what = "MPI_Allreduce";
        rc = blocking ? MPI_Allreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM,
                                      s->comm)
                      : MPI_Iallreduce(MPI_IN_PLACE, g, n, MPI_FLOAT,
                                       MPI_SUM, s->comm, &b->req);
    }
    b->state = blocking ? 2 : 1;
    if (rc != MPI_SUCCESS) {
        mt_seterr(err, "%s of a gradient bucket (%d floats) failed", what,
                  n);
        return MT_EIO;
    }
    return MT_OK;
}

static int progress(mt_sync *s, size_t ready_upto, char *err)
{
    int rc = MT_OK;
    /* The last bucket (the first layers) is left to finish. */
    if (ready_upto + 1 > s->nb)
        ready_upto = s->nb ? s->nb - 1 : 0;
    while (s->next < ready_upto && rc == MT_OK)
        rc = reduce(s, &s->b[s->next++], 0, err);
    for (size_t i = 0; i < s->next && rc == MT_OK; i++) {
        int flag = 0;
        if (s->b[i].state == 1 &&
            MPI_Test(&s->b[i].req, &flag, MPI_STATUS_IGNORE) !=
                MPI_SUCCESS) {
            mt_seterr(err, "MPI_Test of a gradient bucket failed");
            rc = MT_EIO;
        }
        if (flag)
            s->b[i].state = 2;
    }
    return rc;
}

/* Without overlap: one reduction of every gradient, or with shards one
 * reduce-scatter a bucket. */
static int finish_blocking(mt_sync *s, char *err)
{
    if (!s->shard) {
        if (MPI_Allreduce(MPI_IN_PLACE, s->grads + s->base, (int)s->n,
                          MPI_FLOAT, MPI_SUM, s->comm) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Allreduce of %zu gradients failed", s->n);
            return MT_EIO;
        }
        return MT_OK;
    }
    int rc = MT_OK;
    for (size_t i = 0; i < s->nb && rc == MT_OK; i++)
        rc = reduce(s, &s->b[i], 1, err);
    return rc ? rc : mt__shard_land(s, err);
}

static int finish(mt_sync *s, char *err)
{
    if (!s->cfg.overlap)
        return finish_blocking(s, err);
    if (s->nb == 0)
        return MT_OK;
    /* The last bucket is ready only when backward ends, with nothing left
     * to overlap: every rank reduces it with the blocking call, twice as
     * fast as starting and waiting at 256 KiB-1 MiB on 2 ranks (libnbc's
     * costs). Whether a bucket's reduction is blocking must not depend on
     * the rank (a rank without samples starts nothing during backward),
     * so it is always this one, always blocking. */
    mt_bucket *last = &s->b[s->nb - 1];
    int rc = progress(s, s->nb, err);
    if (rc == MT_OK)
        rc = reduce(s, last, 1, err);
    last->state = 2;
    s->next = s->nb;
    /* Deferred: the others are waited for in the next forward. */
    for (size_t i = 0; i < s->nb && rc == MT_OK && !s->cfg.defer_update;
         i++)
        if (s->b[i].state == 1 &&
            MPI_Wait(&s->b[i].req, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Wait of a gradient bucket failed");
            rc = MT_EIO;
        }
    if (rc == MT_OK && s->shard)
        rc = mt__shard_land(s, err);
    return rc;
}

const mt_sync_ops mt__sync_allreduce = {"allreduce", NULL, progress, finish,
                                        mt__sync_apply_all, NULL};
const mt_sync_ops mt__sync_allreduce_sharded = {
    "allreduce", NULL, progress, finish, mt__shard_apply_mpi, NULL};
