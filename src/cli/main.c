/* mpitrain: the command-line tool. */
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/core.h"
#include "mpitrain/watchdog.h"

static const char usage[] =
    "usage: mpitrain COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG      train a model (under mpirun for several ranks)\n"
    "  eval CONFIG       evaluate weights on a labelled data file\n"
    "  predict CONFIG    write predictions for a data file\n"
    "  explain CONFIG    permutation importance of input features\n"
    "  search CONFIG     hyperparameter search ([search] section)\n"
    "  convert ...       turn IDX (MNIST format) files into HDF5\n"
    "  inspect FILE      check and describe a checkpoint\n"
    "  plot DIR          a run's loss and accuracy per epoch, or a search's\n"
    "                    metric by parameter, as SVG (gnuplot)\n"
    "\n"
    "options: --version, --help; COMMAND --help for a command's options.\n"
    "See mpitrain(1) and the README.\n";

typedef int (*command_fn)(int argc, char **argv);

static const struct {
    const char *name;
    command_fn fn;
    int mpi; /* needs MPI_Init */
} commands[] = {
    {"train", mt_cli_train, 1},
    {"eval", mt_cli_eval, 1},
    {"predict", mt_cli_predict, 1},
    {"explain", mt_cli_explain, 1},
    {"search", mt_cli_search, 1},
    {"convert", mt_cli_convert, 0},
    {"inspect", mt_cli_inspect, 0},
    {"plot", mt_cli_plot, 0},
};

int main(int argc, char **argv)
{
    /* Past a file size limit (ulimit -f) a write should fail with EFBIG
     * and be reported, not kill the process with SIGXFSZ. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "%s", usage);
        return MT_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("%s", usage);
        return MT_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        mt_cli_blas_core_fix(argv); /* the kernel a run would use */
        char blas[512];
        mt_cli_blas_describe(blas, sizeof blas);
        printf("mpitrain %s\n%s\n", mt_version(), blas);
        return MT_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (!commands[i].mpi)
            return commands[i].fn(argc - 1, argv + 1);
        /* Before MPI and before any BLAS call: may restart the process. */
        mt_cli_blas_core_fix(argv);
        /* The watchdog's thread never calls MPI; the progress thread
         * calls it only while the main thread does not (SERIALIZED). */
        int provided;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        int st = commands[i].fn(argc - 1, argv + 1);
        /* Open MPI's finalize waits for every rank (a PMIx fence). */
        mt_watch("MPI_Finalize");
        MPI_Finalize();
        mt_watchdog_stop();
        return st;
    }
    fprintf(stderr, "mpitrain: unknown command '%s'\n%s", argv[1], usage);
    return MT_EXIT_USAGE;
}
