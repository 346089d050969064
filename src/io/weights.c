#include "mpitrain/io.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5util.h"
#include "mpitrain/core.h"

#define WEIGHTS_FORMAT "mpitrain-weights"
#define WEIGHTS_VERSION 1
#define WEIGHTS_CHUNK ((size_t)1 << 20) /* bytes per checksummed chunk */

int mt_mkdirs(const char *path, char *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            mt_seterr(err, "cannot create directory %s: %s", buf,
                      strerror(errno));
            return MT_EIO;
        }
        *p = c;
        if (!c)
            break;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(path, W_OK) != 0) {
        mt_seterr(err, "%s: not a writable directory", path);
        return MT_EIO;
    }
    return MT_OK;
}

static void tensor_path(char *buf, size_t len, const mt_layer *l,
                        const mt_tensor *t)
{
    snprintf(buf, len, "/model/%s/%s", l->name, t->name);
}

static int save_one(const mt_layer *l, mt_tensor *t, int is_state,
                    void *user)
{
    hid_t f = *(hid_t *)user;
    char name[96];
    tensor_path(name, sizeof name, l, t);
    hsize_t dims[4];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = t->dims[i];
    return mt__h5_write_checked(f, name, H5T_NATIVE_FLOAT, t->ndim, dims,
                                WEIGHTS_CHUNK, 0, dims[0], H5P_DEFAULT,
                                t->data);
}

/* The config as a 1-D byte array with its NUL, checksummed: the same
 * layout as in checkpoints (h5py: bytes(f["config"][:]).decode()). */
static int write_config(hid_t f, const char *text)
{
    hsize_t n = strlen(text) + 1;
    return mt__h5_write_checked(f, "/config", H5T_NATIVE_UCHAR, 1, &n,
                                WEIGHTS_CHUNK, 0, n, H5P_DEFAULT, text);
}

/* A new weights file with its attributes and config, or NULL-like < 0. */
static hid_t create_file(const char *tmp, const char *config_text)
{
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return f;
    int ok = mt__h5_attr_write_string(f, "format", WEIGHTS_FORMAT) == 0 &&
             mt__h5_attr_write_double(f, "format_version",
                                      WEIGHTS_VERSION) == 0 &&
             mt__h5_attr_write_string(f, "mpitrain_version",
                                      mt_version()) == 0 &&
             (!config_text || write_config(f, config_text) == 0);
    if (!ok) {
        H5Fclose(f);
        return -1;
    }
    return f;
}

int mt_weights_save_part(mt_model *m, const char *path,
                         const char *config_text, int first, int last,
                         char *err)
{
    mt__h5_quiet();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    hid_t f = first ? create_file(tmp, config_text)
                    : H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) {
        mt_seterr(err, "%s: cannot %s weights file", tmp,
                  first ? "create" : "open the");
        unlink(tmp);
        return MT_EIO;
    }
    int ok = mt_model_each_live_tensor(m, save_one, &f) == 0;
    ok = H5Fclose(f) >= 0 && ok;
    if (!ok || (last && mt__rename_durable(tmp, path) != 0)) {
        unlink(tmp);
        mt_seterr(err, "%s: writing weights failed (disk full?); no file "
                       "written",
                  path);
        return MT_EIO;
    }
    return MT_OK;
}

int mt_weights_save(mt_model *m, const char *path, const char *config_text,
                    char *err)
{
    return mt_weights_save_part(m, path, config_text, 1, 1, err);
}

typedef struct load_ctx {
    hid_t f;
    const char *path;
    char *err;
} load_ctx;

static void shape_str(char *buf, size_t len, int ndim, const hsize_t *d)
{
    size_t o = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", i ? ", " : "",
                              (unsigned long long)d[i]);
    if (o < len)
        snprintf(buf + o, len - o, ")");
}

static int load_one(const mt_layer *l, mt_tensor *t, int is_state,
                    void *user)
{
    load_ctx *c = user;
    char name[96];
    tensor_path(name, sizeof name, l, t);
    if (!mt__h5_exists(c->f, name)) {
        mt_seterr(c->err, "%s: no tensor %s (weights of another model?)",
                  c->path, name);
        return MT_EFORMAT;
    }
    hid_t d = H5Dopen2(c->f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t found[8], want[4];
    int nd = H5Sget_simple_extent_ndims(sp), rc = MT_OK;
    H5Sget_simple_extent_dims(sp, found, NULL);
    for (int i = 0; i < t->ndim; i++)
        want[i] = t->dims[i];
    if (nd != t->ndim || memcmp(found, want, (size_t)nd * sizeof *want)) {
        char a[64], b[64];
        shape_str(a, sizeof a, t->ndim, want);
        shape_str(b, sizeof b, nd, found);
        mt_seterr(c->err, "%s: tensor %s: model expects %s, file has %s",
                  c->path, name, a, b);
        rc = MT_EFORMAT;
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       t->data) < 0) {
        mt_seterr(c->err, "%s: tensor %s: read failed (checksum error?)",
                  c->path, name);
        rc = MT_EIO;
    }
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

int mt_weights_load(mt_model *m, const char *path, char *err)
{
    mt__h5_quiet();
    if (access(path, R_OK) != 0) {
        mt_seterr(err, "weights file %s: %s", path, strerror(errno));
        return MT_EIO;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mt_seterr(err, "weights file %s: not a readable HDF5 file", path);
        return MT_EFORMAT;
    }
    load_ctx c = {f, path, err};
    int rc = mt_model_each_live_tensor(m, load_one, &c);
    H5Fclose(f);
    return rc;
}
