/* Bucketed, overlapped gradient synchronisation; see sync.h. The buckets
 * and the calls a step makes live here; what each strategy does with
 * them is in its own file, behind mt_sync_ops (sync_internal.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/sync.h"
#include "parallel/ps_internal.h"
#include "parallel/sync_internal.h"

mt_sync_cfg mt_sync_cfg_of(const mt_config *c)
{
    int shm_applies = mt_config_shared_memory_applies(c);
    return (mt_sync_cfg){
        .kind = (mt_sync_kind)c->sync,
        .bucket_bytes = (size_t)(c->bucket_mb * 1048576.0),
        .overlap = c->overlap,
        .ps_async = c->ps_async,
        .staleness = c->staleness,
        .compress = (mt_compress)c->compress,
        .segment_bytes = c->segment_kb * 1024,
        .ring_min_bytes = (size_t)(c->ring_min_kb * 1024.0),
        .progress_thread = (mt_progress_mode)c->progress_thread,
        .defer_update = c->defer_update,
        .shard_optimizer = c->shard_optimizer,
        .shared_memory = shm_applies ? (mt_shm_mode)c->shared_memory
                                     : MT_SHM_OFF};
}

/* Parameter range of layer i in the arena: its tensors are consecutive. */
static void layer_range(const mt_model *m, size_t i, size_t *lo, size_t *hi)
{
    const mt_layer *l = &m->layers[i];
    *lo = (size_t)(l->param[0].grad - m->grads);
    *hi = *lo;
    for (int k = 0; k < l->n_param; k++)
        *hi += l->param[k].n;
}

/* Walks the layers from last to first, closing a bucket when the next
 * layer would overflow it; a layer larger than a bucket gets several. */
static size_t make_buckets(mt_sync *s, const mt_model *m, size_t cap)
{
    size_t nb = 0, cur_lo = 0, cur_hi = 0, cur_first = 0;
    /* A pipeline stage sums its own layers' gradients only. */
    for (size_t i = s->plan->layer_hi; i-- > s->plan->layer_lo;) {
        if (m->layers[i].n_param == 0)
            continue;
        size_t lo, hi;
        layer_range(m, i, &lo, &hi);
        if (cur_hi > cur_lo && cur_hi - lo > cap) {
            if (s->b)
                s->b[nb] = (mt_bucket){
                    .lo = cur_lo, .hi = cur_hi, .first_layer = cur_first};
            nb++;
            cur_hi = cur_lo;
        }
        if (cur_hi == cur_lo)
            cur_hi = hi;
        /* Pieces of a big layer, from its end, each a full bucket. */
        while (cur_hi - lo > cap) {
            if (s->b)
                s->b[nb] = (mt_bucket){
                    .lo = cur_hi - cap, .hi = cur_hi, .first_layer = i};
            nb++;
            cur_hi -= cap;
        }
        cur_lo = lo;
        cur_first = i;
    }
    if (cur_hi > cur_lo) {
        if (s->b)
            s->b[nb] = (mt_bucket){
                .lo = cur_lo, .hi = cur_hi, .first_layer = cur_first};
        nb++;
    }
    return nb;
}

