/* The search space: [search] read with libinih, every value checked by
 * the config reader itself, and the values of trial t (search.h). */
#include "mpitrain/search.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"

typedef struct reader_ctx {
    mt_search_space *s;
    const char *path;
    char *const *sets;
    size_t n_sets;
    FILE *fp;
    int line, found, rc;
    char *err;
} reader_ctx;

static char *read_line(char *str, int num, void *stream)
{
    reader_ctx *r = stream;
    if (r->rc || !fgets(str, num, r->fp))
        return NULL;
    r->line++;
    return str;
}

static int fail(reader_ctx *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(reader_ctx *r, const char *key, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    mt_seterr(r->err, "%s:%d: [search] %s: %s", r->path, r->line, key, why);
    r->rc = MT_EINVAL;
    return 0;
}

/* "name(a, b, ...)" into kind and the comma-separated arguments. */
static int split_call(char *v, char **name, char **args, size_t *n,
                      size_t max)
{
    char *open = strchr(v, '('), *close = strrchr(v, ')');
    if (!open || !close || close < open || close[1] != '\0')
        return -1;
    *open = *close = '\0';
    *name = v;
    *n = 0;
    for (char *tok = strtok(open + 1, ","); tok; tok = strtok(NULL, ",")) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *e = tok + strlen(tok);
        while (e > tok && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (*n == max || !*tok)
            return -1;
        args[(*n)++] = tok;
    }
    return 0;
}

/* The config accepts key = value (as --set), on top of the file. */
static int check_value(reader_ctx *r, const char *key, const char *value)
{
    char set[128], err[MT_ERR_LEN];
    snprintf(set, sizeof set, "%s=%s", key, value);
    char **sets = calloc(r->n_sets + 1, sizeof *sets);
    if (!sets)
        return fail(r, key, "out of memory");
    if (r->n_sets)
        memcpy(sets, r->sets, r->n_sets * sizeof *sets);
    sets[r->n_sets] = set;
    mt_config c;
    int rc = mt_config_load(&c, r->path, sets, r->n_sets + 1, err);
    free(sets);
    if (rc == MT_OK)
        mt_config_free(&c);
    return rc == MT_OK ? 1 : fail(r, key, "%s", err);
}

static int parse_param(reader_ctx *r, const char *key, const char *value)
{
    static const char *const kinds[] = {"grid", "choice", "uniform",
                                        "loguniform", "int", NULL};
    mt_search_space *s = r->s;
    if (s->n == MT_SEARCH_MAX_PARAMS)
        return fail(r, key, "more than %d parameters", MT_SEARCH_MAX_PARAMS);
    mt_search_param *p = &s->p[s->n];
    memset(p, 0, sizeof *p);
    snprintf(p->key, sizeof p->key, "%s", key);
    p->line = r->line;
    char buf[1024], *name, *args[MT_SEARCH_MAX_VALUES];
    size_t n;
    snprintf(buf, sizeof buf, "%s", value);
    int k = split_call(buf, &name, args, &n, MT_SEARCH_MAX_VALUES) == 0
                ? mt_name_index(kinds, name)
                : -1;
    if (k < 0)
        return fail(r, key, "'%s' is not grid(...), choice(...), "
                            "uniform(a, b), loguniform(a, b) or int(a, b)",
                    value);
    p->kind = (mt_dist_kind)k;
    if (p->kind <= MT_DIST_CHOICE) {
        if (n == 0)
            return fail(r, key, "an empty %s", name);
        for (size_t i = 0; i < n; i++) {
            if (strlen(args[i]) >= MT_SEARCH_VALUE_LEN)
                return fail(r, key, "value '%s' is too long", args[i]);
            snprintf(p->values[i], MT_SEARCH_VALUE_LEN, "%s", args[i]);
            if (!check_value(r, key, args[i]))
                return 0;
        }
        p->n_values = n;
    } else {
        char *e1 = NULL, *e2 = NULL;
        if (n != 2)
            return fail(r, key, "%s takes two bounds", name);
        p->lo = strtod(args[0], &e1);
        p->hi = strtod(args[1], &e2);
        if (*e1 || *e2 || !(p->lo < p->hi) ||
            (p->kind == MT_DIST_LOGUNIFORM && p->lo <= 0.0) ||
            (p->kind == MT_DIST_INT &&
             (p->lo != floor(p->lo) || p->hi != floor(p->hi))))
            return fail(r, key, "bad bounds in '%s'", value);
        if (!check_value(r, key, args[0]) || !check_value(r, key, args[1]))
            return 0;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->p[i].key, key))
            return fail(r, key, "given twice (first on line %d)",
                        s->p[i].line);
    s->n++;
    return 1;
}

