/* Reading checkpoints: any rank, independently, with HDF5's default
 * driver. Nothing is trusted before it is checked: the format and version
 * attributes, the `complete` mark, every tensor's shape and checksum. */
#include "mpitrain/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5util.h"
#include "mpitrain/core.h"
#include "mpitrain/io.h"

/* Opens a checkpoint and checks its root attributes. */
static hid_t open_checked(const char *path, char *err)
{
    mt__h5_quiet();
    if (access(path, R_OK) != 0) {
        mt_seterr(err, "checkpoint %s: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mt_seterr(err, "checkpoint %s: not a readable HDF5 file "
                       "(truncated?)",
                  path);
        return H5I_INVALID_HID;
    }
    char *format = NULL;
    double version = 0, complete = 0;
    const char *why = NULL;
    char buf[128];
    if (mt__h5_attr_read_string(f, "format", &format) != 0 ||
        strcmp(format, MT_CKPT_FORMAT) != 0)
        why = "not an mpitrain checkpoint (no format attribute)";
    else if (mt__h5_attr_read_double(f, "format_version", &version) != 0 ||
             version != MT_CKPT_VERSION) {
        snprintf(buf, sizeof buf,
                 "format_version %g, this mpitrain reads %d", version,
                 MT_CKPT_VERSION);
        why = buf;
    } else if (mt__h5_attr_read_double(f, "complete", &complete) != 0 ||
               complete != 1.0)
        why = "incomplete (no complete attribute: the save was "
              "interrupted)";
    free(format);
    if (why) {
        mt_seterr(err, "checkpoint %s: %s", path, why);
        H5Fclose(f);
        return H5I_INVALID_HID;
    }
    return f;
}

/* Reads every dataset once, so that Fletcher-32 checks all the data. */
typedef struct verify_ctx {
    const char *path;
    char *err;
} verify_ctx;

static herr_t verify_one(hid_t obj, const char *name, const H5O_info_t *info,
                         void *user)
{
    if (info->type != H5O_TYPE_DATASET)
        return 0;
    verify_ctx *v = user;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    size_t bytes = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(ty);
    void *buf = malloc(bytes ? bytes : 1);
    herr_t rc = buf && H5Dread(d, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0
                    ? 0
                    : -1;
    if (rc)
        mt_seterr(v->err, "checkpoint %s: /%s fails its checksum or cannot "
                          "be read (corrupted)",
                  v->path, name);
    free(buf);
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int verify(const char *path, char *err)
{
    hid_t f = open_checked(path, err);
    if (f < 0)
        return MT_EFORMAT;
    verify_ctx v = {path, err};
    herr_t rc = H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, verify_one, &v,
                          H5O_INFO_BASIC);
    H5Fclose(f);
    return rc < 0 ? MT_EFORMAT : MT_OK;
}

static int by_name_desc(const void *a, const void *b)
{
    return -strcmp(*(char *const *)a, *(char *const *)b);
}

/* Candidates, best first: the one `latest` names, then all complete-
 * looking files by descending step. */
static size_t candidates(const char *dir, char **out, size_t max)
{
    size_t n = 0;
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/latest", dir);
    FILE *f = fopen(path, "r");
    if (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) {
            snprintf(path, sizeof path, "%s/%s", dir, line);
            out[n++] = strdup(path);
        }
    }
    if (f)
        fclose(f);
    DIR *d = opendir(dir);
    char *names[4096];
    size_t k = 0;
    for (struct dirent *e; d && (e = readdir(d)) && k < 4096;) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) == 0 && len > 8 &&
            strcmp(e->d_name + len - 3, ".h5") == 0)
            names[k++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, k, sizeof *names, by_name_desc);
    for (size_t i = 0; i < k; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        free(names[i]);
        if (n < max && (n == 0 || strcmp(out[0], path) != 0))
            out[n++] = strdup(path);
    }
    return n;
}

int mt_ckpt_find(const char *dir, const char *which, char **path,
                 char *note, size_t note_len, char *err)
{
    *path = NULL;
    if (note && note_len)
        note[0] = '\0';
    if (strcmp(which, "auto") != 0) {
        int rc = verify(which, err);
        if (rc == MT_OK)
            *path = strdup(which);
        return rc;
    }
    char *c[64];
    size_t n = candidates(dir, c, 64);
    if (n == 0) /* nothing saved yet: a fresh start, not an error */
        return MT_OK;
    int rc = MT_EIO;
    mt_seterr(err, "no checkpoint to resume from in %s", dir);
    for (size_t i = 0; i < n; i++) {
        char why[MT_ERR_LEN];
        if (!*path && verify(c[i], why) == MT_OK) {
            *path = c[i];
            rc = MT_OK;
            continue;
        }
        if (!*path && note) /* tell the user what was passed over */
            snprintf(note + strlen(note), note_len - strlen(note),
                     "skipped: %s\n", why);
        free(c[i]);
    }
    if (rc == MT_OK && err)
        err[0] = '\0';
    return rc;
}

