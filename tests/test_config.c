/* The INI reader: good files, overrides, and every kind of bad input
 * naming the file, line and key. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/config_internal.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"

static char path[64];

static const char good[] =
    "[run]\n"
    "dir = /tmp/x\n"
    "seed = 7\n"
    "[data]\n"
    "train = a.h5   ; inline comment\n"
    "[train]\n"
    "batch = 32\n"
    "[optimizer]\n"
    "type = adamw\n"
    "lr = 0.002\n"
    "[conv]\n"
    "filters = 4\n"
    "size = 3\n"
    "activation = relu\n"
    "weight_decay = 0\n"
    "[maxpool]\n"
    "[flatten]\n"
    "[dense]\n"
    "units = 10\n"
    "[softmax]\n";

static void write_ini(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **s)
{
    snprintf(path, sizeof path, "/tmp/mt_test_config_%d.ini", (int)getpid());
    return 0;
}

static int teardown(void **s)
{
    unlink(path);
    return 0;
}

/* Loads text with optional overrides and expects an error containing each
 * of the NULL-terminated fragments. */
static void expect_error(const char *text, const char *set, ...)
{
    write_ini(text);
    mt_config c;
    char err[MT_ERR_LEN] = "";
    char *sets[1] = {(char *)set};
    int rc = mt_config_load(&c, path, sets, set ? 1 : 0, err);
    if (rc == MT_OK)
        fail_msg("accepted:\n%s", text);
    va_list ap;
    va_start(ap, set);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        if (!strstr(err, frag))
            fail_msg("error '%s' lacks '%s'", err, frag);
    va_end(ap);
}

/* Cell `col` (0-based) of a "| a | b | c |" row, trimmed, into out. */
static void cell(const char *row, int col, char *out, size_t len)
{
    const char *p = row;
    for (int i = 0; i <= col && p; i++)
        p = strchr(p + 1, '|');
    const char *e = p ? strchr(p + 1, '|') : NULL;
    out[0] = '\0';
    if (!e)
        return;
    for (p++; p < e && *p == ' '; p++)
        ;
    while (e > p && e[-1] == ' ')
        e--;
    snprintf(out, len, "%.*s", (int)(e - p), p);
}

/* The value of row `key` of a "| key | default | ..." table in the
 * section that starts at `from`; names joined as "beta1, beta2" share a
 * row with their values. NULL if there is no such row. */
static const char *doc_default(const char *doc, const char *from,
                               const char *key, char *out, size_t len)
{
    const char *sec = strstr(doc, from);
    const char *end = sec ? strstr(sec + 1, "\n## ") : NULL;
    for (const char *row = sec ? strstr(sec, "\n| ") : NULL;
         row && (!end || row < end); row = strstr(row + 1, "\n| ")) {
        char names[200], vals[200];
        cell(row + 1, -1, names, sizeof names);
        cell(row + 1, 0, vals, sizeof vals);
        int at = 0;
        char *save_n, *save_v;
        for (char *n = strtok_r(names, ", ", &save_n); n;
             n = strtok_r(NULL, ", ", &save_n), at++)
            if (strcmp(n, key) == 0) {
                char *v = strtok_r(vals, ", ", &save_v);
                for (int i = 0; v && i < at; i++)
                    v = strtok_r(NULL, ", ", &save_v);
                snprintf(out, len, "%s", v ? v : "");
                return out;
            }
    }
    return NULL;
}

/* docs/config.md documents every key of the table with the table's
 * default: the defaults live in the table alone and the reference cannot
 * drift from them unnoticed. Every default parses. */
