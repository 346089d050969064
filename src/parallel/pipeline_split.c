/* Where a pipeline's stages begin (pipeline.h): each layer's cost,
 * measured, and the contiguous cut that makes the slowest stage as fast
 * as it can be (the bubble and every step wait for the slowest). */
#include <mpi.h>
#include <stdlib.h>

#include "mpitrain/pipeline.h"

static double total(const mt_pipe_costs *c)
{
    return c->f + c->b + c->w;
}

/* Seconds of stmt, the best of three after a warm-up. */
#define BEST_OF_3(secs, stmt)                                      \
    do {                                                           \
        (secs) = 1e30;                                             \
        for (int rep_ = 0; rep_ < 4; rep_++) {                     \
            double t0_ = MPI_Wtime();                              \
            stmt;                                                  \
            double d_ = MPI_Wtime() - t0_;                         \
            if (rep_ > 0 && d_ < (secs))                           \
                (secs) = d_;                                       \
        }                                                          \
    } while (0)

void mt_pipe_profile(mt_model *m, size_t B, int forward_only,
                     mt_pipe_costs *costs)
{
    /* recompute: batch norm's running statistics stay as they are */
    mt_step_ctx ctx = {.train = !forward_only, .recompute = 1};
    /* Training needs no input gradient below the first layer with
     * parameters (stage 0 skips it: pipeline.c), so neither does its
     * cost: conv1's would weigh stage 0 down (542 of LeNet-5's 2400 us
     * with the direct kernel). */
    int din = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        mt_layer *l = &m->layers[i];
        double f, all, in = 0.0;
        BEST_OF_3(f, mt_model_forward_range(m, &ctx, B, i, i + 1));
        costs[i] = (mt_pipe_costs){f, 0.0, 0.0};
        if (forward_only)
            continue; /* no gradient page touched */
        BEST_OF_3(all, mt_model_backward_range(m, B, i, i + 1, din));
        if (l->ops->backward_weight)
            BEST_OF_3(in,
                      mt_model_backward_inputs_range(m, B, i, i + 1, din));
        din |= l->n_param > 0;
        costs[i].b = l->ops->backward_weight ? in : all;
        costs[i].w = l->ops->backward_weight && all > in ? all - in : 0.0;
        mt_model_release_grads(m, i, i + 1); /* one layer's at a time */
    }
}

/* Can layers [0, L) go into P stages of at most `limit` each, greedily? */
static int fits(const mt_pipe_costs *c, size_t L, int P, double limit)
{
    int used = 1;
    double cur = 0.0;
    for (size_t i = 0; i < L; i++) {
        double x = total(&c[i]);
        if (x > limit)
            return 0;
        if (cur + x > limit) {
            if (++used > P)
                return 0;
            cur = 0.0;
        }
        cur += x;
    }
    return 1;
}

void mt_pipe_split(const mt_pipe_costs *c, size_t L, int P, size_t *bounds)
{
    /* The smallest feasible limit by bisection, then the greedy cut at
     * it, then every stage given at least one layer from the end. */
    double lo = 0.0, hi = 0.0;
    for (size_t i = 0; i < L; i++)
        hi += total(&c[i]);
    hi = hi > 0.0 ? hi * 1.000001 + 1e-12 : 1.0;
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi);
        if (fits(c, L, P, mid))
            hi = mid;
        else
            lo = mid;
    }
    int s = 0;
    double cur = 0.0;
    bounds[0] = 0;
    for (size_t i = 0; i < L; i++) {
        double x = total(&c[i]);
        if (cur + x > hi && cur > 0.0 && s + 1 < P) {
            bounds[++s] = i;
            cur = 0.0;
        }
        cur += x;
    }
    for (int k = s + 1; k <= P; k++)
        bounds[k] = L;
    /* Fewer cuts than stages (cheap layers): the empty stages at the end
     * each take one layer from the stages before. */
    for (int k = P - 1; k > 0; k--)
        if (bounds[k] >= bounds[k + 1])
            bounds[k] = bounds[k + 1] - 1;
}

void mt_pipe_stage_costs(const mt_pipe_costs *c, const size_t *bounds,
                         int P, mt_pipe_costs *out)
{
    for (int s = 0; s < P; s++) {
        out[s] = (mt_pipe_costs){0.0, 0.0, 0.0};
        for (size_t i = bounds[s]; i < bounds[s + 1]; i++) {
            out[s].f += c[i].f;
            out[s].b += c[i].b;
            out[s].w += c[i].w;
        }
    }
}
