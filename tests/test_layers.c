/* Every layer: forward against a naive reference where the lowering could
 * hide an index bug, and backward against central finite differences. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "mpitrain/core.h"
#include "mpitrain/model.h"
#include "mpitrain/optim.h"

enum { B = 3 };

static mt_model build(mt_layer_spec spec, mt_shape in)
{
    mt_model m;
    char err[MT_ERR_LEN];
    int rc = mt_model_init(&m, &spec, 1, in, B, 11, err);
    if (rc)
        fail_msg("%s", err);
    gc_fill_spaced(m.act[0], B * mt_shape_size(in), 0.01f, 5);
    /* Biases start at zero; make them non-trivial so they are checked. */
    for (size_t i = 0; i < m.n_params; i++)
        m.params[i] += 0.05f * (mt_rng_uniform(3, 97, 0, i) - 0.5f);
    return m;
}

static void expect_gradients(mt_layer_spec spec, mt_shape in, int train)
{
    mt_model m = build(spec, in);
    mt_step_ctx ctx = {.train = train, .seed = 1, .step = 4, .sample0 = 10};
    double worst = gc_layer(&m, B, &ctx, 1e-3f, 1e-2);
    if (worst > 1e-2)
        fail_msg("%s: worst relative gradient error %g", m.layers[0].name,
                 worst);
    mt_model_free(&m);
}

static void test_dense_grad(void **state)
{
    expect_gradients((mt_layer_spec){.kind = MT_DENSE, .units = 5},
                     (mt_shape){7, 1, 1}, 1);
}

/* conv's backends where this build has them (oneDNN or not, im2col). */
static const mt_conv_backend conv_backends[] = {MT_CONV_IM2COL,
                                                MT_CONV_ONEDNN};
static size_t n_conv_backends(void) { return mt_onednn_version() ? 2 : 1; }

static void test_conv_grad(void **state)
{
    for (size_t b = 0; b < n_conv_backends(); b++) {
        expect_gradients((mt_layer_spec){.kind = MT_CONV2D, .filters = 4,
                                         .size = 3, .stride = 1, .pad = 1,
                                         .backend = conv_backends[b]},
                         (mt_shape){2, 5, 6}, 1);
        expect_gradients((mt_layer_spec){.kind = MT_CONV2D, .filters = 3,
                                         .size = 3, .stride = 2, .pad = 0,
                                         .backend = conv_backends[b]},
                         (mt_shape){2, 7, 5}, 1);
    }
}

static void test_pool_grad(void **state)
{
    expect_gradients((mt_layer_spec){.kind = MT_MAXPOOL, .size = 2},
                     (mt_shape){2, 6, 4}, 1);
    expect_gradients((mt_layer_spec){.kind = MT_MAXPOOL, .size = 3,
                                     .stride = 2, .pad = 1},
                     (mt_shape){2, 5, 5}, 1);
    expect_gradients((mt_layer_spec){.kind = MT_AVGPOOL, .size = 2},
                     (mt_shape){3, 4, 4}, 1);
    expect_gradients((mt_layer_spec){.kind = MT_AVGPOOL, .size = 3,
                                     .stride = 2, .pad = 1},
                     (mt_shape){1, 5, 6}, 1);
}

static void test_activation_grads(void **state)
{
    mt_shape in = {2, 3, 4};
    expect_gradients((mt_layer_spec){.kind = MT_RELU}, in, 1);
    expect_gradients((mt_layer_spec){.kind = MT_LEAKY_RELU, .alpha = 0.1f},
                     in, 1);
    expect_gradients((mt_layer_spec){.kind = MT_SIGMOID}, in, 1);
    expect_gradients((mt_layer_spec){.kind = MT_TANH}, in, 1);
    expect_gradients((mt_layer_spec){.kind = MT_FLATTEN}, in, 1);
}

static void test_dropout_grad(void **state)
{
    expect_gradients((mt_layer_spec){.kind = MT_DROPOUT, .rate = 0.5f},
                     (mt_shape){2, 3, 4}, 1);
}

static void test_batchnorm_grad(void **state)
{
    mt_layer_spec bn = {.kind = MT_BATCHNORM, .momentum = 0.1f,
                        .eps = 1e-5f};
    expect_gradients(bn, (mt_shape){3, 2, 2}, 1);
    expect_gradients(bn, (mt_shape){4, 1, 1}, 1);
}

