/* An epoch's samples: the order every rank computes alike, and the
 * windows of rows fetched from their owners (DESIGN.md, sharded data). */
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/dist.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* This epoch's order: the sampler's seed- and epoch-keyed draw of the
 * training positions, identical on every rank; then the file rows of this
 * rank's slice of every global (micro-)batch, in order, and where each
 * step's rows begin. The cursor skips the slices before global position
 * `skip_to` (a resumed epoch). */
void mt__prepare_epoch(trainer *t, size_t epoch, size_t skip_to)
{
    const mt_config *c = t->cfg;
    size_t n = t->sampler.n_epoch;
    mt_sampler_epoch(&t->sampler, c->seed, epoch, t->epoch_perm);
    for (size_t i = 0; i < n; i++)
        t->epoch_perm[i] = t->order[t->epoch_perm[i]];
    size_t count = 0, span = c->batch * c->accumulate;
    for (size_t g0 = 0; g0 < n; g0 += c->batch) {
        if (g0 % span == 0)
            t->step_first[g0 / span] = count;
        size_t G = n - g0 < c->batch ? n - g0 : c->batch;
        size_t lo, hi;
        mt__batch_slice(t, G, &lo, &hi);
        for (size_t i = lo; i < hi; i++)
            t->need[count++] = t->epoch_perm[g0 + i];
    }
    t->step_first[mt__steps_per_epoch(t)] = count;
    t->cursor = t->step_first[skip_to / span];
    t->win_end = skip_to / span; /* the first step fetches */
}

/* The step after window [s, ...): win_steps later, or the epoch's end. */
static size_t window_end(const trainer *t, size_t s, size_t steps)
{
    return steps - s < t->win_steps ? steps : s + t->win_steps;
}

/* At the first step of window [s, e): its rows are fetched from their
 * owners (or were prefetched during the previous window), and the next
 * window's fetch starts, to travel while this one trains. A rank holds
 * its share plus two windows, never a whole epoch more; a single rank
 * owns every row and fetches nothing. Collective: every rank calls it at
 * the same step. */
int mt__fetch_window(trainer *t, size_t s, size_t steps, char *err)
{
    size_t e = window_end(t, s, steps);
    t->win_lo = t->step_first[s];
    t->win_end = e;
    if (t->size == 1)
        return MT_OK;
    /* Asynchronous: a rank blocked in the fetch cannot serve its shard. */
    int rc = mt_sync_fence(&t->sync, err);
    if (rc)
        return rc;
    mt_watch("data fetch (MPI_Alltoallv)");
    if (t->prefetch) {
        rc = mt_dataset_fetch_finish(t->prefetch, err);
        t->prefetch = NULL;
        t->cur ^= 1;
        rc = mt_dist_agree(t->comm, rc, err);
    } else {
        rc = mt_dataset_fetch(&t->shard, t->comm, t->need + t->win_lo,
                              t->step_first[e] - t->win_lo,
                              mt__reads_inputs(t), &t->win[t->cur], err);
    }
    if (rc == MT_OK && e < steps) {
        size_t lo = t->step_first[e];
        size_t hi = t->step_first[window_end(t, e, steps)];
        rc = mt_dataset_fetch_start(&t->shard, t->comm, t->need + lo,
                                    hi - lo, mt__reads_inputs(t),
                                    &t->win[t->cur ^ 1], &t->prefetch, err);
    }
    return rc;
}

/* A prefetch still in flight when an epoch ends early (max_steps, a stop,
 * an error every rank shares) is completed and its rows left unused, so
 * that no exchange stays pending. Collective. */
void mt__drop_prefetch(trainer *t)
{
    char ignored[MT_ERR_LEN];
    mt_dataset_fetch_finish(t->prefetch, ignored);
    t->prefetch = NULL;
}
