/* Farming trials across groups of ranks (search.h).
 *
 * The world is split into groups of ranks_per_trial. A group's leader
 * takes the next trial index from a counter on the lowest rank
 * (MPI_Fetch_and_op on a window), so fast groups take more trials, and
 * broadcasts it to its group; the group trains it as an ordinary run on
 * its own communicator. Leaders send their journal records (started,
 * finished, failed) to the lowest rank, which alone writes the journal
 * and prints; it drains them between its own steps (mt_train_opts.poll),
 * so no rank idles as a coordinator.
 *
 * 4 ranks, ranks_per_trial 2, 5 trials: groups {0,1} and {2,3}; group A
 * takes 0, group B 1; B finishes first and takes 2, A takes 3, ...; the
 * group that draws 5 stops, the other finishes its trial, and rank 0
 * writes the table once every leader has said it is done. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/metrics.h"
#include "mpitrain/plan.h"
#include "mpitrain/search.h"
#include "mpitrain/train.h"
#include "mpitrain/watchdog.h"
#include "search/internal.h"

#define RECORD_LEN 2048

typedef struct farm {
    const mt_search_space *sp;
    const char *path;
    char *const *sets;
    size_t n_sets;
    const mt_search_opts *opts;
    MPI_Comm world, group;
    int rank, size, grank, groups;
    char dir[MT_PATH_LEN];
    mt__trial *trials; /* (sp->trials), the journal's view (rank 0) */
    MPI_Win win;
    int64_t *counter;
    /* the lowest rank only */
    FILE *journal, *out;
    int byes;
    size_t done, done_now;
    double t0;
    int journal_rc;
    char journal_err[MT_ERR_LEN];
} farm;

/* "optimizer.lr=0.01, train.batch=64" for trial t. */
static void describe(const farm *f, size_t t, char *buf, size_t len)
{
    char vals[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    mt_search_trial_values(f->sp, t, vals);
    size_t n = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < f->sp->n && n < len; k++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s=%s", k ? ", " : "",
                              f->sp->p[k].key, vals[k]);
}

/* Whether metric a ranks above b (NaN never does). */
static int better(const farm *f, double a, double b)
{
    return mt_metric_improves(a, b, !f->sp->maximize, 0.0);
}

static size_t best_trial(const farm *f)
{
    return mt__best_trial(f->trials, f->sp->trials, f->sp->maximize);
}

/* Rank 0: a record from any leader, its own included. */
static void take_record(farm *f, const char *rec)
{
    char ev[16], desc[512];
    size_t t;
    double metric, secs;
    if (mt__journal_parse(rec, ev, sizeof ev, &t, &metric, &secs) ||
        (strcmp(ev, "bye") && t >= f->sp->trials))
        return;
    if (!strcmp(ev, "bye")) {
        f->byes++;
        return;
    }
    if (f->journal_rc == MT_OK)
        f->journal_rc = mt__journal_append(f->journal, rec, f->journal_err);
    mt__trial *tr = &f->trials[t];
    if (!mt__trial_take(tr, ev, metric, secs))
        return;
    f->done++;
    f->done_now++;
    describe(f, t, desc, sizeof desc);
    size_t b = best_trial(f), left = f->sp->trials - f->done;
    double eta = (MPI_Wtime() - f->t0) / (double)f->done_now *
                 (double)left / (double)f->groups;
    const char *name = mt_monitor_names[f->sp->metric];
    if (tr->state == MT__TRIAL_FAILED)
        fprintf(f->out, "trial %zu (%s): failed", t, desc);
    else
        fprintf(f->out, "trial %zu (%s): %s %.4f", t, desc, name, metric);
    if (b < f->sp->trials)
        fprintf(f->out, "; best %.4f (trial %zu)", f->trials[b].metric, b);
    fprintf(f->out, "; %zu left, ETA %.0f s\n", left, eta);
    fflush(f->out);
}

