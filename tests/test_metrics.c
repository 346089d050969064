/* Metrics against scikit-learn 1.2.1 (Debian python3-sklearn) on fixed
 * inputs, including ties, a class that never appears among the labels, a
 * class never predicted, and single-class input (AUC undefined). The
 * reference values were computed with precision_recall_fscore_support
 * (zero_division=0), roc_auc_score and top_k_accuracy_score. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mpitrain/metrics.h"
#include "mpitrain/train.h"
#include "train/internal.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-9)

static void test_report_matches_sklearn(void **s)
{
    /* y_true = [0,0,1,1,1,2,2,0,1,0,2,1],
     * y_pred = [0,1,1,1,0,0,1,0,1,3,1,1]: class 3 is never a label,
     * class 2 is never predicted. */
    const uint64_t cm[16] = {2, 1, 0, 1, 1, 4, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0};
    mt_report r;
    assert_int_equal(mt_report_from_confusion(cm, 4, &r), 0);
    assert_int_equal(r.n, 12);
    assert_true(NEAR(r.accuracy, 0.5));
    assert_true(NEAR(r.macro.precision, 0.267857142857));
    assert_true(NEAR(r.macro.recall, 0.325));
    assert_true(NEAR(r.macro.f1, 0.291666666667));
    assert_true(NEAR(r.micro.f1, 0.5));
    assert_true(NEAR(r.weighted.precision, 0.404761904762));
    assert_true(NEAR(r.weighted.recall, 0.5));
    assert_true(NEAR(r.weighted.f1, 0.444444444444));
    assert_true(NEAR(r.cls[1].precision, 0.571428571429));
    assert_true(NEAR(r.cls[1].recall, 0.8));
    assert_true(NEAR(r.cls[1].f1, 0.666666666667));
    assert_true(r.cls[2].precision == 0.0 && r.cls[2].recall == 0.0);
    assert_int_equal(r.cls[2].support, 3);
    assert_int_equal(r.cls[3].support, 0);
    mt_report_free(&r);
    mt_report_free(&r);
}

static void test_binary_auc_with_ties(void **s)
{
    const float sc[10] = {0.1f, 0.4f, 0.35f, 0.8f, 0.4f,
                          0.9f, 0.1f, 0.55f, 0.4f, 0.2f};
    const uint8_t y[10] = {0, 0, 1, 1, 1, 1, 0, 0, 0, 1};
    int ok;
    assert_true(NEAR(mt_roc_auc(sc, y, 10, &ok), 0.68));
    assert_true(ok);
}

static void test_auc_undefined_for_one_class(void **s)
{
    const float sc[3] = {0.2f, 0.5f, 0.9f};
    const uint8_t y[3] = {1, 1, 1};
    int ok = 1;
    assert_true(isnan(mt_roc_auc(sc, y, 3, &ok)));
    assert_false(ok);
    const int32_t lab[3] = {0, 0, 0};
    const float sk[6] = {0.9f, 0.1f, 0.8f, 0.2f, 0.4f, 0.6f};
    size_t undefined;
    /* Class 0 only: neither class has both positives and negatives. */
    assert_true(isnan(mt_roc_auc_ovr(sk, lab, 3, 2, &undefined)));
    assert_int_equal(undefined, 2);
}

static void test_ovr_auc_and_top_k(void **s)
{
    const float P[27] = {
        0.293992f, 0.383117f, 0.322892f, 0.337508f, 0.262417f, 0.400075f,
        0.190834f, 0.388907f, 0.420259f, 0.225016f, 0.464611f, 0.310373f,
        0.363043f, 0.591558f, 0.0454f,   0.092694f, 0.02151f,  0.885796f,
        0.296239f, 0.331208f, 0.372553f, 0.39152f,  0.226086f, 0.382394f,
        0.13119f,  0.709802f, 0.159008f};
    const int32_t y[9] = {0, 1, 2, 2, 1, 0, 0, 1, 2};
    size_t undefined;
    assert_true(NEAR(mt_roc_auc_ovr(P, y, 9, 3, &undefined), 0.37037037037));
    assert_int_equal(undefined, 0);
    assert_int_equal(mt_top_k_correct(P, y, 9, 3, 2), 5); /* 0.5556 */
    assert_int_equal(mt_top_k_correct(P, y, 9, 3, 3), 9);
}

static void test_regression_matches_sklearn(void **s)
{
    const float y[8] = {1.0f, 2.0f, 2.0f, 0.5f, 3.5f, 1.0f, 0.0f, 4.0f};
    const float p[8] = {1.5f, 2.0f, 1.0f, 1.0f, 3.0f, 0.0f, 0.5f, 3.0f};
    double sums[10] = {0}, mse, mae, r2;
    /* Split in two parts, as two ranks would. */
    mt_regression_add(p, y, 1, 2, sums);
    mt_regression_add(p + 2, y + 2, 3, 2, sums);
    mt_regression_finish(sums, 2, &mse, &mae, &r2);
    assert_true(NEAR(mse, 0.5));
    assert_true(NEAR(mae, 0.625));
    assert_true(NEAR(r2, 0.712637139374));
}

