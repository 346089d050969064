/* The search journal: one JSON object a line, appended and fsynced by one
 * rank (search/internal.h). Records (event): search (opens each run:
 * metric, maximize, trials), started, finished (metric, seconds), failed
 * (error). A torn last line (a kill while writing) is ignored on reading:
 * its trial is resumed. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/core.h"
#include "mpitrain/metrics.h"
#include "search/internal.h"

int mt__result_rung(const mt__trial *t)
{
    if (t->state == MT__TRIAL_FINISHED)
        return t->rung;
    return t->rung - 1; /* promoted and not finished yet, or never run */
}

double mt__result_metric(const mt__trial *t)
{
    int r = mt__result_rung(t);
    return r >= 0 ? t->at[r] : NAN;
}

int mt__metric_first(double a, size_t ia, double b, size_t ib, int maximize)
{
    if (mt_metric_improves(a, b, !maximize, 0.0))
        return 1;
    if (mt_metric_improves(b, a, !maximize, 0.0))
        return 0;
    return ia < ib;
}

int mt__ranks_above(const mt__trial *a, size_t ia, const mt__trial *b,
                    size_t ib, int maximize)
{
    int ra = mt__result_rung(a), rb = mt__result_rung(b);
    if (ra != rb)
        return ra > rb;
    return mt__metric_first(mt__result_metric(a), ia, mt__result_metric(b),
                            ib, maximize);
}

size_t mt__best_trial(const mt__trial *trials, size_t n, int maximize)
{
    size_t best = n;
    for (size_t t = 0; t < n; t++)
        if (mt__result_rung(&trials[t]) >= 0 &&
            trials[t].state != MT__TRIAL_FAILED &&
            (best == n ||
             mt__ranks_above(&trials[t], t, &trials[best], best, maximize)))
            best = t;
    return best;
}

int mt__trial_take(mt__trial *tr, const mt__record *r)
{
    const char *ev = r->event;
    if (r->rung < 0 || r->rung >= MT_SEARCH_MAX_RUNGS || r->rung < tr->rung)
        return 0; /* not of this version, or stale */
    if (!strcmp(ev, "started") || !strcmp(ev, "promoted")) {
        if (r->rung > tr->rung || tr->state == MT__TRIAL_NEW) {
            tr->rung = r->rung;
            tr->state = MT__TRIAL_STARTED;
        }
        return 0;
    }
    if ((strcmp(ev, "finished") && strcmp(ev, "failed")) ||
        r->rung != tr->rung)
        return 0; /* a run's header, or an event of a later version */
    tr->state = strcmp(ev, "finished") ? MT__TRIAL_FAILED
                                       : MT__TRIAL_FINISHED;
    tr->at[r->rung] = r->metric;
    tr->seconds += r->seconds;
    tr->epochs = r->epochs;
    return 1;
}

int mt__journal_load(const char *path, mt__trial *trials, size_t n,
                     char *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return MT_OK; /* a new search */
    char line[4096];
    mt__record r;
    while (fgets(line, sizeof line, f))
        if (!mt__journal_parse(line, &r) && r.trial < n)
            mt__trial_take(&trials[r.trial], &r);
    fclose(f);
    (void)err;
    return MT_OK;
}

int mt__journal_append(FILE *f, const char *record, char *err)
{
    if (fputs(record, f) < 0 || fputc('\n', f) < 0 || fflush(f) ||
        fsync(fileno(f))) {
        mt_seterr(err, "search journal: write failed: %m");
        return MT_EIO;
    }
    return MT_OK;
}

