/* Training across ranks (run by tests/mpirun.sh at 1, 2, 3 and 4 ranks):
 * the data-parallel result equals a single rank's, errors on one rank stop
 * every rank, and a diverging loss stops all of them together. */
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

#include "mpitrain/config.h"
#include "mpitrain/data.h"
#include "mpitrain/core.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];


/* A regression whose steps grow the weights geometrically. */
static const char diverge_ini[] =
    "[run]\nprogress = none\n[train]\nloss = mse\n"
    "[optimizer]\nlr = 500\nmomentum = 0.9\n"
    "[flatten]\n[dense]\nunits = 3\n";

/* Classification with validation: every detailed metric (AUC, top-5 of
 * its 3 classes is none, F1) is computed each epoch. */
static const char overflow_ini[] =
    "[run]\nprogress = none\nseed = 5\n[data]\nvalidation = 0.25\n"
    "[train]\nepochs = 2\nbatch = 8\n[optimizer]\nlr = 1e-12\n"
    "[flatten]\n[dense]\nunits = 3\n[softmax]\n";

/* v.h5: 40 samples whose validation rows (by the split's own
 * permutation, seed 5) hold FLT_MAX, the training rows small values. The
 * training loss stays finite; validation outputs overflow. */
static int write_overflow_data(void)
{
    enum { N = 40, S = 32, NVAL = 10 };
    static float x[N * S];
    static int32_t y[N];
    size_t order[N];
    mt_rng_permutation(order, N, 5, MT_RNG_SPLIT, 0);
    for (size_t i = 0; i < N; i++) {
        y[i] = (int32_t)(i % 3);
        for (size_t j = 0; j < S; j++)
            x[i * S + j] = 0.01f * (float)((i + j) % 7);
    }
    for (size_t i = N - NVAL; i < N; i++)
        for (size_t j = 0; j < S; j++)
            x[order[i] * S + j] = 3.4e38f;
    char path[300], err[MT_ERR_LEN];
    snprintf(path, sizeof path, "%s/v.h5", dir);
    return mt_dataset_write(path, N, (mt_shape){2, 4, 4}, NULL, x, y, 3,
                            NULL, err)
               ? -1
               : 0;
}

