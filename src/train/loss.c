#include "mpitrain/loss.h"

#include <math.h>
#include <string.h>

#include "mpitrain/core.h"

static const char *const names[] = {"softmax_ce", "sigmoid_bce", "mse", NULL};

const char *mt_loss_name(mt_loss_kind k)
{
    return (unsigned)k < 3 ? names[k] : NULL;
}

int mt_loss_from_name(const char *name)
{
    return mt_name_index(names, name);
}

double mt_loss_softmax_ce(const float *logits, const int32_t *labels,
                          size_t B, size_t K, float scale, float *grad)
{
    double total = 0.0;
    for (size_t n = 0; n < B; n++) {
        const float *z = logits + n * K;
        float zmax = z[0];
        for (size_t k = 1; k < K; k++)
            zmax = z[k] > zmax ? z[k] : zmax;
        double sum = 0.0;
        for (size_t k = 0; k < K; k++)
            sum += exp((double)z[k] - zmax);
        double logsum = log(sum) + zmax;
        size_t y = (size_t)labels[n];
        total += logsum - z[y];
        if (!grad)
            continue;
        for (size_t k = 0; k < K; k++) {
            double p = exp((double)z[k] - logsum);
            grad[n * K + k] = (float)(scale * (p - (k == y ? 1.0 : 0.0)));
        }
    }
    return total;
}

double mt_loss_sigmoid_bce(const float *logits, const float *targets,
                           size_t B, size_t K, float scale, float *grad)
{
    double total = 0.0;
    for (size_t i = 0; i < B * K; i++) {
        double z = logits[i], t = targets[i];
        /* log(1 + e^-|z|) + max(z, 0) - z t, which never overflows. */
        total += (fmax(z, 0.0) - z * t + log1p(exp(-fabs(z)))) / (double)K;
        if (grad)
            grad[i] = (float)(scale * (1.0 / (1.0 + exp(-z)) - t) /
                              (double)K);
    }
    return total;
}

double mt_loss_mse(const float *pred, const float *targets, size_t B,
                   size_t K, float scale, float *grad)
{
    double total = 0.0;
    for (size_t i = 0; i < B * K; i++) {
        double d = (double)pred[i] - targets[i];
        total += d * d / (double)K;
        if (grad)
            grad[i] = (float)(scale * 2.0 * d / (double)K);
    }
    return total;
}

double mt_loss_compute(mt_loss_kind kind, const float *out,
                       const int32_t *labels, const float *targets, size_t B,
                       size_t K, float scale, float *grad)
{
    switch (kind) {
    case MT_LOSS_SOFTMAX_CE:
        return mt_loss_softmax_ce(out, labels, B, K, scale, grad);
    case MT_LOSS_SIGMOID_BCE:
        return mt_loss_sigmoid_bce(out, targets, B, K, scale, grad);
    case MT_LOSS_MSE:
        return mt_loss_mse(out, targets, B, K, scale, grad);
    }
    return NAN;
}

/* log p_t and 1 - p_t of one softmax row; 1 - p_t as the sum of the
 * other classes' probabilities, which keeps it exact near p_t = 1. */
static void softmax_pt(const float *z, size_t y, size_t K, double *log_pt,
                       double *q, double *logsum)
{
    float zmax = z[0];
    for (size_t k = 1; k < K; k++)
        zmax = z[k] > zmax ? z[k] : zmax;
    double sum = 0.0, others = 0.0;
    for (size_t k = 0; k < K; k++) {
        double e = exp((double)z[k] - zmax);
        sum += e;
        others += k == y ? 0.0 : e;
    }
    *logsum = log(sum) + zmax;
    *log_pt = (double)z[y] - *logsum;
    *q = others / sum;
}

double mt_loss_softmax_focal(const float *logits, const int32_t *labels,
                             size_t B, size_t K, float gamma, float scale,
                             float *grad)
{
    double total = 0.0, gm = gamma;
    for (size_t n = 0; n < B; n++) {
        const float *z = logits + n * K;
        size_t y = (size_t)labels[n];
        double log_pt, q, logsum;
        softmax_pt(z, y, K, &log_pt, &q, &logsum);
        double qg = pow(q, gm);
        total += -qg * log_pt;
        if (!grad)
            continue;
        /* dL/dz_k = g (delta_ky - p_k), g = gamma q^(gamma-1) p_t log p_t
         * - q^gamma; at q = 0 every (delta - p) is 0 as well. */
        double g = q > 0.0 ? gm * pow(q, gm - 1.0) * exp(log_pt) * log_pt - qg
                           : 0.0;
        for (size_t k = 0; k < K; k++) {
            double p = exp((double)z[k] - logsum);
            grad[n * K + k] = (float)(scale * g * ((k == y) - p));
        }
    }
    return total;
}

double mt_loss_sigmoid_focal(const float *logits, const float *targets,
                             size_t B, size_t K, float gamma, float scale,
                             float *grad)
{
    double total = 0.0, gm = gamma;
    for (size_t i = 0; i < B * K; i++) {
        double z = logits[i], t = targets[i];
        double ce = fmax(z, 0.0) - z * t + log1p(exp(-fabs(z)));
        double p = 1.0 / (1.0 + exp(-z));
        double a = fmax(p + t - 2.0 * p * t, 0.0); /* 1 - p_t */
        double m = pow(a, gm);
        total += ce * m / (double)K;
        if (!grad)
            continue;
        /* d/dz [ce m] = (p - t) m + ce gamma a^(gamma-1) (1 - 2t) p (1-p) */
        double dm = a > 0.0 ? gm * pow(a, gm - 1.0) * (1.0 - 2.0 * t) * p *
                                  (1.0 - p)
                            : 0.0;
        grad[i] = (float)(scale * ((p - t) * m + ce * dm) / (double)K);
    }
    return total;
}

/* One plain or focal loss over B samples. */
static double loss_of(mt_loss_kind kind, const float *out,
                      const int32_t *labels, const float *targets, size_t B,
                      size_t K, float scale, float *grad, float gamma)
{
    if (gamma > 0.0f && kind == MT_LOSS_SOFTMAX_CE)
        return mt_loss_softmax_focal(out, labels, B, K, gamma, scale, grad);
    if (gamma > 0.0f && kind == MT_LOSS_SIGMOID_BCE)
        return mt_loss_sigmoid_focal(out, targets, B, K, gamma, scale, grad);
    return mt_loss_compute(kind, out, labels, targets, B, K, scale, grad);
}

double mt_loss_objective(mt_loss_kind kind, const float *out,
                         const int32_t *labels, const float *targets,
                         size_t B, size_t K, float scale, float *grad,
                         const mt_loss_opts *opts)
{
    float gamma = opts ? opts->focal_gamma : 0.0f;
    const float *cw = opts ? opts->class_w : NULL;
    if (!cw)
        return loss_of(kind, out, labels, targets, B, K, scale, grad, gamma);
    double total = 0.0;
    for (size_t n = 0; n < B; n++) {
        size_t c = labels ? (size_t)labels[n] : (targets[n * K] > 0.5f);
        float w = cw[c];
        total += w * loss_of(kind, out + n * K, labels ? labels + n : NULL,
                             targets ? targets + n * K : NULL, 1, K,
                             scale * w, grad ? grad + n * K : NULL, gamma);
    }
    return total;
}
