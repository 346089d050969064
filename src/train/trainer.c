/* The training loop: get a batch -> forward -> loss -> backward ->
 * synchronize -> optimizer step -> metrics (DESIGN.md). Everything it needs
 * is allocated in setup(); the step loop allocates nothing. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/optim.h"
#include "mpitrain/schedule.h"
#include "mpitrain/sync.h"
#include "mpitrain/train.h"
#include "mpitrain/watchdog.h"
#include "train/internal.h"

static void trainer_free(trainer *t)
{
    mt_dataset_free(&t->shard);
    mt_dataset_free(&t->win[0]);
    mt_dataset_free(&t->win[1]);
    mt_dataset_free(&t->val);
    mt_dataset_free(&t->test);
    /* The sync first: it hands the model's arenas back (sync.h). */
    mt_sync_free(&t->sync);
    mt_model_free(&t->model);
    mt_optim_free(&t->optim);
    mt_free(t->order);
    mt_sampler_free(&t->sampler);
    mt_free(t->epoch_perm);
    mt_free(t->batch_idx);
    mt_free(t->need);
    mt_free(t->step_first);
    mt_free(t->group_grads);
    mt_free(t->class_w);
    mt_free(t->es_params);
    mt_free(t->es_state);
    mt_free(t->aug_tmp);
    mt_free(t->group_sums);
    mt_free(t->labels);
    mt_free(t->targets);
    mt_free(t->config_text);
    mt_metrics_close(&t->log);
    mt__lag_free(t);
    mt__pipe_free(t);
    mt_plan_free(&t->plan);
}

/* Local: this rank's shares of the training and test files. Every rank
 * reads and serves a share of the training rows; the test rows are
 * evaluated, so they are shared over the ranks that evaluate (a
 * dedicated server's share is empty: mt_dist_share of rank eval_size). */
static int load_files(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    const mt_plan *p = &t->plan;
    int rc = mt_dataset_load_share(&t->shard, c->train, t->rank, t->size,
                                   c->limit, err);
    if (rc == MT_OK && c->test[0])
        rc = mt_dataset_load_share(&t->test, c->test,
                                   p->eval_rank < 0 ? p->eval_size
                                                    : p->eval_rank,
                                   p->eval_size, 0, err);
    return rc;
}

/* Collective: the split, index buffers, the class count, and this rank's
 * validation samples. */
static int split(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    size_t n = t->shard.total;
    t->n_val = (size_t)((double)n * c->validation);
    t->n_train = n - t->n_val;
    if (t->n_train == 0) {
        mt_seterr(err, "%s: no training samples left after the validation "
                       "split",
                  c->train);
        return MT_EINVAL;
    }
    /* The split is a seed-keyed permutation of the rows in use, the same
     * on every rank and every rank count. */
    t->order = mt_calloc(n, sizeof(size_t));
    int rc = t->order ? MT_OK : MT_ENOMEM;
    if (rc)
        mt_seterr(err, "out of memory for %zu sample indices", n);
    if ((rc = mt_dist_agree(t->comm, rc, err)))
        return rc;
    mt_rng_permutation(t->order, n, c->seed, MT_RNG_SPLIT, 0);
    /* Without an n_classes attribute each rank saw only its own labels;
     * a rank without rows does not know the stored sample size. */
    unsigned long long k[3] = {
        t->shard.n_classes, t->test.n_classes,
        t->shard.n ? mt_dataset_record_bytes(&t->shard) : 0};
    MPI_Allreduce(MPI_IN_PLACE, k, 3, MPI_UNSIGNED_LONG_LONG, MPI_MAX,
                  t->comm);
    t->shard.n_classes = k[0];
    t->test.n_classes = k[1];
    t->sample_bytes = k[2];
    size_t lo, hi;
    mt_plan_eval_rows(&t->plan, t->n_val, &lo, &hi);
    mt_watch("validation fetch (MPI_Alltoallv)");
    return mt_dataset_fetch(&t->shard, t->comm, t->order + t->n_train + lo,
                            hi - lo, mt__reads_inputs(t), &t->val, err);
}

/* Layers with their own weight_decay or l1 get their parameter ranges
 * penalized by those; the rest keep [optimizer]'s. */