static int group_setup(void **s)
{
    if (fx_setup(dir, sizeof dir, fx_model_ini))
        return -1;
    int rc = 0;
    if (rank == 0) {
        fx_write(dir, "diverge.ini", diverge_ini);
        fx_write(dir, "overflow.ini", overflow_ini);
        rc = write_overflow_data();
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return rc;
}

static int group_teardown(void **s) { return fx_teardown(dir); }

static void load_file(mt_config *c, const char *file, const char *name,
                      const char *const *extra)
{
    fx_load(c, dir, file, name, extra);
}

static void load(mt_config *c, const char *name, const char *const *extra)
{
    fx_load(c, dir, "t.ini", name, extra);
}

static void test_share_covers_everything(void **s)
{
    for (size_t n = 0; n < 20; n++)
        for (int p = 1; p <= 5; p++) {
            size_t next = 0;
            for (int r = 0; r < p; r++) {
                size_t lo, hi;
                mt_dist_share(n, r, p, &lo, &hi);
                assert_int_equal(lo, next);
                assert_true(hi - lo <= n / (size_t)p + 1);
                next = hi;
            }
            assert_int_equal(next, n);
        }
}

/* Each rank reads only its share; fetch brings any rows from their
 * owners, in the order asked, equal to reading the whole file, with
 * their inputs or without. */
static void test_fetch_matches_full_file(void **s)
{
    char path[300], err[MT_ERR_LEN] = "";
    snprintf(path, sizeof path, "%s/d.h5", dir);
    mt_dataset share, full, got;
    memset(&got, 0, sizeof got);
    assert_int_equal(mt_dataset_load_share(&share, path, rank, size, 0, err),
                     MT_OK);
    assert_int_equal(mt_dataset_load(&full, path, err), MT_OK);
    size_t lo, hi;
    mt_dist_share(full.n, rank, size, &lo, &hi);
    assert_int_equal(share.n, hi - lo); /* only its part was read */
    assert_int_equal(share.first, lo);
    size_t idx[64];
    /* Rounds reuse the buffers; in round 2 the odd ranks ask for labels
     * alone (a pipeline's later stages) in the same exchange. */
    for (size_t round = 0; round < 4; round++) {
        size_t n = 25 + (size_t)rank * 5 + round;
        int with_x = round != 2 || rank % 2 == 0;
        for (size_t i = 0; i < n; i++)
            idx[i] = (size_t)mt_rng_below(full.n, 3, 1, (uint64_t)rank,
                                          i + 100 * round);
        assert_int_equal(mt_dataset_fetch(&share, MPI_COMM_WORLD, idx, n,
                                          with_x, &got, err),
                         MT_OK);
        assert_int_equal(got.n, n);
        assert_int_equal(got.x32 != NULL, with_x);
        size_t S = mt_shape_size(full.shape);
        for (size_t i = 0; i < n; i++) {
            if (with_x)
                assert_memory_equal(got.x32 + i * S, full.x32 + idx[i] * S,
                                    S * sizeof(float));
            assert_int_equal(got.labels[i], full.labels[idx[i]]);
        }
    }
    mt_dataset_free(&share);
    mt_dataset_free(&full);
    mt_dataset_free(&got);
}

static void test_agree_reports_lowest_failing_rank(void **s)
{
    char err[MT_ERR_LEN] = "";
    int fail = rank == size - 1 || rank == size / 2;
    if (fail)
        mt_seterr(err, "bad shard on rank %d", rank);
    int rc = mt_dist_agree(MPI_COMM_WORLD, fail ? MT_EFORMAT : MT_OK, err);
    assert_int_equal(rc, MT_EFORMAT);
    char want[64];
    snprintf(want, sizeof want, "bad shard on rank %d", size / 2);
    assert_non_null(strstr(err, want));
    assert_int_equal(mt_dist_agree(MPI_COMM_WORLD, MT_OK, err), MT_OK);
}

static void expect_same_as(const char *const *par,
                           const char *const *self_par, double tol)
{
    fx_expect_same(dir, "t.ini", par, self_par, tol);
}

/* ... with the same settings on one rank. */
static void expect_same_as_single_rank(const char *const *par, double tol)
{
    expect_same_as(par, par, tol);
}

static void test_data_parallel_equals_single_rank(void **s)
{
    expect_same_as_single_rank(NULL, 1e-4);
    /* Tiny buckets: several per step, one layer split over two. */
    const char *const ar_blocking[] = {"parallel.overlap=false", NULL};
    const char *const ar_buckets[] = {"parallel.bucket_mb=0.0002", NULL};
    /* ring_min_kb=0: the ring even for these tiny buffers. Buckets of 104
     * floats are dense3 (27), dense8 (104) and conv1 (57): below 0.2 KiB
     * (51 floats) only the first goes to MPI, the others to the ring. */
    const char *const ring[] = {"parallel.sync=ring",
                                "parallel.bucket_mb=0.0002",
                                "parallel.segment_kb=1",
                                "parallel.ring_min_kb=0", NULL};
    const char *const ring_blocking[] = {"parallel.sync=ring",
                                         "parallel.overlap=false",
                                         "parallel.ring_min_kb=0", NULL};
    const char *const ring_mixed[] = {"parallel.sync=ring",
                                      "parallel.bucket_mb=0.0004",
                                      "parallel.ring_min_kb=0.2", NULL};
    expect_same_as_single_rank(ar_blocking, 1e-4);
    expect_same_as_single_rank(ar_buckets, 1e-4);
    expect_same_as_single_rank(ring, 1e-4);
    expect_same_as_single_rank(ring_blocking, 1e-4);
    expect_same_as_single_rank(ring_mixed, 1e-4);
    /* A fetch window of one step (a few KB), not one per epoch. */
    const char *const windows[] = {"data.fetch_mb=0.0001", NULL};
    expect_same_as_single_rank(windows, 1e-4);
}

/* Trains t.ini on all ranks twice, with setting `flag[0]` and with
 * `flag[1]` added to `mode`, and fails unless both runs end with the same
 * floats; r[k] is run k's result. */
static void train_pair(const char *const flag[2], const char *const *mode,
                       mt_train_result r[2])
{
    const char *run[2] = {"pair-a", "pair-b"};
    for (int k = 0; k < 2; k++) {
        const char *sets[6] = {flag[k]};
        for (int i = 0; mode[i] && i < 5; i++)
            sets[i + 1] = mode[i];
        mt_config c;
        char err[MT_ERR_LEN] = "";
        fx_load(&c, dir, "t.ini", run[k], sets);
        if (mt_train(&c, MPI_COMM_WORLD, NULL, &r[k], err))
            fail_msg("%s %s: %s", flag[k], mode[0], err);
        mt_config_free(&c);
    }
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/pair-a/weights.h5", dir);
    snprintf(b, sizeof b, "%s/pair-b/weights.h5", dir);
    if (rank == 0 && fx_weight_diff(dir, a, b, 1) != 0.0)
        fail_msg("%s (with %s%s%s) changed the weights", flag[0], mode[0],
                 mode[1] ? ", " : "", mode[1] ? mode[1] : "");
}

/* The progress thread makes the same reductions as progress where
 * backward ends a layer, only sooner: the same floats, thread on or off,
 * in each strategy that takes it. */
static void test_progress_thread_changes_no_float(void **s)
{
    const char *const modes[][5] = {
        {"parallel.bucket_mb=0.0002", NULL},
        {"parallel.sync=ring", "parallel.bucket_mb=0.0002",
         "parallel.segment_kb=1", "parallel.ring_min_kb=0", NULL},
        {"parallel.sync=ps", "parallel.bucket_mb=0.0002", NULL},
    };
    const char *const flag[2] = {"parallel.progress_thread=on",
                                 "parallel.progress_thread=off"};
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        mt_train_result r[2];
        train_pair(flag, modes[m], r);
        /* Whether it polled during a backward of microseconds is the
         * scheduler's choice; that it ran is not. */
        if (r[0].progress_thread != (size > 1) || r[1].progress_thread)
            fail_msg("%s: the progress thread ran %d (on) and %d (off)",
                     modes[m][0], r[0].progress_thread,
                     r[1].progress_thread);
    }
}

