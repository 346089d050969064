/* Moving samples to the rank that needs them. Each rank reads only its
 * share of the file (mt_dataset_load_rows); every epoch the shuffled
 * global batches decide which samples each rank needs, and
 * mt_dataset_fetch brings them over in one MPI_Alltoallv (started, and
 * finished later, when it is a prefetch). The learning problem stays that
 * of one rank reading the whole file. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/dist.h"

/* The rank whose share of `total` rows holds row i. */
static int owner(size_t i, size_t total, int size)
{
    int q = (int)(((unsigned __int128)i * (unsigned)size) / total);
    size_t lo, hi;
    for (;;) {
        mt_dist_share(total, q, size, &lo, &hi);
        if (i < lo)
            q--;
        else if (i >= hi)
            q++;
        else
            return q;
    }
}

/* Bytes of one sample record: its x row, then its label or targets. */
static size_t x_bytes(const mt_dataset *d)
{
    return mt_shape_size(d->shape) * (d->x8 ? 1 : sizeof(float));
}

static size_t y_bytes(const mt_dataset *d)
{
    return d->labels ? sizeof(int32_t)
                     : d->targets ? d->n_targets * sizeof(float) : 0;
}

size_t mt_dataset_record_bytes(const mt_dataset *d)
{
    return x_bytes(d) + y_bytes(d);
}

/* A record: the x row (with_x) then the label or targets. */
static void pack(const mt_dataset *d, size_t row, int with_x, char *rec)
{
    size_t xb = with_x ? x_bytes(d) : 0, yb = y_bytes(d);
    const char *x = d->x8 ? (const char *)d->x8 : (const char *)d->x32;
    memcpy(rec, x + row * xb, xb);
    if (d->labels)
        memcpy(rec + xb, d->labels + row, yb);
    else if (d->targets)
        memcpy(rec + xb, d->targets + row * d->n_targets, yb);
}

static void unpack(mt_dataset *d, size_t row, const char *rec)
{
    int with_x = d->x8 || d->x32;
    size_t xb = with_x ? x_bytes(d) : 0, yb = y_bytes(d);
    char *x = d->x8 ? (char *)d->x8 : (char *)d->x32;
    if (with_x)
        memcpy(x + row * xb, rec, xb);
    if (d->labels)
        memcpy(d->labels + row, rec + xb, yb);
    else if (d->targets)
        memcpy(d->targets + row * d->n_targets, rec + xb, yb);
}

/* An empty dataset shaped like `like`, with room for n samples (and
 * their x, with_x); buffers big enough from an earlier fetch are reused
 * (a fetch per epoch should not churn the heap). */
static int alloc_like(mt_dataset *out, const mt_dataset *like, size_t n,
                      int with_x)
{
    int x8 = with_x && like->x8, x32 = with_x && !like->x8;
    if (out->path && out->cap >= n && !out->x8 == !x8 &&
        !out->x32 == !x32 && !out->labels == !like->labels &&
        !out->targets == !like->targets &&
        mt_shape_size(out->shape) == mt_shape_size(like->shape) &&
        out->n_targets == like->n_targets) {
        out->n = n;
        out->n_classes = like->n_classes;
        return MT_OK;
    }
    mt_dataset_free(out);
    memset(out, 0, sizeof *out);
    out->shape = like->shape;
    out->scale = like->scale;
    out->n = out->cap = n;
    out->total = like->total;
    out->n_classes = like->n_classes;
    out->n_targets = like->n_targets;
    size_t S = mt_shape_size(like->shape);
    if (x8)
        out->x8 = mt_calloc(n * S, 1);
    else if (x32)
        out->x32 = mt_calloc(n * S, sizeof(float));
    if (like->labels)
        out->labels = mt_calloc(n, sizeof(int32_t));
    if (like->targets)
        out->targets = mt_calloc(n * like->n_targets, sizeof(float));
    out->path = strdup(like->path ? like->path : "");
    int ok = (x8 ? !!out->x8 : x32 ? !!out->x32 : 1) &&
             (!like->labels || out->labels) &&
             (!like->targets || out->targets) && out->path;
    return ok ? MT_OK : MT_ENOMEM;
}

typedef struct plan {
    int *scount, *sdispl, *rcount, *rdispl; /* (size) each */
    int *rec_of; /* (size): the record bytes each rank asks for */
    size_t *order; /* (n): request positions grouped by owner */
    uint64_t *want, *asked; /* rows we ask for, rows asked of us */
    char *sbuf, *rbuf; /* in out->xfer: records out, records in */
} plan;

static void plan_free(plan *p)
{
    free(p->scount); free(p->sdispl); free(p->rcount); free(p->rdispl);
    free(p->rec_of);
    free(p->order); free(p->want); free(p->asked);
    /* sbuf and rbuf live in the out dataset's xfer, kept */
}

/* out's transfer buffer, at least `bytes`, or NULL. Zeroed when new:
 * a record's padding goes out initialized. */
static char *xfer_buf(mt_dataset *out, size_t bytes)
{
    if (out->xfer_bytes < bytes || !out->xfer) {
        mt_free(out->xfer);
        out->xfer = mt_calloc(bytes ? bytes : 1, 1);
        out->xfer_bytes = out->xfer ? bytes : 0;
    }
    return out->xfer;
}