/* Rank 0: every record waiting (mt_train_opts.poll, and between trials). */
static void drain(void *user)
{
    farm *f = user;
    for (;;) {
        int flag = 0, n = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MT_TAG_JOURNAL, f->world, &flag, &st);
        if (!flag)
            return;
        char rec[RECORD_LEN];
        MPI_Get_count(&st, MPI_CHAR, &n);
        MPI_Recv(rec, RECORD_LEN, MPI_CHAR, st.MPI_SOURCE, MT_TAG_JOURNAL,
                 f->world, MPI_STATUS_IGNORE);
        rec[n > 0 && n <= RECORD_LEN ? n - 1 : 0] = '\0';
        take_record(f, rec);
    }
}

/* A leader's record goes to rank 0 (its own: taken directly). */
static void send_record(farm *f, const char *ev, size_t t, double metric,
                        double secs, const char *error)
{
    char *rec = mt__journal_record(ev, t, metric, secs, error);
    if (!rec)
        return;
    if (strlen(rec) >= RECORD_LEN)
        rec[RECORD_LEN - 1] = '\0';
    if (f->rank == 0)
        take_record(f, rec);
    else
        MPI_Send(rec, (int)strlen(rec) + 1, MPI_CHAR, 0, MT_TAG_JOURNAL,
                 f->world);
    free(rec);
}

/* The overrides of trial t: the command line's, run.dir, the trial's
 * values and max_epochs, into sets (pointing into buf); returns how many.
 * mt_search allows at most 64 of the command line's. */
