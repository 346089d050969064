/* mpitrain data: HDF5 dataset files and the IDX (MNIST format) converter.
 *
 * A dataset file holds
 *   /x  uint8 or float32, (N, C, H, W) or (N, F); attribute "scale": the
 *       trainer divides values by it (default 255 for uint8, 1 for float)
 *   /y  int32 labels (N), attributes "n_classes" and "class_names"; or
 *       float32 targets (N, K). Optional for prediction inputs.
 * The file is read in row blocks of hyperslabs; samples stay in their
 * stored type (uint8 costs a quarter of float) until a batch is gathered. */
#ifndef MPITRAIN_DATA_H
#define MPITRAIN_DATA_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/layer.h"
#include "mpitrain/loss.h"

typedef struct mt_dataset {
    char *path;
    size_t n;        /* samples held here */
    size_t total;    /* rows of the file in use (all, or a limit) */
    size_t first;    /* file row of sample 0, when rows are a file slice */
    mt_shape shape;  /* per sample */
    float scale;     /* divide stored values by this */
    uint8_t *x8;     /* (n, size) when /x is uint8, else NULL */
    float *x32;      /* (n, size) when /x is float32, else NULL */
    int32_t *labels; /* (n) when /y is int32, else NULL */
    float *targets;  /* (n, n_targets) when /y is float32, else NULL */
    size_t n_targets;
    size_t n_classes;   /* labels: the n_classes attribute or max + 1 */
    char **class_names; /* (n_classes) or NULL */
    size_t cap;         /* samples the buffers hold (fetch reuses them) */
    /* A fetch into this dataset: its records going out and coming in,
     * kept for the next fetch (fresh pages for every window cost a page
     * fault per 4 KB of records). */
    char *xfer;
    size_t xfer_bytes;
} mt_dataset;

/* Reads a dataset file. Errors name the file and the object at fault:
 * missing file, missing /x or /y, wrong rank or type, N mismatch, label
 * out of range. */
int mt_dataset_load(mt_dataset *ds, const char *path, char *err);
/* Reads only file rows [lo, hi) (hi is clipped to the file's length): a
 * rank's share. n_classes without the attribute is the local max + 1;
 * callers that shard must agree on it across ranks. */
int mt_dataset_load_rows(mt_dataset *ds, const char *path, size_t lo,
                         size_t hi, char *err);
/* Reads rank `rank`'s share (mt_dist_share over `size`) of the first
 * `limit` rows of the file (0: all rows); ds->total is then the number of
 * rows shared. */
int mt_dataset_load_share(mt_dataset *ds, const char *path, int rank,
                          int size, size_t limit, char *err);
/* Collective over comm. Every rank holds a contiguous share of the file
 * rows (as mt_dist_share cuts `total`) in `local`, and asks for the samples
 * with file rows idx[0..n) in that order; `out` receives them (out->n = n),
 * fetched with MPI_Alltoallv from the ranks that own them. Without with_x
 * only their labels or targets travel and out has no x (a pipeline stage
 * that never reads inputs); each rank chooses for itself. */
int mt_dataset_fetch(const mt_dataset *local, MPI_Comm comm,
                     const size_t *idx, size_t n, int with_x,
                     mt_dataset *out, char *err);
void mt_dataset_free(mt_dataset *ds);
/* Bytes of one sample as stored and moved between ranks: its x row in
 * the stored type, then its label or targets. */
size_t mt_dataset_record_bytes(const mt_dataset *d);
/* mt_dataset_fetch in two halves, so that the records can travel while
 * the caller computes: _start exchanges the requests (blocking, small)
 * and starts the records' MPI_Ialltoallv; _finish waits and fills `out`
 * (which must stay untouched in between). Both collective, called by
 * every rank in the same order; _finish frees *fetch (NULL is fine). */
typedef struct mt_fetch mt_fetch;
int mt_dataset_fetch_start(const mt_dataset *local, MPI_Comm comm,
                           const size_t *idx, size_t n, int with_x,
                           mt_dataset *out, mt_fetch **fetch, char *err);
int mt_dataset_fetch_finish(mt_fetch *fetch, char *err);

/* Which training samples an epoch visits, in which order ([train]
 * sampling; src/data/sampler.c has the rules). Positions are 0..n-1;
 * oversampling and undersampling balance the classes of `labels`. */
typedef enum mt_sampling {
    MT_SAMPLING_NONE,
    MT_SAMPLING_OVER,
    MT_SAMPLING_UNDER
} mt_sampling;

typedef struct mt_sampler {
    mt_sampling mode;
    size_t n, K;       /* positions, classes */
    size_t n_epoch;    /* positions each epoch visits */
    size_t per_class;  /* visits of each class present per epoch */
    size_t largest;    /* samples of the largest class */
    size_t *by_class;  /* (n) positions grouped by class */
    size_t *start;     /* (K + 1) where each class begins in by_class */
    size_t *pool;      /* (n_epoch) the epoch's draws before shuffling */
    size_t *scratch;   /* permutations */
} mt_sampler;

/* labels (n) in [0, K) are needed unless mode is none (then NULL is
 * fine). Local: every rank builds the same sampler from the same labels. */
int mt_sampler_init(mt_sampler *s, mt_sampling mode, const int32_t *labels,
                    size_t n, size_t K, char *err);
/* out[0..n_epoch) = the positions of epoch `epoch`, shuffled. */
void mt_sampler_epoch(mt_sampler *s, uint64_t seed, uint64_t epoch,
                      size_t *out);
void mt_sampler_free(mt_sampler *s);

/* Copies samples idx[0..B) into x (B, size; NULL: not wanted) as scaled
 * float, and into labels (B) and/or targets (B, K) as the loss needs: an
 * int label becomes a one-hot row for sigmoid_bce/mse (or the value
 * itself when K is 1). */
void mt_dataset_gather(const mt_dataset *ds, const size_t *idx, size_t B,
                       float *x, int32_t *labels, float *targets, size_t K);

/* Checks that the dataset fits a model with input `in`, K outputs and the
 * given loss (and, if need_y, that it has labels or targets for it); the
 * message names the file. */
int mt_dataset_check(const mt_dataset *ds, mt_shape in, size_t K,
                     mt_loss_kind loss, int need_y, char *err);

/* Augmentation of one image sample x (C, H, W), in place: shifted by
 * (dx, dy) pixels with zeros coming in (a random crop of the image padded
 * by |shift|), then mirrored left-right if flip. tmp holds C H W floats. */
void mt_augment_image(float *x, mt_shape s, int dx, int dy, int flip,
                      float *tmp);
/* The augmentation of file row `row` in `epoch`: shifts in [-max_shift,
 * max_shift] and a flip (if allowed) drawn from the counter RNG keyed by
 * (seed, epoch, row), so a sample is augmented alike on any rank count. */
void mt_augment_draw(uint64_t seed, uint64_t epoch, uint64_t row,
                     int max_shift, int allow_flip, int *dx, int *dy,
                     int *flip);

/* Converts IDX images + labels (gzipped or not) into a dataset file at
 * `out`, written as out.partial and renamed when complete. class_names is
 * a comma-separated list or NULL. */
int mt_idx_convert(const char *images, const char *labels, const char *out,
                   const char *class_names, char *err);

/* Writes a dataset file from memory (used by the converter and tests):
 * x is uint8 (n, size) if x8 else float (n, size); y int32 labels. */
int mt_dataset_write(const char *out, size_t n, mt_shape shape,
                     const uint8_t *x8, const float *x32,
                     const int32_t *labels, size_t n_classes,
                     const char *class_names, char *err);

#endif
