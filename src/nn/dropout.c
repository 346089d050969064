/* Inverted dropout: in training, each element is kept with probability
 * 1 - rate and scaled by 1 / (1 - rate); in evaluation it is the identity.
 * The mask for element j of sample s at step t is a pure function of
 * (seed, layer, t, s, j), so a sample gets the same mask on any rank. */
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"

static int dropout_setup(mt_layer *l, char *err)
{
    if (!(l->spec.rate >= 0.0f && l->spec.rate < 1.0f)) {
        mt_seterr(err, "%s: rate must be in [0, 1), got %g", l->name,
                  (double)l->spec.rate);
        return MT_EINVAL;
    }
    l->out = l->in;
    return MT_OK;
}

static int dropout_alloc(mt_layer *l, char *err)
{
    return mt__layer_scratch(l, l->max_batch * mt_shape_size(l->in) *
                                    sizeof(float), err);
}

static void dropout_forward(mt_layer *l, const mt_step_ctx *ctx,
                            const float *x, float *y, size_t B)
{
    size_t S = mt_shape_size(l->in);
    float *mask = l->scratch;
    if (!ctx->train || l->spec.rate == 0.0f) {
        memcpy(y, x, B * S * sizeof(float));
        for (size_t i = 0; i < B * S; i++)
            mask[i] = 1.0f;
        return;
    }
    float keep = 1.0f - l->spec.rate, scale = 1.0f / keep;
    uint64_t key = ctx->seed + 0x9E3779B97F4A7C15ull * (l->index + 1);
    for (size_t n = 0; n < B; n++)
        for (size_t j = 0; j < S; j++) {
            float u = mt_rng_uniform(key, MT_RNG_DROPOUT, ctx->step,
                                     (ctx->sample0 + n) * S + j);
            size_t i = n * S + j;
            mask[i] = u < keep ? scale : 0.0f;
            y[i] = x[i] * mask[i];
        }
}

/* The mask, by sample: pipelines keep each micro-batch's rows. */
static size_t dropout_scratch_row(const mt_layer *l)
{
    return mt_shape_size(l->in);
}

MT_VECTOR(static, dropout_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    const float *mask = l->scratch;
    if (dx)
        for (size_t i = 0, n = B * mt_shape_size(l->in); i < n; i++)
            dx[i] = dy[i] * mask[i];
}

const mt_layer_ops mt__dropout_ops = {
    .kind_name = "dropout",
    .setup = dropout_setup,
    .alloc = dropout_alloc,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .scratch_row = dropout_scratch_row,
};
