/* The detailed evaluation of `mpitrain eval`: confusion matrix, per-class
 * and averaged precision/recall/F1, perplexity, exact AUC and top-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/loss.h"
#include "mpitrain/metrics.h"
#include "mpitrain/train.h"

void mt_eval_detail_free(mt_eval_detail *d) { mt_free(d->cm); }

/* Probabilities from raw outputs: softmax rows, or a sigmoid per output. */
static void to_probs(const float *out, float *p, size_t B, size_t K,
                     mt_loss_kind loss)
{
    for (size_t n = 0; n < B; n++) {
        const float *z = out + n * K;
        float *q = p + n * K;
        if (loss != MT_LOSS_SOFTMAX_CE) {
            for (size_t k = 0; k < K; k++)
                q[k] = 1.0f / (1.0f + expf(-z[k]));
            continue;
        }
        float zmax = z[0];
        for (size_t k = 1; k < K; k++)
            zmax = z[k] > zmax ? z[k] : zmax;
        double sum = 0.0;
        for (size_t k = 0; k < K; k++)
            sum += exp((double)(z[k] - zmax));
        for (size_t k = 0; k < K; k++)
            q[k] = (float)(exp((double)(z[k] - zmax)) / sum);
    }
}

/* Forward over the local samples: counts into cm, scores (n, Ko) kept. */
static int local_pass(mt_model *m, const mt_dataset *ds, mt_loss_kind loss,
                      mt_eval_detail *d, float *scores)
{
    size_t Ko = mt_shape_size(mt_model_out(m)), B = m->max_batch, K = d->K;
    size_t *idx = mt_calloc(B, sizeof *idx);
    int32_t *labels = mt_calloc(B, sizeof *labels);
    if (!idx || !labels) {
        free(idx);
        free(labels);
        return MT_ENOMEM;
    }
    mt_step_ctx ctx = {.train = 0};
    for (size_t i = 0; i < ds->n; i += B) {
        size_t b = ds->n - i < B ? ds->n - i : B;
        for (size_t k = 0; k < b; k++)
            idx[k] = i + k;
        mt_dataset_gather(ds, idx, b, m->act[0], labels, NULL, Ko);
        const float *out = mt_model_forward(m, &ctx, b);
        to_probs(out, scores + i * Ko, b, Ko, loss);
        for (size_t k = 0; k < b; k++) {
            const float *q = scores + (i + k) * Ko;
            size_t pred = 0;
            if (Ko == 1)
                pred = q[0] > 0.5f;
            else
                for (size_t c = 1; c < Ko; c++)
                    pred = q[c] > q[pred] ? c : pred;
            d->cm[(size_t)labels[k] * K + pred]++;
        }
    }
    free(idx);
    free(labels);
    return MT_OK;
}

/* Rank 0 gathers every rank's scores and labels and computes the AUCs. */
static int gather_auc(MPI_Comm comm, const mt_dataset *ds, size_t Ko,
                      const float *scores, mt_eval_detail *d)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int n = (int)ds->n, *counts = NULL, *displ = NULL, total = 0;
    if (rank == 0) {
        counts = mt_calloc((size_t)size, sizeof *counts);
        displ = mt_calloc((size_t)size, sizeof *displ);
    }
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, comm);
    for (int q = 0; rank == 0 && q < size; q++) {
        displ[q] = total;
        total += counts[q];
    }
    float *all = rank == 0 ? mt_calloc((size_t)total * Ko, sizeof *all) : 0;
    int32_t *lab = rank == 0 ? mt_calloc((size_t)total, sizeof *lab) : 0;
    MPI_Gatherv(ds->labels, n, MPI_INT32_T, lab, counts, displ, MPI_INT32_T,
                0, comm);
    for (int q = 0; rank == 0 && q < size; q++) {
        counts[q] *= (int)Ko;
        displ[q] *= (int)Ko;
    }
    MPI_Gatherv(scores, n * (int)Ko, MPI_FLOAT, all, counts, displ,
                MPI_FLOAT, 0, comm);
    if (rank == 0) {
        if (Ko == 1) {
            uint8_t *pos = mt_calloc((size_t)total, 1);
            int ok = 0;
            for (int i = 0; pos && i < total; i++)
                pos[i] = lab[i] == 1;
            d->auc = pos ? mt_roc_auc(all, pos, (size_t)total, &ok) : NAN;
            d->auc_undefined = ok ? 0 : 1;
            free(pos);
        } else {
            d->auc = mt_roc_auc_ovr(all, lab, (size_t)total, Ko,
                                    &d->auc_undefined);
        }
        d->top5 = Ko > 5 ? (double)mt_top_k_correct(all, lab, (size_t)total,
                                                    Ko, 5) /
                               (double)(total ? total : 1)
                         : NAN;
    }
    free(all);
    free(lab);
    free(counts);
    free(displ);
    return MT_OK;
}