/* Non-finite scores: every function returns (no loop spins on NaN) with
 * a documented result. */
static void test_auc_with_nan_inf_and_ties(void **s)
{
    const uint8_t y[4] = {0, 0, 1, 0};
    int ok = 1;
    const float with_nan[4] = {0.1f, NAN, 0.7f, 0.3f};
    assert_true(isnan(mt_roc_auc(with_nan, y, 4, &ok)));
    assert_false(ok);
    const float all_nan[4] = {NAN, NAN, NAN, NAN};
    assert_true(isnan(mt_roc_auc(all_nan, y, 4, &ok)));
    assert_false(ok);
    /* -Inf and +Inf are ordered: the positive beats two negatives and
     * ties one: (2 + 0.5) / 3. */
    const float inf[4] = {-INFINITY, 0.2f, INFINITY, INFINITY};
    assert_true(NEAR(mt_roc_auc(inf, y, 4, &ok), 2.5 / 3.0));
    assert_true(ok);
    const float same[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    assert_true(NEAR(mt_roc_auc(same, y, 4, &ok), 0.5));
    assert_true(ok);
    const float same_inf[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    assert_true(NEAR(mt_roc_auc(same_inf, y, 4, &ok), 0.5));
    const float neg_inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_true(NEAR(mt_roc_auc(neg_inf, y, 4, &ok), 0.5));
    /* One NaN among the (n, K) scores: the macro AUC is NaN as a whole. */
    const float sk[6] = {0.9f, 0.1f, 0.8f, NAN, 0.4f, 0.6f};
    const int32_t lab[3] = {0, 1, 1};
    size_t undefined = 0;
    assert_true(isnan(mt_roc_auc_ovr(sk, lab, 3, 2, &undefined)));
    assert_int_equal(undefined, 2);
    const float sk_inf[6] = {INFINITY, -INFINITY, 0.2f, 0.8f, 0.4f, 0.6f};
    assert_true(NEAR(mt_roc_auc_ovr(sk_inf, lab, 3, 2, &undefined), 1.0));
    assert_int_equal(undefined, 0);
}

static void test_top_k_and_correct_with_nan(void **s)
{
    /* Rows: label's score NaN; another class NaN; +Inf wins; all equal;
     * all NaN. */
    const float sc[15] = {NAN,  0.5f, 0.2f,      0.1f, NAN,  0.3f,
                          0.2f, 0.1f, INFINITY,  0.4f, 0.4f, 0.4f,
                          NAN,  NAN,  NAN};
    const int32_t y[5] = {0, 0, 2, 1, 2};
    assert_int_equal(mt_top_k_correct(sc, y, 5, 3, 1), 2);
    assert_int_equal(mt_top_k_correct(sc, y, 5, 3, 3), 3);
    /* argmax of a row with a NaN is no class: rows 0, 1 and 4 miss. */
    assert_int_equal(mt_count_correct(MT_LOSS_SOFTMAX_CE, sc, y, NULL, 5, 3),
                     1);
    const float one[3] = {NAN, 1.0f, -INFINITY};
    const float t[3] = {0.0f, 1.0f, 0.0f};
    assert_int_equal(mt_count_correct(MT_LOSS_SIGMOID_BCE, one, NULL, t, 3, 1),
                     2);
}

/* Early stopping, reduce-on-plateau and the best checkpoint share one
 * comparison: NaN never improves, anything beats no value yet, and the
 * infinities compare as numbers. */
static void test_improves_with_non_finite(void **s)
{
    assert_false(mt_metric_improves(NAN, 1.0, 1, 0.0));
    assert_false(mt_metric_improves(NAN, NAN, 1, 0.0));
    assert_true(mt_metric_improves(1.0, NAN, 1, 0.0));
    assert_true(mt_metric_improves(INFINITY, NAN, 0, 0.0));
    assert_true(mt_metric_improves(-INFINITY, 1.0, 1, 0.0));
    assert_false(mt_metric_improves(-INFINITY, -INFINITY, 1, 0.0));
    assert_false(mt_metric_improves(INFINITY, 1.0, 1, 0.0));
    assert_true(mt_metric_improves(INFINITY, 1.0, 0, 0.5));
    assert_false(mt_metric_improves(1.0, 1.0, 0, 0.0)); /* all equal: no gain */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_matches_sklearn),
        cmocka_unit_test(test_binary_auc_with_ties),
        cmocka_unit_test(test_auc_undefined_for_one_class),
        cmocka_unit_test(test_ovr_auc_and_top_k),
        cmocka_unit_test(test_regression_matches_sklearn),
        cmocka_unit_test(test_auc_with_nan_inf_and_ties),
        cmocka_unit_test(test_top_k_and_correct_with_nan),
        cmocka_unit_test(test_improves_with_non_finite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
