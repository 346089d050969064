/* What a free group trains next (search/internal.h): the lowest rank
 * decides for every group, from the journal's view of the trials.
 *
 * Asynchronous successive halving (ASHA; Li et al., "A System for
 * Massively Parallel Hyperparameter Tuning", MLSys 2020, algorithm 2):
 * whenever a group is free, look from the second-highest rung down for a
 * trial that is among the best floor(n/eta) of the n results at its rung
 * and not promoted yet; promote the best such one a rung. If none, start
 * a new trial at the bottom rung. Nothing waits for a rung to fill, so no
 * group idles while a promotion could be made; a group that finds
 * neither a promotion nor a new trial waits for the running trials'
 * results, which may make one (then it is given the job), unless no
 * trial is running (then the search is over).
 *
 * 9 trials, eta 3, rungs 1, 3, 9 epochs: each trial trains 1 epoch; once
 * 3 have results the best of them, if not promoted, goes on to 3 epochs;
 * once 3 have results at 3 epochs the best goes on to 9. The decisions
 * depend only on the order results arrived, which the journal keeps, so
 * a search resumed after a kill first finishes what was interrupted,
 * then makes the decisions an uninterrupted one would have made in that
 * order. */
#include <stdlib.h>

#include "search/internal.h"

/* Whether trial t has a result at rung k. */
static int has_result(const mt__trial *t, int k)
{
    return mt__result_rung(t) >= k;
}

/* Trial t's result at rung k beats trial u's (NaN last, then index). */
static int beats_at(const mt__trial *tr, size_t t, size_t u, int k,
                    int maximize)
{
    return mt__metric_first(tr[t].at[k], t, tr[u].at[k], u, maximize);
}

/* The best trial of rung k's top floor(n/eta) that waits there to be
 * promoted (finished the rung's epochs, not stopped early), or n. */
static size_t promotable(const mt_search_space *sp, const mt__trial *tr,
                         int k)
{
    /* A trial that failed at a later rung keeps its result here. */
    size_t n = 0;
    for (size_t t = 0; t < sp->trials; t++)
        n += has_result(&tr[t], k);
    size_t top = n / sp->eta;
    if (top == 0)
        return sp->trials;
    /* A trial is in the top when fewer than `top` results beat it. */
    size_t best = sp->trials;
    for (size_t t = 0; t < sp->trials; t++) {
        const mt__trial *c = &tr[t];
        if (c->rung != k || c->state != MT__TRIAL_FINISHED ||
            c->epochs < sp->rung_epochs[k])
            continue;
        size_t above = 0;
        for (size_t u = 0; u < sp->trials && above < top; u++)
            above += u != t && has_result(&tr[u], k) &&
                     beats_at(tr, u, t, k, sp->maximize);
        if (above < top &&
            (best == sp->trials || beats_at(tr, t, best, k, sp->maximize)))
            best = t;
    }
    return best;
}

static int give(mt__trial *tr, size_t t, int rung, int promoted,
                mt__job *job)
{
    job->promoted = promoted;
    tr[t].running = 1;
    tr[t].rung = rung;
    tr[t].state = MT__TRIAL_STARTED;
    job->trial = t;
    job->rung = rung;
    return MT__JOB_GIVEN;
}

int mt__next_job(const mt_search_space *sp, mt__trial *tr, mt__job *job)
{
    size_t running = 0, fresh = sp->trials;
    for (size_t t = 0; t < sp->trials; t++) {
        if (tr[t].state == MT__TRIAL_STARTED && !tr[t].running)
            return give(tr, t, tr[t].rung, 0, job); /* interrupted earlier */
        running += tr[t].running;
        if (tr[t].state == MT__TRIAL_NEW && fresh == sp->trials)
            fresh = t;
    }
    for (int k = sp->rungs - 2; sp->method == MT_SEARCH_ASHA && k >= 0; k--) {
        size_t t = promotable(sp, tr, k);
        if (t < sp->trials)
            return give(tr, t, k + 1, 1, job);
    }
    if (fresh < sp->trials)
        return give(tr, fresh, 0, 0, job);
    return sp->method == MT_SEARCH_ASHA && running ? MT__JOB_WAIT
                                                   : MT__JOB_NONE;
}
