/* One optimizer step: forward, loss, backward, gradient synchronisation
 * and the optimizer, in the normal (overlapped buckets) or the
 * deterministic (fixed groups, fixed summation order) way. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpitrain/dist.h"
#include "mpitrain/loss.h"
#include "mpitrain/train.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

void mt__batch_slice(const trainer *t, size_t G, size_t *lo, size_t *hi)
{
    if (!t->cfg->deterministic) {
        mt_plan_rows(&t->plan, G, lo, hi); /* over the workers */
        return;
    }
    size_t m = t->cfg->group, groups = (G + m - 1) / m, glo, ghi;
    mt_dist_share(groups, t->rank, t->size, &glo, &ghi);
    *lo = glo * m < G ? glo * m : G;
    *hi = ghi * m < G ? ghi * m : G;
}

/* [data] shift / flip: each sample of the batch just gathered into x,
 * keyed by its file row (t->need follows the epoch's samples in order). */
static void augment(trainer *t, size_t B, float *x)
{
    const mt_config *c = t->cfg;
    if (!x || (!c->shift && !c->flip))
        return;
    mt_shape s = t->shard.shape;
    size_t S = mt_shape_size(s), first = t->cursor - B;
    for (size_t i = 0; i < B; i++) {
        int dx, dy, flip;
        mt_augment_draw(c->seed, t->epoch_now, t->need[first + i],
                        (int)c->shift, c->flip, &dx, &dy, &flip);
        mt_augment_image(x + i * S, s, dx, dy, flip, t->aug_tmp);
    }
}

int mt__gather_batch(trainer *t, size_t B, float *x)
{
    /* One rank owns every row: it gathers straight from its share, by
     * file row; otherwise from the window of fetched samples, in order. */
    const mt_dataset *src = t->size == 1 ? &t->shard : &t->win[t->cur];
    for (size_t i = 0; i < B; i++, t->cursor++)
        t->batch_idx[i] = t->size == 1 ? t->need[t->cursor] - t->shard.first
                                       : t->cursor - t->win_lo;
    mt_dataset_gather(src, t->batch_idx, B, x, t->labels, t->targets, t->K);
    augment(t, B, x);
    return src->labels != NULL;
}

/* defer_update: the last step's update of a layer, just before its
 * forward (sync_defer.c); the first error is kept for the step. */
static void apply_deferred(void *user, size_t layer)
{
    trainer *t = user;
    if (t->defer_rc == MT_OK)
        t->defer_rc = mt_sync_apply_upto(&t->sync, layer, t->hook_err);
}

/* Forward and loss on the next B samples of the epoch, the first being
 * global position `pos`; the loss gradient is left for backward. sums
 * gets the loss sum, correct count, "no accuracy" flag and the counts of
 * NaN and infinite outputs (MT__STEP_SUMS). */
static void forward_loss(trainer *t, uint64_t step, size_t pos, size_t B,
                         size_t G, double sums[MT__STEP_SUMS])
{
    size_t K = t->K;
    const int32_t *labels =
        mt__gather_batch(t, B, t->model.act[0]) ? t->labels : NULL;
    mt_step_ctx ctx = {.train = 1, .seed = t->cfg->seed, .step = step,
                       .sample0 = pos,
                       .before_layer = t->sync.unapplied ? apply_deferred
                                                         : NULL,
                       .user = t};
    const float *out = mt_model_forward(&t->model, &ctx, B);
    float *dout = t->model.dact[t->model.n_layers];
    mt_loss_opts lo = {.class_w = t->class_w,
                       .focal_gamma = t->cfg->focal_gamma};
    sums[0] = mt_loss_objective((mt_loss_kind)t->cfg->loss, out, labels,
                                t->targets, B, K, 1.0f / (float)G, dout, &lo);
    mt__output_sums(t, out, labels, t->targets, B, sums);
}

void mt__output_sums(const trainer *t, const float *out,
                     const int32_t *labels, const float *targets, size_t B,
                     double sums[MT__STEP_SUMS])
{
    long c = mt_count_correct((mt_loss_kind)t->cfg->loss, out, labels,
                              targets, B, t->K);
    sums[1] = c < 0 ? 0.0 : (double)c;
    sums[2] = c < 0 ? 1.0 : 0.0;
    /* Outputs can overflow while the loss, summed in double, is still
     * finite: looked at on their own, so that divergence is caught at the
     * step it happens, on every machine. */
    sums[3] = sums[4] = 0.0;
    mt__count_nonfinite(out, B * t->K, &sums[3], &sums[4]);
}

