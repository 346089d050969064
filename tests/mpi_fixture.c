#include "mpi_fixture.h"

#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/io.h"
#include "mpitrain/model.h"
#include "mpitrain/train.h"
#include "mpitrain/watchdog.h"

const char fx_model_ini[] =
    "[run]\nseed = 5\nprogress = none\n"
    "[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 2\nbatch = 10\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\nmomentum = 0.9\n"
    "[parallel]\nshared_memory = false\n"
    "[conv]\nfilters = 3\nsize = 3\npad = 1\nactivation = relu\n"
    "[maxpool]\n[flatten]\n"
    "[dense]\nunits = 8\nactivation = tanh\n"
    "[dropout]\nrate = 0.3\n"
    "[dense]\nunits = 3\n[softmax]\n";

void fx_write(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int write_data(const char *dir)
{
    enum { N = 97, S = FX_C * 16 };
    static float x[N * S];
    static int32_t y[N];
    for (size_t i = 0; i < N; i++) {
        y[i] = (int32_t)(i % 3);
        for (size_t j = 0; j < S; j++)
            x[i * S + j] = mt_rng_normal(9, 77, i, j) +
                           (j % 3 == (size_t)y[i] ? 1.0f : 0.0f);
    }
    char path[600], err[MT_ERR_LEN];
    snprintf(path, sizeof path, "%s/d.h5", dir);
    return mt_dataset_write(path, N, (mt_shape){FX_C, 4, 4}, NULL, x, y, 3, NULL,
                            err)
               ? -1
               : 0;
}

int fx_setup(char *dir, size_t len, const char *ini_text)
{
    int rank, rc = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        snprintf(dir, len, "/tmp/mt_mpi_test_XXXXXX");
        rc = mkdtemp(dir) && write_data(dir) == 0 ? 0 : -1;
        fx_write(dir, "t.ini", ini_text);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(dir, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    return rc;
}

int fx_teardown(const char *dir)
{
    int rank;
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0)
        return 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

void fx_load(mt_config *c, const char *dir, const char *file,
             const char *run, const char *const *extra)
{
    char path[600], train[600], rundir[600], err[MT_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(train, sizeof train, "data.train=%s/d.h5", dir);
    snprintf(rundir, sizeof rundir, "run.dir=%s/%s", dir, run);
    char *sets[16] = {train, rundir};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i]; i++) {
        if (n == 16)
            fail_msg("fx_load: more than 14 overrides");
        sets[n++] = (char *)extra[i];
    }
    if (mt_config_load(c, path, sets, n, err))
        fail_msg("%s", err);
}

double fx_weight_diff(const char *dir, const char *a, const char *b,
                      int exact)
{
    return fx_weight_diff_of(dir, "t.ini", a, b, exact);
}

double fx_weight_diff_of(const char *dir, const char *ini, const char *a,
                         const char *b, int exact)
{
    mt_config c;
    fx_load(&c, dir, ini, "cmp", NULL);
    mt_model ma, mb;
    char err[MT_ERR_LEN];
    mt_shape in = {FX_C, 4, 4};
    if (mt_model_from_config(&c, in, 4, &ma, err) ||
        mt_model_from_config(&c, in, 4, &mb, err) ||
        mt_weights_load(&ma, a, err) || mt_weights_load(&mb, b, err))
        fail_msg("%s", err);
    double worst = 0.0;
    if (exact)
        worst = memcmp(ma.params, mb.params, ma.n_params * sizeof(float))
                    ? 1.0
                    : 0.0;
    for (size_t i = 0; !exact && i < ma.n_params; i++) {
        double d = ma.params[i] - mb.params[i];
        worst = d > worst ? d : (-d > worst ? -d : worst);
    }
    mt_model_free(&ma);
    mt_model_free(&mb);
    mt_config_free(&c);
    return worst;
}

static void on_deadline(const char *report, void *user)
{
    if (!report)
        _exit(4);
    fprintf(stderr, "test watchdog: %s\n", report);
    fflush(stderr);
}

void fx_mpi_init(int *argc, char ***argv, int *rank, int *size)
{
    int provided;
    /* As the command line, which allows [parallel] progress_thread. */
    MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    const char *env = getenv("MPITRAIN_TEST_DEADLINE");
    char err[MT_ERR_LEN];
    if (mt_watchdog_start(MPI_COMM_WORLD, env ? atof(env) : 60.0,
                          on_deadline, NULL, err))
        fprintf(stderr, "test watchdog not started: %s\n", err);
}

int fx_mpi_finalize(int failed)
{
    mt_watch("MPI_Finalize");
    MPI_Finalize();
    mt_watchdog_stop();
    return failed ? 1 : 0;
}

/* fx_expect_same: trains config `file` on all ranks with settings `par` and compares the
 * weights with rank 0 training alone with settings `self_par`. */
/* Largest |difference| of two runs' final evaluations. */
static double eval_diff(const mt_train_result *a, const mt_train_result *b)
{
    double d[4] = {a->val.loss - b->val.loss, a->val.accuracy - b->val.accuracy,
                   a->test.loss - b->test.loss,
                   a->test.accuracy - b->test.accuracy};
    double worst = 0.0;
    for (int i = 0; i < 4; i++)
        worst = fmax(worst, fabs(d[i]));
    return a->test.n == b->test.n ? worst : INFINITY;
}

double fx_expect_same(const char *dir, const char *file,
                      const char *const *par, const char *const *self_par,
                      double tol)
{
    mt_config c;
    mt_train_result r, world;
    char err[MT_ERR_LEN] = "";
    fx_load(&c, dir, file, "world", par);
    int rc = mt_train(&c, MPI_COMM_WORLD, NULL, &world, err);
    if (rc)
        fail_msg("%s", err);
    assert_true(world.val.n == 19 && world.val.accuracy >= 0.0);
    uint64_t steps = world.steps; /* 2 * ceil(78 / 10) unless resampled */
    if (!par)
        assert_int_equal(steps, 2 * 8);
    mt_config_free(&c);
    double worst[2] = {0.0, 0.0};
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        fx_load(&c, dir, file, "self", self_par);
        if (mt_train(&c, MPI_COMM_SELF, NULL, &r, err))
            fail_msg("%s", err);
        assert_int_equal(r.steps, steps);
        mt_config_free(&c);
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/world/weights.h5", dir);
        snprintf(b, sizeof b, "%s/self/weights.h5", dir);
        worst[0] = fx_weight_diff_of(dir, file, a, b, tol == 0.0);
        worst[1] = eval_diff(&world, &r);
    }
    MPI_Bcast(worst, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    /* Same learning problem; only the summation order differs (or, in
     * deterministic mode, not even that: tol 0). */
    if (worst[0] > tol) {
        char sets[600] = "";
        for (size_t i = 0; par && par[i]; i++)
            snprintf(sets + strlen(sets), sizeof sets - strlen(sets), " %s",
                     par[i]);
        fail_msg("%s%s: weights differ from the single-rank run by %g",
                 file, sets, worst[0]);
    }
    return worst[1];
}
