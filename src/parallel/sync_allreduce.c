/* sync = allreduce: MPI_Iallreduce per bucket while backward runs; see
 * sync.h. */
#include <mpi.h>

#include "mpitrain/core.h"
#include "parallel/sync_internal.h"

static int start(mt_sync *s, mt_bucket *b, char *err)
{
    b->state = 1;
    if (MPI_Iallreduce(MPI_IN_PLACE, s->grads + b->lo, (int)(b->hi - b->lo),
                       MPI_FLOAT, MPI_SUM, s->comm, &b->req) != MPI_SUCCESS) {
        mt_seterr(err, "MPI_Iallreduce of a gradient bucket failed");
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
        rc = start(s, &s->b[s->next++], err);
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

static int finish(mt_sync *s, char *err)
{
    if (!s->cfg.overlap) {
        if (MPI_Allreduce(MPI_IN_PLACE, s->grads + s->base, (int)s->n,
                          MPI_FLOAT,
                          MPI_SUM, s->comm) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Allreduce of %zu gradients failed", s->n);
            return MT_EIO;
        }
        return MT_OK;
    }
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
    if (rc == MT_OK &&
        MPI_Allreduce(MPI_IN_PLACE, s->grads + last->lo,
                      (int)(last->hi - last->lo), MPI_FLOAT, MPI_SUM,
                      s->comm) != MPI_SUCCESS) {
        mt_seterr(err, "MPI_Allreduce of a gradient bucket failed");
        rc = MT_EIO;
    }
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
    return rc;
}

const mt_sync_ops mt__sync_allreduce = {"allreduce", NULL, progress, finish,
                                        mt__sync_apply_all, NULL};