void mt__slow_knob(trainer *t)
{
    const char *slow = getenv("MPITRAIN_BENCH_SLOW");
    char who[16] = "";
    double factor = 0.0, p = 1.0;
    if (slow && sscanf(slow, "%15[^:]:%lf:%lf", who, &factor, &p) >= 2 &&
        (!strcmp(who, "all") || atoi(who) == t->rank)) {
        t->slow_factor = factor;
        t->slow_p = p;
    }
}

/* The benchmark knob: sleeps (factor - 1) times the step's compute, on
 * the steps a draw keyed by (rank, step) picks with probability p. */
static void be_slow(const trainer *t, uint64_t step, double t0)
{
    double extra = (t->slow_factor - 1.0) * (MPI_Wtime() - t0);
    if (t->slow_factor <= 1.0 || extra <= 0.0 ||
        mt_rng_uniform(t->cfg->seed, MT_RNG_BENCH, (uint64_t)t->rank,
                       step) >= t->slow_p)
        return;
    struct timespec ts = {(time_t)extra,
                          (long)((extra - (double)(time_t)extra) * 1e9)};
    nanosleep(&ts, NULL);
}

static int layer_done(void *user, size_t layer)
{
    trainer *t = user;
    return mt_sync_layer_done(&t->sync, layer, t->hook_err);
}

/* The step's G global samples come in micro-batches of [train] batch
 * (several with [train] accumulate); gradients add up over them, scaled
 * by 1 / G, so k micro-batches make the same step as one batch k times
 * larger. Buckets go out while the last backward still runs (sync.h). A
 * rank without samples in a micro-batch still takes part in the sync. */
static int step_overlapped(trainer *t, uint64_t step, size_t g0, size_t G,
                           double local[MT__STEP_SUMS], char *err)
{
    size_t mb = t->cfg->batch;
    int rc = MT_OK;
    double t0 = MPI_Wtime();
    /* Deferred buckets are zeroed as they are applied. */
    if (!t->sync.unapplied)
        mt_model_zero_grad(&t->model);
    mt_sync_begin(&t->sync);
    t->defer_rc = MT_OK;
    for (size_t m0 = g0; m0 < g0 + G && rc == MT_OK; m0 += mb) {
        size_t Gm = g0 + G - m0 < mb ? g0 + G - m0 : mb, lo, hi;
        int last = m0 + Gm >= g0 + G;
        double part[MT__STEP_SUMS] = {0};
        mt__batch_slice(t, Gm, &lo, &hi);
        if (hi == lo)
            continue;
        forward_loss(t, step, m0 + lo, hi - lo, G, part);
        for (int j = 0; j < MT__STEP_SUMS; j++) /* [2] is a flag */
            local[j] = j == 2 ? (part[2] > 0.0 ? 1.0 : local[2])
                              : local[j] + part[j];
        /* Backward needs every layer updated (a no-op after a forward). */
        rc = t->defer_rc ? t->defer_rc
                         : mt_sync_settle(&t->sync, t->hook_err);
        if (rc)
            break;
        if (last)
            rc = mt_model_backward_hook(&t->model, hi - lo, layer_done, t);
        else
            mt_model_backward(&t->model, hi - lo);
    }
    /* A rank that had no samples applies its deferred buckets here. */
    if (rc == MT_OK)
        rc = mt_sync_settle(&t->sync, t->hook_err);
    if (rc)
        mt_seterr(err, "%s", t->hook_err);
    be_slow(t, step, t0);
    mt_watch("gradient sync");
    if (rc == MT_OK)
        rc = mt_sync_finish(&t->sync, err);
    /* Asynchronous: agreed on later (lagged.c), not by a barrier now. */
    if (rc == MT_OK && t->size > 1 && !t->sync.async)
        rc = mt_dist_allreduce_sum_d(t->comm, local, MT__STEP_SUMS, err);
    return rc;
}

