/* [parallel] shared_memory: the ranks of a node sum their gradients and
 * share the optimizer step through one MPI-3 shared-memory window
 * (MPI_Win_allocate_shared), for sync = allreduce and ring.
 *
 * Each rank's parameters and gradients live in its segment of the window
 * (the model's arenas are placed there), where the node's other ranks
 * read them directly. A step:
 *   1. backward writes each rank's gradients into its own segment;
 *   2. the node meets (a barrier); each rank adds the others' gradients
 *      of its block, 1/L of the arena (L ranks on the node), into its own,
 *      reading them where they are: no message, no copy to a buffer;
 *   3. across nodes each block is summed by sync (MPI_Allreduce, or the
 *      ring with its compression) among the ranks that hold it, one a
 *      node: the bytes of an allreduce over nodes, not over ranks;
 *   4. each rank steps the optimizer on its block alone (ZeRO stage 1,
 *      as shard_optimizer: Adam's square roots and divisions cut by L);
 *   5. the node meets again and each rank copies the others' new blocks.
 * Against MPI on shared memory this saves the messages' copies through
 * a bounce buffer and the all-gather (MPI's reduce-scatter + all-gather
 * moves every float through that buffer twice).
 *
 * Who touches what between the meetings: a rank writes only its own
 * segment, reads the others' only after a meeting, and a block's new
 * parameters are read (step 5) before the next step's first meeting,
 * after which alone their owner writes them again; gradients are read in
 * step 2 and zeroed by their owner after the second meeting. So two
 * barriers a step suffice (with MPI_Win_sync on each side of them for
 * the memory model).
 *
 * Blocks start at multiples of 16 floats (a cache line). The sum's order
 * is the owner's gradient, then the others' in rank order: at 2 ranks the
 * floats of an allreduce. Slots of other blocks go stale as with
 * shard_optimizer, and a checkpoint gathers them first, so it resumes in
 * any mode. The cross-node sums start when backward has ended (no
 * overlap yet). Every node must hold the same number of ranks. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/simd.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/watchdog.h"
#include "parallel/sync_internal.h"

struct mt__shm {
    MPI_Comm node;  /* this node's ranks of the sync's group */
    MPI_Comm cross; /* one rank a node: those holding the same block */
    MPI_Win win;
    int locked;     /* MPI_Win_lock_all done */
    int me, L, nodes;
    float **params, **grads; /* (L): each node rank's arenas */
    size_t *lo, *hi;         /* (L): each node rank's block (arena) */
    int ring_on;             /* sync = ring across nodes */
    mt_ring ring;
    mt_model *model;         /* whose arenas are in the window */
};

MT_VECTOR(static, add_into,
          (float *restrict dst, const float *restrict src, size_t n),
          (dst, src, n))
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Block j of the sync's [base, base + n): cuts at multiples of 16. */
static void cut_blocks(mt_sync *s, struct mt__shm *h)
{
    for (int j = 0; j < h->L; j++) {
        size_t a = s->n * (size_t)j / (size_t)h->L;
        size_t b = s->n * (size_t)(j + 1) / (size_t)h->L;
        h->lo[j] = s->base + (a & ~(size_t)15);
        h->hi[j] = s->base + (j + 1 == h->L ? s->n : b & ~(size_t)15);
    }
}

/* The node's ranks and the ranks across nodes. h->L == 1 on return:
 * nothing to share (one rank a node everywhere, or with auto nodes of
 * different rank counts: s->shm_note says which); those with true are
 * MT_EINVAL. Collective over s->comm; every rank decides alike. */
