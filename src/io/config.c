#include "mpitrain/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "io/config_internal.h"
#include "mpitrain/core.h"

static const char *const act_names[] = {"none", "relu", "leaky", "sigmoid",
                                        "tanh", NULL};
static const int act_kinds[] = {-1, MT_RELU, MT_LEAKY_RELU, MT_SIGMOID,
                                MT_TANH};

/* The table's defaults into base: each is parsed like INI text, so a
 * default is the same value a config file stating it would give. */
static int set_value(const mt__key_def *k, void *base, const char *v,
                     char *why, size_t why_len);
static void apply_defaults(const mt__key_def *k, const char *section,
                           void *base)
{
    char why[200];
    for (; k->section; k++) {
        if (section && strcmp(k->section, section) != 0)
            continue;
        if (k->def) {
            int bad = set_value(k, base, k->def, why, sizeof why);
            assert(!bad && "a default in the key table does not parse");
            (void)bad;
        }
        else if (k->type == T_OPT_FLOAT)
            *(float *)((char *)base + k->off) = NAN;
    }
}

void mt_config_defaults(mt_config *c)
{
    memset(c, 0, sizeof *c);
    apply_defaults(mt__config_keys, NULL, c);
}

void mt_config_free(mt_config *c)
{
    mt_free(c->layers);
    c->n_layers = c->cap_layers = 0;
}

static mt_config_layer layer_defaults(mt_layer_kind kind, int line)
{
    /* alpha: the slope of "activation = leaky" on conv and dense. */
    mt_config_layer L = {.activation = -1, .alpha = 0.01f};
    L.spec.kind = kind;
    L.spec.line = line;
    L.spec.weight_decay = L.spec.l1 = NAN; /* for kinds without the keys */
    apply_defaults(mt__layer_keys, mt_layer_ops_of(kind)->kind_name, &L);
    return L;
}

static const mt__key_def *find_key(const mt__key_def *t, const char *section,
                                   const char *key)
{
    for (; t->section; t++)
        if (strcmp(t->section, section) == 0 && strcmp(t->key, key) == 0)
            return t;
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(v, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static void list_names(const char *const *names, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; names[i]; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? " | " : "",
                 names[i]);
}

/* Parses v into base + k->off. On error fills why (a short reason). */
static int set_value(const mt__key_def *k, void *base, const char *v,
                     char *why, size_t why_len)
{
    char *p = (char *)base + k->off, *end = NULL, names[160];
    errno = 0;
    switch (k->type) {
    case T_SIZE:
    case T_U64: {
        if (k->names && strcasecmp(v, k->names[0]) == 0) {
            *(size_t *)p = 0;
            return 0;
        }
        unsigned long long u = strtoull(v, &end, 10);
        if (!*v || *end || errno || strchr(v, '-') ||
            (k->type == T_SIZE && (u < k->min || u > k->max))) {
            if (k->type == T_SIZE)
                snprintf(why, why_len, "expected %s%san integer in [%.0f, "
                                       "%.0f]",
                         k->names ? k->names[0] : "",
                         k->names ? " or " : "", k->min, k->max);
            else
                snprintf(why, why_len, "expected a non-negative integer");
            return -1;
        }
        if (k->type == T_SIZE)
            *(size_t *)p = (size_t)u;
        else
            *(uint64_t *)p = u;
        return 0;
    }
    case T_DOUBLE:
    case T_FLOAT:
    case T_OPT_FLOAT: {
        double d = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(d) || d < k->min ||
            d > k->max) {
            snprintf(why, why_len, "expected a number in [%g, %g]", k->min,
                     k->max);
            return -1;
        }
        if (k->type == T_DOUBLE)
            *(double *)p = d;
        else
            *(float *)p = (float)d;
        return 0;
    }
    case T_BOOL:
        if (parse_bool(v, (int *)p) == 0)
            return 0;
        snprintf(why, why_len, "expected true or false");
        return -1;
    case T_PATH:
        if (strlen(v) >= MT_PATH_LEN) {
            snprintf(why, why_len, "path longer than %d bytes",
                     MT_PATH_LEN - 1);
            return -1;
        }
        snprintf(p, MT_PATH_LEN, "%s", v);
        return 0;
    case T_ENUM:
    case T_ACT: {
        const char *const *n = k->type == T_ENUM ? k->names : act_names;
        int i = mt_name_index(n, v);
        if (i < 0) {
            list_names(n, names, sizeof names);
            snprintf(why, why_len, "expected one of %s", names);
            return -1;
        }
        *(int *)p = k->type == T_ENUM ? i : act_kinds[i];
        return 0;
    }
    }
    return -1;
}