/* The deferred update gives the same floats as the update at the step's
 * end (the same sums, the same elementwise step, each layer updated
 * before its forward), and the single rank's weights: several buckets
 * in flight into the next forward, with Adam, with accumulation, and with
 * a rank that has no samples (batch 3 at 4 ranks: no forward to apply its
 * buckets in). */
static void test_deferred_update_changes_no_float(void **s)
{
    const char *const modes[][5] = {
        {"parallel.bucket_mb=0.0002", NULL},
        {"parallel.bucket_mb=0.0002", "optimizer.type=adam", NULL},
        {"parallel.bucket_mb=0.0002", "train.accumulate=2", NULL},
        {"parallel.bucket_mb=0.0002", "train.batch=3", NULL},
    };
    const char *const flag[2] = {"parallel.defer_update=true",
                                 "parallel.defer_update=false"};
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        mt_train_result r[2];
        train_pair(flag, modes[m], r);
        const char *const one[] = {flag[0], modes[m][0], modes[m][1], NULL};
        expect_same_as_single_rank(one, 1e-4);
    }
}

/* The sharded optimizer step: with the ring, the same floats as the
 * ring's full step (the same block sums, the same elementwise update), in
 * several buckets, with pieces handed to MPI (from 3 ranks), with Adam,
 * accumulation and a rank without samples; with MPI's reduce-scatter and
 * with clipping (a norm from the blocks), the single rank's weights. */
static void test_sharded_optimizer(void **s)
{
    const char *const ring[][5] = {
        {"parallel.sync=ring", "parallel.bucket_mb=0.0002",
         "parallel.segment_kb=1", "parallel.ring_min_kb=0", NULL},
        {"parallel.sync=ring", "parallel.bucket_mb=0.0004",
         "parallel.ring_min_kb=0.2", "optimizer.type=adam", NULL},
        {"parallel.sync=ring", "parallel.bucket_mb=0.0002",
         "train.accumulate=2", "parallel.ring_min_kb=0", NULL},
        {"parallel.sync=ring", "train.batch=3", "parallel.ring_min_kb=0",
         "optimizer.type=adamw", NULL},
    };
    const char *const flag[2] = {"parallel.shard_optimizer=true",
                                 "parallel.shard_optimizer=false"};
    for (size_t m = 0; m < sizeof ring / sizeof *ring; m++) {
        mt_train_result r[2];
        train_pair(flag, ring[m], r);
    }
    const char *const vs_one[][6] = {
        {flag[0], "parallel.bucket_mb=0.0002", NULL},
        {flag[0], "parallel.bucket_mb=0.0002", "optimizer.type=adam",
         "train.batch=3", NULL},
        {flag[0], "parallel.overlap=false", "parallel.bucket_mb=0.0002",
         NULL},
        {flag[0], "train.clip_norm=0.05", "parallel.bucket_mb=0.0002",
         NULL},
        {flag[0], "train.clip_norm=0.05", "parallel.sync=ring",
         "parallel.overlap=false", "parallel.bucket_mb=0.0004", NULL},
    };
    for (size_t m = 0; m < sizeof vs_one / sizeof *vs_one; m++)
        expect_same_as_single_rank(vs_one[m], 1e-4);
}