/* A 1-D byte dataset as a NUL-terminated string (malloc'd). */
static char *read_text(hid_t f, const char *name)
{
    if (!mt__h5_exists(f, name))
        return NULL;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    char *s = calloc((size_t)n + 1, 1);
    if (s && H5Dread(d, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     s) < 0) {
        free(s);
        s = NULL;
    }
    H5Sclose(sp);
    H5Dclose(d);
    return s;
}

typedef struct es_ctx {
    hid_t f;
    mt_model *m;
    mt_ckpt_state *st;
    int found;
} es_ctx;

/* Early stopping's best weights, if the file has them. */
static int read_es(const mt_layer *l, mt_tensor *t, int is_state, void *user)
{
    es_ctx *c = user;
    char name[160];
    snprintf(name, sizeof name, "/early_stopping/%s/%s", l->name, t->name);
    if (!mt__h5_exists(c->f, name))
        return 0;
    float *dst = is_state ? c->st->es_state + (t->data - c->m->state)
                          : c->st->es_params + (t->data - c->m->params);
    hid_t d = H5Dopen2(c->f, name, H5P_DEFAULT);
    herr_t rc = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                        dst);
    H5Dclose(d);
    c->found++;
    return rc < 0 ? MT_EFORMAT : 0;
}

typedef struct slot_ctx {
    hid_t f;
    const char *path;
    mt_model *m;
    mt_optim *o;
    char *err;
} slot_ctx;

/* Reads dataset `name` of n floats into dst, or (a shard) only its
 * elements [lo, hi) into dst[0 .. hi - lo). */
static herr_t read_part(hid_t d, size_t n, size_t lo, size_t hi, float *dst)
{
    if (lo == 0 && hi == n)
        return H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       dst);
    float *all = malloc(n * sizeof *all);
    herr_t rc = all ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                              H5P_DEFAULT, all)
                    : -1;
    if (rc >= 0)
        memcpy(dst, all + lo, (hi - lo) * sizeof *all);
    free(all);
    return rc;
}

static int read_slots(const mt_layer *l, mt_tensor *t, int is_state,
                      void *user)
{
    slot_ctx *c = user;
    if (is_state)
        return 0;
    /* The part of this tensor inside the optimizer's range. */
    size_t off = (size_t)(t->data - c->m->params), lo, hi;
    mt_optim_part(c->o, off, t->n, &lo, &hi);
    if (hi == lo)
        return 0;
    float *slots[2] = {c->o->m, c->o->v};
    const char *names[2] = {"m", "v"};
    for (int k = 0; k < 2; k++) {
        if (!slots[k])
            continue;
        char name[160];
        snprintf(name, sizeof name, "/optimizer/%s/%s/%s", l->name, t->name,
                 names[k]);
        if (!mt__h5_exists(c->f, name)) {
            mt_seterr(c->err, "checkpoint %s: no optimizer state %s (saved "
                              "with another optimizer?)",
                      c->path, name);
            return MT_EFORMAT;
        }
        hid_t d = H5Dopen2(c->f, name, H5P_DEFAULT);
        hid_t sp = H5Dget_space(d);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        herr_t rc = n == (hssize_t)t->n
                        ? read_part(d, t->n, lo, hi,
                                    slots[k] + (off + lo - c->o->base))
                        : -1;
        H5Sclose(sp);
        H5Dclose(d);
        if (rc < 0) {
            mt_seterr(c->err, "checkpoint %s: %s has %lld values, the "
                              "model's %s has %zu (or a checksum error)",
                      c->path, name, (long long)n, t->name, t->n);
            return MT_EFORMAT;
        }
    }
    return 0;
}

static int read_state(hid_t f, mt_ckpt_state *st, uint64_t *optim_t)
{
    if (!mt__h5_exists(f, "/trainer"))
        return -1;
    hid_t g = H5Gopen2(f, "/trainer", H5P_DEFAULT);
    double v[17] = {0};
    const char *names[17] = {"step",    "epoch",       "position",
                             "seen",    "loss_sum",    "correct",
                             "no_accuracy", "seconds", "optimizer_t",
                             "ranks",   "best",        "es_best",
                             "es_wait", "es_epoch",    "lr_scale",
                             "plateau_best", "plateau_wait"};
    int rc = 0;
    for (int i = 0; i < 17; i++)
        rc |= mt__h5_attr_read_double(g, names[i], &v[i]);
    H5Gclose(g);
    st->step = (uint64_t)v[0];
    st->epoch = (uint64_t)v[1];
    st->position = (uint64_t)v[2];
    st->seen = (uint64_t)v[3];
    st->sums[0] = v[4];
    st->sums[1] = v[5];
    st->sums[2] = v[6];
    st->seconds = v[7];
    *optim_t = (uint64_t)v[8];
    st->ranks = (int)v[9];
    st->best = v[10];
    st->es_best = v[11];
    st->es_wait = (uint64_t)v[12];
    st->es_epoch = (uint64_t)v[13];
    st->lr_scale = v[14];
    st->pl_best = v[15];
    st->pl_wait = (uint64_t)v[16];
    return rc;
}

