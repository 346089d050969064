#include "mpitrain/schedule.h"

#include <math.h>
#include <string.h>

#include "mpitrain/core.h"

static const char *const names[] = {"constant",     "step",
                                    "cosine",       "multistep",
                                    "exponential",  "inverse_time",
                                    "cosine_restarts", NULL};

const char *mt_schedule_name(mt_schedule_kind k)
{
    return (unsigned)k <= MT_SCHED_COSINE_RESTARTS ? names[k] : NULL;
}

int mt_schedule_from_name(const char *name)
{
    return mt_name_index(names, name);
}

static double cosine(double lr0, double min, double t)
{
    return min + (lr0 - min) * 0.5 * (1.0 + cos(M_PI * t));
}

/* SGDR: where `step` falls in cycles of length T0, T0 m, T0 m^2, ... */
static double restarts(const mt_schedule *s, uint64_t step)
{
    double T = s->restart_steps ? (double)s->restart_steps : 1.0;
    double t = (double)step, m = s->restart_mult >= 1.0 ? s->restart_mult
                                                        : 1.0;
    while (t >= T) {
        t -= T;
        T *= m;
    }
    return cosine(s->lr0, s->min_lr, t / T);
}

float mt_schedule_lr(const mt_schedule *s, uint64_t step)
{
    double lr = s->lr0;
    switch (s->kind) {
    case MT_SCHED_MULTISTEP:
        for (size_t i = 0; i < s->n_milestones; i++)
            if (step >= s->milestones[i])
                lr *= s->gamma;
        break;
    case MT_SCHED_EXPONENTIAL:
        if (s->step_size)
            lr *= pow(s->gamma, (double)step / (double)s->step_size);
        break;
    case MT_SCHED_INVERSE_TIME:
        lr /= 1.0 + s->decay * (double)step;
        break;
    case MT_SCHED_COSINE_RESTARTS:
        lr = restarts(s, step);
        break;
    case MT_SCHED_CONSTANT:
        break;
    case MT_SCHED_STEP:
        if (s->step_size)
            lr *= pow(s->gamma, (double)(step / s->step_size));
        break;
    case MT_SCHED_COSINE: {
        double t = s->total_steps
                       ? fmin((double)step / (double)s->total_steps, 1.0)
                       : 0.0;
        lr = cosine(s->lr0, s->min_lr, t);
        break;
    }
    }
    if (step < s->warmup_steps)
        lr *= (double)(step + 1) / (double)s->warmup_steps;
    return (float)lr;
}
