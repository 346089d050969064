/* Writing checkpoints collectively (parallel HDF5); see checkpoint.h.
 * Every rank creates the same objects (HDF5 metadata is collective); rank
 * 0 alone supplies the data of replicated tensors, the others select none
 * in the same collective write. */
#include "mpitrain/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/h5util.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"

typedef struct writer {
    MPI_Comm comm;
    hid_t f, dxpl;
    int rank, size;
    mt_model *m;
    const mt_optim *o;
    const mt_ckpt_state *st;
    /* 1: every rank holds every parameter and slot (allreduce, ring);
     * 0: each rank holds the slots of arena [o->base, o->base + o->n)
     * and the current parameters there (a parameter server's shard; rank
     * 0, always a worker, holds the running statistics). */
    int replicated;
    int ok;
} writer;

/* Chunk size of checkpoint datasets. Fletcher-32 runs per chunk, in the
 * rank that writes it; with chunks spread over the ranks the checksums are
 * computed in parallel. */
#define CHUNK_BYTES ((size_t)1 << 20)

typedef struct rows {
    size_t lo, hi;
} rows;

/* Rows of a dims-shaped array that this rank writes when every rank holds
 * it: a contiguous run of whole chunks. */
static rows chunk_share(const writer *w, hid_t type, int ndim,
                        const hsize_t *dims)
{
    size_t per = mt__h5_chunk_rows(type, ndim, dims, CHUNK_BYTES);
    size_t nchunks = (dims[0] + per - 1) / per, clo, chi;
    mt_dist_share(nchunks, w->rank, w->size, &clo, &chi);
    rows r = {clo * per, chi * per < dims[0] ? chi * per : dims[0]};
    r.hi = r.hi > r.lo ? r.hi : r.lo;
    return r;
}

/* All rows on rank 0, none elsewhere: data only rank 0 has. */
static rows rank0_rows(const writer *w, const hsize_t *dims)
{
    return (rows){0, w->rank == 0 ? dims[0] : 0};
}

/* Rows of parameter tensor t (or its slots) that this rank writes: with
 * shards, those inside its shard, which the plan cuts at row
 * boundaries. */
static rows param_rows(const writer *w, const mt_tensor *t,
                       const hsize_t *dims)
{
    if (w->replicated)
        return chunk_share(w, H5T_NATIVE_FLOAT, t->ndim, dims);
    size_t off = (size_t)(t->data - w->m->params), row = t->n / dims[0];
    size_t lo, hi;
    mt_optim_part(w->o, off, t->n, &lo, &hi);
    return (rows){lo / row, hi / row};
}

/* A chunked, checksummed dataset of `type`; this rank writes rows r of
 * it, from `data` (row 0 of the whole array). */
static int write_array(writer *w, const char *name, hid_t type, int ndim,
                       const hsize_t *dims, const void *data, rows r)
{
    size_t row = H5Tget_size(type);
    for (int i = 1; i < ndim; i++)
        row *= dims[i];
    return mt__h5_write_checked(w->f, name, type, ndim, dims, CHUNK_BYTES,
                                r.lo, r.hi, w->dxpl,
                                (const char *)data + r.lo * row);
}

static int write_text(writer *w, const char *name, const char *text)
{
    hsize_t n = strlen(text) + 1; /* with its NUL: never empty */
    /* Only rank 0's copy of the metrics log is real: it writes alone. */
    return write_array(w, name, H5T_NATIVE_UCHAR, 1, &n, text,
                       rank0_rows(w, &n));
}

/* Parameters and their copies: the rows this rank owns. Running
 * statistics: shared when replicated, else their owner's (a pipeline
 * stage's) or rank 0's. */
static rows tensor_rows(const writer *w, const mt_tensor *t, int is_state,
                        const hsize_t *dims)
{
    if (!is_state)
        return param_rows(w, t, dims);
    if (w->replicated)
        return chunk_share(w, H5T_NATIVE_FLOAT, t->ndim, dims);
    if (!w->st->state_own)
        return rank0_rows(w, dims);
    size_t off = (size_t)(t->data - w->m->state);
    int mine = off >= w->st->state_lo && off < w->st->state_hi;
    return (rows){0, mine ? dims[0] : 0};
}