static int parse_size(reader_ctx *r, const char *key, const char *v,
                      size_t lo, size_t *out)
{
    char *e = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (!*v || *e || errno || x < lo || *v == '-')
        return fail(r, key, "'%s': expected an integer >= %zu", v, lo);
    *out = (size_t)x;
    return 1;
}

static int handler(void *user, const char *section, const char *key,
                   const char *value)
{
    reader_ctx *r = user;
    if (r->rc || strcmp(section, "search") != 0)
        return 1;
    r->found = 1;
    mt_search_space *s = r->s;
    size_t x = 0;
    if (!strcmp(key, "method")) {
        static const char *const methods[] = {"grid", "random", "asha",
                                              NULL};
        int m = mt_name_index(methods, value);
        if (m < 0)
            return fail(r, key, "'%s' is not grid, random or asha", value);
        s->method = (mt_search_method)m;
    } else if (!strcmp(key, "trials")) {
        return parse_size(r, key, value, 1, &s->trials);
    } else if (!strcmp(key, "seed")) {
        if (!parse_size(r, key, value, 0, &x))
            return 0;
        s->seed = x;
    } else if (!strcmp(key, "ranks_per_trial")) {
        return parse_size(r, key, value, 1, &s->ranks_per_trial);
    } else if (!strcmp(key, "max_epochs")) {
        return parse_size(r, key, value, 0, &s->max_epochs);
    } else if (!strcmp(key, "min_epochs")) {
        return parse_size(r, key, value, 1, &s->min_epochs);
    } else if (!strcmp(key, "eta")) {
        return parse_size(r, key, value, 2, &s->eta);
    } else if (!strcmp(key, "keep_top")) {
        return parse_size(r, key, value, 0, &s->keep_top);
    } else if (!strcmp(key, "metric")) {
        s->metric = mt_name_index(mt_monitor_names, value);
        if (s->metric <= 0)
            return fail(r, key, "'%s' is not a logged metric (val_accuracy, "
                                "val_loss, val_macro_f1, ...)",
                        value);
    } else if (!strcmp(key, "mode")) {
        if (strcmp(value, "auto") && strcmp(value, "max") &&
            strcmp(value, "min"))
            return fail(r, key, "'%s' is not auto, max or min", value);
        s->maximize = value[1] == 'a' ? 1 : value[1] == 'i' ? 0 : -1;
    } else if (strchr(key, '.')) {
        return parse_param(r, key, value);
    } else {
        return fail(r, key, "unknown key (parameters are section.key)");
    }
    return 1;
}

/* The grid's size: the product of the value counts; 0 if some parameter
 * is not a list (*bad: its index). */