static void test_reference_matches_key_table(void **s)
{
    const char *src = getenv("MPITRAIN_SRCDIR");
    if (!src)
        skip();
    char path_doc[600];
    snprintf(path_doc, sizeof path_doc, "%s/docs/config.md", src);
    FILE *f = fopen(path_doc, "r");
    assert_non_null(f);
    static char doc[1 << 16];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    for (const mt__key_def *k = mt__config_keys; k->section; k++) {
        char from[64], got[200], set[300], err[MT_ERR_LEN];
        snprintf(from, sizeof from, "\n## [%s]", k->section);
        if (!doc_default(doc, from, k->key, got, sizeof got))
            fail_msg("docs/config.md: no row for [%s] %s", k->section,
                     k->key);
        if (k->def && strcmp(got, k->def) != 0)
            fail_msg("docs/config.md: [%s] %s defaults to '%s', the key "
                     "table to '%s'",
                     k->section, k->key, got, k->def);
        mt_config c;
        mt_config_defaults(&c);
        snprintf(set, sizeof set, "%s.%s=%s", k->section, k->key,
                 k->def ? k->def : "");
        if (k->def && mt_config_set(&c, set, err) != MT_OK)
            fail_msg("default does not parse: %s", err);
    }
    for (const mt__key_def *k = mt__layer_keys; k->section; k++) {
        char row[64], want[100];
        /* the row of the layer table that names the section */
        snprintf(row, sizeof row, "[%s]", k->section);
        const char *r = strstr(doc, "## Layer sections");
        while (r && (r = strstr(r + 1, row)) != NULL) {
            const char *bol = r;
            while (bol > doc && bol[-1] != '\n')
                bol--;
            if (bol[0] == '|')
                break;
        }
        if (!r)
            fail_msg("docs/config.md: no row for [%s]", k->section);
        const char *eol = strchr(r, '\n');
        /* "stride (0 = size)": the default may be followed by a gloss */
        snprintf(want, sizeof want, k->def ? "%s (%s" : "%s", k->key,
                 k->def);
        const char *hit = strstr(r, want);
        if (!hit || hit > eol)
            fail_msg("docs/config.md: the [%s] row lacks '%s'", k->section,
                     want);
    }
}

static void collect(const char *line, void *user)
{
    char *buf = user;
    strcat(buf, line);
    strcat(buf, "\n");
}

/* Changed, added and removed keys, by the names --set takes; a layer
 * section of another kind; nothing for identical texts. */
static void test_config_diff(void **s)
{
    const char *a = "[run]\nseed = 42\n[train]\nepochs = 10\n\n[conv]\n"
                    "filters = 4\n[dense]\nunits = 10\n[softmax]\n";
    const char *b = "[run]\nseed = 42\n[train]\nepochs = 20\n\n[conv]\n"
                    "filters = 4\nweight_decay = 0.1\n[dropout]\n"
                    "rate = 0.5\n[softmax]\n";
    char got[1024] = "";
    assert_int_equal(mt_config_diff(a, b, collect, got), 5);
    assert_string_equal(got, "train.epochs: 10 -> 20\n"
                             "layer2: [dense] -> [dropout]\n"
                             "layer2.units: 10 -> (unset)\n"
                             "layer1.weight_decay: (unset) -> 0.1\n"
                             "layer2.rate: (unset) -> 0.5\n");
    got[0] = '\0';
    assert_int_equal(mt_config_diff(a, a, collect, got), 0);
    assert_string_equal(got, "");
}

static void test_good_file(void **s)
{
    write_ini(good);
    mt_config c;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_config_load(&c, path, NULL, 0, err), MT_OK);
    assert_string_equal(c.dir, "/tmp/x");
    assert_int_equal(c.seed, 7);
    assert_string_equal(c.train, "a.h5");
    assert_int_equal(c.batch, 32);
    assert_int_equal(c.epochs, 10); /* default */
    assert_int_equal(c.optim.kind, MT_OPT_ADAMW);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.layers[0].spec.filters, 4);
    assert_int_equal(c.layers[0].spec.line, 11);
    assert_int_equal(c.layers[1].spec.size, 2); /* maxpool default */
    assert_int_equal(c.loss, MT_LOSS_SOFTMAX_CE);
    mt_layer_spec *specs;
    size_t n;
    assert_int_equal(mt_config_layer_specs(&c, &specs, &n, err), MT_OK);
    assert_int_equal(n, 5); /* the relu is its own layer */
    assert_int_equal(specs[1].kind, MT_RELU);
    assert_int_equal(specs[0].init, MT_INIT_HE);    /* relu follows */
    assert_int_equal(specs[4].init, MT_INIT_XAVIER); /* output layer */
    free(specs);
    mt_config_free(&c);
}