/* Direct convolution, the definition, for one geometry. */
static void conv_matches_naive_as(mt_conv_backend be, size_t C, size_t H,
                                  size_t W, size_t F, size_t K, size_t S,
                                  size_t P)
{
    mt_layer_spec s = {.kind = MT_CONV2D, .filters = F, .size = K,
                       .stride = S, .pad = P, .backend = be};
    mt_model m = build(s, (mt_shape){C, H, W});
    mt_step_ctx ctx = {0};
    const float *y = mt_model_forward(&m, &ctx, B);
    mt_layer *l = &m.layers[0];
    size_t OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    assert_int_equal(l->out.h, OH);
    assert_int_equal(l->out.w, OW);
    const float *Wt = l->param[0].data, *bias = l->param[1].data;
    for (size_t n = 0; n < B; n++)
        for (size_t f = 0; f < F; f++)
            for (size_t oh = 0; oh < OH; oh++)
                for (size_t ow = 0; ow < OW; ow++) {
                    double acc = bias[f];
                    for (size_t c = 0; c < C; c++)
                        for (size_t kh = 0; kh < K; kh++)
                            for (size_t kw = 0; kw < K; kw++) {
                                long ih = (long)(oh * S + kh) - (long)P;
                                long iw = (long)(ow * S + kw) - (long)P;
                                if (ih < 0 || ih >= (long)H || iw < 0 ||
                                    iw >= (long)W)
                                    continue;
                                acc += Wt[((f * C + c) * K + kh) * K + kw] *
                                       m.act[0][((n * C + c) * H + (size_t)ih) *
                                                    W +
                                                (size_t)iw];
                            }
                    float got = y[((n * F + f) * OH + oh) * OW + ow];
                    /* float sums of up to C K K = 150 terms */
                    if (fabs(got - acc) > 1e-5 * (1.0 + fabs(acc)))
                        fail_msg("F=%zu: y[%zu,%zu,%zu,%zu] = %g, the "
                                 "definition gives %g",
                                 F, n, f, oh, ow, (double)got, acc);
                }
    mt_model_free(&m);
}

static void conv_matches_naive(size_t C, size_t H, size_t W, size_t F,
                               size_t K, size_t S, size_t P)
{
    for (size_t b = 0; b < n_conv_backends(); b++)
        conv_matches_naive_as(conv_backends[b], C, H, W, F, K, S, P);
}

static void test_conv_forward_matches_naive(void **state)
{
    conv_matches_naive(2, 6, 5, 3, 3, 2, 1);
    conv_matches_naive(1, 7, 7, 2, 5, 1, 2); /* LeNet's first layer shape */
    conv_matches_naive(3, 5, 6, 2, 2, 3, 0);
    conv_matches_naive(2, 4, 4, 2, 3, 1, 2); /* padding wider than reach */
    conv_matches_naive(6, 14, 14, 16, 5, 1, 0); /* LeNet's second layer */
}

static void test_dense_forward_matches_naive(void **state)
{
    mt_model m = build((mt_layer_spec){.kind = MT_DENSE, .units = 4},
                       (mt_shape){5, 1, 1});
    mt_step_ctx ctx = {0};
    const float *y = mt_model_forward(&m, &ctx, B);
    const float *W = m.layers[0].param[0].data, *b = m.layers[0].param[1].data;
    for (size_t n = 0; n < B; n++)
        for (size_t o = 0; o < 4; o++) {
            double acc = b[o];
            for (size_t i = 0; i < 5; i++)
                acc += W[o * 5 + i] * m.act[0][n * 5 + i];
            assert_true(fabs(y[n * 4 + o] - acc) < 1e-5);
        }
    mt_model_free(&m);
}

