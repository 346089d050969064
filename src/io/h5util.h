/* Private HDF5 helpers shared by the dataset, weights and checkpoint code. */
#ifndef MPITRAIN_IO_H5UTIL_H
#define MPITRAIN_IO_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* Turns off HDF5's own error stack printing: we report errors ourselves,
 * in one line that names the file and object. */
void mt__h5_quiet(void);

/* 1 if `name` (a path like "/x" or "/model/dense1") exists in the file. */
int mt__h5_exists(hid_t file, const char *name);

/* Scalar attributes on an object; return 0 or -1. */
int mt__h5_attr_write_double(hid_t obj, const char *name, double v);
int mt__h5_attr_read_double(hid_t obj, const char *name, double *v);
int mt__h5_attr_write_string(hid_t obj, const char *name, const char *s);
/* *s is malloc'd; the caller frees it. */
int mt__h5_attr_read_string(hid_t obj, const char *name, char **s);

/* A fixed-length string attribute: unlike variable-length strings it can
 * be written through parallel HDF5. */
int mt__h5_attr_write_fixed(hid_t obj, const char *name, const char *s);

/* Creates dataset `name` (and its parent groups) of `type` and shape dims,
 * chunked along the first dimension in chunks of about chunk_bytes with
 * the Fletcher-32 checksum filter, and writes rows [lo, hi) from
 * data (which points at row lo) with transfer property list dxpl. With
 * parallel HDF5 every rank calls it (lo == hi to write nothing). */
int mt__h5_write_checked(hid_t f, const char *name, hid_t type, int ndim,
                         const hsize_t *dims, size_t chunk_bytes, size_t lo,
                         size_t hi, hid_t dxpl, const void *data);
/* Rows of a chunk for write_checked: 1 .. dims[0]. */
size_t mt__h5_chunk_rows(hid_t type, int ndim, const hsize_t *dims,
                         size_t chunk_bytes);

/* Creates the groups of a path's parents ("/a/b/c" makes /a and /a/b). */
int mt__h5_make_parents(hid_t file, const char *path);

/* `tmp` is renamed to `final` after fsync of the file and its directory,
 * so a crash leaves either the old file or the complete new one. */
int mt__rename_durable(const char *tmp, const char *final);

#endif
