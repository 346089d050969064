/* Dense layers on oneDNN's matmul, in float32 and in mixed precision
 * ([train] precision = bf16), and oneDNN convolutions in bf16. Each of
 * the three products equals its definition over bf16-rounded inputs
 * (sums in double) within float32 accumulation, the weight gradient adds
 * to what was there, the bias gradient sums the unrounded dy, the split
 * backward (after another batch's forward) gives the joint one's floats,
 * and batch sizes cycle through more plans than a layer keeps. Skipped
 * where oneDNN has no bf16 kernels for this CPU (the refusal itself is
 * tests/bf16_accuracy.sh's). */
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
#include "mpitrain/sync.h"

static float bf16(float f)
{
    return mt_bf16_to_float(mt_bf16_from_float(f));
}

/* A dense layer on oneDNN, in bf16 if half, or 0 (and why, in err)
 * where it cannot run. */
static int build_as(mt_model *m, size_t Ni, size_t No, size_t max_b,
                    int half, char *err)
{
    mt_layer_spec s = {.kind = MT_DENSE, .units = No, .bf16 = half,
                       .dense_backend = MT_DENSE_ONEDNN};
    if (mt_model_init(m, &s, 1, (mt_shape){Ni, 1, 1}, max_b, 3, err))
        return 0;
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.05f * mt_rng_normal(4, 1, 0, i);
    return 1;
}

static int build(mt_model *m, size_t Ni, size_t No, size_t max_b,
                 char *err)
{
    return build_as(m, Ni, No, max_b, 1, err);
}

static int have_bf16(void)
{
    mt_model m;
    char err[MT_ERR_LEN];
    int ok = build(&m, 8, 4, 2, err);
    if (ok)
        mt_model_free(&m);
    else
        print_message("no bf16 here: %s\n", err);
    return ok;
}

/* |got - want| within float32 accumulation of terms whose magnitudes sum
 * to mag (and a little more for the bias). */
static void expect_sum(double got, double want, double mag,
                       const char *what, size_t i)
{
    if (!(fabs(got - want) <= 1e-5 * mag + 1e-6))
        fail_msg("%s[%zu] is %.9g, the bf16 definition %.9g (terms of "
                 "magnitude %g)",
                 what, i, got, want, mag);
}

/* x as the products see it: rounded in bf16 (half), else itself. */
static float as_in(float x, int half) { return half ? bf16(x) : x; }

static void check(size_t Ni, size_t No, size_t max_b, size_t B, int split,
                  int half)
{
    mt_model m;
    if (!build_as(&m, Ni, No, max_b, half, NULL))
        fail_msg("oneDNN dense refused");
    mt_layer *l = &m.layers[0];
    const float *W = l->param[0].data, *b = l->param[1].data;
    float *x = m.act[0];
    for (size_t i = 0; i < B * Ni; i++)
        x[i] = mt_rng_normal(4, 2, B, i);
    mt_step_ctx ctx = {.train = 1};
    const float *y = mt_model_forward(&m, &ctx, B);
    for (size_t n = 0; n < B; n++)
        for (size_t o = 0; o < No; o++) {
            double want = b[o], mag = fabs(b[o]);
            for (size_t k = 0; k < Ni; k++) {
                double t = (double)as_in(x[n * Ni + k], half) *
                           as_in(W[o * Ni + k], half);
                want += t, mag += fabs(t);
            }
            expect_sum(y[n * No + o], want, mag, "y", n * No + o);
        }
    float *dy = mt_calloc(B * No, sizeof(float));
    float *dx = mt_calloc(B * Ni, sizeof(float));
    for (size_t i = 0; i < B * No; i++)
        dy[i] = mt_rng_normal(4, 3, B, i);
    for (size_t i = 0; i < m.n_params; i++)
        m.grads[i] = 0.25f; /* gradients add to what is there */
    if (split) {
        l->ops->backward_input(l, x, NULL, dy, dx, B);
        l->ops->backward_weight(l, x, dy, B);
    } else {
        l->ops->backward(l, x, NULL, dy, dx, B);
    }
    for (size_t n = 0; n < B; n++)
        for (size_t k = 0; k < Ni; k++) {
            double want = 0.0, mag = 0.0;
            for (size_t o = 0; o < No; o++) {
                double t = (double)as_in(dy[n * No + o], half) *
                           as_in(W[o * Ni + k], half);
                want += t, mag += fabs(t);
            }
            expect_sum(dx[n * Ni + k], want, mag, "dx", n * Ni + k);
        }
    for (size_t o = 0; o < No; o++) {
        for (size_t k = 0; k < Ni; k++) {
            double want = 0.25, mag = 0.25;
            for (size_t n = 0; n < B; n++) {
                double t = (double)as_in(dy[n * No + o], half) *
                           as_in(x[n * Ni + k], half);
                want += t, mag += fabs(t);
            }
            expect_sum(l->param[0].grad[o * Ni + k], want, mag, "dW",
                       o * Ni + k);
        }
        double bw = 0.25, bmag = 0.25;
        for (size_t n = 0; n < B; n++)
            bw += dy[n * No + o], bmag += fabs(dy[n * No + o]);
        expect_sum(l->param[1].grad[o], bw, bmag, "db", o);
    }
    free(dy);
    free(dx);
    mt_model_free(&m);
}

/* Shapes from the MLP's to odd ones; batch sizes past the four plans a
 * layer keeps, and back. */
static void test_bf16_dense_products(void **state)
{
    if (!have_bf16())
        skip();
    const size_t shapes[][2] = {{784, 256}, {37, 5}, {100, 33}, {9, 130}};
    const size_t sizes[] = {64, 1, 7, 33, 16, 5, 64};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
            check(shapes[s][0], shapes[s][1], 64, sizes[k], (int)(k & 1), 1);
}

