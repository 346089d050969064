/* Checkpoint glue of the trainer: when to save, what the state is, and
 * resuming from it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/checkpoint.h"
#include "mpitrain/dist.h"
#include "mpitrain/metrics.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

/* Rank 0's metrics log as text (the other ranks get an empty string of
 * the same length: only rank 0's data is written). */
static char *metrics_text(trainer *t)
{
    char *text = NULL;
    long len = 0;
    if (t->rank == 0) {
        char path[MT_PATH_LEN + 32];
        snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg->dir);
        FILE *f = fopen(path, "rb");
        if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0) {
            rewind(f);
            text = calloc((size_t)len + 1, 1);
            if (!text || fread(text, 1, (size_t)len, f) != (size_t)len)
                len = 0;
        }
        if (f)
            fclose(f);
    }
    MPI_Bcast(&len, 1, MPI_LONG, 0, t->comm);
    if (t->rank != 0) {
        text = calloc((size_t)len + 1, 1);
        if (text)
            memset(text, ' ', (size_t)len);
    }
    return text;
}

int mt__save(trainer *t, size_t epoch, uint64_t position, int is_best,
             char *err)
{
    /* Asynchronous: the servers' shards current, the sums complete;
     * deferred: the last step applied. */
    int met = mt_sync_settle(&t->sync, err);
    if (met == MT_OK)
        met = mt__lag_meet(t, err);
    /* Sharded: every slot from its owner, so the file is replicated. */
    if (met == MT_OK)
        met = mt_sync_gather_slots(&t->sync, err);
    if (met)
        return met;
    mt_ckpt_state st = {.step = t->step,
                        .best = t->best,
                        .es_best = t->es_best,
                        .lr_scale = t->lr_scale,
                        .pl_best = t->pl_best,
                        .pl_wait = t->pl_wait,
                        .es_wait = t->es_wait,
                        .es_epoch = t->es_epoch,
                        .es_params = t->es_params,
                        .es_state = t->es_state,
                        .epoch = epoch,
                        .position = position,
                        .seen = position ? t->ep_seen : 0,
                        .seconds = t->train_secs,
                        .ranks = t->size};
    if (position)
        memcpy(st.sums, t->ep_sums, sizeof st.sums);
    /* A checkpoint with NaN weights would replace good ones (keep) and
     * every resume would start from it. The parameters are the same on
     * every rank, so every rank stops here alike. */
    int finite = mt__numeric_where(mt_model_check_finite(&t->model, err),
                                   "checkpoint not written:",
                                   t->epoch_now + 1, t->step, err);
    if ((finite = mt_dist_agree(t->comm, finite, err)))
        return finite;
    mt_watch("checkpoint save (collective HDF5)");
    mt_metrics_flush(&t->log);
    char *metrics = metrics_text(t);
    /* A pipeline: each stage's first replica alone writes the stage's
     * slots (the others' are the same: theirs are shown as an empty
     * range) and running statistics. */
    mt_optim mine = t->optim;
    if (t->plan.stages > 1) {
        st.state_own = 1;
        if (t->plan.replica == 0)
            mt_model_span(&t->model, t->plan.layer_lo, t->plan.layer_hi,
                          1, &st.state_lo, &st.state_hi);
        else if (!t->plan.n_servers) /* with ps each writes its shard */
            mine.n = 0;
    }
    int rc = mt_ckpt_save(t->comm, t->ckpt_dir, &t->model, &mine, &st,
                          t->config_text, metrics ? metrics : "",
                          t->cfg->keep, is_best, err);
    free(metrics);
    if (rc == MT_OK) {
        t->saved_step = t->step;
        t->last_save = MPI_Wtime();
        if (t->rank == 0) {
            mt_progress_end(&t->progress);
            printf("checkpoint: step %llu saved in %s\n",
                   (unsigned long long)t->step, t->ckpt_dir);
            fflush(stdout);
        }
    }
    return rc;
}

void mt__step_flags(const trainer *t, int flags[2])
{
    const mt_config *c = t->cfg;
    flags[0] = (t->opts->stop && *t->opts->stop) ||
               (t->opts->stop_after && t->step >= t->opts->stop_after);
    flags[1] = t->rank == 0 && c->every_minutes > 0.0 &&
               MPI_Wtime() - t->last_save >= c->every_minutes * 60.0;
}

int mt__after_step(trainer *t, size_t epoch, uint64_t position, char *err)
{
    const mt_config *c = t->cfg;
    /* flags[0]: a stop was asked on some rank; flags[1]: rank 0's clock
     * says a checkpoint is due. One tiny collective per step. */
    int flags[2];
    mt__step_flags(t, flags);
    mt_watch("stop-flag agreement (MPI_Allreduce)");
    if (MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, t->comm) !=
        MPI_SUCCESS) {
        mt_seterr(err, "agreeing on checkpoints failed");
        return MT_EIO;
    }
    int due = flags[0] || flags[1] ||
              (c->every_steps && t->step % c->every_steps == 0);
    if (!due)
        return MT_OK;
    int rc = mt__save(t, epoch, position, 0, err);
    return rc == MT_OK && flags[0] ? mt__stopped(t, err) : rc;
}

