/* Batch normalisation per channel (Ioffe and Szegedy 2015), over the batch
 * and the spatial positions: M = B H W values per channel. In training it
 * normalises with the batch's mean and biased variance and updates the
 * running statistics (running = (1 - momentum) running + momentum batch,
 * unbiased variance, as PyTorch); in evaluation it uses the running ones.
 * Scratch holds xhat (B, C, H, W) and invstd (C) for backward; its split
 * halves compute them again from x. */
#include <math.h>
#include <string.h>

#include "mpitrain/core.h"
#include "nn/internal.h"

static int bn_setup(mt_layer *l, char *err)
{
    if (l->spec.eps <= 0.0f || l->spec.momentum < 0.0f ||
        l->spec.momentum > 1.0f) {
        mt_seterr(err, "%s: need eps > 0 and momentum in [0, 1]", l->name);
        return MT_EINVAL;
    }
    size_t C = l->in.c;
    l->out = l->in;
    mt__tensor_def(&l->param[0], "gamma", 1, C, 0, 0, 0);
    mt__tensor_def(&l->param[1], "beta", 1, C, 0, 0, 0);
    l->n_param = 2;
    mt__tensor_def(&l->state[0], "running_mean", 1, C, 0, 0, 0);
    mt__tensor_def(&l->state[1], "running_var", 1, C, 0, 0, 0);
    l->n_state = 2;
    return MT_OK;
}

static int bn_alloc(mt_layer *l, char *err)
{
    return mt__layer_scratch(
        l, (l->max_batch * mt_shape_size(l->in) + l->in.c) * sizeof(float),
        err);
}

static void bn_init(mt_layer *l, uint64_t seed)
{
    for (size_t c = 0; c < l->in.c; c++) {
        l->param[0].data[c] = 1.0f;
        l->param[1].data[c] = 0.0f;
        l->state[0].data[c] = 0.0f;
        l->state[1].data[c] = 1.0f;
    }
}

/* The batch's mean of channel c and the sum of squared deviations from
 * it, in double: the forward's, and the split backward's again. */
static void batch_stats(const mt_layer *l, const float *x, size_t B,
                        size_t c, double *mean, double *s2)
{
    size_t C = l->in.c, HW = l->in.h * l->in.w;
    double s = 0.0, q = 0.0;
    for (size_t n = 0; n < B; n++) {
        const float *xc = x + (n * C + c) * HW;
        for (size_t i = 0; i < HW; i++)
            s += xc[i];
    }
    *mean = s / (double)(B * HW);
    for (size_t n = 0; n < B; n++) {
        const float *xc = x + (n * C + c) * HW;
        for (size_t i = 0; i < HW; i++)
            q += (xc[i] - *mean) * (xc[i] - *mean);
    }
    *s2 = q;
}

static float inv_std(const mt_layer *l, double var)
{
    return (float)(1.0 / sqrt(var + l->spec.eps));
}

static void bn_forward(mt_layer *l, const mt_step_ctx *ctx, const float *x,
                       float *y, size_t B)
{
    size_t C = l->in.c, HW = l->in.h * l->in.w, M = B * HW;
    float *xhat = l->scratch, *invstd = xhat + l->max_batch * C * HW;
    const float *gamma = l->param[0].data, *beta = l->param[1].data;
    float *rmean = l->state[0].data, *rvar = l->state[1].data;
    float mom = l->spec.momentum;
    for (size_t c = 0; c < C; c++) {
        double mean, var;
        if (ctx->train) {
            double s2;
            batch_stats(l, x, B, c, &mean, &s2);
            var = s2 / (double)M;
            double unbiased = M > 1 ? s2 / (double)(M - 1) : var;
            if (!ctx->recompute) {
                rmean[c] = (float)((1.0 - mom) * rmean[c] + mom * mean);
                rvar[c] = (float)((1.0 - mom) * rvar[c] + mom * unbiased);
            }
        } else {
            mean = rmean[c];
            var = rvar[c];
        }
        invstd[c] = inv_std(l, var);
        for (size_t n = 0; n < B; n++) {
            size_t o = (n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                xhat[o + i] = (float)((x[o + i] - mean) * invstd[c]);
                y[o + i] = gamma[c] * xhat[o + i] + beta[c];
            }
        }
    }
}

