/* Farming trials across groups of ranks (search.h).
 *
 * The world is split into groups of ranks_per_trial. The lowest rank
 * holds the journal and decides every job (search/sched.c): a group's
 * leader sends it a request, it answers with the next job (a trial and a
 * rung) or "none", and the group trains the job as an ordinary run on
 * its own communicator. Leaders send their results the same way, in
 * order before their next request. The lowest rank, itself a leader,
 * drains the messages between its own steps (mt_train_opts.poll), so no
 * rank idles as a coordinator; a request it cannot answer yet (asha: a
 * promotion may follow a running trial's result) waits in a list until a
 * result makes an answer.
 *
 * 4 ranks, ranks_per_trial 2, 5 trials: groups {0,1} and {2,3}; group A
 * takes 0, group B 1; B finishes first and takes 2, A takes 3, ...; the
 * group that asks after the last is given none and says bye, the other
 * finishes its trial, and rank 0 writes the table once every leader has
 * said bye. */
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

typedef mt__farm farm;

static int stop_asked(const farm *f)
{
    return f->opts && f->opts->stop && *f->opts->stop;
}

/* Rank 0: journals a record and applies it to its trial. */
static void journal(farm *f, const mt__record *r, const char *rec)
{
    if (f->journal_rc == MT_OK)
        f->journal_rc = mt__journal_append(f->journal, rec, f->journal_err);
    mt__trial *tr = &f->trials[r->trial];
    if (mt__trial_take(tr, r)) {
        tr->running = 0;
        f->done_now++;
        mt__report_result(f, r->trial);
    }
}

/* A record as JSON, cut to what a message holds (malloc'd, or NULL). */
static char *record_text(const farm *f, const mt__record *r,
                         const char *error)
{
    char *rec = mt__journal_record(r, error, f->sp);
    if (rec && strlen(rec) >= RECORD_LEN)
        rec[RECORD_LEN - 1] = '\0';
    return rec;
}

/* Rank 0: the next job for the leader at world rank `leader`, journaled
 * ("started" or "promoted") when one is given. A stop asked here gives
 * none. */
static int decide(farm *f, int leader, mt__job *job)
{
    int got = stop_asked(f) ? MT__JOB_NONE
                            : mt__next_job(f->sp, f->trials, job);
    if (got != MT__JOB_GIVEN)
        return got;
    f->holds[leader] = job->trial + 1;
    mt__record r = {.trial = job->trial, .rung = job->rung};
    snprintf(r.event, sizeof r.event, "%s",
             job->promoted ? "promoted" : "started");
    char *rec = record_text(f, &r, NULL);
    if (!rec) {
        f->journal_rc = MT_ENOMEM;
        snprintf(f->journal_err, sizeof f->journal_err,
                 "search journal: out of memory");
    } else {
        journal(f, &r, rec);
    }
    free(rec);
    return got;
}

/* Rank 0: answers every waiting leader that can be answered now. */
static void answer_waiting(farm *f)
{
    size_t keep = 0;
    for (size_t i = 0; i < f->n_waiting; i++) {
        mt__job job = {0};
        int got = decide(f, f->waiting[i], &job);
        if (got == MT__JOB_WAIT) {
            f->waiting[keep++] = f->waiting[i];
            continue;
        }
        int64_t msg[2] = {got == MT__JOB_GIVEN ? (int64_t)job.trial : -1,
                          job.rung};
        MPI_Send(msg, 2, MPI_INT64_T, f->waiting[i], MT_TAG_SEARCH_JOB,
                 f->world);
    }
    f->n_waiting = keep;
}

/* Rank 0: a leader that leaves (stopped) without its trial's result: the
 * trial, interrupted, goes to the next group that asks, which resumes it
 * from its checkpoint; no one waits for its result. */
static void release(farm *f, int leader)
{
    if (f->holds[leader])
        f->trials[f->holds[leader] - 1].running = 0;
    f->holds[leader] = 0;
}

/* Rank 0: a message from a leader (its own group's: taken directly). */
static void take_record(farm *f, const char *rec, int from)
{
    mt__record r;
    if (mt__journal_parse(rec, &r))
        return;
    if (!strcmp(r.event, "bye")) {
        f->byes++;
        release(f, from);
    } else if (!strcmp(r.event, "ask")) {
        if (f->n_waiting < (size_t)f->groups)
            f->waiting[f->n_waiting++] = from;
    } else if (r.trial < f->sp->trials) {
        journal(f, &r, rec);
        f->holds[from] = 0;
    }
    answer_waiting(f);
}

