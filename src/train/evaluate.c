#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/loss.h"
#include "mpitrain/train.h"
#include "train/internal.h"

/* The configured layers; with values, their initial parameters. */
static int from_config(const mt_config *cfg, mt_shape in, size_t max_batch,
                       int values, mt_model *m, char *err)
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
    else if (values)
        rc = mt_model_init(m, specs, n, in, max_batch, cfg->seed, err);
    else
        rc = mt_model_build(m, specs, n, in, max_batch, err);
    free(specs);
    return rc;
}

int mt_model_from_config(const mt_config *cfg, mt_shape in, size_t max_batch,
                         mt_model *m, char *err)
{
    return from_config(cfg, in, max_batch, 1, m, err);
}

int mt_model_shape_from_config(const mt_config *cfg, mt_shape in,
                               size_t max_batch, mt_model *m, char *err)
{
    return from_config(cfg, in, max_batch, 0, m, err);
}

/* The first largest of v, or K (no class) if an output is NaN: a NaN
 * row is never counted correct. */
static size_t argmax(const float *v, size_t K)
{
    size_t best = 0;
    for (size_t k = 0; k < K; k++) {
        if (isnan(v[k]))
            return K;
        if (v[k] > v[best])
            best = k;
    }
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
            correct += !isnan(out[n]) &&
                       (out[n] > 0.0f) == (targets[n] > 0.5f);
        return correct;
    }
    if (!labels)
        return -1;
    for (size_t n = 0; n < B; n++)
        correct += argmax(out + n * K, K) == (size_t)labels[n];
    return correct;
}

int mt_forward_counts(const mt_pipe_stage *pipe)
{
    return !pipe || pipe->stage == pipe->stages - 1;
}

size_t mt__chunk_rows(const mt_model *m, const mt_pipe_stage *pipe)
{
    return pipe && pipe->chunk && pipe->chunk < m->max_batch ? pipe->chunk
                                                            : m->max_batch;
}

int mt__forward_one(mt_model *m, const mt_pipe_stage *pipe, size_t b,
                    const float **out, char *err)
{
    mt_step_ctx ctx = {.train = 0};
    if (!pipe) {
        *out = mt_model_forward(m, &ctx, b);
        return MT_OK;
    }
    return mt_pipe_forward(pipe, b, out, err);
}

int mt__forward_members(mt_model *members, const mt_pipe_stage *pipes,
                        size_t n, const mt_dataset *ds, mt__members_fn fn,
                        void *user, char *err)
{
    mt_model *m = members;
    size_t K = mt_shape_size(mt_model_out(m)), B = mt__chunk_rows(m, pipes),
           in = mt_shape_size(m->in);
    int32_t *labels = mt_calloc(B, sizeof *labels);
    float *targets = mt_calloc(B * K, sizeof *targets);
    size_t *idx = mt_calloc(B, sizeof *idx);
    const float **outs = mt_calloc(n, sizeof *outs);
    int rc = labels && targets && idx && outs ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "evaluate: out of memory for chunks of %zu samples",
                  B);
    /* Every stage of a replica holds the same rows, so all run the same
     * chunks, member after member; stage 0 reads the inputs, the last the
     * labels. */
    const mt_pipe_stage *pipe = pipes;
    int counts = mt_forward_counts(pipe), reads_x = !pipe || pipe->stage == 0;
    for (size_t i = 0; rc == MT_OK && i < ds->n; i += B) {
        size_t b = ds->n - i < B ? ds->n - i : B;
        for (size_t k = 0; k < b; k++)
            idx[k] = i + k;
        if (reads_x || counts)
            mt_dataset_gather(ds, idx, b, reads_x ? m->act[0] : NULL, labels,
                              targets, K);
        for (size_t j = 0; rc == MT_OK && j < n; j++) {
            if (j && reads_x) /* member 0 read the chunk; the others copy */
                memcpy(members[j].act[0], m->act[0], b * in * sizeof(float));
            rc = mt__forward_one(&members[j], pipes ? &pipes[j] : NULL, b,
                               &outs[j], err);
        }
        if (rc == MT_OK && counts)
            fn(user, outs, n, ds->labels ? labels : NULL, targets, b, i);
    }
    free(labels);
    free(targets);
    free(idx);
    free(outs);
    return rc;
}

typedef struct one_member {
    mt_chunk_fn fn;
    void *user;
} one_member;

static void one_chunk(void *user, const float *const *outs, size_t n,
                      const int32_t *labels, const float *targets, size_t b,
                      size_t first)
{
    one_member *o = user;
    o->fn(o->user, outs[0], labels, targets, b, first);
}

int mt_forward_chunks(mt_model *m, const mt_pipe_stage *pipe,
                      const mt_dataset *ds, mt_chunk_fn fn, void *user,
                      char *err)
{
    one_member o = {fn, user};
    return mt__forward_members(m, pipe, 1, ds, one_chunk, &o, err);
}

void mt__eval_sums_add(mt__eval_sums *e, const float *out,
                       const int32_t *labels, const float *targets,
                       size_t b)
{
    e->v[0] += mt_loss_compute(e->loss, out, labels, targets, b, e->K, 1.0f,
                               NULL);
    long c = mt_count_correct(e->loss, out, labels, targets, b, e->K);
    if (c < 0)
        e->v[3] = 0;
    else
        e->v[1] += (double)c;
    e->v[2] += (double)b;
    mt__count_nonfinite(out, b * e->K, &e->v[4], &e->v[5]);
}

void mt__count_nonfinite(const float *v, size_t n, double *nan, double *inf)
{
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        a += isnan(v[i]) != 0;
        b += isinf(v[i]) != 0;
    }
    *nan += (double)a;
    *inf += (double)b;
}

int mt__eval_sums_reduce(MPI_Comm comm, mt__eval_sums *e, mt_eval_result *r,
                         char *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    int rc = mt_dist_allreduce_sum_d(comm, e->v, 6, err);
    if (rc)
        return rc;
    if (e->v[4] > 0 || e->v[5] > 0) {
        mt_seterr(err, "outputs are not finite: %.0f NaN and %.0f infinite "
                       "of %.0f outputs (%.0f samples)",
                  e->v[4], e->v[5], e->v[2] * (double)e->K, e->v[2]);
        return MT_ENUMERIC;
    }
    r->n = (size_t)e->v[2];
    r->loss = r->n ? e->v[0] / e->v[2] : 0.0;
    r->accuracy = (e->v[3] == size && r->n) ? e->v[1] / e->v[2] : -1.0;
    return MT_OK;
}

static void add_chunk(void *user, const float *out, const int32_t *labels,
                      const float *targets, size_t b, size_t first)
{
    mt__eval_sums_add(user, out, labels, targets, b);
}

int mt_evaluate(mt_model *m, const mt_pipe_stage *pipe, const mt_dataset *ds,
                MPI_Comm comm, mt_loss_kind loss, mt_eval_result *r,
                char *err)
{
    mt__eval_sums e = MT__EVAL_SUMS(loss, mt_shape_size(mt_model_out(m)));
    int rc = mt_forward_chunks(m, pipe, ds, add_chunk, &e, err);
    rc = mt_dist_agree(comm, rc, err);
    return rc ? rc : mt__eval_sums_reduce(comm, &e, r, err);
}
