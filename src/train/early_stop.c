/* Early stopping on a logged metric ([train] monitor, patience, min_delta,
 * mode, restore_best), as Keras' EarlyStopping: training stops after
 * `patience` epochs without an improvement of more than min_delta, and
 * the best weights come back at the end. Every rank sees the same reduced
 * metrics, so every rank decides the same without a collective. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/metrics.h"
#include "train/internal.h"

int mt__es_init(trainer *t, char *err)
{
    t->es_best = NAN;
    if (!t->cfg->monitor || !t->cfg->restore_best)
        return MT_OK;
    /* In the arenas' layout; a pipeline stage touches only its part, so
     * the rest of the pages are never had. */
    t->es_params = mt_calloc(t->model.n_params, sizeof(float));
    t->es_state = mt_calloc(t->model.n_state, sizeof(float));
    if (!t->es_params || !t->es_state) {
        mt_seterr(err, "out of memory for early stopping's best weights");
        return MT_ENOMEM;
    }
    return MT_OK;
}


void mt__epoch_values(const double sums[3], size_t seen,
                      const mt_eval_detail *vd, double v[MT_MONITORS])
{
    for (int m = 0; m < MT_MONITORS; m++)
        v[m] = NAN;
    if (seen) {
        v[MT_MONITOR_TRAIN_LOSS] = sums[0] / (double)seen;
        if (sums[2] == 0.0) /* accuracy exists */
            v[MT_MONITOR_TRAIN_ACCURACY] = sums[1] / (double)seen;
    }
    const mt_eval_result *val = &vd->basic;
    if (!val->n)
        return;
    v[MT_MONITOR_VAL_LOSS] = val->loss;
    v[MT_MONITOR_VAL_PERPLEXITY] = vd->perplexity;
    v[MT_MONITOR_VAL_MAE] = vd->mae;
    v[MT_MONITOR_VAL_R2] = vd->r2;
    if (val->accuracy < 0)
        return;
    v[MT_MONITOR_VAL_ACCURACY] = val->accuracy;
    v[MT_MONITOR_VAL_ERROR_RATE] = 1.0 - val->accuracy;
    v[MT_MONITOR_VAL_ROC_AUC] = vd->auc;
    mt_report r = {0};
    if (vd->cm && mt_report_from_confusion(vd->cm, vd->K, &r) == MT_OK) {
        v[MT_MONITOR_VAL_MACRO_PRECISION] = r.macro.precision;
        v[MT_MONITOR_VAL_MACRO_RECALL] = r.macro.recall;
        v[MT_MONITOR_VAL_MACRO_F1] = r.macro.f1;
    }
    mt_report_free(&r);
}

/* Reduce-on-plateau, as Keras' ReduceLROnPlateau: after `patience` epochs
 * without improvement, multiply the rate by `factor` (not below min_lr,
 * applied where the rate is used). */
void mt__plateau_after_epoch(trainer *t, const double v[MT_MONITORS])
{
    const mt_config *c = t->cfg;
    if (c->plateau_factor <= 0.0)
        return;
    int m = c->plateau_monitor;
    if (mt_metric_improves(v[m], t->pl_best, mt_monitor_minimizes(m), 0.0)) {
        t->pl_best = v[m];
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
               mt_monitor_names[m], c->plateau_patience,
               t->lr_scale);
}

/* Copies the parameters and running statistics of the layers the model
 * holds (a pipeline stage's, or all) to (to_best) or from the best. */
static void copy_best(trainer *t, int to_best)
{
    mt_model *m = &t->model;
    for (int state = 0; state < 2; state++) {
        size_t lo, hi;
        mt_model_span(m, m->live_lo, m->live_hi, state, &lo, &hi);
        float *live = (state ? m->state : m->params) + lo,
              *best = (state ? t->es_state : t->es_params) + lo;
        memcpy(to_best ? best : live, to_best ? live : best,
               (hi - lo) * sizeof(float));
    }
}

int mt__es_after_epoch(trainer *t, size_t epoch, const double v[MT_MONITORS])
{
    const mt_config *c = t->cfg;
    if (!c->monitor)
        return 0;
    int minimize = c->mode ? c->mode == 1 : mt_monitor_minimizes(c->monitor);
    if (mt_metric_improves(v[c->monitor], t->es_best, minimize,
                           c->min_delta)) {
        t->es_best = v[c->monitor];
        t->es_wait = 0;
        t->es_epoch = epoch + 1;
        if (t->es_params)
            copy_best(t, 1);
        return 0;
    }
    if (++t->es_wait < c->patience + (c->patience == 0))
        return 0;
    if (t->rank == 0)
        printf("early stopping after epoch %zu: %s has not improved for "
               "%llu epoch(s); best %.6g at epoch %llu\n",
               epoch + 1, mt_monitor_names[c->monitor],
               (unsigned long long)t->es_wait, t->es_best,
               (unsigned long long)t->es_epoch);
    return 1;
}

void mt__es_restore(trainer *t)
{
    if (!t->es_params || isnan(t->es_best))
        return;
    copy_best(t, 0);
    if (t->rank == 0)
        printf("restored the weights of epoch %llu (best %s)\n",
               (unsigned long long)t->es_epoch,
               mt_monitor_names[t->cfg->monitor]);
}

/* A watched metric without a value after the first epoch will never have
 * one (the validation split is fixed): an error now beats a run that can
 * never stop early or keep a best checkpoint. */
int mt__check_monitors(const trainer *t, const double v[MT_MONITORS],
                       char *err)
{
    const mt_config *c = t->cfg;
    const struct {
        const char *key;
        int m;
    } watched[] = {{"[train] monitor", c->monitor},
                   {"[optimizer] plateau_monitor",
                    c->plateau_factor > 0.0 ? c->plateau_monitor : 0},
                   {"[checkpoint] best", c->keep_best}};
    for (size_t i = 0; i < sizeof watched / sizeof *watched; i++) {
        int m = watched[i].m;
        if (m != MT_MONITOR_NONE && isnan(v[m])) {
            mt_seterr(err, "%s: %s = %s has no value after the first epoch "
                           "(an AUC needs both classes in the validation "
                           "split; accuracy needs int labels); watch "
                           "another metric",
                      c->path, watched[i].key, mt_monitor_names[m]);
            return MT_EINVAL;
        }
    }
    return MT_OK;
}
