/* The parallel plan; see plan.h. */
#include "mpitrain/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/sync.h"

static int dup_comm(MPI_Comm comm, MPI_Comm *out)
{
    if (MPI_Comm_dup(comm, out) != MPI_SUCCESS)
        return MT_EIO;
    return MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN) == MPI_SUCCESS
               ? MT_OK
               : MT_EIO;
}

/* Roles from [parallel] sync and servers; every rank decides alike. */
static int assign_roles(mt_plan *p, const mt_config *cfg, char *err)
{
    p->role = MT_ROLE_WORKER;
    p->dp_size = p->size;
    p->server_index = -1;
    if (cfg->sync != MT_SYNC_PS)
        return MT_OK;
    if (cfg->ps_servers == 0) { /* colocated */
        p->role |= MT_ROLE_SERVER;
        p->n_servers = p->size;
        p->server_index = p->rank;
        return MT_OK;
    }
    if (cfg->ps_servers >= (size_t)p->size) {
        mt_seterr(err, "%s: [parallel] servers = %zu leaves no worker at %d "
                       "rank%s (run at least %zu ranks, or servers = "
                       "colocated)",
                  cfg->path, cfg->ps_servers, p->size,
                  p->size == 1 ? "" : "s", cfg->ps_servers + 1);
        return MT_EINVAL;
    }
    p->n_servers = (int)cfg->ps_servers;
    p->dp_size = p->size - p->n_servers;
    if (p->rank >= p->dp_size) {
        p->role = MT_ROLE_SERVER;
        p->server_index = p->rank - p->dp_size;
    }
    return MT_OK;
}

/* Splits comm into `color` groups ranked by `key`, returning errors. */
static int split_comm(MPI_Comm comm, int color, int key, MPI_Comm *out)
{
    if (MPI_Comm_split(comm, color, key, out) != MPI_SUCCESS)
        return MT_EIO;
    if (*out != MPI_COMM_NULL &&
        MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN) != MPI_SUCCESS)
        return MT_EIO;
    return MT_OK;
}

/* The stage x replica grid (plan.h): run rank = replica x P + stage. */
static int pipeline_grid(mt_plan *p, const mt_config *cfg, char *err)
{
    int P = (int)cfg->stages;
    if (p->size % P) {
        mt_seterr(err, "%s: [parallel] stages = %d does not divide the %d "
                       "rank%s: run a multiple of %d ranks (stages x "
                       "replicas)",
                  cfg->path, P, p->size, p->size == 1 ? "" : "s", P);
        return MT_EINVAL;
    }
    p->stages = P;
    p->stage = p->rank % P;
    p->replica = p->rank / P;
    p->dp_size = p->size / P;
    p->dp_rank = p->replica;
    if (p->n_servers) { /* ps: a stage's replicas serve its shards */
        p->n_servers = p->dp_size;
        p->server_index = p->replica;
    }
    if (split_comm(p->run, p->stage, p->replica, &p->dp) ||
        split_comm(p->run, p->replica, p->stage, &p->pipe)) {
        mt_seterr(err, "plan: splitting the pipeline's communicators "
                       "failed");
        return MT_EIO;
    }
    return MT_OK;
}

int mt_plan_init(mt_plan *p, const mt_config *cfg, MPI_Comm comm,
                 char *err)
{
    memset(p, 0, sizeof *p);
    p->run = p->dp = p->pipe = MPI_COMM_NULL;
    p->stages = 1;
    if (dup_comm(comm, &p->run)) {
        mt_seterr(err, "plan: duplicating the communicator failed");
        mt_plan_free(p);
        return MT_EIO;
    }
    MPI_Comm_rank(p->run, &p->rank);
    MPI_Comm_size(p->run, &p->size);
    int rc = assign_roles(p, cfg, err);
    /* [parallel] is ignored on one rank (docs/config.md). */
    if (rc == MT_OK && cfg->stages > 1 && p->size > 1) {
        /* A replica's stages evaluate its share together. */
        rc = pipeline_grid(p, cfg, err);
        p->eval_rank = p->dp_rank;
        p->eval_size = p->dp_size;
    } else if (rc == MT_OK) {
        /* The workers' group; dedicated servers get MPI_COMM_NULL. */
        int worker = (p->role & MT_ROLE_WORKER) != 0;
        if (split_comm(p->run, worker ? 0 : MPI_UNDEFINED, p->rank, &p->dp)) {
            mt_seterr(err, "plan: splitting the workers' communicator "
                           "failed");
            rc = MT_EIO;
        }
        p->dp_rank = -1;
        if (rc == MT_OK && worker)
            MPI_Comm_rank(p->dp, &p->dp_rank);
        p->eval_rank = p->dp_rank;
        p->eval_size = p->dp_size;
    }
    if (rc)
        mt_plan_free(p);
    return rc;
}

int mt_plan_server_rank(const mt_plan *p, int i)
{
    /* a pipeline's: rank i of the stage's dp */
    return p->n_servers == p->size || p->stages > 1 ? i : p->dp_size + i;
}