static int write_tensor(const mt_layer *l, mt_tensor *t, int is_state,
                        void *user)
{
    writer *w = user;
    char name[160];
    hsize_t dims[4];
    for (int i = 0; i < t->ndim; i++)
        dims[i] = t->dims[i];
    rows r = tensor_rows(w, t, is_state, dims);
    snprintf(name, sizeof name, "/model/%s/%s", l->name, t->name);
    if (write_array(w, name, H5T_NATIVE_FLOAT, t->ndim, dims, t->data, r))
        return -1;
    if (w->st->es_params) { /* early stopping's best weights */
        const float *best =
            is_state ? w->st->es_state + (t->data - w->m->state)
                     : w->st->es_params + (t->data - w->m->params);
        snprintf(name, sizeof name, "/early_stopping/%s/%s", l->name,
                 t->name);
        if (write_array(w, name, H5T_NATIVE_FLOAT, t->ndim, dims, best, r))
            return -1;
    }
    if (is_state)
        return 0;
    /* Optimizer slots share the parameters' layout; this rank's slots
     * start at arena position o->base. */
    size_t off = (size_t)(t->data - w->m->params), row = t->n / dims[0];
    const float *slots[2] = {w->o->m, w->o->v};
    const char *names[2] = {"m", "v"};
    for (int k = 0; k < 2; k++) {
        if (!slots[k])
            continue;
        snprintf(name, sizeof name, "/optimizer/%s/%s/%s", l->name, t->name,
                 names[k]);
        /* The slots of row r.lo (none to write: any valid pointer). */
        const float *at =
            r.hi > r.lo ? slots[k] + (off + r.lo * row - w->o->base)
                        : slots[k];
        if (mt__h5_write_checked(w->f, name, H5T_NATIVE_FLOAT, t->ndim,
                                 dims, CHUNK_BYTES, r.lo, r.hi, w->dxpl,
                                 at))
            return -1;
    }
    return 0;
}

static int write_state(writer *w, const mt_ckpt_state *st)
{
    hid_t g = H5Gcreate2(w->f, "/trainer", H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    if (g < 0)
        return -1;
    struct {
        const char *name;
        double v;
    } attrs[] = {{"step", (double)st->step},
                 {"epoch", (double)st->epoch},
                 {"position", (double)st->position},
                 {"seen", (double)st->seen},
                 {"loss_sum", st->sums[0]},
                 {"correct", st->sums[1]},
                 {"no_accuracy", st->sums[2]},
                 {"seconds", st->seconds},
                 {"best", st->best},
                 {"es_best", st->es_best},
                 {"lr_scale", st->lr_scale},
                 {"plateau_best", st->pl_best},
                 {"plateau_wait", (double)st->pl_wait},
                 {"es_wait", (double)st->es_wait},
                 {"es_epoch", (double)st->es_epoch},
                 {"optimizer_t", (double)w->o->t},
                 {"ranks", (double)st->ranks}};
    int rc = 0;
    for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++)
        rc |= mt__h5_attr_write_double(g, attrs[i].name, attrs[i].v);
    H5Gclose(g);
    return rc;
}

static int write_root(writer *w, int complete)
{
    if (complete)
        return mt__h5_attr_write_double(w->f, "complete", 1.0);
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    /* Every rank writes the same value: rank 0's clock, broadcast. */
    MPI_Bcast(when, sizeof when, MPI_CHAR, 0, w->comm);
    return (mt__h5_attr_write_fixed(w->f, "format", MT_CKPT_FORMAT) ||
            mt__h5_attr_write_double(w->f, "format_version",
                                     MT_CKPT_VERSION) ||
            mt__h5_attr_write_fixed(w->f, "mpitrain_version",
                                    mt_version()) ||
            mt__h5_attr_write_fixed(w->f, "created", when))
               ? -1
               : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The file name in a pointer file (DIR/latest, DIR/best), or "". */
static void read_pointer(const char *dir, const char *which, char *name,
                         size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, which);
    name[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f && fgets(name, (int)len, f))
        name[strcspn(name, "\n")] = '\0';
    if (f)
        fclose(f);
}

