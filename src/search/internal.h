/* Private to src/search: trial states and the journal. */
#ifndef MPITRAIN_SEARCH_INTERNAL_H
#define MPITRAIN_SEARCH_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

enum {
    MT__TRIAL_NEW = 0,
    MT__TRIAL_STARTED,  /* begun in an earlier run: resume it */
    MT__TRIAL_FINISHED,
    MT__TRIAL_FAILED
};

typedef struct mt__trial {
    int state;
    double metric; /* finished: the metric's last value, NaN if none */
    double seconds;
} mt__trial;

/* Applies one journal record (event, metric, seconds) to its trial;
 * returns 1 when it ended the trial (finished or failed). */
int mt__trial_take(mt__trial *tr, const char *event, double metric,
                   double seconds);

/* The best finished trial of trials[0..n) by mt_metric_improves (the
 * first finished one if no metric is a number), or n if none finished. */
size_t mt__best_trial(const mt__trial *trials, size_t n, int maximize);

/* Journal at path into trials (n of them; a missing file is a new
 * search). Later records win; unreadable lines are skipped. */
int mt__journal_load(const char *path, mt__trial *trials, size_t n,
                     char *err);
/* Appends one record and fsyncs it. */
int mt__journal_append(FILE *f, const char *record, char *err);
/* A record as one line of JSON (malloc'd; free it): event "started",
 * "finished" (metric, seconds) or "failed" (error). */
char *mt__journal_record(const char *event, size_t trial, double metric,
                         double seconds, const char *error);
/* The record that opens each run of a search: what ranks the trials. */
char *mt__journal_header(const char *metric, int maximize, size_t trials);

/* The last value of monitor `monitor` (e.g. "val_accuracy": the
 * "accuracy" of the last "val" record) in a run's metrics.jsonl, NaN if
 * the log has none: the metric of a trial resumed after it had finished,
 * which trains nothing this time. */
double mt__log_metric(const char *metrics_path, const char *monitor);

/* Fields of a record; -1 if it is not one. */
int mt__journal_parse(const char *record, char *event, size_t len,
                      size_t *trial, double *metric, double *seconds);

#endif
