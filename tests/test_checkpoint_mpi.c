/* Checkpoints (run at 1, 2, 3 and 4 ranks): a run stopped mid-epoch and
 * resumed equals the uninterrupted run bit for bit; another rank count
 * resumes the same learning problem; damaged, incomplete, foreign or
 * mismatched checkpoints are refused by name, and auto-resume falls back
 * to the newest good one. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpitrain/checkpoint.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/io.h"
#include "mpitrain/model.h"
#include "mpitrain/optim.h"
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];

/* 97 samples, batch 10, validation 0.2: 8 steps an epoch, 3 epochs;
 * dropout and Adam, so that every piece of state matters. */
static const char ini[] =
    "[run]\nseed = 11\nprogress = none\n"
    "[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 3\nbatch = 10\n"
    "[optimizer]\ntype = adam\nlr = 0.01\nschedule = cosine\n"
    "[checkpoint]\nevery_steps = 5\nkeep = 10\n"
    "[conv]\nfilters = 3\nsize = 3\npad = 1\nactivation = relu\n"
    "[maxpool]\n[flatten]\n"
    "[dense]\nunits = 8\nactivation = tanh\n"
    "[dropout]\nrate = 0.3\n"
    "[dense]\nunits = 3\n[softmax]\n";

static int group_setup(void **s) { return fx_setup(dir, sizeof dir, ini); }

static int group_teardown(void **s) { return fx_teardown(dir); }

static void load(mt_config *c, const char *run, const char *extra)
{
    const char *const sets[] = {extra, NULL};
    fx_load(c, dir, "t.ini", run, extra ? sets : NULL);
}

/* Trains run `run` of t.ini with the NULL-terminated overrides sets. */
static int train_with(const char *run, const char *const *sets,
                      MPI_Comm comm, const char *resume, uint64_t stop_after,
                      char *err)
{
    mt_config c;
    mt_train_result r;
    fx_load(&c, dir, "t.ini", run, sets);
    mt_train_opts o = {.resume = resume, .stop_after = stop_after};
    int rc = mt_train(&c, comm, &o, &r, err);
    mt_config_free(&c);
    return rc;
}

static int train(const char *run, const char *extra, MPI_Comm comm,
                 const char *resume, uint64_t stop_after, char *err)
{
    const char *const sets[] = {extra, NULL};
    return train_with(run, extra ? sets : NULL, comm, resume, stop_after,
                      err);
}

/* Reads a whole file (rank 0's view). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    fclose(f);
    return s;
}

/* The metrics log without its timing fields (samples_per_s, wall_s):
 * epoch, step, split, loss, accuracy of every record. */
static void strip_timing(char *log)
{
    char *out = log;
    for (char *line = log; *line;) {
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *cut = strstr(line, ",\"samples_per_s\"");
        size_t keep = cut && cut < line + len ? (size_t)(cut - line) : len;
        memmove(out, line, keep);
        out += keep;
        *out++ = '\n';
        line += len + (end ? 1 : 0);
    }
    *out = '\0';
}

static void path_of(char *buf, size_t len, const char *run, const char *f)
{
    snprintf(buf, len, "%s/%s/%s", dir, run, f);
}

/* Also with class oversampling, whose epochs are drawn, not permuted,
 * with fetch windows of one step, so that the resume starts mid-window,
 * and stopped after an epoch's last, short step (78 samples: 8 steps,
 * the last of 8 samples; once resumed it ran again, and a Slurm test
 * whose signal came there failed). */
