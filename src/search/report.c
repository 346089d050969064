/* What the lowest rank of a search prints and writes (search/internal.h):
 * a line per result, the ranked table, best.ini and ensemble.txt. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/metrics.h"
#include "search/internal.h"

/* "optimizer.lr=0.01, train.batch=64" for trial t. */
static void describe(const mt__farm *f, size_t t, char *buf, size_t len)
{
    char vals[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    mt_search_trial_values(f->sp, t, vals);
    size_t n = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < f->sp->n && n < len; k++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", k ? ", " : "",
                              f->sp->p[k].key, vals[k]);
}

/* Epochs trained over the whole search: a promoted trial continued its
 * run, so its last result's epochs count them all. */
static size_t epochs_trained(const mt__farm *f)
{
    size_t e = 0;
    for (size_t t = 0; t < f->sp->trials; t++)
        e += f->trials[t].epochs;
    return e;
}

void mt__report_result(mt__farm *f, size_t t)
{
    const mt_search_space *sp = f->sp;
    const mt__trial *tr = &f->trials[t];
    char desc[512];
    describe(f, t, desc, sizeof desc);
    size_t b = mt__best_trial(f->trials, sp->trials, sp->maximize);
    size_t fresh = 0, ended = 0;
    for (size_t u = 0; u < sp->trials; u++) {
        fresh += f->trials[u].state == MT__TRIAL_NEW;
        ended += f->trials[u].state >= MT__TRIAL_FINISHED;
    }
    const char *name = mt_monitor_names[sp->metric];
    fprintf(f->out, "trial %zu (%s)", t, desc);
    if (sp->method == MT_SEARCH_ASHA)
        fprintf(f->out, " rung %d, %zu epochs", tr->rung, tr->epochs);
    if (tr->state == MT__TRIAL_FAILED)
        fprintf(f->out, ": failed");
    else
        fprintf(f->out, ": %s %.4f", name, tr->at[tr->rung]);
    if (b < sp->trials)
        fprintf(f->out, "; best %.4f (trial %zu)",
                mt__result_metric(&f->trials[b]), b);
    if (sp->method == MT_SEARCH_ASHA) {
        fprintf(f->out, "; %zu not started, %zu epochs so far\n", fresh,
                epochs_trained(f));
    } else {
        size_t left = sp->trials - ended;
        double eta = (MPI_Wtime() - f->t0) / (double)f->done_now *
                     (double)left / (double)f->groups;
        fprintf(f->out, "; %zu left, ETA %.0f s\n", left, eta);
    }
    fflush(f->out);
}

/* Trials with a result that did not fail later, best first
 * (mt__ranks_above); returns how many. */
static size_t ranked(const mt__farm *f, size_t *order)
{
    size_t n = 0;
    for (size_t t = 0; t < f->sp->trials; t++) {
        if (mt__result_rung(&f->trials[t]) < 0 ||
            f->trials[t].state == MT__TRIAL_FAILED)
            continue;
        size_t i = n++;
        while (i > 0 && mt__ranks_above(&f->trials[t], t,
                                        &f->trials[order[i - 1]],
                                        order[i - 1], f->sp->maximize)) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = t;
    }
    return n;
}

void mt__report_table(mt__farm *f)
{
    size_t *order = mt_calloc(f->sp->trials, sizeof *order);
    if (!order)
        return;
    size_t n = ranked(f, order), failed = 0;
    for (size_t t = 0; t < f->sp->trials; t++)
        failed += f->trials[t].state == MT__TRIAL_FAILED;
    fprintf(f->out, "search: %zu of %zu trials have a result, %zu failed; "
                    "%zu epochs trained\n",
            n, f->sp->trials, failed, epochs_trained(f));
    fprintf(f->out, "rank  trial  epochs  %-14s  seconds  values\n",
            mt_monitor_names[f->sp->metric]);
    for (size_t i = 0; i < n; i++) {
        char desc[512];
        const mt__trial *tr = &f->trials[order[i]];
        describe(f, order[i], desc, sizeof desc);
        fprintf(f->out, "%4zu  %5zu  %6zu  %14.4f  %7.1f  %s\n", i + 1,
                order[i], tr->epochs, mt__result_metric(tr), tr->seconds,
                desc);
    }
    fflush(f->out);
    free(order);
}

/* Writes text to path through path.partial, fsynced, renamed. */
static int write_atomically(const char *path, const char *head,
                            const mt_config *c, const char *body,
                            char *err)
{
    char tmp[MT_PATH_LEN + 48];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *o = fopen(tmp, "w");
    if (o) {
        fputs(head, o);
        if (c)
            mt_config_write(c, o);
        if (body)
            fputs(body, o);
    }
    if (!o || fflush(o) || fsync(fileno(o)) || fclose(o) ||
        rename(tmp, path)) {
        mt_seterr(err, "%s: cannot write", path);
        return MT_EIO;
    }
    return MT_OK;
}

/* best.ini: the base config with the best trial's values, a complete
 * config (every key resolved) that `mpitrain train` takes as it is. */
int mt__write_best(mt__farm *f, char *err)
{
    size_t b = mt__best_trial(f->trials, f->sp->trials, f->sp->maximize);
    if (b == f->sp->trials)
        return MT_OK;
    mt__trial_buf buf;
    char *sets[MT__MAX_SETS], best_dir[MT_PATH_LEN + 8];
    snprintf(best_dir, sizeof best_dir, "%s/best", f->dir);
    mt_config c;
    int rc = mt_config_load(&c, f->path, sets,
                            mt__trial_sets(f, b, best_dir, buf, sets), err);
    if (rc)
        return rc;
    char path[MT_PATH_LEN + 32], head[256];
    snprintf(path, sizeof path, "%s/best.ini", f->dir);
    snprintf(head, sizeof head, "; mpitrain search: trial %zu, %s %.6g\n",
             b, mt_monitor_names[f->sp->metric],
             mt__result_metric(&f->trials[b]));
    rc = write_atomically(path, head, &c, NULL, err);
    if (rc == MT_OK)
        fprintf(f->out, "best: trial %zu; its config is %s\n", b, path);
    mt_config_free(&c);
    return rc;
}

/* ensemble.txt: the weights of the keep_top best trials, one path a line
 * (`mpitrain eval CONFIG --weights @ensemble.txt` averages them). */
int mt__write_ensemble(mt__farm *f, char *err)
{
    if (!f->sp->keep_top)
        return MT_OK;
    size_t *order = mt_calloc(f->sp->trials, sizeof *order);
    if (!order)
        return MT_ENOMEM;
    size_t n = ranked(f, order), k = f->sp->keep_top < n ? f->sp->keep_top
                                                         : n;
    size_t len = k * (MT_PATH_LEN + 40) + 1;
    char *body = mt_calloc(len, 1), path[MT_PATH_LEN + 32];
    int rc = body ? MT_OK : MT_ENOMEM;
    for (size_t i = 0, used = 0; body && i < k; i++)
        used += (size_t)snprintf(body + used, len - used,
                                 "%s/trial-%04zu/weights.h5\n", f->dir,
                                 order[i]);
    snprintf(path, sizeof path, "%s/ensemble.txt", f->dir);
    if (rc == MT_OK)
        rc = write_atomically(path, "", NULL, body, err);
    if (rc == MT_OK)
        fprintf(f->out, "ensemble: the best %zu trials' weights are listed "
                        "in %s\n",
                k, path);
    free(body);
    free(order);
    return rc;
}
