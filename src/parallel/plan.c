/* The parallel plan; see plan.h. */
#include "mpitrain/plan.h"

#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"

static int dup_comm(MPI_Comm comm, MPI_Comm *out)
{
    if (MPI_Comm_dup(comm, out) != MPI_SUCCESS)
        return MT_EIO;
    return MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN) == MPI_SUCCESS
               ? MT_OK
               : MT_EIO;
}

int mt_plan_init(mt_plan *p, const mt_config *cfg, MPI_Comm comm,
                 char *err)
{
    (void)cfg; /* one role for now; servers and stages will read it */
    memset(p, 0, sizeof *p);
    p->run = p->dp = MPI_COMM_NULL;
    if (dup_comm(comm, &p->run) || dup_comm(p->run, &p->dp)) {
        mt_seterr(err, "plan: duplicating the communicator failed");
        mt_plan_free(p);
        return MT_EIO;
    }
    MPI_Comm_rank(p->run, &p->rank);
    MPI_Comm_size(p->run, &p->size);
    MPI_Comm_rank(p->dp, &p->dp_rank);
    MPI_Comm_size(p->dp, &p->dp_size);
    p->role = MT_ROLE_WORKER;
    return MT_OK;
}

void mt_plan_own(mt_plan *p, const mt_model *m)
{
    p->layer_lo = 0;
    p->layer_hi = m->n_layers;
    p->param_lo = 0;
    p->param_hi = m->n_params;
}

void mt_plan_free(mt_plan *p)
{
    if (p->dp != MPI_COMM_NULL && p->dp != 0)
        MPI_Comm_free(&p->dp);
    if (p->run != MPI_COMM_NULL && p->run != 0)
        MPI_Comm_free(&p->run);
    p->run = p->dp = MPI_COMM_NULL;
}

void mt_plan_rows(const mt_plan *p, size_t n, size_t *lo, size_t *hi)
{
    mt_dist_share(n, p->dp_rank, p->dp_size, lo, hi);
}

static const char *role_name(mt_role r)
{
    return r == MT_ROLE_WORKER ? "data-parallel worker" : "?";
}

void mt_plan_describe(const mt_plan *p, const mt_model *m, size_t opt_slots,
                      void (*emit)(const char *line, void *user), void *user)
{
    size_t act = mt_shape_size(m->in);
    for (size_t i = 0; i < m->n_layers; i++)
        act += mt_shape_size(m->layers[i].out);
    size_t owned = p->param_hi - p->param_lo;
    /* params + gradients of the layers held, optimizer slots of the
     * shard owned, running statistics, activations and their gradients. */
    double mib = ((double)(2 * m->n_params + opt_slots * owned + m->n_state) +
                  2.0 * (double)act * (double)m->max_batch) *
                 sizeof(float) / 1048576.0;
    char line[256];
    snprintf(line, sizeof line,
             "plan: ranks 0-%d: %s (data-parallel group of %d); layers "
             "%zu-%zu of %zu, parameters [%zu, %zu) of %zu; %.1f MiB a rank "
             "(weights, gradients, %zu optimizer slot%s, activations of %zu "
             "samples)",
             p->size - 1, role_name(p->role), p->dp_size, p->layer_lo + 1,
             p->layer_hi, m->n_layers, p->param_lo, p->param_hi,
             m->n_params, mib, opt_slots, opt_slots == 1 ? "" : "s",
             m->max_batch);
    emit(line, user);
}