static void test_resume_mid_epoch_is_exact(void **s)
{
    static const char *const extras[] = {NULL, "train.sampling=oversample",
                                         "data.fetch_mb=0.0001", NULL};
    static const char *const full[] = {"full", "full_os", "full_win",
                                       "full"};
    static const char *const cut[] = {"cut", "cut_os", "cut_win",
                                      "cut_end"};
    /* step 11 is in the middle of the second epoch (8 steps each, 9
     * oversampled); step 16 ends it */
    static const uint64_t stop[] = {11, 11, 11, 16};
    char err[MT_ERR_LEN] = "";
    for (int v = 0; v < 4; v++) {
        if (v < 3 && train(full[v], extras[v], MPI_COMM_WORLD, NULL, 0, err))
            fail_msg("%s", err);
        assert_int_equal(
            train(cut[v], extras[v], MPI_COMM_WORLD, NULL, stop[v], err),
            MT_ESTOPPED);
        if (train(cut[v], extras[v], MPI_COMM_WORLD, "auto", 0, err))
            fail_msg("%s", err);
        if (rank != 0)
            continue;
        char a[300], b[300];
        path_of(a, sizeof a, full[v], "weights.h5");
        path_of(b, sizeof b, cut[v], "weights.h5");
        assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
        path_of(a, sizeof a, full[v], "metrics.jsonl");
        path_of(b, sizeof b, cut[v], "metrics.jsonl");
        char *la = slurp(a), *lb = slurp(b);
        strip_timing(la);
        strip_timing(lb);
        assert_string_equal(la, lb);
        free(la);
        free(lb);
    }
}

/* With the deferred update a stop saves the last step applied: the
 * resumed run ends with the uninterrupted run's weights, bit for bit. */
static void test_deferred_update_resumes_exactly(void **s)
{
    const char *const sets[] = {"parallel.defer_update=true",
                                "parallel.bucket_mb=0.0002", NULL};
    char err[MT_ERR_LEN] = "";
    if (train_with("full_defer", sets, MPI_COMM_WORLD, NULL, 0, err))
        fail_msg("%s", err);
    assert_int_equal(train_with("cut_defer", sets, MPI_COMM_WORLD, NULL, 11,
                                err),
                     MT_ESTOPPED);
    if (train_with("cut_defer", sets, MPI_COMM_WORLD, "auto", 0, err))
        fail_msg("%s", err);
    if (rank != 0)
        return;
    char a[300], b[300];
    path_of(a, sizeof a, "full_defer", "weights.h5");
    path_of(b, sizeof b, "cut_defer", "weights.h5");
    assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
}

/* A sharded optimizer's checkpoint holds every slot (gathered from the
 * blocks' owners): with Adam on the ring, whose sharded floats are its
 * unsharded ones, a stop and resume, sharded or not, ends with the
 * uninterrupted sharded run's weights bit for bit. */
static void test_sharded_optimizer_resumes_exactly(void **s)
{
    const char *const sh[] = {"parallel.sync=ring", "optimizer.type=adam",
                              "parallel.bucket_mb=0.0002",
                              "parallel.ring_min_kb=0",
                              "parallel.shard_optimizer=true", NULL};
    const char *const full[] = {"parallel.sync=ring", "optimizer.type=adam",
                                "parallel.bucket_mb=0.0002",
                                "parallel.ring_min_kb=0", NULL};
    const char *const *resumed[2] = {sh, full};
    char err[MT_ERR_LEN] = "";
    if (train_with("full_shard", sh, MPI_COMM_WORLD, NULL, 0, err))
        fail_msg("%s", err);
    for (int k = 0; k < 2; k++) {
        char run[32], a[300], b[300];
        snprintf(run, sizeof run, "cut_shard%d", k);
        if (train_with(run, sh, MPI_COMM_WORLD, NULL, 11, err) !=
                MT_ESTOPPED ||
            train_with(run, resumed[k], MPI_COMM_WORLD, "auto", 0, err))
            fail_msg("%s: %s", run, err);
        if (rank != 0)
            continue;
        path_of(a, sizeof a, "full_shard", "weights.h5");
        path_of(b, sizeof b, run, "weights.h5");
        if (fx_weight_diff(dir, a, b, 1) != 0.0)
            fail_msg("%s: resumed weights differ", run);
    }
}

