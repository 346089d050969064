/* Bucketed, overlapped gradient synchronisation; see sync.h. */
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/sync.h"

/* Parameter range of layer i in the arena: its tensors are consecutive. */
static void layer_range(const mt_model *m, size_t i, size_t *lo, size_t *hi)
{
    const mt_layer *l = &m->layers[i];
    *lo = (size_t)(l->param[0].grad - m->grads);
    *hi = *lo;
    for (int k = 0; k < l->n_param; k++)
        *hi += l->param[k].n;
}

/* Walks the layers from last to first, closing a bucket when the next
 * layer would overflow it; a layer larger than a bucket gets several. */
static size_t make_buckets(mt_sync *s, const mt_model *m, size_t cap)
{
    size_t nb = 0, cur_lo = 0, cur_hi = 0, cur_first = 0;
    for (size_t i = m->n_layers; i-- > 0;) {
        if (m->layers[i].n_param == 0)
            continue;
        size_t lo, hi;
        layer_range(m, i, &lo, &hi);
        if (cur_hi > cur_lo && cur_hi - lo > cap) {
            if (s->b)
                s->b[nb] = (mt_bucket){cur_lo, cur_hi, cur_first, 0, 0};
            nb++;
            cur_hi = cur_lo;
        }
        if (cur_hi == cur_lo)
            cur_hi = hi;
        /* Pieces of a big layer, from its end, each a full bucket. */
        while (cur_hi - lo > cap) {
            if (s->b)
                s->b[nb] = (mt_bucket){cur_hi - cap, cur_hi, i, 0, 0};
            nb++;
            cur_hi -= cap;
        }
        cur_lo = lo;
        cur_first = i;
    }
    if (cur_hi > cur_lo) {
        if (s->b)
            s->b[nb] = (mt_bucket){cur_lo, cur_hi, cur_first, 0, 0};
        nb++;
    }
    return nb;
}

int mt_sync_init(mt_sync *s, mt_model *m, const mt_sync_cfg *cfg,
                 MPI_Comm comm, char *err)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->comm = comm;
    s->grads = m->grads;
    s->n = m->n_params;
    MPI_Comm_size(comm, &s->size);
    size_t cap = cfg->bucket_bytes / sizeof(float);
    cap = cap ? cap : 1;
    s->nb = make_buckets(s, m, cap);
    s->b = mt_calloc(s->nb, sizeof *s->b);
    if (!s->b) {
        mt_seterr(err, "sync: out of memory");
        return MT_ENOMEM;
    }
    make_buckets(s, m, cap);
    s->active = s->nb;
    if (cfg->kind == MT_SYNC_RING) {
        /* Blocking mode reduces the whole arena at once. */
        size_t biggest = cfg->overlap ? cap : s->n;
        int rc = mt_ring_init(&s->ring, comm, biggest, cfg->segment_bytes,
                              cfg->compress, MT_TAG_RING, err);
        if (rc) {
            mt_sync_free(s);
            return rc;
        }
        mt_ring_set_small(&s->ring, cfg->ring_min_bytes / sizeof(float));
    }
    return MT_OK;
}

void mt_sync_free(mt_sync *s)
{
    mt_free(s->b);
    mt_ring_free(&s->ring);
    s->nb = 0;
}

void mt_sync_begin(mt_sync *s)
{
    for (size_t i = 0; i < s->nb; i++)
        s->b[i].state = 0;
    s->next = 0;
    s->active = s->nb;
}

static int start_bucket(mt_sync *s, mt_bucket *b, char *err)
{
    b->state = 1;
    if (s->cfg.kind == MT_SYNC_ALLREDUCE) {
        if (MPI_Iallreduce(MPI_IN_PLACE, s->grads + b->lo, (int)(b->hi - b->lo),
                           MPI_FLOAT, MPI_SUM, s->comm,
                           &b->req) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Iallreduce of a gradient bucket failed");
            return MT_EIO;
        }
        return MT_OK;
    }
    s->active = (size_t)(b - s->b);
    return mt_ring_start(&s->ring, s->grads + b->lo, b->hi - b->lo, err);
}

/* Moves every started bucket forward without blocking; on the ring one
 * bucket at a time, the next ready one starting when the last ends. */
static int progress(mt_sync *s, size_t ready_upto, char *err)
{
    int rc = MT_OK;
    if (s->cfg.kind == MT_SYNC_ALLREDUCE) {
        /* The last bucket (the first layers) is left to mt_sync_finish. */
        if (ready_upto + 1 > s->nb)
            ready_upto = s->nb ? s->nb - 1 : 0;
        while (s->next < ready_upto && rc == MT_OK)
            rc = start_bucket(s, &s->b[s->next++], err);
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
    for (;;) {
        if (s->active == s->nb) {
            if (s->next >= ready_upto)
                return MT_OK;
            if ((rc = start_bucket(s, &s->b[s->next++], err)))
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

/* Buckets [0, k) are ready once backward is at or below their layers. */
static size_t ready_count(const mt_sync *s, size_t layer)
{
    size_t k = s->next;
    while (k < s->nb && s->b[k].first_layer >= layer)
        k++;
    return k;
}

int mt_sync_layer_done(mt_sync *s, size_t layer, char *err)
{
    if (!s->cfg.overlap || s->size == 1)
        return MT_OK;
    return progress(s, ready_count(s, layer), err);
}

int mt_sync_finish(mt_sync *s, char *err)
{
    if (s->size == 1)
        return MT_OK;
    double t0 = MPI_Wtime();
    int rc = MT_OK;
    if (!s->cfg.overlap) {
        if (s->cfg.kind == MT_SYNC_RING)
            rc = mt_ring_allreduce(&s->ring, s->grads, s->n, err);
        else if (MPI_Allreduce(MPI_IN_PLACE, s->grads, (int)s->n, MPI_FLOAT,
                               MPI_SUM, s->comm) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Allreduce of %zu gradients failed", s->n);
            rc = MT_EIO;
        }
    } else if (s->cfg.kind == MT_SYNC_ALLREDUCE && s->nb > 0) {
        /* The last bucket is ready only when backward ends, with nothing
         * left to overlap: every rank reduces it with the blocking call,
         * twice as fast as starting and waiting at 256 KiB-1 MiB on 2 ranks
         * (libnbc's costs). Whether a bucket's reduction is blocking must
         * not depend on the rank (a rank without samples starts nothing
         * during backward), so it is always this one, always blocking. */
        mt_bucket *last = &s->b[s->nb - 1];
        rc = progress(s, s->nb, err);
        if (rc == MT_OK &&
            MPI_Allreduce(MPI_IN_PLACE, s->grads + last->lo,
                          (int)(last->hi - last->lo), MPI_FLOAT, MPI_SUM,
                          s->comm) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Allreduce of a gradient bucket failed");
            rc = MT_EIO;
        }
        last->state = 2;
        s->next = s->nb;
        for (size_t i = 0; i < s->nb && rc == MT_OK; i++)
            if (s->b[i].state == 1 &&
                MPI_Wait(&s->b[i].req, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
                mt_seterr(err, "MPI_Wait of a gradient bucket failed");
                rc = MT_EIO;
            }
    } else {
        while (rc == MT_OK && (s->active != s->nb || s->next < s->nb)) {
            if (s->active == s->nb)
                rc = start_bucket(s, &s->b[s->next++], err);
            if (rc == MT_OK && (rc = mt_ring_wait(&s->ring, err)) == MT_OK) {
                s->b[s->active].state = 2;
                s->active = s->nb;
            }
        }
    }
    s->wait_s += MPI_Wtime() - t0;
    return rc;
}
