/* Pipeline schedules (pipeline.h): every pass once, in micro-batch order,
 * after its inputs; the bubble of gpipe and 1f1b as theory has it; the
 * memory bound of 1f1b and zb; zb's smaller bubble. A stage's model holds
 * only its layers' memory and computes them as the whole model does. The
 * profile runs no input gradient that training does not. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/model.h"
#include "mpitrain/pipeline.h"

static mt_pipe_costs costs[8];

static void make(mt_pipe_plan *p, mt_pipe_schedule sch, int P, int M)
{
    char err[MT_ERR_LEN] = "";
    if (mt_pipe_plan_make(p, sch, P, M, costs, err))
        fail_msg("%s", err);
}

static double cost_of(const mt_pipe_plan *p, int s, mt_pipe_pass k)
{
    if (k == MT_PIPE_F)
        return costs[s].f;
    if (k == MT_PIPE_W)
        return costs[s].w;
    return p->schedule == MT_PIPE_ZB ? costs[s].b : costs[s].b + costs[s].w;
}

/* Every pass once per micro-batch and kind, in micro-batch order, never
 * two at once on a stage, each after what it needs. */
static void check_valid(const mt_pipe_plan *p)
{
    int P = p->stages, M = p->micro;
    double start[8][3][64];
    for (int s = 0; s < P; s++) {
        const mt_pipe_op *ops = mt_pipe_stage_ops(p, s);
        int next[3] = {0, 0, 0};
        double free_at = 0.0;
        for (size_t j = 0; j < p->ops_per_stage; j++) {
            int k = ops[j].pass;
            assert_true(k >= 0 && k < 3);
            assert_true(k != MT_PIPE_W || p->schedule == MT_PIPE_ZB);
            assert_int_equal(ops[j].micro, next[k]++);
            assert_true(ops[j].start >= free_at);
            free_at = ops[j].start + cost_of(p, s, (mt_pipe_pass)k);
            start[s][k][ops[j].micro] = ops[j].start;
        }
        assert_int_equal(next[MT_PIPE_F], M);
        assert_int_equal(next[MT_PIPE_B], M);
    }
    for (int s = 0; s < P; s++)
        for (int i = 0; i < M; i++) {
            double fe = start[s][MT_PIPE_F][i] + costs[s].f;
            if (s > 0)
                assert_true(start[s][MT_PIPE_F][i] >=
                            start[s - 1][MT_PIPE_F][i] + costs[s - 1].f);
            assert_true(start[s][MT_PIPE_B][i] >= fe);
            if (s < P - 1)
                assert_true(start[s][MT_PIPE_B][i] >=
                            start[s + 1][MT_PIPE_B][i] +
                                cost_of(p, s + 1, MT_PIPE_B));
            if (p->schedule == MT_PIPE_ZB)
                assert_true(start[s][MT_PIPE_W][i] >=
                            start[s][MT_PIPE_B][i] + costs[s].b);
        }
}

static void uniform(double f, double b, double w)
{
    for (int s = 0; s < 8; s++)
        costs[s] = (mt_pipe_costs){f, b, w};
}

static void test_bubble_as_theory(void **st)
{
    static const int Ps[] = {1, 2, 3, 4}, Ms[] = {1, 4, 8, 16};
    uniform(1.0, 1.0, 1.0);
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            int P = Ps[a], M = Ms[b];
            double theory = (double)(P - 1) / (double)(M + P - 1);
            for (int sch = MT_PIPE_GPIPE; sch <= MT_PIPE_ZB; sch++) {
                mt_pipe_plan p;
                make(&p, (mt_pipe_schedule)sch, P, M);
                check_valid(&p);
                if (sch != MT_PIPE_ZB && fabs(p.bubble - theory) > 1e-12)
                    fail_msg("%s P=%d M=%d: bubble %.4f, theory %.4f",
                             mt_pipe_schedule_names[sch], P, M, p.bubble,
                             theory);
                /* zb: below 1f1b's wherever there is a bubble */
                if (sch == MT_PIPE_ZB && P > 1 && p.bubble >= theory - 1e-9)
                    fail_msg("zb P=%d M=%d: bubble %.4f, 1f1b's %.4f", P, M,
                             p.bubble, theory);
                mt_pipe_plan_free(&p);
            }
        }
}

/* Activations held: gpipe all M; 1f1b P - s (once M allows); zb one
 * more at most, however slow the stages. */