/* Counting sort of the requests by owner. */
static int plan_requests(plan *p, const mt_dataset *local, int size,
                         const size_t *idx, size_t n)
{
    p->scount = mt_calloc((size_t)size, sizeof(int));
    p->sdispl = mt_calloc((size_t)size, sizeof(int));
    p->rcount = mt_calloc((size_t)size, sizeof(int));
    p->rdispl = mt_calloc((size_t)size, sizeof(int));
    p->order = mt_calloc(n, sizeof(size_t));
    p->want = mt_calloc(n, sizeof(uint64_t));
    int *own = mt_calloc(n, sizeof(int));
    if (!p->scount || !p->sdispl || !p->rcount || !p->rdispl || !p->order ||
        !p->want || !own) {
        free(own);
        return MT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        p->scount[own[i] = owner(idx[i], local->total, size)]++;
    for (int q = 1; q < size; q++)
        p->sdispl[q] = p->sdispl[q - 1] + p->scount[q - 1];
    int *fill = mt_calloc((size_t)size, sizeof(int));
    if (!fill) {
        free(own);
        return MT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)(p->sdispl[own[i]] + fill[own[i]]++);
        p->order[at] = i;
        p->want[at] = idx[i];
    }
    free(fill);
    free(own);
    return MT_OK;
}

/* MPI counts and displacements are int: scale them to bytes, refusing
 * what would overflow. */
static int scale_counts(int *c, int *d, int size, size_t unit)
{
    for (int q = 0; q < size; q++) {
        if ((size_t)c[q] * unit > INT_MAX || (size_t)d[q] * unit > INT_MAX)
            return -1;
        c[q] = (int)((size_t)c[q] * unit);
        d[q] = (int)((size_t)d[q] * unit);
    }
    return 0;
}

static int copy_local(const mt_dataset *local, const size_t *idx, size_t n,
                      int with_x, mt_dataset *out, char *err)
{
    if (alloc_like(out, local, n, with_x) != MT_OK) {
        mt_seterr(err, "%s: out of memory for %zu samples", local->path, n);
        return MT_ENOMEM;
    }
    size_t xb = with_x ? x_bytes(local) : 0;
    char *dst = out->x8 ? (char *)out->x8 : (char *)out->x32;
    const char *src = local->x8 ? (const char *)local->x8
                                : (const char *)local->x32;
    for (size_t k = 0; k < n; k++) {
        size_t row = idx[k] - local->first;
        if (xb)
            memcpy(dst + k * xb, src + row * xb, xb);
        if (local->labels)
            out->labels[k] = local->labels[row];
        if (local->targets)
            memcpy(out->targets + k * local->n_targets,
                   local->targets + row * local->n_targets,
                   local->n_targets * sizeof(float));
    }
    return MT_OK;
}

struct mt_fetch {
    plan p;
    mt_dataset *out;
    size_t n, rec;
    MPI_Request req;
    int pending; /* the records' exchange is in flight */
};

/* Every local failure is agreed on before the next collective, so that no
 * rank is left waiting in an exchange the others skipped. The index
 * exchange is blocking (small); the records' exchange is blocking too, or
 * started and left in flight in f. */
/* What we send back, in bytes: the records each rank asked for, of the
 * size it asked for, in the layout its requests came in. -1 if an int
 * would overflow. */
static int send_bytes(plan *p, int size)
{
    size_t at = 0;
    for (int q = 0; q < size; q++) {
        size_t len = (size_t)p->rcount[q] * (size_t)p->rec_of[q];
        if (at > INT_MAX || len > INT_MAX)
            return -1;
        p->rdispl[q] = (int)at;
        p->rcount[q] = (int)len;
        at += len;
    }
    return 0;
}