/* Applies key = value in `section` (a singleton name, or a layer kind for
 * c->layers[layer]). `where` is "file:line" or "--set ...". */
int mt__config_apply(mt_config *c, const char *where, const char *section,
                     long layer, const char *key, const char *value,
                     char *err)
{
    const mt__key_def *k;
    void *base;
    if (layer >= 0) {
        k = find_key(mt__layer_keys, section, key);
        base = &c->layers[layer];
    } else {
        k = find_key(mt__config_keys, section, key);
        base = c;
    }
    if (!k) {
        mt_seterr(err, "%s: [%s] unknown key '%s'", where, section, key);
        return MT_EINVAL;
    }
    char why[200];
    if (set_value(k, base, value, why, sizeof why) != 0) {
        mt_seterr(err, "%s: [%s] %s = '%s': %s", where, section, key, value,
                  why);
        return MT_EINVAL;
    }
    return MT_OK;
}

int mt__config_add_layer(mt_config *c, mt_layer_kind kind, int line)
{
    if (c->n_layers == c->cap_layers) {
        size_t cap = c->cap_layers ? 2 * c->cap_layers : 16;
        mt_config_layer *n = realloc(c->layers, cap * sizeof *n);
        if (!n)
            return MT_ENOMEM;
        c->layers = n;
        c->cap_layers = cap;
    }
    c->layers[c->n_layers++] = layer_defaults(kind, line);
    return MT_OK;
}

int mt_config_set(mt_config *c, const char *assignment, char *err)
{
    char buf[MT_PATH_LEN + 128], where[MT_PATH_LEN + 160];
    snprintf(buf, sizeof buf, "%s", assignment);
    snprintf(where, sizeof where, "--set %s", assignment);
    char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
    if (!eq || !dot || dot > eq) {
        mt_seterr(err, "%s: expected section.key=value", where);
        return MT_EINVAL;
    }
    *eq = *dot = '\0';
    const char *section = buf, *key = dot + 1, *value = eq + 1;
    char *end;
    if (strncmp(section, "layer", 5) == 0 && isdigit((unsigned char)section[5])) {
        unsigned long n = strtoul(section + 5, &end, 10);
        if (*end || n < 1 || n > c->n_layers) {
            mt_seterr(err, "%s: there are %zu layer sections", where,
                      c->n_layers);
            return MT_EINVAL;
        }
        mt_config_layer *L = &c->layers[n - 1];
        return mt__config_apply(c, where,
                                mt_layer_ops_of(L->spec.kind)->kind_name,
                                (long)n - 1, key, value, err);
    }
    if (mt_name_index(mt__singletons, section) < 0) {
        mt_seterr(err, "%s: unknown section [%s]", where, section);
        return MT_EINVAL;
    }
    return mt__config_apply(c, where, section, -1, key, value, err);
}

/* "3,6,8": ascending epochs, at most 32 (the last check of config). */
static int parse_milestones(mt_config *c, char *err)
{
    c->n_milestones = 0;
    const char *p = c->milestones_text;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || (*end && *end != ',') || !(v > 0.0) ||
            c->n_milestones == 32 ||
            (c->n_milestones && v <= c->milestones[c->n_milestones - 1])) {
            mt_seterr(err, "%s: [optimizer] milestones = '%s': want up to "
                           "32 ascending epochs > 0, comma-separated",
                      c->path, c->milestones_text);
            return MT_EINVAL;
        }
        c->milestones[c->n_milestones++] = v;
        p = *end ? end + 1 : end;
    }
    if (c->schedule == 3 && c->n_milestones == 0) {
        mt_seterr(err, "%s: [optimizer] schedule = multistep needs "
                       "milestones",
                  c->path);
        return MT_EINVAL;
    }
    if (c->schedule == 6 && !(c->restart_epochs > 0.0)) {
        mt_seterr(err, "%s: [optimizer] schedule = cosine_restarts needs "
                       "restart_epochs > 0",
                  c->path);
        return MT_EINVAL;
    }
    return MT_OK;
}

