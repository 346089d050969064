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
#include "mpitrain/watchdog.h"
#include "train/internal.h"

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

/* The mean of an ensemble's probabilities (softmax_ce, sigmoid_bce; the
 * mean output for other losses), turned back into outputs whose
 * probabilities they are, so the metrics below need not know: log p
 * for a softmax, the logit log(p / (1 - p)) for a sigmoid. */
typedef struct ensemble_ctx {
    size_t Ko;
    mt_loss_kind loss;
    float *p, *mean; /* (max_batch, Ko) */
    mt_chunk_fn fn;
    void *user;
} ensemble_ctx;

static void ensemble_chunk(void *user, const float *const *outs, size_t n,
                           const int32_t *labels, const float *targets,
                           size_t b, size_t first)
{
    ensemble_ctx *e = user;
    size_t nk = b * e->Ko;
    int probs = e->loss == MT_LOSS_SOFTMAX_CE || e->loss == MT_LOSS_SIGMOID_BCE;
    memset(e->mean, 0, nk * sizeof *e->mean);
    for (size_t j = 0; j < n; j++) {
        if (probs)
            to_probs(outs[j], e->p, b, e->Ko, e->loss);
        for (size_t i = 0; i < nk; i++)
            e->mean[i] += (probs ? e->p[i] : outs[j][i]) / (float)n;
    }
    for (size_t i = 0; probs && i < nk; i++) {
        float q = fminf(fmaxf(e->mean[i], 1e-30f), 1.0f - 1e-7f);
        e->mean[i] = e->loss == MT_LOSS_SOFTMAX_CE ? logf(q)
                                                   : logf(q / (1.0f - q));
    }
    e->fn(e->user, e->mean, labels, targets, b, first);
}

/* One model's chunks, or an ensemble's. */
static int forward_members(mt_model *members, size_t n,
                           const mt_pipe_stage *pipes, mt_loss_kind loss,
                           const mt_dataset *ds, mt_chunk_fn fn, void *user,
                           char *err)
{
    if (n == 1)
        return mt_forward_chunks(members, pipes, ds, fn, user, err);
    size_t Ko = mt_shape_size(mt_model_out(members)),
           B = members[0].max_batch;
    ensemble_ctx e = {Ko, loss, mt_calloc(B * Ko, sizeof(float)),
                      mt_calloc(B * Ko, sizeof(float)), fn, user};
    int rc = e.p && e.mean ? mt__forward_members(members, pipes, n, ds,
                                                 ensemble_chunk, &e, err)
                           : MT_ENOMEM;
    if (!e.p || !e.mean)
        mt_seterr(err, "evaluate: out of memory for the ensemble");
    free(e.p);
    free(e.mean);
    return rc;
}

typedef struct chunk_ctx {
    mt__eval_sums sums; /* loss and accuracy, from the same pass */
    mt_eval_detail *d;
    size_t Ko;       /* model outputs */
    float *scores;   /* (local n, Ko): probabilities, for the AUC */
    double *reg;     /* (5 Ko) regression sums, or NULL */
} chunk_ctx;

/* Per chunk: loss and accuracy sums, scores kept, confusion counts,
 * regression sums: one forward pass for all of eval's metrics. */
static void take_chunk(void *user, const float *out, const int32_t *labels,
                       const float *targets, size_t b, size_t first)
{
    chunk_ctx *c = user;
    size_t Ko = c->Ko, K = c->d->K;
    mt__eval_sums_add(&c->sums, out, labels, targets, b);
    if (c->reg)
        mt_regression_add(out, targets, b, Ko, c->reg);
    if (!labels)
        return;
    float *q = c->scores + first * Ko;
    to_probs(out, q, b, Ko, c->sums.loss);
    for (size_t k = 0; k < b; k++, q += Ko) {
        size_t pred = 0;
        if (Ko == 1)
            pred = q[0] > 0.5f;
        else
            for (size_t j = 1; j < Ko; j++)
                pred = q[j] > q[pred] ? j : pred;
        c->d->cm[(size_t)labels[k] * K + pred]++;
    }
}

/* Rank 0 gathers every rank's scores and labels (the first n of ds: none
 * on a pipeline stage that does not count), computes the AUCs and top-5
 * accuracy and sends them back, so that every rank holds the same
 * detail (early stopping decides on it everywhere).
 * Rank 0's buffers must exist before the gathers: the others learn of a
 * failed allocation through mt_dist_agree instead of sending into it. */
