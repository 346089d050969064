/* [parallel] shared_memory (run by tests/mpirun.sh at 1, 2, 3 and 4
 * ranks; by make check-cluster on 2 and 4 emulated hosts, where nodes
 * hold 2 + 2 ranks (the cross-node sums), 2 + 1 (refused) or one rank
 * each (sync alone)): the single rank's weights in both sync modes, with
 * Adam, clipping, accumulation and a rank without samples; at 2 ranks on
 * one node the floats of sync without it; checkpoints that resume in any
 * mode; nodes of unequal rank counts refused on every rank with true,
 * left to sync alone with auto. */
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
/* This run's nodes: ranks on the smallest and the largest. */
static int node_min, node_max;

static int group_setup(void **s)
{
    (void)s;
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank,
                        MPI_INFO_NULL, &node);
    int n;
    MPI_Comm_size(node, &n);
    MPI_Comm_free(&node);
    MPI_Allreduce(&n, &node_min, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&n, &node_max, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return fx_setup(dir, sizeof dir, fx_model_ini);
}

static int group_teardown(void **s)
{
    (void)s;
    return fx_teardown(dir);
}

static int train_with(const char *run, const char *const *sets,
                      const char *resume, uint64_t stop_after, char *err)
{
    mt_config c;
    mt_train_result r;
    fx_load(&c, dir, "t.ini", run, sets);
    mt_train_opts o = {.resume = resume, .stop_after = stop_after};
    int rc = mt_train(&c, MPI_COMM_WORLD, &o, &r, err);
    mt_config_free(&c);
    return rc;
}

/* Largest difference between the weights of runs a and b (rank 0; 1 if
 * not bit-identical with exact), broadcast. */
static double runs_diff(const char *a, const char *b, int exact)
{
    double d = 0.0;
    if (rank == 0) {
        char pa[300], pb[300];
        snprintf(pa, sizeof pa, "%s/%s/weights.h5", dir, a);
        snprintf(pb, sizeof pb, "%s/%s/weights.h5", dir, b);
        d = fx_weight_diff(dir, pa, pb, exact);
    }
    MPI_Bcast(&d, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return d;
}

/* Nodes of unequal rank counts: every rank gets the refusal. */
static int refused(void) { return node_min != node_max; }

static void expect_refusal(const char *const *sets)
{
    char err[MT_ERR_LEN] = "";
    assert_int_equal(train_with("refused", sets, NULL, 0, err), MT_EINVAL);
    if (!strstr(err, "shared_memory needs the same number of ranks on "
                     "every node"))
        fail_msg("unexpected message: %s", err);
}

static void test_equals_single_rank(void **s)
{
    (void)s;
    const char *const modes[][5] = {
        {"parallel.shared_memory=true", NULL},
        {"parallel.shared_memory=true", "parallel.sync=ring",
         "parallel.ring_min_kb=0", NULL},
        {"parallel.shared_memory=true", "optimizer.type=adam",
         "train.batch=3", NULL},
        {"parallel.shared_memory=true", "train.clip_norm=0.05",
         "parallel.sync=ring", "parallel.compress=none", NULL},
        {"parallel.shared_memory=true", "train.accumulate=2",
         "parallel.overlap=false", NULL},
    };
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        if (refused())
            expect_refusal(modes[m]);
        else
            fx_expect_same(dir, "t.ini", modes[m], modes[m], 1e-4);
    }
    /* The ring across nodes with bf16 on the wire: close, not equal
     * (on one node nothing goes on a wire: the floats of float32). */
    const char *const bf16[] = {"parallel.shared_memory=true",
                                "parallel.sync=ring",
                                "parallel.compress=bf16",
                                "parallel.ring_min_kb=0", NULL};
    if (refused())
        expect_refusal(bf16);
    else
        fx_expect_same(dir, "t.ini", bf16, bf16,
                       node_max == size ? 1e-4 : 5e-2);
}

/* Two ranks on one node add the same two floats as MPI's allreduce and
 * the ring (a + b = b + a), and the optimizer's step is elementwise: the
 * same weights bit for bit, with SGD's momentum and with Adam. */
static void test_two_ranks_change_no_float(void **s)
{
    (void)s;
    if (size != 2 || node_max != 2)
        skip();
    const char *const modes[][3] = {
        {"parallel.sync=allreduce", NULL},
        {"parallel.sync=ring", "optimizer.type=adam"},
    };
    char err[MT_ERR_LEN] = "";
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        const char *with[4] = {"parallel.shared_memory=true", modes[m][0],
                               modes[m][1], NULL};
        if (train_with("pair-a", with, NULL, 0, err) ||
            train_with("pair-b", modes[m], NULL, 0, err))
            fail_msg("%s: %s", modes[m][0], err);
        if (runs_diff("pair-a", "pair-b", 1) != 0.0)
            fail_msg("shared_memory changed the weights (%s)", modes[m][0]);
    }
}

/* auto, the default: where nodes hold the same number of ranks the run
 * of true, bit for bit; elsewhere sync alone, the single rank's weights. */
static void test_auto(void **s)
{
    (void)s;
    const char *const aut[] = {"parallel.shared_memory=auto",
                               "optimizer.type=adam", NULL};
    const char *const on[] = {"parallel.shared_memory=true",
                              "optimizer.type=adam", NULL};
    char err[MT_ERR_LEN] = "";
    if (refused()) {
        fx_expect_same(dir, "t.ini", aut, aut, 1e-4);
        return;
    }
    if (train_with("auto", aut, NULL, 0, err) ||
        train_with("on", on, NULL, 0, err))
        fail_msg("%s", err);
    if (runs_diff("auto", "on", 1) != 0.0)
        fail_msg("shared_memory = auto is not the run of true");
}

/* A checkpoint holds every optimizer slot (gathered from the blocks'
 * owners): a stop after 11 steps with Adam resumed with shared memory
 * ends with the uninterrupted run's weights bit for bit; resumed without
 * it (sync alone), within rounding at 3 ranks and more, bit for bit at 2
 * (the same sums). */
static void test_resumes_in_any_mode(void **s)
{
    (void)s;
    const char *const shm[] = {"parallel.shared_memory=true",
                               "optimizer.type=adam", NULL};
    const char *const plain[] = {"optimizer.type=adam", NULL};
    char err[MT_ERR_LEN] = "";
    if (refused()) {
        expect_refusal(shm);
        return;
    }
    if (train_with("full", shm, NULL, 0, err))
        fail_msg("%s", err);
    const char *const *resumed[2] = {shm, plain};
    for (int k = 0; k < 2; k++) {
        char run[32];
        snprintf(run, sizeof run, "cut%d", k);
        if (train_with(run, shm, NULL, 11, err) != MT_ESTOPPED ||
            train_with(run, resumed[k], "auto", 0, err))
            fail_msg("%s: %s", run, err);
        int exact = k == 0 || size <= 2;
        double d = runs_diff("full", run, exact);
        if (exact ? d != 0.0 : d > 1e-4)
            fail_msg("%s: resumed weights differ by %g", run, d);
    }
    /* ...and a run without it resumes with it. */
    if (train_with("cut2", plain, NULL, 11, err) != MT_ESTOPPED ||
        train_with("cut2", shm, "auto", 0, err))
        fail_msg("cut2: %s", err);
    if (runs_diff("full", "cut2", 0) > 1e-4)
        fail_msg("cut2: a plain checkpoint resumed with shared_memory "
                 "drifted");
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_single_rank),
        cmocka_unit_test(test_two_ranks_change_no_float),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_resumes_in_any_mode),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