/* A watched metric must be one the run logs: val_* needs a validation
 * split, the classification metrics a classification loss, perplexity
 * softmax_ce, MAE and R^2 loss = mse. What depends on the data (an AUC
 * needs both classes in the split) is checked after the first epoch. */
static int check_monitor(const mt_config *c, const char *key, int m,
                         char *err)
{
    if (m == MT_MONITOR_NONE)
        return MT_OK;
    const char *name = mt_monitor_names[m];
    if (strncmp(name, "val_", 4) == 0 && c->validation <= 0.0) {
        mt_seterr(err, "%s: %s = %s is not logged without a validation "
                       "split ([data] validation > 0)",
                  c->path, key, name);
        return MT_EINVAL;
    }
    int regression = m == MT_MONITOR_VAL_MAE || m == MT_MONITOR_VAL_R2;
    int any_loss = m == MT_MONITOR_VAL_LOSS || m == MT_MONITOR_TRAIN_LOSS;
    if ((!any_loss && regression != (c->loss == MT_LOSS_MSE)) ||
        (m == MT_MONITOR_VAL_PERPLEXITY && c->loss != MT_LOSS_SOFTMAX_CE)) {
        mt_seterr(err, "%s: %s = %s is not logged with loss = %s", c->path,
                  key, name, mt_loss_name(c->loss));
        return MT_EINVAL;
    }
    return MT_OK;
}

int mt_config_check(const mt_config *c, char *err)
{
    if (!c->train[0]) {
        mt_seterr(err, "%s: [data] train is not set", c->path);
        return MT_EINVAL;
    }
    if (!c->dir[0]) {
        mt_seterr(err, "%s: [run] dir is empty", c->path);
        return MT_EINVAL;
    }
    if (c->n_layers == 0) {
        mt_seterr(err, "%s: no layer sections ([conv], [dense], ...)",
                  c->path);
        return MT_EINVAL;
    }
    if ((c->schedule == 1 || c->schedule == 4) && c->step_epochs <= 0.0) {
        mt_seterr(err, "%s: [optimizer] schedule = %s needs step_epochs > 0",
                  c->path, c->schedule == 1 ? "step" : "exponential");
        return MT_EINVAL;
    }
    int rc = check_monitor(c, "[train] monitor", c->monitor, err);
    if (rc == MT_OK && c->plateau_factor > 0.0) {
        if (c->plateau_monitor == MT_MONITOR_NONE) {
            mt_seterr(err, "%s: [optimizer] plateau_factor > 0 needs a "
                           "plateau_monitor",
                      c->path);
            return MT_EINVAL;
        }
        rc = check_monitor(c, "[optimizer] plateau_monitor",
                           c->plateau_monitor, err);
    }
    if (rc == MT_OK)
        rc = check_monitor(c, "[checkpoint] best", c->keep_best, err);
    if (rc)
        return rc;
    if (c->focal_gamma > 0.0f && c->loss == MT_LOSS_MSE) {
        mt_seterr(err, "%s: [train] focal_gamma needs loss = softmax_ce or "
                       "sigmoid_bce",
                  c->path);
        return MT_EINVAL;
    }
    if (c->accumulate > 1 && c->deterministic) {
        mt_seterr(err, "%s: [train] accumulate > 1 does not combine with "
                       "[parallel] deterministic yet",
                  c->path);
        return MT_EINVAL;
    }
    if (c->sync == 2 /* ps */ && c->deterministic) {
        mt_seterr(err, "%s: [parallel] deterministic has its own summation "
                       "order and does not combine with sync = ps",
                  c->path);
        return MT_EINVAL;
    }
    if (c->ps_servers && c->sync != 2 /* ps */) {
        mt_seterr(err, "%s: [parallel] servers = %zu needs sync = ps",
                  c->path, c->ps_servers);
        return MT_EINVAL;
    }
    if (c->ps_async && c->sync != 2 /* ps */) {
        mt_seterr(err, "%s: [parallel] ps_mode = async needs sync = ps",
                  c->path);
        return MT_EINVAL;
    }
    if (c->defer_update &&
        (c->sync != 0 || !c->overlap || c->clip_norm > 0.0 ||
         c->deterministic || c->stages > 1 || c->progress_thread)) {
        mt_seterr(err, "%s: [parallel] defer_update needs sync = "
                       "allreduce with overlap, and no [train] clip_norm "
                       "(the norm needs every gradient first), "
                       "deterministic, stages or progress_thread",
                  c->path);
        return MT_EINVAL;
    }
    if (c->shard_optimizer &&
        (c->sync == 2 /* ps */ || c->defer_update || c->deterministic)) {
        mt_seterr(err, "%s: [parallel] shard_optimizer needs sync = "
                       "allreduce or ring (ps shards already), and no "
                       "defer_update or deterministic",
                  c->path);
        return MT_EINVAL;
    }
    if (c->shared_memory == 1 /* true */ &&
        !mt_config_shared_memory_applies(c)) {
        mt_seterr(err, "%s: [parallel] shared_memory = true needs sync = "
                       "allreduce or ring, and no defer_update, "
                       "deterministic, stages or progress_thread (auto "
                       "leaves it off there)",
                  c->path);
        return MT_EINVAL;
    }
    if (c->compress && c->sync != 1) {
        mt_seterr(err, "%s: [parallel] compress = bf16 needs sync = ring",
                  c->path);
        return MT_EINVAL;
    }
    if (c->softmax_line && c->loss != MT_LOSS_SOFTMAX_CE) {
        mt_seterr(err, "%s:%d: [softmax] ends the model but [train] loss = "
                       "%s",
                  c->path, c->softmax_line, mt_loss_name(c->loss));
        return MT_EINVAL;
    }
    return MT_OK;
}