/* MSE, MAE and R^2 of a regression, summed over the ranks. */
static int regression(mt_model *m, const mt_dataset *ds, MPI_Comm comm,
                      mt_eval_detail *d, char *err)
{
    size_t K = mt_shape_size(mt_model_out(m)), B = m->max_batch;
    double *sums = mt_calloc(5 * K, sizeof *sums);
    float *targets = mt_calloc(B * K, sizeof *targets);
    size_t *idx = mt_calloc(B, sizeof *idx);
    int rc = sums && targets && idx ? MT_OK : MT_ENOMEM;
    mt_step_ctx ctx = {.train = 0};
    for (size_t i = 0; rc == MT_OK && i < ds->n; i += B) {
        size_t b = ds->n - i < B ? ds->n - i : B;
        for (size_t k = 0; k < b; k++)
            idx[k] = i + k;
        mt_dataset_gather(ds, idx, b, m->act[0], NULL, targets, K);
        mt_regression_add(mt_model_forward(m, &ctx, b), targets, b, K, sums);
    }
    if (rc)
        mt_seterr(err, "evaluate: out of memory");
    rc = mt_dist_agree(comm, rc, err);
    if (rc == MT_OK) {
        MPI_Allreduce(MPI_IN_PLACE, sums, (int)(5 * K), MPI_DOUBLE, MPI_SUM,
                      comm);
        mt_regression_finish(sums, K, &d->mse, &d->mae, &d->r2);
    }
    free(sums);
    free(targets);
    free(idx);
    return rc;
}

int mt_evaluate_detail(mt_model *m, const mt_dataset *ds, MPI_Comm comm,
                       mt_loss_kind loss, mt_eval_detail *d, char *err)
{
    memset(d, 0, sizeof *d);
    d->auc = d->top5 = d->perplexity = NAN;
    d->mse = d->mae = d->r2 = NAN;
    int rc = mt_evaluate(m, ds, comm, loss, &d->basic, err);
    if (rc == MT_OK && loss == MT_LOSS_MSE)
        rc = regression(m, ds, comm, d, err);
    if (rc)
        return rc;
    size_t Ko = mt_shape_size(mt_model_out(m));
    d->K = Ko == 1 ? 2 : Ko;
    if (loss == MT_LOSS_SOFTMAX_CE)
        d->perplexity = exp(d->basic.loss);
    /* Any loss with int labels has classes: predictions are the argmax
     * (or, for one output, a logit above 0). */
    int usable = ds->labels != NULL;
    d->cm = mt_calloc(d->K * d->K, sizeof *d->cm);
    float *scores = mt_calloc(ds->n * Ko, sizeof *scores);
    rc = d->cm && scores ? MT_OK : MT_ENOMEM;
    if (rc == MT_OK && usable)
        rc = local_pass(m, ds, loss, d, scores);
    if (rc)
        mt_seterr(err, "evaluate: out of memory for scores");
    rc = mt_dist_agree(comm, rc, err);
    /* Every rank sees the same `usable`: it depends on the config only. */
    if (rc == MT_OK && usable) {
        MPI_Allreduce(MPI_IN_PLACE, d->cm, (int)(d->K * d->K),
                      MPI_UINT64_T, MPI_SUM, comm);
        rc = gather_auc(comm, ds, Ko, scores, d);
    }
    free(scores);
    return rc;
}