static void test_pool_forward_values(void **state)
{
    mt_model m = build((mt_layer_spec){.kind = MT_MAXPOOL, .size = 2},
                       (mt_shape){1, 2, 4});
    float x[8] = {1, 5, 2, 0, 3, -1, 7, 4};
    memcpy(m.act[0], x, sizeof x);
    mt_step_ctx ctx = {0};
    const float *y = mt_model_forward(&m, &ctx, 1);
    assert_true(y[0] == 5.0f && y[1] == 7.0f);
    mt_model_free(&m);

    m = build((mt_layer_spec){.kind = MT_AVGPOOL, .size = 2},
              (mt_shape){1, 2, 4});
    memcpy(m.act[0], x, sizeof x);
    y = mt_model_forward(&m, &ctx, 1);
    assert_true(fabsf(y[0] - 2.0f) < 1e-6f && fabsf(y[1] - 3.25f) < 1e-6f);
    mt_model_free(&m);
}

static void test_batchnorm_eval_uses_running_stats(void **state)
{
    mt_model m = build((mt_layer_spec){.kind = MT_BATCHNORM,
                                       .momentum = 0.5f, .eps = 1e-5f},
                       (mt_shape){1, 1, 2});
    float x[2 * B] = {1, 3, 5, 7, 9, 11};
    memcpy(m.act[0], x, sizeof x);
    mt_step_ctx train = {.train = 1};
    mt_model_forward(&m, &train, B);
    mt_layer *l = &m.layers[0];
    /* mean 6, unbiased var 14: running = 0.5 * initial + 0.5 * batch. */
    assert_true(fabsf(l->state[0].data[0] - 3.0f) < 1e-5f);
    assert_true(fabsf(l->state[1].data[0] - 7.5f) < 1e-5f);
    mt_step_ctx eval = {.train = 0};
    const float *y = mt_model_forward(&m, &eval, B);
    float g = l->param[0].data[0], b = l->param[1].data[0];
    float want = (1.0f - 3.0f) / sqrtf(7.5f + 1e-5f) * g + b;
    assert_true(fabsf(y[0] - want) < 1e-5f);
    mt_model_free(&m);
}

static void test_dropout_mask_depends_on_global_sample(void **state)
{
    mt_layer_spec s = {.kind = MT_DROPOUT, .rate = 0.5f};
    mt_model m = build(s, (mt_shape){16, 1, 1});
    for (size_t i = 0; i < B * 16; i++)
        m.act[0][i] = 1.0f;
    mt_step_ctx ctx = {.train = 1, .seed = 3, .step = 2, .sample0 = 0};
    float y0[B * 16];
    memcpy(y0, mt_model_forward(&m, &ctx, B), sizeof y0);
    /* The same sample seen as the first of a later slice (another rank). */
    ctx.sample0 = 1;
    const float *y1 = mt_model_forward(&m, &ctx, 1);
    assert_memory_equal(y1, y0 + 16, 16 * sizeof(float));
    size_t kept = 0;
    for (size_t i = 0; i < B * 16; i++) {
        assert_true(y0[i] == 0.0f || y0[i] == 2.0f);
        kept += y0[i] != 0.0f;
    }
    assert_true(kept > 8 && kept < 40);
    ctx.train = 0;
    const float *ye = mt_model_forward(&m, &ctx, B);
    for (size_t i = 0; i < B * 16; i++)
        assert_true(ye[i] == 1.0f);
    mt_model_free(&m);
}

static void test_shapes_that_do_not_chain(void **state)
{
    mt_layer_spec specs[2] = {
        {.kind = MT_CONV2D, .filters = 2, .size = 9, .stride = 1},
        {.kind = MT_DENSE, .units = 3}};
    mt_model m;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_model_init(&m, specs, 2, (mt_shape){1, 5, 5}, 4, 1,
                                   err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "conv1"));
    mt_model_free(&m); /* safe after failure */
}

/* One layer's forward and backward: output, input gradient and parameter
 * gradients, in one buffer to compare. With split, the backward is the
 * layer's two halves (a pipeline's B and W), run after a forward of other
 * inputs has overwritten what forward keeps, both from copies of x (and
 * B of y) as a pipeline keeps them. */
