#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mpitrain/core.h"

/* Known-answer vectors from Random123's kat_vectors for philox4x32_10. */
static void test_philox_known_answers(void **state)
{
    mt_rng_ctr z = mt_rng_philox((mt_rng_ctr){{0, 0, 0, 0}}, 0);
    assert_int_equal(z.v[0], 0x6627e8d5u);
    assert_int_equal(z.v[1], 0xe169c58du);
    assert_int_equal(z.v[2], 0xbc57ac4cu);
    assert_int_equal(z.v[3], 0x9b00dbd8u);
    mt_rng_ctr f = mt_rng_philox(
        (mt_rng_ctr){{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
        0xffffffffffffffffull);
    assert_int_equal(f.v[0], 0x408f276du);
    assert_int_equal(f.v[1], 0x41c83b0eu);
    assert_int_equal(f.v[2], 0xa20bc7c6u);
    assert_int_equal(f.v[3], 0x6d5451fdu);
}

static void test_permutation(void **state)
{
    enum { N = 1000 };
    size_t p[N], q[N];
    int seen[N] = {0};
    mt_rng_permutation(p, N, 42, MT_RNG_SHUFFLE, 3);
    mt_rng_permutation(q, N, 42, MT_RNG_SHUFFLE, 3);
    size_t fixed = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(p[i] < N);
        seen[p[i]]++;
        assert_int_equal(p[i], q[i]);
        fixed += p[i] == i;
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_true(fixed < 10); /* a shuffle, not the identity */
    mt_rng_permutation(q, N, 42, MT_RNG_SHUFFLE, 4);
    size_t same = 0;
    for (size_t i = 0; i < N; i++)
        same += p[i] == q[i];
    assert_true(same < 10); /* another epoch, another order */
}

static void test_uniform_and_normal_moments(void **state)
{
    enum { N = 200000 };
    double su = 0, sn = 0, sn2 = 0;
    for (size_t i = 0; i < N; i++) {
        float u = mt_rng_uniform(1, MT_RNG_INIT, 0, i);
        assert_true(u >= 0.0f && u < 1.0f);
        su += u;
        double z = mt_rng_normal(1, MT_RNG_INIT, 1, i);
        sn += z;
        sn2 += z * z;
    }
    assert_true(su / N > 0.495 && su / N < 0.505);
    assert_true(sn / N > -0.01 && sn / N < 0.01);
    assert_true(sn2 / N > 0.98 && sn2 / N < 1.02);
}

static void test_seterr_null_ok(void **state)
{
    mt_seterr(NULL, "ignored %d", 1);
    char err[MT_ERR_LEN];
    mt_seterr(err, "file %s line %d", "a.ini", 3);
    assert_string_equal(err, "file a.ini line 3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_seterr_null_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
