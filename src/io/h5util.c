#include "io/h5util.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void mt__h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int mt__h5_exists(hid_t file, const char *name)
{
    /* H5Lexists needs every parent to exist: walk the path. */
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1;; p++) {
        char c = *p;
        if (c == '/' || c == '\0') {
            *p = '\0';
            if (H5Lexists(file, buf, H5P_DEFAULT) <= 0)
                return 0;
            if (c == '\0')
                return 1;
            *p = c;
        }
    }
}

int mt__h5_attr_write_double(hid_t obj, const char *name, double v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT,
                         H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

int mt__h5_attr_read_double(hid_t obj, const char *name, double *v)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_DOUBLE, v);
    if (a >= 0)
        H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

int mt__h5_attr_write_string(hid_t obj, const char *name, const char *s)
{
    /* Variable-length UTF-8: what h5py writes and reads as str. */
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, &s);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

int mt__h5_attr_write_fixed(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, s);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

int mt__h5_attr_read_string(hid_t obj, const char *name, char **s)
{
    *s = NULL;
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            /* HDF5 converts no character sets: read in the file's. */
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, H5T_VARIABLE);
            H5Tset_cset(t, H5Tget_cset(ft));
            char *v = NULL;
            if (H5Aread(a, t, &v) >= 0 && v) {
                *s = strdup(v);
                H5free_memory(v);
                rc = *s ? 0 : -1;
            }
            H5Tclose(t);
        } else {
            size_t n = H5Tget_size(ft);
            *s = calloc(n + 1, 1);
            if (*s && H5Aread(a, ft, *s) >= 0)
                rc = 0;
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    if (rc) {
        free(*s);
        *s = NULL;
    }
    return rc;
}

int mt__h5_make_parents(hid_t file, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(file, buf, H5P_DEFAULT, H5P_DEFAULT,
                                 H5P_DEFAULT);
            if (g < 0)
                return -1;
            H5Gclose(g);
        }
        *p = '/';
    }
    return 0;
}

size_t mt__h5_chunk_rows(hid_t type, int ndim, const hsize_t *dims,
                         size_t chunk_bytes)
{
    size_t row = H5Tget_size(type);
    for (int i = 1; i < ndim; i++)
        row *= dims[i];
    size_t rows = chunk_bytes / row ? chunk_bytes / row : 1;
    return rows < dims[0] ? rows : (size_t)dims[0];
}

int mt__h5_write_checked(hid_t f, const char *name, hid_t type, int ndim,
                         const hsize_t *dims, size_t chunk_bytes, size_t lo,
                         size_t hi, hid_t dxpl, const void *data)
{
    if (mt__h5_make_parents(f, name) != 0)
        return -1;
    hsize_t chunk[8], start[8] = {0}, count[8];
    for (int i = 0; i < ndim; i++)
        chunk[i] = count[i] = dims[i];
    chunk[0] = mt__h5_chunk_rows(type, ndim, dims, chunk_bytes);
    start[0] = lo;
    count[0] = hi - lo;
    hid_t fs = H5Screate_simple(ndim, dims, NULL);
    hid_t ms = H5Screate_simple(ndim, hi > lo ? count : dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_fletcher32(dcpl);
    hid_t d = H5Dcreate2(f, name, type, fs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (hi > lo) {
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    } else {
        H5Sselect_none(fs);
        H5Sselect_none(ms);
    }
    int rc = (d >= 0 && H5Dwrite(d, type, ms, fs, dxpl, data) >= 0) ? 0 : -1;
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mt__rename_durable(const char *tmp, const char *final)
{
    if (fsync_path(tmp, O_RDONLY) != 0)
        return -1;
    if (rename(tmp, final) != 0)
        return -1;
    char *dup = strdup(final);
    if (!dup)
        return -1;
    /* The rename itself is durable only once the directory is synced. */
    int rc = fsync_path(dirname(dup), O_RDONLY | O_DIRECTORY);
    free(dup);
    return rc;
}
