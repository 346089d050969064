/* sync = ps: a sharded parameter server (as ps-lite's workers and
 * servers, BytePS's summation servers), synchronous.
 *
 * The plan (plan.h) cuts the parameter arena into one shard per server.
 * Each gradient bucket is cut at shard boundaries into pieces; as soon as
 * backward has finished a bucket, a worker sends each piece to the server
 * that owns it (MPI_Isend, while backward goes on). A server has posted
 * one receive per worker and piece at the start of the step; it adds the
 * workers' pieces in worker order, steps the optimizer on its shard alone
 * (its momentum, Adam's m and v, live nowhere else) and sends the new
 * values of its shard to every worker, which receive every shard before
 * the next forward. Workers are run ranks 0 .. W - 1; a colocated server
 * is also a worker and keeps its own shard in place.
 *
 * Pieces travel in bucket order between each pair of ranks, under one
 * tag, and MPI keeps that order, so a receive always meets its piece. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/watchdog.h"
#include "parallel/ps_internal.h"
#include "parallel/sync_internal.h"

static int cut_pieces(mt_sync *s, struct mt_ps *ps, char *err)
{
    const mt_plan *p = s->plan;
    size_t n = 0;
    ps->first = mt_calloc(s->nb + 1, sizeof *ps->first);
    ps->piece = mt_calloc(s->nb * (size_t)p->n_servers + 1,
                          sizeof *ps->piece);
    if (!ps->first || !ps->piece) {
        mt_seterr(err, "parameter server: out of memory for pieces");
        return MT_ENOMEM;
    }
    for (size_t b = 0; b < s->nb; b++) {
        ps->first[b] = n;
        for (int j = 0; j < p->n_servers; j++) {
            size_t lo = s->b[b].lo > p->shard[j] ? s->b[b].lo : p->shard[j];
            size_t hi = s->b[b].hi < p->shard[j + 1] ? s->b[b].hi
                                                     : p->shard[j + 1];
            if (hi <= lo)
                continue;
            ps->piece[n++] = (ps_piece){lo, hi, j};
            if (j == p->server_index)
                ps->mine++;
        }
    }
    ps->first[s->nb] = n;
    return MT_OK;
}

int mt__sync_ps_init(mt_sync *s, char *err)
{
    const mt_plan *p = s->plan;
    struct mt_ps *ps = mt_calloc(1, sizeof *ps);
    if (!ps) {
        mt_seterr(err, "parameter server: out of memory");
        return MT_ENOMEM;
    }
    s->ps = ps;
    ps->self = -1;
    if (p->server_index >= 0 && (p->role & MT_ROLE_WORKER) &&
        !s->async)
        MPI_Comm_rank(s->comm, &ps->self);
    int rc = cut_pieces(s, ps, err);
    if (rc)
        return rc;
    /* At most: every piece pushed, every worker's pieces received, a
     * shard sent to every worker or every shard received. */
    ps->cap_req = ps->first[s->nb] + (size_t)p->dp_size * ps->mine +
                  (size_t)p->dp_size + (size_t)p->n_servers;
    ps->req = mt_calloc(ps->cap_req, sizeof *ps->req);
    if (p->server_index >= 0)
        ps->recv = mt_calloc((size_t)p->dp_size * mt__ps_shard_len(p) + 1,
                             sizeof(float));
    if (!ps->req || (p->server_index >= 0 && !ps->recv)) {
        mt_seterr(err, "parameter server: out of memory for %d workers' "
                       "pieces of a %zu-parameter shard",
                  p->dp_size, mt__ps_shard_len(p));
        return MT_ENOMEM;
    }
    return MT_OK;
}

void mt__sync_ps_free(mt_sync *s)
{
    struct mt_ps *ps = s->ps;
    if (!ps)
        return;
    mt_free(ps->piece);
    mt_free(ps->first);
    mt_free(ps->req);
    mt_free(ps->recv);
    mt_free(ps);
    s->ps = NULL;
}

int mt__ps_check(int rc, const char *what, char *err)
{
    if (rc == MPI_SUCCESS)
        return MT_OK;
    mt_seterr(err, "parameter server: %s failed", what);
    return MT_EIO;
}

/* A server posts, for each worker, a receive per piece of its shard, in
 * bucket order; the pushes go after them in the request list. */
static void begin(mt_sync *s)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    ps->n_req = 0;
    ps->begin_rc = MPI_SUCCESS;
    if (p->server_index < 0)
        return;
    size_t len = mt__ps_shard_len(p);
    for (int w = 0; w < p->dp_size; w++) {
        float *buf = ps->recv + (size_t)w * len; /* at shard position 0 */
        for (size_t k = 0; w != ps->self && k < ps->first[s->nb]; k++) {
            const ps_piece *pc = &ps->piece[k];
            if (pc->server != p->server_index)
                continue;
            int rc = MPI_Irecv(buf + (pc->lo - p->param_lo),
                               (int)(pc->hi - pc->lo),
                               MPI_FLOAT, w, MT_TAG_PS_GRAD, s->comm,
                               &ps->req[ps->n_req]);
            if (rc != MPI_SUCCESS) { /* reported by finish */
                ps->begin_rc = rc;
                return;
            }
            ps->n_req++;
        }
    }
}

