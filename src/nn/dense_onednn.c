/* Dense layers through oneDNN's matmul ([dense] backend = onednn, auto
 * on AVX-512; always for [train] precision = bf16). In float32 its
 * brgemm kernels beat OpenBLAS's sgemm on our shapes where AVX-512 is
 * in use (one Zen 4 core, 64 x 784 x 256: 219 against 264 us); in bf16
 * they take bfloat16 inputs and sum in float32, on CPUs with bf16
 * kernels (AVX512_BF16's vdpbf16ps, or AMX): 120 us. Parameters,
 * gradients and optimizer state stay float32; in bf16 each call rounds
 * x, W and dy to nearest even into the layer's buffers.
 * B = batch, Ni = input features, No = output features.
 *
 *   y  (B, No)   = x (B, Ni) W^T (Ni, No) + b             forward
 *   dx (B, Ni)   = dy (B, No) W (No, Ni)                  input gradient
 *   dW (No, Ni) += dy^T (No, B) x (B, Ni)                weight gradient
 *
 * The transposes are strides of plain memory, no copies; dW accumulates
 * through a sum post-op. In bf16, W is rounded in forward and kept for
 * the input gradient: parameters do not change between a batch's
 * forward and its backward. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/bf16.h"
#include "nn/internal.h"

#ifdef HAVE_ONEDNN
#include <dnnl.h>

#include "nn/onednn.h"

/* x in bf16 into h, if h (precision = bf16): h; else x as it is. */
static const void *rounded(const float *x, uint16_t *h, size_t n)
{
    if (!h)
        return x;
    mt__bf16_pack(h, x, n);
    return h;
}

enum mem { F_X, F_W, F_B, F_Y, D_DY, D_W, D_DX, W_DY, W_X, W_DW, MEMS };

typedef struct mplan {
    size_t B; /* 0: unused */
    int threads;
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    dnnl_memory_t m[MEMS]; /* plain memory; data handles set per call */
} mplan;

#define PLANS 4

typedef struct mstate {
    mplan plans[PLANS];
    unsigned next;
    /* bf16: (max_batch, Ni), (No, Ni), (max_batch, No); else NULL */
    uint16_t *x16, *w16, *dy16;
    char impl[64]; /* "oneDNN matmul bf16 (brg:...)" */
} mstate;

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static void plan_free(mplan *p)
{
    dnnl_primitive_t prims[] = {p->fwd, p->bwd_data, p->bwd_weights};
    for (int i = 0; i < 3; i++)
        if (prims[i])
            dnnl_primitive_destroy(prims[i]);
    for (int i = 0; i < MEMS; i++)
        if (p->m[i])
            dnnl_memory_destroy(p->m[i]);
    memset(p, 0, sizeof *p);
}

#define TRY(call)                                                         \
    do {                                                                  \
        if ((s = (call)) != dnnl_success)                                 \
            goto out;                                                     \
    } while (0)

/* A rows x cols matrix of type t, rows rs elements apart and columns cs
 * (a transpose is rs = 1). */
static dnnl_status_t matrix(dnnl_memory_desc_t *md, size_t rows,
                            size_t cols, dnnl_data_type_t t, size_t rs,
                            size_t cs)
{
    dnnl_dims_t d = {(dnnl_dim_t)rows, (dnnl_dim_t)cols};
    dnnl_dims_t st = {(dnnl_dim_t)rs, (dnnl_dim_t)cs};
    return dnnl_memory_desc_init_by_strides(md, 2, d, t, st);
}

/* The matmul src x wei (+ bias) into dst, adding to dst if accumulate;
 * its kernel's name into impl (len bytes) if impl. */