/* Early stopping's state and best weights survive a stop and resume. */
static void test_resume_keeps_early_stopping(void **s)
{
    const char *es = "train.monitor=val_loss";
    char err[MT_ERR_LEN] = "", set[3][64];
    mt_config c;
    mt_train_result r;
    /* patience 1, min_delta huge: stops after epoch 2, best is epoch 1. */
    snprintf(set[0], sizeof set[0], "train.patience=1");
    snprintf(set[1], sizeof set[1], "train.min_delta=1e9");
    const char *const extra[] = {es, set[0], set[1], NULL};
    fx_load(&c, dir, "t.ini", "esfull", extra);
    mt_train_opts o = {0};
    if (mt_train(&c, MPI_COMM_WORLD, &o, &r, err))
        fail_msg("%s", err);
    mt_config_free(&c);
    fx_load(&c, dir, "t.ini", "escut", extra);
    o.stop_after = 11; /* inside epoch 2 */
    assert_int_equal(mt_train(&c, MPI_COMM_WORLD, &o, &r, err),
                     MT_ESTOPPED);
    o.stop_after = 0;
    o.resume = "auto";
    if (mt_train(&c, MPI_COMM_WORLD, &o, &r, err))
        fail_msg("%s", err);
    assert_int_equal(r.steps, 16);
    /* Resumed once more: already stopped, nothing trains. */
    if (mt_train(&c, MPI_COMM_WORLD, &o, &r, err))
        fail_msg("%s", err);
    assert_int_equal(r.steps, 16);
    mt_config_free(&c);
    if (rank == 0) {
        char a[300], b[300];
        path_of(a, sizeof a, "esfull", "weights.h5");
        path_of(b, sizeof b, "escut", "weights.h5");
        assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
    }
}

static void test_auto_with_nothing_saved_starts_fresh(void **s)
{
    char err[MT_ERR_LEN] = "";
    if (train("fresh", NULL, MPI_COMM_WORLD, "auto", 0, err))
        fail_msg("%s", err);
    if (rank == 0) {
        char a[300], b[300];
        path_of(a, sizeof a, "full", "weights.h5");
        path_of(b, sizeof b, "fresh", "weights.h5");
        assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
    }
}

