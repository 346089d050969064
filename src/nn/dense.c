/* Fully connected layer: y = x W^T + b. (Not I and O: cblas.h pulls in
 * complex.h, whose I macro would swallow the name.)
 * B = batch, Ni = input features, No = output features. */
#include <cblas.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"

/* oneDNN's matmul (dense_onednn.c): for bf16 always, for float32 where
 * asked or auto finds it faster (AVX-512; alloc falls back to OpenBLAS
 * if oneDNN has no brgemm kernel for the CPU). */
static int wants_onednn(const mt_layer *l)
{
    return l->spec.bf16 || l->spec.dense_backend == MT_DENSE_ONEDNN ||
           (l->spec.dense_backend == MT_DENSE_AUTO && mt_onednn_version() &&
            mt_isa_current() == MT_ISA_AVX512);
}

static int dense_setup(mt_layer *l, char *err)
{
    size_t Ni = mt_shape_size(l->in), No = l->spec.units;
    if (No == 0) {
        mt_seterr(err, "%s: units must be > 0", l->name);
        return MT_EINVAL;
    }
    if (l->spec.inputs && l->spec.inputs != Ni) {
        mt_seterr(err,
                  "%s: inputs = %zu but the previous layer gives %zu "
                  "(%zux%zux%zu)",
                  l->name, l->spec.inputs, Ni, l->in.c, l->in.h, l->in.w);
        return MT_EINVAL;
    }
    l->out = (mt_shape){No, 1, 1};
    mt__tensor_def(&l->param[0], "weight", 2, No, Ni, 0, 0);
    mt__tensor_def(&l->param[1], "bias", 1, No, 0, 0, 0);
    l->n_param = 2;
    return wants_onednn(l) ? mt__dense_onednn(l, err) : MT_OK;
}

void mt__dense_init(mt_layer *l, uint64_t seed)
{
    mt__init_weights(&l->param[0], l->param[0].dims[1], l->param[0].dims[0],
                     l->spec.init, seed, l->index);
    memset(l->param[1].data, 0, l->param[1].n * sizeof(float));
}

MT_VECTOR(static, dense_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *x, float *y,
           size_t B),
          (l, ctx, x, y, B))
{
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    const float *W = l->param[0].data, *b = l->param[1].data;
    /* Start from the bias in every row, then accumulate x W^T on top. */
    for (size_t n = 0; n < B; n++)
        memcpy(y + n * No, b, No * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)No,
                (int)Ni, 1.0f, x, (int)Ni, W, (int)Ni, 1.0f, y, (int)No);
}

MT_VECTOR(, mt__dense_bias_grad,
          (const float *dy, float *db, size_t B, size_t No),
          (dy, db, B, No))
{
    for (size_t n = 0; n < B; n++)
        for (size_t o = 0; o < No; o++)
            db[o] += dy[n * No + o];
}

MT_VECTOR(static, dense_backward_weight,
          (mt_layer *l, const float *x, const float *dy, size_t B),
          (l, x, dy, B))
{
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    float *dW = l->param[0].grad, *db = l->param[1].grad;
    /* dW (No, Ni) += dy^T (No, B) x (B, Ni) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)No, (int)Ni,
                (int)B, 1.0f, dy, (int)No, x, (int)Ni, 1.0f, dW, (int)Ni);
    mt__dense_bias_grad(dy, db, B, No);
}

static void dense_backward_input(mt_layer *l, const float *x, const float *y,
                                 const float *dy, float *dx, size_t B)
{
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    (void)x;
    (void)y;
    /* dx (B, Ni) = dy (B, No) W (No, Ni) */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B,
                    (int)Ni, (int)No, 1.0f, dy, (int)No, l->param[0].data,
                    (int)Ni, 0.0f, dx, (int)Ni);
}

static void dense_backward(mt_layer *l, const float *x, const float *y,
                           const float *dy, float *dx, size_t B)
{
    dense_backward_weight(l, x, dy, B);
    dense_backward_input(l, x, y, dy, dx, B);
}

const mt_layer_ops mt__dense_ops = {
    .kind_name = "dense",
    .setup = dense_setup,
    .init_params = mt__dense_init,
    .forward = dense_forward,
    .backward = dense_backward,
    .backward_input = dense_backward_input,
    .backward_weight = dense_backward_weight,
    .stateless_backward = 1,
};