/* The strategy's own set-up: its ops, buckets and buffers. */
static int init_strategy(mt_sync *s, mt_model *m, mt_optim *o,
                         const mt_sync_cfg *cfg, const mt_plan *plan,
                         char *err)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->ops = cfg->kind == MT_SYNC_RING  ? &mt__sync_ring
             : cfg->kind == MT_SYNC_PS ? &mt__sync_ps
                                       : &mt__sync_allreduce;
    s->plan = plan;
    /* ps talks to every rank, or in a pipeline to the stage's replicas,
     * its servers; the others sum over the data-parallel group. */
    int ps = cfg->kind == MT_SYNC_PS, stages = plan->stages > 1;
    MPI_Comm comm = ps && !stages ? plan->run : plan->dp;
    s->comm = comm;
    s->grads = m->grads;
    s->params = m->params;
    s->optim = o;
    /* ps pushes every gradient this rank has (the arena, or a pipeline
     * stage's part); the others sum what this rank owns (all of it, or a
     * stage's part). */
    size_t lo = plan->param_lo, hi = plan->param_hi;
    if (ps)
        mt_model_span(m, plan->layer_lo, plan->layer_hi, 0, &lo, &hi);
    s->base = lo;
    s->n = hi - lo;
    MPI_Comm_size(comm, &s->size);
    size_t cap = cfg->bucket_bytes / sizeof(float);
    cap = cap ? cap : 1;
    s->nb = make_buckets(s, m, cap);
    s->b = mt_calloc(s->nb, sizeof *s->b);
    if (!s->b) {
        mt_seterr(err, "sync: out of memory");
        return MT_ENOMEM;
    }
    make_buckets(s, m, cap);
    s->active = s->nb;
    if (cfg->kind == MT_SYNC_PS) {
        /* One rank alone has nothing to be asynchronous with. */
        s->async = cfg->ps_async && s->size > 1;
        if (s->async)
            s->ops = &mt__sync_ps_async;
        int rc = mt__sync_ps_init(s, err);
        if (rc == MT_OK && s->async)
            rc = mt__ps_async_init(s, err);
        if (rc)
            mt_sync_free(s);
        return rc;
    }
    if (cfg->shared_memory && s->size > 1) {
        int rc = mt__shm_init(s, m, err);
        if (rc || s->shm) {
            if (rc)
                mt_sync_free(s);
            return rc;
        }
    }
    if (cfg->kind == MT_SYNC_RING) {
        /* Blocking mode reduces the whole arena at once. */
        size_t biggest = cfg->overlap ? cap : s->n ? s->n : 1;
        int rc = mt_ring_init(&s->ring, comm, biggest, cfg->segment_bytes,
                              cfg->compress, MT_TAG_RING, err);
        if (rc) {
            mt_sync_free(s);
            return rc;
        }
        mt_ring_set_small(&s->ring, cfg->ring_min_bytes / sizeof(float));
    }
    /* One rank owns everything already. */
    s->shard = cfg->shard_optimizer && s->size > 1;
    if (s->shard) {
        s->ops = cfg->kind == MT_SYNC_RING ? &mt__sync_ring_sharded
                                           : &mt__sync_allreduce_sharded;
        int rc = mt__shard_init(s, err);
        if (rc) {
            mt_sync_free(s);
            return rc;
        }
    }
    return MT_OK;
}

static const char *thread_level_name(int level)
{
    return level == MPI_THREAD_SINGLE   ? "MPI_THREAD_SINGLE"
           : level == MPI_THREAD_FUNNELED ? "MPI_THREAD_FUNNELED"
           : level == MPI_THREAD_SERIALIZED ? "MPI_THREAD_SERIALIZED"
                                            : "MPI_THREAD_MULTIPLE";
}

/* Whether backward's buckets get the progress thread: overlap on, more
 * than one rank, a strategy whose step is begin-progress-finish (not the
 * asynchronous server, not a pipeline stage, whose sends and receives
 * run between begin and finish), and MPI initialised for calls from
 * another thread. */
static int use_thread(const mt_sync *s, const mt_sync_cfg *cfg, char *err)
{
    if (cfg->progress_thread == MT_PROGRESS_THREAD_OFF || !cfg->overlap ||
        s->size == 1 || s->async || s->plan->stages > 1)
        return 0;
    int level = MPI_THREAD_SINGLE;
    MPI_Query_thread(&level);
    if (level >= MPI_THREAD_SERIALIZED)
        return 1;
    mt_seterr(err, "[parallel] progress_thread = on needs MPI initialised "
                   "with MPI_THREAD_SERIALIZED or more; it has %s",
              thread_level_name(level));
    return -1;
}

int mt_sync_init(mt_sync *s, mt_model *m, mt_optim *o,
                 const mt_sync_cfg *cfg, const mt_plan *plan, char *err)
{
    int rc = init_strategy(s, m, o, cfg, plan, err);
    if (rc)
        return rc;
    int want = use_thread(s, cfg, err);
    rc = want < 0 ? MT_EINVAL : want ? mt__progress_start(s, err) : MT_OK;
    if (rc)
        mt_sync_free(s);
    return rc;
}

void mt_sync_free(mt_sync *s)
{
    mt__progress_stop(s);
    /* A run that ended with deferred buckets in flight (it diverged)
     * completes them: MPI_Finalize wants no request pending. */
    for (size_t k = 0; k < s->unapplied; k++)
        if (s->b[k].state == 1)
            MPI_Wait(&s->b[k].req, MPI_STATUS_IGNORE);
    s->unapplied = 0;
    mt__shm_free(s);
    mt__ps_async_free(s);
    mt__sync_ps_free(s);
    mt__shard_free(s);
    mt_free(s->b);
    s->b = NULL;
    mt_ring_free(&s->ring);
    s->nb = 0;
}

