/* The deferred update ([parallel] defer_update, sync.h).
 *
 * Without it a step waits for every bucket before the optimizer runs, so
 * a bucket's transfer overlaps only the backward of the layers below it.
 * Deferred, the last bucket (the first layers, which the next forward
 * needs first) is reduced and applied at the step's end as always; the
 * others stay in flight and each is waited for, and its part of the
 * optimizer step applied, just before the next forward reaches its
 * layers. The floats are the same: the same sums, the same elementwise
 * update, each layer updated before it is used. On 2 emulated hosts at
 * 1 Gbit/s a 188 KiB MPI_Iallreduce behind 2 ms of compute that calls
 * MPI_Test 32 times was already done when waited for; with no call in
 * between, the wait was 1.7 ms (2026-12-02). In training it measured
 * +1-5% where the wire is not the limit and -13% where it is (the MLP at
 * 10 Gbit/s; bench/README.md), so it is off by default. */
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "mpitrain/core.h"
#include "parallel/sync_internal.h"

/* Bucket k's part of the step, its gradients then zeroed for the next. */
static void apply_bucket(mt_sync *s, size_t k)
{
    const mt_bucket *b = &s->b[k];
    mt_optim *o = s->optim;
    mt_optim_step_range(o, s->params + o->base, s->grads + o->base,
                        s->defer_lr, b->lo - o->base, b->hi - o->base);
    memset(s->grads + b->lo, 0, (b->hi - b->lo) * sizeof(float));
}

int mt__sync_apply_deferred(mt_sync *s, mt_optim *o, float *params,
                            float lr, char *err)
{
    (void)params; /* s->params, as the later parts use */
    mt_optim_tick(o);
    s->defer_lr = lr;
    if (s->nb == 0)
        return MT_OK;
    apply_bucket(s, s->nb - 1);
    s->unapplied = s->nb - 1;
    if (s->size == 1) /* nothing in flight: apply it all now */
        return mt_sync_apply_upto(s, SIZE_MAX, err);
    return MT_OK;
}

/* MPI moves the reductions only inside a call: a test of each one still
 * in flight, at every layer of the forward. */
static int advance(mt_sync *s, char *err)
{
    for (size_t k = 0; k < s->unapplied; k++) {
        int done = 0;
        if (s->b[k].state != 1)
            continue;
        if (MPI_Test(&s->b[k].req, &done, MPI_STATUS_IGNORE) !=
            MPI_SUCCESS) {
            mt_seterr(err, "MPI_Test of a deferred gradient bucket failed");
            return MT_EIO;
        }
        if (done)
            s->b[k].state = 2;
    }
    return MT_OK;
}

int mt_sync_apply_upto(mt_sync *s, size_t layer, char *err)
{
    int rc = s->unapplied ? advance(s, err) : MT_OK, applied = 0;
    while (rc == MT_OK && s->unapplied > 0 &&
           s->b[s->unapplied - 1].first_layer <= layer) {
        applied = 1;
        size_t k = --s->unapplied;
        if (s->b[k].state == 1 &&
            MPI_Wait(&s->b[k].req, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Wait of a deferred gradient bucket failed");
            rc = MT_EIO;
        }
        s->b[k].state = 2;
        if (rc == MT_OK)
            apply_bucket(s, k);
    }
    if (applied && !s->unapplied) /* the step's own buckets start anew */
        mt__sync_reset(s);
    return rc;
}

int mt_sync_settle(mt_sync *s, char *err)
{
    return s->unapplied ? mt_sync_apply_upto(s, SIZE_MAX, err) : MT_OK;
}
