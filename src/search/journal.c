/* The search journal: one JSON object a line, appended and fsynced by one
 * rank (search/internal.h). Records (event): started, finished (metric,
 * epochs, seconds), failed (error). A torn last line (a kill while
 * writing) is ignored on reading: its trial is resumed. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/core.h"
#include "search/internal.h"

int mt__journal_load(const char *path, mt__trial *trials, size_t n,
                     char *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return MT_OK; /* a new search */
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *ev = j ? json_string_value(json_object_get(j, "event"))
                           : NULL;
        json_int_t t = j ? json_integer_value(json_object_get(j, "trial"))
                         : -1;
        if (ev && t >= 0 && (size_t)t < n) {
            mt__trial *tr = &trials[t];
            if (!strcmp(ev, "started") && tr->state == MT__TRIAL_NEW)
                tr->state = MT__TRIAL_STARTED;
            if (!strcmp(ev, "finished")) {
                json_t *m = json_object_get(j, "metric");
                tr->state = MT__TRIAL_FINISHED;
                tr->metric = json_is_number(m) ? json_number_value(m) : NAN;
                tr->seconds =
                    json_number_value(json_object_get(j, "seconds"));
            }
            if (!strcmp(ev, "failed"))
                tr->state = MT__TRIAL_FAILED;
        }
        json_decref(j);
    }
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

char *mt__journal_record(const char *event, size_t trial, double metric,
                         double seconds, const char *error)
{
    json_t *j = json_pack("{s:s, s:I}", "event", event, "trial",
                          (json_int_t)trial);
    if (!j)
        return NULL;
    if (!strcmp(event, "finished")) {
        json_object_set_new(j, "metric",
                            isfinite(metric) ? json_real(metric)
                                             : json_null());
        json_object_set_new(j, "seconds", json_real(seconds));
    }
    if (error)
        json_object_set_new(j, "error", json_string(error));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

int mt__journal_parse(const char *record, char *event, size_t len,
                      size_t *trial, double *metric, double *seconds)
{
    json_t *j = json_loads(record, 0, NULL);
    const char *ev = j ? json_string_value(json_object_get(j, "event"))
                       : NULL;
    if (!ev) {
        json_decref(j);
        return -1;
    }
    snprintf(event, len, "%s", ev);
    *trial = (size_t)json_integer_value(json_object_get(j, "trial"));
    json_t *m = json_object_get(j, "metric");
    *metric = json_is_number(m) ? json_number_value(m) : NAN;
    *seconds = json_number_value(json_object_get(j, "seconds"));
    json_decref(j);
    return 0;
}
