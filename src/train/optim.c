#include "mpitrain/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"

static const char *const names[] = {"sgd", "adam", "adamw"};

const char *mt_optim_name(mt_optim_kind k)
{
    return (unsigned)k < 3 ? names[k] : NULL;
}

int mt_optim_from_name(const char *name)
{
    for (int k = 0; k < 3; k++)
        if (strcmp(names[k], name) == 0)
            return k;
    return -1;
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

static void sgd(mt_optim *o, float *p, const float *g, float lr)
{
    float mu = o->cfg.momentum, wd = o->cfg.weight_decay;
    for (size_t i = 0; i < o->n; i++) {
        float d = g[i] + wd * p[i];
        if (mu != 0.0f) {
            o->m[i] = mu * o->m[i] + d;
            d = o->cfg.nesterov ? d + mu * o->m[i] : o->m[i];
        }
        p[i] -= lr * d;
    }
}

static void adam(mt_optim *o, float *p, const float *g, float lr)
{
    float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    float wd = o->cfg.weight_decay;
    int decoupled = o->cfg.kind == MT_OPT_ADAMW;
    double t = (double)o->t;
    float c1 = (float)(1.0 - pow(b1, t)), c2 = (float)(1.0 - pow(b2, t));
    for (size_t i = 0; i < o->n; i++) {
        float d = g[i];
        if (decoupled)
            p[i] -= lr * wd * p[i];
        else
            d += wd * p[i];
        o->m[i] = b1 * o->m[i] + (1.0f - b1) * d;
        o->v[i] = b2 * o->v[i] + (1.0f - b2) * d * d;
        float mhat = o->m[i] / c1, vhat = o->v[i] / c2;
        p[i] -= lr * mhat / (sqrtf(vhat) + eps);
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