char *mt__journal_record(const mt__record *r, const char *error,
                         const mt_search_space *sp)
{
    json_t *j = json_pack("{s:s, s:I}", "event", r->event, "trial",
                          (json_int_t)r->trial);
    if (!j)
        return NULL;
    if (sp && !strcmp(r->event, "started") && r->rung == 0) {
        char vals[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
        json_t *v = json_object();
        mt_search_trial_values(sp, r->trial, vals);
        for (size_t k = 0; v && k < sp->n; k++)
            json_object_set_new(v, sp->p[k].key, json_string(vals[k]));
        json_object_set_new(j, "values", v);
    }
    if (r->rung)
        json_object_set_new(j, "rung", json_integer(r->rung));
    if (!strcmp(r->event, "finished")) {
        json_object_set_new(j, "metric",
                            isfinite(r->metric) ? json_real(r->metric)
                                                : json_null());
        json_object_set_new(j, "epochs", json_integer((json_int_t)r->epochs));
    }
    if (!strcmp(r->event, "finished") || !strcmp(r->event, "failed"))
        json_object_set_new(j, "seconds", json_real(r->seconds));
    if (error)
        json_object_set_new(j, "error", json_string(error));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

char *mt__journal_header(const char *metric, int maximize, size_t trials)
{
    json_t *j = json_pack("{s:s, s:s, s:b, s:I}", "event", "search",
                          "metric", metric, "maximize", maximize, "trials",
                          (json_int_t)trials);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int mt_search_status(const char *dir, FILE *out, char *err)
{
    char path[4096], line[4096], metric[64] = "metric";
    snprintf(path, sizeof path, "%s/journal.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        mt_seterr(err, "%s: no search journal here: %m", path);
        return MT_EIO;
    }
    size_t n = 0, cap = 0;
    int maximize = 1;
    mt__trial *t = NULL;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && !strcmp(ev, "search")) {
            snprintf(metric, sizeof metric, "%s",
                     json_string_value(json_object_get(j, "metric")));
            maximize = json_is_true(json_object_get(j, "maximize"));
            size_t want = (size_t)json_integer_value(
                json_object_get(j, "trials"));
            if (want > cap) {
                mt__trial *g = realloc(t, want * sizeof *g);
                if (g) {
                    memset(g + cap, 0, (want - cap) * sizeof *g);
                    t = g;
                    cap = want;
                }
            }
            n = want <= cap ? want : n;
        }
        json_decref(j);
    }
    fclose(f);
    int rc = mt__journal_load(path, t, n, err);
    size_t count[4] = {0}, best = mt__best_trial(t, n, maximize);
    for (size_t i = 0; i < n; i++)
        count[t[i].state]++;
    fprintf(out, "search in %s: %zu trials: %zu finished, %zu failed, %zu "
                 "running or interrupted, %zu not started",
            dir, n, count[MT__TRIAL_FINISHED], count[MT__TRIAL_FAILED],
            count[MT__TRIAL_STARTED], count[MT__TRIAL_NEW]);
    if (best < n && !isnan(mt__result_metric(&t[best])))
        fprintf(out, "; best %s %.4f (trial %zu, %zu epochs)", metric,
                mt__result_metric(&t[best]), best, t[best].epochs);
    /* asha: how many reached each rung */
    size_t at[MT_SEARCH_MAX_RUNGS] = {0};
    int top = 0;
    for (size_t i = 0; i < n; i++) {
        int r = mt__result_rung(&t[i]);
        for (int k = 0; k <= r; k++)
            at[k]++;
        top = r + 1 > top ? r + 1 : top;
    }
    for (int k = 0; top > 1 && k < top; k++)
        fprintf(out, "%s%zu", k ? ", " : "; results by rung: ", at[k]);
    fprintf(out, "\n");
    free(t);
    return rc;
}

int mt__journal_parse(const char *record, mt__record *r)
{
    json_t *j = json_loads(record, 0, NULL);
    const char *ev = j ? json_string_value(json_object_get(j, "event"))
                       : NULL;
    if (!ev) {
        json_decref(j);
        return -1;
    }
    memset(r, 0, sizeof *r);
    snprintf(r->event, sizeof r->event, "%s", ev);
    r->trial = (size_t)json_integer_value(json_object_get(j, "trial"));
    r->rung = (int)json_integer_value(json_object_get(j, "rung"));
    r->epochs = (size_t)json_integer_value(json_object_get(j, "epochs"));
    json_t *m = json_object_get(j, "metric");
    r->metric = json_is_number(m) ? json_number_value(m) : NAN;
    r->seconds = json_number_value(json_object_get(j, "seconds"));
    json_decref(j);
    return 0;
}

double mt__log_metric(const char *metrics_path, const char *monitor)
{
    const char *us = strchr(monitor, '_');
    FILE *f = fopen(metrics_path, "r");
    if (!us || !f) {
        if (f)
            fclose(f);
        return NAN;
    }
    char split[16], line[4096];
    snprintf(split, sizeof split, "%.*s", (int)(us - monitor), monitor);
    double v = NAN;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *sp = json_string_value(json_object_get(j, "split"));
        json_t *x = json_object_get(j, us + 1);
        if (sp && strcmp(sp, split) == 0 && json_is_number(x))
            v = json_number_value(x);
        json_decref(j);
    }
    fclose(f);
    return v;
}
