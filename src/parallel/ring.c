/* Ring allreduce; the algorithm and a worked example are in sync.h.
 * P = ranks, r = this rank, block b = elements [n b / P, n (b + 1) / P). */
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "core/simd.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/sync.h"

uint16_t mt_bf16_from_float(float f) { return mt__bf16_round(f); }
float mt_bf16_to_float(uint16_t h) { return mt__bf16_widen(h); }

MT_VECTOR(static, add_bf16,
          (float *restrict dst, const uint16_t *restrict src, size_t n),
          (dst, src, n))
{
    for (size_t i = 0; i < n; i++)
        dst[i] += mt__bf16_widen(src[i]);
}

MT_VECTOR(static, unpack_bf16,
          (float *restrict dst, const uint16_t *restrict src, size_t n),
          (dst, src, n))
{
    for (size_t i = 0; i < n; i++)
        dst[i] = mt__bf16_widen(src[i]);
}

MT_VECTOR(static, add_floats,
          (float *restrict dst, const float *restrict src, size_t n),
          (dst, src, n))
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static int mod(int a, int p) { return ((a % p) + p) % p; }

static void block(const mt_ring *r, int b, size_t *lo, size_t *hi)
{
    mt_dist_share(r->n, b, r->size, lo, hi);
}

static size_t nsegs(const mt_ring *r, size_t len)
{
    return (len + r->seg - 1) / r->seg;
}

void mt_ring_free(mt_ring *r)
{
    mt_free(r->tmp);
    mt_free(r->send16);
    mt_free(r->recv16);
    mt_free(r->req);
}

int mt_ring_init(mt_ring *r, MPI_Comm comm, size_t max_n, size_t seg_bytes,
                 mt_compress compress, int tag, char *err)
{
    memset(r, 0, sizeof *r);
    r->comm = comm;
    r->tag = tag;
    r->compress = compress;
    MPI_Comm_rank(comm, &r->rank);
    MPI_Comm_size(comm, &r->size);
    r->seg = seg_bytes / sizeof(float);
    r->seg = r->seg ? r->seg : 1;
    r->cap = max_n / (size_t)r->size + 1;
    r->max_seg = nsegs(r, r->cap) + 1;
    r->tmp = mt_calloc(r->cap, sizeof(float));
    r->req = mt_calloc(2 * r->max_seg, sizeof(MPI_Request));
    if (compress == MT_COMPRESS_BF16) {
        r->send16 = mt_calloc(r->cap, sizeof(uint16_t));
        r->recv16 = mt_calloc(r->cap, sizeof(uint16_t));
    }
    if (!r->tmp || !r->req ||
        (compress == MT_COMPRESS_BF16 && (!r->send16 || !r->recv16))) {
        mt_ring_free(r);
        mt_seterr(err, "ring: out of memory for %zu floats", r->cap);
        return MT_ENOMEM;
    }
    r->step = r->last = 0;
    return MT_OK;
}

/* Blocks sent and received at a step (reduce-scatter, then all-gather). */
static void step_blocks(const mt_ring *r, int s, int *sb, int *rb)
{
    int P = r->size;
    if (s < P - 1) {
        *sb = mod(r->rank - s, P);
        *rb = mod(r->rank - s - 1, P);
    } else {
        int g = s - (P - 1);
        *sb = mod(r->rank + 1 - g, P);
        *rb = mod(r->rank - g, P);
    }
}

/* bf16 leaves every rank with the rounded value of the owned block, the
 * owner included, so that all ranks end with identical sums. */
MT_VECTOR(static, round_block,
          (float *v, size_t n),
          (v, n))
{
    for (size_t i = 0; i < n; i++)
        v[i] = mt__bf16_widen(mt__bf16_round(v[i]));
}

static int post(mt_ring *r, char *err)
{
    int sb, rb, P = r->size;
    size_t slo, shi, rlo, rhi;
    step_blocks(r, r->step, &sb, &rb);
    block(r, sb, &slo, &shi);
    block(r, rb, &rlo, &rhi);
    int gather = r->step >= P - 1, bf16 = r->wire16;
    if (bf16 && r->step == P - 1)
        round_block(r->buf + slo, shi - slo);
    size_t ns = nsegs(r, shi - slo), nr = nsegs(r, rhi - rlo);
    if (bf16)
        mt__bf16_pack(r->send16, r->buf + slo, shi - slo);
    int left = mod(r->rank - 1, P), right = mod(r->rank + 1, P), rc = 0;
    for (size_t k = 0; k < nr; k++) {
        size_t o = k * r->seg, len = rhi - rlo - o < r->seg ? rhi - rlo - o
                                                              : r->seg;
        void *dst = bf16     ? (void *)(r->recv16 + o)
                    : gather ? (void *)(r->buf + rlo + o)
                             : (void *)(r->tmp + o);
        rc |= MPI_Irecv(dst, (int)len, bf16 ? MPI_UINT16_T : MPI_FLOAT, left,
                        r->tag, r->comm, &r->req[k]);
    }
    for (size_t k = 0; k < ns; k++) {
        size_t o = k * r->seg, len = shi - slo - o < r->seg ? shi - slo - o
                                                              : r->seg;
        const void *src = bf16 ? (const void *)(r->send16 + o)
                               : (const void *)(r->buf + slo + o);
        rc |= MPI_Isend(src, (int)len, bf16 ? MPI_UINT16_T : MPI_FLOAT, right,
                        r->tag, r->comm, &r->req[nr + k]);
    }
    if (rc != MPI_SUCCESS) {
        mt_seterr(err, "ring: posting step %d failed", r->step);
        return MT_EIO;
    }
    r->nseg = nr;
    r->next = 0;
    r->posted = (int)(ns + nr);
    return MT_OK;
}