/* Rank 0: every message waiting (mt_train_opts.poll, and between jobs). */
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
        take_record(f, rec, st.MPI_SOURCE);
    }
}

/* Rank 0: answers whom it can, blocks until a message comes, then takes
 * them all. */
static void await_message(farm *f, const char *why)
{
    answer_waiting(f);
    mt_watch(why);
    MPI_Probe(MPI_ANY_SOURCE, MT_TAG_JOURNAL, f->world, MPI_STATUS_IGNORE);
    drain(f);
}

/* A leader's record or request goes to rank 0 (rank 0's own: taken). */
static void send_record(farm *f, const mt__record *r, const char *error)
{
    char *rec = record_text(f, r, error);
    if (!rec)
        return;
    if (f->rank == 0)
        take_record(f, rec, 0);
    else
        MPI_Send(rec, (int)strlen(rec) + 1, MPI_CHAR, 0, MT_TAG_JOURNAL,
                 f->world);
    free(rec);
}

static void send_event(farm *f, const char *event)
{
    mt__record r = {0};
    snprintf(r.event, sizeof r.event, "%s", event);
    send_record(f, &r, NULL);
}

size_t mt__trial_sets(const farm *f, size_t t, const char *run_dir,
                      mt__trial_buf buf, char *sets[MT__MAX_SETS])
{
    char vals[MT_SEARCH_MAX_PARAMS][MT_SEARCH_VALUE_LEN];
    size_t n = 0, b = 0, top = f->sp->rung_epochs[f->sp->rungs - 1];
    mt_search_trial_values(f->sp, t, vals);
    for (size_t i = 0; i < f->n_sets; i++)
        sets[n++] = f->sets[i];
    snprintf(buf[b], sizeof buf[b], "run.dir=%s", run_dir);
    sets[n++] = buf[b++];
    for (size_t k = 0; k < f->sp->n; k++) {
        snprintf(buf[b], sizeof buf[b], "%s=%s", f->sp->p[k].key, vals[k]);
        sets[n++] = buf[b++];
    }
    if (top) {
        snprintf(buf[b], sizeof buf[b], "train.epochs=%zu", top);
        sets[n++] = buf[b++];
    }
    return n;
}

/* Trains the job on the group; the leader's output goes to the trial's
 * train.log. Returns the run's rc. */
static int train_job(farm *f, const mt__job *job, mt_train_result *res,
                     char *err)
{
    mt__trial_buf buf;
    char *sets[MT__MAX_SETS], tdir[MT_PATH_LEN + 32];
    snprintf(tdir, sizeof tdir, "%s/trial-%04zu", f->dir, job->trial);
    size_t n = mt__trial_sets(f, job->trial, tdir, buf, sets);
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
    /* asha: the run stops at its rung's epochs, its schedules spanning
     * the top rung's; a promotion resumes it from its checkpoint. */
    mt_train_opts o = {.resume = "auto",
                       .stop = f->opts ? f->opts->stop : NULL,
                       .poll = f->rank == 0 ? drain : NULL,
                       .poll_user = f,
                       .until_epoch = f->sp->method == MT_SEARCH_ASHA
                                          ? f->sp->rung_epochs[job->rung]
                                          : 0};
    rc = mt_train(&cfg, f->group, &o, res, err);
    if (saved >= 0) {
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
    }
    mt_config_free(&cfg);
    return rc;
}

/* The job's metric: its last epoch's value, or, when this run trained
 * no epoch (resumed after the job had finished, before the journal said
 * so), the last one in the trial's own metrics log. Group leader. */
static double job_metric(const farm *f, size_t t, const mt_train_result *r)
{
    double v = r->last[f->sp->metric];
    if (!isnan(v))
        return v;
    char log[MT_PATH_LEN + 48];
    snprintf(log, sizeof log, "%s/trial-%04zu/metrics.jsonl", f->dir, t);
    return mt__log_metric(log, mt_monitor_names[f->sp->metric]);
}

/* The group's next job; 0 when none is left (or a stop was asked for).
 * The leader asks rank 0 (rank 0 decides for itself, serving the others
 * while it waits); the group follows. */
