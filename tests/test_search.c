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
#include "search/internal.h"

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

/* ASHA's rungs and the grid order it draws in. */
static void test_asha_rungs_and_grid_order(void **st)
{
    mt_search_space s;
    char err[MT_ERR_LEN] = "", v[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    assert_int_equal(read_space("[search]\nmethod = asha\nmax_epochs = 9\n"
                                "optimizer.lr = grid(0.1, 0.2, 0.3)\n"
                                "train.batch = grid(8, 16, 32)\n",
                                &s, err),
                     MT_OK);
    assert_int_equal(s.rungs, 3);
    assert_int_equal(s.rung_epochs[0], 1);
    assert_int_equal(s.rung_epochs[1], 3);
    assert_int_equal(s.rung_epochs[2], 9);
    assert_int_equal(s.trials, 9); /* every grid point, scrambled */
    int seen[3][3] = {{0}}, in_order = 1;
    for (size_t t = 0; t < s.trials; t++) {
        mt_search_trial_values(&s, t, v);
        int a = (int)(atof(v[0]) * 10 + 0.5) - 1, b = atoi(v[1]) / 16;
        seen[a][b]++;
        in_order &= (size_t)(a * 3 + b) == t;
    }
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            assert_int_equal(seen[a][b], 1);
    assert_false(in_order);
    /* Every seed and size gives a bijection, found at once (a stride
     * search that looped for ever on seed 42 with 12 points once hung a
     * search at start). */
    for (int n = 1; n <= 12; n++)
        for (uint64_t seed = 0; seed < 50; seed += 7) {
            char text[400];
            int len = snprintf(text, sizeof text,
                               "[search]\nmethod = asha\nmax_epochs = 9\n"
                               "seed = %llu\ntrain.batch = grid(",
                               (unsigned long long)seed);
            for (int i = 1; i <= n; i++)
                len += snprintf(text + len, sizeof text - (size_t)len,
                                "%d%s", i, i < n ? ", " : ")\n");
            assert_int_equal(read_space(text, &s, err), MT_OK);
            assert_int_equal(s.trials, (size_t)n);
            int hit[13] = {0};
            for (size_t t = 0; t < s.trials; t++) {
                mt_search_trial_values(&s, t, v);
                hit[atoi(v[0])]++;
            }
            for (int i = 1; i <= n; i++)
                assert_int_equal(hit[i], 1);
        }
    /* [train] epochs (2 in the base) is the top without max_epochs; a
     * rung ladder that does not reach it is cut there. */
    assert_int_equal(read_space("[search]\nmethod = asha\neta = 4\n"
                                "optimizer.lr = uniform(0.1, 0.2)\n"
                                "trials = 5\n",
                                &s, err),
                     MT_OK);
    assert_int_equal(s.rungs, 2);
    assert_int_equal(s.rung_epochs[1], 2);
    expect_error("[search]\nmethod = asha\nmin_epochs = 2\n"
                 "optimizer.lr = grid(0.1)\n",
                 "min_epochs: 2 leaves no rung below the 2 epochs");
    expect_error("[search]\nmethod = asha\noptimizer.lr = uniform(0.1, 0.2)\n",
                 "method = asha over uniform, loguniform or int needs trials");
    expect_error("[search]\neta = 3\noptimizer.lr = grid(0.1)\n",
                 "eta: only method = asha has rungs");
    expect_error("[search]\nmethod = asha\neta = 1\noptimizer.lr = grid(0.1)\n",
                 "expected an integer >= 2");
}

/* A simulated ASHA search: `workers` groups, each job's result the
 * trial's own quality q[t] (higher is better) after `epochs` epochs,
 * results arriving in the order the jobs were given, oldest first. The
 * records go to log (as the journal has them). Returns the jobs run. */
typedef struct sim {
    mt__record log[256];
    size_t n_log;
} sim;

static void sim_take(sim *m, mt__trial *tr, const char *ev, size_t t,
                     int rung, size_t epochs, double metric)
{
    mt__record *r = &m->log[m->n_log++];
    memset(r, 0, sizeof *r);
    snprintf(r->event, sizeof r->event, "%s", ev);
    r->trial = t;
    r->rung = rung;
    r->epochs = epochs;
    r->metric = metric;
    if (mt__trial_take(&tr[t], r))
        tr[t].running = 0;
}

static size_t failing = SIZE_MAX;

static size_t simulate(const mt_search_space *s, mt__trial *tr, int workers,
                       const double *q, sim *m, size_t stop_after)
{
    mt__job run[8];
    size_t n_run = 0, jobs = 0;
    for (;;) {
        int got = MT__JOB_GIVEN;
        while (n_run < (size_t)workers &&
               (got = mt__next_job(s, tr, &run[n_run])) == MT__JOB_GIVEN) {
            const mt__job *j = &run[n_run++];
            sim_take(m, tr, j->promoted ? "promoted" : "started", j->trial,
                     j->rung, 0, NAN);
        }
        if (n_run == 0) {
            assert_int_equal(got, MT__JOB_NONE);
            return jobs;
        }
        if (jobs == stop_after)
            return jobs; /* a kill: the running jobs have no result */
        mt__job j = run[0];
        memmove(run, run + 1, --n_run * sizeof *run);
        size_t e = s->rung_epochs[j.rung];
        /* trial 5 stops early at its first rung, trial `failing` fails
         * at its second: neither goes further */
        sim_take(m, tr,
                 j.trial == failing && j.rung == 1 ? "failed" : "finished",
                 j.trial, j.rung, j.trial == 5 ? 0 : e,
                 q[j.trial] + (double)e);
        jobs++;
    }
}

static void test_asha_promotes_the_best(void **st)
{
    mt_search_space s;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(read_space("[search]\nmethod = asha\ntrials = 27\n"
                                "max_epochs = 9\nmetric = val_accuracy\n"
                                "optimizer.lr = uniform(0.1, 0.2)\n",
                                &s, err),
                     MT_OK);
    double q[27];
    for (int t = 0; t < 27; t++)
        q[t] = (double)((t * 7) % 27) / 27.0; /* trial 23 is the best */
    failing = 19; /* the second best: promoted, and fails there */
    for (int workers = 1; workers <= 4; workers++) {
        mt__trial tr[27];
        memset(tr, 0, sizeof tr);
        static sim m;
        m.n_log = 0;
        size_t jobs = simulate(&s, tr, workers, q, &m, SIZE_MAX);
        int at_rung[3] = {0};
        for (int t = 0; t < 27; t++) {
            assert_int_equal(tr[t].state,
                             t == 19 ? MT__TRIAL_FAILED : MT__TRIAL_FINISHED);
            at_rung[tr[t].rung]++;
            assert_true(t != 5 || tr[t].rung == 0);
            assert_true(t != 19 || tr[t].rung == 1);
        }
        /* Every trial once at rung 0; at least the best 1/3 of each rung
         * go on (asynchrony may promote a few more). */
        assert_int_equal(jobs, 27 + (size_t)(at_rung[1] + at_rung[2]) +
                                   (size_t)at_rung[2]);
        assert_true(at_rung[1] + at_rung[2] >= 9 && at_rung[2] >= 3);
        /* Quality rising along the trials (as here) promotes early
         * arrivals that later fall out of the top: 13 and 6, not 9 and
         * 3, at every number of groups. */
        assert_true(at_rung[1] + at_rung[2] <= 13 && at_rung[2] <= 6);
        assert_int_equal(mt__best_trial(tr, 27, 1), 23);
        assert_int_equal(tr[23].rung, 2);
        /* No trial is promoted twice to one rung, nor before its result. */
        int promoted[27][3] = {{0}};
        for (size_t i = 0; i < m.n_log; i++)
            if (!strcmp(m.log[i].event, "promoted")) {
                int r = m.log[i].rung;
                size_t t = m.log[i].trial;
                assert_int_equal(++promoted[t][r], 1);
                assert_true(r >= 1 && tr[t].at[r - 1] > 0);
            }
    }
}

static const mt__record *next_promotion(const sim *m, size_t *i)
{
    while (*i < m->n_log && strcmp(m->log[*i].event, "promoted"))
        (*i)++;
    return *i < m->n_log ? &m->log[(*i)++] : NULL;
}

/* A kill after any number of results: replaying the journal and going on
 * gives the promotions an uninterrupted search makes (one group). */
static void test_asha_resumes_its_decisions(void **st)
{
    mt_search_space s;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(read_space("[search]\nmethod = asha\ntrials = 12\n"
                                "eta = 2\nmax_epochs = 4\n"
                                "optimizer.lr = uniform(0.1, 0.2)\n",
                                &s, err),
                     MT_OK);
    double q[12];
    for (int t = 0; t < 12; t++)
        q[t] = (double)((t * 5) % 12) / 12.0;
    static sim whole, cut, rest;
    failing = SIZE_MAX;
    mt__trial ref[12];
    memset(ref, 0, sizeof ref);
    whole.n_log = 0;
    size_t total = simulate(&s, ref, 1, q, &whole, SIZE_MAX);
    for (size_t kill = 0; kill < total; kill++) {
        mt__trial tr[12], again[12];
        memset(tr, 0, sizeof tr);
        memset(again, 0, sizeof again);
        cut.n_log = rest.n_log = 0;
        simulate(&s, tr, 1, q, &cut, kill);
        for (size_t i = 0; i < cut.n_log; i++) /* the journal, reloaded */
            mt__trial_take(&again[cut.log[i].trial], &cut.log[i]);
        simulate(&s, again, 1, q, &rest, SIZE_MAX);
        /* The promotions of cut then rest are those of whole. */
        size_t a = 0, b = 0;
        for (size_t i = 0; i < whole.n_log; i++) {
            if (strcmp(whole.log[i].event, "promoted"))
                continue;
            const mt__record *p = next_promotion(&cut, &a);
            if (!p)
                p = next_promotion(&rest, &b);
            assert_non_null(p);
            assert_int_equal(p->trial, whole.log[i].trial);
            assert_int_equal(p->rung, whole.log[i].rung);
        }
        assert_null(next_promotion(&rest, &b));
        for (int t = 0; t < 12; t++) {
            assert_int_equal(again[t].rung, ref[t].rung);
            assert_int_equal(again[t].state, MT__TRIAL_FINISHED);
        }
    }
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/mt_test_search_%d.ini", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_grid_covers_every_point),
        cmocka_unit_test(test_random_is_reproducible_and_bounded),
        cmocka_unit_test(test_asha_rungs_and_grid_order),
        cmocka_unit_test(test_asha_promotes_the_best),
        cmocka_unit_test(test_asha_resumes_its_decisions),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    remove(path);
    return failed;
}
