/* A pipeline step over the world's ranks as stages (tests/mpirun.sh: 1-4
 * stages): for every schedule and micro-batch count (one that does not
 * divide the batch included), each stage's gradients and the loss equal
 * a single rank's whole-batch backward of the same model, dropout
 * included (its masks are keyed by sample, so recomputing a micro-batch
 * draws the same), whether the stages keep activations (where their
 * layers allow) or recompute them. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/loss.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/train.h"
#include "mpi_fixture.h"

static int rank, size;
static char dir[256];

static const char ini[] =
    "[run]\nprogress = none\n[train]\nbatch = 12\n"
    "[flatten]\n[dense]\nunits = 8\nactivation = relu\n[dropout]\n"
    "rate = 0.3\n[dense]\nunits = 6\nactivation = tanh\n[dense]\n"
    "units = 3\n";

enum { G = 12, IN = 32, K = 3 };

static int group_setup(void **s) { return fx_setup(dir, sizeof dir, ini); }
static int group_teardown(void **s) { return fx_teardown(dir); }

static void build(mt_model *m)
{
    mt_config c;
    char err[MT_ERR_LEN];
    fx_load(&c, dir, "t.ini", "run", NULL);
    if (mt_model_from_config(&c, (mt_shape){FX_C, 4, 4}, G, m, err))
        fail_msg("%s", err);
    mt_config_free(&c);
}

static void batch_data(float *x, int32_t *labels)
{
    uint32_t v = 12345;
    for (size_t i = 0; i < G * IN; i++) {
        v = v * 1664525u + 1013904223u;
        x[i] = (float)(v >> 8) / (float)(1u << 24) - 0.5f;
    }
    for (int i = 0; i < G; i++)
        labels[i] = i % K;
}

static void check(mt_pipe_schedule sch, int M, int recompute)
{
    static float x[G * IN];
    static int32_t labels[G];
    batch_data(x, labels);
    mt_step_ctx ctx = {.train = 1, .seed = 7, .step = 3, .sample0 = 100};
    mt_model ref, m;
    build(&ref);
    build(&m);
    /* the reference: one rank, the whole batch */
    mt_model_zero_grad(&ref);
    memcpy(ref.act[0], x, sizeof x);
    const float *out = mt_model_forward(&ref, &ctx, G);
    double ref_loss = mt_loss_objective(MT_LOSS_SOFTMAX_CE, out, labels, NULL,
                                        G, K, 1.0f / G,
                                        ref.dact[ref.n_layers], NULL);
    mt_model_backward(&ref, G);
    /* the pipeline: this rank is stage `rank` of `size` */
    size_t L = m.n_layers;
    mt_pipe_stage st = {&m, (size_t)rank * L / (size_t)size,
                        (size_t)(rank + 1) * L / (size_t)size, rank, size,
                        MPI_COMM_WORLD, 0};
    mt_pipe_costs costs[4] = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}};
    mt_pipe_plan p;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_pipe_plan_make(&p, sch, size, M, costs, err), MT_OK);
    mt_pipe_batch b = {.x = x, .labels = labels, .G = G,
                       .loss = MT_LOSS_SOFTMAX_CE, .ctx = ctx};
    double loss = 0.0;
    mt_model_zero_grad(&m);
    mt_pipe_stats stats;
    mt_pipe_work w;
    assert_int_equal(
        mt_pipe_work_init(&w, &st, sch, G, (size_t)M, recompute, err), 0);
    /* every layer here keeps what its backward needs with the
     * activations (dropout its mask rows): no stage recomputes unless
     * told to */
    int stash = w.stash;
    assert_int_equal(stash, !recompute);
    int rc = mt_pipe_step(&p, &st, &w, &b, &loss, &stats, err);
    int slots = w.slots_used;
    mt_pipe_work_free(&w);
    if (rc)
        fail_msg("%s", err);
    /* Kept activations take the micro-batches the order holds at once
     * (1f1b: P - s), in slots of the largest micro-batch, where they
     * fit the buffers; else every micro-batch's rows. */
    int held = p.peak_held[rank], fits = held * ((G + M - 1) / M) <= G;
    if (stash && slots != (fits ? held : M))
        fail_msg("%s M=%d stage %d: %d slots, the order holds %d",
                 mt_pipe_schedule_names[sch], M, rank, slots, held);
    if (sch == MT_PIPE_1F1B)
        assert_int_equal(held, size - rank < M ? size - rank : M);
    double worst = 0.0;
    size_t checked = 0;
    for (size_t i = st.first; i < st.last; i++)
        for (int k = 0; k < m.layers[i].n_param; k++) {
            const mt_tensor *a = &m.layers[i].param[k],
                            *r = &ref.layers[i].param[k];
            for (size_t j = 0; j < a->n; j++, checked++)
                worst = fmax(worst, fabs(a->grad[j] - r->grad[j]) /
                                        (1e-3 + fabs(r->grad[j])));
        }
    if (worst > 1e-4)
        fail_msg("%s M=%d stage %d%s: gradients differ by %.3g (relative)",
                 mt_pipe_schedule_names[sch], M, rank,
                 stash ? " (kept activations)" : "", worst);
    /* 1f1b's last stage runs each B right after its F: no recompute;
     * a stage that keeps activations never does */
    if (stash || (sch == MT_PIPE_1F1B && rank == size - 1))
        assert_int_equal(stats.recomputed, 0);
    else if (sch == MT_PIPE_GPIPE && M > 1)
        assert_true(stats.recomputed >= (size_t)M - 1);
    if (rank == size - 1 && fabs(loss - ref_loss) > 1e-5 * fabs(ref_loss))
        fail_msg("%s M=%d: loss %.9g, one rank's %.9g",
                 mt_pipe_schedule_names[sch], M, loss, ref_loss);
    /* Some stage owns parameters; each owns its layers' and no more. */
    int any = checked > 0;
    MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    assert_true(any);
    mt_pipe_plan_free(&p);
    mt_model_free(&ref);
    mt_model_free(&m);
}

