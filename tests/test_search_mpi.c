/* The search farm at 1-4 ranks (tests/mpirun.sh): every grid point once,
 * a second run skips finished trials and resumes the rest, a failing
 * trial does not stop the search, groups of 2 ranks (3 ranks in groups of
 * 2 is an error naming the numbers). */
#include <math.h>
#include <mpi.h>
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
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];

static const char ini[] =
    "[run]\nprogress = none\n[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 8\nbatch = 10\nloss = mse\n"
    "[optimizer]\nlr = 0.05\n[checkpoint]\nevery_steps = 3\n"
    "[flatten]\n[dense]\nunits = 3\n"
    "[search]\nmethod = grid\noptimizer.lr = grid(0.01, 0.05, 1000)\n"
    "optimizer.momentum = grid(0, 0.9)\nmetric = val_loss\n";

static int group_setup(void **s) { return fx_setup(dir, sizeof dir, ini); }
static int group_teardown(void **s) { return fx_teardown(dir); }

/* Counts of each event per trial in the journal of search dir `name`. */
static void count_events(const char *name, int started[6], int finished[6],
                         int failed[6])
{
    char path[400], line[4096];
    snprintf(path, sizeof path, "%s/%s/journal.jsonl", dir, name);
    memset(started, 0, 6 * sizeof(int));
    memset(finished, 0, 6 * sizeof(int));
    memset(failed, 0, 6 * sizeof(int));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        const char *t = strstr(line, "\"trial\":");
        if (strstr(line, "\"event\":\"search\"")) /* a run's header */
            continue;
        assert_non_null(t);
        int i = atoi(t + 8);
        assert_true(i >= 0 && i < 6);
        started[i] += strstr(line, "\"started\"") != NULL;
        finished[i] += strstr(line, "\"finished\"") != NULL;
        failed[i] += strstr(line, "\"failed\"") != NULL;
    }
    fclose(f);
}

static int run_search(const char *name, const char *file, char *err)
{
    char train[300], rundir[300];
    snprintf(train, sizeof train, "data.train=%s/d.h5", dir);
    snprintf(rundir, sizeof rundir, "run.dir=%s/%s", dir, name);
    char *sets[2] = {train, rundir};
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, file ? file : "t.ini");
    return mt_search(path, sets, 2, MPI_COMM_WORLD, NULL, err);
}

/* Every point of the 3 x 2 grid exactly once; lr = 1000 diverges (failed,
 * journaled with its message) and the search goes on; best.ini loads. */
static void test_grid_once_and_failures_go_on(void **s)
{
    char err[MT_ERR_LEN] = "";
    assert_int_equal(run_search("g", NULL, err), MT_OK);
    if (rank != 0)
        return;
    int st[6], fin[6], bad[6];
    count_events("g", st, fin, bad);
    for (int t = 0; t < 6; t++) {
        assert_int_equal(st[t], 1);
        assert_int_equal(fin[t] + bad[t], 1);
        assert_int_equal(bad[t], t >= 4); /* lr = 1000 */
    }
    char path[400];
    snprintf(path, sizeof path, "%s/g/best.ini", dir);
    mt_config c;
    assert_int_equal(mt_config_load(&c, path, NULL, 0, err), MT_OK);
    mt_config_free(&c);
}

/* Rank 0 passes search `name`'s journal through `filter` (what a kill
 * would have left of it); then every rank goes on. */