static int layer_penalties(trainer *t, char *err)
{
    const mt_model *m = &t->model;
    mt_penalty *ranges = mt_calloc(m->n_layers, sizeof *ranges);
    if (!ranges) {
        mt_seterr(err, "out of memory for layer penalties");
        return MT_ENOMEM;
    }
    size_t n = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        const mt_layer *l = &m->layers[i];
        const mt_layer_spec *s = &l->spec;
        if (!l->n_param || (isnan(s->weight_decay) && isnan(s->l1)))
            continue;
        /* A layer's parameters are adjacent in the arena. */
        const mt_tensor *last = &l->param[l->n_param - 1];
        ranges[n++] = (mt_penalty){
            .begin = (size_t)(l->param[0].data - m->params),
            .end = (size_t)(last->data + last->n - m->params),
            .weight_decay = isnan(s->weight_decay)
                                ? t->cfg->optim.weight_decay
                                : s->weight_decay,
            .l1 = isnan(s->l1) ? t->cfg->optim.l1 : s->l1};
    }
    int rc = n ? mt_optim_set_penalties(&t->optim, ranges, n, err) : MT_OK;
    mt_free(ranges);
    return rc;
}

static int build(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    size_t workers = (size_t)t->plan.dp_size;
    /* The largest local slice of a global batch (in deterministic mode
     * forward sees one group at a time, but evaluation uses the slice). */
    size_t max_batch = (c->batch + workers - 1) / workers;
    if (c->deterministic && c->group > max_batch)
        max_batch = c->group;
    if (!(t->plan.role & MT_ROLE_WORKER)) /* a server: no activations */
        max_batch = 1;
    /* A pipeline stage sets only its own layers' values (pipe_step.c). */
    int rc = (t->plan.stages > 1 ? mt_model_shape_from_config
                                 : mt_model_from_config)(
        c, t->shard.shape, max_batch, &t->model, err);
    if (rc)
        return rc;
    t->K = mt_shape_size(mt_model_out(&t->model));
    rc = mt_dataset_check(&t->shard, t->model.in, t->K, c->loss, 1, err);
    if (rc == MT_OK && t->test.n)
        rc = mt_dataset_check(&t->test, t->model.in, t->K, c->loss, 1, err);
    /* A pipeline's set-up is collective (it measures the layers). */
    if (t->plan.stages > 1 && (rc = mt_dist_agree(t->comm, rc, err)) == 0)
        rc = mt__pipe_setup(t, err);
    else if (rc == MT_OK)
        rc = mt_plan_own(&t->plan, &t->model, NULL, err);
    /* The optimizer's slots are those of the parameters this rank owns. */
    if (rc == MT_OK)
        rc = mt_optim_init_range(&t->optim, &c->optim, t->plan.param_lo,
                                 t->plan.param_hi - t->plan.param_lo, err);
    if (rc == MT_OK)
        rc = layer_penalties(t, err);
    mt_sync_cfg sc = mt_sync_cfg_of(c);
    if (rc == MT_OK)
        rc = mt_sync_init(&t->sync, &t->model, &t->optim, &sc, &t->plan,
                          err);
    if (rc == MT_OK)
        rc = mt__lag_init(t, err);
    if (rc)
        return rc;
    if (c->deterministic) {
        /* Room for the gradients of this rank's groups of one batch. */
        size_t groups = (c->batch + c->group - 1) / c->group;
        groups = (groups + (size_t)t->size - 1) / (size_t)t->size;
        t->group_grads = mt_calloc(groups * t->model.n_params, sizeof(float));
        t->group_sums = mt_calloc(MT__STEP_SUMS * groups, sizeof(double));
        if (!t->group_grads || !t->group_sums) {
            mt_seterr(err, "out of memory for %zu group gradients", groups);
            return MT_ENOMEM;
        }
    }
    if ((c->shift || c->flip) && t->shard.shape.h <= 1 &&
        t->shard.shape.w <= 1) {
        mt_seterr(err, "%s: [data] shift and flip need image samples "
                       "(C, H, W); %s holds flat features",
                  c->path, c->train);
        return MT_EINVAL;
    }
    /* Steps per fetch: [data] fetch_mb over a rank's rows of a step,
     * counted from values every rank shares, so that all ranks fetch at
     * the same steps. */
    size_t span = c->batch * c->accumulate;
    double step_bytes = (double)((span + workers - 1) / workers) *
                        (double)(t->sample_bytes ? t->sample_bytes : 1);
    double w = c->fetch_mb * 1048576.0 / step_bytes;
    t->win_steps = w < 1.0 ? 1 : w > 1e15 ? (size_t)1e15 : (size_t)w;
    t->aug_tmp = mt_calloc(mt_shape_size(t->shard.shape), sizeof(float));
    t->batch_idx = mt_calloc(max_batch, sizeof(size_t));
    t->labels = mt_calloc(max_batch, sizeof(int32_t));
    t->targets = mt_calloc(max_batch * t->K, sizeof(float));
    if (!t->batch_idx || !t->labels || !t->targets || !t->aug_tmp) {
        mt_seterr(err, "out of memory for batch buffers");
        return MT_ENOMEM;
    }
    return MT_OK;
}