void mt__sync_reset(mt_sync *s)
{
    for (size_t i = 0; i < s->nb; i++)
        s->b[i].state = 0;
    s->next = 0;
    s->active = s->nb;
}

void mt_sync_begin(mt_sync *s)
{
    /* Deferred buckets still in flight keep their requests; the step's
     * forward applies them (and then resets the buckets). */
    if (!s->unapplied)
        mt__sync_reset(s);
    if (s->ops->begin && s->size > 1)
        s->ops->begin(s);
    if (s->thread)
        mt__progress_begin(s);
}

size_t mt__ready_from(const mt_sync *s, size_t k, size_t layer)
{
    while (k < s->nb && s->b[k].first_layer >= layer)
        k++;
    return k;
}

int mt_sync_layer_done(mt_sync *s, size_t layer, char *err)
{
    if (!s->cfg.overlap || s->size == 1)
        return MT_OK;
    if (s->thread) { /* it moves them; no MPI call here */
        mt__progress_ready(s, layer);
        return MT_OK;
    }
    return s->ops->progress(s, mt__ready_from(s, s->next, layer), err);
}

int mt_sync_finish(mt_sync *s, char *err)
{
    if (s->size == 1)
        return MT_OK;
    double t0 = MPI_Wtime();
    int rc = s->thread ? mt__progress_end(s, err) : MT_OK;
    if (rc == MT_OK)
        rc = s->ops->finish(s, err);
    s->wait_s += MPI_Wtime() - t0;
    return rc;
}

void mt_sync_step_info(mt_sync *s, float lr, double clip_norm)
{
    s->step_lr = lr;
    s->step_clip = clip_norm;
}

int mt_sync_fence(mt_sync *s, char *err)
{
    return s->ops->fence ? s->ops->fence(s, err) : MT_OK;
}

int mt_sync_wait(mt_sync *s, MPI_Request *req, char *err)
{
    if (s->async)
        return mt__ps_async_wait(s, req, err);
    if (MPI_Wait(req, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        mt_seterr(err, "MPI_Wait of an agreement failed");
        return MT_EIO;
    }
    return MT_OK;
}

int mt_sync_nonfinite(const mt_sync *s)
{
    return s->async && s->ps ? s->ps->nonfinite : 0;
}

int mt_sync_clip(mt_sync *s, double max, char *err)
{
    if (s->async)
        return MT_OK;
    if (s->shm)
        return mt__shm_clip(s, max, err);
    if (s->shard)
        return mt__shard_clip(s, max, err);
    const mt_plan *p = s->plan;
    const float *g = s->grads + p->param_lo;
    size_t n = p->param_hi - p->param_lo;
    double sq = 0.0;
    for (size_t i = 0; i < n; i++)
        sq += (double)g[i] * g[i];
    /* Replicated gradients are whole on every rank; shards add up, and
     * so do a replica's stages (with ps, every rank's shard). */
    MPI_Comm parts = p->stages > 1 && !p->n_servers ? p->pipe : p->run;
    float f;
    int rc = mt__clip_factor(!p->replicated && p->size > 1 ? parts
                                                           : MPI_COMM_NULL,
                             sq, max, &f, err);
    for (size_t i = 0; rc == MT_OK && f < 1.0f && i < n; i++)
        s->grads[p->param_lo + i] *= f;
    return rc;
}

int mt__clip_factor(MPI_Comm comm, double sq, double max, float *f,
                    char *err)
{
    *f = 1.0f;
    if (comm != MPI_COMM_NULL &&
        MPI_Allreduce(MPI_IN_PLACE, &sq, 1, MPI_DOUBLE, MPI_SUM, comm) !=
            MPI_SUCCESS) {
        mt_seterr(err, "clipping: MPI_Allreduce of the gradient norm "
                       "failed");
        return MT_EIO;
    }
    double norm = sqrt(sq);
    if (norm > max)
        *f = (float)(max / (norm + 1e-6));
    return MT_OK;
}

int mt_sync_apply(mt_sync *s, mt_optim *o, float *params, float lr,
                  char *err)
{
    if (s->cfg.defer_update)
        return mt__sync_apply_deferred(s, o, params, lr, err);
    return s->ops->apply(s, o, params, lr, err);
}

int mt__sync_apply_all(mt_sync *s, mt_optim *o, float *params, float lr,
                       char *err)
{
    (void)err;
    mt_optim_step(o, params + o->base, s->grads + o->base, lr);
    return MT_OK;
}
