/* Early stopping on a logged metric ([train] monitor, patience, min_delta,
 * mode, restore_best), as Keras' EarlyStopping: training stops after
 * `patience` epochs without an improvement of more than min_delta, and
 * the best weights come back at the end. Every rank sees the same reduced
 * metrics, so every rank decides the same without a collective. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "train/internal.h"

static const char *const names[] = {"none", "val_loss", "val_accuracy",
                                    "train_loss", "train_accuracy"};

int mt__es_init(trainer *t, char *err)
{
    t->es_best = NAN;
    if (!t->cfg->monitor || !t->cfg->restore_best)
        return MT_OK;
    t->es_params = mt_calloc(t->model.n_params, sizeof(float));
    t->es_state = mt_calloc(t->model.n_state, sizeof(float));
    if (!t->es_params || !t->es_state) {
        mt_seterr(err, "out of memory for early stopping's best weights");
        return MT_ENOMEM;
    }
    return MT_OK;
}


/* The value of a monitored metric this epoch. */
static double monitored(int monitor, const double sums[3], size_t seen,
                        const mt_eval_result *val)
{
    switch (monitor) {
    case MT_MONITOR_VAL_LOSS: return val->loss;
    case MT_MONITOR_VAL_ACCURACY: return val->accuracy;
    case MT_MONITOR_TRAIN_LOSS: return seen ? sums[0] / (double)seen : NAN;
    case MT_MONITOR_TRAIN_ACCURACY:
        return seen ? sums[1] / (double)seen : NAN;
    default: return NAN;
    }
}

static int is_loss(int monitor)
{
    return monitor == MT_MONITOR_VAL_LOSS ||
           monitor == MT_MONITOR_TRAIN_LOSS;
}

/* Reduce-on-plateau, as Keras' ReduceLROnPlateau: after `patience` epochs
 * without improvement, multiply the rate by `factor` (not below min_lr,
 * applied where the rate is used). */
void mt__plateau_after_epoch(trainer *t, const double sums[3], size_t seen,
                             const mt_eval_result *val)
{
    const mt_config *c = t->cfg;
    if (c->plateau_factor <= 0.0)
        return;
    double v = monitored(c->plateau_monitor, sums, seen, val);
    int better = isnan(t->pl_best) || (is_loss(c->plateau_monitor)
                                           ? v < t->pl_best
                                           : v > t->pl_best);
    if (better) {
        t->pl_best = v;
        t->pl_wait = 0;
        return;
    }
    if (++t->pl_wait < c->plateau_patience + (c->plateau_patience == 0))
        return;
    t->pl_wait = 0;
    t->lr_scale *= c->plateau_factor;
    if (t->rank == 0)
        printf("%s has not improved for %zu epoch(s): learning rate scaled "
               "by %g\n",
               names[c->plateau_monitor], c->plateau_patience,
               t->lr_scale);
}

int mt__es_after_epoch(trainer *t, size_t epoch, const double sums[3],
                       size_t seen, const mt_eval_result *val)
{
    const mt_config *c = t->cfg;
    if (!c->monitor)
        return 0;
    double v = monitored(c->monitor, sums, seen, val);
    int minimize = c->mode ? c->mode == 1 : is_loss(c->monitor);
    int better = isnan(t->es_best) ||
                 (minimize ? v < t->es_best - c->min_delta
                           : v > t->es_best + c->min_delta);
    if (better) {
        t->es_best = v;
        t->es_wait = 0;
        t->es_epoch = epoch + 1;
        if (t->es_params) {
            memcpy(t->es_params, t->model.params,
                   t->model.n_params * sizeof(float));
            memcpy(t->es_state, t->model.state,
                   t->model.n_state * sizeof(float));
        }
        return 0;
    }
    if (++t->es_wait < c->patience + (c->patience == 0))
        return 0;
    if (t->rank == 0)
        printf("early stopping after epoch %zu: %s has not improved for "
               "%llu epoch(s); best %.6g at epoch %llu\n",
               epoch + 1, names[c->monitor],
               (unsigned long long)t->es_wait, t->es_best,
               (unsigned long long)t->es_epoch);
    return 1;
}

void mt__es_restore(trainer *t)
{
    if (!t->es_params || isnan(t->es_best))
        return;
    memcpy(t->model.params, t->es_params, t->model.n_params * sizeof(float));
    memcpy(t->model.state, t->es_state, t->model.n_state * sizeof(float));
    if (t->rank == 0)
        printf("restored the weights of epoch %llu (best %s)\n",
               (unsigned long long)t->es_epoch, names[t->cfg->monitor]);
}