int mt__stopped(const trainer *t, char *err)
{
    mt_seterr(err, "stopped on request at step %llu; resume with "
                   "--resume auto",
              (unsigned long long)t->step);
    return MT_ESTOPPED;
}

int mt__after_epoch(trainer *t, size_t epoch, const double v[MT_MONITORS],
                    char *err)
{
    int m = t->cfg->keep_best;
    /* Every rank has the same reduced metrics: no need to agree. */
    if (m == MT_MONITOR_NONE ||
        !mt_metric_improves(v[m], t->best, mt_monitor_minimizes(m), 0.0))
        return MT_OK;
    t->best = v[m];
    return mt__save(t, epoch + 1, 0, 1, err);
}

/* Rank 0 finds the checkpoint (newest good one for "auto") and tells the
 * others its path. */
static int find(trainer *t, char **path, char *err)
{
    char note[2048] = "";
    int rc = MT_OK;
    long len = 0;
    *path = NULL;
    if (t->rank == 0) {
        rc = mt_ckpt_find(t->ckpt_dir, t->opts->resume, path, note,
                          sizeof note, err);
        if (note[0]) {
            fputs(note, stderr); /* damaged ones that were passed over */
            if (rc)
                mt_seterr(err, "no usable checkpoint in %s; %s", t->ckpt_dir,
                          note);
        }
        len = *path ? (long)strlen(*path) : 0;
    }
    if ((rc = mt_dist_agree(t->comm, rc, err)))
        return rc;
    MPI_Bcast(&len, 1, MPI_LONG, 0, t->comm);
    if (len == 0) /* --resume auto with nothing saved yet */
        return MT_OK;
    if (t->rank != 0)
        *path = calloc((size_t)len + 1, 1);
    MPI_Bcast(*path, (int)len + 1, MPI_CHAR, 0, t->comm);
    return MT_OK;
}

/* The metrics log restarts from the checkpoint's copy, so that records
 * written after the checkpoint by the interrupted run are not doubled. */
static int restore_metrics(trainer *t, const char *metrics, char *err)
{
    if (t->rank != 0 || !t->log.fp)
        return MT_OK;
    if (fseek(t->log.fp, 0, SEEK_SET) != 0 ||
        fputs(metrics ? metrics : "", t->log.fp) < 0 ||
        fflush(t->log.fp) != 0) {
        mt_seterr(err, "%s/metrics.jsonl: %s", t->cfg->dir, strerror(errno));
        return MT_EIO;
    }
    return MT_OK;
}

static void ignore_change(const char *line, void *user) {}

static void print_change(const char *line, void *user)
{
    printf("  %s\n", line);
}

/* A resumed run may change its configuration (more epochs, a new rate);
 * say what changed, since the run then is not the uninterrupted one. */
static void report_changes(const trainer *t, const char *saved)
{
    if (t->rank != 0 || !saved || !t->config_text ||
        mt_config_diff(saved, t->config_text, ignore_change, NULL) == 0)
        return;
    printf("the configuration differs from the checkpoint's (saved -> "
           "now):\n");
    mt_config_diff(saved, t->config_text, print_change, NULL);
}

int mt__resume(trainer *t, size_t *epoch, char *err)
{
    char *path = NULL, *metrics = NULL, *config = NULL;
    mt_watch("checkpoint load");
    int rc = find(t, &path, err);
    if (rc)
        return rc;
    if (!path) {
        if (t->rank == 0)
            printf("no checkpoint in %s yet: starting from the beginning\n",
                   t->ckpt_dir);
        return MT_OK;
    }
    mt_ckpt_state st = {.es_params = t->es_params, .es_state = t->es_state};
    rc = mt_ckpt_load(path, &t->model, &t->optim, &st, &metrics, &config,
                      err);
    if (rc == MT_OK)
        rc = restore_metrics(t, metrics, err);
    rc = mt_dist_agree(t->comm, rc, err);
    if (rc == MT_OK) {
        t->step = st.step;
        t->resume_pos = st.position;
        memcpy(t->ep_sums, st.sums, sizeof t->ep_sums);
        t->ep_seen = st.seen;
        t->train_secs = st.seconds;
        t->saved_step = st.step;
        t->best = st.best;
        t->es_best = st.es_best;
        t->lr_scale = st.lr_scale > 0.0 ? st.lr_scale : 1.0;
        t->pl_best = st.pl_best;
        t->pl_wait = st.pl_wait;
        t->es_wait = st.es_wait;
        t->es_epoch = st.es_epoch;
        *epoch = st.epoch;
        if (t->rank == 0)
            printf("resuming from %s: step %llu, epoch %llu, %llu samples "
                   "in (saved by %d rank%s)\n",
                   path, (unsigned long long)st.step,
                   (unsigned long long)st.epoch + 1,
                   (unsigned long long)st.position, st.ranks,
                   st.ranks == 1 ? "" : "s");
        report_changes(t, config);
    }
    free(path);
    free(metrics);
    free(config);
    return rc;
}
