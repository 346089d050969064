#include "mpitrain/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"

static const char *const names[] = {"sgd", "adam", "adamw", NULL};

const char *mt_optim_name(mt_optim_kind k)
{
    return (unsigned)k < 3 ? names[k] : NULL;
}

int mt_optim_from_name(const char *name)
{
    return mt_name_index(names, name);
}

int mt_optim_init(mt_optim *o, const mt_optim_cfg *cfg, size_t n, char *err)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = n;
    o->m = mt_calloc(n, sizeof(float));
    if (cfg->kind != MT_OPT_SGD)
        o->v = mt_calloc(n, sizeof(float));
    if (!o->m || (cfg->kind != MT_OPT_SGD && !o->v)) {
        mt_optim_free(o);
        mt_seterr(err, "optimizer: out of memory for %zu slots", n);
        return MT_ENOMEM;
    }
    return MT_OK;
}

void mt_optim_free(mt_optim *o)
{
    mt_free(o->m);
    mt_free(o->v);
}

/* The loops below are written so that the compiler vectorizes them:
 * restrict pointers, constants hoisted, no branch inside. */

/* The gradient with the penalties: L2 (unless decoupled) and L1, whose
 * subgradient at 0 is 0. */
static inline float penalized(float g, float p, float wd, float l1)
{
    float sign = (float)(p > 0.0f) - (float)(p < 0.0f);
    return g + wd * p + l1 * sign;
}

MT_VECTOR static void sgd(mt_optim *o, float *restrict p,
                          const float *restrict g, float lr)
{
    float mu = o->cfg.momentum, wd = o->cfg.weight_decay, l1 = o->cfg.l1;
    float *restrict m = o->m;
    size_t n = o->n;
    if (mu == 0.0f) {
        for (size_t i = 0; i < n; i++)
            p[i] -= lr * penalized(g[i], p[i], wd, l1);
    } else if (o->cfg.nesterov) {
        for (size_t i = 0; i < n; i++) {
            float d = penalized(g[i], p[i], wd, l1);
            m[i] = mu * m[i] + d;
            p[i] -= lr * (d + mu * m[i]);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            m[i] = mu * m[i] + penalized(g[i], p[i], wd, l1);
            p[i] -= lr * m[i];
        }
    }
}

MT_VECTOR static void adam(mt_optim *o, float *restrict p,
                           const float *restrict g, float lr)
{
    float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    float *restrict m = o->m, *restrict v = o->v;
    double t = (double)o->t;
    float inv_c1 = (float)(1.0 / (1.0 - pow(b1, t)));
    float inv_c2 = (float)(1.0 / (1.0 - pow(b2, t)));
    /* Adam adds L2 to the gradient; AdamW shrinks the weights directly. */
    float wd_grad = o->cfg.kind == MT_OPT_ADAMW ? 0.0f : o->cfg.weight_decay;
    float shrink = o->cfg.kind == MT_OPT_ADAMW
                       ? 1.0f - lr * o->cfg.weight_decay
                       : 1.0f;
    float l1 = o->cfg.l1;
    for (size_t i = 0, n = o->n; i < n; i++) {
        float d = penalized(g[i], p[i], wd_grad, l1);
        m[i] = b1 * m[i] + (1.0f - b1) * d;
        v[i] = b2 * v[i] + (1.0f - b2) * d * d;
        p[i] = shrink * p[i] -
               lr * (m[i] * inv_c1) / (sqrtf(v[i] * inv_c2) + eps);
    }
}

void mt_optim_step(mt_optim *o, float *params, const float *grads, float lr)
{
    o->t++;
    if (o->cfg.kind == MT_OPT_SGD)
        sgd(o, params, grads, lr);
    else
        adam(o, params, grads, lr);
}