static int next_job(farm *f, mt__job *job)
{
    int64_t msg[2] = {-1, 0};
    if (f->grank == 0 && !stop_asked(f)) {
        if (f->rank == 0) {
            int got;
            while ((got = decide(f, 0, job)) == MT__JOB_WAIT)
                await_message(f, "search: waiting for a result that may "
                                 "promote a trial");
            if (got == MT__JOB_GIVEN)
                msg[0] = (int64_t)job->trial, msg[1] = job->rung;
        } else {
            send_event(f, "ask");
            mt_watch("search: waiting for rank 0 to give a job");
            MPI_Recv(msg, 2, MPI_INT64_T, 0, MT_TAG_SEARCH_JOB, f->world,
                     MPI_STATUS_IGNORE);
        }
    }
    mt_watch("search: the group's next job (MPI_Bcast)");
    MPI_Bcast(msg, 2, MPI_INT64_T, 0, f->group);
    if (msg[0] < 0 || msg[0] >= (int64_t)f->sp->trials)
        return 0;
    job->trial = (size_t)msg[0];
    job->rung = (int)msg[1];
    return 1;
}

/* Runs jobs until none is left; *stopped after a stop request. */
static void work(farm *f, int *stopped)
{
    for (mt__job job; next_job(f, &job);) {
        char err[MT_ERR_LEN] = "";
        mt_train_result res;
        double t0 = MPI_Wtime();
        int rc = train_job(f, &job, &res, err);
        if (rc == MT_ESTOPPED) {
            *stopped = 1;
            break;
        }
        mt__record r = {.trial = job.trial, .rung = job.rung,
                        .epochs = res.epochs,
                        .metric = rc ? NAN : job_metric(f, job.trial, &res),
                        .seconds = MPI_Wtime() - t0};
        snprintf(r.event, sizeof r.event, "%s", rc ? "failed" : "finished");
        if (f->grank == 0)
            send_record(f, &r, rc ? err : NULL);
        if (f->rank == 0)
            drain(f);
    }
    /* A stop between two jobs leaves the rest for the next run too. */
    if (stop_asked(f))
        *stopped = 1;
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
    char *head = rc == MT_OK ? mt__journal_header(
                                   mt_monitor_names[f->sp->metric],
                                   f->sp->maximize, f->sp->trials)
                             : NULL;
    if (head)
        rc = mt__journal_append(f->journal, head, err);
    free(head);
    return rc;
}

/* Groups, and the lowest rank's view of the journal. */
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
    int rc = MT_OK;
    if (f->rank == 0) {
        f->trials = mt_calloc(f->sp->trials, sizeof *f->trials);
        f->waiting = mt_calloc((size_t)f->groups, sizeof *f->waiting);
        f->holds = mt_calloc((size_t)f->size, sizeof *f->holds);
        rc = f->trials && f->waiting && f->holds ? open_journal(f, err)
                                                 : MT_ENOMEM;
    }
    if ((rc = mt_dist_agree(f->world, rc, err)))
        return rc;
    MPI_Comm_split(f->world, f->rank / rpt, f->rank, &f->group);
    MPI_Comm_rank(f->group, &f->grank);
    f->t0 = MPI_Wtime();
    return MT_OK;
}

static void free_farm(farm *f)
{
    if (f->group != MPI_COMM_NULL && f->group)
        MPI_Comm_free(&f->group);
    if (f->world != MPI_COMM_NULL && f->world)
        MPI_Comm_free(&f->world);
    if (f->journal)
        fclose(f->journal);
    if (f->out)
        fclose(f->out);
    mt_free(f->trials);
    mt_free(f->waiting);
    mt_free(f->holds);
}

/* Rank 0, its own jobs done: answers the others until every leader has
 * said bye; then the table, best.ini and ensemble.txt. */
static int finish_farm(farm *f, char *err)
{
    release(f, 0);
    while (f->byes < f->groups - 1)
        await_message(f, "search: the other groups' results");
    mt__report_table(f);
    int rc = f->journal_rc;
    if (rc)
        mt_seterr(err, "%s", f->journal_err);
    if (rc == MT_OK)
        rc = mt__write_best(f, err);
    if (rc == MT_OK)
        rc = mt__write_ensemble(f, err);
    return rc;
}

int mt_search(const char *path, char *const *sets, size_t n_sets,
              MPI_Comm comm, const mt_search_opts *opts, char *err)
{
    mt_search_space sp;
    mt_config base;
    farm f = {.sp = &sp, .path = path, .sets = sets, .n_sets = n_sets,
              .opts = opts, .world = MPI_COMM_NULL, .group = MPI_COMM_NULL};
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
            send_event(&f, "bye");
        if (f.rank == 0)
            rc = finish_farm(&f, err);
        mt_watch("search: the end (MPI_Allreduce)");
        MPI_Allreduce(MPI_IN_PLACE, &stopped, 1, MPI_INT, MPI_MAX, f.world);
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
