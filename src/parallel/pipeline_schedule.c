/* Pipeline schedules by list scheduling on a cost model (pipeline.h).
 *
 * A clock moves from one pass's end to the next. At each tick every idle
 * stage takes the pass its policy prefers among those whose inputs are
 * there (passes of one kind go in micro-batch order):
 *   gpipe  F while any is left, then B
 *   1f1b   B, else F if fewer than P - s micro-batches are held
 *   zb     B, else F under the same bound, else W
 * A micro-batch is held from its F to its B (zb: to its W, with one
 * more allowed; see zb_bound). Stage 4 of 4
 * with 1f1b: F0 B0 F1 B1 ...; stage 1: F0 F1 F2 F3 B0 F4 B1 ... */
#include "mpitrain/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"

const char *const mt_pipe_schedule_names[] = {"gpipe", "1f1b", "zb", NULL};

typedef struct sim {
    mt_pipe_plan *p;
    const mt_pipe_costs *c;
    double now;
    double *end[3];  /* [pass][s * M + i]: end of the pass, -1 before */
    int *issued[3];  /* [pass][s]: passes of that kind taken so far */
    double *free_at; /* (P) */
    double *busy;    /* (P) */
    size_t *n_ops;   /* (P) */
} sim;

static int done_by(const sim *m, mt_pipe_pass k, int s, int i)
{
    double e = m->end[k][(size_t)s * (size_t)m->p->micro + (size_t)i];
    return e >= 0.0 && e <= m->now;
}

/* Micro-batches between their F and B at stage s. */
static int held(const sim *m, int s)
{
    return m->issued[MT_PIPE_F][s] - m->issued[MT_PIPE_B][s];
}

/* zb: micro-batches between their B and W at stage s. */
static int deferred(const sim *m, int s)
{
    return m->p->schedule == MT_PIPE_ZB
               ? m->issued[MT_PIPE_B][s] - m->issued[MT_PIPE_W][s]
               : 0;
}

/* zb: micro-batches from F to W at stage s. A deferred W holds what it
 * needs (the layers' inputs and output gradients: in our layers about
 * all the activations), so 1f1b's bound P - s here would be 1f1b's
 * memory; with it the W passes fill only 0.22-0.32 of the bubble
 * (P = 2, 4). One micro-batch more lets them fill 0.31-0.65 of it
 * (P = 4: 0.31-0.40; the paper's ZB-H1, counting W's memory as less than
 * B's, a third). Measured in tests/test_pipeline.c. */
static int zb_bound(const sim *m, int s)
{
    return m->p->stages - s + 1;
}

/* Whether stage s can start its next pass of kind k now. */
static int ready(const sim *m, mt_pipe_pass k, int s)
{
    int P = m->p->stages, M = m->p->micro, i = m->issued[k][s];
    if (i >= M)
        return 0;
    if (k == MT_PIPE_F)
        return s == 0 || done_by(m, MT_PIPE_F, s - 1, i);
    if (k == MT_PIPE_W)
        return done_by(m, MT_PIPE_B, s, i);
    return done_by(m, MT_PIPE_F, s, i) &&
           (s == P - 1 || done_by(m, MT_PIPE_B, s + 1, i));
}

/* The pass stage s takes now by its schedule's policy, or -1. */
static int choose(const sim *m, int s)
{
    int bound = held(m, s) < m->p->stages - s;
    switch (m->p->schedule) {
    case MT_PIPE_GPIPE:
        if (ready(m, MT_PIPE_F, s))
            return MT_PIPE_F;
        return m->issued[MT_PIPE_F][s] == m->p->micro &&
                       ready(m, MT_PIPE_B, s)
                   ? MT_PIPE_B
                   : -1;
    case MT_PIPE_1F1B:
        if (ready(m, MT_PIPE_B, s))
            return MT_PIPE_B;
        return bound && ready(m, MT_PIPE_F, s) ? MT_PIPE_F : -1;
    case MT_PIPE_ZB:
        if (ready(m, MT_PIPE_B, s))
            return MT_PIPE_B;
        if (bound && held(m, s) + deferred(m, s) < zb_bound(m, s) &&
            ready(m, MT_PIPE_F, s))
            return MT_PIPE_F;
        return ready(m, MT_PIPE_W, s) ? MT_PIPE_W : -1;
    }
    return -1;
}

static double cost(const sim *m, mt_pipe_pass k, int s)
{
    const mt_pipe_costs *c = &m->c[s];
    if (k == MT_PIPE_F)
        return c->f;
    if (k == MT_PIPE_W)
        return c->w;
    return m->p->schedule == MT_PIPE_ZB ? c->b : c->b + c->w;
}