static void test_overrides(void **s)
{
    write_ini(good);
    mt_config c;
    char err[MT_ERR_LEN] = "";
    char *sets[] = {"train.batch=8", "layer4.units=12", "run.dir=/tmp/y"};
    assert_int_equal(mt_config_load(&c, path, sets, 3, err), MT_OK);
    assert_int_equal(c.batch, 8);
    assert_int_equal(c.layers[3].spec.units, 12);
    assert_string_equal(c.dir, "/tmp/y");
    mt_config_free(&c);
}

static void test_resolved_config_round_trips(void **s)
{
    write_ini(good);
    mt_config c, d;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_config_load(&c, path, NULL, 0, err), MT_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    mt_config_write(&c, mem);
    fclose(mem);
    write_ini(text);
    assert_int_equal(mt_config_load(&d, path, NULL, 0, err), MT_OK);
    char *text2 = NULL;
    mem = open_memstream(&text2, &len);
    mt_config_write(&d, mem);
    fclose(mem);
    assert_string_equal(text, text2);
    assert_int_equal(d.n_layers, c.n_layers);
    assert_true(d.optim.lr == c.optim.lr);
    /* A layer's own penalty is written; an unset one stays unset. */
    assert_true(d.layers[0].spec.weight_decay == 0.0f);
    assert_true(isnan(d.layers[3].spec.weight_decay));
    assert_non_null(strstr(text, "[conv]\nfilters = 4"));
    assert_int_equal(strstr(text, "weight_decay = 0\n") != NULL, 1);
    free(text);
    free(text2);
    mt_config_free(&c);
    mt_config_free(&d);
}

static void test_unknown_key_names_line(void **s)
{
    expect_error("[data]\ntrain = a\n[train]\nbatchsize = 3\n[dense]\n"
                 "units = 2\n",
                 NULL, ":4:", "[train]", "unknown key 'batchsize'", NULL);
}

static void test_unknown_section(void **s)
{
    expect_error("[data]\ntrain = a\n[trian]\nepochs = 3\n", NULL, ":3:",
                 "unknown section [trian]", NULL);
}

static void test_non_numeric_value(void **s)
{
    expect_error("[data]\ntrain = a\n[optimizer]\nlr = fast\n[dense]\n"
                 "units = 2\n",
                 NULL, ":4:", "lr = 'fast'", "expected a number", NULL);
    expect_error("[data]\ntrain = a\n[dense]\nunits = 12abc\n", NULL, ":4:",
                 "units", NULL);
}

static void test_batch_zero(void **s)
{
    expect_error("[data]\ntrain = a\n[train]\nbatch = 0\n[dense]\n"
                 "units = 2\n",
                 NULL, ":4:", "batch = '0'", NULL);
    expect_error("[data]\ntrain = a\n[dense]\nunits = 2\n", "train.batch=0",
                 "--set train.batch=0", "batch", NULL);
    expect_error("[data]\ntrain = a\n[train]\nbatch = -4\n[dense]\n"
                 "units = 2\n",
                 NULL, "batch = '-4'", NULL);
}

