/* Writing dataset files: as <out>.partial, renamed only once complete, so
 * an interrupted conversion never leaves a file that looks finished. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5util.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"

static int write_x(hid_t f, size_t n, mt_shape s, const uint8_t *x8,
                   const float *x32)
{
    hsize_t dims[4] = {n, s.c, s.h, s.w};
    int rank = (s.h == 1 && s.w == 1) ? 2 : 4;
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ty = x8 ? H5T_STD_U8LE : H5T_IEEE_F32LE;
    hid_t d = H5Dcreate2(f, "/x", ty, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    int rc = -1;
    if (d >= 0 &&
        H5Dwrite(d, x8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, H5S_ALL,
                 H5S_ALL, H5P_DEFAULT, x8 ? (const void *)x8 : x32) >= 0 &&
        mt__h5_attr_write_double(d, "scale", x8 ? 255.0 : 1.0) == 0)
        rc = 0;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return rc;
}

static int write_y(hid_t f, size_t n, const int32_t *labels,
                   size_t n_classes, const char *class_names)
{
    hsize_t dims[1] = {n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "/y", H5T_STD_I32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (d >= 0 &&
        H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                 labels) >= 0 &&
        mt__h5_attr_write_double(d, "n_classes", (double)n_classes) == 0 &&
        (!class_names ||
         mt__h5_attr_write_string(d, "class_names", class_names) == 0))
        rc = 0;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return rc;
}

int mt_dataset_write(const char *out, size_t n, mt_shape shape,
                     const uint8_t *x8, const float *x32,
                     const int32_t *labels, size_t n_classes,
                     const char *class_names, char *err)
{
    mt__h5_quiet();
    size_t len = strlen(out) + 16;
    char *tmp = malloc(len);
    if (!tmp)
        return MT_ENOMEM;
    snprintf(tmp, len, "%s.partial", out);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        mt_seterr(err, "%s: cannot create (directory missing or not "
                       "writable?)",
                  tmp);
        free(tmp);
        return MT_EIO;
    }
    int ok = write_x(f, n, shape, x8, x32) == 0 &&
             write_y(f, n, labels, n_classes, class_names) == 0;
    ok = (H5Fclose(f) >= 0) && ok;
    if (!ok || mt__rename_durable(tmp, out) != 0) {
        mt_seterr(err, "%s: write failed (disk full?); nothing written",
                  out);
        unlink(tmp);
        free(tmp);
        return MT_EIO;
    }
    free(tmp);
    return MT_OK;
}