typedef char trial_buf[MT_SEARCH_MAX_PARAMS + 2][MT_PATH_LEN + 80];
static size_t trial_sets(const farm *f, size_t t, const char *run_dir,
                         trial_buf buf,
                         char *sets[64 + MT_SEARCH_MAX_PARAMS + 2])
{
    char vals[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    size_t n = 0, b = 0;
    mt_search_trial_values(f->sp, t, vals);
    for (size_t i = 0; i < f->n_sets; i++)
        sets[n++] = f->sets[i];
    snprintf(buf[b], sizeof buf[b], "run.dir=%s", run_dir);
    sets[n++] = buf[b++];
    for (size_t k = 0; k < f->sp->n; k++) {
        snprintf(buf[b], sizeof buf[b], "%s=%s", f->sp->p[k].key, vals[k]);
        sets[n++] = buf[b++];
    }
    if (f->sp->max_epochs) {
        snprintf(buf[b], sizeof buf[b], "train.epochs=%zu",
                 f->sp->max_epochs);
        sets[n++] = buf[b++];
    }
    return n;
}

/* Trains trial t on the group; the leader's output goes to the trial's
 * train.log. Returns the run's rc. */
static int train_trial(farm *f, size_t t, mt_train_result *res, char *err)
{
    trial_buf buf;
    char *sets[64 + MT_SEARCH_MAX_PARAMS + 2], tdir[MT_PATH_LEN + 32];
    snprintf(tdir, sizeof tdir, "%s/trial-%04zu", f->dir, t);
    size_t n = trial_sets(f, t, tdir, buf, sets);
    mt_config cfg;
    int rc = mt_config_load(&cfg, f->path, sets, n, err);
    /* The output goes to a file: never a progress bar there. */
    if (rc == MT_OK && cfg.progress == MT_PROGRESS_AUTO)
        cfg.progress = MT_PROGRESS_LINES;
    if (rc == MT_OK && f->grank == 0)
        rc = mt_mkdirs(tdir, err);
    if ((rc = mt_dist_agree(f->group, rc, err)))
        return rc;
    int saved = -1;
    if (f->grank == 0) {
        char log[MT_PATH_LEN + 48];
        snprintf(log, sizeof log, "%s/train.log", tdir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        fflush(stdout);
        saved = fd >= 0 ? dup(1) : -1;
        if (saved >= 0)
            dup2(fd, 1);
        if (fd >= 0)
            close(fd);
    }
    mt_train_opts o = {.resume = "auto",
                       .stop = f->opts ? f->opts->stop : NULL,
                       .poll = f->rank == 0 ? drain : NULL,
                       .poll_user = f};
    rc = mt_train(&cfg, f->group, &o, res, err);
    if (saved >= 0) {
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
    }
    mt_config_free(&cfg);
    return rc;
}

/* The trial's metric: its last epoch's value, or, when this run trained
 * no epoch (resumed after the trial had finished, before the journal said
 * so), the last one in the trial's own metrics log. Group leader. */
static double trial_metric(const farm *f, size_t t, const mt_train_result *r)
{
    double v = r->last[f->sp->metric];
    if (!isnan(v))
        return v;
    char log[MT_PATH_LEN + 48];
    snprintf(log, sizeof log, "%s/trial-%04zu/metrics.jsonl", f->dir, t);
    return mt__log_metric(log, mt_monitor_names[f->sp->metric]);
}

/* The next trial for this group, or sp->trials when none is left (or a
 * stop was asked for): the leader draws, the group follows. */
static size_t next_trial(farm *f)
{
    int64_t t = (int64_t)f->sp->trials, one = 1;
    if (f->grank == 0 && !(f->opts && f->opts->stop && *f->opts->stop)) {
        mt_watch("search: next trial (MPI_Fetch_and_op)");
        MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, f->win);
        MPI_Fetch_and_op(&one, &t, MPI_INT64_T, 0, 0, MPI_SUM, f->win);
        MPI_Win_unlock(0, f->win);
    }
    MPI_Bcast(&t, 1, MPI_INT64_T, 0, f->group);
    return t < (int64_t)f->sp->trials ? (size_t)t : f->sp->trials;
}

/* Runs trials until none is left; *stopped after a stop request. */
static void work(farm *f, int *stopped)
{
    for (size_t t; (t = next_trial(f)) < f->sp->trials;) {
        int st = f->trials[t].state;
        if (st == MT__TRIAL_FINISHED || st == MT__TRIAL_FAILED)
            continue; /* an earlier run of the search did it */
        if (f->grank == 0)
            send_record(f, "started", t, NAN, 0, NULL);
        char err[MT_ERR_LEN] = "";
        mt_train_result res;
        double t0 = MPI_Wtime();
        int rc = train_trial(f, t, &res, err);
        if (rc == MT_ESTOPPED) {
            *stopped = 1;
            break;
        }
        if (f->grank == 0)
            send_record(f, rc ? "failed" : "finished", t,
                        rc ? NAN : trial_metric(f, t, &res),
                        MPI_Wtime() - t0, rc ? err : NULL);
        if (f->rank == 0)
            drain(f);
    }
    /* A stop between two trials leaves the rest for the next run too. */
    if (f->opts && f->opts->stop && *f->opts->stop)
        *stopped = 1;
}

/* The ranked table of finished trials, best first (NaN last). */
static void print_table(farm *f)
{
    size_t n = 0, *order = mt_calloc(f->sp->trials, sizeof *order);
    if (!order)
        return;
    for (size_t t = 0; t < f->sp->trials; t++)
        if (f->trials[t].state == MT__TRIAL_FINISHED) {
            size_t i = n++;
            /* Insertion sort: better() is a strict order with NaN last. */
            while (i > 0 && better(f, f->trials[t].metric,
                                   f->trials[order[i - 1]].metric)) {
                order[i] = order[i - 1];
                i--;
            }
            order[i] = t;
        }
    size_t failed = 0;
    for (size_t t = 0; t < f->sp->trials; t++)
        failed += f->trials[t].state == MT__TRIAL_FAILED;
    fprintf(f->out, "search: %zu of %zu trials finished, %zu failed\n", n,
            f->sp->trials, failed);
    fprintf(f->out, "rank  trial  %-14s  seconds  values\n",
            mt_monitor_names[f->sp->metric]);
    for (size_t i = 0; i < n; i++) {
        char desc[512];
        const mt__trial *tr = &f->trials[order[i]];
        describe(f, order[i], desc, sizeof desc);
        fprintf(f->out, "%4zu  %5zu  %14.4f  %7.1f  %s\n", i + 1, order[i],
                tr->metric, tr->seconds, desc);
    }
    fflush(f->out);
    free(order);
}

/* best.ini: the base config with the best trial's values, a complete
 * config (every key resolved) that `mpitrain train` takes as it is. */
static int write_best(farm *f, char *err)
{
    size_t b = best_trial(f);
    if (b == f->sp->trials)
        return MT_OK;
    trial_buf buf;
    char *sets[64 + MT_SEARCH_MAX_PARAMS + 2], best_dir[MT_PATH_LEN + 8];
    snprintf(best_dir, sizeof best_dir, "%s/best", f->dir);
    mt_config c;
    int rc = mt_config_load(&c, f->path, sets,
                            trial_sets(f, b, best_dir, buf, sets), err);
    if (rc)
        return rc;
    char path[MT_PATH_LEN + 32], tmp[MT_PATH_LEN + 48];
    snprintf(path, sizeof path, "%s/best.ini", f->dir);
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *o = fopen(tmp, "w");
    if (o) {
        fprintf(o, "; mpitrain search: trial %zu, %s %.6g\n", b,
                mt_monitor_names[f->sp->metric], f->trials[b].metric);
        mt_config_write(&c, o);
    }
    if (!o || fflush(o) || fsync(fileno(o)) || fclose(o) ||
        rename(tmp, path)) {
        mt_seterr(err, "%s: cannot write", path);
        rc = MT_EIO;
    } else {
        fprintf(f->out, "best: trial %zu; its config is %s\n", b, path);
    }
    mt_config_free(&c);
    return rc;
}

/* Rank 0 before the farm starts: the search directory, the journal so
 * far, an output stream that stays on the terminal while trials' output
 * goes to their logs. */
static int open_journal(farm *f, char *err)
{
    if (f->rank != 0)
        return MT_OK;
    char path[MT_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/journal.jsonl", f->dir);
    int rc = mt_mkdirs(f->dir, err);
    if (rc == MT_OK)
        rc = mt__journal_load(path, f->trials, f->sp->trials, err);
    if (rc == MT_OK && !(f->journal = fopen(path, "a"))) {
        mt_seterr(err, "%s: cannot open for appending", path);
        rc = MT_EIO;
    }
    int fd = rc == MT_OK ? dup(1) : -1;
    if (rc == MT_OK && !(f->out = fd >= 0 ? fdopen(fd, "w") : NULL)) {
        mt_seterr(err, "search: cannot duplicate stdout");
        if (fd >= 0)
            close(fd);
        rc = MT_EIO;
    }
    for (size_t t = 0; t < f->sp->trials; t++)
        f->done += f->trials[t].state >= MT__TRIAL_FINISHED;
    char *head = rc == MT_OK ? mt__journal_header(
                                   mt_monitor_names[f->sp->metric],
                                   f->sp->maximize, f->sp->trials)
                             : NULL;
    if (head)
        rc = mt__journal_append(f->journal, head, err);
    free(head);
    return rc;
}

/* Groups, the shared counter and every rank's view of the journal. */
static int start_farm(farm *f, char *err)
{
    MPI_Comm_rank(f->world, &f->rank);
    MPI_Comm_size(f->world, &f->size);
    int rpt = (int)f->sp->ranks_per_trial;
    if (f->size % rpt) {
        mt_seterr(err, "%s: [search] ranks_per_trial = %d does not divide "
                       "the %d ranks: run on a multiple of it",
                  f->path, rpt, f->size);
        return MT_EINVAL;
    }
    f->groups = f->size / rpt;
    f->trials = mt_calloc(f->sp->trials, sizeof *f->trials);
    int rc = f->trials ? open_journal(f, err) : MT_ENOMEM;
    if ((rc = mt_dist_agree(f->world, rc, err)))
        return rc;
    /* Trial states as rank 0's journal has them; an int each. */
    int *st = mt_calloc(f->sp->trials, sizeof *st);
    for (size_t t = 0; st && f->rank == 0 && t < f->sp->trials; t++)
        st[t] = f->trials[t].state;
    if ((rc = mt_dist_agree(f->world, st ? MT_OK : MT_ENOMEM, err)))
        return free(st), rc;
    MPI_Bcast(st, (int)f->sp->trials, MPI_INT, 0, f->world);
    for (size_t t = 0; t < f->sp->trials; t++)
        f->trials[t].state = st[t];
    free(st);
    MPI_Comm_split(f->world, f->rank / rpt, f->rank, &f->group);
    MPI_Comm_rank(f->group, &f->grank);
    MPI_Win_allocate(f->rank == 0 ? sizeof(int64_t) : 0, sizeof(int64_t),
                     MPI_INFO_NULL, f->world, &f->counter, &f->win);
    if (f->rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, f->win);
        *f->counter = 0;
        MPI_Win_unlock(0, f->win);
    }
    MPI_Barrier(f->world);
    f->t0 = MPI_Wtime();
    return MT_OK;
}

static void free_farm(farm *f)
{
    if (f->win != MPI_WIN_NULL && f->win)
        MPI_Win_free(&f->win);
    if (f->group != MPI_COMM_NULL && f->group)
        MPI_Comm_free(&f->group);
    if (f->world != MPI_COMM_NULL && f->world)
        MPI_Comm_free(&f->world);
    if (f->journal)
        fclose(f->journal);
    if (f->out)
        fclose(f->out);
    mt_free(f->trials);
}

int mt_search(const char *path, char *const *sets, size_t n_sets,
              MPI_Comm comm, const mt_search_opts *opts, char *err)
{
    mt_search_space sp;
    mt_config base;
    farm f = {.sp = &sp, .path = path, .sets = sets, .n_sets = n_sets,
              .opts = opts, .world = MPI_COMM_NULL, .group = MPI_COMM_NULL,
              .win = MPI_WIN_NULL};
    /* Every rank reads the same file: the same result, before any
     * collective. */
    int rc = MT_OK;
    if (n_sets > 64) {
        mt_seterr(err, "search: at most 64 --set options");
        return MT_EINVAL;
    }
    rc = mt_search_space_read(&sp, path, sets, n_sets, err);
    if (rc == MT_OK && (rc = mt_config_load(&base, path, sets, n_sets,
                                            err)) == MT_OK) {
        snprintf(f.dir, sizeof f.dir, "%s", base.dir);
        mt_config_free(&base);
    }
    if (rc)
        return rc;
    if (MPI_Comm_dup(comm, &f.world) != MPI_SUCCESS) {
        mt_seterr(err, "search: duplicating the communicator failed");
        return MT_EIO;
    }
    MPI_Comm_set_errhandler(f.world, MPI_ERRORS_RETURN);
    rc = start_farm(&f, err);
    int stopped = 0;
    if (rc == MT_OK) {
        work(&f, &stopped);
        if (f.grank == 0 && f.rank != 0)
            send_record(&f, "bye", 0, NAN, 0, NULL);
        mt_watch("search: the other groups' results");
        while (f.rank == 0 && f.byes < f.groups - 1) {
            MPI_Probe(MPI_ANY_SOURCE, MT_TAG_JOURNAL, f.world,
                      MPI_STATUS_IGNORE);
            drain(&f);
        }
        MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, f.world);
        if (f.rank == 0) {
            print_table(&f);
            rc = f.journal_rc;
            if (rc)
                mt_seterr(err, "%s", f.journal_err);
            if (rc == MT_OK)
                rc = write_best(&f, err);
        }
        rc = mt_dist_agree(f.world, rc, err);
    }
    free_farm(&f);
    if (rc == MT_OK && stopped) {
        mt_seterr(err, "search stopped on request: running trials saved; "
                       "run the same command to resume");
        rc = MT_ESTOPPED;
    }
    return rc;
}