static size_t grid_size(const mt_search_space *s, size_t *bad)
{
    size_t n = 1;
    for (size_t i = 0; i < s->n; i++) {
        if (s->p[i].kind > MT_DIST_CHOICE) {
            *bad = i;
            return 0;
        }
        n *= s->p[i].n_values;
    }
    return n;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* ASHA's rungs: min_epochs x eta^k below the top, the top max_epochs
 * ([train] epochs when 0); over a grid without trials, every point once
 * in a scrambled order (a stride prime to the size: a bijection). */
static int finish_asha(reader_ctx *r)
{
    mt_search_space *s = r->s;
    size_t top = s->max_epochs, bad = 0, n = grid_size(s, &bad);
    if (!top) {
        mt_config c;
        char err[MT_ERR_LEN];
        if (mt_config_load(&c, r->path, r->sets, r->n_sets, err))
            return fail(r, "max_epochs", "%s", err);
        top = c.epochs;
        mt_config_free(&c);
    }
    if (s->min_epochs >= top)
        return fail(r, "min_epochs", "%zu leaves no rung below the %zu "
                                     "epochs of the top one",
                    s->min_epochs, top);
    s->rungs = 0;
    for (size_t e = s->min_epochs; e < top && s->rungs < MT_SEARCH_MAX_RUNGS - 1;
         e *= s->eta)
        s->rung_epochs[s->rungs++] = e;
    s->rung_epochs[s->rungs++] = top;
    if (s->trials == 0 && n == 0) {
        r->line = s->p[bad].line;
        return fail(r, s->p[bad].key, "method = asha over uniform, "
                                      "loguniform or int needs trials");
    }
    if (s->trials == 0) {
        s->trials = n;
        s->grid_order = 1;
        s->grid_b = mt_rng_below(n, s->seed, MT_RNG_SEARCH, UINT64_MAX, 0);
        /* a stride in [1, n) prime to n; 1 if 64 draws find none */
        s->grid_a = 1;
        for (uint64_t i = 1; n > 2 && i <= 64; i++) {
            uint64_t a = 1 + mt_rng_below(n - 1, s->seed, MT_RNG_SEARCH,
                                          UINT64_MAX, i);
            if (gcd(a, n) == 1) {
                s->grid_a = a;
                break;
            }
        }
    }
    return 1;
}

/* Grid: every parameter is a list; the number of trials is the product. */
static int finish_space(reader_ctx *r)
{
    mt_search_space *s = r->s;
    if (s->n == 0)
        return fail(r, "(section)", "no parameter to vary");
    if (s->maximize < 0)
        s->maximize = !mt_monitor_minimizes(s->metric);
    if (s->method != MT_SEARCH_ASHA && (s->min_epochs || s->eta))
        return fail(r, s->min_epochs ? "min_epochs" : "eta",
                    "only method = asha has rungs");
    s->rungs = 1;
    s->rung_epochs[0] = s->max_epochs;
    if (s->method == MT_SEARCH_ASHA) {
        s->min_epochs += !s->min_epochs;
        s->eta += 3 * !s->eta;
        return finish_asha(r);
    }
    if (s->method == MT_SEARCH_RANDOM) {
        if (s->trials == 0)
            return fail(r, "trials", "method = random needs trials");
        return 1;
    }
    size_t bad = 0, n = grid_size(s, &bad);
    if (n == 0) {
        r->line = s->p[bad].line;
        return fail(r, s->p[bad].key, "method = grid takes grid(...) or "
                                      "choice(...) only");
    }
    s->trials = n;
    return 1;
}

int mt_search_space_read(mt_search_space *s, const char *path,
                         char *const *sets, size_t n_sets, char *err)
{
    memset(s, 0, sizeof *s);
    s->ranks_per_trial = 1;
    s->metric = MT_MONITOR_VAL_ACCURACY;
    s->maximize = -1;
    reader_ctx r = {s, path, sets, n_sets, fopen(path, "r"), 0, 0, 0, err};
    if (!r.fp) {
        mt_seterr(err, "config %s: %s", path, strerror(errno));
        return MT_EIO;
    }
    int rc = ini_parse_stream(read_line, &r, handler, &r);
    fclose(r.fp);
    if (r.rc)
        return r.rc;
    if (rc > 0) {
        mt_seterr(err, "%s:%d: syntax error", path, rc);
        return MT_EINVAL;
    }
    if (!r.found) {
        mt_seterr(err, "%s: no [search] section", path);
        return MT_EINVAL;
    }
    return finish_space(&r) ? MT_OK : r.rc;
}

static void format_number(char *out, double v, int integer)
{
    if (integer)
        snprintf(out, MT_SEARCH_VALUE_LEN, "%.0f", v);
    else
        snprintf(out, MT_SEARCH_VALUE_LEN, "%.6g", v);
}

void mt_search_trial_values(const mt_search_space *s, size_t t,
                            char vals[][MT_SEARCH_VALUE_LEN])
{
    /* Grid: mixed radix, the last parameter changing fastest. */
    size_t rest = t;
    if (s->grid_order)
        rest = (size_t)((s->grid_a * t + s->grid_b) % s->trials);
    for (size_t k = s->n; k-- > 0;) {
        const mt_search_param *p = &s->p[k];
        if (s->method == MT_SEARCH_GRID || s->grid_order) {
            snprintf(vals[k], MT_SEARCH_VALUE_LEN, "%s",
                     p->values[rest % p->n_values]);
            rest /= p->n_values;
            continue;
        }
        double u = mt_rng_uniform(s->seed, MT_RNG_SEARCH, t, k);
        if (p->kind <= MT_DIST_CHOICE)
            snprintf(vals[k], MT_SEARCH_VALUE_LEN, "%s",
                     p->values[mt_rng_below(p->n_values, s->seed,
                                            MT_RNG_SEARCH, t, k)]);
        else if (p->kind == MT_DIST_UNIFORM)
            format_number(vals[k], p->lo + (p->hi - p->lo) * u, 0);
        else if (p->kind == MT_DIST_LOGUNIFORM)
            format_number(vals[k],
                          exp(log(p->lo) + (log(p->hi) - log(p->lo)) * u),
                          0);
        else
            format_number(vals[k],
                          p->lo + (double)mt_rng_below(
                                      (uint64_t)(p->hi - p->lo) + 1, s->seed,
                                      MT_RNG_SEARCH, t, k),
                          1);
    }
}