/* Folds received segment k of this step into buf. */
static void absorb(mt_ring *r, size_t k)
{
    int sb, rb;
    size_t rlo, rhi;
    step_blocks(r, r->step, &sb, &rb);
    block(r, rb, &rlo, &rhi);
    size_t o = k * r->seg;
    size_t len = rhi - rlo - o < r->seg ? rhi - rlo - o : r->seg;
    float *dst = r->buf + rlo + o;
    int gather = r->step >= r->size - 1;
    if (r->wire16 && gather)
        unpack_bf16(dst, r->recv16 + o, len);
    else if (r->wire16)
        add_bf16(dst, r->recv16 + o, len);
    else if (!gather)
        add_floats(dst, r->tmp + o, len);
}

/* A small buffer's MPI_Iallreduce, tested or waited for. */
static int advance_small(mt_ring *r, int blocking, int *done, char *err)
{
    int flag = 1;
    int rc = blocking ? MPI_Wait(&r->small_req, MPI_STATUS_IGNORE)
                      : MPI_Test(&r->small_req, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        mt_seterr(err, "ring: MPI_Iallreduce of a small buffer failed");
        return MT_EIO;
    }
    r->small_on = !flag;
    *done = flag;
    return MT_OK;
}

/* One pass of progress; blocking waits when `block` is set. */
static int advance(mt_ring *r, int blocking, int *done, char *err)
{
    if (r->small_on)
        return advance_small(r, blocking, done, err);
    int last = r->last;
    while (r->step < last) {
        if (!r->posted) {
            int rc = post(r, err);
            if (rc)
                return rc;
            if (r->posted == 0) { /* empty blocks: nothing to exchange */
                r->step++;
                continue;
            }
        }
        while (r->next < r->nseg) {
            int flag = 1;
            int rc = blocking
                         ? MPI_Wait(&r->req[r->next], MPI_STATUS_IGNORE)
                         : MPI_Test(&r->req[r->next], &flag,
                                    MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) {
                mt_seterr(err, "ring: receive failed at step %d", r->step);
                return MT_EIO;
            }
            if (!flag)
                break;
            absorb(r, r->next++);
        }
        if (r->next < r->nseg)
            break;
        int nsend = r->posted - (int)r->nseg, flag = 1, rc;
        MPI_Request *sends = r->req + r->nseg;
        rc = blocking ? MPI_Waitall(nsend, sends, MPI_STATUSES_IGNORE)
                      : MPI_Testall(nsend, sends, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            mt_seterr(err, "ring: send failed at step %d", r->step);
            return MT_EIO;
        }
        if (!flag)
            break;
        r->posted = 0;
        r->step++;
    }
    *done = r->step >= last;
    return MT_OK;
}

void mt_ring_set_small(mt_ring *r, size_t n) { r->small_n = n; }

/* At 2 ranks the ring is one exchange each way, as fast as MPI's own for
 * any size (bench/README.md); from 3 ranks on, its 2 (P - 1) steps of
 * latency lose to MPI's trees for small buffers. */
static int is_small(const mt_ring *r, size_t n)
{
    return n < r->small_n && r->size > 2;
}

void mt_ring_owned(const mt_ring *r, size_t n, int rank, size_t *lo,
                   size_t *hi, int *whole)
{
    *whole = is_small(r, n);
    if (*whole) {
        *lo = 0;
        *hi = n;
        return;
    }
    mt_dist_share(n, mod(rank + 1, r->size), r->size, lo, hi);
}

int mt_ring_start(mt_ring *r, float *buf, size_t n, char *err)
{
    return mt_ring_start_phase(r, buf, n, MT_RING_ALLREDUCE, err);
}

int mt_ring_start_phase(mt_ring *r, float *buf, size_t n, mt_ring_phase ph,
                        char *err)
{
    int P = r->size;
    r->buf = buf;
    r->n = n;
    r->first = ph == MT_RING_GATHER ? P - 1 : 0;
    r->last = ph == MT_RING_SCATTER ? P - 1 : 2 * (P - 1);
    r->step = r->first;
    r->posted = 0;
    if (is_small(r, n) && ph == MT_RING_GATHER) { /* summed whole: done */
        r->step = r->last;
        return MT_OK;
    }
    if (is_small(r, n)) {
        r->small_on = 1;
        if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                           r->comm, &r->small_req) != MPI_SUCCESS) {
            r->small_on = 0;
            mt_seterr(err, "ring: MPI_Iallreduce of %zu floats failed", n);
            return MT_EIO;
        }
        return MT_OK;
    }
    if (n / (size_t)r->size + 1 > r->cap) {
        mt_seterr(err, "ring: %zu floats exceed the %zu it was sized for", n,
                  r->cap * (size_t)r->size);
        return MT_EINVAL;
    }
    r->wire16 = r->compress == MT_COMPRESS_BF16 && ph != MT_RING_GATHER;
    return MT_OK;
}

int mt_ring_test(mt_ring *r, int *done, char *err)
{
    return advance(r, 0, done, err);
}

int mt_ring_wait(mt_ring *r, char *err)
{
    int done = 0;
    return advance(r, 1, &done, err);
}

int mt_ring_allreduce(mt_ring *r, float *buf, size_t n, char *err)
{
    /* Waited for at once: the blocking call, which beats the nonblocking
     * one on small buffers (libnbc's start-up costs). */
    if (is_small(r, n)) {
        if (MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                          r->comm) != MPI_SUCCESS) {
            mt_seterr(err, "ring: MPI_Allreduce of %zu floats failed", n);
            return MT_EIO;
        }
        return MT_OK;
    }
    int rc = mt_ring_start(r, buf, n, err);
    return rc ? rc : mt_ring_wait(r, err);
}
