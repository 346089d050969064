#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"

void gc_fill_spaced(float *x, size_t n, float spacing, uint64_t seed)
{
    size_t *perm = malloc(n * sizeof *perm);
    mt_rng_permutation(perm, n, seed, 99, 0);
    for (size_t i = 0; i < n; i++) {
        double v = ((double)perm[i] - (double)n / 2.0 + 0.5) * 2.0 * spacing;
        x[i] = (float)v;
    }
    free(perm);
}

/* L = sum(r .* forward(x)) in double. */
static double objective(mt_model *m, const mt_step_ctx *ctx, size_t B,
                        const float *r)
{
    const float *y = mt_model_forward(m, ctx, B);
    size_t n = B * mt_shape_size(mt_model_out(m));
    double L = 0.0;
    for (size_t i = 0; i < n; i++)
        L += (double)r[i] * y[i];
    return L;
}

static double rel(double a, double b, double floor)
{
    return fabs(a - b) / (fabs(a) + fabs(b) + floor);
}

/* Perturbs v[i] by +-h and compares with the analytic derivative. */
static double check_values(mt_model *m, const mt_step_ctx *ctx, size_t B,
                           const float *r, float *v, const float *analytic,
                           size_t n, float h, double floor)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + h;
        double lp = objective(m, ctx, B, r);
        v[i] = keep - h;
        double lm = objective(m, ctx, B, r);
        v[i] = keep;
        double num = (lp - lm) / (2.0 * h);
        double e = rel(analytic[i], num, floor);
        worst = e > worst ? e : worst;
    }
    return worst;
}

double gc_layer(mt_model *m, size_t B, const mt_step_ctx *ctx, float h,
                double floor)
{
    mt_layer *l = &m->layers[0];
    size_t nin = B * mt_shape_size(m->in);
    size_t nout = B * mt_shape_size(mt_model_out(m));
    float *r = malloc(nout * sizeof *r), *dx = malloc(nin * sizeof *dx);
    for (size_t i = 0; i < nout; i++)
        r[i] = 2.0f * mt_rng_uniform(7, 98, 0, i) - 1.0f;
    objective(m, ctx, B, r);
    mt_model_zero_grad(m);
    l->ops->backward(l, m->act[0], m->act[1], r, dx, B);
    float *g = malloc((m->n_params + 1) * sizeof *g);
    memcpy(g, m->grads, m->n_params * sizeof *g);

    double worst = check_values(m, ctx, B, r, m->act[0], dx, nin, h, floor);
    double wp = check_values(m, ctx, B, r, m->params, g, m->n_params, h,
                             floor);
    free(r);
    free(dx);
    free(g);
    return worst > wp ? worst : wp;
}

size_t gc_first_far(const float *got, const float *want, size_t len,
                    float *top)
{
    *top = 0.0f;
    for (size_t i = 0; i < len; i++)
        *top = fmaxf(*top, fabsf(want[i]));
    for (size_t i = 0; i < len; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-5f * (*top + fabsf(want[i]))))
            return i;
    return len;
}