static dnnl_status_t matmul(dnnl_primitive_t *prim,
                            const dnnl_memory_desc_t *src,
                            const dnnl_memory_desc_t *wei,
                            const dnnl_memory_desc_t *bias,
                            const dnnl_memory_desc_t *dst, int accumulate,
                            char *impl, size_t len)
{
    dnnl_status_t s;
    dnnl_matmul_desc_t d;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    TRY(dnnl_matmul_desc_init(&d, src, wei, bias, dst));
    if (accumulate) {
        TRY(dnnl_post_ops_create(&po));
        TRY(dnnl_post_ops_append_sum(po, 1.0f));
        TRY(dnnl_primitive_attr_create(&attr));
        TRY(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    TRY(dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL));
    const char *name = NULL;
    if (impl && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0,
                                          &name) == dnnl_success)
        snprintf(impl, len, "%s", name);
    TRY(dnnl_primitive_create(prim, pd));
out:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (po)
        dnnl_post_ops_destroy(po);
    return s;
}

/* The three primitives for batch B and their memories. */
static dnnl_status_t plan_make(const mt_layer *l, size_t B, mplan *p,
                               char *impl, size_t len)
{
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    const dnnl_data_type_t f = dnnl_f32, h = l->spec.bf16 ? dnnl_bf16 : f;
    dnnl_memory_desc_t md[MEMS];
    dnnl_status_t s;
    p->threads = mt__onednn_threads();
    TRY(matrix(&md[F_X], B, Ni, h, Ni, 1));
    TRY(matrix(&md[F_W], Ni, No, h, 1, Ni)); /* W^T */
    TRY(matrix(&md[F_B], 1, No, f, No, 1));
    TRY(matrix(&md[F_Y], B, No, f, No, 1));
    TRY(matrix(&md[D_DY], B, No, h, No, 1));
    TRY(matrix(&md[D_W], No, Ni, h, Ni, 1));
    TRY(matrix(&md[D_DX], B, Ni, f, Ni, 1));
    TRY(matrix(&md[W_DY], No, B, h, 1, No)); /* dy^T */
    TRY(matrix(&md[W_X], B, Ni, h, Ni, 1));
    TRY(matrix(&md[W_DW], No, Ni, f, Ni, 1));
    TRY(matmul(&p->fwd, &md[F_X], &md[F_W], &md[F_B], &md[F_Y], 0, impl,
               len));
    TRY(matmul(&p->bwd_data, &md[D_DY], &md[D_W], NULL, &md[D_DX], 0, NULL,
               0));
    TRY(matmul(&p->bwd_weights, &md[W_DY], &md[W_X], NULL, &md[W_DW], 1,
               NULL, 0));
    for (int i = 0; i < MEMS; i++)
        TRY(dnnl_memory_create(&p->m[i], &md[i], engine, DNNL_MEMORY_NONE));
    p->B = B;
out:
    if (s != dnnl_success)
        plan_free(p);
    return s;
}

/* The plan for batch B, made if this layer has not seen B lately (a
 * failure after alloc made max_batch's is out of memory or a oneDNN
 * defect: nothing to go on with). */
static mplan *plan_for(mt_layer *l, size_t B)
{
    mstate *st = l->scratch;
    int threads = mt__onednn_threads();
    for (int i = 0; i < PLANS; i++)
        if (st->plans[i].B == B && st->plans[i].threads == threads)
            return &st->plans[i];
    mplan *p = &st->plans[st->next];
    st->next = (st->next + 1) % PLANS;
    plan_free(p);
    dnnl_status_t s = plan_make(l, B, p, NULL, 0);
    if (s != dnnl_success) {
        fprintf(stderr, "mpitrain: %s: oneDNN could not set up batch %zu "
                        "(status %d)\n", l->name, B, (int)s);
        abort();
    }
    return p;
}

static void run(const mt_layer *l, dnnl_primitive_t prim, mplan *p,
                const int *which, const int *roles, int n)
{
    dnnl_exec_arg_t args[4];
    for (int i = 0; i < n; i++)
        args[i] = (dnnl_exec_arg_t){roles[i], p->m[which[i]]};
    dnnl_status_t s = dnnl_primitive_execute(prim, stream, n, args);
    if (s == dnnl_success)
        s = dnnl_stream_wait(stream);
    if (s != dnnl_success) {
        fprintf(stderr, "mpitrain: %s: a oneDNN matmul failed (status %d)\n",
                l->name, (int)s);
        abort();
    }
}

