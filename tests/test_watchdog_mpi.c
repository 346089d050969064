/* The watchdog at 1-4 ranks (tests/mpirun.sh): a rank stuck in its own
 * computation is reported by itself and by the ranks waiting for it; a
 * rank that is slow but makes progress is not. The stopped-rank case
 * (kill -STOP) runs end to end in tests/test_cli.c. */
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/watchdog.h"

static int rank, size;
static char report[4096];
static volatile int reports;

/* Keeps the report instead of ending the process; the watchdog stops. */
static void keep(const char *r, void *user)
{
    if (!r)
        return;
    snprintf(report, sizeof report, "%s", r);
    reports++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Computes (marks nothing) for `secs`; or marks `op` every 0.2 s. */
static void busy(double secs, const char *op)
{
    double end = now() + secs, next = 0.0;
    volatile double x = 0.0;
    while (now() < end) {
        x += 1.0;
        if (op && now() >= next) {
            mt_watch(op);
            next = now() + 0.2;
        }
    }
}

static void expect(const char *frag)
{
    if (!strstr(report, frag))
        fail_msg("report lacks '%s': %s", frag, report);
}

static void start(double deadline)
{
    char err[MT_ERR_LEN];
    report[0] = '\0';
    reports = 0;
    assert_int_equal(mt_watchdog_start(MPI_COMM_WORLD, deadline, keep, NULL,
                                       err),
                     MT_OK);
}

static void test_stuck_computation_is_named(void **s)
{
    int last = size - 1;
    start(1.5);
    mt_watch_step(7);
    if (rank == last) {
        mt_watch("spin");
        busy(6.0, NULL);
    }
    mt_watch("barrier");
    MPI_Barrier(MPI_COMM_WORLD);
    mt_watch("done");
    mt_watchdog_stop();
    assert_int_equal(reports, 1);
    char want[200];
    if (rank == last) {
        snprintf(want, sizeof want, "rank %d: no progress for ", rank);
        expect(want);
        expect("(deadline_s = 1.5) in spin at step 7");
        if (size > 1)
            expect("elsewhere: rank 0 in barrier at step 7");
    } else {
        expect("in barrier at step 7");
        snprintf(want, sizeof want, "elsewhere: rank %d in spin at step 7",
                 last);
        expect(want);
        assert_null(strstr(report, "no answer"));
    }
}

/* Rank 0 works alone for longer than the deadline, marking progress (as
 * when it writes weights.h5 or runs explain); the others wait. */
static void test_progress_elsewhere_is_not_a_hang(void **s)
{
    start(1.0);
    mt_watch_step(3);
    if (rank == 0 && size > 1)
        busy(4.0, "working alone");
    mt_watch("barrier");
    MPI_Barrier(MPI_COMM_WORLD);
    mt_watch("done");
    mt_watchdog_stop();
    if (reports)
        fail_msg("%s", report);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_computation_is_named),
        cmocka_unit_test(test_progress_elsewhere_is_not_a_hang),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
