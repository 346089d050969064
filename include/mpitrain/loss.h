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

/* Focal loss (Lin et al. 2017), which shrinks the loss of samples the
 * model already gets right by (1 - p_t)^gamma; gamma 0 is plain
 * cross-entropy. Softmax: -(1 - p_t)^gamma log p_t with p_t the
 * probability of the label. Sigmoid (as torchvision's sigmoid_focal_loss,
 * without alpha): BCE * (1 - p_t)^gamma, p_t = p t + (1 - p)(1 - t),
 * mean over K. Same conventions as the losses above. */
double mt_loss_softmax_focal(const float *logits, const int32_t *labels,
                             size_t B, size_t K, float gamma, float scale,
                             float *grad);
double mt_loss_sigmoid_focal(const float *logits, const float *targets,
                             size_t B, size_t K, float gamma, float scale,
                             float *grad);

/* What the training objective adds to a loss: per-class weights (NULL:
 * none) and the focal exponent (0: none). */
typedef struct mt_loss_opts {
    const float *class_w; /* sample n's loss and gradient times
                             class_w[class of n] (its label; for one sigmoid
                             output, target > 0.5); the mean stays over the
                             batch, as Keras' class_weight */
    float focal_gamma;    /* softmax_ce and sigmoid_bce become focal */
} mt_loss_opts;

/* mt_loss_compute with the options (NULL: plain). */
double mt_loss_objective(mt_loss_kind kind, const float *out,
                         const int32_t *labels, const float *targets,
                         size_t B, size_t K, float scale, float *grad,
                         const mt_loss_opts *opts);

#endif
