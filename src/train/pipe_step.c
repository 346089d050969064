/* The trainer's pipeline ([parallel] stages > 1): where the stages begin,
 * the schedule laid out once, and one optimizer step through the stages
 * (DESIGN.md, the pipeline). The plan's grid gives each rank its stage
 * and replica; every stage of a replica draws the replica's samples
 * (mt_plan_rows), so stage 0 has the inputs and the last stage the
 * labels without sending either down the pipe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* Samples a replica's stages see of a step at most, and the micro-batches
 * they are cut into: [parallel] micro_batches, or 4 per stage (auto, as
 * many as there are samples at most). */
static size_t replica_rows(const trainer *t)
{
    size_t R = (size_t)t->plan.dp_size;
    return (t->cfg->batch + R - 1) / R;
}

static int micro_count(const trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    size_t rows = replica_rows(t), M = c->micro_batches;
    if (M == 0)
        return (int)(4 * c->stages < rows ? 4 * c->stages : rows);
    if (M > rows) {
        mt_seterr(err, "%s: [parallel] micro_batches = %zu: a replica gets "
                       "%zu sample%s of each batch of %zu (%d replica%s), "
                       "and a micro-batch needs one",
                  c->path, M, rows, rows == 1 ? "" : "s", c->batch,
                  t->plan.dp_size, t->plan.dp_size == 1 ? "" : "s");
        return -1;
    }
    return (int)M;
}

/* The plans of the short steps (an epoch's last batch, the last of a
 * step's accumulated batches) with fewer samples than micro-batches: one
 * micro-batch a sample, unit costs (a short step is not worth a profile). */
static int make_short_plans(trainer *t, char *err)
{
    int M = t->pipe_plan.micro, P = t->plan.stages, rc = MT_OK;
    mt_pipe_costs *unit = mt_calloc((size_t)P, sizeof *unit);
    t->pipe_short = M > 1 ? mt_calloc((size_t)M - 1, sizeof *t->pipe_short)
                          : NULL;
    if (!unit || (M > 1 && !t->pipe_short)) {
        mt_free(unit);
        mt_seterr(err, "out of memory for the pipeline's plans");
        return MT_ENOMEM;
    }
    for (int s = 0; s < P; s++)
        unit[s] = (mt_pipe_costs){1.0, 1.0, 1.0};
    for (int n = 1; n < M && rc == MT_OK; n++)
        rc = mt_pipe_plan_make(&t->pipe_short[n - 1], t->pipe_plan.schedule,
                               P, n, unit, err);
    mt_free(unit);
    return rc;
}