static void test_every_schedule_gives_the_gradients(void **s)
{
    static const int Ms[] = {1, 3, 4, 5}; /* 5 does not divide 12 */
    for (int sch = MT_PIPE_GPIPE; sch <= MT_PIPE_ZB; sch++)
        for (int i = 0; i < 4; i++)
            for (int recompute = 0; recompute < 2; recompute++)
                check((mt_pipe_schedule)sch, Ms[i], recompute);
}

/* Wrong inputs are refused on every stage before any message. */
static void test_too_many_micro_batches(void **s)
{
    static float x[G * IN];
    static int32_t labels[G];
    mt_model m;
    build(&m);
    mt_pipe_costs costs[4] = {{1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}};
    mt_pipe_plan p;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_pipe_plan_make(&p, MT_PIPE_1F1B, size, 13, costs,
                                       err),
                     MT_OK);
    mt_pipe_stage st = {&m, 0, m.n_layers, rank, size, MPI_COMM_WORLD, 0};
    mt_pipe_batch b = {.x = x, .labels = labels, .G = G,
                       .loss = MT_LOSS_SOFTMAX_CE};
    double loss;
    mt_pipe_work w;
    assert_int_equal(mt_pipe_work_init(&w, &st, MT_PIPE_1F1B, G, 13, 0, err), 0);
    assert_int_equal(mt_pipe_step(&p, &st, &w, &b, &loss, NULL, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "12 samples in 13 micro-batches"));
    mt_pipe_work_free(&w);
    mt_pipe_plan_free(&p);
    mt_model_free(&m);
}

int main(int argc, char **argv)
{
    fx_mpi_init(&argc, &argv, &rank, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_schedule_gives_the_gradients),
        cmocka_unit_test(test_too_many_micro_batches),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return fx_mpi_finalize(failed);
}