static int gather_auc(MPI_Comm comm, const mt_dataset *ds, size_t local,
                      size_t Ko, const float *scores, mt_eval_detail *d,
                      char *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int n = (int)local, *counts = NULL, *displ = NULL, total = 0, rc;
    float *all = NULL;
    int32_t *lab = NULL;
    if (rank == 0) {
        counts = mt_calloc((size_t)size, sizeof *counts);
        displ = mt_calloc((size_t)size, sizeof *displ);
    }
    rc = rank == 0 && (!counts || !displ) ? MT_ENOMEM : MT_OK;
    if (rc)
        mt_seterr(err, "evaluate: out of memory for the AUC");
    if ((rc = mt_dist_agree(comm, rc, err)))
        goto out;
    MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, comm);
    for (int q = 0; rank == 0 && q < size; q++) {
        displ[q] = total;
        total += counts[q];
    }
    if (rank == 0) {
        all = mt_calloc((size_t)total * Ko, sizeof *all);
        lab = mt_calloc((size_t)total, sizeof *lab);
        rc = all && lab ? MT_OK : MT_ENOMEM;
        if (rc)
            mt_seterr(err, "evaluate: out of memory for %d scores", total);
    }
    if ((rc = mt_dist_agree(comm, rc, err)))
        goto out;
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
    double back[3] = {d->auc, (double)d->auc_undefined, d->top5};
    MPI_Bcast(back, 3, MPI_DOUBLE, 0, comm);
    d->auc = back[0];
    d->auc_undefined = (size_t)back[1];
    d->top5 = back[2];
out:
    free(all);
    free(lab);
    free(counts);
    free(displ);
    return rc;
}

static int evaluate_members(mt_model *members, size_t n,
                            const mt_pipe_stage *pipes, const mt_dataset *ds,
                            MPI_Comm comm, mt_loss_kind loss,
                            mt_eval_detail *d, char *err)
{
    mt_model *m = members;
    memset(d, 0, sizeof *d);
    d->auc = d->top5 = d->perplexity = NAN;
    d->mse = d->mae = d->r2 = NAN;
    size_t Ko = mt_shape_size(mt_model_out(m));
    d->K = Ko == 1 ? 2 : Ko;
    /* Any loss with int labels has classes: predictions are the argmax
     * (or, for one output, a probability above 0.5). Every rank sees the
     * same: it depends on the file's /y and the config only. */
    int classes = ds->labels != NULL, regression = loss == MT_LOSS_MSE;
    chunk_ctx c = {MT__EVAL_SUMS(loss, Ko), d, Ko, NULL, NULL};
    d->cm = mt_calloc(d->K * d->K, sizeof *d->cm);
    c.scores = mt_calloc(ds->n * Ko, sizeof *c.scores);
    c.reg = regression ? mt_calloc(5 * Ko, sizeof *c.reg) : NULL;
    int rc = d->cm && c.scores && (!regression || c.reg) ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "evaluate: out of memory for scores");
    if (rc == MT_OK)
        rc = forward_members(members, n, pipes, loss, ds, take_chunk, &c,
                             err);
    rc = mt_dist_agree(comm, rc, err);
    if (rc == MT_OK)
        rc = mt__eval_sums_reduce(comm, &c.sums, &d->basic, err);
    if (rc == MT_OK && loss == MT_LOSS_SOFTMAX_CE)
        d->perplexity = exp(d->basic.loss);
    if (rc == MT_OK && regression) {
        MPI_Allreduce(MPI_IN_PLACE, c.reg, (int)(5 * Ko), MPI_DOUBLE,
                      MPI_SUM, comm);
        mt_regression_finish(c.reg, Ko, &d->mse, &d->mae, &d->r2);
    }
    if (rc == MT_OK && classes) {
        mt_watch("evaluation metrics (MPI_Gatherv of scores)");
        MPI_Allreduce(MPI_IN_PLACE, d->cm, (int)(d->K * d->K),
                      MPI_UINT64_T, MPI_SUM, comm);
        rc = gather_auc(comm, ds, mt_forward_counts(pipes) ? ds->n : 0, Ko,
                        c.scores, d, err);
    }
    free(c.scores);
    free(c.reg);
    return rc;
}

int mt_evaluate_detail(mt_model *m, const mt_pipe_stage *pipe,
                       const mt_dataset *ds, MPI_Comm comm,
                       mt_loss_kind loss, mt_eval_detail *d, char *err)
{
    return evaluate_members(m, 1, pipe, ds, comm, loss, d, err);
}

int mt_evaluate_ensemble(mt_model *members, const mt_pipe_stage *pipes,
                         size_t n, const mt_dataset *ds, MPI_Comm comm,
                         mt_loss_kind loss, mt_eval_detail *d, char *err)
{
    return evaluate_members(members, n, pipes, ds, comm, loss, d, err);
}