int mt__pipe_setup(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    size_t L = t->model.n_layers, P = c->stages, G = replica_rows(t);
    int M = micro_count(t, err);
    if (M < 0)
        return MT_EINVAL;
    mt_pipe_costs *cost = mt_calloc(L + P, sizeof *cost);
    size_t *bounds = mt_calloc(P + 1, sizeof *bounds);
    if (!cost || !bounds) {
        mt_free(cost);
        mt_free(bounds);
        mt_seterr(err, "out of memory for the pipeline's plan");
        return MT_ENOMEM;
    }
    /* Every rank measures; the sum over the ranks (the mean times their
     * count: the cut and the bubble only compare costs) is the same
     * everywhere, so every rank cuts alike. */
    size_t micro_rows = (G + (size_t)M - 1) / (size_t)M; /* the largest */
    mt_pipe_profile(&t->model, micro_rows, 0, cost);
    MPI_Allreduce(MPI_IN_PLACE, cost, (int)(3 * L), MPI_DOUBLE, MPI_SUM,
                  t->comm);
    int rc = mt__stage_bounds(c, cost, L, bounds, err);
    if (rc == MT_OK)
        rc = mt_plan_own(&t->plan, &t->model, bounds, err);
    if (rc == MT_OK) {
        mt_pipe_stage_costs(cost, bounds, (int)P, cost + L);
        rc = mt_pipe_plan_make(&t->pipe_plan, (mt_pipe_schedule)c->pipe_schedule,
                               (int)P, M, cost + L, err);
    }
    /* Evaluation in chunks of a micro-batch: the activation rows that
     * training keeps are all it touches. */
    t->pipe_stage = (mt_pipe_stage){&t->model, t->plan.layer_lo,
                                    t->plan.layer_hi, t->plan.stage,
                                    t->plan.stages, t->plan.pipe,
                                    micro_rows};
    if (rc == MT_OK)
        rc = make_short_plans(t, err);
    if (rc == MT_OK)
        rc = mt_pipe_work_init(&t->pipe_work, &t->pipe_stage,
                               (mt_pipe_schedule)c->pipe_schedule, G,
                               (size_t)M, c->pipe_recompute, err);
    /* Only stage 0 reads the inputs (mt__reads_inputs). */
    t->pipe_x = rc || t->plan.stage > 0
                    ? NULL
                    : mt_calloc(G * mt_shape_size(t->model.in), sizeof(float));
    if (rc == MT_OK && t->plan.stage == 0 && !t->pipe_x) {
        mt_seterr(err, "out of memory for the pipeline's inputs");
        rc = MT_ENOMEM;
    }
    /* Measured (on zero weights: the time is the same) and cut: from
     * here on a stage holds its layers only, and sets their values. */
    if (rc == MT_OK)
        rc = mt_model_keep_layers(&t->model, t->plan.layer_lo,
                                  t->plan.layer_hi, err);
    if (rc == MT_OK)
        mt_model_init_params(&t->model, t->plan.layer_lo, t->plan.layer_hi,
                             c->seed);
    mt_free(cost);
    mt_free(bounds);
    return rc;
}

void mt__pipe_describe(const trainer *t)
{
    const mt_pipe_plan *p = &t->pipe_plan;
    size_t rows = replica_rows(t);
    int held = 0;
    for (int s = 0; s < p->stages; s++)
        held = p->peak_held[s] > held ? p->peak_held[s] : held;
    printf("  pipeline: %s, %d micro-batches of up to %zu samples a step "
           "and replica; expected bubble %.2f (measured layer costs); at "
           "most %d micro-batch%s of activations held a stage\n",
           mt_pipe_schedule_names[p->schedule], p->micro,
           (rows + (size_t)p->micro - 1) / (size_t)p->micro, p->bubble, held,
           held == 1 ? "" : "es");
}

size_t *mt__pipe_act_rows(const trainer *t)
{
    const mt_plan *pl = &t->plan;
    size_t *rows = mt_calloc((size_t)pl->stages, sizeof *rows);
    for (int s = 0; rows && s < pl->stages; s++)
        rows[s] = mt_pipe_activation_rows(&t->pipe_plan, s, &t->model,
                                          pl->bounds[s], pl->bounds[s + 1],
                                          replica_rows(t),
                                          t->cfg->pipe_recompute);
    return rows;
}

void mt__pipe_free(trainer *t)
{
    for (int n = 1; t->pipe_short && n < t->pipe_plan.micro; n++)
        mt_pipe_plan_free(&t->pipe_short[n - 1]);
    mt_free(t->pipe_short);
    t->pipe_short = NULL;
    mt_pipe_plan_free(&t->pipe_plan);
    mt_pipe_work_free(&t->pipe_work);
    mt_free(t->pipe_x);
    t->pipe_x = NULL;
}

/* The plan for a step of n samples (n > 0): the configured one, or a
 * short step's. */
static const mt_pipe_plan *plan_for(const trainer *t, size_t n)
{
    return n >= (size_t)t->pipe_plan.micro ? &t->pipe_plan
                                           : &t->pipe_short[n - 1];
}

/* The last stage's counts of each micro-batch's outputs. */
typedef struct counts {
    trainer *t;
    double *sums; /* MT__STEP_SUMS */
    int has_labels;
} counts;

