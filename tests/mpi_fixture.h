/* Shared by the MPI tests: a temporary directory every rank knows, a small
 * learnable dataset, configs in it, and weight comparisons. */
#ifndef MPITRAIN_TESTS_MPI_FIXTURE_H
#define MPITRAIN_TESTS_MPI_FIXTURE_H

#include <stddef.h>

#include "mpitrain/config.h"

/* The model the data-parallel and parameter-server tests train on d.h5:
 * conv, max-pooling, dropout, SGD with momentum, 2 epochs of batch 10;
 * shared_memory = false, so that sync's own paths are the ones tested
 * (tests/shm.mpi sets it). */
/* The fixture's samples (d.h5) are FX_C x 4 x 4: 3 channels, so that
 * fx_model_ini's conv runs on oneDNN where the build has it (auto takes
 * it from 3 input channels) in train, ps and checkpoint.mpi, and on
 * im2col in pipeline_train.mpi's bn.ini, which asks for it. */
#define FX_C 3
extern const char fx_model_ini[];

/* Rank 0 makes a temporary directory with d.h5 (97 samples of 2x4x4
 * floats, 3 classes tied to the input) and t.ini (ini_text); every rank
 * gets its name in dir. Returns 0 or -1. */
int fx_setup(char *dir, size_t len, const char *ini_text);
/* Waits for every rank, then rank 0 removes the directory. */
int fx_teardown(const char *dir);
/* Writes dir/name with text (call on rank 0). */
void fx_write(const char *dir, const char *name, const char *text);
/* Loads dir/file with data.train = dir/d.h5, run.dir = dir/run and the
 * NULL-terminated extra overrides (or NULL). Fails the test on error. */
void fx_load(mt_config *c, const char *dir, const char *file,
             const char *run, const char *const *extra);
/* Largest |difference| between the weights of two files of the t.ini
 * model; with exact, 0 if bit-identical and 1 otherwise. */
double fx_weight_diff(const char *dir, const char *a, const char *b,
                      int exact);
/* ... of the model of dir/ini. */
double fx_weight_diff_of(const char *dir, const char *ini, const char *a,
                         const char *b, int exact);

/* Trains dir/file on every rank of the world with the overrides par and
 * rank 0 alone with self_par, and fails unless their weights agree within
 * tol (0: bit for bit). The runs go to dir/world and dir/self; the data
 * is the fixture's (19 validation samples). Returns the largest
 * difference between the two runs' final validation and test losses and
 * accuracies (on every rank), for callers whose ranks evaluate alike
 * (batch norm's running statistics are a rank's own). Collective. */
double fx_expect_same(const char *dir, const char *file,
                      const char *const *par, const char *const *self_par,
                      double tol);

/* MPI_Init_thread (FUNNELED), errors returned on the world, this rank and
 * the size, and the watchdog (deadline MPITRAIN_TEST_DEADLINE seconds, 60
 * by default): a test that hangs fails within a minute with a report
 * naming the operation and the rank, not at the launcher's timeout. */
void fx_mpi_init(int *argc, char ***argv, int *rank, int *size);
/* MPI_Finalize (watched) and the watchdog stopped; returns failed != 0. */
int fx_mpi_finalize(int failed);

#endif