static void test_bad_enum_and_structure(void **s)
{
    expect_error("[data]\ntrain = a\n[optimizer]\ntype = rmsprop\n[dense]\n"
                 "units = 2\n",
                 NULL, "type = 'rmsprop'", "sgd | adam | adamw", NULL);
    expect_error("[data]\ntrain = a\n", NULL, "no layer sections", NULL);
    expect_error("[dense]\nunits = 2\n", NULL, "[data] train is not set",
                 NULL);
    expect_error("[data]\ntrain = a\n[softmax]\n[dense]\nunits = 2\n", NULL,
                 ":4:", "must be the last section", NULL);
    expect_error("[data]\ntrain = a\n[data]\ntest = b\n[dense]\nunits = 2\n",
                 NULL, ":3:", "appears twice", NULL);
    expect_error("[data]\ntrain = a\nthis line has no equals\n", NULL, ":3:",
                 "syntax error", NULL);
    /* A key twice in one section names both lines (as configparser);
     * the same key in two layer sections is fine (checked below). */
    expect_error("[data]\ntrain = a\n[optimizer]\nlr = 0.1\nmomentum = 0\n"
                 "lr = 0.2\n[dense]\nunits = 2\n",
                 NULL, ":6:", "[optimizer] key 'lr' given twice (first on "
                 "line 4)", NULL);
    expect_error("[data]\ntrain = a\n[dense]\nunits = 2\nunits = 3\n", NULL,
                 ":5:", "key 'units' given twice (first on line 4)", NULL);
    /* A header without its ']' is reported on its own line, not as the
     * next key's "before any [section]". */
    expect_error("[data]\ntrain = a\n[train\nepochs = 3\n[dense]\n"
                 "units = 2\n",
                 NULL, ":3:", "section header [train lacks its ']'", NULL);
    expect_error("[data\ntrain = a\n", NULL, ":1:", "lacks its ']'", NULL);
    expect_error("[data]\ntrain = a\n[dense]\nunits = 2\n", "layer9.units=3",
                 "there are 1 layer sections", NULL);
    expect_error("[data]\ntrain = a\n[dense]\nunits = 2\n[train]\n"
                 "loss = mse\n[softmax]\n",
                 NULL, "[softmax] ends the model", NULL);
    /* The parameter server's keys. */
    expect_error("[data]\ntrain = a\n[parallel]\nservers = 2\n[dense]\n"
                 "units = 2\n",
                 NULL, "servers = 2 needs sync = ps", NULL);
    expect_error("[data]\ntrain = a\n[parallel]\nsync = ps\nservers = some\n"
                 "[dense]\nunits = 2\n",
                 NULL, ":5:", "expected colocated or an integer", NULL);
    expect_error("[data]\ntrain = a\n[parallel]\nsync = ps\n"
                 "deterministic = true\n[dense]\nunits = 2\n",
                 NULL, "does not combine with sync = ps", NULL);
    /* The deferred update: allreduce with overlap, no clipping. */
    expect_error("[data]\ntrain = a\n[parallel]\nsync = ring\n"
                 "defer_update = true\n[dense]\nunits = 2\n",
                 NULL, "defer_update needs sync = allreduce", NULL);
    expect_error("[data]\ntrain = a\n[train]\nclip_norm = 1\n[parallel]\n"
                 "defer_update = true\n[dense]\nunits = 2\n",
                 NULL, "no [train] clip_norm", NULL);
    /* The sharded step: allreduce or ring, alone. */
    expect_error("[data]\ntrain = a\n[parallel]\nsync = ps\n"
                 "shard_optimizer = true\n[dense]\nunits = 2\n",
                 NULL, "shard_optimizer needs sync = allreduce or ring",
                 NULL);
    expect_error("[data]\ntrain = a\n[parallel]\ndefer_update = true\n"
                 "shard_optimizer = true\n[dense]\nunits = 2\n",
                 NULL, "no defer_update or deterministic", NULL);
    /* Shared memory: allreduce or ring, data parallel, no thread. */
    expect_error("[data]\ntrain = a\n[parallel]\nsync = ps\n"
                 "shared_memory = true\n[dense]\nunits = 2\n",
                 NULL, "shared_memory = true needs sync",
                 NULL);
    expect_error("[data]\ntrain = a\n[parallel]\nstages = 2\n"
                 "shared_memory = true\n[dense]\nunits = 2\n[dense]\n"
                 "units = 2\n",
                 NULL, "shared_memory = true needs", "stages", NULL);
    expect_error("[data]\ntrain = a\n[parallel]\nprogress_thread = on\n"
                 "shared_memory = true\n[dense]\nunits = 2\n",
                 NULL, "shared_memory = true needs", "progress_thread", NULL);
}