/* The same products in float32 through oneDNN ([dense] backend = onednn,
 * auto's choice on AVX-512). */
static void test_onednn_dense_products(void **state)
{
    mt_model m;
    if (!mt_onednn_version() || !build_as(&m, 8, 4, 2, 0, NULL))
        skip();
    mt_model_free(&m);
    const size_t shapes[][2] = {{784, 256}, {37, 5}, {9, 130}};
    const size_t sizes[] = {64, 1, 7, 33, 16, 5, 64};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
            check(shapes[s][0], shapes[s][1], 64, sizes[k], (int)(k & 1), 0);
}

static void test_bf16_split_is_whole(void **state)
{
    if (!have_bf16())
        skip();
    float *out[2];
    for (int split = 0; split < 2; split++) {
        mt_model m;
        build(&m, 50, 20, 9, NULL);
        mt_layer *l = &m.layers[0];
        for (size_t i = 0; i < 9 * 50; i++)
            m.act[0][i] = mt_rng_normal(5, 1, 0, i);
        mt_step_ctx ctx = {.train = 1};
        mt_model_forward(&m, &ctx, 9);
        float dy[9 * 20];
        out[split] = mt_calloc(9 * 50 + m.n_params, sizeof(float));
        for (size_t i = 0; i < 9 * 20; i++)
            dy[i] = mt_rng_normal(5, 2, 0, i);
        mt_model_zero_grad(&m);
        if (split) { /* after another batch's forward, as zb's W */
            float x[9 * 50];
            memcpy(x, m.act[0], sizeof x);
            for (size_t i = 0; i < 9 * 50; i++)
                m.act[0][i] = 1.0f - x[i];
            mt_model_forward(&m, &ctx, 9);
            l->ops->backward_input(l, x, NULL, dy, out[split], 9);
            l->ops->backward_weight(l, x, dy, 9);
        } else {
            l->ops->backward(l, m.act[0], NULL, dy, out[split], 9);
        }
        memcpy(out[split] + 9 * 50, m.grads, m.n_params * sizeof(float));
        mt_model_free(&m);
    }
    assert_memory_equal(out[0], out[1], (9 * 50 + 20 * 51) * sizeof(float));
    free(out[0]);
    free(out[1]);
}

/* One conv forward and backward at B on bf16 values (x, W, dy rounded):
 * y, dx and the parameter gradients in one buffer (len floats). */
static float *conv_pass(mt_conv_backend be, int half, mt_shape in,
                        size_t F, size_t K, size_t P, size_t B, size_t *len)
{
    mt_layer_spec s = {.kind = MT_CONV2D, .filters = F, .size = K,
                       .stride = 1, .pad = P, .backend = be, .bf16 = half};
    mt_model m;
    char err[MT_ERR_LEN];
    if (mt_model_init(&m, &s, 1, in, B, 3, err))
        fail_msg("%s", err);
    mt_layer *l = &m.layers[0];
    if (half && !strstr(l->ops->describe(l), "bf16")) /* bf16 kernels */
        fail_msg("%s: %s", l->name, l->ops->describe(l));
    size_t Ni = B * mt_shape_size(in), No = B * mt_shape_size(l->out);
    for (size_t i = 0; i < m.n_params; i++)
        m.params[i] = bf16(m.params[i] + 0.05f * mt_rng_normal(4, 7, 0, i));
    for (size_t i = 0; i < Ni; i++)
        m.act[0][i] = bf16(mt_rng_normal(4, 8, 0, i));
    mt_step_ctx ctx = {.train = 1};
    const float *y = mt_model_forward(&m, &ctx, B);
    *len = No + Ni + m.n_params;
    float *out = mt_calloc(*len, sizeof(float));
    float *dy = mt_calloc(No, sizeof(float));
    memcpy(out, y, No * sizeof(float));
    for (size_t i = 0; i < No; i++)
        dy[i] = bf16(mt_rng_normal(4, 9, 0, i));
    mt_model_zero_grad(&m);
    l->ops->backward(l, m.act[0], m.act[1], dy, out + No, B);
    memcpy(out + No + Ni, m.grads, m.n_params * sizeof(float));
    free(dy);
    mt_model_free(&m);
    return out;
}

/* oneDNN's convolutions in bf16 (layers of 16 channels and more, which
 * auto gives it): im2col's on the same bf16 values, to float rounding
 * (products of two bf16 are exact in float32). */
static void test_bf16_onednn_conv(void **state)
{
    if (!have_bf16() || !mt_onednn_version())
        skip();
    const struct {
        mt_shape in;
        size_t F, K, P;
    } cases[] = {{{16, 8, 8}, 8, 3, 1}, {{6, 14, 14}, 16, 5, 0},
                 {{3, 9, 7}, 5, 3, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n0, n;
        float *want = conv_pass(MT_CONV_IM2COL, 0, cases[c].in, cases[c].F,
                                cases[c].K, cases[c].P, 5, &n0);
        float *got = conv_pass(MT_CONV_ONEDNN, 1, cases[c].in, cases[c].F,
                               cases[c].K, cases[c].P, 5, &n);
        assert_int_equal(n, n0);
        float top;
        size_t i = gc_first_far(got, want, n, &top);
        if (i < n)
            fail_msg("case %zu: value %zu is %.9g in bf16, %.9g with im2col "
                     "(largest %g)",
                     c, i, got[i], want[i], top);
        free(want);
        free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_dense_products),
        cmocka_unit_test(test_onednn_dense_products),
        cmocka_unit_test(test_bf16_split_is_whole),
        cmocka_unit_test(test_bf16_onednn_conv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
