/* ps_mode = async: stale-synchronous parallel (Ho et al., "More
 * Effective Distributed ML via a Stale Synchronous Parallel Parameter
 * Server", NIPS 2013), on the shards and pieces of sync_ps.c.
 *
 * A worker pushes its step's pieces during backward, then a header (rate,
 * clip factor, step) to every server, and pulls every shard before its
 * next forward. A server applies each worker's push on its own as soon as
 * all of it has arrived, to its own copy of the shard: the gradient W g_w
 * (the worker's slice as a mean, W workers) clipped by the push's own
 * norm, at rate lr / W, so that W pushes move the weights about as far
 * as one synchronous step, with SGD and with Adam alike. It answers the
 * pull of a worker that has pushed c steps once the slowest worker has
 * pushed c - staleness: nobody runs more than `staleness` steps ahead.
 *
 * Servers work only when their rank calls in here: a colocated rank
 * serves while it waits for its own pushes and pulls, a dedicated server
 * while it waits for the slowest worker's step. Before anything blocking
 * (a collective), every rank meets the others at a fence: all pushes so
 * far applied, every worker given the servers' current values. */
#include <math.h>
#include <sched.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/watchdog.h"
#include "parallel/ps_internal.h"
#include "parallel/sync_internal.h"

static void note_err(struct mt_ps *ps, int rc)
{
    if (rc != MPI_SUCCESS && ps->err == MPI_SUCCESS)
        ps->err = rc;
}

/* The receives of worker w's next push: its pieces of this shard, then
 * its header. */
static void post_push(mt_sync *s, int w)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    size_t len = mt__ps_shard_len(p), k = 0;
    MPI_Request *r = ps->wreq + (size_t)w * (ps->mine + 1);
    float *buf = ps->recv + (size_t)w * len; /* at shard position 0 */
    for (size_t i = 0; i < ps->first[s->nb]; i++) {
        const ps_piece *pc = &ps->piece[i];
        if (pc->server == p->server_index)
            note_err(ps, MPI_Irecv(buf + (pc->lo - p->param_lo),
                                   (int)(pc->hi - pc->lo), MPI_FLOAT, w,
                                   MT_TAG_PS_GRAD, s->comm, &r[k++]));
    }
    note_err(ps, MPI_Irecv(ps->hdr + 3 * (size_t)w, 3, MPI_DOUBLE, w,
                           MT_TAG_PS_HEAD, s->comm, &r[k]));
}

/* Before the first use: the shard's values, the receives. */
static void start(mt_sync *s)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    if (ps->started)
        return;
    ps->started = 1;
    if (p->server_index < 0)
        return;
    memcpy(ps->sparams, s->params + p->param_lo,
           mt__ps_shard_len(p) * sizeof(float));
    for (int w = 0; w < p->dp_size; w++) {
        post_push(s, w);
        note_err(ps, MPI_Irecv(ps->fmsg + 2 * w, 2, MPI_DOUBLE, w,
                               MT_TAG_PS_FENCE, s->comm, &ps->freq[w]));
        ps->want[w] = ps->fwant[w] = -1;
    }
}

static uint64_t min_clock(const struct mt_ps *ps, int workers)
{
    uint64_t m = ps->clock[0];
    for (int w = 1; w < workers; w++)
        m = ps->clock[w] < m ? ps->clock[w] : m;
    return m;
}

/* Worker w's push, complete: one optimizer step of the shard. */
static void apply_push(mt_sync *s, mt_optim *o, int w)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    size_t len = mt__ps_shard_len(p);
    const double *h = ps->hdr + 3 * (size_t)w;
    float *g = ps->recv + (size_t)w * len;
    float scale = (float)(h[1] * p->dp_size);
    for (size_t i = 0; i < len; i++)
        g[i] *= scale;
    mt_optim_step(o, ps->sparams, g, (float)(h[0] / p->dp_size));
    for (size_t i = 0; i < len && !ps->nonfinite; i++)
        ps->nonfinite = !isfinite(ps->sparams[i]);
    ps->clock[w] = (uint64_t)h[2] + 1;
    /* (never negative: -1 means no pull owed) */
    ps->want[w] = ps->clock[w] > ps->staleness
                      ? (int64_t)(ps->clock[w] - ps->staleness)
                      : 0;
    post_push(s, w);
}

