/* sync = ring: our ring-allreduce (ring.c), one bucket on the ring at a
 * time, the next ready one starting when the last ends; with
 * shard_optimizer only its reduce-scatter half (sync_shard.c); see
 * sync.h. */
#include "mpitrain/core.h"
#include "parallel/sync_internal.h"

static int start(mt_sync *s, mt_bucket *b, char *err)
{
    b->state = 1;
    s->active = (size_t)(b - s->b);
    return mt_ring_start_phase(&s->ring, s->grads + b->lo, b->hi - b->lo,
                               s->shard ? MT_RING_SCATTER : MT_RING_ALLREDUCE,
                               err);
}

static int progress(mt_sync *s, size_t ready_upto, char *err)
{
    int rc;
    for (;;) {
        if (s->active == s->nb) {
            if (s->next >= ready_upto)
                return MT_OK;
            if ((rc = start(s, &s->b[s->next++], err)))
                return rc;
        }
        int done = 0;
        if ((rc = mt_ring_test(&s->ring, &done, err)))
            return rc;
        if (!done)
            return MT_OK;
        s->b[s->active].state = 2;
        s->active = s->nb;
    }
}

static int finish(mt_sync *s, char *err)
{
    /* Shards go bucket by bucket, overlap or not. */
    if (!s->cfg.overlap && !s->shard)
        return mt_ring_allreduce(&s->ring, s->grads + s->base, s->n,
                                 err);
    int rc = MT_OK;
    while (rc == MT_OK && (s->active != s->nb || s->next < s->nb)) {
        if (s->active == s->nb)
            rc = start(s, &s->b[s->next++], err);
        if (rc == MT_OK && (rc = mt_ring_wait(&s->ring, err)) == MT_OK) {
            s->b[s->active].state = 2;
            s->active = s->nb;
        }
    }
    return rc;
}

const mt_sync_ops mt__sync_ring = {"ring", NULL, progress, finish,
                                   mt__sync_apply_all, NULL};
const mt_sync_ops mt__sync_ring_sharded = {"ring", NULL, progress, finish,
                                           mt__shard_apply_ring, NULL};
