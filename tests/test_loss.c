#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/loss.h"

enum { B = 4, K = 5 };

/* Central differences of the summed objective in double against grad. */
static void expect_objective_gradient(mt_loss_kind kind, float gamma)
{
    mt_loss_opts o = {.focal_gamma = gamma};
    float z[B * K], t[B * K], g[B * K];
    int32_t y[B] = {0, 4, 2, 2};
    for (size_t i = 0; i < B * K; i++) {
        z[i] = 4.0f * mt_rng_uniform(1, 50, 0, i) - 2.0f;
        t[i] = mt_rng_uniform(1, 50, 1, i);
    }
    mt_loss_objective(kind, z, y, t, B, K, 1.0f, g, &o);
    const float h = 1e-3f;
    for (size_t i = 0; i < B * K; i++) {
        float keep = z[i];
        z[i] = keep + h;
        double lp = mt_loss_objective(kind, z, y, t, B, K, 1.0f, NULL, &o);
        z[i] = keep - h;
        double lm = mt_loss_objective(kind, z, y, t, B, K, 1.0f, NULL, &o);
        z[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        if (fabs(num - g[i]) > 1e-3 * (fabs(num) + 1.0))
            fail_msg("%s gamma %g: element %zu analytic %g numeric %g",
                     mt_loss_name(kind), (double)gamma, i, (double)g[i],
                     num);
    }
}

static void expect_loss_gradient(mt_loss_kind kind)
{
    expect_objective_gradient(kind, 0.0f);
}

/* Focal gradients at several exponents, including gamma < 1 where
 * (1 - p_t)^(gamma - 1) is steep, on both targets kinds of sigmoid. */
static void test_focal_gradients(void **s)
{
    const float gammas[] = {0.5f, 1.0f, 2.0f, 5.0f};
    for (size_t i = 0; i < 4; i++) {
        expect_objective_gradient(MT_LOSS_SOFTMAX_CE, gammas[i]);
        expect_objective_gradient(MT_LOSS_SIGMOID_BCE, gammas[i]);
    }
}

/* Values worked out by hand: softmax of (0, ln 3) with label 1 gives
 * p_t = 3/4, so the gamma-2 loss is (1/4)^2 ln(4/3); a sigmoid logit 0
 * with target 1 has p_t = 1/2: ln 2 / 4. A confident right answer costs
 * almost nothing, and gamma 0 is the plain loss. */
static void test_focal_values(void **s)
{
    float z[2] = {0.0f, logf(3.0f)}, g[2];
    int32_t y = 1;
    double l = mt_loss_softmax_focal(z, &y, 1, 2, 2.0f, 1.0f, g);
    assert_true(fabs(l - 0.0625 * log(4.0 / 3.0)) < 1e-7);
    float zb = 0.0f, tb = 1.0f;
    l = mt_loss_sigmoid_focal(&zb, &tb, 1, 1, 2.0f, 1.0f, NULL);
    assert_true(fabs(l - log(2.0) / 4.0) < 1e-7);
    float sure[2] = {0.0f, 30.0f};
    assert_true(mt_loss_softmax_focal(sure, &y, 1, 2, 2.0f, 1.0f, g) <
                1e-30);
    assert_true(g[0] == 0.0f || fabsf(g[0]) < 1e-30f);
    float z5[5] = {0.3f, -1.0f, 2.0f, 0.1f, 0.0f};
    int32_t y5 = 3;
    assert_true(fabs(mt_loss_softmax_focal(z5, &y5, 1, 5, 0.0f, 1.0f, NULL) -
                     mt_loss_softmax_ce(z5, &y5, 1, 5, 1.0f, NULL)) < 1e-9);
}

static void test_softmax_ce_gradient(void **s)
{
    expect_loss_gradient(MT_LOSS_SOFTMAX_CE);
}
static void test_bce_gradient(void **s)
{
    expect_loss_gradient(MT_LOSS_SIGMOID_BCE);
}
static void test_mse_gradient(void **s) { expect_loss_gradient(MT_LOSS_MSE); }

static void test_softmax_ce_values_and_stability(void **s)
{
    /* Uniform logits: loss log K per sample. */
    float z[2 * 3] = {0, 0, 0, 1000, 0, -1000};
    int32_t y[2] = {1, 0};
    float g[6];
    double l = mt_loss_softmax_ce(z, y, 1, 3, 1.0f, g);
    assert_true(fabs(l - log(3.0)) < 1e-6);
    /* A huge correct logit: loss ~0, no overflow. */
    l = mt_loss_softmax_ce(z + 3, y + 1, 1, 3, 1.0f, g);
    assert_true(isfinite(l) && l < 1e-6);
    /* scale multiplies the gradient: rows sum to zero. */
    mt_loss_softmax_ce(z, y, 2, 3, 0.5f, g);
    assert_true(fabs(g[0] - 0.5 / 3) < 1e-6 && fabs(g[1] + 1.0 / 3) < 1e-6);
}

static void test_bce_and_mse_values(void **s)
{
    float z[2] = {0.0f, 50.0f}, t[2] = {1.0f, 1.0f};
    double l = mt_loss_sigmoid_bce(z, t, 2, 1, 1.0f, NULL);
    assert_true(fabs(l - log(2.0)) < 1e-6); /* second term ~ e^-50 */
    float zz = -100.0f, tt = 1.0f;
    assert_true(fabs(mt_loss_sigmoid_bce(&zz, &tt, 1, 1, 1.0f, NULL) -
                     100.0) < 1e-6);
    float p[4] = {1, 2, 3, 4}, q[4] = {1, 0, 3, 8};
    /* per sample mean over K = 2: (0 + 4) / 2 + (0 + 16) / 2 */
    assert_true(fabs(mt_loss_mse(p, q, 2, 2, 1.0f, NULL) - 10.0) < 1e-9);
}

static void test_class_weights_scale_each_sample(void **s)
{
    float z[2 * 3] = {0.5f, -1.0f, 2.0f, 1.0f, 0.0f, -0.5f}, g[6], gw[6];
    int32_t y[2] = {2, 0};
    float cw[3] = {3.0f, 1.0f, 0.5f};
    double plain0 = mt_loss_softmax_ce(z, y, 1, 3, 1.0f, g);
    double plain1 = mt_loss_softmax_ce(z + 3, y + 1, 1, 3, 1.0f, g + 3);
    mt_loss_opts o = {.class_w = cw};
    double wl = mt_loss_objective(MT_LOSS_SOFTMAX_CE, z, y, NULL, 2, 3, 1.0f,
                                  gw, &o);
    assert_true(fabs(wl - (0.5 * plain0 + 3.0 * plain1)) < 1e-9);
    for (int k = 0; k < 3; k++) {
        assert_true(fabsf(gw[k] - 0.5f * g[k]) < 1e-7f);
        assert_true(fabsf(gw[3 + k] - 3.0f * g[3 + k]) < 1e-7f);
    }
    /* Without weights it is the plain loss. */
    assert_true(fabs(mt_loss_objective(MT_LOSS_SOFTMAX_CE, z, y, NULL, 2, 3,
                                       1.0f, NULL, NULL) -
                     (plain0 + plain1)) < 1e-9);
}

static void test_names(void **s)
{
    assert_int_equal(mt_loss_from_name("mse"), MT_LOSS_MSE);
    assert_int_equal(mt_loss_from_name("nope"), -1);
    assert_string_equal(mt_loss_name(MT_LOSS_SOFTMAX_CE), "softmax_ce");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_ce_gradient),
        cmocka_unit_test(test_bce_gradient),
        cmocka_unit_test(test_mse_gradient),
        cmocka_unit_test(test_softmax_ce_values_and_stability),
        cmocka_unit_test(test_bce_and_mse_values),
        cmocka_unit_test(test_class_weights_scale_each_sample),
        cmocka_unit_test(test_focal_gradients),
        cmocka_unit_test(test_focal_values),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