/* The row boundary of m's parameter arena nearest to `target`. Tensors
 * lie in the arena in layer order, each a whole number of rows. */
static size_t nearest_row_cut(const mt_model *m, size_t target)
{
    for (size_t i = 0; i < m->n_layers; i++) {
        const mt_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_param; k++) {
            const mt_tensor *t = &l->param[k];
            size_t off = (size_t)(t->data - m->params);
            if (target >= off + t->n)
                continue;
            size_t row = t->n / (size_t)t->dims[0];
            return off + (target - off + row / 2) / row * row;
        }
    }
    return m->n_params;
}

/* The servers' shards of arena range [from, to): balanced, cut at
 * tensor rows; this rank's (if a server) becomes its parameter range. */
static int cut_shards(mt_plan *p, const mt_model *m, size_t from, size_t to,
                      char *err)
{
    mt_free(p->shard);
    p->shard = mt_calloc((size_t)p->n_servers + 1, sizeof *p->shard);
    if (!p->shard) {
        mt_seterr(err, "plan: out of memory for %d shards", p->n_servers);
        return MT_ENOMEM;
    }
    p->shard[0] = from;
    for (int i = 1; i < p->n_servers; i++) {
        size_t lo, hi;
        mt_dist_share(to - from, i, p->n_servers, &lo, &hi);
        size_t cut = nearest_row_cut(m, from + lo);
        cut = cut < to ? cut : to;
        p->shard[i] = cut > p->shard[i - 1] ? cut : p->shard[i - 1];
    }
    p->shard[p->n_servers] = to;
    p->param_lo = p->param_hi = 0;
    if (p->server_index >= 0) {
        p->param_lo = p->shard[p->server_index];
        p->param_hi = p->shard[p->server_index + 1];
    }
    return MT_OK;
}

/* Pipeline: stage s owns its layers and their parameters (with ps, its
 * replicas share them out as shards). */
static int own_stage(mt_plan *p, const mt_model *m, const size_t *bounds,
                     char *err)
{
    mt_free(p->bounds);
    p->bounds = mt_calloc((size_t)p->stages + 1, sizeof *p->bounds);
    if (!p->bounds) {
        mt_seterr(err, "plan: out of memory for %d stages", p->stages);
        return MT_ENOMEM;
    }
    memcpy(p->bounds, bounds, ((size_t)p->stages + 1) * sizeof *bounds);
    p->layer_lo = bounds[p->stage];
    p->layer_hi = bounds[p->stage + 1];
    p->replicated = 0;
    mt_model_span(m, p->layer_lo, p->layer_hi, 0, &p->param_lo,
                  &p->param_hi);
    if (p->n_servers)
        return cut_shards(p, m, p->param_lo, p->param_hi, err);
    return MT_OK;
}

int mt_plan_own(mt_plan *p, const mt_model *m, const size_t *bounds,
                char *err)
{
    if (p->stages > 1)
        return own_stage(p, m, bounds, err);
    p->layer_lo = 0;
    p->layer_hi = m->n_layers;
    p->replicated = p->n_servers == 0;
    if (p->replicated) {
        p->param_lo = 0;
        p->param_hi = m->n_params;
        return MT_OK;
    }
    return cut_shards(p, m, 0, m->n_params, err);
}

void mt_plan_free(mt_plan *p)
{
    MPI_Comm *comms[] = {&p->pipe, &p->dp, &p->run};
    for (int i = 0; i < 3; i++) {
        if (*comms[i] != MPI_COMM_NULL && *comms[i] != 0)
            MPI_Comm_free(comms[i]);
        *comms[i] = MPI_COMM_NULL;
    }
    mt_free(p->shard);
    p->shard = NULL;
    mt_free(p->bounds);
    p->bounds = NULL;
}

void mt_plan_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi)
{
    if (p->dp_rank < 0) {
        *lo = *hi = 0;
        return;
    }
    mt_dist_share(n, p->dp_rank, p->dp_size, lo, hi);
}

void mt_plan_eval_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi)
{
    if (p->eval_rank < 0) {
        *lo = *hi = 0;
        return;
    }
    mt_dist_share(n, p->eval_rank, p->eval_size, lo, hi);
}

static const char *role_name(int role, int n_servers)
{
    if (role == (MT_ROLE_WORKER | MT_ROLE_SERVER))
        return "worker and parameter server";
    if (role == MT_ROLE_SERVER)
        return "parameter server";
    return n_servers ? "worker" : "data-parallel worker";
}

/* Memory of a rank: params + gradients of the layers held, optimizer
 * slots of the part owned, running statistics, and (workers)
 * activations and their gradients; servers also hold one gradient
 * buffer per worker for their shard. */
static double rank_mib(const mt_plan *p, const mt_model *m, size_t opt_slots,
                       int role, size_t owned)
{
    size_t act = mt_shape_size(m->in);
    for (size_t i = 0; i < m->n_layers; i++)
        act += mt_shape_size(m->layers[i].out);
    double floats = (double)(2 * m->n_params + opt_slots * owned +
                             m->n_state);
    if (role & MT_ROLE_WORKER)
        floats += 2.0 * (double)act * (double)m->max_batch;
    if (role & MT_ROLE_SERVER)
        floats += (double)p->dp_size * (double)owned;
    return floats * sizeof(float) / 1048576.0;
}

