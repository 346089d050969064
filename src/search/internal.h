/* Private to src/search: trial states and the journal. */
#ifndef MPITRAIN_SEARCH_INTERNAL_H
#define MPITRAIN_SEARCH_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/search.h"

/* A trial's state at its rung (always 0 but for asha). */
enum {
    MT__TRIAL_NEW = 0,
    MT__TRIAL_STARTED,  /* handed out, no result yet */
    MT__TRIAL_FINISHED,
    MT__TRIAL_FAILED
};

typedef struct mt__trial {
    int state;
    int rung;      /* the rung it was last started at or promoted to */
    int running;   /* handed out in this run of the search (rank 0) */
    double seconds; /* over all its rungs */
    size_t epochs;  /* trained, as its last result said */
    double at[MT_SEARCH_MAX_RUNGS]; /* asha: the metric at each rung */
} mt__trial;

/* One journal record's fields; trial, rung and epochs 0 where absent. */
typedef struct mt__record {
    char event[16];
    size_t trial;
    int rung;
    size_t epochs;
    double metric, seconds;
} mt__record;

/* Applies one journal record to its trial; returns 1 when it gave the
 * trial a result (finished or failed at its rung). */
int mt__trial_take(mt__trial *tr, const mt__record *r);

/* The best trial of trials[0..n) with a result and not failed (a trial
 * that diverged when trained longer is no winner): at the highest rung
 * any has finished, by mt_metric_improves (NaN last, then the lowest
 * index); n if none finished. */
size_t mt__best_trial(const mt__trial *trials, size_t n, int maximize);
/* The rung of a trial's last result (-1 if none) and that result. */
int mt__result_rung(const mt__trial *t);
double mt__result_metric(const mt__trial *t);
/* Whether metric value a (of trial ia) comes before b (of trial ib): the
 * better by mt_metric_improves, NaN last, then the lower index. */
int mt__metric_first(double a, size_t ia, double b, size_t ib, int maximize);
/* Whether trial a ranks above trial b as mt__best_trial ranks them. */
int mt__ranks_above(const mt__trial *a, size_t ia, const mt__trial *b,
                    size_t ib, int maximize);

/* What a free group trains next: trial `trial` at rung `rung` (its
 * epochs: sp->rung_epochs[rung], 0 for [train] epochs). */
typedef struct mt__job {
    size_t trial;
    int rung;
    int promoted; /* a promotion decided now, not a start or a resume */
} mt__job;

enum { MT__JOB_GIVEN = 1, MT__JOB_WAIT = 0, MT__JOB_NONE = -1 };

/* The lowest rank's decision (search/sched.c): a trial interrupted in an
 * earlier run first, at its rung; then (asha) the best promotable trial
 * of the highest rung that has one; then the next new trial. GIVEN and
 * the trial marked running; WAIT when only results still to come can
 * make a promotion; NONE when no job is left. Deterministic in the
 * order results arrived. */
int mt__next_job(const mt_search_space *sp, mt__trial *trials,
                 mt__job *job);

/* Journal at path into trials (n of them; a missing file is a new
 * search). Later records win; unreadable lines are skipped. */
int mt__journal_load(const char *path, mt__trial *trials, size_t n,
                     char *err);
/* Appends one record and fsyncs it. */
int mt__journal_append(FILE *f, const char *record, char *err);
/* A record as one line of JSON (malloc'd; free it): event "started"
 * (rung; at rung 0 with the trial's values when sp is given, so that the
 * journal alone describes the search), "promoted" (rung), "finished"
 * (rung, metric, epochs, seconds), "failed" (rung, error), or the farm's
 * own "ask" and "bye". */
char *mt__journal_record(const mt__record *r, const char *error,
                         const mt_search_space *sp);
/* The record that opens each run of a search: what ranks the trials. */
char *mt__journal_header(const char *metric, int maximize, size_t trials);

/* The last value of monitor `monitor` (e.g. "val_accuracy": the
 * "accuracy" of the last "val" record) in a run's metrics.jsonl, NaN if
 * the log has none: the metric of a trial resumed after it had finished,
 * which trains nothing this time. */
double mt__log_metric(const char *metrics_path, const char *monitor);

/* Fields of a record; -1 if it is not one. */
int mt__journal_parse(const char *record, mt__record *r);

/* A search in progress (farm.c); the lowest rank's part is its journal,
 * output and the waiting leaders. */
typedef struct mt__farm {
    const mt_search_space *sp;
    const char *path;
    char *const *sets;
    size_t n_sets;
    const mt_search_opts *opts;
    MPI_Comm world, group;
    int rank, size, grank, groups;
    char dir[MT_PATH_LEN];
    mt__trial *trials; /* (sp->trials), the journal's view (rank 0) */
    /* the lowest rank only */
    FILE *journal, *out;
    int byes;
    int *waiting; /* (groups) leaders' world ranks waiting for a job */
    size_t n_waiting;
    size_t *holds; /* (size) by world rank: 1 + the trial a leader trains */
    size_t done_now; /* results taken in this run */
    double t0;
    int journal_rc;
    char journal_err[MT_ERR_LEN];
} mt__farm;

/* The overrides of trial t (the command line's, run.dir, the trial's
 * values, train.epochs when the search sets it) into sets, pointing into
 * buf; returns how many. At most 64 of the command line's. */
#define MT__MAX_SETS (64 + MT_SEARCH_MAX_PARAMS + 2)
typedef char mt__trial_buf[MT_SEARCH_MAX_PARAMS + 2][MT_PATH_LEN + 80];
size_t mt__trial_sets(const mt__farm *f, size_t t, const char *run_dir,
                      mt__trial_buf buf, char *sets[MT__MAX_SETS]);

/* Output of the lowest rank (search/report.c): the line for a result
 * just taken, the ranked table, best.ini and (keep_top) ensemble.txt. */
void mt__report_result(mt__farm *f, size_t t);
void mt__report_table(mt__farm *f);
int mt__write_best(mt__farm *f, char *err);
int mt__write_ensemble(mt__farm *f, char *err);

#endif