static float *run_layer_as(mt_layer_spec spec, mt_shape in, int split,
                           size_t *len)
{
    mt_model m = build(spec, in);
    mt_step_ctx ctx = {.train = 1, .seed = 1, .step = 4, .sample0 = 10};
    size_t No = B * mt_shape_size(mt_model_out(&m));
    size_t Ni = B * mt_shape_size(in);
    const float *y = mt_model_forward(&m, &ctx, B);
    float *out = mt_calloc(No + Ni + m.n_params, sizeof(float));
    memcpy(out, y, No * sizeof(float));
    float *dy = mt_calloc(No, sizeof(float));
    for (size_t i = 0; i < No; i++)
        dy[i] = mt_rng_normal(5, 3, 0, i);
    mt_model_zero_grad(&m);
    mt_layer *l = &m.layers[0];
    float *x = mt_calloc(Ni, sizeof(float));
    memcpy(x, m.act[0], Ni * sizeof(float));
    if (split) {
        for (size_t i = 0; i < Ni; i++)
            m.act[0][i] = 1.0f - m.act[0][i];
        mt_model_forward(&m, &ctx, B);
        l->ops->backward_input(l, x, out, dy, out + No, B);
        l->ops->backward_weight(l, x, dy, B);
    } else {
        l->ops->backward(l, m.act[0], m.act[1], dy, out + No, B);
    }
    memcpy(out + No + Ni, m.grads, m.n_params * sizeof(float));
    free(x);
    free(dy);
    *len = No + Ni + m.n_params;
    mt_model_free(&m);
    return out;
}

static float *run_layer(mt_layer_spec spec, mt_shape in, size_t *len)
{
    return run_layer_as(spec, in, 0, len);
}

/* Layers that split their backward (dense, conv, maxpool, batch norm,
 * which finds the batch's statistics again from x) give the same
 * floats split as whole: zb's gradients are 1f1b's, and a stage that
 * keeps activations gets the gradients of one that recomputes. */