/* Schedules count optimizer steps; the config speaks in epochs. */
static void make_schedule(trainer *t)
{
    const mt_config *c = t->cfg;
    size_t per_epoch = mt__steps_per_epoch(t);
    size_t total = per_epoch * c->epochs;
    if (c->max_steps && c->max_steps < total)
        total = c->max_steps;
    t->sched = (mt_schedule){
        .kind = (mt_schedule_kind)c->schedule,
        .lr0 = c->optim.lr,
        .gamma = (float)c->gamma,
        .step_size = (size_t)(c->step_epochs * (double)per_epoch + 0.5),
        .total_steps = total,
        .min_lr = (float)c->min_lr,
        .warmup_steps = c->warmup_steps,
        .decay = c->decay,
        .restart_steps =
            (size_t)(c->restart_epochs * (double)per_epoch + 0.5),
        .restart_mult = c->restart_mult};
    for (size_t i = 0; i < c->n_milestones; i++)
        t->sched.milestones[i] =
            (size_t)(c->milestones[i] * (double)per_epoch + 0.5);
    t->sched.n_milestones = c->n_milestones;
    if (t->sched.step_size == 0)
        t->sched.step_size = 1;
    t->lr = mt_schedule_lr(&t->sched, 0);
}

/* Rank 0 creates the run directory with config.ini and the metrics
 * log; t->config_text already holds the resolved configuration. */
static int open_run_dir(trainer *t, char *err)
{
    const mt_config *c = t->cfg;
    if (t->rank != 0)
        return MT_OK;
    int rc = mt_mkdirs(c->dir, err);
    char path[MT_PATH_LEN + 32];
    if (rc == MT_OK) {
        snprintf(path, sizeof path, "%s/config.ini", c->dir);
        FILE *fp = fopen(path, "w");
        if (!fp || fputs(t->config_text, fp) < 0) {
            mt_seterr(err, "%s: cannot write", path);
            rc = MT_EIO;
        }
        if (fp)
            fclose(fp);
    }
    if (rc == MT_OK) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->dir);
        rc = mt_metrics_open(&t->log, path, err);
    }
    return rc;
}

/* Local steps are followed by an agreement before the next collective
 * one (split, class weights), so that one rank's failure stops all. */
static int setup(trainer *t, char *err)
{
    mt_watch("reading the data files");
    int rc = mt_dist_agree(t->comm, load_files(t, err), err);
    if (rc == MT_OK)
        rc = split(t, err);
    if (rc == MT_OK)
        rc = mt_dist_agree(t->comm, build(t, err), err);
    if (rc == MT_OK)
        rc = mt__class_weights(t, err);
    if (rc == MT_OK)
        rc = mt__sampler_setup(t, err);
    if (rc == MT_OK)
        rc = mt__es_init(t, err);
    if (rc == MT_OK) {
        make_schedule(t);
        /* The resolved configuration: for config.ini, weights and
         * checkpoints, and to compare with a checkpoint's on resume. */
        size_t len = 0;
        FILE *mem = open_memstream(&t->config_text, &len);
        if (mem) {
            mt_config_write(t->cfg, mem);
            fclose(mem);
        } else {
            mt_seterr(err, "out of memory");
            rc = MT_ENOMEM;
        }
    }
    if (rc == MT_OK && !t->opts->dry_run)
        rc = open_run_dir(t, err);
    return mt_dist_agree(t->comm, rc, err);
}