static int split(mt_sync *s, struct mt__shm *h, char *err)
{
    int rank, ext[2];
    MPI_Comm_rank(s->comm, &rank);
    if (MPI_Comm_split_type(s->comm, MPI_COMM_TYPE_SHARED, rank,
                            MPI_INFO_NULL, &h->node) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Comm_split_type failed");
        return MT_EIO;
    }
    MPI_Comm_size(h->node, &h->L);
    MPI_Comm_rank(h->node, &h->me);
    ext[0] = -h->L;
    ext[1] = h->L;
    if (MPI_Allreduce(MPI_IN_PLACE, ext, 2, MPI_INT, MPI_MAX, s->comm) !=
        MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Allreduce of ranks a node "
                       "failed");
        return MT_EIO;
    }
    if (ext[1] == 1)
        snprintf(s->shm_note, sizeof s->shm_note, "one rank a node");
    if (-ext[0] != ext[1] && s->cfg.shared_memory == MT_SHM_AUTO) {
        snprintf(s->shm_note, sizeof s->shm_note,
                 "nodes hold %d to %d ranks", -ext[0], ext[1]);
        h->L = 1;
        return MT_OK;
    }
    if (-ext[0] != ext[1]) {
        mt_seterr(err, "[parallel] shared_memory needs the same number of "
                       "ranks on every node; here nodes hold %d to %d "
                       "(rank %d's node holds %d)",
                  -ext[0], ext[1], rank, h->L);
        return MT_EINVAL;
    }
    if (h->L == 1)
        return MT_OK;
    if (MPI_Comm_split(s->comm, h->me, rank, &h->cross) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Comm_split failed");
        return MT_EIO;
    }
    MPI_Comm_size(h->cross, &h->nodes);
    return MT_OK;
}

/* A rank's segment of the window for n parameters: the parameters, then
 * from a cache line (grads_at floats in) the gradients. */
static size_t grads_at(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t segment_floats(size_t n) { return grads_at(n) + n + 1; }

/* The window, each rank's segment found with MPI_Win_shared_query. */
static int map_window(struct mt__shm *h, char *err)
{
    size_t n = h->model->n_params;
    MPI_Info info;
    MPI_Info_create(&info);
    /* Each segment on its own pages (first touch puts them near). */
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    float *mine = NULL;
    int rc = MPI_Win_allocate_shared(
        (MPI_Aint)(segment_floats(n) * sizeof(float)), (int)sizeof(float),
        info, h->node, &mine, &h->win);
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS) {
        h->win = MPI_WIN_NULL;
        mt_seterr(err, "shared_memory: MPI_Win_allocate_shared of %zu "
                       "floats a rank failed",
                  2 * n);
        return MT_EIO;
    }
    for (int j = 0; j < h->L; j++) {
        MPI_Aint bytes;
        int unit;
        float *at = NULL;
        if (MPI_Win_shared_query(h->win, j, &bytes, &unit, &at) !=
            MPI_SUCCESS) {
            mt_seterr(err, "shared_memory: MPI_Win_shared_query of node "
                           "rank %d failed",
                      j);
            return MT_EIO;
        }
        h->params[j] = at;
        h->grads[j] = at + grads_at(n);
    }
    if (MPI_Win_lock_all(MPI_MODE_NOCHECK, h->win) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Win_lock_all failed");
        return MT_EIO;
    }
    h->locked = 1;
    return MT_OK;
}

/* Open MPI's osc sm maps the window from a file in /dev/shm, and a
 * tmpfs too small for it fails not there but with SIGBUS at the first
 * touch of a page beyond its room (a container's /dev/shm is 64 MiB by
 * default). So the node's window is checked against the room first:
 * with true an error, with auto sync alone (s->shm_note says why; h->L
 * set to 1). Collective over s->comm; every rank decides alike. */
static int check_room(mt_sync *s, struct mt__shm *h, char *err)
{
    double need = (double)h->L *
                      (double)segment_floats(h->model->n_params) *
                      sizeof(float) +
                  1048576.0; /* Open MPI's own part */
    double room = need;
    struct statvfs v;
    if (statvfs("/dev/shm", &v) == 0)
        room = (double)v.f_bavail * (double)v.f_frsize;
    int short_of = room < need;
    if (MPI_Allreduce(MPI_IN_PLACE, &short_of, 1, MPI_INT, MPI_MAX,
                      s->comm) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Allreduce of /dev/shm's room "
                       "failed");
        return MT_EIO;
    }
    if (!short_of)
        return MT_OK;
    if (s->cfg.shared_memory == MT_SHM_AUTO) {
        snprintf(s->shm_note, sizeof s->shm_note,
                 "/dev/shm too small for the window on a node");
        h->L = 1;
        return MT_OK;
    }
    mt_seterr(err, "[parallel] shared_memory: the node's window needs "
                   "%.0f MiB of /dev/shm%s, which has %.0f MiB free "
                   "(a container's default is 64 MiB: raise it, e.g. "
                   "docker run --shm-size, or set shared_memory = false)",
              need / 1048576.0, room < need ? "" : " on another node",
              room / 1048576.0);
    return MT_ENOMEM;
}

