/* mpitrain learning-rate schedules: the rate at a given optimizer step, a
 * pure function of the step (so a resumed run gets the same rates). */
#ifndef MPITRAIN_SCHEDULE_H
#define MPITRAIN_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef enum mt_schedule_kind {
    MT_SCHED_CONSTANT,     /* lr0 */
    MT_SCHED_STEP,         /* lr0 gamma^floor(step / step_size) */
    MT_SCHED_COSINE,       /* min + (lr0 - min) (1 + cos(pi step / total)) / 2 */
    MT_SCHED_MULTISTEP,    /* lr0 gamma^(milestones passed) */
    MT_SCHED_EXPONENTIAL,  /* lr0 gamma^(step / step_size), smooth */
    MT_SCHED_INVERSE_TIME, /* lr0 / (1 + decay step) */
    MT_SCHED_COSINE_RESTARTS /* cosine over cycles of restart_steps,
                                each restart_mult times longer (SGDR) */
} mt_schedule_kind;

#define MT_MAX_MILESTONES 32

typedef struct mt_schedule {
    mt_schedule_kind kind;
    float lr0;
    float gamma;          /* step */
    size_t step_size;     /* step: steps between decays */
    size_t total_steps;   /* cosine: length of the decay */
    float min_lr;         /* cosine: the rate at the end */
    size_t warmup_steps;  /* linear warm-up from lr0 / warmup_steps */
    double decay;         /* inverse_time: per step */
    size_t milestones[MT_MAX_MILESTONES]; /* multistep: steps, ascending */
    size_t n_milestones;
    size_t restart_steps; /* cosine_restarts: first cycle */
    double restart_mult;  /* cosine_restarts: growth of each cycle, >= 1 */
} mt_schedule;

const char *mt_schedule_name(mt_schedule_kind k);
int mt_schedule_from_name(const char *name); /* -1 if unknown */

/* The rate for optimizer step `step` (0-based). Warm-up, if any, ramps
 * linearly to the scheduled rate over the first warmup_steps steps. */
float mt_schedule_lr(const mt_schedule *s, uint64_t step);

#endif