static void take(sim *m, int s, mt_pipe_pass k)
{
    mt_pipe_plan *p = m->p;
    int i = m->issued[k][s]++;
    double d = cost(m, k, s);
    m->end[k][(size_t)s * (size_t)p->micro + (size_t)i] = m->now + d;
    m->free_at[s] = m->now + d;
    m->busy[s] += d;
    mt_pipe_op *op = &p->ops[(size_t)s * p->ops_per_stage + m->n_ops[s]++];
    *op = (mt_pipe_op){k, i, m->now};
    if (k == MT_PIPE_F && held(m, s) + deferred(m, s) > p->peak_held[s])
        p->peak_held[s] = held(m, s) + deferred(m, s);
    if (k == MT_PIPE_B && deferred(m, s) > p->peak_deferred[s])
        p->peak_deferred[s] = deferred(m, s);
}

/* Runs the clock until every stage has taken all its passes; -1 if no
 * stage can move (cannot happen with the policies above). */
static int run(sim *m)
{
    mt_pipe_plan *p = m->p;
    size_t left = (size_t)p->stages * p->ops_per_stage;
    while (left) {
        int moved = 0;
        for (int s = 0; s < p->stages; s++) {
            int k;
            if (m->free_at[s] <= m->now && (k = choose(m, s)) >= 0) {
                take(m, s, (mt_pipe_pass)k);
                left--;
                moved = 1;
            }
        }
        if (moved)
            continue; /* the same tick: a pass may have cost nothing */
        /* The next tick: the earliest end of a pass still running. */
        double next = INFINITY;
        for (int s = 0; s < p->stages; s++)
            if (m->free_at[s] > m->now && m->free_at[s] < next)
                next = m->free_at[s];
        if (next == INFINITY)
            return -1;
        m->now = next;
    }
    for (int s = 0; s < p->stages; s++)
        p->makespan = fmax(p->makespan, m->free_at[s]);
    double busy = 0.0;
    for (int s = 0; s < p->stages; s++)
        busy += m->busy[s];
    p->bubble = p->makespan > 0.0
                    ? 1.0 - busy / ((double)p->stages * p->makespan)
                    : 0.0;
    return 0;
}

int mt_pipe_plan_make(mt_pipe_plan *p, mt_pipe_schedule sch, int P, int M,
                      const mt_pipe_costs *c, char *err)
{
    memset(p, 0, sizeof *p);
    if (P < 1 || M < 1) {
        mt_seterr(err, "pipeline: %d stages and %d micro-batches: both "
                       "must be at least 1",
                  P, M);
        return MT_EINVAL;
    }
    for (int s = 0; s < P; s++)
        if (!(c[s].f > 0.0 && c[s].b > 0.0 && c[s].w >= 0.0)) {
            mt_seterr(err, "pipeline: stage %d's pass costs must be "
                           "positive",
                      s);
            return MT_EINVAL;
        }
    p->schedule = sch;
    p->stages = P;
    p->micro = M;
    p->ops_per_stage = (size_t)M * (sch == MT_PIPE_ZB ? 3 : 2);
    size_t PM = (size_t)P * (size_t)M;
    p->ops = mt_calloc((size_t)P * p->ops_per_stage, sizeof *p->ops);
    p->peak_held = mt_calloc((size_t)P, sizeof *p->peak_held);
    p->peak_deferred = mt_calloc((size_t)P, sizeof *p->peak_deferred);
    sim m = {.p = p, .c = c};
    int rc = p->ops && p->peak_held && p->peak_deferred ? MT_OK : MT_ENOMEM;
    for (int k = 0; k < 3; k++) {
        m.end[k] = mt_calloc(PM, sizeof(double));
        m.issued[k] = mt_calloc((size_t)P, sizeof(int));
        for (size_t j = 0; m.end[k] && j < PM; j++)
            m.end[k][j] = -1.0;
        rc = m.end[k] && m.issued[k] ? rc : MT_ENOMEM;
    }
    m.free_at = mt_calloc((size_t)P, sizeof(double));
    m.busy = mt_calloc((size_t)P, sizeof(double));
    m.n_ops = mt_calloc((size_t)P, sizeof(size_t));
    rc = m.free_at && m.busy && m.n_ops ? rc : MT_ENOMEM;
    if (rc == MT_OK && run(&m)) {
        mt_seterr(err, "pipeline: schedule %s deadlocks",
                  mt_pipe_schedule_names[sch]);
        rc = MT_EINVAL;
    }
    if (rc == MT_ENOMEM)
        mt_seterr(err, "pipeline: out of memory laying out %zu passes",
                  (size_t)P * p->ops_per_stage);
    for (int k = 0; k < 3; k++) {
        free(m.end[k]);
        free(m.issued[k]);
    }
    free(m.free_at);
    free(m.busy);
    free(m.n_ops);
    if (rc)
        mt_pipe_plan_free(p);
    return rc;
}

void mt_pipe_plan_free(mt_pipe_plan *p)
{
    mt_free(p->ops);
    mt_free(p->peak_held);
    mt_free(p->peak_deferred);
    p->ops = NULL;
    p->peak_held = NULL;
    p->peak_deferred = NULL;
}

const mt_pipe_op *mt_pipe_stage_ops(const mt_pipe_plan *p, int s)
{
    return p->ops + (size_t)s * p->ops_per_stage;
}