/* Seconds until the last step: the steps left at this session's pace so
 * far, evaluations and checkpoints included. */
static double eta(const trainer *t, double now)
{
    uint64_t done = t->step - t->session_step0;
    if (done == 0 || t->step >= t->sched.total_steps)
        return -1.0;
    return (now - t->session_t0) / (double)done *
           (double)(t->sched.total_steps - t->step);
}

int mt__numeric_where(int rc, const char *what, size_t epoch,
                      uint64_t step, char *err)
{
    if (rc != MT_ENUMERIC || !err)
        return rc;
    char msg[MT_ERR_LEN];
    snprintf(msg, sizeof msg, "%s", err);
    mt_seterr(err, "epoch %zu, step %llu: %s %s; the run diverged",
              epoch, (unsigned long long)step, what, msg);
    return rc;
}

/* Runs epoch `epoch` from t->resume_pos (0 unless resumed). Sets *stop
 * when max_steps ended training. */
static int run_epoch(trainer *t, size_t epoch, int *stop, char *err)
{
    const mt_config *c = t->cfg;
    /* One optimizer step takes `accumulate` micro-batches of `batch`. */
    size_t span = c->batch * c->accumulate, n = t->sampler.n_epoch;
    size_t steps = mt__steps_per_epoch(t);
    /* A checkpoint's position is a step's end: a multiple of span, or n
     * after the epoch's last, short step (a stop right there: round up,
     * or that step ran twice on resume). */
    size_t first = (t->resume_pos + span - 1) / span;
    if (t->resume_pos == 0) {
        memset(t->ep_sums, 0, sizeof t->ep_sums);
        t->ep_seen = 0;
    }
    t->resume_pos = 0;
    t->epoch_now = epoch;
    mt__prepare_epoch(t, epoch, first * span);
    int rc = MT_OK;
    double window[3] = {0, 0, 0}, t_start = MPI_Wtime(), t_window = t_start;
    size_t wseen = 0;
    for (size_t s = first; rc == MT_OK && s < steps; s++) {
        if (c->max_steps && t->step >= c->max_steps) {
            *stop = 1;
            t->resume_pos = s * span; /* where a resume picks up */
            break;
        }
        if (s == t->win_end && (rc = mt__fetch_window(t, s, steps, err)))
            break;
        size_t g0 = s * span;
        size_t G = n - g0 < span ? n - g0 : span;
        double before[3] = {t->ep_sums[0], t->ep_sums[1], t->ep_sums[2]};
        mt_watch_step(t->step);
        mt_watch("training step (forward, backward)");
        if ((rc = mt__train_step(t, t->step, g0, G, t->ep_sums, err)))
            break;
        t->step++;
        t->ep_seen += G;
        t->run_samples += G;
        wseen += G;
        rc = t->sync.async ? mt__lag_after_step(t, epoch, g0 + G, err)
                           : mt__after_step(t, epoch, g0 + G, err);
        /* (asynchronous: the sums of a step `staleness` steps back) */
        for (int k = 0; k < 3; k++)
            window[k] += t->ep_sums[k] - before[k];
        if (t->rank == 0 && ((s + 1) % c->log_every == 0 || s + 1 == steps)) {
            double now = MPI_Wtime();
            mt_progress_step(&t->progress, epoch + 1, c->epochs, s + 1,
                             steps, window[0] / (double)wseen,
                             mt__acc_of(window, wseen),
                             (double)wseen / (now - t_window), eta(t, now));
            memset(window, 0, sizeof window);
            wseen = 0;
            t_window = now;
        }
        if (t->opts->poll)
            t->opts->poll(t->opts->poll_user);
    }
    mt__drop_prefetch(t);
    /* Before evaluating: the deferred update applied; asynchronous, all
     * meet with the same parameters and the epoch's sums complete. */
    if (rc == MT_OK)
        rc = mt_sync_settle(&t->sync, err);
    if (rc == MT_OK)
        rc = mt__lag_meet(t, err);
    if (rc == MT_OK && t->lag_stop) { /* found by the meeting's drain */
        rc = mt__save(t, epoch, *stop ? t->resume_pos : n, 0, err);
        rc = rc ? rc : mt__stopped(t, err);
    }
    double secs = MPI_Wtime() - t_start;
    t->train_secs += secs;
    if (rc || *stop)
        return rc;
    mt_eval_detail vd = {0};
    double v[MT_MONITORS];
    mt_watch("validation");
    if (t->n_val)
        rc = mt__numeric_where(
            mt_evaluate_detail(&t->model, mt__eval_pipe(t), &t->val,
                               t->comm, (mt_loss_kind)c->loss, &vd, err),
            "validation", epoch + 1, t->step, err);
    mt__epoch_values(t->ep_sums, t->ep_seen, &vd, v);
    if (rc == MT_OK && t->ep_seen)
        mt__report_epoch(t, epoch + 1, t->step, t->ep_sums, t->ep_seen,
                         secs, &vd, v);
    /* Early stopping, the plateau and the best checkpoint decide on these
     * without a collective; rank 0's copy makes sure all decide alike
     * even if a reduction rounded differently on some rank. */
    mt_watch("epoch-end metrics (MPI_Bcast)");
    if (rc == MT_OK)
        MPI_Bcast(v, MT_MONITORS, MPI_DOUBLE, 0, t->comm);
    if (rc == MT_OK)
        memcpy(t->last_v, v, sizeof t->last_v);
    if (rc == MT_OK && !t->monitors_checked) {
        t->monitors_checked = 1;
        rc = mt__check_monitors(t, v, err);
    }
    if (rc == MT_OK)
        rc = mt__after_epoch(t, epoch, v, err);
    if (rc == MT_OK) {
        t->early_stopped = mt__es_after_epoch(t, epoch, v);
        mt__plateau_after_epoch(t, v);
    }
    mt_eval_detail_free(&vd);
    return rc;
}

