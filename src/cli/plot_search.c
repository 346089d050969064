/* mpitrain plot on a search directory: the metric of every trial against
 * each varied parameter, one panel each, from the journal alone (its
 * "started" records carry the values). Numbers go on a linear axis, or a
 * log axis when they span two decades or more (learning rates); other
 * values (names) are categories. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/core.h"

#define MAX_TRIALS 100000

typedef struct search_plot {
    char metric[64];
    json_t *values;  /* trial -> {key: value} */
    double *result;  /* trial -> metric of its last result, NaN if none */
    size_t *epochs;  /* trial -> epochs of that result */
    size_t n;
} search_plot;

static int read_journal(const char *path, search_plot *p, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        mt_seterr(err, "%s: %s", path, strerror(errno));
        return MT_EIO;
    }
    p->values = json_object();
    p->result = mt_calloc(MAX_TRIALS, sizeof *p->result);
    p->epochs = mt_calloc(MAX_TRIALS, sizeof *p->epochs);
    for (size_t t = 0; p->result && t < MAX_TRIALS; t++)
        p->result[t] = NAN;
    char line[8192];
    while (p->result && p->epochs && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        const char *ev = json_string_value(json_object_get(j, "event"));
        size_t t = (size_t)json_integer_value(json_object_get(j, "trial"));
        json_t *m = json_object_get(j, "metric"), *v;
        if (ev && !strcmp(ev, "search"))
            snprintf(p->metric, sizeof p->metric, "%s",
                     json_string_value(json_object_get(j, "metric")));
        if (ev && t < MAX_TRIALS && !strcmp(ev, "started") &&
            (v = json_object_get(j, "values"))) {
            char key[32];
            snprintf(key, sizeof key, "%zu", t);
            json_object_set(p->values, key, v);
            p->n = t + 1 > p->n ? t + 1 : p->n;
        }
        if (ev && t < MAX_TRIALS && !strcmp(ev, "finished")) {
            p->result[t] = json_is_number(m) ? json_number_value(m) : NAN;
            p->epochs[t] =
                (size_t)json_integer_value(json_object_get(j, "epochs"));
        }
        json_decref(j);
    }
    fclose(f);
    if (!p->result || !p->epochs)
        return MT_ENOMEM;
    if (!json_object_size(p->values)) {
        mt_seterr(err, "%s: no trial with recorded values to plot", path);
        return MT_EFORMAT;
    }
    return MT_OK;
}

/* Trial t's value of key, or NULL. */
static const char *value_of(const search_plot *p, size_t t, const char *key)
{
    char k[32];
    snprintf(k, sizeof k, "%zu", t);
    return json_string_value(
        json_object_get(json_object_get(p->values, k), key));
}

/* One panel's data, "x label metric epochs" a trial; *logx when the
 * values are positive numbers spanning two decades, *names when some are
 * not numbers (x is then the category's index). Returns rows. */
static size_t write_panel(const search_plot *p, const char *key, FILE *dat,
                          int *logx, int *names)
{
    double lo = INFINITY, hi = -INFINITY;
    *names = 0;
    for (size_t t = 0; t < p->n; t++) {
        const char *v = value_of(p, t, key);
        char *end;
        double x = v ? strtod(v, &end) : 0.0;
        if (v && (end == v || *end))
            *names = 1;
        if (v && x < lo)
            lo = x;
        if (v && x > hi)
            hi = x;
    }
    *logx = !*names && lo > 0.0 && hi / lo >= 100.0;
    json_t *cats = json_object();
    size_t rows = 0;
    for (size_t t = 0; t < p->n; t++) {
        const char *v = value_of(p, t, key);
        if (!v || isnan(p->result[t]))
            continue;
        double x = atof(v);
        if (*names) {
            json_t *c = json_object_get(cats, v);
            if (!c)
                json_object_set_new(cats, v,
                                    c = json_integer(
                                        (json_int_t)json_object_size(cats)));
            x = (double)json_integer_value(c);
        }
        fprintf(dat, "%.9g %s %.9g %zu\n", x, v, p->result[t],
                p->epochs[t]);
        rows++;
    }
    json_decref(cats);
    return rows;
}

int mt__plot_search(const char *dir, const char *journal, const char *svg)
{
    char err[MT_ERR_LEN] = "", dat[4096], gp_script[1 << 16];
    search_plot p = {"metric", NULL, NULL, NULL, 0};
    int rc = read_journal(journal, &p, err);
    json_t *any = NULL;
    const char *key;
    size_t panels = 0, len = 0, rows = 0;
    if (rc == MT_OK) { /* the keys of the first trial with values */
        json_object_foreach(p.values, key, any) break;
        panels = json_object_size(any);
    }
    len += (size_t)snprintf(gp_script + len, sizeof gp_script - len,
                            "set terminal svg size %zu,420 dynamic font "
                            "'sans,12'\nset output '%s'\nset multiplot "
                            "layout 1,%zu title '%s: %s by parameter "
                            "(colour: epochs)'\nset grid\nunset key\n",
                            400 * (panels ? panels : 1), svg,
                            panels ? panels : 1, dir, p.metric);
    json_t *val;
    size_t k = 0;
    json_object_foreach(any, key, val)
    {
        snprintf(dat, sizeof dat, "%s/search-%zu.dat", dir, k++);
        FILE *d = fopen(dat, "w");
        int logx = 0, names = 0;
        rows += d ? write_panel(&p, key, d, &logx, &names) : 0;
        if (!d || fclose(d)) {
            mt_seterr(err, "%s: cannot write", dat);
            rc = MT_EIO;
            break;
        }
        len += (size_t)snprintf(
            gp_script + len, sizeof gp_script - len,
            "%s\nset xlabel '%s'\nset ylabel '%s'\nplot '%s' using 1:3:4%s "
            "with points pt 7 ps 1 palette\n",
            logx ? "set logscale x" : "unset logscale x", key, p.metric,
            dat, names ? ":xtic(2)" : "");
    }
    snprintf(gp_script + len, sizeof gp_script - len, "unset multiplot\n");
    if (rc == MT_OK && rows == 0) {
        mt_seterr(err, "%s: no finished trial to plot", journal);
        rc = MT_EFORMAT;
    }
    FILE *gp = rc == MT_OK ? popen("gnuplot 2>&1", "w") : NULL;
    if (rc == MT_OK && (!gp || (fputs(gp_script, gp), pclose(gp)) != 0)) {
        mt_seterr(err, "gnuplot failed or is missing (apt-get install "
                       "gnuplot-nox)");
        rc = MT_EIO;
    }
    if (rc == MT_OK)
        printf("wrote %s (%zu trials, %zu parameters)\n", svg,
               rows / (panels ? panels : 1), panels);
    json_decref(p.values);
    free(p.result);
    free(p.epochs);
    return rc ? mt_cli_fail(0, rc, err) : MT_EXIT_OK;
}
