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

double mt_loss_compute_weighted(mt_loss_kind kind, const float *out,
                                const int32_t *labels, const float *targets,
                                size_t B, size_t K, float scale, float *grad,
                                const float *cw)
{
    if (!cw)
        return mt_loss_compute(kind, out, labels, targets, B, K, scale,
                               grad);
    double total = 0.0;
    for (size_t n = 0; n < B; n++) {
        size_t c = labels ? (size_t)labels[n] : (targets[n * K] > 0.5f);
        float w = cw[c];
        total += w * mt_loss_compute(kind, out + n * K,
                                     labels ? labels + n : NULL,
                                     targets ? targets + n * K : NULL, 1, K,
                                     scale * w, grad ? grad + n * K : NULL);
    }
    return total;
}