int mt_ckpt_load(const char *path, mt_model *m, mt_optim *o,
                 mt_ckpt_state *st, char **metrics, char **config,
                 char *err)
{
    if (metrics)
        *metrics = NULL;
    if (config)
        *config = NULL;
    hid_t f = open_checked(path, err);
    if (f < 0)
        return MT_EFORMAT;
    /* /model has the weights-file layout: one reader for both. */
    int rc = mt_weights_load(m, path, err);
    slot_ctx c = {f, path, m, o, err};
    if (rc == MT_OK && o)
        rc = mt_model_each_live_tensor(m, read_slots, &c);
    /* The caller's buffers for early stopping's weights survive the state
     * read below. */
    float *es_params = st->es_params, *es_state = st->es_state;
    uint64_t t = 0;
    if (rc == MT_OK && read_state(f, st, &t) != 0) {
        mt_seterr(err, "checkpoint %s: /trainer is missing or incomplete",
                  path);
        rc = MT_EFORMAT;
    }
    st->es_params = es_params;
    st->es_state = es_state;
    if (rc == MT_OK && es_params) {
        es_ctx e = {f, m, st, 0};
        rc = mt_model_each_live_tensor(m, read_es, &e);
        if (rc)
            mt_seterr(err, "checkpoint %s: /early_stopping cannot be read",
                      path);
    }
    if (rc == MT_OK && o)
        o->t = t;
    if (rc == MT_OK && metrics)
        *metrics = read_text(f, "/metrics");
    if (rc == MT_OK && config)
        *config = read_text(f, "/config");
    H5Fclose(f);
    return rc;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            printf("\\n");
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

typedef struct list_ctx {
    int json, first;
} list_ctx;

static herr_t list_one(hid_t obj, const char *name, const H5O_info_t *info,
                       void *user)
{
    list_ctx *c = user;
    if (info->type != H5O_TYPE_DATASET ||
        (strncmp(name, "model/", 6) && strncmp(name, "optimizer/", 10)))
        return 0;
    hid_t d = H5Dopen2(obj, name, H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t dims[8];
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    if (c->json) {
        printf("%s{\"name\":\"/%s\",\"shape\":[", c->first ? "" : ",", name);
        for (int i = 0; i < nd; i++)
            printf("%s%llu", i ? "," : "", (unsigned long long)dims[i]);
        printf("]}");
    } else {
        printf("  /%-40s (", name);
        for (int i = 0; i < nd; i++)
            printf("%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
        printf(")\n");
    }
    c->first = 0;
    H5Sclose(sp);
    H5Dclose(d);
    return 0;
}

int mt_ckpt_inspect(const char *path, int json, char *err)
{
    int rc = verify(path, err);
    if (rc)
        return rc;
    hid_t f = open_checked(path, err);
    mt_ckpt_state st = {0};
    uint64_t t = 0;
    read_state(f, &st, &t);
    char *version = NULL, *created = NULL;
    mt__h5_attr_read_string(f, "mpitrain_version", &version);
    mt__h5_attr_read_string(f, "created", &created);
    char *config = read_text(f, "/config"), *metrics = read_text(f,
                                                                  "/metrics");
    list_ctx c = {json, 1};
    if (json) {
        printf("{\"file\":");
        json_string(path);
        printf(",\"mpitrain_version\":");
        json_string(version);
        printf(",\"created\":");
        json_string(created);
        printf(",\"step\":%llu,\"epoch\":%llu,\"position\":%llu,"
               "\"ranks\":%d,\"tensors\":[",
               (unsigned long long)st.step, (unsigned long long)st.epoch,
               (unsigned long long)st.position, st.ranks);
        H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, list_one, &c,
                  H5O_INFO_BASIC);
        printf("],\"config\":");
        json_string(config);
        printf(",\"metrics\":");
        json_string(metrics);
        printf("}\n");
    } else {
        printf("%s: mpitrain %s checkpoint, created %s\n", path,
               version ? version : "?", created ? created : "?");
        printf("step %llu, epoch %llu (%llu samples into it), saved by %d "
               "rank(s)\ntensors:\n",
               (unsigned long long)st.step, (unsigned long long)st.epoch + 1,
               (unsigned long long)st.position, st.ranks);
        H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, list_one, &c,
                  H5O_INFO_BASIC);
        printf("config:\n%s", config ? config : "");
        printf("metrics:\n%s", metrics ? metrics : "");
    }
    free(version);
    free(created);
    free(config);
    free(metrics);
    H5Fclose(f);
    return MT_OK;
}