static void test_memory_bounds(void **st)
{
    for (int slow = 0; slow < 2; slow++) {
        uniform(1.0, 2.0, 1.0);
        if (slow)
            costs[1] = (mt_pipe_costs){3.0, 5.0, 2.0};
        for (int sch = MT_PIPE_GPIPE; sch <= MT_PIPE_ZB; sch++) {
            mt_pipe_plan p;
            make(&p, (mt_pipe_schedule)sch, 4, 8);
            check_valid(&p);
            for (int s = 0; s < 4; s++)
                if (sch == MT_PIPE_ZB)
                    assert_in_range(p.peak_held[s], 4 - s, 5 - s);
                else
                    assert_int_equal(p.peak_held[s],
                                     sch == MT_PIPE_GPIPE ? 8 : 4 - s);
            mt_pipe_plan_free(&p);
        }
    }
}

/* 1f1b's order: the last stage alternates from the start; stage 0 warms
 * up with P forwards, then alternates. */
static void test_1f1b_order(void **st)
{
    uniform(1.0, 1.0, 1.0);
    mt_pipe_plan p;
    make(&p, MT_PIPE_1F1B, 4, 6);
    const char *want[2] = {"F0F1F2F3B0F4B1F5B2B3B4B5",
                           "F0B0F1B1F2B2F3B3F4B4F5B5"};
    for (int w = 0; w < 2; w++) {
        const mt_pipe_op *ops = mt_pipe_stage_ops(&p, w ? 3 : 0);
        char got[64] = "";
        for (size_t j = 0; j < p.ops_per_stage; j++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%c%d",
                     "FBW"[ops[j].pass], ops[j].micro);
        assert_string_equal(got, want[w]);
    }
    mt_pipe_plan_free(&p);
}

/* zb against 1f1b at equal F, B, W: 0.35-0.69 of its bubble (P = 4,
 * M = 8: 1f1b 3/11, zb 0.17), holding one micro-batch more (the paper's
 * ZB-H1, counting a deferred W's memory as less, has a third). */
static void test_zb_cuts_the_bubble(void **st)
{
    uniform(1.0, 1.0, 1.0);
    for (int P = 2; P <= 4; P += 2)
        for (int M = P; M <= 16; M *= 2) {
            mt_pipe_plan z, o;
            make(&z, MT_PIPE_ZB, P, M);
            make(&o, MT_PIPE_1F1B, P, M);
            print_message("P=%d M=%d: 1f1b %.4f zb %.4f (%.2f)\n", P, M,
                          o.bubble, z.bubble, z.bubble / o.bubble);
            assert_true(z.bubble < 0.7 * o.bubble);
            /* what that costs: one micro-batch more, from F to W */
            for (int s = 0; s < P; s++)
                assert_true(z.peak_held[s] <= P - s + 1);
            mt_pipe_plan_free(&z);
            mt_pipe_plan_free(&o);
        }
}

static void test_errors(void **st)
{
    mt_pipe_plan p;
    char err[MT_ERR_LEN] = "";
    uniform(1.0, 1.0, 1.0);
    assert_int_equal(mt_pipe_plan_make(&p, MT_PIPE_1F1B, 0, 4, costs, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "0 stages and 4 micro-batches"));
    costs[2].b = 0.0;
    assert_int_equal(mt_pipe_plan_make(&p, MT_PIPE_ZB, 3, 4, costs, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "stage 2"));
}

/* Pages of floats [lo, hi) of arena a that are resident. */
static size_t resident(const float *a, size_t lo, size_t hi)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = (uintptr_t)(a + lo) / pg * pg,
              to = ((uintptr_t)(a + hi) + pg - 1) / pg * pg;
    size_t n = (to - from) / pg, count = 0;
    unsigned char *vec = calloc(n ? n : 1, 1);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)from, to - from, vec), 0);
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * (float)((i * 7919) % 113) / 113.0f - 0.5f * scale;
}

/* A stage of layers 2-3 of four: the first dense layer's parameters and
 * gradients, and the activations below the stage, are handed back (not
 * resident), while the stage's forward and backward give the whole
 * model's numbers bit for bit. */
