#include "mpitrain/data.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/simd.h"
#include "io/h5util.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"

/* Rows per hyperslab read: bounds HDF5's conversion buffers. */
#define ROW_BLOCK 8192

void mt_dataset_free(mt_dataset *ds)
{
    mt_free(ds->path);
    mt_free(ds->x8);
    mt_free(ds->x32);
    mt_free(ds->labels);
    mt_free(ds->targets);
    mt_free(ds->xfer);
    if (ds->class_names) {
        for (size_t i = 0; i < ds->n_classes; i++)
            free(ds->class_names[i]);
        mt_free(ds->class_names);
    }
}

/* Reads file rows [first, first + N) of a dataset, row_bytes each, in
 * hyperslabs of ROW_BLOCK rows. */
static herr_t read_rows(hid_t d, hid_t memtype, char *buf, size_t first,
                        size_t N, size_t row_bytes, int rank,
                        const hsize_t *dims)
{
    hid_t fs = H5Dget_space(d);
    herr_t rc = 0;
    for (size_t r0 = 0; r0 < N && rc >= 0; r0 += ROW_BLOCK) {
        size_t cnt = N - r0 < ROW_BLOCK ? N - r0 : ROW_BLOCK;
        hsize_t start[4] = {first + r0, 0, 0, 0}, count[4];
        for (int i = 0; i < rank; i++)
            count[i] = i == 0 ? cnt : dims[i];
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(rank, count, NULL);
        rc = H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf + r0 * row_bytes);
        H5Sclose(ms);
    }
    H5Sclose(fs);
    return rc;
}

/* A NaN or Inf in the data would surface much later as a NaN loss with no
 * hint of where it came from: name it now. */
static int check_finite(const char *path, const char *name, const float *v,
                        size_t first, size_t rows, size_t row, char *err)
{
    for (size_t i = 0; i < rows * row; i++)
        if (!isfinite(v[i])) {
            mt_seterr(err, "%s: %s sample %zu, element %zu is %s", path,
                      name, first + i / row, i % row,
                      isnan(v[i]) ? "NaN" : "Inf");
            return MT_EFORMAT;
        }
    return MT_OK;
}

