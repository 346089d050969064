/* mpitrain train with [parallel] stages (tests/mpirun.sh: 1-4 ranks).
 * A pipeline of P stages cutting a global batch B into M micro-batches
 * trains as one rank with batch B / M and accumulate M: every schedule,
 * stages = the rank count and a 2 x 2 grid of stages and replicas,
 * stages cut by measure and by [parallel] split, M that does not divide
 * the batch, Adam with clipping (the norm over the stages), and batch
 * norm, whose statistics are per micro-batch and updated once per
 * micro-batch, also where a stage recomputes its forward. Checkpoints stay
 * logical: a pipeline's resumes as a plain run and the reverse. Layouts
 * that cannot work are refused before training. Validation and test
 * sets are evaluated through the stages, to one rank's figures. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/io.h"
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];
static char stages[32]; /* "parallel.stages=<world size>" */
static char test_set[300]; /* "data.test=<the training file>" */

/* Batch norm after the convolution and after the hidden dense layer. */
static const char bn_ini[] =
    "[run]\nseed = 5\nprogress = none\n[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 2\nbatch = 10\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\nmomentum = 0.9\n"
    "[conv]\nfilters = 3\nsize = 3\npad = 1\nbackend = im2col\n"
    "[batchnorm]\n[relu]\n"
    "[flatten]\n[dense]\nunits = 8\n[batchnorm]\n[tanh]\n"
    "[dense]\nunits = 3\n[softmax]\n";

/* 2 MiB of parameters in the middle layer, momentum, early stopping. */
static const char wide_ini[] =
    "[run]\nseed = 5\nprogress = none\n[data]\nvalidation = 0.2\n"
    "[train]\nepochs = 2\nbatch = 10\nmonitor = val_loss\n"
    "[optimizer]\ntype = sgd\nlr = 0.05\nmomentum = 0.9\n"
    "[flatten]\n[dense]\nunits = 1024\nactivation = relu\n"
    "[dense]\nunits = 512\nactivation = tanh\n[dense]\nunits = 3\n"
    "[softmax]\n";

static int group_setup(void **s)
{
    snprintf(stages, sizeof stages, "parallel.stages=%d", size);
    if (fx_setup(dir, sizeof dir, fx_model_ini))
        return -1;
    snprintf(test_set, sizeof test_set, "data.test=%s/d.h5", dir);
    if (rank == 0)
        fx_write(dir, "bn.ini", bn_ini);
    if (rank == 0)
        fx_write(dir, "wide.ini", wide_ini);
    MPI_Barrier(MPI_COMM_WORLD);
    return 0;
}

static int group_teardown(void **s) { return fx_teardown(dir); }

/* Weights as one rank's, and the validation and test figures (evaluated
 * through the stages) as one rank's of those weights. t.ini's stages
 * keep every activation (maxpool finds its winners again, dropout keeps
 * its mask rows with them), as wide.ini's, unless told to recompute. */
static void expect_same_evaluated(const char *ini, const char *const *par,
                                  const char *const *self)
{
    double worst = fx_expect_same(dir, ini, par, self, 1e-5);
    if (worst > 1e-4)
        fail_msg("%s %s: evaluations differ from one rank's by %g", ini,
                 par[1], worst);
}

static void test_every_schedule_trains_as_one_rank_accumulating(void **s)
{
    static const char *const names[] = {"parallel.schedule=gpipe",
                                        "parallel.schedule=1f1b",
                                        "parallel.schedule=zb"};
    const char *const self[] = {"train.batch=2", "train.accumulate=5",
                                test_set, NULL};
    for (int k = 0; k < 3; k++) {
        const char *const par[] = {stages, names[k],
                                   "parallel.micro_batches=5", test_set,
                                   NULL};
        expect_same_evaluated("t.ini", par, self);
        /* every stage keeps its activations, or every stage recomputes */
        expect_same_evaluated("wide.ini", par, self);
        const char *const again[] = {stages, names[k],
                                     "parallel.micro_batches=5",
                                     "parallel.recompute=true", test_set,
                                     NULL};
        expect_same_evaluated("wide.ini", again, self);
    }
}

/* 4 ranks as 2 stages x 2 replicas: each replica trains half of every
 * batch, each stage's replicas sum their gradients (allreduce, ring). */