int mt_config_shared_memory_applies(const mt_config *c)
{
    return c->sync != 2 /* ps */ && c->stages <= 1 && !c->defer_update &&
           !c->deterministic && !c->progress_thread;
}

/* [parallel] split: "auto", or stages - 1 ascending layer numbers. */
static int parse_split(mt_config *c, char *err)
{
    c->n_split = 0;
    const char *p = c->split_text;
    if (strcmp(p, "auto") == 0)
        return MT_OK;
    while (*p) {
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || (*end && *end != ',') || v == 0 ||
            c->n_split == 64 ||
            (c->n_split && v <= c->split[c->n_split - 1])) {
            c->n_split = 0;
            break;
        }
        c->split[c->n_split++] = v;
        p = *end ? end + 1 : end;
    }
    if (c->n_split + 1 != c->stages) {
        mt_seterr(err, "%s: [parallel] split = '%s': want auto, or the "
                       "last layer of each stage but the last: %zu "
                       "ascending layer numbers for stages = %zu",
                  c->path, c->split_text, c->stages - 1, c->stages);
        return MT_EINVAL;
    }
    return MT_OK;
}

/* A pipeline ([parallel] stages > 1) with what it does not combine
 * with yet. */
static int check_pipeline(const mt_config *c, char *err)
{
    if (c->stages == 1)
        return MT_OK;
    /* ps: colocated and synchronous, each stage's replicas its servers */
    const char *other = c->sync == 2 && c->ps_servers ? "dedicated servers"
                        : c->sync == 2 && c->ps_async ? "ps_mode = async"
                        : c->deterministic            ? "deterministic"
                                                      : NULL;
    if (other) {
        mt_seterr(err, "%s: [parallel] stages = %zu does not combine with "
                       "%s yet",
                  c->path, c->stages, other);
        return MT_EINVAL;
    }
    return MT_OK;
}

