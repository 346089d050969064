#include <mpi.h>
#include <stdio.h>

#include "cli/cli.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/search.h"

static const char usage[] =
    "usage: mpitrain search CONFIG [--set section.key=value]...\n"
    "       mpitrain search --status DIR\n"
    "\n"
    "Trains the trials of CONFIG's [search] section (grid or random values\n"
    "of the keys it names), farmed over groups of [search] ranks_per_trial\n"
    "ranks, each trial in [run] dir/trial-NNNN with its output in train.log\n"
    "there. Rank 0 prints a line per finished trial and a ranked table,\n"
    "keeps [run] dir/journal.jsonl and writes [run] dir/best.ini. Running\n"
    "the same command again skips finished trials and resumes the others\n"
    "from their checkpoints. SIGTERM/SIGUSR1/SIGINT save the running\n"
    "trials and exit 75. See mpitrain(1) for the [search] keys.\n"
    "\n"
    "--status DIR summarises the search in DIR ([run] dir) from its\n"
    "journal: trials finished, failed, running or interrupted, not\n"
    "started, and the best.\n";

int mt_cli_search(int argc, char **argv)
{
    mt_cli_args a;
    int st = mt_cli_parse(argc, argv, usage, "status", &a);
    if (st)
        return mt_cli_args_free(&a), st < 0 ? MT_EXIT_OK : st;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char err[MT_ERR_LEN] = "";
    if (a.status) { /* CONFIG is the search's directory here */
        int rc = rank == 0 ? mt_search_status(a.config, stdout, err) : 0;
        mt_cli_args_free(&a);
        return rc ? mt_cli_fail(rank, rc, err) : MT_EXIT_OK;
    }
    mt_config cfg;
    /* Every rank reads the same file and fails alike, before any
     * collective; the watchdog needs [run] deadline_s. */
    int rc = mt_config_load(&cfg, a.config, a.sets, a.n_sets, err);
    if (rc == MT_OK) {
        mt_cli_catch_signals();
        rc = mt_cli_watchdog(cfg.deadline_s, err);
        mt_config_free(&cfg);
    }
    mt_search_opts opts = {.stop = &mt_cli_stop_requested};
    if (rc == MT_OK)
        rc = mt_search(a.config, a.sets, a.n_sets, MPI_COMM_WORLD, &opts,
                       err);
    mt_cli_args_free(&a);
    return rc ? mt_cli_fail(rank, rc, err) : MT_EXIT_OK;
}
