/* conv's direct AVX-512 backend against the im2col reference: forward,
 * input and parameter gradients within float rounding over geometries
 * and batch sizes that leave partial blocks of 16 samples, finite
 * differences, the split backward, and the refusals where it cannot run.
 * Skipped (but for the refusals) where the CPU has no AVX-512. */
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

static int have_direct(void) { return mt_isa_current() >= MT_ISA_AVX512; }

/* Whether the direct backend runs in bf16 here (AVX512_BF16). */
static int have_bf16(void)
{
    mt_layer_spec s = {.kind = MT_CONV2D, .filters = 2, .size = 3,
                       .stride = 1, .backend = MT_CONV_DIRECT, .bf16 = 1};
    mt_model m;
    if (mt_model_init(&m, &s, 1, (mt_shape){1, 4, 4}, 2, 1, NULL))
        return 0;
    mt_model_free(&m);
    return 1;
}

/* Rounded to bfloat16 when bf16: the direct kernel's products of such
 * values are exact in float32, so it meets im2col's on rounded inputs to
 * float rounding. */
static float maybe_bf16(float f, int bf16)
{
    return bf16 ? mt_bf16_to_float(mt_bf16_from_float(f)) : f;
}

typedef struct conv_case {
    size_t C, H, W, F, K, P;
} conv_case;

/* LeNet-5's layers, every window size, padding from none to K - 1,
 * channels and filters on either side of the tiles (4, 6, 8). */
static const conv_case cases[] = {
    {1, 28, 28, 6, 5, 2}, {6, 14, 14, 16, 5, 0}, {3, 7, 9, 4, 3, 1},
    {2, 5, 6, 5, 2, 0},   {9, 3, 3, 17, 1, 0},   {3, 9, 11, 7, 7, 3},
    {2, 6, 5, 3, 4, 1},   {4, 8, 8, 9, 6, 2},    {5, 4, 13, 1, 3, 2},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static mt_layer_spec spec_of(const conv_case *c, mt_conv_backend be)
{
    return (mt_layer_spec){.kind = MT_CONV2D, .filters = c->F,
                           .size = c->K, .stride = 1, .pad = c->P,
                           .backend = be};
}

static void build(mt_model *m, const conv_case *c, mt_conv_backend be,
                  size_t max_b, int bf16)
{
    mt_layer_spec s = spec_of(c, be);
    s.bf16 = bf16;
    char err[MT_ERR_LEN];
    if (mt_model_init(m, &s, 1, (mt_shape){c->C, c->H, c->W}, max_b, 11,
                      err))
        fail_msg("%s", err);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.05f * mt_rng_normal(6, 2, 0, i);
}

/* One forward and backward at b, inputs keyed by key (weights, x and
 * dy rounded to bf16 if bf16): y, dx and the parameter gradients, one
 * after another (len[0..3)). */
static float *pass_as(mt_model *m, size_t b, uint64_t key, size_t len[3],
                      int bf16)
{
    mt_layer *l = &m->layers[0];
    size_t Ni = b * mt_shape_size(l->in), No = b * mt_shape_size(l->out);
    for (size_t i = 0; i < Ni; i++)
        m->act[0][i] = maybe_bf16(mt_rng_normal(6, key, b, i), bf16);
    for (size_t i = 0; i < l->param[0].n; i++)
        l->param[0].data[i] = maybe_bf16(l->param[0].data[i], bf16);
    mt_step_ctx ctx = {.train = 1};
    const float *y = mt_model_forward(m, &ctx, b);
    float *out = mt_calloc(No + Ni + m->n_params, sizeof(float));
    float *dy = mt_calloc(No, sizeof(float));
    memcpy(out, y, No * sizeof(float));
    for (size_t i = 0; i < No; i++)
        dy[i] = maybe_bf16(mt_rng_normal(6, key + 1, b, i), bf16);
    mt_model_zero_grad(m);
    l->ops->backward(l, m->act[0], m->act[1], dy, out + No, b);
    memcpy(out + No + Ni, m->grads, m->n_params * sizeof(float));
    free(dy);
    len[0] = No, len[1] = Ni, len[2] = m->n_params;
    return out;
}

static float *pass(mt_model *m, size_t b, uint64_t key, size_t len[3])
{
    return pass_as(m, b, key, len, 0);
}

/* got within float rounding of want (gc_first_far). */
static void expect_close(const float *got, const float *want, size_t len,
                         const char *what, size_t c, size_t b)
{
    float top;
    size_t i = gc_first_far(got, want, len, &top);
    if (i < len)
        fail_msg("case %zu, batch %zu: %s[%zu] is %.9g direct, %.9g "
                 "with im2col (largest %g)",
                 c, b, what, i, got[i], want[i], top);
}

/* Batches after a larger one in the same layer: a block's lanes past
 * the batch must be zeros again, not the last batch's samples. In bf16,
 * against im2col on bf16 values (the same products, exact). */
static void matches_im2col(int bf16)
{
    const size_t sizes[] = {40, 17, 1, 16, 33, 15};
    for (size_t c = 0; c < N_CASES; c++) {
        mt_model direct;
        build(&direct, &cases[c], MT_CONV_DIRECT, 40, bf16);
        assert_string_equal(
            direct.layers[0].ops->describe(&direct.layers[0]),
            bf16 ? "direct AVX-512 bf16" : "direct AVX-512");
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            mt_model ref;
            build(&ref, &cases[c], MT_CONV_IM2COL, 40, 0);
            size_t n0[3], n[3];
            float *want = pass_as(&ref, sizes[k], 3 + k, n0, bf16);
            float *got = pass_as(&direct, sizes[k], 3 + k, n, bf16);
            const char *what[3] = {"y", "dx", "gradient"};
            for (size_t at = 0, j = 0; j < 3; at += n[j++]) {
                assert_int_equal(n[j], n0[j]);
                expect_close(got + at, want + at, n[j], what[j], c,
                             sizes[k]);
            }
            free(want);
            free(got);
            mt_model_free(&ref);
        }
        mt_model_free(&direct);
    }
}

