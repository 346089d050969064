#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/loss.h"
#include "mpitrain/train.h"

int mt_model_from_config(const mt_config *cfg, mt_shape in, size_t max_batch,
                         mt_model *m, char *err)
{
    mt_layer_spec *specs = NULL;
    size_t n = 0, bad = 0;
    int rc = mt_config_layer_specs(cfg, &specs, &n, err);
    if (rc)
        return rc;
    char msg[MT_ERR_LEN] = "";
    rc = mt_model_check(specs, n, in, &bad, msg);
    if (rc)
        /* Layers know their config line, not the file: name both. */
        mt_seterr(err, "%s:%d: %s", cfg->path, specs[bad].line, msg);
    else
        rc = mt_model_init(m, specs, n, in, max_batch, cfg->seed, err);
    free(specs);
    return rc;
}

static size_t argmax(const float *v, size_t K)
{
    size_t best = 0;
    for (size_t k = 1; k < K; k++)
        if (v[k] > v[best])
            best = k;
    return best;
}

long mt_count_correct(mt_loss_kind loss, const float *out,
                      const int32_t *labels, const float *targets, size_t B,
                      size_t K)
{
    long correct = 0;
    if (K == 1) {
        if (loss != MT_LOSS_SIGMOID_BCE)
            return -1;
        for (size_t n = 0; n < B; n++)
            correct += (out[n] > 0.0f) == (targets[n] > 0.5f);
        return correct;
    }
    if (!labels)
        return -1;
    for (size_t n = 0; n < B; n++)
        correct += argmax(out + n * K, K) == (size_t)labels[n];
    return correct;
}

int mt_evaluate(mt_model *m, const mt_dataset *ds, MPI_Comm comm,
                mt_loss_kind loss, mt_eval_result *r, char *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    size_t K = mt_shape_size(mt_model_out(m)), B = m->max_batch;
    int32_t *labels = mt_calloc(B, sizeof *labels);
    float *targets = mt_calloc(B * K, sizeof *targets);
    size_t *idx = mt_calloc(B, sizeof *idx);
    /* sums[0] loss, sums[1] correct, sums[2] samples, sums[3] ranks that
     * have an accuracy */
    double sums[4] = {0, 0, 0, 1};
    int rc = labels && targets && idx ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "evaluate: out of memory");
    mt_step_ctx ctx = {.train = 0};
    for (size_t i = 0; rc == MT_OK && i < ds->n; i += B) {
        size_t b = ds->n - i < B ? ds->n - i : B;
        for (size_t k = 0; k < b; k++)
            idx[k] = i + k;
        mt_dataset_gather(ds, idx, b, m->act[0], labels, targets, K);
        const float *out = mt_model_forward(m, &ctx, b);
        sums[0] += mt_loss_compute(loss, out, labels, targets, b, K, 1.0f,
                                   NULL);
        long c = mt_count_correct(loss, out, ds->labels ? labels : NULL,
                                  targets, b, K);
        if (c < 0)
            sums[3] = 0;
        else
            sums[1] += (double)c;
        sums[2] += (double)b;
    }
    free(labels);
    free(targets);
    free(idx);
    rc = mt_dist_agree(comm, rc, err);
    if (rc == MT_OK)
        rc = mt_dist_allreduce_sum_d(comm, sums, 4, err);
    if (rc)
        return rc;
    r->n = (size_t)sums[2];
    r->loss = r->n ? sums[0] / sums[2] : 0.0;
    r->accuracy = (sums[3] == size && r->n) ? sums[1] / sums[2] : -1.0;
    return MT_OK;
}