static void test_grid_of_stages_and_replicas(void **s)
{
    if (size != 4)
        skip();
    const char *const self[] = {"train.batch=1", "train.accumulate=10",
                                test_set, NULL};
    const char *const ar[] = {"parallel.stages=2", "parallel.micro_batches=5",
                              test_set, NULL};
    const char *const ring[] = {"parallel.stages=2",
                                "parallel.micro_batches=5",
                                "parallel.sync=ring", "parallel.overlap=false",
                                test_set, NULL};
    /* the clipped norm adds up a replica's stages, not every rank's */
    const char *const clip[] = {"parallel.stages=2", "parallel.micro_batches=5",
                                "train.clip_norm=0.05", NULL};
    const char *const clip_self[] = {"train.batch=1", "train.accumulate=10",
                                     "train.clip_norm=0.05", NULL};
    /* each stage's two replicas serve its parameters in two shards */
    const char *const ps[] = {"parallel.stages=2", "parallel.micro_batches=5",
                              "parallel.sync=ps", test_set, NULL};
    const char *const ps_adam[] = {"parallel.stages=2",
                                   "parallel.micro_batches=5",
                                   "parallel.sync=ps", "optimizer.type=adam",
                                   "optimizer.lr=0.01", "train.clip_norm=0.05",
                                   NULL};
    const char *const adam_self[] = {"train.batch=1", "train.accumulate=10",
                                     "optimizer.type=adam", "optimizer.lr=0.01",
                                     "train.clip_norm=0.05", NULL};
    /* each stage's replicas step one block of each bucket (Adam,
     * clipped: the norm from every rank's blocks) */
    const char *const sharded[] = {"parallel.stages=2",
                                   "parallel.micro_batches=5",
                                   "parallel.shard_optimizer=true",
                                   "optimizer.type=adam", "optimizer.lr=0.01",
                                   "train.clip_norm=0.05", NULL};
    expect_same_evaluated("t.ini", ar, self);
    expect_same_evaluated("t.ini", ring, self);
    expect_same_evaluated("t.ini", ps, self);
    fx_expect_same(dir, "t.ini", ps_adam, adam_self, 1e-5);
    fx_expect_same(dir, "t.ini", sharded, adam_self, 1e-5);
    fx_expect_same(dir, "t.ini", clip, clip_self, 1e-5);
}

/* The convolution alone in stage 1 (split = 2: conv1, relu2), 3
 * micro-batches of 10 samples (3, 3, 4): the same sums as one batch of
 * 10. Adam with a clipped norm needs the norm over every stage. */
static void test_uneven_stages_and_micro_batches(void **s)
{
    if (size < 2)
        skip();
    char split[64] = "parallel.split=2";
    for (int k = 1; k < size - 1; k++) /* then one layer a stage */
        snprintf(split + strlen(split), sizeof split - strlen(split), ",%d",
                 k + 2);
    const char *const uneven[] = {stages, split, "parallel.micro_batches=3",
                                  NULL};
    expect_same_evaluated("t.ini", uneven, NULL);
    const char *const adam[] = {stages, "parallel.micro_batches=2",
                                "optimizer.type=adam", "optimizer.lr=0.01",
                                "train.clip_norm=0.05", NULL};
    const char *const adam_self[] = {"optimizer.type=adam",
                                     "optimizer.lr=0.01",
                                     "train.clip_norm=0.05", "train.batch=5",
                                     "train.accumulate=2", NULL};
    fx_expect_same(dir, "t.ini", adam, adam_self, 1e-5);
}

/* Largest |difference| of the running statistics in two weight files. */
static double state_diff(const char *ini, const char *a, const char *b)
{
    mt_config c;
    fx_load(&c, dir, ini, "cmp", NULL);
    mt_model ma, mb;
    char err[MT_ERR_LEN], pa[300], pb[300];
    snprintf(pa, sizeof pa, "%s/%s/weights.h5", dir, a);
    snprintf(pb, sizeof pb, "%s/%s/weights.h5", dir, b);
    if (mt_model_from_config(&c, (mt_shape){FX_C, 4, 4}, 4, &ma, err) ||
        mt_model_from_config(&c, (mt_shape){FX_C, 4, 4}, 4, &mb, err) ||
        mt_weights_load(&ma, pa, err) || mt_weights_load(&mb, pb, err))
        fail_msg("%s", err);
    assert_true(ma.n_state > 0);
    double worst = 0.0;
    for (size_t i = 0; i < ma.n_state; i++)
        worst = fmax(worst, fabs(ma.state[i] - mb.state[i]));
    mt_model_free(&ma);
    mt_model_free(&mb);
    mt_config_free(&c);
    return worst;
}

