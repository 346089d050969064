/* Element-wise activations, and flatten (which only renames the shape: NCHW
 * data is already (N, C H W) in memory). relu and leaky relu differentiate
 * through the input, sigmoid and tanh through their output. */
#include <math.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"

static int same_shape_setup(mt_layer *l, char *err)
{
    l->out = l->in;
    return MT_OK;
}

static int flatten_setup(mt_layer *l, char *err)
{
    l->out = (mt_shape){mt_shape_size(l->in), 1, 1};
    return MT_OK;
}

static size_t count(const mt_layer *l, size_t B)
{
    return B * mt_shape_size(l->in);
}

static void copy_forward(mt_layer *l, const mt_step_ctx *ctx,
                         const float *restrict x,
                         float *restrict y, size_t B)
{
    memcpy(y, x, count(l, B) * sizeof(float));
}

static void copy_backward(mt_layer *l, const float *x, const float *y,
                          const float *dy, float *dx, size_t B)
{
    if (dx)
        memcpy(dx, dy, count(l, B) * sizeof(float));
}

MT_VECTOR(static, relu_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *restrict x,
           float *restrict y, size_t B),
          (l, ctx, x, y, B))
{
    for (size_t i = 0, n = count(l, B); i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

MT_VECTOR(static, relu_backward,
          (mt_layer *l, const float *restrict x, const float *y,
           const float *restrict dy, float *restrict dx, size_t B),
          (l, x, y, dy, dx, B))
{
    /* A multiply by a 0/1 mask vectorizes; a conditional store does not. */
    if (dx)
        for (size_t i = 0, n = count(l, B); i < n; i++)
            dx[i] = dy[i] * (float)(x[i] > 0.0f);
}

MT_VECTOR(static, leaky_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *x, float *y,
           size_t B),
          (l, ctx, x, y, B))
{
    float a = l->spec.alpha;
    for (size_t i = 0, n = count(l, B); i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : a * x[i];
}

MT_VECTOR(static, leaky_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    float a = l->spec.alpha;
    if (dx)
        for (size_t i = 0, n = count(l, B); i < n; i++)
            dx[i] = x[i] > 0.0f ? dy[i] : a * dy[i];
}

MT_VECTOR(static, sigmoid_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *x, float *y,
           size_t B),
          (l, ctx, x, y, B))
{
    for (size_t i = 0, n = count(l, B); i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

MT_VECTOR(static, sigmoid_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    if (dx)
        for (size_t i = 0, n = count(l, B); i < n; i++)
            dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

MT_VECTOR(static, tanh_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *restrict x,
           float *restrict y, size_t B),
          (l, ctx, x, y, B))
{
    for (size_t i = 0, n = count(l, B); i < n; i++)
        y[i] = tanhf(x[i]);
}

MT_VECTOR(static, tanh_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    if (dx)
        for (size_t i = 0, n = count(l, B); i < n; i++)
            dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* No parameters: nothing to split (backward_input, backward_weight NULL);
 * backward needs only x or y (stateless_backward). */
#define STATELESS(name, set_up, fwd, bwd)                                    \
    {.kind_name = (name), .setup = (set_up), .forward = (fwd),               \
     .backward = (bwd), .stateless_backward = 1}
const mt_layer_ops mt__flatten_ops =
    STATELESS("flatten", flatten_setup, copy_forward, copy_backward);
const mt_layer_ops mt__relu_ops =
    STATELESS("relu", same_shape_setup, relu_forward, relu_backward);
const mt_layer_ops mt__leaky_relu_ops =
    STATELESS("leaky", same_shape_setup, leaky_forward, leaky_backward);
const mt_layer_ops mt__sigmoid_ops =
    STATELESS("sigmoid", same_shape_setup, sigmoid_forward,
              sigmoid_backward);
const mt_layer_ops mt__tanh_ops =
    STATELESS("tanh", same_shape_setup, tanh_forward, tanh_backward);