static void cut_journal(const char *name, const char *filter)
{
    if (rank == 0) {
        char path[300], cmd[2000];
        snprintf(path, sizeof path, "%s/%s/journal.jsonl", dir, name);
        snprintf(cmd, sizeof cmd, "%s %s > %s.cut && mv %s.cut %s", filter,
                 path, path, path, path);
        assert_int_equal(system(cmd), 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* A search cut short: the journal lost the last records of trials 2-5
 * (as after a kill). The rerun runs exactly those again, from their
 * checkpoints, and no finished trial twice. */
static void test_rerun_skips_finished(void **s)
{
    char err[MT_ERR_LEN] = "", cmd[2000];
    assert_int_equal(run_search("r", NULL, err), MT_OK);
    cut_journal("r", "grep -v -E '\"(finished|failed)\",\"trial\":[2-5]'");
    assert_int_equal(run_search("r", NULL, err), MT_OK);
    if (rank != 0)
        return;
    int st[6], fin[6], bad[6];
    count_events("r", st, fin, bad);
    for (int t = 0; t < 6; t++) {
        assert_int_equal(st[t], t < 2 ? 1 : 2);
        assert_int_equal(fin[t] + bad[t], 1);
    }
    /* A resumed trial found its checkpoint. */
    snprintf(cmd, sizeof cmd, "grep -q 'resuming from' %s/r/trial-0002/"
                              "train.log", dir);
    assert_int_equal(system(cmd), 0);
    /* They had finished: resumed, they train nothing, and their metric
     * comes from their own metrics log, not null. */
    snprintf(cmd, sizeof cmd,
             "grep -E '\"finished\",\"trial\":[2-5],\"metric\":null' "
             "%s/r/journal.jsonl",
             dir);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "grep -q -E '\"finished\",\"trial\":[2-5],\"metric\":[0-9]' "
             "%s/r/journal.jsonl",
             dir);
    assert_int_equal(system(cmd), 0);
}

/* Groups of 2 ranks: on an even rank count every point once (the
 * group's ranks share each trial's batches); on 1 or 3 ranks an error
 * naming the numbers, before any trial. */
static void test_groups_of_two(void **s)
{
    char err[MT_ERR_LEN] = "", path[300];
    if (rank == 0) {
        snprintf(path, sizeof path, "%s/t2.ini", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "%sranks_per_trial = 2\n", ini);
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    int rc = run_search("p", "t2.ini", err);
    if (size % 2) {
        assert_int_equal(rc, MT_EINVAL);
        char want[100];
        snprintf(want, sizeof want, "ranks_per_trial = 2 does not divide "
                                    "the %d ranks",
                 size);
        assert_non_null(strstr(err, want));
        return;
    }
    assert_int_equal(rc, MT_OK);
    if (rank != 0)
        return;
    int st[6], fin[6], bad[6];
    count_events("p", st, fin, bad);
    for (int t = 0; t < 6; t++)
        assert_int_equal(fin[t] + bad[t], 1);
}

/* Writes dir/name: the test model, its learning rate on a cosine
 * schedule (a trial's schedule spans its top rung), with this [search]
 * section. */
static void write_search(const char *name, const char *search)
{
    if (rank == 0) {
        char text[4096];
        const char *lr = strstr(ini, "lr = 0.05\n") + 10;
        snprintf(text, sizeof text, "%.*sschedule = cosine\n%.*s%s",
                 (int)(lr - ini), ini, (int)(strstr(ini, "[search]") - lr),
                 lr, search);
        fx_write(dir, name, text);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* The promotions in a journal, in order, as " trial:rung" into buf. */
static void promotions(const char *name, char *buf, size_t len)
{
    char path[400], line[4096];
    snprintf(path, sizeof path, "%s/%s/journal.jsonl", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = 0;
    buf[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        const char *t = strstr(line, "\"trial\":"), *r = strstr(line, "\"rung\":");
        if (strstr(line, "\"promoted\"") && t && r && n < len)
            n += (size_t)snprintf(buf + n, len - n, " %d:%d", atoi(t + 8),
                                  atoi(r + 7));
    }
    fclose(f);
}

/* How many lines of a journal contain both fragments. */
static int journal_count(const char *name, const char *a, const char *b)
{
    char path[400], line[4096];
    snprintf(path, sizeof path, "%s/%s/journal.jsonl", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, a) && strstr(line, b);
    fclose(f);
    return n;
}

static const char asha[] =
    "[search]\nmethod = asha\nmin_epochs = 2\neta = 2\nmax_epochs = 8\n"
    "optimizer.lr = grid(0.01, 0.02, 0.05, 0.1, 1000)\nmetric = val_loss\n"
    "keep_top = 2\n";

/* ASHA on groups of one rank: each trial starts once, each (trial, rung)
 * has one result, promotions are of results there, a promoted trial
 * continues from its
 * checkpoint, and the one at the top rung holds the weights of a plain
 * 8-epoch run of its values. ensemble.txt lists the best two. */
static void test_asha_promotes_and_continues(void **s)
{
    char err[MT_ERR_LEN] = "", text[2000];
    write_search("asha.ini", asha);
    int rc0 = run_search("a", "asha.ini", err);
    if (rc0)
        fail_msg("%s", err);
    if (rank != 0)
        return;
    char want[64];
    for (int t = 0; t < 5; t++) {
        char last[64];
        snprintf(want, sizeof want, "\"trial\":%d,", t);
        snprintf(last, sizeof last, "\"trial\":%d}", t);
        assert_int_equal(journal_count("a", "\"started\"", want) +
                             journal_count("a", "\"started\"", last),
                         1);
    }
    promotions("a", text, sizeof text);
    /* 4 results at rung 0 promote at least 2, which promote 1 (lr = 1000
     * diverges if it is promoted early, when few results are in: then it
     * fails at its rung and goes no further, as the unit test checks). */
    assert_non_null(strstr(text, ":1"));
    assert_non_null(strstr(text, ":2"));
    int top = atoi(strstr(text, ":2") - 1); /* one digit */
    snprintf(want, sizeof want, "\"trial\":%d,\"rung\":2", top);
    assert_int_equal(journal_count("a", "\"finished\"", want), 1);
    assert_int_equal(journal_count("a", want, "\"epochs\":8"), 1);
    /* --status counts each rung's results: all 5 trials ran rung 0 */
    char *st = NULL, sdir[300];
    size_t st_len = 0;
    FILE *mem = open_memstream(&st, &st_len);
    snprintf(sdir, sizeof sdir, "%s/a", dir);
    assert_int_equal(mt_search_status(sdir, mem, err), MT_OK);
    fclose(mem);
    if (!strstr(st, "; best val_loss ") || !strstr(st, "results by rung: "))
        fail_msg("status: %s", st);
    free(st);
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "grep -q 'resuming from' %s/a/trial-%04d/train.log && "
             "test $(wc -l < %s/a/ensemble.txt) = 2",
             dir, top, dir);
    assert_int_equal(system(cmd), 0);
    /* The trial's config trained straight for 8 epochs, on rank 0 alone
     * as the trial was (groups of one). */
    {
        char path[400];
        snprintf(path, sizeof path, "a/trial-%04d/config.ini", top);
        const char *extra[] = {"checkpoint.dir=", NULL};
        mt_config c;
        mt_train_result res;
        fx_load(&c, dir, path, "straight", extra);
        assert_int_equal(mt_train(&c, MPI_COMM_SELF, NULL, &res, err), MT_OK);
        mt_config_free(&c);
        char straight[300];
        snprintf(path, sizeof path, "%s/a/trial-%04d/weights.h5", dir, top);
        snprintf(straight, sizeof straight, "%s/straight/weights.h5", dir);
        assert_true(fx_weight_diff_of(dir, "asha.ini", path, straight, 1) ==
                    0.0);
    }
}

/* One group (ranks_per_trial = all): the journal cut after its first
 * promotion (as a kill leaves it): the rerun resumes that trial and then
 * makes the promotions the whole run made, in the same order. */
static void test_asha_same_promotions_after_a_kill(void **s)
{
    char err[MT_ERR_LEN] = "", whole[2000], again[2000], text[600];
    snprintf(text, sizeof text, "%sranks_per_trial = %d\n", asha, size);
    write_search("asha1.ini", text);
    assert_int_equal(run_search("w", "asha1.ini", err), MT_OK);
    assert_int_equal(run_search("k", "asha1.ini", err), MT_OK);
    cut_journal("k", "awk '{print} /\"promoted\"/{exit}'");
    assert_int_equal(run_search("k", "asha1.ini", err), MT_OK);
    if (rank != 0)
        return;
    promotions("w", whole, sizeof whole);
    promotions("k", again, sizeof again);
    assert_string_equal(whole, again);
    assert_true(strlen(whole) > 4);
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_once_and_failures_go_on),
        cmocka_unit_test(test_rerun_skips_finished),
        cmocka_unit_test(test_groups_of_two),
        cmocka_unit_test(test_asha_promotes_and_continues),
        cmocka_unit_test(test_asha_same_promotions_after_a_kill),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