/* Batches of 6 (78 = 13 x 6 training samples): every micro-batch of the
 * pipeline is one of the accumulating run, also in the last step. The
 * stages keep their activations (batch norm's split backward finds the
 * statistics again), or, told to, recompute: gpipe then runs every
 * micro-batch's forward twice but the last, and the running statistics
 * must be updated once. */
static void test_batch_norm_per_micro_batch(void **s)
{
    if (size < 2)
        skip();
    const char *const self[] = {"train.batch=3", "train.accumulate=2", NULL};
    const char *const sched[] = {"parallel.schedule=gpipe",
                                 "parallel.schedule=1f1b",
                                 "parallel.schedule=gpipe"};
    for (int k = 0; k < 3; k++) {
        const char *const par[] = {stages, "parallel.micro_batches=2",
                                   "train.batch=6", sched[k],
                                   k == 2 ? "parallel.recompute=true"
                                          : "parallel.recompute=false",
                                   NULL};
        expect_same_evaluated("bn.ini", par, self);
        double worst =
            rank == 0 ? state_diff("bn.ini", "world", "self") : 0.0;
        MPI_Bcast(&worst, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (worst > 1e-5)
            fail_msg("%s %s: running statistics differ by %g", par[3],
                     par[4], worst);
    }
}

/* Trains ini into dir/run for `epochs` on comm with the overrides,
 * resuming from the run's checkpoints. */
static void train_on(const char *ini, MPI_Comm comm, const char *run,
                     const char *epochs, const char *const *par)
{
    const char *sets[8] = {epochs, "checkpoint.every_steps=1000"};
    size_t n = 2;
    for (size_t i = 0; par && par[i]; i++)
        sets[n++] = par[i];
    sets[n] = NULL;
    mt_config c;
    fx_load(&c, dir, ini, run, sets);
    mt_train_opts o = {.resume = "auto"};
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    if (mt_train(&c, comm, &o, &r, err))
        fail_msg("%s: %s", run, err);
    mt_config_free(&c);
}

static double run_diff(const char *ini, const char *a, const char *b)
{
    double worst = 0.0;
    if (rank == 0) {
        char pa[400], pb[400];
        snprintf(pa, sizeof pa, "%s/%s/weights.h5", dir, a);
        snprintf(pb, sizeof pb, "%s/%s/weights.h5", dir, b);
        worst = fx_weight_diff_of(dir, ini, pa, pb, 0);
    }
    MPI_Bcast(&worst, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return worst;
}

/* Epoch 1 as a pipeline, epoch 2 on one rank as a plain run, and the
 * reverse: both as one rank's 2 epochs. Runs dir/<tag>-*. */
static void resume_across_stage_counts(const char *ini, const char *tag,
                                       const char *const *pipe)
{
    char straight[32], p2plain[32], plain2p[32];
    snprintf(straight, sizeof straight, "%s-straight", tag);
    snprintf(p2plain, sizeof p2plain, "%s-p2plain", tag);
    snprintf(plain2p, sizeof plain2p, "%s-plain2p", tag);
    if (rank == 0)
        train_on(ini, MPI_COMM_SELF, straight, "train.epochs=2", NULL);
    train_on(ini, MPI_COMM_WORLD, p2plain, "train.epochs=1", pipe);
    if (rank == 0)
        train_on(ini, MPI_COMM_SELF, p2plain, "train.epochs=2", NULL);
    train_on(ini, MPI_COMM_WORLD, plain2p, "train.epochs=1", NULL);
    train_on(ini, MPI_COMM_WORLD, plain2p, "train.epochs=2", pipe);
    double a = run_diff(ini, p2plain, straight),
           b = run_diff(ini, plain2p, straight);
    if (a > 1e-5 || b > 1e-5)
        fail_msg("%s resumed across stage counts: %g (pipeline first), %g "
                 "(plain first) from the straight run",
                 ini, a, b);
}

static void test_resume_across_stage_counts(void **s)
{
    const char *const pipe[] = {stages, "parallel.micro_batches=2", NULL};
    resume_across_stage_counts("t.ini", "t", pipe);
    if (size != 4)
        return;
    /* 2 x 2 with ps: each replica checkpoints its shard of its stage */
    const char *const ps[] = {"parallel.stages=2", "parallel.micro_batches=2",
                              "parallel.sync=ps", NULL};
    resume_across_stage_counts("t.ini", "ps", ps);
    /* 2 x 2 sharded: the slots gathered within each stage first */
    const char *const sharded[] = {"parallel.stages=2",
                                   "parallel.micro_batches=2",
                                   "parallel.sync=ring",
                                   "parallel.shard_optimizer=true", NULL};
    resume_across_stage_counts("t.ini", "sharded", sharded);
}

/* Layers of many pages, so that a stage hands back whole pages of the
 * layers it does not hold, which then fault if touched: training with
 * momentum, early stopping's best weights (restored at the end), evaluation
 * through the stages, checkpoints, resume and weights.h5 touch only a
 * stage's own layers, and give one rank's numbers. */
static void test_stages_hold_only_their_layers(void **s)
{
    const char *const par[] = {stages, "parallel.micro_batches=5", test_set,
                               NULL};
    const char *const self[] = {"train.batch=2", "train.accumulate=5",
                                test_set, NULL};
    expect_same_evaluated("wide.ini", par, self);
    const char *const pipe[] = {stages, "parallel.micro_batches=2", NULL};
    resume_across_stage_counts("wide.ini", "wide", pipe);
}

/* Each stage checkpoints its layers' running statistics: a pipeline of
 * one micro-batch (its batches are one rank's), resumed on one rank,
 * ends as the straight run, statistics included. */
static void test_stages_checkpoint_their_statistics(void **s)
{
    if (size < 2)
        skip();
    const char *const pipe[] = {stages, "parallel.micro_batches=1", NULL};
    if (rank == 0)
        train_on("bn.ini", MPI_COMM_SELF, "bn_straight", "train.epochs=2",
                 NULL);
    train_on("bn.ini", MPI_COMM_WORLD, "bn_resumed", "train.epochs=1", pipe);
    if (rank == 0)
        train_on("bn.ini", MPI_COMM_SELF, "bn_resumed", "train.epochs=2",
                 NULL);
    double w = run_diff("bn.ini", "bn_resumed", "bn_straight");
    double st = rank == 0 ? state_diff("bn.ini", "bn_resumed", "bn_straight")
                          : 0.0;
    MPI_Bcast(&st, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    if (w > 1e-5 || st > 1e-5)
        fail_msg("resumed from a pipeline: weights differ by %g, running "
                 "statistics by %g",
                 w, st);
}

static void expect_refused(const char *const *par, const char *msg)
{
    mt_config c;
    fx_load(&c, dir, "t.ini", "bad", par);
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_train(&c, MPI_COMM_WORLD, NULL, &r, err), MT_EINVAL);
    if (!strstr(err, msg))
        fail_msg("'%s' lacks '%s'", err, msg);
    mt_config_free(&c);
}

static void test_bad_layouts_are_refused(void **s)
{
    if (size == 3) {
        const char *const two[] = {"parallel.stages=2", NULL};
        expect_refused(two, "stages = 2 does not divide the 3 ranks");
    }
    if (size > 1) {
        const char *const many[] = {stages, "parallel.micro_batches=11",
                                    NULL};
        expect_refused(many, "micro_batches = 11: a replica gets 10 samples");
        const char *const last[] = {"parallel.stages=2",
                                    "parallel.split=8", NULL};
        if (size % 2 == 0)
            expect_refused(last, "split = 8: layer 8 is the last");
    }
    mt_config c;
    char err[MT_ERR_LEN] = "", path[300];
    snprintf(path, sizeof path, "%s/t.ini", dir);
    char *bad_split[] = {"parallel.stages=3", "parallel.split=4,2"};
    assert_int_equal(mt_config_load(&c, path, bad_split, 2, err), MT_EINVAL);
    assert_non_null(strstr(err, "split = '4,2'"));
    char *ps[] = {"parallel.stages=2", "parallel.sync=ps",
                  "parallel.ps_mode=async"};
    assert_int_equal(mt_config_load(&c, path, ps, 3, err), MT_EINVAL);
    assert_non_null(strstr(err, "does not combine with ps_mode = async yet"));
    char *servers[] = {"parallel.stages=2", "parallel.sync=ps",
                       "parallel.servers=1"};
    assert_int_equal(mt_config_load(&c, path, servers, 3, err), MT_EINVAL);
    assert_non_null(strstr(err, "does not combine with dedicated servers"));
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_schedule_trains_as_one_rank_accumulating),
        cmocka_unit_test(test_grid_of_stages_and_replicas),
        cmocka_unit_test(test_uneven_stages_and_micro_batches),
        cmocka_unit_test(test_batch_norm_per_micro_batch),
        cmocka_unit_test(test_resume_across_stage_counts),
        cmocka_unit_test(test_stages_checkpoint_their_statistics),
        cmocka_unit_test(test_stages_hold_only_their_layers),
        cmocka_unit_test(test_bad_layouts_are_refused),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
