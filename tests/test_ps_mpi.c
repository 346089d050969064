/* The parameter server (sync = ps; run by tests/mpirun.sh at 1, 2, 3 and
 * 4 ranks): synchronous and asynchronous, colocated and on dedicated
 * server ranks, gives the weights of one rank where the mathematics says
 * it must (docs/parallel.md), and refuses layouts that leave no worker. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];


/* The classifier without ReLU, pooling or dropout: rounding differences
 * stay rounding differences. */
static const char smooth_ini[] =
    "[run]\nseed = 5\nprogress = none\n[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 2\nbatch = 10\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\n"
    "[flatten]\n[dense]\nunits = 8\nactivation = tanh\n"
    "[dense]\nunits = 3\n[softmax]\n";

static int group_setup(void **s)
{
    if (fx_setup(dir, sizeof dir, fx_model_ini))
        return -1;
    if (rank == 0)
        fx_write(dir, "smooth.ini", smooth_ini);
    MPI_Barrier(MPI_COMM_WORLD);
    return 0;
}

static int group_teardown(void **s) { return fx_teardown(dir); }

static void load(mt_config *c, const char *name, const char *const *extra)
{
    fx_load(c, dir, "t.ini", name, extra);
}

static void expect_same_as(const char *const *par,
                           const char *const *self_par, double tol)
{
    fx_expect_same(dir, "t.ini", par, self_par, tol);
}

static void expect_same_as_single_rank(const char *const *par, double tol)
{
    expect_same_as(par, par, tol);
}

/* sync = ps: servers own shards of the parameters and of the optimizer
 * state and apply the update; the weights are those of one rank. Tiny
 * buckets cross the shard boundaries, which at 3 and 4 ranks cut layers
 * unevenly; per-layer weight decay must follow its layer into the shards,
 * clipping must take the norm over all shards. Dedicated servers (the
 * last ranks; at 4 ranks 3 servers for 1 worker) train nothing. */
static void test_parameter_server_equals_single_rank(void **s)
{
    const char *const colocated[] = {"parallel.sync=ps",
                                     "parallel.bucket_mb=0.0002", NULL};
    const char *const blocking[] = {"parallel.sync=ps",
                                    "parallel.overlap=false", NULL};
    const char *const adam[] = {"parallel.sync=ps", "optimizer.type=adam",
                                "optimizer.lr=0.01",
                                "optimizer.weight_decay=0.3",
                                "layer1.weight_decay=0",
                                "layer4.weight_decay=0", NULL};
    const char *const clipped[] = {"parallel.sync=ps", "train.clip_norm=0.05",
                                   NULL};
    const char *const batch3[] = {"parallel.sync=ps", "train.batch=3",
                                  "parallel.bucket_mb=0.0002", NULL};
    expect_same_as_single_rank(colocated, 1e-4);
    expect_same_as_single_rank(blocking, 1e-4);
    expect_same_as_single_rank(adam, 1e-4);
    expect_same_as_single_rank(clipped, 1e-4);
    expect_same_as_single_rank(batch3, 1e-4);
    /* The single-rank reference of dedicated servers is plain allreduce
     * (a lone rank cannot be a server and a worker apart). */
    static const char *const servers[] = {"parallel.servers=1",
                                          "parallel.servers=2",
                                          "parallel.servers=3"};
    for (int n = 1; n < size; n++) {
        const char *const dedicated[] = {"parallel.sync=ps", servers[n - 1],
                                         "parallel.bucket_mb=0.0002",
                                         "optimizer.type=adam",
                                         "optimizer.lr=0.01",
                                         "train.clip_norm=0.05", NULL};
        expect_same_as(dedicated, dedicated + 2, 1e-4);
    }
}

/* ps_mode = async (stale-synchronous): a server applies each worker's
 * push on its own. Where that is the synchronous step, the weights must
 * be one rank's: plain SGD with staleness 0 (W pushes of lr g_w, all
 * applied before anyone's next pull, are one step of lr sum g_w, up to
 * the order of the sum: a smooth model, where ReLU and max-pooling
 * decisions cannot flip on a rounding and amplify it), and a single
 * worker (one dedicated server) with any staleness and Adam. With
 * staleness 2 and Adam the run must train to the end on any layout. */
static void test_async_parameter_server(void **s)
{
    const char *const sgd0[] = {"parallel.sync=ps", "parallel.ps_mode=async",
                                "parallel.staleness=0",
                                "optimizer.momentum=0",
                                "parallel.bucket_mb=0.0002", NULL};
    fx_expect_same(dir, "smooth.ini", sgd0, sgd0 + 3, 1e-4);
    if (size == 2) {
        const char *const one_worker[] = {
            "parallel.sync=ps", "parallel.ps_mode=async",
            "parallel.servers=1", "parallel.staleness=3",
            "optimizer.type=adam", "optimizer.lr=0.01",
            "train.clip_norm=0.05", NULL};
        expect_same_as(one_worker, one_worker + 4, 1e-4);
    }
    for (int n = 0; n < size; n++) {
        mt_config c;
        mt_train_result r;
        char err[MT_ERR_LEN] = "", servers[32];
        snprintf(servers, sizeof servers, "parallel.servers=%d", n);
        const char *const stale[] = {
            "parallel.sync=ps", "parallel.ps_mode=async",
            "parallel.staleness=2", "optimizer.type=adam",
            "optimizer.lr=0.01", "data.fetch_mb=0.0001",
            n ? servers : "parallel.servers=colocated", NULL};
        load(&c, "async", stale);
        if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
            fail_msg("servers %d: %s", n, err);
        assert_int_equal(r.steps, 2 * 8);
        assert_true(isfinite(r.val.loss) && r.val.accuracy >= 0.0);
        mt_config_free(&c);
    }
}

/* More dedicated servers than leave a worker: every rank refuses, naming
 * the key, before any training. */
static void test_too_many_servers_are_refused(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "", set[32];
    snprintf(set, sizeof set, "parallel.servers=%d", size);
    const char *const par[] = {"parallel.sync=ps", set, NULL};
    load(&c, "too_many", par);
    assert_int_equal(mt_train(&c, MPI_COMM_WORLD, NULL, &r, err), MT_EINVAL);
    assert_non_null(strstr(err, "[parallel] servers"));
    assert_non_null(strstr(err, "leaves no worker"));
    mt_config_free(&c);
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameter_server_equals_single_rank),
        cmocka_unit_test(test_too_many_servers_are_refused),
        cmocka_unit_test(test_async_parameter_server),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
