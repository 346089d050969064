/* The order of training samples in each epoch ([train] sampling).
 *
 * none: a seed- and epoch-keyed permutation of all positions.
 * oversample: every class present is drawn up to the size of the largest
 *   (imbalanced-learn's RandomOverSampler): a class of n_c samples comes
 *   floor(M / n_c) times whole, plus M mod n_c of its samples picked
 *   afresh each epoch, so repeats are as even as they can be.
 * undersample: every class present is cut to the size of the smallest
 *   (RandomUnderSampler), a different random subset each epoch.
 * Draws come from the counter RNG keyed by (seed, epoch, class), so the
 * epoch is the same on every rank and every rank count. */
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"

void mt_sampler_free(mt_sampler *s)
{
    mt_free(s->by_class);
    mt_free(s->start);
    mt_free(s->pool);
    mt_free(s->scratch);
    memset(s, 0, sizeof *s);
}

/* Positions grouped by class, ascending within a class (a counting
 * sort with fill pointers next (K)), and the per-class quota. */
static void group(mt_sampler *s, const int32_t *labels, size_t *next)
{
    for (size_t i = 0; i < s->n; i++)
        s->start[labels[i] + 1]++;
    size_t present = 0, largest = 0, smallest = SIZE_MAX;
    for (size_t c = 0; c < s->K; c++) {
        size_t nc = s->start[c + 1];
        if (nc) {
            present++;
            largest = nc > largest ? nc : largest;
            smallest = nc < smallest ? nc : smallest;
        }
        s->start[c + 1] += s->start[c];
    }
    memcpy(next, s->start, s->K * sizeof *next);
    for (size_t i = 0; i < s->n; i++)
        s->by_class[next[labels[i]]++] = i;
    s->largest = largest;
    s->per_class = s->mode == MT_SAMPLING_OVER ? largest : smallest;
    s->n_epoch = present * s->per_class;
}

int mt_sampler_init(mt_sampler *s, mt_sampling mode, const int32_t *labels,
                    size_t n, size_t K, char *err)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->n = s->n_epoch = n;
    s->K = K;
    if (mode == MT_SAMPLING_NONE)
        return MT_OK;
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= K) {
            mt_seterr(err, "sampler: label %d of sample %zu is outside "
                           "[0, %zu)",
                      (int)labels[i], i, K);
            return MT_EINVAL;
        }
    s->by_class = mt_calloc(n, sizeof *s->by_class);
    s->start = mt_calloc(K + 1, sizeof *s->start);
    size_t *next = mt_calloc(K, sizeof *next);
    if (!s->by_class || !s->start || !next) {
        mt_free(next);
        goto oom;
    }
    group(s, labels, next);
    mt_free(next);
    /* The scratch holds a class's permutation, then the epoch's. */
    s->pool = mt_calloc(s->n_epoch, sizeof *s->pool);
    s->scratch = mt_calloc(s->n_epoch > s->largest ? s->n_epoch : s->largest,
                           sizeof *s->scratch);
    if (!s->pool || !s->scratch)
        goto oom;
    return MT_OK;
oom:
    mt_sampler_free(s);
    mt_seterr(err, "sampler: out of memory for %zu samples", n);
    return MT_ENOMEM;
}

void mt_sampler_epoch(mt_sampler *s, uint64_t seed, uint64_t epoch,
                      size_t *out)
{
    if (s->mode == MT_SAMPLING_NONE) {
        mt_rng_permutation(out, s->n, seed, MT_RNG_SHUFFLE, epoch);
        return;
    }
    size_t k = 0;
    for (size_t c = 0; c < s->K; c++) {
        const size_t *rows = s->by_class + s->start[c];
        size_t nc = s->start[c + 1] - s->start[c];
        if (nc == 0)
            continue;
        for (size_t whole = s->per_class / nc; whole > 0; whole--)
            for (size_t j = 0; j < nc; j++)
                s->pool[k++] = rows[j];
        size_t rest = s->per_class % nc;
        if (rest) {
            mt_rng_permutation(s->scratch, nc, seed, MT_RNG_SAMPLE,
                               epoch * s->K + c);
            for (size_t j = 0; j < rest; j++)
                s->pool[k++] = rows[s->scratch[j]];
        }
    }
    mt_rng_permutation(s->scratch, s->n_epoch, seed, MT_RNG_SHUFFLE, epoch);
    for (size_t i = 0; i < s->n_epoch; i++)
        out[i] = s->pool[s->scratch[i]];
}