static int finish(trainer *t, uint64_t step, mt_train_result *res, char *err)
{
    const mt_config *c = t->cfg;
    int rc = MT_OK;
    mt_watch("final evaluation");
    if (t->n_val)
        rc = mt__numeric_where(mt_evaluate(&t->model, mt__eval_pipe(t),
                                           &t->val, t->comm,
                                           (mt_loss_kind)c->loss, &res->val,
                                           err),
                               "validation", t->epoch_now + 1, step, err);
    mt_eval_detail td = {0};
    if (rc == MT_OK && c->test[0])
        rc = mt__numeric_where(
            mt_evaluate_detail(&t->model, mt__eval_pipe(t), &t->test,
                               t->comm, (mt_loss_kind)c->loss, &td, err),
            "test", t->epoch_now + 1, step, err);
    res->test = td.basic;
    char extra[512] = "";
    if (rc == MT_OK && c->test[0]) {
        const double none[3] = {0.0, 0.0, 0.0};
        double v[MT_MONITORS];
        mt__epoch_values(none, 0, &td, v);
        mt__detail_json(&td, v, extra, sizeof extra);
    }
    mt_eval_detail_free(&td);
    if (rc)
        return rc;
    if (t->rank == 0 && res->test.n) {
        mt_metrics_write(&t->log, "test", c->epochs, step, res->test.loss,
                         res->test.accuracy, 0, t->lr, MPI_Wtime() - t->t0,
                         extra);
        printf("test loss %.4f", res->test.loss);
        if (res->test.accuracy >= 0)
            printf("  test accuracy %.4f", res->test.accuracy);
        printf("  (%zu samples)\n", res->test.n);
    }
    char path[MT_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/weights.h5", c->dir);
    /* Weights that are not finite are never written as a result. */
    rc = mt__numeric_where(mt_model_check_finite(&t->model, err),
                           "final weights:", t->epoch_now + 1, step, err);
    if ((rc = mt_dist_agree(t->comm, rc, err)))
        return rc;
    mt_watch("writing weights.h5");
    if (t->plan.stages > 1)
        rc = mt__pipe_save_weights(t, path, err);
    else if (t->rank == 0)
        rc = mt_weights_save(&t->model, path, t->config_text, err);
    if (rc == MT_OK && t->rank == 0)
        printf("weights written to %s\n", path);
    return mt_dist_agree(t->comm, rc, err);
}

static int checkpoints_on(const mt_config *c)
{
    return c->every_steps > 0 || c->every_minutes > 0.0;
}

/* The trainer before set-up: nothing allocated, nothing saved yet. */
static void init_state(trainer *t, const mt_config *cfg, MPI_Comm comm,
                       const mt_train_opts *opts)
{
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->plan.run = t->plan.dp = t->plan.pipe = MPI_COMM_NULL;
    t->comm = comm;
    t->opts = opts;
    t->t0 = t->last_save = MPI_Wtime();
    t->saved_step = UINT64_MAX;
    t->best = NAN;
    t->lr_scale = 1.0;
    t->pl_best = NAN;
    for (int m = 0; m < MT_MONITORS; m++)
        t->last_v[m] = NAN;
    MPI_Comm_rank(comm, &t->rank);
    MPI_Comm_size(comm, &t->size);
    mt__slow_knob(t);
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s",
             cfg->ckpt_dir[0] ? cfg->ckpt_dir : cfg->dir);
    if (!cfg->ckpt_dir[0])
        strncat(t->ckpt_dir, "/checkpoints",
                sizeof t->ckpt_dir - strlen(t->ckpt_dir) - 1);
    openblas_set_num_threads((int)cfg->threads);
    mt_flush_denormals(cfg->flush_denormals);
    mt_progress_init(&t->progress, stdout, cfg->progress);
}

