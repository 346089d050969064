/* eval, predict and explain on a pipeline's config: with [parallel]
 * stages on several ranks each rank holds only its stage's layers (the
 * others' pages are protected, so a rank that touched them would crash)
 * and the samples go forward through the stages; the results are one
 * rank's with the whole model, at 2 stages, 3 stages, 4 stages and the
 * 2 x 2 grid. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_fixture.h"

/* Layers big enough to span pages of their own (dense4: 257 KiB). */
static const char pipe_ini[] =
    "[run]\ndir = run\nprogress = lines\n"
    "[data]\ntrain = d.h5\ntest = d.h5\n"
    "[train]\nepochs = 10\nbatch = 16\n"
    "[optimizer]\ntype = adam\nlr = 0.003\n"
    "[parallel]\nstages = 2\n"
    "[flatten]\n[dense]\nunits = 256\nactivation = relu\n"
    "[dense]\nunits = 256\nactivation = relu\n"
    "[dense]\nunits = 3\n[softmax]\n";

/* How each layout is run: ranks and settings. */
typedef struct layout {
    int np;
    const char *sets;
    int stages;
} layout;

static const layout layouts[] = {
    {2, "", 2},
    {3, "--set parallel.stages=3", 3},
    {4, "", 2}, /* 2 stages x 2 replicas */
    {4, "--set parallel.stages=4 --set parallel.split=1,3,5", 4},
};
#define N_LAYOUTS (sizeof layouts / sizeof layouts[0])

static int pipe_setup(void **s)
{
    if (cli_setup(s))
        return -1;
    write_text("pipe.ini", pipe_ini);
    /* Trained as a pipeline, 2 stages; a second member for ensembles. */
    if (run("%s -np 2 %s train pipe.ini", mpirun, bin) != 0 ||
        run("%s -np 2 %s train pipe.ini --set run.dir=run2 --set run.seed=9",
            mpirun, bin) != 0) {
        fprintf(stderr, "training the pipeline failed:\n%s\n", out);
        return -1;
    }
    return 0;
}

static double json_number(const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(out, k);
    if (!p)
        fail_msg("no %s in: %s", key, out);
    return atof(p + strlen(k));
}

/* eval --json with these weights: through each layout's stages, the
 * whole model's loss (1e-5), accuracy and AUC (1e-6). */
static void expect_eval_as_whole(const char *weights)
{
    assert_int_equal(run("%s eval pipe.ini --weights %s --json", bin,
                         weights),
                     0);
    assert_int_equal((int)json_number("stages"), 1);
    double loss = json_number("loss"), acc = json_number("accuracy"),
           auc = json_number("roc_auc");
    assert_true(acc > 0.9); /* trained: the task is easy */
    for (size_t i = 0; i < N_LAYOUTS; i++) {
        const layout *l = &layouts[i];
        assert_int_equal(run("%s -np %d %s eval pipe.ini --weights %s "
                             "--json %s",
                             mpirun, l->np, bin, weights, l->sets),
                         0);
        assert_int_equal((int)json_number("stages"), l->stages);
        if (fabs(json_number("loss") - loss) > 1e-5 ||
            json_number("accuracy") != acc ||
            fabs(json_number("roc_auc") - auc) > 1e-6)
            fail_msg("%d ranks %s: loss %.7f accuracy %.4f AUC %.7f "
                     "whole: %s",
                     l->np, l->sets, loss, acc, auc, out);
    }
}

static void test_eval_goes_through_the_stages(void **s)
{
    expect_eval_as_whole("run/weights.h5");
    assert_int_equal(run("%s -np 4 %s eval pipe.ini --weights "
                         "run/weights.h5",
                         mpirun, bin),
                     0);
    expect_output("through 2 pipeline stages x 2 replicas");
    assert_int_equal(count("samples  loss"), 1); /* rank 0 prints */
}

/* An ensemble's members each go through the stages, chunk by chunk. */
static void test_ensemble_goes_through_the_stages(void **s)
{
    expect_eval_as_whole("run/weights.h5,run2/weights.h5");
}