static int load_x(mt_dataset *ds, hid_t f, size_t lo, size_t hi, char *err)
{
    hid_t d = H5Dopen2(f, "/x", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    hsize_t dims[4] = {0};
    int rank = H5Sget_simple_extent_ndims(sp), rc = MT_EFORMAT;
    if (rank != 2 && rank != 4) {
        mt_seterr(err, "%s: /x must be (N, C, H, W) or (N, F), has %d "
                       "dimensions", ds->path, rank);
        goto out;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    ds->total = dims[0];
    ds->first = lo < ds->total ? lo : ds->total;
    ds->n = (hi < ds->total ? hi : ds->total) - ds->first;
    ds->shape = rank == 4 ? (mt_shape){dims[1], dims[2], dims[3]}
                          : (mt_shape){dims[1], 1, 1};
    size_t row = mt_shape_size(ds->shape);
    H5T_class_t cls = H5Tget_class(ty);
    int is_u8 = cls == H5T_INTEGER && H5Tget_size(ty) == 1 &&
                H5Tget_sign(ty) == H5T_SGN_NONE;
    if (!is_u8 && cls != H5T_FLOAT) {
        mt_seterr(err, "%s: /x must be uint8 or float32", ds->path);
        goto out;
    }
    ds->cap = ds->n;
    if (ds->total == 0 || row == 0) {
        mt_seterr(err, "%s: /x is empty", ds->path);
        goto out;
    }
    double scale = is_u8 ? 255.0 : 1.0;
    mt__h5_attr_read_double(d, "scale", &scale);
    if (!(scale > 0.0)) {
        mt_seterr(err, "%s: /x attribute scale must be > 0", ds->path);
        goto out;
    }
    ds->scale = (float)scale;
    void *buf = is_u8 ? (void *)(ds->x8 = mt_calloc(ds->n, row))
                      : (void *)(ds->x32 = mt_calloc(ds->n * row, 4));
    if (!buf) {
        mt_seterr(err, "%s: out of memory for /x", ds->path);
        rc = MT_ENOMEM;
        goto out;
    }
    if (read_rows(d, is_u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, buf,
                  ds->first, ds->n, row * (is_u8 ? 1 : 4), rank, dims) < 0) {
        mt_seterr(err, "%s: cannot read /x", ds->path);
        rc = MT_EIO;
        goto out;
    }
    rc = ds->x32 ? check_finite(ds->path, "/x", ds->x32, ds->first, ds->n,
                                row, err)
                 : MT_OK;
out:
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int split_names(mt_dataset *ds, char *csv, char *err)
{
    size_t k = 1;
    for (char *p = csv; *p; p++)
        k += *p == ',';
    if (k != ds->n_classes) {
        mt_seterr(err, "%s: /y has %zu class names for %zu classes",
                  ds->path, k, ds->n_classes);
        return MT_EFORMAT;
    }
    ds->class_names = mt_calloc(k, sizeof(char *));
    if (!ds->class_names)
        return MT_ENOMEM;
    char *save = NULL, *tok = strtok_r(csv, ",", &save);
    for (size_t i = 0; i < k; i++, tok = strtok_r(NULL, ",", &save))
        ds->class_names[i] = strdup(tok ? tok : "");
    return MT_OK;
}

static int check_labels(mt_dataset *ds, hid_t d, char *err)
{
    int32_t max = -1;
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->labels[i] < 0) {
            mt_seterr(err, "%s: /y[%zu] = %d is negative", ds->path,
                      ds->first + i, ds->labels[i]);
            return MT_EFORMAT;
        }
        max = ds->labels[i] > max ? ds->labels[i] : max;
    }
    double nc = 0;
    if (mt__h5_attr_read_double(d, "n_classes", &nc) == 0) {
        ds->n_classes = (size_t)nc;
        for (size_t i = 0; i < ds->n; i++)
            if ((size_t)ds->labels[i] >= ds->n_classes) {
                mt_seterr(err, "%s: /y[%zu] = %d is out of range for "
                               "n_classes = %zu",
                          ds->path, ds->first + i, ds->labels[i],
                          ds->n_classes);
                return MT_EFORMAT;
            }
    } else {
        ds->n_classes = (size_t)max + 1;
    }
    char *csv = NULL;
    int rc = MT_OK;
    if (mt__h5_attr_read_string(d, "class_names", &csv) == 0)
        rc = split_names(ds, csv, err);
    free(csv);
    return rc;
}

static int load_y(mt_dataset *ds, hid_t f, char *err)
{
    hid_t d = H5Dopen2(f, "/y", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    hsize_t dims[2] = {0, 0};
    int rank = H5Sget_simple_extent_ndims(sp), rc = MT_EFORMAT;
    H5T_class_t cls = H5Tget_class(ty);
    if (rank > 2 || rank < 1) {
        mt_seterr(err, "%s: /y must be (N) labels or (N, K) targets",
                  ds->path);
        goto out;
    }
    H5Sget_simple_extent_dims(sp, dims, NULL);
    if (dims[0] != ds->total) {
        mt_seterr(err, "%s: /y has %llu rows but /x has %zu", ds->path,
                  (unsigned long long)dims[0], ds->total);
        goto out;
    }
    if (rank == 1 && cls == H5T_INTEGER) {
        ds->labels = mt_calloc(ds->n, sizeof(int32_t));
        if (!ds->labels ||
            read_rows(d, H5T_NATIVE_INT32, (char *)ds->labels, ds->first,
                      ds->n, 4, 1, dims) < 0) {
            mt_seterr(err, "%s: cannot read /y", ds->path);
            rc = MT_EIO;
            goto out;
        }
        rc = check_labels(ds, d, err);
    } else if (cls == H5T_FLOAT) {
        ds->n_targets = rank == 2 ? dims[1] : 1;
        ds->targets = mt_calloc(ds->n * ds->n_targets, sizeof(float));
        if (!ds->targets ||
            read_rows(d, H5T_NATIVE_FLOAT, (char *)ds->targets, ds->first,
                      ds->n, ds->n_targets * 4, rank, dims) < 0) {
            mt_seterr(err, "%s: cannot read /y", ds->path);
            rc = MT_EIO;
            goto out;
        }
        rc = check_finite(ds->path, "/y", ds->targets, ds->first, ds->n,
                          ds->n_targets, err);
    } else {
        mt_seterr(err, "%s: /y must be int labels (N) or float targets",
                  ds->path);
    }
out:
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

int mt_dataset_load(mt_dataset *ds, const char *path, char *err)
{
    return mt_dataset_load_rows(ds, path, 0, SIZE_MAX, err);
}

int mt_dataset_load_share(mt_dataset *ds, const char *path, int rank,
                          int size, size_t limit, char *err)
{
    /* The share depends on the row count: read it, then the rows. */
    mt__h5_quiet();
    hsize_t dims[4] = {0};
    hid_t f = access(path, R_OK) == 0
                  ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)
                  : H5I_INVALID_HID;
    if (f >= 0 && mt__h5_exists(f, "/x")) {
        hid_t d = H5Dopen2(f, "/x", H5P_DEFAULT), sp = H5Dget_space(d);
        if (H5Sget_simple_extent_ndims(sp) <= 4)
            H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        H5Dclose(d);
    }
    if (f >= 0)
        H5Fclose(f);
    size_t total = dims[0], lo, hi;
    if (limit && limit < total)
        total = limit;
    mt_dist_share(total, rank, size, &lo, &hi);
    /* A file that cannot be read fails here with the usual message. */
    int rc = mt_dataset_load_rows(ds, path, lo, hi, err);
    if (rc == MT_OK)
        ds->total = total;
    return rc;
}

int mt_dataset_load_rows(mt_dataset *ds, const char *path, size_t lo,
                         size_t hi, char *err)
{
    memset(ds, 0, sizeof *ds);
    mt__h5_quiet();
    ds->path = strdup(path);
    if (!ds->path)
        return MT_ENOMEM;
    if (access(path, R_OK) != 0) {
        mt_seterr(err, "data file %s: %s", path, strerror(errno));
        mt_dataset_free(ds);
        return MT_EIO;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mt_seterr(err, "data file %s: not a readable HDF5 file", path);
        mt_dataset_free(ds);
        return MT_EFORMAT;
    }
    int rc = MT_EFORMAT;
    if (!mt__h5_exists(f, "/x"))
        mt_seterr(err, "%s: no dataset /x (the inputs)", path);
    else if ((rc = load_x(ds, f, lo, hi, err)) == MT_OK &&
             mt__h5_exists(f, "/y"))
        rc = load_y(ds, f, err);
    H5Fclose(f);
    if (rc)
        mt_dataset_free(ds);
    return rc;
}

int mt_dataset_check(const mt_dataset *ds, mt_shape in, size_t K,
                     mt_loss_kind loss, int need_y, char *err)
{
    if (mt_shape_size(ds->shape) != mt_shape_size(in) ||
        (in.h > 1 && (ds->shape.h != in.h || ds->shape.w != in.w))) {
        mt_seterr(err, "%s: samples are %zux%zux%zu but the model takes "
                       "%zux%zux%zu",
                  ds->path, ds->shape.c, ds->shape.h, ds->shape.w, in.c,
                  in.h, in.w);
        return MT_EINVAL;
    }
    if (!need_y)
        return MT_OK;
    if (!ds->labels && !ds->targets) {
        mt_seterr(err, "%s: no dataset /y (labels or targets)", ds->path);
        return MT_EINVAL;
    }
    if (loss == MT_LOSS_SOFTMAX_CE && !ds->labels) {
        mt_seterr(err, "%s: softmax_ce needs int labels in /y", ds->path);
        return MT_EINVAL;
    }
    if (ds->labels && ds->n_classes > K && !(K == 1 && ds->n_classes <= 2)) {
        mt_seterr(err, "%s: labels have %zu classes but the model has %zu "
                       "outputs",
                  ds->path, ds->n_classes, K);
        return MT_EINVAL;
    }
    if (ds->targets && ds->n_targets != K) {
        mt_seterr(err, "%s: /y has %zu targets per sample but the model "
                       "has %zu outputs",
                  ds->path, ds->n_targets, K);
        return MT_EINVAL;
    }
    return MT_OK;
}

MT_VECTOR(, mt_dataset_gather,
          (const mt_dataset *ds, const size_t *idx, size_t B, float *x,
           int32_t *labels, float *targets, size_t K),
          (ds, idx, B, x, labels, targets, K))
{
    size_t S = mt_shape_size(ds->shape);
    float inv = 1.0f / ds->scale;
    for (size_t n = 0; n < B; n++) {
        size_t i = idx[n];
        float *xn = x ? x + n * S : NULL;
        if (xn && ds->x8)
            for (size_t j = 0; j < S; j++)
                xn[j] = (float)ds->x8[i * S + j] * inv;
        else if (xn)
            for (size_t j = 0; j < S; j++)
                xn[j] = ds->x32[i * S + j] * inv;
        if (ds->labels && labels)
            labels[n] = ds->labels[i];
        if (!targets)
            continue;
        if (ds->targets) {
            memcpy(targets + n * K, ds->targets + i * K, K * sizeof(float));
        } else if (K == 1) {
            targets[n] = (float)ds->labels[i];
        } else {
            for (size_t k = 0; k < K; k++)
                targets[n * K + k] = (size_t)ds->labels[i] == k;
        }
    }
}
