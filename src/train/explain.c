/* Permutation importance of input feature groups; see train.h. The
 * shuffle of each group is a counter-RNG permutation keyed by (seed,
 * group), so a result can be reproduced. */
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/train.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* Is feature j (of a sample's C H W) in group (gr, gc) of g x g blocks? */
static int in_block(const mt_shape *s, size_t j, size_t g, size_t gr,
                    size_t gc)
{
    size_t hw = j % (s->h * s->w), r = hw / s->w, c = hw % s->w;
    return r / g == gr && c / g == gc;
}

typedef struct job {
    mt_model *m;
    const mt_pipe_stage *pipe; /* NULL: m is whole here */
    const mt_dataset *ds;
    size_t n, S, K;
    float *x;      /* (n, S): the inputs */
    int32_t *y;    /* (n) */
    uint8_t *mask; /* (S): features of the group being permuted */
    size_t *perm;  /* (n) */
} job;

/* Accuracy over the n samples, with masked features taken from sample
 * perm[i] instead of i (mask NULL: the plain inputs), into *acc on the
 * rank that counts (with stages, the last). */
static int accuracy(job *J, const uint8_t *mask, double *acc, char *err)
{
    size_t B = mt__chunk_rows(J->m, J->pipe), correct = 0;
    int reads_x = !J->pipe || J->pipe->stage == 0, rc = MT_OK;
    for (size_t i = 0; rc == MT_OK && i < J->n; i += B) {
        size_t b = J->n - i < B ? J->n - i : B;
        float *in = J->m->act[0];
        if (reads_x)
            memcpy(in, J->x + i * J->S, b * J->S * sizeof(float));
        for (size_t k = 0; reads_x && mask && k < b; k++) {
            const float *src = J->x + J->perm[i + k] * J->S;
            for (size_t j = 0; j < J->S; j++)
                if (mask[j])
                    in[k * J->S + j] = src[j];
        }
        const float *out = NULL;
        rc = mt__forward_one(J->m, J->pipe, b, &out, err);
        long c = rc == MT_OK && mt_forward_counts(J->pipe)
                     ? mt_count_correct(J->K == 1 ? MT_LOSS_SIGMOID_BCE
                                                  : MT_LOSS_SOFTMAX_CE,
                                        out, J->y + i, NULL, b, J->K)
                     : 0;
        correct += c > 0 ? (size_t)c : 0;
    }
    *acc = (double)correct / (double)J->n;
    return rc;
}

/* The baseline and each group's importance, with J->mask set per group. */
static int importances(job *J, size_t g, uint64_t seed, size_t n_groups,
                       size_t cols, double *out, double *baseline, char *err)
{
    const mt_dataset *ds = J->ds;
    int image = ds->shape.h > 1 || ds->shape.w > 1;
    int rc = accuracy(J, NULL, baseline, err);
    for (size_t gi = 0; rc == MT_OK && gi < n_groups; gi++) {
        /* The other ranks wait meanwhile; this shows them progress. */
        mt_watch("explain (permutation importance)");
        for (size_t j = 0; j < J->S; j++)
            J->mask[j] = image ? in_block(&ds->shape, j, g, gi / cols,
                                          gi % cols)
                               : j / g == gi;
        mt_rng_permutation(J->perm, J->n, seed, MT_RNG_AUGMENT + 100, gi);
        double acc = 0.0;
        rc = accuracy(J, J->mask, &acc, err);
        out[gi] = *baseline - acc;
    }
    if (!J->pipe)
        return rc;
    /* The last stage counted: every stage gets its numbers. */
    rc = mt_dist_agree(J->pipe->comm, rc, err);
    if (rc == MT_OK) {
        out[n_groups] = *baseline;
        MPI_Bcast(out, (int)n_groups + 1, MPI_DOUBLE, J->pipe->stages - 1,
                  J->pipe->comm);
        *baseline = out[n_groups];
    }
    return rc;
}

int mt_permutation_importance(mt_model *m, const mt_pipe_stage *pipe,
                              const mt_dataset *ds, size_t n, size_t g,
                              uint64_t seed, double **out, size_t *n_groups,
                              size_t *rows, size_t *cols, double *baseline,
                              char *err)
{
    *out = NULL;
    if (!ds->labels) {
        mt_seterr(err, "%s: explain needs int labels in /y", ds->path);
        return MT_EINVAL;
    }
    g = g ? g : 1;
    n = n && n < ds->n ? n : ds->n;
    job J = {m, pipe, ds, n, mt_shape_size(ds->shape),
             mt_shape_size(mt_model_out(m)), NULL, NULL, NULL, NULL};
    int image = ds->shape.h > 1 || ds->shape.w > 1;
    *rows = image ? (ds->shape.h + g - 1) / g : 1;
    *cols = image ? (ds->shape.w + g - 1) / g : (J.S + g - 1) / g;
    *n_groups = *rows * *cols;
    J.x = mt_calloc(n * J.S, sizeof(float));
    J.y = mt_calloc(n, sizeof(int32_t));
    J.mask = mt_calloc(J.S, 1);
    J.perm = mt_calloc(n, sizeof(size_t));
    size_t *idx = mt_calloc(n, sizeof(size_t));
    *out = mt_calloc(*n_groups + 1, sizeof(double)); /* + the baseline */
    int rc = J.x && J.y && J.mask && J.perm && idx && *out ? MT_OK
                                                          : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "explain: out of memory for %zu samples", n);
    if (pipe) /* every stage goes on, or none */
        rc = mt_dist_agree(pipe->comm, rc, err);
    if (rc == MT_OK) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        mt_dataset_gather(ds, idx, n, J.x, J.y, NULL, J.K);
        rc = importances(&J, g, seed, *n_groups, *cols, *out, baseline, err);
    }
    if (rc)
        mt_free(*out);
    free(J.x);
    free(J.y);
    free(J.mask);
    free(J.perm);
    free(idx);
    return rc;
}