/* A global batch of 3 leaves a rank without samples at 4 ranks: it must
 * still take part in every bucket's reduction, of the same kind and in the
 * same order as the others (it starts none during backward). */
static void test_ranks_without_samples(void **s)
{
    const char *const ar[] = {"train.batch=3", "parallel.bucket_mb=0.0002",
                              NULL};
    const char *const ring[] = {"train.batch=3", "parallel.bucket_mb=0.0002",
                                "parallel.sync=ring",
                                "parallel.ring_min_kb=0.2", NULL};
    expect_same_as_single_rank(ar, 1e-4);
    expect_same_as_single_rank(ring, 1e-4);
}

/* Class resampling draws the same epochs on any rank count; the focal
 * loss with class weights trains the same on any rank count. */
static void test_imbalance_any_rank_count(void **s)
{
    const char *const over[] = {"train.sampling=oversample", NULL};
    const char *const under[] = {"train.sampling=undersample", NULL};
    const char *const focal[] = {"train.focal_gamma=2",
                                 "train.class_weights=auto", NULL};
    expect_same_as_single_rank(over, 1e-4);
    expect_same_as_single_rank(under, 1e-4);
    expect_same_as_single_rank(focal, 1e-4);
    /* auto class weights are counted over every rank's rows: the same
     * weights, hence the same run, on any rank count. */
    const char *const weighted[] = {"train.class_weights=auto", NULL};
    expect_same_as_single_rank(weighted, 1e-4);
    /* Augmentation is keyed by file row: the same on any rank count. */
    const char *const augmented[] = {"data.shift=1", "data.flip=true", NULL};
    expect_same_as_single_rank(augmented, 1e-4);
}

/* Two micro-batches of 5 make the same steps as batches of 10. */
static void test_accumulation_equals_bigger_batch(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    const char *const acc[] = {"train.batch=5", "train.accumulate=2", NULL};
    load(&c, "acc10", NULL);
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    mt_config_free(&c);
    load(&c, "acc5x2", acc);
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    assert_int_equal(r.steps, 2 * 8);
    mt_config_free(&c);
    if (rank == 0) {
        char a[300], b[300];
        snprintf(a, sizeof a, "%s/acc10/weights.h5", dir);
        snprintf(b, sizeof b, "%s/acc5x2/weights.h5", dir);
        double d = fx_weight_diff(dir, a, b, 0);
        if (d > 1e-5)
            fail_msg("accumulated weights differ by %g", d);
    }
}

/* With a tiny clip norm the weights barely move from their start. */
static void test_clip_norm_bounds_the_update(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    const char *const clip[] = {"train.clip_norm=1e-6", NULL};
    load(&c, "clip", clip);
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    if (rank == 0) {
        mt_model start, end;
        mt_shape in = {FX_C, 4, 4};
        char path[300];
        snprintf(path, sizeof path, "%s/clip/weights.h5", dir);
        if (mt_model_from_config(&c, in, 4, &start, err) ||
            mt_model_from_config(&c, in, 4, &end, err) ||
            mt_weights_load(&end, path, err))
            fail_msg("%s", err);
        double moved = 0.0;
        for (size_t i = 0; i < start.n_params; i++) {
            double d = (double)end.params[i] - start.params[i];
            moved += d * d;
        }
        /* 16 steps, lr 0.05, momentum 0.9: at most 16 * 0.05 * 1e-6 / 0.1 */
        assert_true(sqrt(moved) <= 8.1e-6);
        assert_true(sqrt(moved) > 0.0);
        mt_model_free(&start);
        mt_model_free(&end);
    }
    mt_config_free(&c);
}

