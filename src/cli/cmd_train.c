#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/train.h"

static const char usage[] =
    "usage: mpitrain train CONFIG [--resume auto|FILE] [--stop-after STEPS]\n"
    "                      [--dry-run] [--set section.key=value]...\n"
    "\n"
    "Trains the model described by CONFIG (an INI file; see mpitrain(1)).\n"
    "Run it as one process or under mpirun -np N: the global batch is\n"
    "split over the ranks. Writes config.ini, metrics.jsonl and weights.h5\n"
    "into [run] dir. --set overrides any key, e.g. --set train.epochs=2,\n"
    "or layerN.key=value for the N-th layer section.\n"
    "\n"
    "--resume auto continues from the newest good checkpoint in\n"
    "[checkpoint] dir (FILE: from that checkpoint), exactly where it\n"
    "stopped, on any rank count. SIGTERM, SIGUSR1 or SIGINT make every\n"
    "rank save a checkpoint at the next step and exit with status 75; a\n"
    "second signal 2 s or more later exits at once. --stop-after STEPS\n"
    "does the same once STEPS optimizer steps are done (to test\n"
    "resuming).\n"
    "\n"
    "--dry-run reads the data, builds the model, finds the checkpoint it\n"
    "would resume from, prints the plan and exits: every error a run would\n"
    "meet at start-up, before a batch job waits in the queue. It trains and\n"
    "writes nothing.\n";

/* VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and
 * exec, so a process started from a big parent (a Python benchmark with
 * torch loaded) would report the parent's peak. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0.0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib / 1024.0;
}

int mt_cli_train(int argc, char **argv)
{
    mt_cli_args a;
    int st = mt_cli_parse(argc, argv, usage, "resume,stop-after,dry-run",
                          &a);
    if (st)
        return mt_cli_args_free(&a), st < 0 ? MT_EXIT_OK : st;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char err[MT_ERR_LEN] = "";
    mt_config cfg;
    /* Every rank reads the same file, so every rank fails the same way and
     * before any collective. */
    int rc = mt_config_load(&cfg, a.config, a.sets, a.n_sets, err);
    mt_train_opts opts = {.resume = a.resume,
                          .stop = &mt_cli_stop_requested,
                          .stop_after = a.stop_after,
                          .dry_run = a.dry_run};
    if (rc) {
        mt_cli_args_free(&a);
        return mt_cli_fail(rank, rc, err);
    }
    mt_cli_catch_signals();
    mt_train_result res;
    rc = mt_cli_watchdog(cfg.deadline_s, err);
    if (rc == MT_OK)
        rc = mt_train(&cfg, MPI_COMM_WORLD, &opts, &res, err);
    mt_cli_args_free(&a);
    mt_config_free(&cfg);
    if (rc)
        return mt_cli_fail(rank, rc, err);
    if (opts.dry_run)
        return MT_EXIT_OK;
    /* Ranks differ (a pipeline's stages, dedicated servers): the most. */
    struct {
        double mib;
        int rank;
    } mine = {peak_rss_mib(), rank}, most = mine;
    MPI_Reduce(&mine, &most, 1, MPI_DOUBLE_INT, MPI_MAXLOC, 0,
               MPI_COMM_WORLD);
    if (rank == 0)
        printf("trained %zu steps in %.1f s, %.0f samples/s, peak RSS %.0f "
               "MiB, waited %.1f s for gradients (rank 0); most RSS %.0f "
               "MiB (rank %d)\n",
               res.steps, res.seconds, res.samples_per_s, mine.mib,
               res.comm_wait_s, most.mib, most.rank);
    return MT_EXIT_OK;
}