int mt_config_load(mt_config *c, const char *path, char *const *sets,
                   size_t n_sets, char *err)
{
    mt_config_defaults(c);
    int rc = mt__config_read_file(c, path, err);
    for (size_t i = 0; rc == MT_OK && i < n_sets; i++)
        rc = mt_config_set(c, sets[i], err);
    if (rc == MT_OK)
        rc = parse_milestones(c, err);
    if (rc == MT_OK)
        rc = parse_split(c, err);
    if (rc == MT_OK)
        rc = check_pipeline(c, err);
    if (rc == MT_OK)
        rc = mt_config_check(c, err);
    if (rc)
        mt_config_free(c);
    return rc;
}

static int is_rectifier(int kind)
{
    return kind == MT_RELU || kind == MT_LEAKY_RELU;
}

int mt_config_layer_specs(const mt_config *c, mt_layer_spec **specs,
                          size_t *n, char *err)
{
    *specs = mt_calloc(2 * c->n_layers, sizeof **specs);
    if (!*specs) {
        mt_seterr(err, "config: out of memory");
        return MT_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < c->n_layers; i++) {
        const mt_config_layer *L = &c->layers[i];
        mt_layer_spec s = L->spec;
        int next = L->activation >= 0 ? L->activation
                   : i + 1 < c->n_layers ? (int)c->layers[i + 1].spec.kind
                                         : -1;
        if (s.init == MT_INIT_AUTO)
            s.init = is_rectifier(next) ? MT_INIT_HE : MT_INIT_XAVIER;
        s.bf16 = c->precision == 1;
        (*specs)[k++] = s;
        if (L->activation >= 0) {
            mt_layer_spec a = {.kind = (mt_layer_kind)L->activation,
                               .alpha = L->alpha, .line = s.line,
                               .weight_decay = NAN, .l1 = NAN};
            (*specs)[k++] = a;
        }
    }
    *n = k;
    return MT_OK;
}

static void write_value(const mt__key_def *k, const void *base, FILE *out)
{
    const char *p = (const char *)base + k->off;
    if (k->type == T_OPT_FLOAT && isnan(*(const float *)p))
        return;
    fprintf(out, "%s = ", k->key);
    switch (k->type) {
    case T_SIZE:
        if (k->names && *(const size_t *)p == 0)
            fprintf(out, "%s\n", k->names[0]);
        else
            fprintf(out, "%zu\n", *(const size_t *)p);
        break;
    case T_U64:
        fprintf(out, "%llu\n", (unsigned long long)*(const uint64_t *)p);
        break;
    case T_DOUBLE: fprintf(out, "%.17g\n", *(const double *)p); break;
    case T_FLOAT:
    case T_OPT_FLOAT:
        fprintf(out, "%.9g\n", (double)*(const float *)p);
        break;
    case T_BOOL: fprintf(out, "%s\n", *(const int *)p ? "true" : "false");
        break;
    case T_PATH: fprintf(out, "%s\n", p); break;
    case T_ENUM: fprintf(out, "%s\n", k->names[*(const int *)p]); break;
    case T_ACT: {
        int a = *(const int *)p, i = 0;
        while (act_names[i] && act_kinds[i] != a)
            i++;
        fprintf(out, "%s\n", act_names[i] ? act_names[i] : "none");
        break;
    }
    }
}

void mt_config_write(const mt_config *c, FILE *out)
{
    for (int s = 0; mt__singletons[s]; s++) {
        fprintf(out, "[%s]\n", mt__singletons[s]);
        for (const mt__key_def *k = mt__config_keys; k->section; k++)
            if (strcmp(k->section, mt__singletons[s]) == 0)
                write_value(k, c, out);
        fprintf(out, "\n");
    }
    for (size_t i = 0; i < c->n_layers; i++) {
        const char *kind = mt_layer_ops_of(c->layers[i].spec.kind)->kind_name;
        fprintf(out, "[%s]\n", kind);
        for (const mt__key_def *k = mt__layer_keys; k->section; k++)
            if (strcmp(k->section, kind) == 0)
                write_value(k, &c->layers[i], out);
    }
    if (c->softmax_line)
        fprintf(out, "[softmax]\n");
}