/* Sends the shard's current values to w, if its last reply has left. */
static int reply(mt_sync *s, int w)
{
    struct mt_ps *ps = s->ps;
    size_t len = mt__ps_shard_len(s->plan);
    int done = 1;
    note_err(ps, MPI_Test(&ps->rsend[w], &done, MPI_STATUS_IGNORE));
    if (!done)
        return 0;
    float *buf = ps->reply + (size_t)w * len;
    memcpy(buf, ps->sparams, len * sizeof(float));
    note_err(ps, MPI_Isend(buf, (int)len, MPI_FLOAT, w, MT_TAG_PS_PARAMS,
                           s->comm, &ps->rsend[w]));
    return 1;
}

/* The server's part of any wait: applies the pushes that are complete,
 * then answers the pulls and fences the slowest worker now allows.
 * Returns 1 if anything happened. */
static int serve(mt_sync *s, mt_optim *o)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    int did = 0;
    if (p->server_index < 0)
        return 0;
    for (int w = 0; w < p->dp_size; w++) {
        int done = 0;
        note_err(ps, MPI_Testall((int)ps->mine + 1,
                                 ps->wreq + (size_t)w * (ps->mine + 1),
                                 &done, MPI_STATUSES_IGNORE));
        if (done && ps->err == MPI_SUCCESS) {
            apply_push(s, o, w);
            did = 1;
        }
        note_err(ps, MPI_Test(&ps->freq[w], &done, MPI_STATUS_IGNORE));
        if (done && ps->fwant[w] < 0) {
            ps->fwant[w] = (int64_t)ps->fmsg[2 * w];
            did = 1;
        }
    }
    int64_t slowest = (int64_t)min_clock(ps, p->dp_size);
    for (int w = 0; w < p->dp_size; w++) {
        if (ps->want[w] >= 0 && slowest >= ps->want[w] && reply(s, w)) {
            ps->want[w] = -1;
            did = 1;
        }
        if (ps->fwant[w] >= 0 && ps->want[w] < 0 &&
            slowest >= ps->fwant[w] && reply(s, w)) {
            ps->fwant[w] = -1;
            ps->fdone[w] = (uint64_t)ps->fmsg[2 * w + 1];
            note_err(ps, MPI_Irecv(ps->fmsg + 2 * w, 2, MPI_DOUBLE, w,
                                   MT_TAG_PS_FENCE, s->comm, &ps->freq[w]));
            did = 1;
        }
    }
    return did;
}

/* Waits for reqs[0..n) and until done(s) holds, serving meanwhile. */
static int wait_serving(mt_sync *s, MPI_Request *reqs, size_t n,
                        int (*done)(const mt_sync *), const char *what,
                        char *err)
{
    struct mt_ps *ps = s->ps;
    for (;;) {
        int flag = 1;
        if (n)
            note_err(ps, MPI_Testall((int)n, reqs, &flag,
                                     MPI_STATUSES_IGNORE));
        int did = serve(s, s->optim);
        if (ps->err != MPI_SUCCESS)
            return mt__ps_check(ps->err, what, err);
        if (flag && (!done || done(s)))
            return MT_OK;
        if (!did)
            sched_yield(); /* 2 cores, several ranks: let the others run */
    }
}

static int slowest_caught_up(const mt_sync *s)
{
    return min_clock(s->ps, s->plan->dp_size) >= s->ps->steps;
}

int mt__ps_async_wait(mt_sync *s, MPI_Request *req, char *err)
{
    mt_watch("agreement of a step (staleness steps late)");
    return wait_serving(s, req, 1, NULL, "agreeing on a step's sums", err);
}

static void begin(mt_sync *s)
{
    start(s);
    s->ps->n_req = 0;
}

static int progress(mt_sync *s, size_t ready, char *err)
{
    int rc = mt__ps_push(s, ready, err), flag = 0;
    if (rc == MT_OK && s->ps->n_req)
        rc = mt__ps_check(MPI_Testall((int)s->ps->n_req, s->ps->req, &flag,
                                      MPI_STATUSES_IGNORE),
                          "advancing the gradient pieces", err);
    if (rc == MT_OK)
        serve(s, s->optim);
    return rc;
}

