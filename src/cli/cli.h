/* Private to the command-line tool: one function per subcommand. Only
 * src/cli may exit or call MPI_Abort (STYLE.md). */
#ifndef MPITRAIN_CLI_H
#define MPITRAIN_CLI_H

#include <signal.h>
#include <stddef.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/model.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/plan.h"

/* Where Debian's dataset-fashion-mnist puts its IDX files. */
#define MT_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Exit statuses, documented in mpitrain.1. */
enum {
    MT_EXIT_OK = 0,
    MT_EXIT_ERROR = 1,   /* bad input or a failure while running */
    MT_EXIT_USAGE = 2,   /* bad command line */
    MT_EXIT_NUMERIC = 3,  /* training diverged (NaN or Inf loss, outputs
                             or weights) */
    MT_EXIT_DEADLINE = 4, /* [run] deadline_s passed: a rank stopped, hung
                             or is gone (docs/reliability.md) */
    MT_EXIT_STOPPED = 75  /* stopped by a signal after saving a checkpoint:
                             requeue and resume (EX_TEMPFAIL) */
};

int mt_cli_train(int argc, char **argv);
int mt_cli_eval(int argc, char **argv);    /* also "predict" */
int mt_cli_predict(int argc, char **argv);
int mt_cli_convert(int argc, char **argv);
int mt_cli_inspect(int argc, char **argv);
int mt_cli_plot(int argc, char **argv);
/* plot on a search directory (plot_search.c): journal to svg; returns
 * the exit status. */
int mt__plot_search(const char *dir, const char *journal, const char *svg);
int mt_cli_explain(int argc, char **argv);
int mt_cli_search(int argc, char **argv);

/* Options shared by train/eval/predict: CONFIG, --set k=v (repeatable)
 * and the subcommand's own options. */
typedef struct mt_cli_args {
    const char *config;
    char **sets;
    size_t n_sets;
    const char *weights, *input, *output, *data, *resume;
    int json, dry_run, status;
    unsigned long long stop_after;
    unsigned long long samples, group; /* explain */
} mt_cli_args;

/* Parses argv; prints usage and returns MT_EXIT_USAGE on a bad option,
 * -1 after --help (exit 0), else 0. `allowed` lists the options this
 * subcommand takes, e.g. "weights,json". */
int mt_cli_parse(int argc, char **argv, const char *usage,
                 const char *allowed, mt_cli_args *a);
void mt_cli_args_free(mt_cli_args *a);

/* What eval, predict and explain work on (session.c): the config, the
 * data, the model (or an ensemble's members) with its weights. With
 * [parallel] stages on more than one rank the config's stage x replica
 * grid is built: each rank holds its stage's layers only, a replica's
 * share of the samples goes through its stages (pipes), and the last
 * stages see the outputs. */
#define MT_CLI_MAX_MEMBERS 64

typedef struct mt_cli_session {
    mt_config cfg;
    mt_dataset data;
    mt_model models[MT_CLI_MAX_MEMBERS]; /* one, or an ensemble's members */
    size_t n_models;
    char *paths[MT_CLI_MAX_MEMBERS];
    char *list; /* the text the paths point into */
    int staged; /* 1: through the stages of plan */
    mt_plan plan;
    mt_pipe_stage pipes[MT_CLI_MAX_MEMBERS]; /* pipes[j].m: models + j */
    int rank;
    char err[MT_ERR_LEN];
} mt_cli_session;

/* Parses the options of eval, predict and explain, which all need
 * --weights (need_input: also --input). Returns 1 to go on, or 0 when
 * the command is done with exit status *st (after --help or a usage
 * error); a is freed then. */
int mt_cli_session_args(int argc, char **argv, const char *usage,
                        const char *allowed, int need_input, mt_cli_args *a,
                        int *st);
/* Config, data file (`data`, or [data] test when NULL) and weights;
 * every rank does the same and agrees (collective). With `share` each
 * rank (with stages: each replica) reads only its share of the rows;
 * otherwise the whole file. need_y: labels or targets are needed. Only
 * eval (need_y and share) takes an ensemble. The watchdog runs from
 * the moment the config is read. */
int mt_cli_session_open(mt_cli_session *s, const mt_cli_args *a,
                        const char *data, int need_y, int share);
/* The stages the models run through, or NULL (each model whole here). */
const mt_pipe_stage *mt_cli_session_pipes(const mt_cli_session *s);
void mt_cli_session_free(mt_cli_session *s);

/* Rank 0 prints "mpitrain: error: msg" to stderr. Returns the exit status
 * for an mt rc. */
int mt_cli_fail(int rank, int rc, const char *msg);

/* The stop flag of train and search: set by the first SIGTERM, SIGUSR1
 * or SIGINT once mt_cli_catch_signals ran (a second one exits at once). */
extern volatile sig_atomic_t mt_cli_stop_requested;
void mt_cli_catch_signals(void);

/* Starts the watchdog with [run] deadline_s on every rank of the world
 * (collective); on a deadline it prints this rank's report on stderr and
 * exits with MT_EXIT_DEADLINE. */
int mt_cli_watchdog(double deadline_s, char *err);

/* Re-executes once with OPENBLAS_CORETYPE set: to the kernel of the SIMD
 * path MPITRAIN_ISA chose below the CPU's best (Prescott for baseline,
 * Haswell for avx2), or SkylakeX when OpenBLAS picked its Haswell/Zen
 * kernels on a CPU with AVX-512 (see README). */
void mt_cli_blas_core_fix(char **argv);
/* "OpenBLAS <core> (CPU AVX-512: yes|no)" and the SIMD path in use and
 * those the CPU has, for --version. */
void mt_cli_blas_describe(char *buf, size_t len);

#endif