static void bind(mplan *p, int which, const void *ptr)
{
    dnnl_memory_set_data_handle(p->m[which], (void *)ptr);
}

static void onednn_forward(mt_layer *l, const mt_step_ctx *ctx,
                         const float *x, float *y, size_t B)
{
    (void)ctx;
    mstate *st = l->scratch;
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    mplan *p = plan_for(l, B);
    bind(p, F_X, rounded(x, st->x16, B * Ni));
    bind(p, F_W, rounded(l->param[0].data, st->w16, No * Ni));
    bind(p, F_B, l->param[1].data);
    bind(p, F_Y, y);
    static const int which[] = {F_X, F_W, F_B, F_Y};
    static const int roles[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS,
                                DNNL_ARG_BIAS, DNNL_ARG_DST};
    run(l, p->fwd, p, which, roles, 4);
}

/* dx from dy (bf16: dy16 as it is and forward's W16). */
static void input_grad(mt_layer *l, mplan *p, const float *dy, float *dx)
{
    mstate *st = l->scratch;
    bind(p, D_DY, st->dy16 ? (const void *)st->dy16 : dy);
    bind(p, D_W, st->w16 ? (const void *)st->w16 : l->param[0].data);
    bind(p, D_DX, dx);
    static const int which[] = {D_DY, D_W, D_DX};
    static const int roles[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS,
                                DNNL_ARG_DST};
    run(l, p->bwd_data, p, which, roles, 3);
}

/* dW and db from x and dy (bf16: x16 and dy16 as they are; dy for the
 * bias). */
static void weight_grads(mt_layer *l, mplan *p, const float *x,
                         const float *dy, size_t B)
{
    mstate *st = l->scratch;
    bind(p, W_DY, st->dy16 ? (const void *)st->dy16 : dy);
    bind(p, W_X, st->x16 ? (const void *)st->x16 : x);
    bind(p, W_DW, l->param[0].grad);
    static const int which[] = {W_DY, W_X, W_DW};
    static const int roles[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS,
                                DNNL_ARG_DST};
    run(l, p->bwd_weights, p, which, roles, 3);
    mt__dense_bias_grad(dy, l->param[1].grad, B, l->param[1].n);
}

static void onednn_backward_input(mt_layer *l, const float *x, const float *y,
                                const float *dy, float *dx, size_t B)
{
    (void)x, (void)y;
    if (!dx)
        return;
    mstate *st = l->scratch;
    rounded(dy, st->dy16, B * l->param[0].dims[0]);
    input_grad(l, plan_for(l, B), dy, dx);
}

/* Later, from copies of x and dy (a pipeline's W): x16 made again. */
static void onednn_backward_weight(mt_layer *l, const float *x,
                                 const float *dy, size_t B)
{
    mstate *st = l->scratch;
    rounded(x, st->x16, B * l->param[0].dims[1]);
    rounded(dy, st->dy16, B * l->param[0].dims[0]);
    weight_grads(l, plan_for(l, B), x, dy, B);
}

static void onednn_backward(mt_layer *l, const float *x, const float *y,
                          const float *dy, float *dx, size_t B)
{
    (void)y;
    mstate *st = l->scratch;
    rounded(x, st->x16, B * l->param[0].dims[1]);
    rounded(dy, st->dy16, B * l->param[0].dims[0]);
    mplan *p = plan_for(l, B);
    weight_grads(l, p, x, dy, B);
    if (dx)
        input_grad(l, p, dy, dx);
}

static void onednn_release(mt_layer *l)
{
    mstate *st = l->scratch;
    if (!st)
        return;
    for (int i = 0; i < PLANS; i++)
        plan_free(&st->plans[i]);
    free(st->x16);
    free(st->w16);
    free(st->dy16);
    memset(st, 0, sizeof *st);
}