int mt__ps_push(mt_sync *s, size_t ready, char *err)
{
    struct mt_ps *ps = s->ps;
    for (; s->next < ready; s->next++) {
        s->b[s->next].state = 1;
        for (size_t k = ps->first[s->next]; k < ps->first[s->next + 1];
             k++) {
            const ps_piece *pc = &ps->piece[k];
            if (ps->self >= 0 && pc->server == s->plan->server_index)
                continue; /* stays where the sum reads it */
            int rc = MPI_Isend(s->grads + pc->lo, (int)(pc->hi - pc->lo),
                               MPI_FLOAT,
                               mt_plan_server_rank(s->plan, pc->server),
                               MT_TAG_PS_GRAD, s->comm, &ps->req[ps->n_req]);
            if (mt__ps_check(rc, "sending a gradient piece (MPI_Isend)", err))
                return MT_EIO;
            ps->n_req++;
        }
    }
    return MT_OK;
}

static int progress(mt_sync *s, size_t ready, char *err)
{
    int rc = mt__ps_push(s, ready, err), flag = 0;
    if (rc == MT_OK && s->ps->n_req)
        rc = mt__ps_check(MPI_Testall((int)s->ps->n_req, s->ps->req, &flag,
                                      MPI_STATUSES_IGNORE),
                          "advancing the gradient pieces (MPI_Testall)", err);
    return rc;
}

/* The workers' pieces of this server's shard, added in worker order into
 * the gradient arena: ((w0 + w1) + w2) + ... A colocated server's own
 * piece is there already: the workers before it are summed apart and
 * added to it (a + b == b + a in IEEE arithmetic), the later ones into
 * it, so the floats are those of the order. */
static void sum_shard(mt_sync *s)
{
    const mt_plan *p = s->plan;
    size_t len = mt__ps_shard_len(p);
    int self = s->ps->self;
    float *g = s->grads + p->param_lo, *r0 = s->ps->recv;
    if (self < 0)
        memcpy(g, r0, len * sizeof(float));
    for (int w = 1; w < (self < 0 ? 1 : self); w++) {
        const float *r = s->ps->recv + (size_t)w * len;
        for (size_t i = 0; i < len; i++)
            r0[i] += r[i];
    }
    for (size_t i = 0; self > 0 && i < len; i++)
        g[i] = r0[i] + g[i];
    for (int w = (self < 0 ? 1 : self + 1); w < p->dp_size; w++) {
        const float *r = s->ps->recv + (size_t)w * len;
        for (size_t i = 0; i < len; i++)
            g[i] += r[i];
    }
}

static int finish(mt_sync *s, char *err)
{
    struct mt_ps *ps = s->ps;
    int rc = mt__ps_check(ps->begin_rc,
                          "posting the gradient receives (MPI_Irecv)", err);
    if (rc == MT_OK && mt__ps_is_worker(s))
        rc = mt__ps_push(s, s->nb, err);
    /* Every piece of this shard has arrived (a colocated server's own
     * stay in place) before the sum. */
    if (rc == MT_OK)
        rc = mt__ps_check(MPI_Waitall((int)ps->n_req, ps->req,
                                      MPI_STATUSES_IGNORE),
                          "exchanging gradient pieces (MPI_Waitall)", err);
    ps->n_req = 0;
    if (rc == MT_OK && s->plan->server_index >= 0)
        sum_shard(s);
    return rc;
}

/* The shard's update on its server, then every worker receives every
 * shard it does not own. */
static int apply(mt_sync *s, mt_optim *o, float *params, float lr,
                 char *err)
{
    struct mt_ps *ps = s->ps;
    const mt_plan *p = s->plan;
    if (p->server_index >= 0)
        mt_optim_step(o, params + p->param_lo, s->grads + p->param_lo, lr);
    if (s->size == 1)
        return MT_OK;
    mt_watch("parameter pull");
    int rc = MPI_SUCCESS, me;
    MPI_Comm_rank(s->comm, &me); /* a pipeline's: the replica */
    ps->n_req = 0;
    if (p->server_index >= 0 && mt__ps_shard_len(p) > 0)
        for (int w = 0; w < p->dp_size && rc == MPI_SUCCESS; w++)
            if (w != me)
                rc = MPI_Isend(params + p->param_lo, (int)mt__ps_shard_len(p),
                               MPI_FLOAT, w, MT_TAG_PS_PARAMS, s->comm,
                               &ps->req[ps->n_req++]);
    if (mt__ps_is_worker(s))
        for (int j = 0; j < p->n_servers && rc == MPI_SUCCESS; j++) {
            int from = mt_plan_server_rank(p, j);
            size_t lo = p->shard[j], n = p->shard[j + 1] - lo;
            if (from != me && n > 0)
                rc = MPI_Irecv(params + lo, (int)n, MPI_FLOAT, from,
                               MT_TAG_PS_PARAMS, s->comm,
                               &ps->req[ps->n_req++]);
        }
    if (rc == MPI_SUCCESS)
        rc = MPI_Waitall((int)ps->n_req, ps->req, MPI_STATUSES_IGNORE);
    ps->n_req = 0;
    return mt__ps_check(rc, "pulling the updated parameters", err);
}

const mt_sync_ops mt__sync_ps = {"ps", begin, progress, finish, apply, NULL};