static void test_direct_matches_im2col(void **state)
{
    if (!have_direct())
        skip();
    matches_im2col(0);
}

static void test_direct_bf16_matches_im2col(void **state)
{
    if (!have_direct() || !have_bf16())
        skip();
    matches_im2col(1);
}

static void test_direct_gradients(void **state)
{
    if (!have_direct())
        skip();
    const conv_case small[] = {{1, 7, 7, 6, 5, 2}, {3, 5, 6, 4, 3, 1},
                               {2, 6, 6, 3, 4, 1}, {1, 6, 7, 2, 7, 3}};
    for (size_t c = 0; c < sizeof small / sizeof *small; c++) {
        mt_model m;
        build(&m, &small[c], MT_CONV_DIRECT, 3, 0);
        gc_fill_spaced(m.act[0], 3 * mt_shape_size(m.in), 0.01f, 5);
        mt_step_ctx ctx = {.train = 1};
        double worst = gc_layer(&m, 3, &ctx, 1e-3f, 1e-2);
        if (worst > 1e-2)
            fail_msg("case %zu: worst relative gradient error %g", c, worst);
        mt_model_free(&m);
    }
}

/* backward_input, then backward_weight after another batch's forward
 * (a pipeline's zb), give backward's floats: the weight half re-orders
 * x again rather than reading forward's copy. */
static void test_direct_split_is_whole(void **state)
{
    if (!have_direct())
        skip();
    for (size_t c = 0; c < 2 * N_CASES; c++) {
        int bf16 = c >= N_CASES;
        if (bf16 && !have_bf16())
            break;
        mt_model m;
        build(&m, &cases[c % N_CASES], MT_CONV_DIRECT, 20, bf16);
        size_t n[3], b = 20;
        float *whole = pass(&m, b, 9, n);
        mt_layer *l = &m.layers[0];
        size_t Ni = n[1], No = n[0];
        float *x = mt_calloc(Ni, sizeof(float));
        float *dy = mt_calloc(No, sizeof(float));
        float *dx = mt_calloc(Ni, sizeof(float));
        for (size_t i = 0; i < Ni; i++)
            x[i] = m.act[0][i] = mt_rng_normal(6, 9, b, i);
        for (size_t i = 0; i < No; i++)
            dy[i] = mt_rng_normal(6, 10, b, i);
        for (size_t i = 0; i < Ni; i++)
            m.act[0][i] = 1.0f - x[i];
        mt_step_ctx ctx = {.train = 1};
        mt_model_forward(&m, &ctx, b);
        mt_model_zero_grad(&m);
        l->ops->backward_input(l, x, NULL, dy, dx, b);
        l->ops->backward_weight(l, x, dy, b);
        if (memcmp(dx, whole + No, Ni * sizeof(float)) ||
            memcmp(m.grads, whole + No + Ni, n[2] * sizeof(float)))
            fail_msg("case %zu%s: the split backward differs", c,
                     bf16 ? " (bf16)" : "");
        free(whole);
        free(x);
        free(dy);
        free(dx);
        mt_model_free(&m);
    }
}

static void expect_refused(mt_layer_spec s, mt_shape in, const char *why)
{
    mt_model m;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_model_init(&m, &s, 1, in, 4, 1, err), MT_EINVAL);
    if (!strstr(err, "conv1: backend = direct") || !strstr(err, why))
        fail_msg("refusal reads \"%s\"", err);
}

/* Asked for where it cannot run, it says why and names the layer; auto
 * then takes another backend. */
static void test_direct_refusals(void **state)
{
    conv_case c = cases[0];
    mt_layer_spec s = spec_of(&c, MT_CONV_DIRECT);
    mt_shape in = {c.C, c.H, c.W};
    mt_isa was = mt_isa_current();
    if (was >= MT_ISA_AVX512) {
        s.stride = 2;
        expect_refused(s, in, "stride 1");
        s.stride = 1, s.size = 9, s.pad = 4;
        expect_refused(s, in, "at most 7");
        s = spec_of(&c, MT_CONV_DIRECT);
    }
    mt_isa_set(MT_ISA_AVX2 < was ? MT_ISA_AVX2 : was);
    expect_refused(s, in, "AVX-512");
    mt_model m;
    s.backend = MT_CONV_AUTO;
    if (mt_model_init(&m, &s, 1, in, 4, 1, NULL))
        fail_msg("auto refused");
    assert_string_not_equal(m.layers[0].ops->describe(&m.layers[0]),
                            "direct AVX-512");
    mt_model_free(&m);
    mt_isa_set(was);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_direct_matches_im2col),
        cmocka_unit_test(test_direct_bf16_matches_im2col),
        cmocka_unit_test(test_direct_gradients),
        cmocka_unit_test(test_direct_split_is_whole),
        cmocka_unit_test(test_direct_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
