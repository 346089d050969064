/* Where a pipeline's stages begin, for training (pipe_step.c) and for
 * inference: eval, predict and explain on a pipeline's config go forward
 * through the stages, each rank holding only its stage's layers, so a
 * model no rank can hold whole is evaluated as it was trained. */
#include <stdlib.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/train.h"
#include "train/internal.h"

int mt__stage_bounds(const mt_config *c, const mt_pipe_costs *cost, size_t L,
                     size_t *b, char *err)
{
    size_t P = c->stages;
    if (P > L) {
        mt_seterr(err, "%s: [parallel] stages = %zu, but the model has %zu "
                       "layers: a stage needs one",
                  c->path, P, L);
        return MT_EINVAL;
    }
    if (c->n_split == 0) {
        mt_pipe_split(cost, L, (int)P, b);
        return MT_OK;
    }
    b[0] = 0;
    b[P] = L;
    for (size_t s = 1; s < P; s++) {
        b[s] = c->split[s - 1];
        if (b[s] >= L) {
            mt_seterr(err, "%s: [parallel] split = %s: layer %zu is the last "
                           "of the model's %zu; each stage needs a layer",
                      c->path, c->split_text, b[s], L);
            return MT_EINVAL;
        }
    }
    return MT_OK;
}

/* The cut for forward passes: [parallel] split, or the layers' measured
 * forward times (the backward's do not matter here), summed over the
 * ranks so that every rank cuts alike. */
static int infer_bounds(const mt_config *cfg, mt_plan *plan, mt_model *m,
                        size_t *bounds, char *err)
{
    size_t L = m->n_layers;
    mt_pipe_costs *cost = mt_calloc(L, sizeof *cost);
    if (!cost) {
        mt_seterr(err, "out of memory for the pipeline's plan");
        return MT_ENOMEM;
    }
    if (cfg->n_split == 0) {
        mt_pipe_profile(m, m->max_batch, 1, cost);
        MPI_Allreduce(MPI_IN_PLACE, cost, (int)(3 * L), MPI_DOUBLE, MPI_SUM,
                      plan->run);
    }
    int rc = mt__stage_bounds(cfg, cost, L, bounds, err);
    mt_free(cost);
    return rc;
}

int mt_pipe_infer_cut(const mt_config *cfg, mt_plan *plan, mt_model *m,
                      mt_pipe_stage *st, char *err)
{
    size_t *bounds = mt_calloc(cfg->stages + 1, sizeof *bounds);
    int rc = bounds ? infer_bounds(cfg, plan, m, bounds, err) : MT_ENOMEM;
    if (!bounds)
        mt_seterr(err, "out of memory for the pipeline's plan");
    if (rc == MT_OK)
        rc = mt_plan_own(plan, m, bounds, err);
    if (rc == MT_OK)
        rc = mt_model_keep_layers(m, plan->layer_lo, plan->layer_hi, err);
    *st = (mt_pipe_stage){m, plan->layer_lo, plan->layer_hi, plan->stage,
                          plan->stages, plan->pipe, 0};
    mt_free(bounds);
    return mt_dist_agree(plan->run, rc, err);
}