static int set_up(mt_sync *s, struct mt__shm *h, char *err)
{
    h->params = mt_calloc((size_t)h->L, sizeof(float *));
    h->grads = mt_calloc((size_t)h->L, sizeof(float *));
    h->lo = mt_calloc((size_t)h->L, sizeof(size_t));
    h->hi = mt_calloc((size_t)h->L, sizeof(size_t));
    int rc = h->params && h->grads && h->lo && h->hi ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "shared_memory: out of memory");
    else
        cut_blocks(s, h);
    h->ring_on = s->cfg.kind == MT_SYNC_RING && h->nodes > 1;
    size_t most = s->n / (size_t)h->L + 16;
    if (rc == MT_OK && h->ring_on)
        rc = mt_ring_init(&h->ring, h->cross, most, s->cfg.segment_bytes,
                          s->cfg.compress, MT_TAG_RING, err);
    if (rc == MT_OK && h->ring_on)
        mt_ring_set_small(&h->ring, s->cfg.ring_min_bytes / sizeof(float));
    /* The window is collective: every rank must get there. */
    rc = mt_dist_agree(s->comm, rc, err);
    if (rc == MT_OK)
        rc = map_window(h, err);
    return mt_dist_agree(s->comm, rc, err);
}

static void release(struct mt__shm *h)
{
    if (h->locked)
        MPI_Win_unlock_all(h->win);
    if (h->win != MPI_WIN_NULL)
        MPI_Win_free(&h->win);
    if (h->ring_on)
        mt_ring_free(&h->ring);
    if (h->cross != MPI_COMM_NULL)
        MPI_Comm_free(&h->cross);
    if (h->node != MPI_COMM_NULL)
        MPI_Comm_free(&h->node);
    mt_free(h->params);
    mt_free(h->grads);
    mt_free(h->lo);
    mt_free(h->hi);
    mt_free(h);
}

int mt__shm_init(mt_sync *s, mt_model *m, char *err)
{
    struct mt__shm *h = mt_calloc(1, sizeof *h);
    int rc = h ? MT_OK : MT_ENOMEM;
    if (!h)
        mt_seterr(err, "shared_memory: out of memory");
    if ((rc = mt_dist_agree(s->comm, rc, err)))
        return rc;
    h->node = h->cross = MPI_COMM_NULL;
    h->win = MPI_WIN_NULL;
    h->model = m;
    rc = split(s, h, err);
    if (rc == MT_OK && h->L > 1)
        rc = check_room(s, h, err);
    if (rc == MT_OK && h->L > 1)
        rc = set_up(s, h, err);
    if (rc && s->cfg.shared_memory == MT_SHM_AUTO) {
        char why[MT_ERR_LEN];
        snprintf(why, sizeof why, "%s", err);
        mt_seterr(err, "%s (set [parallel] shared_memory = false to sum "
                       "by messages alone)",
                  why);
    }
    if (rc || h->L == 1) { /* one rank a node: sync alone */
        release(h);
        return rc;
    }
    mt_model_place_arenas(m, h->params[h->me], h->grads[h->me]);
    s->grads = m->grads;
    s->params = m->params;
    s->shm = h;
    s->ops = &mt__sync_shm;
    return MT_OK;
}

void mt__shm_free(mt_sync *s)
{
    struct mt__shm *h = s->shm;
    if (!h)
        return;
    char err[MT_ERR_LEN];
    /* The model keeps its values; if no memory can be had for them the
     * window stays (MPI_Finalize frees it). */
    if (mt_model_own_arenas(h->model, err) == MT_OK)
        release(h);
    s->shm = NULL;
}

/* The node's ranks meet; `what` names the meeting in an error. */
static int meet(struct mt__shm *h, const char *what, char *err)
{
    MPI_Win_sync(h->win);
    if (MPI_Barrier(h->node) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Barrier of node rank %d (%s) "
                       "failed",
                  h->me, what);
        return MT_EIO;
    }
    MPI_Win_sync(h->win);
    return MT_OK;
}

