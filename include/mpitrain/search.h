/* mpitrain hyperparameter search: grid or random trials farmed across
 * groups of ranks, journaled and resumable (`mpitrain search`).
 *
 * The [search] section of a training config names the parameters to vary,
 * one key each, as --set names them, and how:
 *
 *   [search]
 *   method = grid             ; grid | random | asha
 *   optimizer.lr = grid(0.01, 0.05)
 *   train.batch = choice(32, 64)
 *   layer4.rate = uniform(0.1, 0.5)   ; random only, as loguniform, int
 *   trials = 20               ; random
 *   seed = 1
 *   ranks_per_trial = 1
 *   metric = val_accuracy     ; any monitor name
 *   mode = auto               ; auto | max | min
 *   max_epochs = 0            ; > 0: train.epochs of every trial
 *   min_epochs = 1            ; asha: the first rung's epochs
 *   eta = 3                   ; asha: 1 in eta goes up a rung
 *   keep_top = 0              ; > 0: ensemble.txt lists the k best
 *
 * Trial values depend on (seed, trial index) only, so a search is the same
 * whatever the number of groups. method = asha (asynchronous successive
 * halving, Li et al., MLSys 2020) trains every trial to min_epochs, and
 * whenever a group is free promotes a trial in the best 1/eta of a rung
 * to the next (min_epochs x eta^k epochs, the last rung max_epochs, or
 * [train] epochs); a promoted trial continues from its checkpoint, its
 * learning-rate schedule spanning max_epochs throughout. Its trials are
 * drawn like random's, or, when every parameter is grid(...) and trials
 * is not given, are the grid's points in an order scrambled by the seed.
 * `mpitrain train` ignores [search]. */
#ifndef MPITRAIN_SEARCH_H
#define MPITRAIN_SEARCH_H

#include <mpi.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MT_SEARCH_MAX_PARAMS 16
#define MT_SEARCH_MAX_VALUES 32
#define MT_SEARCH_VALUE_LEN 32

typedef enum mt_dist_kind {
    MT_DIST_GRID,
    MT_DIST_CHOICE,
    MT_DIST_UNIFORM,
    MT_DIST_LOGUNIFORM,
    MT_DIST_INT
} mt_dist_kind;

typedef struct mt_search_param {
    char key[64]; /* section.key or layerN.key */
    mt_dist_kind kind;
    char values[MT_SEARCH_MAX_VALUES][MT_SEARCH_VALUE_LEN]; /* grid, choice */
    size_t n_values;
    double lo, hi; /* uniform, loguniform, int (inclusive) */
    int line;
} mt_search_param;

typedef enum mt_search_method {
    MT_SEARCH_GRID,
    MT_SEARCH_RANDOM,
    MT_SEARCH_ASHA
} mt_search_method;

#define MT_SEARCH_MAX_RUNGS 16

typedef struct mt_search_space {
    mt_search_method method;
    size_t trials; /* grid: the product of the value counts */
    uint64_t seed;
    size_t ranks_per_trial;
    int metric;   /* an mt_monitor */
    int maximize; /* 1: higher is better */
    size_t max_epochs;
    size_t min_epochs, eta; /* asha */
    size_t keep_top;
    /* asha: the epochs of each rung, increasing; rungs = 1 otherwise
     * (rung_epochs[0] = max_epochs, 0 for [train] epochs) */
    size_t rung_epochs[MT_SEARCH_MAX_RUNGS];
    int rungs;
    int grid_order; /* asha over a grid: trial t is point (a t + b) mod n */
    uint64_t grid_a, grid_b;
    mt_search_param p[MT_SEARCH_MAX_PARAMS];
    size_t n;
} mt_search_space;

/* Reads [search] from the config at path; sets are the command line's
 * overrides. Each parameter's key and values are checked as --set would
 * check them. MT_EINVAL naming file:line on an unknown distribution or
 * key, a value the config rejects, an empty grid or no [search] section. */
int mt_search_space_read(mt_search_space *s, const char *path,
                         char *const *sets, size_t n_sets, char *err);

/* Trial t's value of every parameter, as --set text, into vals[k]. */
void mt_search_trial_values(const mt_search_space *s, size_t t,
                            char vals[][MT_SEARCH_VALUE_LEN]);

typedef struct mt_search_opts {
    volatile sig_atomic_t *stop; /* as mt_train_opts.stop */
} mt_search_opts;

/* Runs the search over comm: splits it into groups of ranks_per_trial,
 * each given its next job (a trial, and for asha a rung) by the lowest
 * rank and training it as an ordinary run in [run] dir/trial-NNNN (its
 * output in train.log there). The lowest rank keeps the journal ([run]
 * dir/journal.jsonl, fsynced per record), prints a line per result and
 * the ranked table, and writes [run] dir/best.ini (and, with keep_top,
 * ensemble.txt). A second run skips finished and failed
 * trials and resumes started ones from their checkpoints. Collective.
 * MT_ESTOPPED after a stop request (running trials saved). */
int mt_search(const char *path, char *const *sets, size_t n_sets,
              MPI_Comm comm, const mt_search_opts *opts, char *err);

/* Summarises the search in dir from its journal on out: trials finished,
 * failed, running or interrupted, not started, and the best. Local.
 * MT_EIO if dir has no journal. */
int mt_search_status(const char *dir, FILE *out, char *err);

#endif
