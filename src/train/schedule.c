#include "mpitrain/schedule.h"

#include <math.h>
#include <string.h>

#include "mpitrain/core.h"

static const char *const names[] = {"constant", "step", "cosine", NULL};

const char *mt_schedule_name(mt_schedule_kind k)
{
    return (unsigned)k < 3 ? names[k] : NULL;
}

int mt_schedule_from_name(const char *name)
{
    return mt_name_index(names, name);
}

float mt_schedule_lr(const mt_schedule *s, uint64_t step)
{
    double lr = s->lr0;
    switch (s->kind) {
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
        lr = s->min_lr + (s->lr0 - s->min_lr) * 0.5 * (1.0 + cos(M_PI * t));
        break;
    }
    }
    if (step < s->warmup_steps)
        lr *= (double)(step + 1) / (double)s->warmup_steps;
    return (float)lr;
}