static void describe_ranks(const mt_plan *p, const mt_model *m,
                           size_t opt_slots, int lo, int hi, int role,
                           size_t plo, size_t phi,
                           void (*emit)(const char *line, void *user),
                           void *user)
{
    char line[320], who[32], act[64] = "";
    if (hi > lo)
        snprintf(who, sizeof who, "ranks %d-%d", lo, hi);
    else
        snprintf(who, sizeof who, "rank %d", lo);
    if (role & MT_ROLE_WORKER)
        snprintf(act, sizeof act, ", activations of %zu samples",
                 m->max_batch);
    snprintf(line, sizeof line,
             "plan: %s: %s (data-parallel group of %d); layers %zu-%zu of "
             "%zu, parameters [%zu, %zu) of %zu owned; %.1f MiB a rank "
             "(weights, gradients, %zu optimizer slot%s%s)",
             who, role_name(role, p->n_servers), p->dp_size,
             p->layer_lo + 1, p->layer_hi, m->n_layers, plo, phi,
             m->n_params, rank_mib(p, m, opt_slots, role, phi - plo),
             opt_slots, opt_slots == 1 ? "" : "s", act);
    emit(line, user);
}

/* MiB a stage's rank holds of the model: its layers' weights,
 * gradients, slots and statistics, and its activations act[a] ..
 * act[b] (mt_model_keep_layers). */
static double stage_mib(const mt_plan *p, const mt_model *m,
                        size_t opt_slots, size_t a, size_t b, size_t rows)
{
    size_t lo, hi, slo, shi, act = a == 0 ? mt_shape_size(m->in) : 0;
    mt_model_span(m, a, b, 0, &lo, &hi);
    mt_model_span(m, a, b, 1, &slo, &shi);
    for (size_t i = a ? a - 1 : 0; i < b; i++)
        act += mt_shape_size(m->layers[i].out);
    /* with ps a replica holds the slots of its shard of the stage */
    double slots = (double)(opt_slots * (hi - lo)) /
                   (double)(p->n_servers ? p->n_servers : 1);
    double floats = (double)(2 * (hi - lo) + (shi - slo)) + slots +
                    2.0 * (double)act * (double)rows;
    return floats * sizeof(float) / 1048576.0;
}

/* Pipeline: a line per stage; its ranks are stage, stage + P, ... */
static void describe_stages(const mt_plan *p, const mt_model *m,
                            size_t opt_slots, const size_t *act_rows,
                            void (*emit)(const char *line, void *user),
                            void *user)
{
    for (int s = 0; s < p->stages; s++) {
        char line[400], who[96] = "";
        for (int r = 0; r < p->dp_size && strlen(who) < 80; r++)
            snprintf(who + strlen(who), sizeof who - strlen(who), "%s%d",
                     r ? "," : "", r * p->stages + s);
        size_t lo, hi, a = p->bounds[s], b = p->bounds[s + 1],
                       rows = act_rows ? act_rows[s] : m->max_batch;
        mt_model_span(m, a, b, 0, &lo, &hi);
        snprintf(line, sizeof line,
                 "plan: stage %d of %d, rank%s %s: layers %zu-%zu of %zu, "
                 "parameters [%zu, %zu) of %zu owned; %.1f MiB a rank "
                 "(its layers' weights, gradients and %zu optimizer "
                 "slot%s%s, activations of %zu samples)",
                 s + 1, p->stages, p->dp_size == 1 ? "" : "s", who, a + 1, b,
                 m->n_layers, lo, hi, m->n_params,
                 stage_mib(p, m, opt_slots, a, b, rows), opt_slots,
                 opt_slots == 1 ? "" : "s",
                 p->n_servers ? " of a replica's shard (ps)" : "", rows);
        emit(line, user);
    }
}

void mt_plan_describe(const mt_plan *p, const mt_model *m, size_t opt_slots,
                      const size_t *act_rows,
                      void (*emit)(const char *line, void *user), void *user)
{
    if (p->stages > 1) {
        describe_stages(p, m, opt_slots, act_rows, emit, user);
        return;
    }
    if (p->n_servers == 0) {
        describe_ranks(p, m, opt_slots, 0, p->size - 1, MT_ROLE_WORKER, 0,
                       m->n_params, emit, user);
        return;
    }
    if (p->n_servers < p->size)
        describe_ranks(p, m, opt_slots, 0, p->dp_size - 1, MT_ROLE_WORKER, 0,
                       0, emit, user);
    int role = p->n_servers == p->size ? MT_ROLE_WORKER | MT_ROLE_SERVER
                                       : MT_ROLE_SERVER;
    for (int i = 0; i < p->n_servers; i++) {
        int r = mt_plan_server_rank(p, i);
        describe_ranks(p, m, opt_slots, r, r, role, p->shard[i],
                       p->shard[i + 1], emit, user);
    }
}