static void test_predict_goes_through_the_stages(void **s)
{
    assert_int_equal(run("%s predict pipe.ini --weights run/weights.h5 "
                         "--input d.h5 --output whole.csv",
                         bin),
                     0);
    for (size_t i = 0; i < N_LAYOUTS; i++) {
        const layout *l = &layouts[i];
        assert_int_equal(run("%s -np %d %s predict pipe.ini --weights "
                             "run/weights.h5 --input d.h5 --output "
                             "staged.csv %s",
                             mpirun, l->np, bin, l->sets),
                         0);
        expect_same_csv("whole.csv", "staged.csv");
    }
}

/* Permutation importance runs on the first replica's stages; the same
 * chunks through the same layers give the same numbers to the bit. One
 * group, the whole 4 x 4 image: shuffled, the labels are guesses. */
static void test_explain_goes_through_the_stages(void **s)
{
    char baseline[128];
    assert_int_equal(run("%s explain pipe.ini --weights run/weights.h5 "
                         "--group 4 --output xw",
                         bin),
                     0);
    const char *b = strstr(out, "baseline accuracy");
    assert_non_null(b);
    snprintf(baseline, sizeof baseline, "%.*s", (int)strcspn(b, ";"), b);
    assert_int_equal(run("sed -n 2p xw/importance.csv"), 0);
    assert_true(atof(strrchr(out, ',') + 1) > 0.3);
    for (size_t i = 0; i < N_LAYOUTS; i++) {
        const layout *l = &layouts[i];
        assert_int_equal(run("rm -rf xs && %s -np %d %s explain pipe.ini "
                             "--weights run/weights.h5 --group 4 "
                             "--output xs %s",
                             mpirun, l->np, bin, l->sets),
                         0);
        expect_output(baseline);
        assert_int_equal(count("baseline accuracy"), 1);
        assert_int_equal(run("cmp xw/importance.csv xs/importance.csv"), 0);
    }
}

/* --dry-run gives each stage's kept activations: 1f1b's stage s holds
 * P - s micro-batches (here of 2 samples), gpipe all 8, a stage that
 * recomputes one. */
static void test_dry_run_gives_the_activations_held(void **s)
{
    const char *cases[][3] = {
        {"1f1b", "activations of 4 samples", "activations of 2 samples"},
        {"gpipe", "activations of 16 samples", "activations of 16 samples"},
        {"zb", "activations of 6 samples", "activations of 4 samples"},
    };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run("%s -np 2 %s train pipe.ini --dry-run --set "
                             "parallel.micro_batches=8 --set "
                             "parallel.schedule=%s --set parallel.split=3",
                             mpirun, bin, cases[i][0]),
                         0);
        char *two = strstr(out, "stage 2 of 2");
        assert_non_null(two);
        *two = '\0'; /* stage 1's line, then stage 2's */
        expect_output(cases[i][1]);
        memmove(out, two + 1, strlen(two + 1) + 1);
        expect_output(cases[i][2]);
    }
    assert_int_equal(run("%s -np 2 %s train pipe.ini --dry-run --set "
                         "parallel.micro_batches=8 --set "
                         "parallel.recompute=true",
                         mpirun, bin),
                     0);
    assert_int_equal(count("activations of 2 samples"), 2);
}

/* A grid that does not fit the ranks, or a cut with an empty stage, is
 * refused by name on every layout, with one message. */
static void test_bad_grids_are_refused(void **s)
{
    assert_int_equal(run("%s -np 2 %s eval pipe.ini --weights run/weights.h5 "
                         "--set parallel.stages=3",
                         mpirun, bin),
                     1);
    expect_output("[parallel] stages = 3 does not divide the 2 ranks");
    assert_int_equal(count("error"), 1);
    assert_int_equal(run("%s -np 3 %s predict pipe.ini --weights "
                         "run/weights.h5 --input d.h5 --set parallel.stages=3 "
                         "--set parallel.split=1,6",
                         mpirun, bin),
                     1);
    expect_output("[parallel] split = 1,6: layer 6 is the last");
    assert_int_equal(run("%s -np 2 %s explain pipe.ini --weights nothere.h5",
                         mpirun, bin),
                     1);
    expect_output("nothere.h5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_goes_through_the_stages),
        cmocka_unit_test(test_ensemble_goes_through_the_stages),
        cmocka_unit_test(test_predict_goes_through_the_stages),
        cmocka_unit_test(test_explain_goes_through_the_stages),
        cmocka_unit_test(test_dry_run_gives_the_activations_held),
        cmocka_unit_test(test_bad_grids_are_refused),
    };
    return cmocka_run_group_tests(tests, pipe_setup, cli_teardown);
}