/* Sends buf[0..n) to every server, appending the requests to ps->req. */
static int to_servers(mt_sync *s, double *buf, int n, int tag,
                      const char *what, char *err)
{
    struct mt_ps *ps = s->ps;
    int rc = MT_OK;
    for (int j = 0; j < s->plan->n_servers && rc == MT_OK; j++)
        rc = mt__ps_check(MPI_Isend(buf, n, MPI_DOUBLE,
                                    mt_plan_server_rank(s->plan, j), tag,
                                    s->comm, &ps->req[ps->n_req++]),
                          what, err);
    return rc;
}

/* The factor that clips this worker's push (W g_w) to the clip norm. */
static double clip_factor(const mt_sync *s)
{
    if (s->step_clip <= 0.0)
        return 1.0;
    double sq = 0.0;
    for (size_t i = 0; i < s->n; i++)
        sq += (double)s->grads[i] * s->grads[i];
    double norm = sqrt(sq) * s->plan->dp_size;
    return norm > s->step_clip ? s->step_clip / (norm + 1e-6) : 1.0;
}

/* A worker: the rest of its pieces and its header to every server, and
 * waits until they have left. A dedicated server: waits (serving) until
 * the slowest worker has pushed this step. */
static int finish(mt_sync *s, char *err)
{
    struct mt_ps *ps = s->ps;
    start(s);
    ps->steps++;
    if (!mt__ps_is_worker(s)) {
        mt_watch("parameter server: the slowest worker's push");
        return wait_serving(s, NULL, 0, slowest_caught_up,
                            "serving the workers' pushes", err);
    }
    int rc = mt__ps_push(s, s->nb, err);
    ps->head[0] = s->step_lr;
    ps->head[1] = clip_factor(s);
    ps->head[2] = (double)(ps->steps - 1);
    if (rc == MT_OK)
        rc = to_servers(s, ps->head, 3, MT_TAG_PS_HEAD,
                        "sending a push's header", err);
    mt_watch("parameter server: pushing the gradients");
    if (rc == MT_OK)
        rc = wait_serving(s, ps->req, ps->n_req, NULL,
                          "pushing the gradients", err);
    ps->n_req = 0;
    return rc;
}

/* Posts the receives of every shard into the worker's parameters. */
static int post_pulls(mt_sync *s, char *err)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    ps->n_req = 0;
    for (int j = 0; j < p->n_servers; j++) {
        size_t lo = p->shard[j], n = p->shard[j + 1] - lo;
        if (n && MPI_Irecv(s->params + lo, (int)n, MPI_FLOAT,
                           mt_plan_server_rank(p, j), MT_TAG_PS_PARAMS,
                           s->comm, &ps->req[ps->n_req++]) != MPI_SUCCESS)
            return mt__ps_check(MPI_ERR_OTHER, "posting a pull", err);
    }
    return MT_OK;
}

/* A worker pulls every shard (answered once staleness allows); a
 * dedicated server has applied the pushes while it served. */
static int apply(mt_sync *s, mt_optim *o, float *params, float lr,
                 char *err)
{
    (void)o; /* the server steps s->optim as pushes arrive */
    (void)params;
    (void)lr;
    if (!mt__ps_is_worker(s))
        return MT_OK;
    int rc = post_pulls(s, err);
    mt_watch("parameter pull (staleness bound)");
    if (rc == MT_OK)
        rc = wait_serving(s, s->ps->req, s->ps->n_req, NULL,
                          "pulling the parameters", err);
    s->ps->n_req = 0;
    return rc;
}

/* This rank's server has answered every worker's fence of this round
 * (fast workers may already have asked for the next). */
static int all_fences_answered(const mt_sync *s)
{
    if (s->plan->server_index < 0)
        return 1;
    for (int w = 0; w < s->plan->dp_size; w++)
        if (s->ps->fdone[w] < s->ps->fence_no)
            return 0;
    return 1;
}