/* min_delta that nothing reaches: epoch 1 is the best, training stops
 * after `patience` more epochs and weights.h5 holds epoch 1's weights.
 * Each monitor must be defined every epoch for this to hold. */
static void test_early_stopping_restores_the_best(void **s)
{
    static const char *const monitors[] = {
        "train.monitor=val_loss", "train.monitor=val_macro_f1",
        "train.monitor=val_roc_auc", "train.monitor=val_error_rate",
        "train.monitor=train_loss"};
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    const char *const one[] = {"train.epochs=1", NULL};
    load(&c, "es1", one);
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    mt_config_free(&c);
    for (size_t m = 0; m < sizeof monitors / sizeof *monitors; m++) {
        const char *const es[] = {monitors[m], "train.patience=2",
                                  "train.min_delta=1e9", "train.epochs=10",
                                  NULL};
        load(&c, "es", es);
        if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
            fail_msg("%s: %s", monitors[m], err);
        assert_int_equal(r.steps, 3 * 8);
        mt_config_free(&c);
        if (rank == 0) {
            char a[300], b[300];
            snprintf(a, sizeof a, "%s/es/weights.h5", dir);
            snprintf(b, sizeof b, "%s/es1/weights.h5", dir);
            if (fx_weight_diff(dir, a, b, 1) != 0.0)
                fail_msg("%s: weights are not epoch 1's", monitors[m]);
        }
    }
}

/* A layer's own weight_decay replaces [optimizer]'s on its parameters
 * only: global 0.3 switched off on the first two weighted layers equals
 * 0.3 given to the last layer alone, and differs from 0.3 everywhere. */
static void test_layer_weight_decay(void **s)
{
    static const char *const runs[3][5] = {
        {"optimizer.weight_decay=0.3", "layer1.weight_decay=0",
         "layer4.weight_decay=0", NULL},
        {"layer6.weight_decay=0.3", NULL},
        {"optimizer.weight_decay=0.3", NULL}};
    static const char *const names[3] = {"wd_a", "wd_b", "wd_all"};
    for (int i = 0; i < 3; i++) {
        mt_config c;
        mt_train_result r;
        char err[MT_ERR_LEN] = "";
        load(&c, names[i], runs[i]);
        if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
            fail_msg("%s", err);
        mt_config_free(&c);
    }
    if (rank != 0)
        return;
    char a[300], b[300], all[300];
    snprintf(a, sizeof a, "%s/wd_a/weights.h5", dir);
    snprintf(b, sizeof b, "%s/wd_b/weights.h5", dir);
    snprintf(all, sizeof all, "%s/wd_all/weights.h5", dir);
    assert_true(fx_weight_diff(dir, a, b, 1) == 0.0);
    assert_true(fx_weight_diff(dir, a, all, 0) > 1e-4);
}

/* lr 1e-12 leaves the float weights as they are, so the validation loss
 * never improves: with patience 1 the rate halves after every epoch from
 * the second on (it is logged with each epoch's train record). */
static void test_reduce_on_plateau(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    const char *const pl[] = {"optimizer.lr=1e-12", "optimizer.momentum=0",
                              "optimizer.plateau_factor=0.5",
                              "optimizer.plateau_patience=1",
                              "train.epochs=4", NULL};
    load(&c, "plateau", pl);
    if (mt_train(&c, MPI_COMM_WORLD, NULL, &r, err))
        fail_msg("%s", err);
    mt_config_free(&c);
    if (rank != 0)
        return;
    char path[300], line[512];
    snprintf(path, sizeof path, "%s/plateau/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    const double want[4] = {1e-12, 1e-12, 5e-13, 2.5e-13};
    int e = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"split\":\"train\"") && e < 4) {
            const char *lr = strstr(line, "\"lr\":");
            assert_non_null(lr);
            assert_true(fabs(atof(lr + 5) - want[e]) < 1e-20);
            e++;
        }
    fclose(f);
    assert_int_equal(e, 4);
}

static void test_deterministic_is_bit_identical(void **s)
{
    const char *const det[] = {"parallel.deterministic=true",
                               "parallel.group=3", NULL};
    expect_same_as_single_rank(det, 0.0);
}

