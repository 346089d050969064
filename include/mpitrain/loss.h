/* mpitrain losses. Each returns the loss summed over the B samples (double,
 * so data-parallel ranks can add their parts exactly) and, if grad is not
 * NULL, writes grad = scale * d(summed loss)/d(output). The trainer passes
 * scale = 1 / global batch, which makes the gradients those of the mean. */
#ifndef MPITRAIN_LOSS_H
#define MPITRAIN_LOSS_H

#include <stddef.h>
#include <stdint.h>

typedef enum mt_loss_kind {
    MT_LOSS_SOFTMAX_CE, /* softmax + cross-entropy on int labels */
    MT_LOSS_SIGMOID_BCE, /* sigmoid + binary cross-entropy, mean over K */
    MT_LOSS_MSE          /* squared error, mean over K */
} mt_loss_kind;

/* Name as in the config ("softmax_ce", "sigmoid_bce", "mse"); NULL if bad. */
const char *mt_loss_name(mt_loss_kind k);
int mt_loss_from_name(const char *name); /* -1 if unknown */

/* logits (B, K), labels (B) in [0, K). Stable: subtracts the row maximum. */
double mt_loss_softmax_ce(const float *logits, const int32_t *labels,
                          size_t B, size_t K, float scale, float *grad);
/* logits and targets (B, K), targets in [0, 1]. Stable for any logit. */
double mt_loss_sigmoid_bce(const float *logits, const float *targets,
                           size_t B, size_t K, float scale, float *grad);
/* pred and targets (B, K). */
double mt_loss_mse(const float *pred, const float *targets, size_t B,
                   size_t K, float scale, float *grad);

/* Dispatch on kind; labels are used by softmax_ce, targets by the others. */
double mt_loss_compute(mt_loss_kind kind, const float *out,
                       const int32_t *labels, const float *targets, size_t B,
                       size_t K, float scale, float *grad);

/* The same with per-class weights cw (NULL: none): sample n's loss and
 * gradient are multiplied by cw[class of n] (its label; for one sigmoid
 * output, target > 0.5). The mean stays over the batch, as Keras'
 * class_weight does. */
double mt_loss_compute_weighted(mt_loss_kind kind, const float *out,
                                const int32_t *labels, const float *targets,
                                size_t B, size_t K, float scale, float *grad,
                                const float *cw);

#endif
