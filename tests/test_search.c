/* The search space: [search] parsing (errors name file:line and key),
 * grid enumeration, random values reproducible and in their bounds. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/search.h"

static const char base[] = "[data]\ntrain = a.h5\n[train]\nepochs = 2\n"
                           "[dense]\nunits = 4\n[dropout]\nrate = 0.1\n"
                           "[dense]\nunits = 3\n";

static char path[64];

static int read_space(const char *search, mt_search_space *s, char *err)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s%s", base, search);
    fclose(f);
    return mt_search_space_read(s, path, NULL, 0, err);
}

static void expect_error(const char *search, const char *frag)
{
    mt_search_space s;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(read_space(search, &s, err), MT_EINVAL);
    if (!strstr(err, frag))
        fail_msg("error lacks '%s': %s", frag, err);
}

static void test_errors_name_the_line(void **st)
{
    /* The base has 10 lines; [search] is line 11. */
    expect_error("[search]\noptimizer.lr = normal(0, 1)\n",
                 ":12: [search] optimizer.lr: 'normal(0, 1)' is not grid");
    expect_error("[search]\noptimizer.lrr = grid(0.1)\n",
                 ":12: [search] optimizer.lrr: ");
    expect_error("[search]\noptimizer.lrr = grid(0.1)\n", "unknown key");
    expect_error("[search]\noptimizer.lr = grid()\n",
                 ":12: [search] optimizer.lr: an empty grid");
    expect_error("[search]\ntrain.batch = grid(8, 0)\n",
                 ":12: [search] train.batch: ");
    expect_error("[search]\nmethod = grid\nlayer2.rate = uniform(0.1, 0.5)\n",
                 ":13: [search] layer2.rate: method = grid takes grid");
    expect_error("[search]\nmethod = random\nlayer2.rate = uniform(0.5, 0.1)\n"
                 "trials = 3\n",
                 ":13: [search] layer2.rate: bad bounds");
    expect_error("[search]\nmethod = random\noptimizer.lr = grid(0.1)\n",
                 "method = random needs trials");
    expect_error("[search]\nmetric = val_fun\noptimizer.lr = grid(0.1)\n",
                 ":12: [search] metric: 'val_fun' is not a logged metric");
    expect_error("[search]\noptimizer.lr = grid(0.1)\noptimizer.lr = "
                 "grid(0.2)\n",
                 ":13: [search] optimizer.lr: given twice (first on line "
                 "12)");
    expect_error("[search]\nmethod = grid\n", "no parameter to vary");
    expect_error("", "no [search] section");
}

static void test_grid_covers_every_point(void **st)
{
    mt_search_space s;
    char err[MT_ERR_LEN], v[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    assert_int_equal(read_space("[search]\noptimizer.lr = grid(0.1, 0.2)\n"
                                "train.batch = choice(8, 16, 32)\n",
                                &s, err),
                     MT_OK);
    assert_int_equal(s.trials, 6);
    assert_int_equal(s.metric, MT_MONITOR_VAL_ACCURACY);
    assert_true(s.maximize);
    int seen[2][3] = {{0}};
    for (size_t t = 0; t < s.trials; t++) {
        mt_search_trial_values(&s, t, v);
        int a = !strcmp(v[0], "0.2"), b = atoi(v[1]) / 16;
        seen[a][b]++;
    }
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            assert_int_equal(seen[a][b], 1);
    mt_search_trial_values(&s, 0, v);
    assert_string_equal(v[0], "0.1");
    assert_string_equal(v[1], "8");
}

static void test_random_is_reproducible_and_bounded(void **st)
{
    mt_search_space s;
    char err[MT_ERR_LEN], v[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN],
        w[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    assert_int_equal(read_space("[search]\nmethod = random\ntrials = 50\n"
                                "seed = 7\nmetric = val_loss\n"
                                "optimizer.lr = loguniform(1e-4, 1e-1)\n"
                                "layer2.rate = uniform(0.1, 0.5)\n"
                                "layer1.units = int(2, 5)\n"
                                "train.batch = choice(8, 16)\n",
                                &s, err),
                     MT_OK);
    assert_int_equal(s.trials, 50);
    assert_false(s.maximize); /* val_loss: auto is min */
    int ints[6] = {0};
    for (size_t t = 0; t < s.trials; t++) {
        mt_search_trial_values(&s, t, v);
        mt_search_trial_values(&s, t, w);
        for (size_t k = 0; k < s.n; k++)
            assert_string_equal(v[k], w[k]);
        double lr = atof(v[0]), rate = atof(v[1]);
        assert_true(lr >= 1e-4 && lr <= 1e-1);
        assert_true(rate >= 0.1 && rate <= 0.5);
        int u = atoi(v[2]);
        assert_true(u >= 2 && u <= 5);
        ints[u]++;
        assert_true(!strcmp(v[3], "8") || !strcmp(v[3], "16"));
    }
    for (int u = 2; u <= 5; u++)
        assert_true(ints[u] > 0); /* both ends included */
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/mt_test_search_%d.ini", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_grid_covers_every_point),
        cmocka_unit_test(test_random_is_reproducible_and_bounded),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove(path);
    return failed;
}