static void test_bf16_ring_stays_close(void **s)
{
    /* bf16 rounds each gradient to 8 bits of mantissa: close, not equal. */
    const char *const bf16[] = {"parallel.sync=ring",
                                "parallel.compress=bf16",
                                "parallel.ring_min_kb=0", NULL};
    expect_same_as_single_rank(bf16, size == 1 ? 1e-4 : 5e-2);
}

static void test_missing_file_on_one_rank_stops_all(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    load(&c, "missing", NULL);
    if (rank == size - 1)
        snprintf(c.train, sizeof c.train, "%s/gone.h5", dir);
    int rc = mt_train(&c, MPI_COMM_WORLD, NULL, &r, err);
    assert_int_equal(rc, MT_EIO);
    assert_non_null(strstr(err, "gone.h5"));
    mt_config_free(&c);
}

static void test_nan_loss_stops_all_ranks(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "";
    /* With validation and its detailed metrics (the labels make classes
     * even for mse): where divergence shows first (training loss,
     * training outputs, validation outputs) depends on the CPU's kernels;
     * every way ends the same. */
    const char *const val[] = {"data.validation=0.3", NULL};
    /* ...and on an asynchronous parameter server, which learns of it
     * `staleness` steps late, on every rank alike. */
    const char *const async[] = {"data.validation=0.3", "parallel.sync=ps",
                                 "parallel.ps_mode=async", NULL};
    const char *const *sets[2] = {val, async};
    for (int i = 0; i < 2; i++) {
        load_file(&c, "diverge.ini", i ? "nan_async" : "nan", sets[i]);
        int rc = mt_train(&c, MPI_COMM_WORLD, NULL, &r, err);
        assert_int_equal(rc, MT_ENUMERIC);
        assert_non_null(strstr(err, "epoch "));
        assert_non_null(strstr(err, "step "));
        assert_non_null(strstr(err, "the run diverged"));
        char path[300];
        snprintf(path, sizeof path, "%s/%s/weights.h5", dir,
                 i ? "nan_async" : "nan");
        assert_int_equal(access(path, F_OK), -1); /* nothing looks done */
        mt_config_free(&c);
    }
}

static void test_validation_overflow_stops_all_ranks(void **s)
{
    mt_config c;
    mt_train_result r;
    char err[MT_ERR_LEN] = "", train[300];
    snprintf(train, sizeof train, "data.train=%s/v.h5", dir);
    const char *const data[] = {train, NULL};
    load_file(&c, "overflow.ini", "overflow", data);
    int rc = mt_train(&c, MPI_COMM_WORLD, NULL, &r, err);
    assert_int_equal(rc, MT_ENUMERIC);
    assert_non_null(strstr(err, "epoch 1, step 4: validation outputs are "
                                "not finite"));
    assert_non_null(strstr(err, "(10 samples)"));
    char path[300];
    snprintf(path, sizeof path, "%s/overflow/weights.h5", dir);
    assert_int_equal(access(path, F_OK), -1);
    mt_config_free(&c);
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share_covers_everything),
        cmocka_unit_test(test_agree_reports_lowest_failing_rank),
        cmocka_unit_test(test_fetch_matches_full_file),
        cmocka_unit_test(test_data_parallel_equals_single_rank),
        cmocka_unit_test(test_bf16_ring_stays_close),
        cmocka_unit_test(test_deterministic_is_bit_identical),
        cmocka_unit_test(test_accumulation_equals_bigger_batch),
        cmocka_unit_test(test_early_stopping_restores_the_best),
        cmocka_unit_test(test_reduce_on_plateau),
        cmocka_unit_test(test_layer_weight_decay),
        cmocka_unit_test(test_imbalance_any_rank_count),
        cmocka_unit_test(test_ranks_without_samples),
        cmocka_unit_test(test_progress_thread_changes_no_float),
        cmocka_unit_test(test_deferred_update_changes_no_float),
        cmocka_unit_test(test_sharded_optimizer),
        cmocka_unit_test(test_clip_norm_bounds_the_update),
        cmocka_unit_test(test_missing_file_on_one_rank_stops_all),
        cmocka_unit_test(test_nan_loss_stops_all_ranks),
        cmocka_unit_test(test_validation_overflow_stops_all_ranks),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
