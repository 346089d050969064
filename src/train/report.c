/* Rank 0's output of a run: the banner and plan, epoch lines and the
 * metrics log's records. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/io.h"
#include "mpitrain/metrics.h"
#include "train/internal.h"

static void print_model(const char *line, void *user)
{
    printf("  %s\n", line);
}

double mt__acc_of(const double sums[3], size_t n)
{
    return (sums[2] > 0 || n == 0) ? -1.0 : sums[1] / (double)n;
}

/* The metrics beyond loss and accuracy, for the metrics log, from the
 * values mt__epoch_values derived from the detail d (so that the
 * per-class report is worked out once an epoch). */
void mt__detail_json(const mt_eval_detail *d, const double v[MT_MONITORS],
                     char *buf, size_t len)
{
    buf[0] = '\0';
    if (d->basic.accuracy >= 0)
        mt_json_append(buf, len, "error_rate", v[MT_MONITOR_VAL_ERROR_RATE]);
    mt_json_append(buf, len, "perplexity", v[MT_MONITOR_VAL_PERPLEXITY]);
    /* Set together when the confusion matrix gave a report. */
    if (!isnan(v[MT_MONITOR_VAL_MACRO_PRECISION])) {
        mt_json_append(buf, len, "macro_precision",
                       v[MT_MONITOR_VAL_MACRO_PRECISION]);
        mt_json_append(buf, len, "macro_recall",
                       v[MT_MONITOR_VAL_MACRO_RECALL]);
        mt_json_append(buf, len, "macro_f1", v[MT_MONITOR_VAL_MACRO_F1]);
        mt_json_append(buf, len, "roc_auc", v[MT_MONITOR_VAL_ROC_AUC]);
    }
    if (isfinite(d->mse)) {
        mt_json_append(buf, len, "mae", v[MT_MONITOR_VAL_MAE]);
        mt_json_append(buf, len, "r2", v[MT_MONITOR_VAL_R2]);
    }
}

void mt__report_epoch(trainer *t, size_t epoch, uint64_t step,
                      const double sums[3], size_t n, double secs,
                      const mt_eval_detail *vd, const double v[MT_MONITORS])
{
    const mt_eval_result *val = &vd->basic;
    double sps = secs > 0 ? (double)n / secs : 0.0;
    double wall = MPI_Wtime() - t->t0, lr = t->lr;
    mt_metrics_write(&t->log, "train", epoch, step, sums[0] / (double)n,
                     mt__acc_of(sums, n), sps, lr, wall, NULL);
    if (val->n) {
        char extra[512];
        mt__detail_json(vd, v, extra, sizeof extra);
        mt_metrics_write(&t->log, "val", epoch, step, val->loss,
                         val->accuracy, 0, lr, wall, extra);
    }
    if (t->rank != 0)
        return;
    mt_progress_end(&t->progress);
    printf("epoch %zu/%zu  train loss %.4f", epoch, t->cfg->epochs,
           sums[0] / (double)n);
    if (mt__acc_of(sums, n) >= 0)
        printf(" acc %.4f", mt__acc_of(sums, n));
    if (val->n) {
        printf("  val loss %.4f", val->loss);
        if (val->accuracy >= 0)
            printf(" acc %.4f", val->accuracy);
    }
    printf("  %.0f samples/s  %.1f s\n", sps, secs);
    fflush(stdout);
}

/* Rank 0's banner: the data, the ranks, the sampling, the model; and for
 * a dry run the plan. */
void mt__print_plan(const trainer *t, size_t epoch)
{
    const mt_config *c = t->cfg;
    printf("mpitrain %s: %zu train, %zu validation, %zu test samples; "
           "%d rank%s, global batch %zu\n",
           mt_version(), t->n_train, t->n_val, t->test.total, t->size,
           t->size == 1 ? "" : "s", c->batch);
    /* Speed and the last bits of the results depend on these. */
    printf("SIMD path %s, OpenBLAS %s core%s%s\n",
           mt_isa_name(mt_isa_current()), openblas_get_corename(),
           *mt_isa_note() ? "; " : "", mt_isa_note());
    int per_node, nodes;
    if (mt_sync_shared_layout(&t->sync, &per_node, &nodes))
        printf("gradients: %s through shared memory, %d ranks a node on "
               "%d node%s\n",
               c->sync == MT_SYNC_RING ? "ring" : "allreduce", per_node,
               nodes, nodes == 1 ? "" : "s");
    else if (*t->sync.shm_note)
        printf("gradients: %s by messages (shared_memory: %s)\n",
               c->sync == MT_SYNC_RING ? "ring" : "allreduce",
               t->sync.shm_note);
    if (t->sampler.mode != MT_SAMPLING_NONE)
        printf("%s: %zu samples per epoch, %zu of each class\n",
               t->sampler.mode == MT_SAMPLING_OVER ? "oversampling"
                                                   : "undersampling",
               t->sampler.n_epoch, t->sampler.per_class);
    if (c->stages > 1 && t->size == 1)
        printf("[parallel] stages = %zu ignored on one rank\n", c->stages);
    mt_model_summary(&t->model, print_model, NULL);
    if (t->opts->dry_run) {
        size_t *rows = t->plan.stages > 1 ? mt__pipe_act_rows(t) : NULL;
        mt_plan_describe(&t->plan, &t->model,
                         t->cfg->optim.kind == MT_OPT_SGD ? 1 : 2, rows,
                         print_model, NULL);
        free(rows);
        if (t->plan.stages > 1)
            mt__pipe_describe(t);
        printf("dry run: %zu steps per epoch, %zu steps in all, from epoch "
               "%zu; nothing trained or written\n",
               mt__steps_per_epoch(t), t->sched.total_steps, epoch + 1);
    }
    fflush(stdout);
}