static void count_outputs(void *user, const float *out, size_t row0,
                          size_t rows)
{
    counts *c = user;
    const trainer *t = c->t;
    double part[MT__STEP_SUMS];
    mt__output_sums(t, out, c->has_labels ? t->labels + row0 : NULL,
                    t->targets + row0 * t->K, rows, part);
    for (int j = 1; j < MT__STEP_SUMS; j++) /* [2] is a flag */
        c->sums[j] = j == 2 ? (part[2] > 0.0 ? 1.0 : c->sums[2])
                            : c->sums[j] + part[j];
}

int mt__step_pipeline(trainer *t, uint64_t step, size_t g0, size_t G,
                      double local[MT__STEP_SUMS], char *err)
{
    size_t mb = t->cfg->batch;
    int rc = MT_OK;
    mt_model_zero_grad(&t->model);
    mt_sync_begin(&t->sync);
    mt_loss_opts lo = {.class_w = t->class_w,
                       .focal_gamma = t->cfg->focal_gamma};
    counts cnt = {t, local, 0};
    /* [train] accumulate: several batches, each through the pipe. */
    for (size_t m0 = g0; m0 < g0 + G && rc == MT_OK; m0 += mb) {
        size_t Gm = g0 + G - m0 < mb ? g0 + G - m0 : mb, a, b;
        mt__batch_slice(t, Gm, &a, &b);
        if (b == a)
            continue; /* every stage of this replica alike */
        cnt.has_labels = mt__gather_batch(t, b - a, t->pipe_x);
        const mt_pipe_plan *p = plan_for(t, b - a);
        mt_pipe_batch pb = {
            .x = t->pipe_x,
            .labels = cnt.has_labels ? t->labels : NULL,
            .targets = t->targets,
            .G = b - a,
            .loss = (mt_loss_kind)t->cfg->loss,
            .ctx = {.train = 1, .seed = t->cfg->seed, .step = step,
                    .sample0 = m0 + a},
            .loss_opts = &lo,
            .scale = 1.0f / (float)G,
            .on_output = count_outputs,
            .user = &cnt};
        double loss = 0.0;
        rc = mt_pipe_step(p, &t->pipe_stage, &t->pipe_work, &pb, &loss,
                          NULL, err);
        local[0] += loss;
    }
    mt_watch("gradient sync (a stage's replicas)");
    if (rc == MT_OK)
        rc = mt_sync_finish(&t->sync, err);
    /* The last stages hold the sums; the others add zeros. */
    mt_watch("the step's loss sums (MPI_Allreduce)");
    if (rc == MT_OK)
        rc = mt_dist_allreduce_sum_d(t->comm, local, MT__STEP_SUMS, err);
    return rc;
}

int mt__reads_inputs(const trainer *t)
{
    return t->plan.stages == 1 || t->plan.stage == 0;
}

const mt_pipe_stage *mt__eval_pipe(const trainer *t)
{
    return t->plan.stages > 1 ? &t->pipe_stage : NULL;
}

int mt__pipe_save_weights(trainer *t, const char *path, char *err)
{
    const mt_plan *p = &t->plan;
    int rc = MT_OK;
    if (p->replica == 0) { /* stage by stage, each its layers */
        mt_watch("writing weights.h5, stage after stage (MPI_Recv)");
        if (p->stage > 0 &&
            MPI_Recv(&rc, 1, MPI_INT, p->stage - 1, MT_TAG_PIPE_WEIGHTS,
                     p->pipe, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            mt_seterr(err, "pipeline stage %d: waiting for stage %d to "
                           "write its weights failed",
                      p->stage, p->stage - 1);
            return mt_dist_agree(t->comm, MT_EIO, err);
        }
        int mine = rc == MT_OK ? mt_weights_save_part(
                                     &t->model, path, t->config_text,
                                     p->stage == 0,
                                     p->stage == p->stages - 1, err)
                               : MT_OK;
        if (p->stage + 1 < p->stages)
            MPI_Send(rc ? &rc : &mine, 1, MPI_INT, p->stage + 1,
                     MT_TAG_PIPE_WEIGHTS, p->pipe);
        rc = mine;
    }
    return mt_dist_agree(t->comm, rc, err);
}
