/* The IDX format of MNIST and Fashion-MNIST (yann.lecun.com/exdb/mnist):
 * a big-endian magic 0x000008TD (T = 0x08 unsigned byte, D = number of
 * dimensions), D big-endian uint32 sizes, then the data. zlib's gzread
 * reads gzipped and plain files alike. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"

typedef struct idx_file {
    uint32_t ndim;
    uint32_t dims[4];
    uint8_t *data; /* product of dims bytes */
    size_t n;
} idx_file;

static uint32_t be32(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
           (uint32_t)b[2] << 8 | b[3];
}

static int read_idx(const char *path, idx_file *f, char *err)
{
    memset(f, 0, sizeof *f);
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        mt_seterr(err, "IDX file %s: cannot open", path);
        return MT_EIO;
    }
    uint8_t hdr[4];
    int rc = MT_EFORMAT;
    if (gzread(gz, hdr, 4) != 4 || hdr[0] != 0 || hdr[1] != 0 ||
        hdr[2] != 0x08 || hdr[3] < 1 || hdr[3] > 4) {
        mt_seterr(err, "IDX file %s: bad magic (want unsigned-byte IDX)",
                  path);
        goto out;
    }
    f->ndim = hdr[3];
    f->n = 1;
    for (uint32_t i = 0; i < f->ndim; i++) {
        uint8_t b[4];
        if (gzread(gz, b, 4) != 4) {
            mt_seterr(err, "IDX file %s: truncated header", path);
            goto out;
        }
        f->dims[i] = be32(b);
        f->n *= f->dims[i];
    }
    f->data = malloc(f->n ? f->n : 1);
    if (!f->data) {
        rc = MT_ENOMEM;
        mt_seterr(err, "IDX file %s: out of memory", path);
        goto out;
    }
    if ((size_t)gzread(gz, f->data, (unsigned)f->n) != f->n) {
        mt_seterr(err, "IDX file %s: truncated data (want %zu bytes)", path,
                  f->n);
        goto out;
    }
    rc = MT_OK;
out:
    gzclose(gz);
    if (rc)
        mt_free(f->data);
    return rc;
}

int mt_idx_convert(const char *images, const char *labels, const char *out,
                   const char *class_names, char *err)
{
    idx_file xi, yi;
    int rc = read_idx(images, &xi, err);
    if (rc)
        return rc;
    if ((rc = read_idx(labels, &yi, err))) {
        free(xi.data);
        return rc;
    }
    int32_t *y = NULL;
    rc = MT_EFORMAT;
    if (xi.ndim != 3 && xi.ndim != 2) {
        mt_seterr(err, "IDX file %s: images need 2 or 3 dimensions",
                  images);
        goto out;
    }
    if (yi.ndim != 1 || yi.dims[0] != xi.dims[0]) {
        mt_seterr(err, "IDX file %s: %u labels for %u images in %s", labels,
                  yi.ndim == 1 ? yi.dims[0] : 0, xi.dims[0], images);
        goto out;
    }
    size_t n = xi.dims[0], n_classes = 0;
    if (!(y = malloc(n * sizeof *y))) {
        rc = MT_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        y[i] = yi.data[i];
        n_classes = (size_t)y[i] + 1 > n_classes ? (size_t)y[i] + 1
                                                 : n_classes;
    }
    mt_shape s = xi.ndim == 3 ? (mt_shape){1, xi.dims[1], xi.dims[2]}
                              : (mt_shape){xi.dims[1], 1, 1};
    if (class_names) {
        size_t k = 1;
        for (const char *p = class_names; *p; p++)
            k += *p == ',';
        if (k < n_classes) {
            mt_seterr(err, "%zu class names for %zu classes in %s", k,
                      n_classes, labels);
            goto out;
        }
        n_classes = k;
    }
    rc = mt_dataset_write(out, n, s, xi.data, NULL, y, n_classes,
                          class_names, err);
out:
    free(y);
    free(xi.data);
    free(yi.data);
    return rc;
}