static void test_split_backward_is_the_backward(void **state)
{
    const struct {
        mt_layer_spec spec;
        mt_shape in;
    } cases[] = {
        {{.kind = MT_DENSE, .units = 5}, {37, 1, 1}},
        {{.kind = MT_CONV2D, .filters = 4, .size = 3, .stride = 1, .pad = 1},
         {3, 7, 9}},
        {{.kind = MT_CONV2D, .filters = 3, .size = 3, .stride = 2},
         {3, 7, 9}},
        {{.kind = MT_CONV2D, .filters = 4, .size = 3, .stride = 1, .pad = 1,
          .backend = MT_CONV_IM2COL},
         {3, 7, 9}},
        {{.kind = MT_CONV2D, .filters = 3, .size = 3, .stride = 2,
          .backend = MT_CONV_IM2COL},
         {3, 7, 9}},
        {{.kind = MT_MAXPOOL, .size = 2, .stride = 2}, {3, 6, 8}},
        {{.kind = MT_MAXPOOL, .size = 3, .stride = 2, .pad = 1}, {2, 7, 9}},
        {{.kind = MT_BATCHNORM, .eps = 1e-5f, .momentum = 0.1f}, {3, 4, 5}},
        {{.kind = MT_BATCHNORM, .eps = 1e-3f, .momentum = 0.5f}, {6, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n0, n;
        float *whole = run_layer_as(cases[c].spec, cases[c].in, 0, &n0);
        float *split = run_layer_as(cases[c].spec, cases[c].in, 1, &n);
        assert_int_equal(n, n0);
        if (memcmp(whole, split, n * sizeof(float)))
            fail_msg("case %zu: the split backward differs", c);
        free(whole);
        free(split);
    }
}

/* One forward and backward of a conv layer built for max_b samples, at b:
 * y, dx and the parameter gradients, one after another (len[0..3)). */
static float *conv_pass(mt_layer_spec s, mt_shape in, size_t max_b, size_t b,
                        size_t len[3])
{
    mt_model m;
    char err[MT_ERR_LEN];
    if (mt_model_init(&m, &s, 1, in, max_b, 11, err))
        fail_msg("%s", err);
    mt_layer *l = &m.layers[0];
    /* the backend asked for is the one running */
    assert_true((l->ops == mt_layer_ops_of(MT_CONV2D)) ==
                (s.backend == MT_CONV_IM2COL));
    size_t Ni = b * mt_shape_size(in), No = b * mt_shape_size(l->out);
    for (size_t i = 0; i < Ni; i++)
        m.act[0][i] = mt_rng_normal(6, 1, b, i);
    for (size_t i = 0; i < m.n_params; i++)
        m.params[i] += 0.05f * mt_rng_normal(6, 2, 0, i);
    mt_step_ctx ctx = {.train = 1};
    const float *y = mt_model_forward(&m, &ctx, b);
    float *out = mt_calloc(No + Ni + m.n_params, sizeof(float));
    float *dy = mt_calloc(No, sizeof(float));
    memcpy(out, y, No * sizeof(float));
    for (size_t i = 0; i < No; i++)
        dy[i] = mt_rng_normal(6, 3, b, i);
    mt_model_zero_grad(&m);
    l->ops->backward(l, m.act[0], m.act[1], dy, out + No, b);
    memcpy(out + No + Ni, m.grads, m.n_params * sizeof(float));
    free(dy);
    len[0] = No, len[1] = Ni, len[2] = m.n_params;
    mt_model_free(&m);
    return out;
}

/* got within float rounding of want, len values: sums of many terms (a
 * weight gradient sums over every output pixel of the batch) may cancel
 * to near zero, so the bound scales with the largest value. */
static void expect_close(const float *got, const float *want, size_t len,
                         const char *what, size_t c, size_t b)
{
    float top;
    size_t i = gc_first_far(got, want, len, &top);
    if (i < len)
        fail_msg("case %zu, batch %zu: %s[%zu] is %.9g with oneDNN, "
                 "%.9g with im2col (largest %g)",
                 c, b, what, i, got[i], want[i], top);
}

/* oneDNN computes im2col's convolution: forward, input and parameter
 * gradients within float rounding, on LeNet-5's layers and odd
 * geometries (stride, padding, a window short of the far edge), at batch
 * sizes under max_batch and more of them than a layer keeps plans for. */
static void test_conv_backends_agree(void **state)
{
    if (!mt_onednn_version())
        skip();
    const struct {
        mt_layer_spec spec;
        mt_shape in;
    } cases[] = {
        {{.kind = MT_CONV2D, .filters = 6, .size = 5, .stride = 1, .pad = 2},
         {1, 28, 28}},
        {{.kind = MT_CONV2D, .filters = 16, .size = 5, .stride = 1},
         {6, 14, 14}},
        {{.kind = MT_CONV2D, .filters = 4, .size = 3, .stride = 2, .pad = 1},
         {3, 7, 9}},
        {{.kind = MT_CONV2D, .filters = 5, .size = 2, .stride = 3},
         {2, 5, 6}},
        {{.kind = MT_CONV2D, .filters = 17, .size = 1, .stride = 1},
         {9, 3, 3}},
    };
    const size_t sizes[] = {8, 3, 5, 1, 2, 7, 8};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            mt_layer_spec ref = cases[c].spec, dnn = cases[c].spec;
            ref.backend = MT_CONV_IM2COL;
            dnn.backend = MT_CONV_ONEDNN;
            size_t n0[3], n[3];
            float *want = conv_pass(ref, cases[c].in, 8, sizes[k], n0);
            float *got = conv_pass(dnn, cases[c].in, 8, sizes[k], n);
            const char *what[3] = {"y", "dx", "gradient"};
            for (size_t at = 0, j = 0; j < 3; at += n[j++]) {
                assert_int_equal(n[j], n0[j]);
                expect_close(got + at, want + at, n[j], what[j], c, sizes[k]);
            }
            free(want);
            free(got);
        }
}

/* Two optimizer steps of each kind on a buffer whose length is no
 * multiple of any vector width. */
static float *run_optim(size_t *len)
{
    enum { N = 1003 };
    float *out = mt_calloc(3 * N, sizeof(float)), g[N];
    for (size_t i = 0; i < N; i++)
        g[i] = mt_rng_normal(8, 1, 0, i);
    const mt_optim_cfg cfgs[3] = {
        {.kind = MT_OPT_SGD, .lr = 0.1f, .momentum = 0.9f, .nesterov = 1,
         .weight_decay = 1e-3f, .l1 = 1e-4f},
        {.kind = MT_OPT_ADAM, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
         .eps = 1e-8f, .weight_decay = 1e-3f},
        {.kind = MT_OPT_ADAMW, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
         .eps = 1e-8f, .weight_decay = 1e-2f}};
    for (int k = 0; k < 3; k++) {
        mt_optim o;
        char err[MT_ERR_LEN];
        float *p = out + (size_t)k * N;
        for (size_t i = 0; i < N; i++)
            p[i] = mt_rng_uniform(8, 2, 0, i) - 0.5f;
        if (mt_optim_init(&o, &cfgs[k], N, err))
            fail_msg("%s", err);
        mt_optim_step(&o, p, g, cfgs[k].lr);
        mt_optim_step(&o, p, g, cfgs[k].lr);
        mt_optim_free(&o);
    }
    *len = 3 * N;
    return out;
}

/* The README's promise: every SIMD path computes the same floats as the
 * baseline (the same operations in the same order; no -ffast-math, no
 * contraction into fused multiply-adds). Bit for bit, on every path this
 * CPU has; OpenBLAS is the same kernel throughout this process (the test
 * suite runs this program once per kernel, tests/every_isa.sh). */
static void test_every_simd_path_same_floats(void **state)
{
    const mt_shape img = {3, 7, 9}, flat = {37, 1, 1};
    const struct {
        mt_layer_spec spec;
        mt_shape in;
    } cases[] = {
        /* OpenBLAS and im2col: the other backends are libraries (whose
         * kernels follow the path) or AVX-512 alone */
        {{.kind = MT_DENSE, .units = 5, .dense_backend = MT_DENSE_OPENBLAS},
         flat},
        {{.kind = MT_CONV2D, .filters = 4, .size = 3, .stride = 1, .pad = 1,
          .backend = MT_CONV_IM2COL},
         img},
        {{.kind = MT_CONV2D, .filters = 3, .size = 3, .stride = 2,
          .backend = MT_CONV_IM2COL},
         img},
        {{.kind = MT_MAXPOOL, .size = 2}, (mt_shape){3, 8, 6}},
        {{.kind = MT_MAXPOOL, .size = 3, .stride = 2, .pad = 1}, img},
        {{.kind = MT_AVGPOOL, .size = 2}, (mt_shape){3, 8, 6}},
        {{.kind = MT_RELU}, img},
        {{.kind = MT_LEAKY_RELU, .alpha = 0.1f}, img},
        {{.kind = MT_SIGMOID}, img},
        {{.kind = MT_TANH}, img},
        {{.kind = MT_DROPOUT, .rate = 0.3f}, img},
    };
    mt_isa was = mt_isa_current();
    for (size_t c = 0; c <= sizeof cases / sizeof *cases; c++) {
        size_t n0, n;
        mt_isa_set(MT_ISA_BASELINE);
        int optim = c == sizeof cases / sizeof *cases;
        float *ref = optim ? run_optim(&n0) : run_layer(cases[c].spec,
                                                        cases[c].in, &n0);
        for (int isa = 1; isa <= (int)mt_isa_best(); isa++) {
            mt_isa_set((mt_isa)isa);
            float *got = optim ? run_optim(&n) : run_layer(cases[c].spec,
                                                           cases[c].in, &n);
            assert_int_equal(n, n0);
            for (size_t i = 0; i < n; i++)
                if (memcmp(&got[i], &ref[i], sizeof(float)))
                    fail_msg("case %zu on %s: value %zu is %.9g, baseline "
                             "%.9g",
                             c, mt_isa_name((mt_isa)isa), i, got[i], ref[i]);
            free(got);
        }
        free(ref);
    }
    mt_isa_set(was);
    print_message("SIMD paths compared with baseline: %d\n",
                  (int)mt_isa_best());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense_grad),
        cmocka_unit_test(test_conv_grad),
        cmocka_unit_test(test_pool_grad),
        cmocka_unit_test(test_activation_grads),
        cmocka_unit_test(test_dropout_grad),
        cmocka_unit_test(test_batchnorm_grad),
        cmocka_unit_test(test_conv_forward_matches_naive),
        cmocka_unit_test(test_dense_forward_matches_naive),
        cmocka_unit_test(test_pool_forward_values),
        cmocka_unit_test(test_batchnorm_eval_uses_running_stats),
        cmocka_unit_test(test_dropout_mask_depends_on_global_sample),
        cmocka_unit_test(test_shapes_that_do_not_chain),
        cmocka_unit_test(test_every_simd_path_same_floats),
        cmocka_unit_test(test_split_backward_is_the_backward),
        cmocka_unit_test(test_conv_backends_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