static int fence(mt_sync *s, char *err)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    start(s);
    int rc = MT_OK;
    ps->n_req = 0;
    ps->fence_no++;
    ps->fence_at[0] = (double)ps->steps;
    ps->fence_at[1] = (double)ps->fence_no;
    if (mt__ps_is_worker(s)) {
        rc = post_pulls(s, err);
        if (rc == MT_OK)
            rc = to_servers(s, ps->fence_at, 2, MT_TAG_PS_FENCE,
                            "sending a fence request", err);
    }
    mt_watch("parameter server fence (all workers' pushes)");
    if (rc == MT_OK)
        rc = wait_serving(s, ps->req, ps->n_req, all_fences_answered,
                          "meeting at a fence", err);
    ps->n_req = 0;
    /* A server's rank holds its shard's current values from here on (a
     * dedicated server's checkpoint writes them). */
    if (rc == MT_OK && p->server_index >= 0)
        memcpy(s->params + p->param_lo, ps->sparams,
               mt__ps_shard_len(p) * sizeof(float));
    return rc;
}

int mt__ps_async_init(mt_sync *s, char *err)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    size_t W = (size_t)p->dp_size, len = mt__ps_shard_len(p);
    ps->staleness = s->cfg.staleness;
    if (p->server_index < 0)
        return MT_OK;
    ps->sparams = mt_calloc(len + 1, sizeof(float));
    ps->reply = mt_calloc(W * len + 1, sizeof(float));
    ps->wreq = mt_calloc(W * (ps->mine + 1), sizeof(MPI_Request));
    ps->hdr = mt_calloc(3 * W, sizeof(double));
    ps->clock = mt_calloc(W, sizeof(uint64_t));
    ps->want = mt_calloc(W, sizeof(int64_t));
    ps->fwant = mt_calloc(W, sizeof(int64_t));
    ps->rsend = mt_calloc(W, sizeof(MPI_Request));
    ps->freq = mt_calloc(W, sizeof(MPI_Request));
    ps->fmsg = mt_calloc(2 * W, sizeof(double));
    ps->fdone = mt_calloc(W, sizeof(uint64_t));
    if (!ps->sparams || !ps->reply || !ps->wreq || !ps->hdr || !ps->clock ||
        !ps->want || !ps->fwant || !ps->rsend || !ps->freq || !ps->fmsg ||
        !ps->fdone) {
        mt_seterr(err, "parameter server: out of memory for the "
                       "asynchronous buffers of %zu workers",
                  W);
        return MT_ENOMEM;
    }
    for (size_t w = 0; w < W; w++)
        ps->rsend[w] = ps->freq[w] = MPI_REQUEST_NULL;
    for (size_t i = 0; i < W * (ps->mine + 1); i++)
        ps->wreq[i] = MPI_REQUEST_NULL;
    return MT_OK;
}

/* Cancels a receive left posted (the push or fence that never came). */
static void cancel(MPI_Request *r)
{
    if (*r == MPI_REQUEST_NULL)
        return;
    MPI_Cancel(r);
    MPI_Wait(r, MPI_STATUS_IGNORE);
}

void mt__ps_async_free(mt_sync *s)
{
    struct mt_ps *ps = s->ps;
    if (!ps || !ps->wreq)
        return;
    size_t W = (size_t)s->plan->dp_size;
    if (ps->started) {
        for (size_t i = 0; i < W * (ps->mine + 1); i++)
            cancel(&ps->wreq[i]);
        for (size_t w = 0; w < W; w++) {
            cancel(&ps->freq[w]);
            MPI_Wait(&ps->rsend[w], MPI_STATUS_IGNORE);
        }
    }
    mt_free(ps->sparams);
    mt_free(ps->reply);
    mt_free(ps->wreq);
    mt_free(ps->hdr);
    mt_free(ps->clock);
    mt_free(ps->want);
    mt_free(ps->fwant);
    mt_free(ps->rsend);
    mt_free(ps->freq);
    mt_free(ps->fmsg);
    mt_free(ps->fdone);
    ps->wreq = NULL;
}

const mt_sync_ops mt__sync_ps_async = {"ps async", begin, progress, finish,
                                       apply, fence};
