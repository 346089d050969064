#include "mpitrain/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

static double f1_of(double p, double r)
{
    return p + r > 0.0 ? 2.0 * p * r / (p + r) : 0.0;
}

void mt_report_free(mt_report *r) { mt_free(r->cls); }

int mt_report_from_confusion(const uint64_t *cm, size_t K, mt_report *r)
{
    memset(r, 0, sizeof *r);
    r->K = K;
    r->cls = mt_calloc(K, sizeof *r->cls);
    if (!r->cls)
        return MT_ENOMEM;
    for (size_t t = 0; t < K; t++)
        for (size_t p = 0; p < K; p++) {
            uint64_t c = cm[t * K + p];
            r->n += c;
            r->cls[t].support += c;
            r->cls[p].predicted += c;
            if (t == p)
                r->correct += c;
        }
    r->accuracy = ratio(r->correct, r->n);
    size_t present = 0;
    for (size_t k = 0; k < K; k++) {
        mt_class_stats *c = &r->cls[k];
        uint64_t tp = cm[k * K + k];
        c->precision = ratio(tp, c->predicted);
        c->recall = ratio(tp, c->support);
        c->f1 = f1_of(c->precision, c->recall);
        if (!c->support && !c->predicted)
            continue; /* a class absent from labels and predictions */
        present++;
        r->macro.precision += c->precision;
        r->macro.recall += c->recall;
        r->macro.f1 += c->f1;
        double w = ratio(c->support, r->n);
        r->weighted.precision += w * c->precision;
        r->weighted.recall += w * c->recall;
        r->weighted.f1 += w * c->f1;
    }
    if (present) {
        r->macro.precision /= (double)present;
        r->macro.recall /= (double)present;
        r->macro.f1 /= (double)present;
    }
    /* Single-label: every miss is one false positive and one false
     * negative, so micro precision = recall = F1 = accuracy. */
    r->micro = (mt_averages){r->accuracy, r->accuracy, r->accuracy};
    return MT_OK;
}

typedef struct scored {
    float s;
    uint8_t pos;
} scored;

/* Ascending; -Inf and +Inf are ordinary values at the ends. NaN never
 * reaches the sort (mt_roc_auc rejects it), but the order stays total
 * anyway, NaN last, so that qsort always sees a consistent comparison. */
static int by_score(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);
    return (x > y) - (x < y);
}

int mt_metric_improves(double v, double best, int minimize, double delta)
{
    if (isnan(v))
        return 0;
    if (isnan(best))
        return 1;
    return minimize ? v < best - delta : v > best + delta;
}

double mt_roc_auc(const float *scores, const uint8_t *positive, size_t n,
                  int *defined)
{
    *defined = 0;
    uint64_t P = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i]))
            return NAN; /* no rank for a NaN: undefined, as sklearn's error */
        P += positive[i] != 0;
    }
    uint64_t N = n - P;
    if (P == 0 || N == 0)
        return NAN;
    scored *v = malloc(n * sizeof *v);
    if (!v)
        return NAN;
    for (size_t i = 0; i < n; i++)
        v[i] = (scored){scores[i], positive[i] != 0};
    qsort(v, n, sizeof *v, by_score);
    /* Sum of the (1-based, tie-averaged) ranks of the positives. A run of
     * ties is [i, j); j always moves past i, so the loop ends whatever
     * the scores are. */
    double rank_sum = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        uint64_t pos = v[i].pos;
        while (j < n && by_score(&v[j], &v[i]) == 0)
            pos += v[j++].pos;
        rank_sum += (double)pos * ((double)(i + 1) + (double)j) / 2.0;
        i = j;
    }
    free(v);
    *defined = 1;
    return (rank_sum - (double)P * ((double)P + 1.0) / 2.0) /
           ((double)P * (double)N);
}

double mt_roc_auc_ovr(const float *scores, const int32_t *labels, size_t n,
                      size_t K, size_t *undefined)
{
    *undefined = 0;
    for (size_t i = 0; i < n * K; i++)
        if (isnan(scores[i])) {
            *undefined = K; /* not a mean over the classes without NaN */
            return NAN;
        }
    float *col = malloc((n ? n : 1) * sizeof *col);
    uint8_t *pos = malloc(n ? n : 1);
    double sum = 0.0;
    size_t used = 0;
    for (size_t k = 0; col && pos && k < K; k++) {
        for (size_t i = 0; i < n; i++) {
            col[i] = scores[i * K + k];
            pos[i] = (size_t)labels[i] == k;
        }
        int ok;
        double a = mt_roc_auc(col, pos, n, &ok);
        if (ok) {
            sum += a;
            used++;
        } else {
            (*undefined)++;
        }
    }
    free(col);
    free(pos);
    return used ? sum / (double)used : NAN;
}

uint64_t mt_top_k_correct(const float *scores, const int32_t *labels,
                          size_t n, size_t K, size_t k)
{
    uint64_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        const float *s = scores + i * K;
        float mine = s[labels[i]];
        size_t higher = 0;
        /* A NaN score of the label's class is never a hit; another
         * class's NaN is not higher than anything. */
        for (size_t c = 0; c < K; c++)
            higher += s[c] > mine;
        hits += higher < k && !isnan(mine);
    }
    return hits;
}

void mt_regression_add(const float *pred, const float *target, size_t n,
                       size_t K, double *sums)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < K; k++) {
            double t = target[i * K + k], d = (double)pred[i * K + k] - t;
            double *s = sums + 5 * k;
            s[0] += d * d;
            s[1] += fabs(d);
            s[2] += t;
            s[3] += t * t;
            s[4] += 1.0;
        }
}

void mt_regression_finish(const double *sums, size_t K, double *mse,
                          double *mae, double *r2)
{
    double se = 0.0, ae = 0.0, cnt = 0.0, r2sum = 0.0;
    for (size_t k = 0; k < K; k++) {
        const double *s = sums + 5 * k;
        se += s[0];
        ae += s[1];
        cnt += s[4];
        double tot = s[4] > 0.0 ? s[3] - s[2] * s[2] / s[4] : 0.0;
        r2sum += tot > 0.0 ? 1.0 - s[0] / tot : NAN;
    }
    *mse = cnt > 0.0 ? se / cnt : NAN;
    *mae = cnt > 0.0 ? ae / cnt : NAN;
    *r2 = K ? r2sum / (double)K : NAN;
}
