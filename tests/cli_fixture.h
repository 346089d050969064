/* The command-line tests' shared fixture: the mpitrain binary and mpirun
 * (with the flags root and oversubscription need), a temporary directory
 * holding d.h5 (120 samples of 1x4x4, 3 classes written into the pixels)
 * and good.ini, and helpers that run shell commands there. */
#ifndef MPITRAIN_TESTS_CLI_FIXTURE_H
#define MPITRAIN_TESTS_CLI_FIXTURE_H

#include <stdint.h>

extern char dir[64], bin[512], mpirun[512];
extern char out[1 << 16]; /* the last command's stdout and stderr */
extern const char good_ini[];

/* Runs a shell command in dir under timeout; its output is in out.
 * Returns the exit status (128 if killed). */
int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fails the test unless out contains frag. */
void expect_output(const char *frag);
/* Occurrences of frag in out. */
int count(const char *frag);
void write_text(const char *name, const char *text);
/* 120 samples; bad_label replaces label 7; one_class: every label 0. */
void write_data(const char *name, int32_t bad_label, int one_class);
/* Two prediction CSVs of d.h5 in dir: the same 121 lines, index and
 * class, outputs within 1e-5. */
void expect_same_csv(const char *a, const char *b);
/* Shell code waiting (up to a minute) for an epoch line in log. */
const char *wait_epoch(const char *log);
/* Group setup and teardown: the directory, d.h5 and good.ini. */
int cli_setup(void **s);
int cli_teardown(void **s);

#endif