int mt_train(const mt_config *cfg, MPI_Comm comm, const mt_train_opts *opts,
             mt_train_result *res, char *err)
{
    static const mt_train_opts none = {0};
    trainer t;
    init_state(&t, cfg, comm, opts ? opts : &none);
    memset(res, 0, sizeof *res);
    for (int m = 0; m < MT_MONITORS; m++)
        res->last[m] = NAN;
    /* From here on the library talks on its own copy of comm. */
    int rc = mt_plan_init(&t.plan, cfg, comm, err);
    if (rc == MT_OK) {
        t.comm = t.plan.run;
        rc = setup(&t, err);
    }
    size_t epoch = 0;
    if (rc == MT_OK && t.opts->resume)
        rc = mt__resume(&t, &epoch, err);
    if (rc == MT_OK && t.rank == 0)
        mt__print_plan(&t, epoch);
    if (rc == MT_OK && t.opts->dry_run) {
        res->steps = t.step;
        trainer_free(&t);
        return MT_OK;
    }
    int stop = 0;
    double t_run = t.train_secs;
    t.session_step0 = t.step;
    t.session_t0 = MPI_Wtime();
    /* A resumed run that had stopped early stays stopped. */
    if (cfg->monitor && t.es_wait >= cfg->patience + (cfg->patience == 0))
        epoch = cfg->epochs;
    size_t end = cfg->epochs;
    if (t.opts->until_epoch && t.opts->until_epoch < end)
        end = t.opts->until_epoch;
    while (rc == MT_OK && epoch < end) {
        rc = run_epoch(&t, epoch, &stop, err);
        if (stop)
            break;
        epoch++;
        if (t.early_stopped)
            break;
    }
    if (rc == MT_OK)
        rc = mt__lag_meet(&t, err);
    /* A run that ends (or hits max_steps) leaves a checkpoint to resume
     * or extend from, unless it just wrote one. */
    if (rc == MT_OK && (checkpoints_on(cfg) || t.opts->until_epoch) &&
        t.saved_step != t.step)
        rc = mt__save(&t, epoch, stop ? t.resume_pos : 0, 0, err);
    /* The checkpoint keeps the last state; what is evaluated and written
     * as weights.h5 is the best one. */
    if (rc == MT_OK && !stop && cfg->restore_best)
        mt__es_restore(&t);
    if (rc == MT_OK)
        rc = finish(&t, t.step, res, err);
    res->steps = t.step;
    res->epochs = epoch;
    res->seconds = t.train_secs - t_run;
    res->samples_per_s =
        res->seconds > 0 ? (double)t.run_samples / res->seconds : 0.0;
    res->comm_wait_s = t.sync.wait_s;
    res->progress_thread = t.sync.thread != NULL;
    memcpy(res->last, t.last_v, sizeof res->last);
    mt_progress_end(&t.progress);
    trainer_free(&t);
    return rc;
}
