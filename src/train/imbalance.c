/* Class imbalance. [train] class_weights: weights per class in the
 * training loss, given ("w0,w1,...") or "auto": n / (classes * count),
 * scikit-learn's "balanced", counted over the training split of every
 * rank. [train] sampling: over- or undersampling by class. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* Label counts of the training split: each rank counts the rows it owns
 * that are not held out (val marks the held-out rows), then the counts
 * are summed over the ranks. */
static int count_labels(trainer *t, size_t Kc, const uint8_t *val,
                        double *counts)
{
    for (size_t i = 0; i < t->shard.n; i++) {
        size_t row = t->shard.first + i, c = (size_t)t->shard.labels[i];
        if (!val[row] && c < Kc)
            counts[c] += 1.0;
    }
    mt_watch("class counts (MPI_Allreduce)");
    return MPI_Allreduce(MPI_IN_PLACE, counts, (int)Kc, MPI_DOUBLE, MPI_SUM,
                         t->comm) == MPI_SUCCESS
               ? MT_OK
               : MT_EIO;
}

static int parse_list(const mt_config *c, const char *text, float *w,
                      size_t Kc, char *err)
{
    size_t k = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v < 0.0 ||
            (*end && *end != ',')) {
            mt_seterr(err, "%s: [train] class_weights = '%s': value %zu is "
                           "not a non-negative number",
                      c->path, text, k + 1);
            return MT_EINVAL;
        }
        if (k < Kc)
            w[k] = (float)v;
        k++;
        p = *end ? end + 1 : end;
    }
    if (k != Kc) {
        mt_seterr(err, "%s: [train] class_weights has %zu values for %zu "
                       "classes",
                  c->path, k, Kc);
        return MT_EINVAL;
    }
    return MT_OK;
}

/* Both need class labels: int /y and a classification loss. */
static int need_labels(const trainer *t, const char *key, char *err)
{
    if (t->cfg->loss == MT_LOSS_MSE || !t->shard.labels) {
        mt_seterr(err, "%s: [train] %s needs int labels and softmax_ce or "
                       "sigmoid_bce",
                  t->cfg->path, key);
        return MT_EINVAL;
    }
    return MT_OK;
}

int mt__class_weights(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    if (!c->class_weights[0])
        return MT_OK;
    /* One sigmoid output is a two-class problem. */
    size_t Kc = t->K == 1 ? 2 : t->K;
    if (need_labels(t, "class_weights", err))
        return MT_EINVAL;
    int rc = MT_OK, automatic = strcmp(c->class_weights, "auto") == 0;
    t->class_w = mt_calloc(Kc, sizeof *t->class_w);
    if (!t->class_w)
        rc = MT_ENOMEM;
    else if (!automatic)
        rc = parse_list(c, c->class_weights, t->class_w, Kc, err);
    if (!automatic)
        return rc; /* local, and the same on every rank but for memory */
    /* auto counts over the ranks: allocation failures are agreed on first,
     * so that no rank waits alone in the sum. */
    double *counts = mt_calloc(Kc, sizeof *counts);
    uint8_t *val = mt_calloc(t->shard.total, 1);
    if (rc == MT_OK && (!counts || !val))
        rc = MT_ENOMEM;
    if (rc)
        mt_seterr(err, "class weights: out of memory");
    rc = mt_dist_agree(t->comm, rc, err);
    if (rc == MT_OK) {
        for (size_t i = t->n_train; i < t->shard.total; i++)
            val[t->order[i]] = 1;
        rc = count_labels(t, Kc, val, counts);
    }
    free(val);
    for (size_t k = 0; rc == MT_OK && k < Kc; k++)
        t->class_w[k] = counts[k] > 0.0
                            ? (float)((double)t->n_train /
                                      ((double)Kc * counts[k]))
                            : 0.0f;
    free(counts);
    return rc;
}

/* The labels of the training positions, on every rank: each rank owns a
 * share of the file rows, so the shares are gathered (4 bytes a row)
 * and looked up through the split's order. */
static int position_labels(trainer *t, int32_t *lab, char *err)
{
    size_t n = t->shard.total;
    int32_t *all = mt_calloc(n, sizeof *all);
    int *counts = mt_calloc((size_t)t->size, sizeof *counts);
    int *displ = mt_calloc((size_t)t->size, sizeof *displ);
    int rc = all && counts && displ ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "sampling: out of memory for %zu labels", n);
    rc = mt_dist_agree(t->comm, rc, err);
    if (rc == MT_OK) {
        for (int r = 0; r < t->size; r++) {
            size_t lo, hi;
            mt_dist_share(n, r, t->size, &lo, &hi);
            counts[r] = (int)(hi - lo);
            displ[r] = (int)lo;
        }
        mt_watch("sampler (MPI_Allgatherv of labels)");
        if (MPI_Allgatherv(t->shard.labels, (int)t->shard.n, MPI_INT32_T,
                           all, counts, displ, MPI_INT32_T,
                           t->comm) != MPI_SUCCESS) {
            mt_seterr(err, "sampling: gathering the labels failed");
            rc = MT_EIO;
        }
        for (size_t i = 0; rc == MT_OK && i < t->n_train; i++)
            lab[i] = all[t->order[i]];
    }
    free(all);
    free(counts);
    free(displ);
    return rc;
}

int mt__sampler_setup(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    mt_sampling mode = (mt_sampling)c->sampling;
    size_t Kc = t->K == 1 ? 2 : t->K;
    int32_t *lab = NULL;
    int rc = MT_OK;
    if (mode != MT_SAMPLING_NONE) {
        /* Checks that are the same on every rank come first. */
        if ((rc = need_labels(t, "sampling", err)))
            return rc;
        if (t->shard.total > INT_MAX) {
            mt_seterr(err, "%s: [train] sampling supports up to %d rows",
                      c->train, INT_MAX);
            return MT_EINVAL;
        }
        lab = mt_calloc(t->n_train, sizeof *lab);
        if (!lab)
            mt_seterr(err, "sampling: out of memory");
        rc = mt_dist_agree(t->comm, lab ? MT_OK : MT_ENOMEM, err);
        if (rc == MT_OK)
            rc = position_labels(t, lab, err);
    }
    if (rc == MT_OK)
        rc = mt_sampler_init(&t->sampler, mode, lab, t->n_train, Kc, err);
    free(lab);
    if (rc == MT_OK) {
        size_t n = t->sampler.n_epoch;
        t->epoch_perm = mt_calloc(n, sizeof(size_t));
        t->need = mt_calloc(n, sizeof(size_t));
        t->step_first = mt_calloc(mt__steps_per_epoch(t) + 1, sizeof(size_t));
        if (!t->epoch_perm || !t->need || !t->step_first) {
            mt_seterr(err, "out of memory for %zu sample indices",
                      t->sampler.n_epoch);
            rc = MT_ENOMEM;
        }
    }
    return mt_dist_agree(t->comm, rc, err);
}