int mt__onednn_bf16_check(const mt_layer *l, const char *impl, char *err)
{
    if (strstr(impl, "bf16") || strstr(impl, "amx"))
        return MT_OK;
    mt_seterr(err, "%s: precision = bf16 needs oneDNN's bf16 kernels, which "
                   "need a CPU with AVX512_BF16 or AMX (and MPITRAIN_ISA "
                   "avx512 or unset); this one gets %s",
              l->name, *impl ? impl : "no oneDNN kernel at all");
    return MT_EINVAL;
}

/* oneDNN's brgemm kernels (AVX-512 and up); elsewhere it runs its
 * gemm:jit, slower than OpenBLAS (AVX2: 1.2-2.1x; bench/README.md). */
static int fast_f32(const char *impl) { return strncmp(impl, "brg", 3) == 0; }

static int onednn_alloc(mt_layer *l, char *err)
{
    size_t Ni = l->param[0].dims[1], No = l->param[0].dims[0];
    int half = l->spec.bf16, rc = mt__layer_scratch(l, sizeof(mstate), err);
    if (rc)
        return rc;
    mstate *st = l->scratch;
    if (half) {
        st->x16 = malloc(l->max_batch * Ni * sizeof(uint16_t) + 64);
        st->w16 = malloc(No * Ni * sizeof(uint16_t) + 64);
        st->dy16 = malloc(l->max_batch * No * sizeof(uint16_t) + 64);
    }
    char impl[48] = "";
    dnnl_status_t s = !half || (st->x16 && st->w16 && st->dy16)
                          ? mt__onednn_engine(&engine, &stream)
                          : dnnl_out_of_memory;
    if (s == dnnl_success)
        s = plan_make(l, l->max_batch, &st->plans[0], impl, sizeof impl);
    int asked = l->spec.dense_backend == MT_DENSE_ONEDNN;
    if (s == dnnl_success &&
        (half ? mt__onednn_bf16_check(l, impl, NULL) == MT_OK
              : asked || fast_f32(impl))) {
        snprintf(st->impl, sizeof st->impl, "oneDNN matmul%s (%s)",
                 half ? " bf16" : "", impl);
        st->next = 1;
        return MT_OK;
    }
    mt_layer_free(l);
    if (s == dnnl_out_of_memory) {
        mt_seterr(err, "%s: out of memory for its oneDNN matmul", l->name);
        return MT_ENOMEM;
    }
    if (!half && !asked) { /* auto: OpenBLAS does better here */
        l->ops = &mt__dense_ops;
        return MT_OK;
    }
    if (!half) {
        mt_seterr(err, "%s: backend = onednn: oneDNN cannot run this layer "
                       "(status %d)", l->name, (int)s);
        return MT_EINVAL;
    }
    return mt__onednn_bf16_check(l, s == dnnl_success ? impl : "", err);
}

static const char *onednn_describe(const mt_layer *l)
{
    const mstate *st = l->scratch;
    return st && st->impl[0] ? st->impl : "oneDNN matmul";
}

static const mt_layer_ops dense_onednn_ops = {
    .kind_name = "dense",
    .alloc = onednn_alloc,
    .init_params = mt__dense_init,
    .forward = onednn_forward,
    .backward = onednn_backward,
    .backward_input = onednn_backward_input,
    .backward_weight = onednn_backward_weight,
    .stateless_backward = 1,
    .release = onednn_release,
    .describe = onednn_describe,
};

int mt__dense_onednn(mt_layer *l, char *err)
{
    (void)err;
    l->ops = &dense_onednn_ops;
    return MT_OK;
}

#else /* no oneDNN in this build */

int mt__dense_onednn(mt_layer *l, char *err)
{
    mt_seterr(err, "%s: %s needs oneDNN, but this build has none (install "
                   "libdnnl-dev and run configure again)",
              l->name, l->spec.bf16 ? "precision = bf16: its bf16 kernels"
                                    : "backend = onednn");
    return MT_EINVAL;
}

#endif