static void test_resume_on_one_rank(void **s)
{
    /* Saved by every rank of the world, resumed by rank 0 alone: the same
     * learning problem, up to summation order. */
    char err[MT_ERR_LEN] = "";
    assert_int_equal(train("moved", NULL, MPI_COMM_WORLD, NULL, 13, err),
                     MT_ESTOPPED);
    double worst = 0.0;
    if (rank == 0) {
        if (train("moved", NULL, MPI_COMM_SELF, "auto", 0, err))
            fail_msg("%s", err);
        char a[300], b[300];
        path_of(a, sizeof a, "full", "weights.h5");
        path_of(b, sizeof b, "moved", "weights.h5");
        worst = fx_weight_diff(dir, a, b, 0);
    }
    MPI_Bcast(&worst, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    assert_true(worst < 1e-4);
}

/* Checkpoints stay logical with a parameter server: each server writes
 * its shard's parameters and Adam slots into the one layout. A ps run
 * stopped and resumed as ps is exact; a checkpoint of any sync mode or
 * sharding resumes in any other (allreduce -> ps, ps -> allreduce, 1
 * dedicated server -> colocated and back) and trains the run an
 * uninterrupted one does, up to summation order. */
static void test_parameter_server_checkpoints(void **s)
{
    char err[MT_ERR_LEN] = "";
    const char *const ps[] = {"parallel.sync=ps", NULL};
    const char *const ded[] = {"parallel.sync=ps", "parallel.servers=1",
                               NULL};
    if (train_with("ps_full", ps, MPI_COMM_WORLD, NULL, 0, err) ||
        train_with("ps_cut", ps, MPI_COMM_WORLD, NULL, 11, err) !=
            MT_ESTOPPED ||
        train_with("ps_cut", ps, MPI_COMM_WORLD, "auto", 0, err))
        fail_msg("%s", err);
    /* (mode saved, mode resumed), stopped at step 11; dedicated servers
     * need a worker besides. */
    const char *const *pairs[4][2] = {{ps, NULL}, {NULL, ps}, {ded, ps},
                                      {ps, ded}};
    size_t n_pairs = size > 1 ? 4 : 2;
    double worst = 0.0;
    for (size_t i = 0; i < n_pairs; i++) {
        char run[32];
        snprintf(run, sizeof run, "across%zu", i);
        int rc = train_with(run, pairs[i][0], MPI_COMM_WORLD, NULL, 11, err);
        if (rc != MT_ESTOPPED)
            fail_msg("%s: %s", run, err);
        if (train_with(run, pairs[i][1], MPI_COMM_WORLD, "auto", 0, err))
            fail_msg("%s: %s", run, err);
        if (rank == 0) {
            char a[300], b[300];
            path_of(a, sizeof a, "full", "weights.h5");
            path_of(b, sizeof b, run, "weights.h5");
            double d = fx_weight_diff(dir, a, b, 0);
            worst = d > worst ? d : worst;
        }
    }
    MPI_Bcast(&worst, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (worst >= 1e-4)
        fail_msg("a resume across sync modes differs from the "
                 "uninterrupted run by %g",
                 worst);
    if (rank == 0) {
        char a[300], b[300];
        path_of(a, sizeof a, "ps_full", "weights.h5");
        path_of(b, sizeof b, "ps_cut", "weights.h5");
        assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
    }
}

/* An asynchronous parameter server stops (its stop request agreed on
 * `staleness` steps late), saves what its servers hold, and resumes as
 * async or as sync; a synchronous checkpoint resumes as async. Every
 * resumed run ends with all 24 steps and finite weights. */
static void test_async_checkpoints(void **s)
{
    char err[MT_ERR_LEN] = "";
    const char *const async[] = {"parallel.sync=ps", "parallel.ps_mode=async",
                                 "parallel.staleness=2", NULL};
    const char *const sync[] = {"parallel.sync=ps", NULL};
    const char *const *pairs[3][2] = {{async, async}, {async, sync},
                                      {sync, async}};
    for (int i = 0; i < 3; i++) {
        char run[32];
        snprintf(run, sizeof run, "async%d", i);
        if (train_with(run, pairs[i][0], MPI_COMM_WORLD, NULL, 11, err) !=
            MT_ESTOPPED)
            fail_msg("%s: %s", run, err);
        mt_config c;
        mt_train_result r;
        fx_load(&c, dir, "t.ini", run, pairs[i][1]);
        mt_train_opts o = {.resume = "auto"};
        if (mt_train(&c, MPI_COMM_WORLD, &o, &r, err))
            fail_msg("%s resumed: %s", run, err);
        assert_int_equal(r.steps, 24);
        assert_true(isfinite(r.val.loss));
        mt_config_free(&c);
    }
}

/* Overwrites bytes in the middle of a file. */
static void damage(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    for (int i = 0; i < 64; i++)
        fputc(0x5a, f);
    fclose(f);
}

static void test_auto_skips_damaged_checkpoints(void **s)
{
    char err[MT_ERR_LEN] = "", note[2048] = "", *path = NULL;
    if (rank == 0) {
        /* "full" kept checkpoints at steps 5, 10, 15, 20 and 24. */
        char ck[300], newest[340], second[340];
        path_of(ck, sizeof ck, "full", "checkpoints");
        snprintf(newest, sizeof newest, "%s/ckpt-%012d.h5", ck, 24);
        snprintf(second, sizeof second, "%s/ckpt-%012d.h5", ck, 20);
        assert_int_equal(truncate(newest, 2000), 0);
        damage(second, 4000); /* inside the tensor data */
        assert_int_equal(mt_ckpt_find(ck, "auto", &path, note, sizeof note,
                                      err),
                         MT_OK);
        assert_non_null(strstr(path, "ckpt-000000000015.h5"));
        assert_non_null(strstr(note, "ckpt-000000000024.h5"));
        assert_non_null(strstr(note, "ckpt-000000000020.h5"));
        free(path);
        /* Named explicitly, a damaged file is an error, not a fallback. */
        assert_int_not_equal(mt_ckpt_find(ck, newest, &path, NULL, 0, err),
                             MT_OK);
        assert_non_null(strstr(err, "ckpt-000000000024.h5"));
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

/* Rewrites a root attribute of a (copied) checkpoint. */
static void set_attr(const char *path, const char *name, double v, int del)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    H5Adelete(f, name);
    if (!del) {
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, name, H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT,
                             H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
        H5Aclose(a);
        H5Sclose(sp);
    }
    H5Fclose(f);
}

static void expect_resume_error(const char *file, const char *extra,
                                const char *frag)
{
    char err[MT_ERR_LEN] = "";
    int rc = train("bad", extra, MPI_COMM_WORLD, file, 0, err);
    assert_int_not_equal(rc, MT_OK);
    if (!strstr(err, frag))
        fail_msg("error '%s' lacks '%s'", err, frag);
}

static void test_bad_checkpoints_are_refused(void **s)
{
    char src[300], cp[300], cmd[700];
    snprintf(src, sizeof src, "%s/full/checkpoints/ckpt-%012d.h5", dir, 10);
    snprintf(cp, sizeof cp, "%s/copy.h5", dir);
    if (rank == 0) {
        snprintf(cmd, sizeof cmd, "cp %s %s", src, cp);
        assert_int_equal(system(cmd), 0);
        set_attr(cp, "complete", 0, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_resume_error(cp, NULL, "incomplete");
    if (rank == 0) {
        set_attr(cp, "complete", 1, 0);
        set_attr(cp, "format_version", 99, 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_resume_error(cp, NULL, "format_version 99");
    /* Another model: dense5 has 9 units here, 8 in the checkpoint. */
    expect_resume_error(src, "layer4.units=9",
                        "tensor /model/dense5/weight: model expects (9, 12), "
                        "file has (8, 12)");
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.h5", dir);
    expect_resume_error(missing, NULL, "none.h5");
}

/* Tensors of several chunks, written by several ranks, read back as they
 * were: parameters, Adam's m and v, and the state. */
static void test_large_tensors_round_trip(void **s)
{
    mt_layer_spec specs[] = {{.kind = MT_DENSE, .units = 700},
                             {.kind = MT_BATCHNORM, .momentum = 0.1f,
                              .eps = 1e-5f},
                             {.kind = MT_DENSE, .units = 3}};
    mt_model a, b;
    mt_optim oa, ob;
    char err[MT_ERR_LEN] = "", ck[300];
    mt_optim_cfg oc = {.kind = MT_OPT_ADAM, .lr = 1e-3f, .beta1 = 0.9f,
                       .beta2 = 0.999f, .eps = 1e-8f};
    mt_shape in = {1, 28, 28}; /* dense1 weight: 700 x 784, 2.2 MB */
    assert_int_equal(mt_model_init(&a, specs, 3, in, 2, 5, err), MT_OK);
    assert_int_equal(mt_model_init(&b, specs, 3, in, 2, 6, err), MT_OK);
    assert_int_equal(mt_optim_init(&oa, &oc, a.n_params, err), MT_OK);
    assert_int_equal(mt_optim_init(&ob, &oc, b.n_params, err), MT_OK);
    for (size_t i = 0; i < a.n_params; i++) {
        oa.m[i] = (float)i;
        oa.v[i] = -(float)i;
    }
    for (size_t i = 0; i < a.n_state; i++)
        a.state[i] = 0.5f + (float)i;
    oa.t = 42;
    snprintf(ck, sizeof ck, "%s/big", dir);
    mt_ckpt_state st = {.step = 7, .epoch = 1, .position = 30, .ranks = size};
    assert_int_equal(mt_ckpt_save(MPI_COMM_WORLD, ck, &a, &oa, &st, "x", "",
                                  2, 0, err),
                     MT_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/ckpt-%012d.h5", ck, 7);
    mt_ckpt_state got;
    if (mt_ckpt_load(path, &b, &ob, &got, NULL, NULL, err))
        fail_msg("%s", err);
    assert_memory_equal(a.params, b.params, a.n_params * sizeof(float));
    assert_memory_equal(a.state, b.state, a.n_state * sizeof(float));
    assert_memory_equal(oa.m, ob.m, a.n_params * sizeof(float));
    assert_memory_equal(oa.v, ob.v, a.n_params * sizeof(float));
    assert_int_equal(ob.t, 42);
    assert_int_equal(got.step, 7);
    assert_int_equal(got.position, 30);
    mt_optim_free(&oa);
    mt_optim_free(&ob);
    mt_model_free(&a);
    mt_model_free(&b);
}

/* keep = 1 with best = val_loss: the newest checkpoint and the best one
 * survive pruning, and `best` names the epoch with the lowest val loss. */
static void test_best_checkpoint_is_kept(void **s)
{
    char err[MT_ERR_LEN] = "";
    mt_config c;
    mt_train_result r;
    char extra[] = "checkpoint.best=val_loss";
    load(&c, "best", extra);
    c.keep = 1;
    c.epochs = 6;
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    mt_config_free(&c);
    if (rank != 0)
        return;
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "cd %s/best/checkpoints && test -e \"$(cat best)\" && "
             "test -e \"$(cat latest)\" && test $(ls ckpt-*.h5 | wc -l) -le 2",
             dir);
    assert_int_equal(system(cmd), 0);
    /* The best epoch's step is the step of the lowest val loss. */
    char path[400];
    snprintf(path, sizeof path, "%s/best/metrics.jsonl", dir);
    char *log = slurp(path);
    double lowest = 1e30;
    long step = -1;
    for (char *p = log; (p = strstr(p, "\"split\":\"val\",\"loss\":"));
         p++) {
        double v = atof(p + 22);
        char *st = p;
        while (st > log && strncmp(st, "\"step\":", 7) != 0)
            st--;
        if (v < lowest) {
            lowest = v;
            step = atol(st + 7);
        }
    }
    free(log);
    snprintf(path, sizeof path, "%s/best/checkpoints/best", dir);
    char *best = slurp(path);
    char want[64];
    snprintf(want, sizeof want, "ckpt-%012ld.h5", step);
    assert_non_null(best);
    assert_non_null(strstr(best, want));
    free(best);
}

static void test_unwritable_checkpoint_dir(void **s)
{
    char err[MT_ERR_LEN] = "";
    int rc = train("nodir", "checkpoint.dir=/proc/mpitrain-forbidden",
                   MPI_COMM_WORLD, NULL, 0, err);
    assert_int_equal(rc, MT_EIO);
    assert_non_null(strstr(err, "/proc/mpitrain-forbidden"));
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_mid_epoch_is_exact),
        cmocka_unit_test(test_deferred_update_resumes_exactly),
        cmocka_unit_test(test_sharded_optimizer_resumes_exactly),
        cmocka_unit_test(test_auto_with_nothing_saved_starts_fresh),
        cmocka_unit_test(test_resume_keeps_early_stopping),
        cmocka_unit_test(test_resume_on_one_rank),
        cmocka_unit_test(test_parameter_server_checkpoints),
        cmocka_unit_test(test_async_checkpoints),
        cmocka_unit_test(test_auto_skips_damaged_checkpoints),
        cmocka_unit_test(test_bad_checkpoints_are_refused),
        cmocka_unit_test(test_large_tensors_round_trip),
        cmocka_unit_test(test_best_checkpoint_is_kept),
        cmocka_unit_test(test_unwritable_checkpoint_dir),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