/* This rank's block summed over the node's ranks, then over the nodes. */
static int finish(mt_sync *s, char *err)
{
    struct mt__shm *h = s->shm;
    int rc = meet(h, "gradients ready", err);
    if (rc)
        return rc;
    size_t lo = h->lo[h->me], hi = h->hi[h->me];
    float *own = h->grads[h->me];
    /* In chunks that stay in cache while every rank's are added. */
    for (size_t a = lo; a < hi; a += 4096) {
        size_t len = hi - a < 4096 ? hi - a : 4096;
        for (int j = 0; j < h->L; j++)
            if (j != h->me)
                add_into(own + a, h->grads[j] + a, len);
    }
    if (h->nodes == 1)
        return MT_OK;
    if (h->ring_on)
        return mt_ring_allreduce(&h->ring, own + lo, hi - lo, err);
    if (MPI_Allreduce(MPI_IN_PLACE, own + lo, (int)(hi - lo), MPI_FLOAT,
                      MPI_SUM, h->cross) != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Allreduce of block %d (%zu "
                       "floats) across %d nodes failed",
                  h->me, hi - lo, h->nodes);
        return MT_EIO;
    }
    return MT_OK;
}

static int progress(mt_sync *s, size_t ready, char *err)
{
    (void)s, (void)ready, (void)err;
    return MT_OK;
}

/* The step on this rank's block, then the node's other new blocks. */
static int apply(mt_sync *s, mt_optim *o, float *params, float lr,
                 char *err)
{
    struct mt__shm *h = s->shm;
    size_t lo = h->lo[h->me], hi = h->hi[h->me];
    mt_optim_tick(o);
    if (hi > lo)
        mt_optim_step_range(o, params + o->base, s->grads + o->base, lr,
                            lo - o->base, hi - o->base);
    mt_watch("shared_memory: the node's new parameters (MPI_Barrier)");
    int rc = meet(h, "parameters stepped", err);
    for (int j = 0; j < h->L && rc == MT_OK; j++)
        if (j != h->me)
            memcpy(params + h->lo[j], h->params[j] + h->lo[j],
                   (h->hi[j] - h->lo[j]) * sizeof(float));
    return rc;
}

int mt__shm_clip(mt_sync *s, double max, char *err)
{
    struct mt__shm *h = s->shm;
    size_t lo = h->lo[h->me], hi = h->hi[h->me];
    double sq = 0.0;
    for (size_t i = lo; i < hi; i++)
        sq += (double)s->grads[i] * s->grads[i];
    /* Every node holds every block's sum: the node's blocks are all. */
    float f;
    int rc = mt__clip_factor(h->node, sq, max, &f, err);
    for (size_t i = lo; rc == MT_OK && f < 1.0f && i < hi; i++)
        s->grads[i] *= f;
    return rc;
}

/* Every block's slots of arr (arena position i at arr[i - base]) from
 * their owners on the node (every node's are alike). */
static int gather(struct mt__shm *h, float *arr, size_t base, char *err)
{
    int *counts = mt_calloc(2 * (size_t)h->L, sizeof(int));
    if (!counts) {
        mt_seterr(err, "shared_memory: out of memory");
        return MT_ENOMEM;
    }
    int *displs = counts + h->L;
    for (int j = 0; j < h->L; j++) {
        counts[j] = (int)(h->hi[j] - h->lo[j]);
        displs[j] = (int)(h->lo[j] - base);
    }
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, arr, counts,
                            displs, MPI_FLOAT, h->node);
    mt_free(counts);
    if (rc != MPI_SUCCESS) {
        mt_seterr(err, "shared_memory: MPI_Allgatherv of the optimizer "
                       "slots failed");
        return MT_EIO;
    }
    return MT_OK;
}

int mt__shm_gather_slots(mt_sync *s, char *err)
{
    const mt_optim *o = s->optim;
    int rc = o->m ? gather(s->shm, o->m, o->base, err) : MT_OK;
    if (rc == MT_OK && o->v)
        rc = gather(s->shm, o->v, o->base, err);
    return rc;
}

int mt_sync_shared_layout(const mt_sync *s, int *ranks_a_node, int *nodes)
{
    if (!s->shm)
        return 0;
    *ranks_a_node = s->shm->L;
    *nodes = s->shm->nodes;
    return 1;
}

const mt_sync_ops mt__sync_shm = {"shared_memory", NULL, progress, finish,
                                  apply, NULL};