/* Deterministic: the global batch is cut into groups of `group` samples at
 * fixed positions; each group's gradient is computed on its own, then the
 * groups are added in their global order along a chain of ranks
 * (mt_chain_sum, src/parallel/chain.c). The floats added, and their
 * order, do not depend on the rank count, so neither do the weights. */
static int step_deterministic(trainer *t, uint64_t step, size_t g0,
                              size_t G, double total[MT__STEP_SUMS],
                              char *err)
{
    size_t lo, hi, m = t->cfg->group, n = t->model.n_params;
    mt__batch_slice(t, G, &lo, &hi);
    size_t groups = (hi - lo + m - 1) / m;
    for (size_t k = 0; k < groups; k++) {
        size_t B = hi - lo - k * m < m ? hi - lo - k * m : m;
        mt_model_zero_grad(&t->model);
        forward_loss(t, step, g0 + lo + k * m, B, G,
                     t->group_sums + MT__STEP_SUMS * k);
        mt_model_backward(&t->model, B);
        memcpy(t->group_grads + k * n, t->model.grads, n * sizeof(float));
    }
    int rc = mt_chain_sum(t->comm, t->model.grads, t->group_grads, groups,
                          n, total, t->group_sums, MT__STEP_SUMS, err);
    if (rc)
        return rc;
    /* More than one group reported "no accuracy": keep it a flag. */
    total[2] = total[2] > 0.0 ? 1.0 : 0.0;
    return MT_OK;
}

int mt__step_diverged(const trainer *t, uint64_t step,
                      const double sums[MT__STEP_SUMS], char *err)
{
    if (sums[3] > 0 || sums[4] > 0) {
        mt_seterr(err, "epoch %zu, step %llu: training outputs are not "
                       "finite: %.0f NaN and %.0f infinite; the run diverged "
                       "(learning rate %g too high?)",
                  t->epoch_now + 1, (unsigned long long)step, sums[3],
                  sums[4], (double)t->lr);
        return MT_ENUMERIC;
    }
    if (!isfinite(sums[0])) {
        mt_seterr(err, "epoch %zu, step %llu: training loss is %s; the run "
                       "diverged (learning rate %g too high?)",
                  t->epoch_now + 1, (unsigned long long)step,
                  isnan(sums[0]) ? "NaN" : "Inf", (double)t->lr);
        return MT_ENUMERIC;
    }
    return MT_OK;
}

/* The step's rate: the schedule's, reduced on a plateau (not below
 * min_lr). */
static float step_lr(trainer *t, uint64_t step)
{
    float lr = mt_schedule_lr(&t->sched, step);
    if (t->lr_scale < 1.0) {
        lr = (float)(lr * t->lr_scale);
        if (lr < t->cfg->plateau_min_lr)
            lr = (float)t->cfg->plateau_min_lr;
    }
    return lr;
}

int mt__train_step(trainer *t, uint64_t step, size_t g0, size_t G,
                   double sums[3], char *err)
{
    double local[MT__STEP_SUMS] = {0};
    t->lr = step_lr(t, step);
    mt_sync_step_info(&t->sync, t->lr, t->cfg->clip_norm);
    int rc = t->plan.stages > 1 ? mt__step_pipeline(t, step, g0, G, local, err)
             : t->cfg->deterministic
                 ? step_deterministic(t, step, g0, G, local, err)
                 : step_overlapped(t, step, g0, G, local, err);
    if (rc)
        return rc;
    /* Asynchronous: this worker's own sums wait for the late agreement,
     * which also checks them. */
    if (t->sync.async) {
        memcpy(t->lag_local, local, sizeof local);
        return mt_sync_apply(&t->sync, &t->optim, t->model.params, t->lr,
                             err);
    }
    /* Every rank sees the same reduced sums, so all stop together. */
    if ((rc = mt__step_diverged(t, step, local, err)))
        return rc;
    if (t->cfg->clip_norm > 0.0 &&
        (rc = mt_sync_clip(&t->sync, t->cfg->clip_norm, err)))
        return rc;
    if ((rc = mt_sync_apply(&t->sync, &t->optim, t->model.params, t->lr,
                            err)))
        return rc;
    for (int j = 0; j < 3; j++)
        sums[j] += local[j];
    return MT_OK;
}
