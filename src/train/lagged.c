/* The trainer's per-step agreement in ps_mode = async. In lockstep modes
 * every step ends with a reduction of its sums and a stop-flag
 * agreement; here that would make every step wait for the slowest
 * worker. Instead a step's vector (its sums, the stop and clock flags, a
 * server's non-finite flag) goes out with MPI_Iallreduce and is completed
 * `staleness` steps later: every rank completes step s's at its own step
 * s + staleness, so all decide alike (diverged, save, stop), k steps
 * late. A meeting point (mt_sync_fence, then every agreement in flight
 * completed) comes before evaluation and checkpoints. */
#include <string.h>

#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* [0, MT__STEP_SUMS) the step sums, then these flags (> 0: set). */
enum { LAG_STOP = MT__STEP_SUMS, LAG_DUE, LAG_NONFINITE, LAG_N };

int mt__lag_init(trainer *t, char *err)
{
    if (!t->sync.async)
        return MT_OK;
    t->lag_cap = t->cfg->staleness + 1;
    t->lag_vec = mt_calloc(t->lag_cap * LAG_N, sizeof(double));
    t->lag_req = mt_calloc(t->lag_cap, sizeof(MPI_Request));
    t->lag_step = mt_calloc(t->lag_cap, sizeof(uint64_t));
    if (!t->lag_vec || !t->lag_req || !t->lag_step) {
        mt_seterr(err, "out of memory for %zu agreements", t->lag_cap);
        return MT_ENOMEM;
    }
    return MT_OK;
}

void mt__lag_free(trainer *t)
{
    /* A run stopped by an agreement (it diverged) leaves the later ones
     * in flight. Every rank posted the same ones (each decides at the
     * same step), so they complete here: left pending, their freed
     * vectors crashed the next run's first collective (MPI_Comm_dup
     * progressing libnbc) on 2 emulated hosts. */
    for (; t->lag_count; t->lag_count--) {
        MPI_Wait(&t->lag_req[t->lag_head], MPI_STATUS_IGNORE);
        t->lag_head = (t->lag_head + 1) % t->lag_cap;
    }
    mt_free(t->lag_vec);
    mt_free(t->lag_req);
    mt_free(t->lag_step);
}

/* Completes the oldest agreement in flight: its sums join the epoch's,
 * its flags are or-ed into flags[0] (stop) and flags[1] (save due). */
static int settle(trainer *t, int flags[2], char *err)
{
    size_t i = t->lag_head;
    double *v = t->lag_vec + i * LAG_N;
    int rc = mt_sync_wait(&t->sync, &t->lag_req[i], err);
    t->lag_head = (i + 1) % t->lag_cap;
    t->lag_count--;
    if (rc)
        return rc;
    unsigned long long step = (unsigned long long)t->lag_step[i];
    if (v[LAG_NONFINITE] > 0) {
        mt_seterr(err, "epoch %zu, step %llu: a parameter server's update "
                       "left non-finite parameters; the run diverged "
                       "(learning rate %g too high?)",
                  t->epoch_now + 1, step, (double)t->lr);
        return MT_ENUMERIC;
    }
    if ((rc = mt__step_diverged(t, t->lag_step[i], v, err)))
        return rc;
    t->ep_sums[0] += v[0];
    t->ep_sums[1] += v[1];
    t->ep_sums[2] = v[2] > 0 || t->ep_sums[2] > 0 ? 1.0 : 0.0;
    flags[0] |= v[LAG_STOP] > 0;
    flags[1] |= v[LAG_DUE] > 0;
    return MT_OK;
}

int mt__lag_drain(trainer *t, char *err)
{
    int flags[2] = {0, 0}, rc = MT_OK;
    while (t->lag_count && rc == MT_OK)
        rc = settle(t, flags, err);
    t->lag_stop |= flags[0];
    return rc;
}

int mt__lag_meet(trainer *t, char *err)
{
    if (!t->sync.async)
        return MT_OK;
    int rc = mt_sync_fence(&t->sync, err);
    return rc ? rc : mt__lag_drain(t, err);
}

int mt__lag_after_step(trainer *t, size_t epoch, uint64_t position,
                       char *err)
{
    const mt_config *c = t->cfg;
    size_t i = (t->lag_head + t->lag_count) % t->lag_cap;
    double *v = t->lag_vec + i * LAG_N;
    memcpy(v, t->lag_local, MT__STEP_SUMS * sizeof(double));
    int asked[2];
    mt__step_flags(t, asked);
    v[LAG_STOP] = asked[0];
    v[LAG_DUE] = asked[1];
    v[LAG_NONFINITE] = mt_sync_nonfinite(&t->sync);
    t->lag_step[i] = t->step;
    if (MPI_Iallreduce(MPI_IN_PLACE, v, LAG_N, MPI_DOUBLE, MPI_SUM, t->comm,
                       &t->lag_req[i]) != MPI_SUCCESS) {
        mt_seterr(err, "agreeing on a step (MPI_Iallreduce) failed");
        return MT_EIO;
    }
    t->lag_count++;
    int flags[2] = {0, c->every_steps && t->step % c->every_steps == 0};
    int rc = MT_OK;
    while (t->lag_count > c->staleness && rc == MT_OK)
        rc = settle(t, flags, err);
    if (rc || !(flags[0] || flags[1]))
        return rc;
    rc = mt__save(t, epoch, position, 0, err);
    return rc == MT_OK && (flags[0] || t->lag_stop) ? mt__stopped(t, err)
                                                    : rc;
}