static void test_stage_keeps_only_its_layers(void **st)
{
    const mt_layer_spec sp[4] = {{.kind = MT_DENSE, .units = 512},
                                 {.kind = MT_RELU},
                                 {.kind = MT_DENSE, .units = 512},
                                 {.kind = MT_DENSE, .units = 10}};
    const mt_shape in = {1, 1, 256};
    const size_t B = 8;
    mt_model whole, stage;
    char err[MT_ERR_LEN] = "";
    if (mt_model_init(&whole, sp, 4, in, B, 3, err) ||
        mt_model_init(&stage, sp, 4, in, B, 3, err) ||
        mt_model_keep_layers(&stage, 2, 4, err))
        fail_msg("%s", err);
    size_t lo, hi;
    mt_model_span(&stage, 2, 4, 0, &lo, &hi);
    assert_int_equal(lo, 256 * 512 + 512);
    assert_int_equal(resident(stage.params, 0, lo - 1024), 0);
    assert_int_equal(resident(stage.grads, 0, lo - 1024), 0);
    assert_int_equal(resident(stage.act_arena, 0,
                              (size_t)(stage.act[2] - stage.act_arena) -
                                  1024),
                     0);
    assert_true(resident(whole.params, 0, lo) > 0);
    assert_true(resident(stage.params, lo, hi) > 0);
    mt_step_ctx ctx = {.train = 1, .seed = 1};
    fill(whole.act[0], B * 256, 2.0f);
    mt_model_forward(&whole, &ctx, B);
    memcpy(stage.act[2], whole.act[2], B * 512 * sizeof(float));
    const float *y = mt_model_forward_range(&stage, &ctx, B, 2, 4);
    assert_memory_equal(y, whole.act[4], B * 10 * sizeof(float));
    mt_model_zero_grad(&whole);
    mt_model_zero_grad(&stage);
    fill(whole.dact[4], B * 10, 0.1f);
    memcpy(stage.dact[4], whole.dact[4], B * 10 * sizeof(float));
    mt_model_backward_range(&whole, B, 2, 4, 1);
    mt_model_backward_range(&stage, B, 2, 4, 1);
    assert_memory_equal(stage.grads + lo, whole.grads + lo,
                        (hi - lo) * sizeof(float));
    assert_memory_equal(stage.dact[2], whole.dact[2],
                        B * 512 * sizeof(float));
    assert_int_equal(mt_model_check_finite(&stage, err), MT_OK);
    mt_model_free(&whole);
    mt_model_free(&stage);
}

/* The profile runs backward as training does: below the first layer
 * with parameters (flatten, then a dense layer) no input gradient is
 * computed, so none is timed (it would weigh stage 0 down); above it
 * it is (the last layer's, from the loss gradient). */
static void test_profile_times_what_training_runs(void **st)
{
    const mt_layer_spec sp[4] = {{.kind = MT_FLATTEN},
                                 {.kind = MT_DENSE, .units = 16},
                                 {.kind = MT_RELU},
                                 {.kind = MT_DENSE, .units = 4}};
    const mt_shape in = {1, 4, 8};
    const size_t B = 5;
    mt_model m;
    char err[MT_ERR_LEN] = "";
    if (mt_model_init(&m, sp, 4, in, B, 3, err))
        fail_msg("%s", err);
    fill(m.act[0], B * 32, 2.0f);
    /* A mark in every gradient of activations: still there where none
     * was computed. */
    for (int i = 0; i < 4; i++)
        for (size_t k = 0; k < B * (i < 2 ? 32 : 16); k++)
            m.dact[i][k] = 12345.0f;
    fill(m.dact[4], B * 4, 0.1f);
    mt_pipe_costs c[4];
    mt_pipe_profile(&m, B, 0, c);
    for (size_t k = 0; k < B * 32; k++)
        assert_true(m.dact[0][k] == 12345.0f && m.dact[1][k] == 12345.0f);
    for (size_t k = 0; k < B * 16; k++) /* the last layer's, from dact[4] */
        assert_true(m.dact[3][k] != 12345.0f);
    for (int i = 0; i < 4; i++)
        assert_true(c[i].f >= 0.0 && c[i].b >= 0.0 && c[i].w >= 0.0);
    mt_model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bubble_as_theory),
        cmocka_unit_test(test_memory_bounds),
        cmocka_unit_test(test_1f1b_order),
        cmocka_unit_test(test_zb_cuts_the_bubble),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_stage_keeps_only_its_layers),
        cmocka_unit_test(test_profile_times_what_training_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