/* Deletes all but the newest `keep` complete checkpoints of dir, and never
 * the best one. Names carry the step zero-padded: name order is step
 * order. */
static void prune(const char *dir, size_t keep)
{
    char best[256];
    read_pointer(dir, "best", best, sizeof best);
    DIR *d = opendir(dir);
    if (!d)
        return;
    char *names[4096];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "ckpt-", 5) == 0 && len > 8 &&
            strcmp(e->d_name + len - 3, ".h5") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        if (i + keep < n && names[i] && strcmp(names[i], best) != 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            unlink(path);
        }
        free(names[i]);
    }
}

/* Replaces DIR/<which> (latest, best) with the name of the new
 * checkpoint, atomically. */
static int point(const char *dir, const char *which, const char *name)
{
    char tmp[4096 + 32], final[4096 + 32];
    snprintf(tmp, sizeof tmp, "%s/%s.partial", dir, which);
    snprintf(final, sizeof final, "%s/%s", dir, which);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int bad = fprintf(f, "%s\n", name) < 0;
    bad |= fclose(f) != 0;
    if (bad || mt__rename_durable(tmp, final) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int write_file(writer *w, const mt_ckpt_state *st,
                      const char *config_text, const char *metrics)
{
    return write_root(w, 0) == 0 &&
           write_text(w, "/config", config_text ? config_text : "") == 0 &&
           mt_model_each_tensor(w->m, write_tensor, w) == 0 &&
           write_state(w, st) == 0 &&
           write_text(w, "/metrics", metrics ? metrics : "") == 0 &&
           H5Fflush(w->f, H5F_SCOPE_GLOBAL) >= 0 &&
           write_root(w, 1) == 0; /* complete: last of all */
}

int mt_ckpt_save(MPI_Comm comm, const char *dir, mt_model *m,
                 const mt_optim *o, const mt_ckpt_state *st,
                 const char *config_text, const char *metrics, size_t keep,
                 int is_best, char *err)
{
    mt__h5_quiet();
    writer w = {.comm = comm, .m = m, .o = o, .st = st, .ok = 1};
    MPI_Comm_rank(comm, &w.rank);
    MPI_Comm_size(comm, &w.size);
    /* Replicated only if every rank holds every slot. */
    w.replicated = o->base == 0 && o->n == m->n_params;
    MPI_Allreduce(MPI_IN_PLACE, &w.replicated, 1, MPI_INT, MPI_MIN, comm);
    char name[64], tmp[4096 + 16], final[4096];
    snprintf(name, sizeof name, "ckpt-%012llu.h5",
             (unsigned long long)st->step);
    snprintf(final, sizeof final, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.partial", final);
    int rc = w.rank == 0 ? mt_mkdirs(dir, err) : MT_OK;
    if ((rc = mt_dist_agree(comm, rc, err)))
        return rc;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    w.f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    w.dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(w.dxpl, H5FD_MPIO_COLLECTIVE);
    int ok = w.f >= 0 && write_file(&w, st, config_text, metrics);
    if (w.f >= 0)
        ok = H5Fclose(w.f) >= 0 && ok;
    H5Pclose(w.dxpl);
    if (!ok)
        mt_seterr(err, "checkpoint %s: write failed (disk full or quota?); "
                       "earlier checkpoints are kept",
                  final);
    rc = mt_dist_agree(comm, ok ? MT_OK : MT_EIO, err);
    if (rc == MT_OK && w.rank == 0) {
        if (mt__rename_durable(tmp, final) != 0 ||
            point(dir, "latest", name) != 0 ||
            (is_best && point(dir, "best", name) != 0)) {
            mt_seterr(err, "checkpoint %s: rename or latest pointer failed: "
                           "%s",
                      final, strerror(errno));
            rc = MT_EIO;
        } else {
            prune(dir, keep ? keep : 1);
        }
    }
    if (rc && w.rank == 0)
        unlink(tmp);
    return mt_dist_agree(comm, rc, err);
}