static void bn_backward(mt_layer *l, const float *x, const float *y,
                        const float *dy, float *dx, size_t B)
{
    size_t C = l->in.c, HW = l->in.h * l->in.w, M = B * HW;
    const float *xhat = l->scratch, *invstd = xhat + l->max_batch * C * HW;
    const float *gamma = l->param[0].data;
    for (size_t c = 0; c < C; c++) {
        double sdy = 0.0, sdyx = 0.0;
        for (size_t n = 0; n < B; n++) {
            size_t o = (n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                sdy += dy[o + i];
                sdyx += (double)dy[o + i] * xhat[o + i];
            }
        }
        l->param[0].grad[c] += (float)sdyx;
        l->param[1].grad[c] += (float)sdy;
        if (!dx)
            continue;
        double k = gamma[c] * invstd[c] / (double)M;
        for (size_t n = 0; n < B; n++) {
            size_t o = (n * C + c) * HW;
            for (size_t i = 0; i < HW; i++)
                dx[o + i] = (float)(k * ((double)M * dy[o + i] - sdy -
                                         xhat[o + i] * sdyx));
        }
    }
}

/* The split halves (a pipeline's B and W) read x and dy alone: the
 * training batch's statistics and xhat again from x, the same floats as
 * the forward's, so they give bn_backward's gradients to the bit. */
typedef struct channel {
    double mean, sdy, sdyx;
    float invstd;
} channel;

static channel channel_sums(const mt_layer *l, const float *x,
                            const float *dy, size_t B, size_t c)
{
    size_t C = l->in.c, HW = l->in.h * l->in.w;
    channel ch = {0};
    double s2;
    batch_stats(l, x, B, c, &ch.mean, &s2);
    ch.invstd = inv_std(l, s2 / (double)(B * HW));
    for (size_t n = 0; n < B; n++) {
        size_t o = (n * C + c) * HW;
        for (size_t i = 0; i < HW; i++) {
            float xh = (float)((x[o + i] - ch.mean) * ch.invstd);
            ch.sdy += dy[o + i];
            ch.sdyx += (double)dy[o + i] * xh;
        }
    }
    return ch;
}

static void bn_backward_input(mt_layer *l, const float *x, const float *y,
                              const float *dy, float *dx, size_t B)
{
    size_t C = l->in.c, HW = l->in.h * l->in.w, M = B * HW;
    const float *gamma = l->param[0].data;
    for (size_t c = 0; dx && c < C; c++) {
        channel ch = channel_sums(l, x, dy, B, c);
        double k = gamma[c] * ch.invstd / (double)M;
        for (size_t n = 0; n < B; n++) {
            size_t o = (n * C + c) * HW;
            for (size_t i = 0; i < HW; i++) {
                float xh = (float)((x[o + i] - ch.mean) * ch.invstd);
                dx[o + i] = (float)(k * ((double)M * dy[o + i] - ch.sdy -
                                         xh * ch.sdyx));
            }
        }
    }
}

static void bn_backward_weight(mt_layer *l, const float *x, const float *dy,
                               size_t B)
{
    for (size_t c = 0; c < l->in.c; c++) {
        channel ch = channel_sums(l, x, dy, B, c);
        l->param[0].grad[c] += (float)ch.sdyx;
        l->param[1].grad[c] += (float)ch.sdy;
    }
}

const mt_layer_ops mt__batchnorm_ops = {
    .kind_name = "batchnorm",
    .setup = bn_setup,
    .alloc = bn_alloc,
    .init_params = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .backward_input = bn_backward_input,
    .backward_weight = bn_backward_weight,
};