static int start(mt_fetch *f, const mt_dataset *local, MPI_Comm comm,
                 const size_t *idx, size_t n, int with_x, mt_dataset *out,
                 int blocking, char *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    plan *p = &f->p;
    size_t full = mt_dataset_record_bytes(local), nasked = 0, out_bytes = 0;
    size_t rec = with_x ? full : full - x_bytes(local);
    f->out = out;
    f->n = n;
    f->rec = rec;
    int rc = plan_requests(p, local, size, idx, n);
    p->rec_of = rc ? NULL : mt_calloc((size_t)size, sizeof(int));
    if (rc || !p->rec_of) {
        mt_seterr(err, "%s: out of memory planning a fetch", local->path);
        rc = MT_ENOMEM;
    }
    if ((rc = mt_dist_agree(comm, rc, err)))
        return rc;
    int my_rec = (int)rec;
    if (MPI_Alltoall(p->scount, 1, MPI_INT, p->rcount, 1, MPI_INT, comm) !=
            MPI_SUCCESS ||
        MPI_Allgather(&my_rec, 1, MPI_INT, p->rec_of, 1, MPI_INT, comm) !=
            MPI_SUCCESS) {
        mt_seterr(err, "%s: MPI_Alltoall failed", local->path);
        return MT_EIO;
    }
    for (int q = 1; q < size; q++)
        p->rdispl[q] = p->rdispl[q - 1] + p->rcount[q - 1];
    nasked = (size_t)(p->rdispl[size - 1] + p->rcount[size - 1]);
    for (int q = 0; q < size; q++)
        out_bytes += (size_t)p->rcount[q] * (size_t)p->rec_of[q];
    p->asked = mt_calloc(nasked, sizeof(uint64_t));
    rc = p->asked ? alloc_like(out, local, n, with_x) : MT_ENOMEM;
    /* After alloc_like, which may free out and its buffer. The records
     * coming in start past a gap: with nothing to send, equal pointers
     * would be MPI_IN_PLACE to Open MPI's MPI_Ialltoallv (libnbc), which
     * then hung waiting for records no rank sent. */
    size_t in_at = (out_bytes / 64 + 1) * 64;
    p->sbuf = rc ? NULL : xfer_buf(out, in_at + n * rec);
    p->rbuf = p->sbuf ? p->sbuf + in_at : NULL;
    rc = rc ? rc : p->sbuf ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "%s: out of memory fetching %zu samples",
                  local->path, n);
    if ((rc = mt_dist_agree(comm, rc, err)))
        return rc;
    if (MPI_Alltoallv(p->want, p->scount, p->sdispl, MPI_UINT64_T, p->asked,
                      p->rcount, p->rdispl, MPI_UINT64_T,
                      comm) != MPI_SUCCESS) {
        mt_seterr(err, "%s: MPI_Alltoallv of sample indices failed",
                  local->path);
        return MT_EIO;
    }
    char *at = p->sbuf;
    for (int q = 0; q < size; q++)
        for (int i = 0; i < p->rcount[q]; i++, at += p->rec_of[q])
            pack(local, (size_t)p->asked[p->rdispl[q] + i] - local->first,
                 p->rec_of[q] == (int)full, at);
    /* The records travel back the opposite way: what we were asked for
     * goes out with the layout in which the requests came in. */
    if (send_bytes(p, size) || scale_counts(p->scount, p->sdispl, size, rec)) {
        mt_seterr(err, "%s: more than 2 GiB of samples between two ranks",
                  local->path);
        rc = MT_EINVAL;
    }
    if ((rc = mt_dist_agree(comm, rc, err)))
        return rc;
    /* Waited for at once, the blocking call is the cheaper one. */
    if (blocking ? MPI_Alltoallv(p->sbuf, p->rcount, p->rdispl, MPI_BYTE,
                                 p->rbuf, p->scount, p->sdispl, MPI_BYTE,
                                 comm)
                 : MPI_Ialltoallv(p->sbuf, p->rcount, p->rdispl, MPI_BYTE,
                                  p->rbuf, p->scount, p->sdispl, MPI_BYTE,
                                  comm, &f->req)) {
        mt_seterr(err, "%s: MPI_Alltoallv of samples failed", local->path);
        return MT_EIO;
    }
    f->pending = !blocking;
    return MT_OK;
}

/* A fetch object, started (records in flight unless blocking). */
static int begin(const mt_dataset *local, MPI_Comm comm, const size_t *idx,
                 size_t n, int with_x, mt_dataset *out, int blocking,
                 mt_fetch **fetch, char *err)
{
    mt_fetch *f = mt_calloc(1, sizeof *f);
    int rc = f ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "%s: out of memory planning a fetch", local->path);
    if ((rc = mt_dist_agree(comm, rc, err)) == MT_OK)
        rc = start(f, local, comm, idx, n, with_x, out, blocking, err);
    if (rc) {
        if (f)
            plan_free(&f->p);
        free(f);
        f = NULL;
    }
    *fetch = f;
    return rc;
}

int mt_dataset_fetch_start(const mt_dataset *local, MPI_Comm comm,
                           const size_t *idx, size_t n, int with_x,
                           mt_dataset *out, mt_fetch **fetch, char *err)
{
    return begin(local, comm, idx, n, with_x, out, 0, fetch, err);
}

int mt_dataset_fetch_finish(mt_fetch *f, char *err)
{
    if (!f)
        return MT_OK;
    int rc = MT_OK;
    if (f->pending && MPI_Wait(&f->req, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        mt_seterr(err, "%s: MPI_Ialltoallv of samples failed",
                  f->out->path);
        rc = MT_EIO;
    }
    for (size_t k = 0; rc == MT_OK && k < f->n; k++)
        unpack(f->out, f->p.order[k], f->p.rbuf + k * f->rec);
    plan_free(&f->p);
    free(f);
    return rc;
}

int mt_dataset_fetch(const mt_dataset *local, MPI_Comm comm,
                     const size_t *idx, size_t n, int with_x,
                     mt_dataset *out, char *err)
{
    int size;
    MPI_Comm_size(comm, &size);
    if (size == 1) /* everything is local: copy, without the buffers */
        return copy_local(local, idx, n, with_x, out, err);
    mt_fetch *f;
    int rc = begin(local, comm, idx, n, with_x, out, 1, &f, err);
    return rc ? rc : mt_dataset_fetch_finish(f, err);
}