static void test_schedule_keys(void **s)
{
    expect_error("[data]\ntrain = a\n[optimizer]\nschedule = multistep\n"
                 "milestones = 5,3\n[dense]\nunits = 2\n",
                 NULL, "milestones = '5,3'", "ascending", NULL);
    expect_error("[data]\ntrain = a\n[optimizer]\nschedule = multistep\n"
                 "[dense]\nunits = 2\n",
                 NULL, "multistep needs milestones", NULL);
    expect_error("[data]\ntrain = a\n[optimizer]\nschedule = cosine_restarts"
                 "\n[dense]\nunits = 2\n",
                 NULL, "needs restart_epochs", NULL);
    expect_error("[data]\ntrain = a\n[optimizer]\nschedule = linear\n"
                 "[dense]\nunits = 2\n",
                 NULL, "schedule = 'linear'", "cosine_restarts", NULL);
    expect_error("[data]\ntrain = a\nvalidation = 0\n[train]\n"
                 "monitor = val_loss\n[dense]\nunits = 2\n",
                 NULL, "monitor = val_loss is not logged", NULL);
    expect_error("[data]\ntrain = a\n[train]\nmonitor = val_mae\n"
                 "[dense]\nunits = 2\n",
                 NULL, "monitor = val_mae is not logged with loss = "
                 "softmax_ce", NULL);
    expect_error("[data]\ntrain = a\nvalidation = 0\n[checkpoint]\n"
                 "best = val_roc_auc\n[dense]\nunits = 2\n",
                 NULL, "[checkpoint] best = val_roc_auc is not logged", NULL);
    expect_error("[data]\ntrain = a\n[train]\nloss = mse\nmonitor = "
                 "val_macro_f1\n[dense]\nunits = 2\n",
                 NULL, "val_macro_f1 is not logged with loss = mse", NULL);
    expect_error("[data]\ntrain = a\n[optimizer]\nplateau_factor = 0.5\n"
                 "plateau_monitor = none\n[dense]\nunits = 2\n",
                 NULL, "plateau_factor > 0 needs a plateau_monitor", NULL);
    expect_error("[data]\ntrain = a\n[train]\nloss = mse\nfocal_gamma = 2\n"
                 "[dense]\nunits = 2\n",
                 NULL, "focal_gamma needs loss = softmax_ce", NULL);
    expect_error("[data]\ntrain = a\n[train]\nsampling = smote\n"
                 "[dense]\nunits = 2\n",
                 NULL, "sampling = 'smote'", "undersample", NULL);
    expect_error("[data]\ntrain = a\n[train]\nmonitor = val_f2\n"
                 "[dense]\nunits = 2\n",
                 NULL, "monitor = 'val_f2'", "val_macro_f1", NULL);
    expect_error("[data]\ntrain = a\n[train]\npatience = -1\n"
                 "[dense]\nunits = 2\n",
                 NULL, "patience = '-1'", NULL);
    write_ini("[data]\ntrain = a\n[optimizer]\nschedule = multistep\n"
              "milestones = 2,4.5\n[dense]\nunits = 2\n");
    mt_config c;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_config_load(&c, path, NULL, 0, err), MT_OK);
    assert_int_equal(c.n_milestones, 2);
    assert_true(c.milestones[1] == 4.5);
    mt_config_free(&c);
}

static void test_missing_file(void **s)
{
    mt_config c;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_config_load(&c, "/nonexistent/x.ini", NULL, 0, err),
                     MT_EIO);
    assert_non_null(strstr(err, "/nonexistent/x.ini"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_resolved_config_round_trips),
        cmocka_unit_test(test_unknown_key_names_line),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_non_numeric_value),
        cmocka_unit_test(test_batch_zero),
        cmocka_unit_test(test_bad_enum_and_structure),
        cmocka_unit_test(test_schedule_keys),
        cmocka_unit_test(test_reference_matches_key_table),
        cmocka_unit_test(test_config_diff),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
