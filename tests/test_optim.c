/* Optimizer steps against values worked out by hand from PyTorch's update
 * rules (torch.optim.SGD, Adam, AdamW). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/optim.h"
#include "mpitrain/schedule.h"

static mt_optim make(mt_optim_cfg cfg, size_t n)
{
    mt_optim o;
    char err[MT_ERR_LEN];
    assert_int_equal(mt_optim_init(&o, &cfg, n, err), MT_OK);
    return o;
}

static void test_sgd_momentum(void **s)
{
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_SGD, .momentum = 0.9f,
                                     .weight_decay = 0.1f},
                      1);
    float p = 1.0f, g = 0.5f;
    mt_optim_step(&o, &p, &g, 0.1f); /* d = 0.6, buf = 0.6, p = 0.94 */
    assert_true(fabsf(p - 0.94f) < 1e-6f);
    mt_optim_step(&o, &p, &g, 0.1f); /* d = 0.594, buf = 1.134 */
    assert_true(fabsf(p - (0.94f - 0.1134f)) < 1e-6f);
    mt_optim_free(&o);
}

static void test_sgd_nesterov(void **s)
{
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_SGD, .momentum = 0.5f,
                                     .nesterov = 1},
                      1);
    float p = 0.0f, g = 1.0f;
    mt_optim_step(&o, &p, &g, 1.0f); /* buf 1, d = 1 + 0.5 */
    assert_true(fabsf(p + 1.5f) < 1e-6f);
    mt_optim_step(&o, &p, &g, 1.0f); /* buf 1.5, d = 1 + 0.75 */
    assert_true(fabsf(p + 3.25f) < 1e-6f);
    mt_optim_free(&o);
}

static void test_adam_first_steps(void **s)
{
    /* With bias correction, Adam's first step is lr * sign(g). */
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_ADAM, .beta1 = 0.9f,
                                     .beta2 = 0.999f, .eps = 1e-8f},
                      2);
    float p[2] = {1.0f, 1.0f}, g[2] = {0.3f, -2.0f};
    mt_optim_step(&o, p, g, 0.01f);
    assert_true(fabsf(p[0] - 0.99f) < 1e-6f);
    assert_true(fabsf(p[1] - 1.01f) < 1e-6f);
    /* Second step with g' = 0.1: m = 0.9*0.03 + 0.01 = 0.037,
     * v = 0.999*9e-5 + 1e-5 = 9.991e-5; mhat = 0.037 / 0.19,
     * vhat = 9.991e-5 / 0.001999. */
    float g2[2] = {0.1f, 0.0f};
    mt_optim_step(&o, p, g2, 0.01f);
    double mhat = 0.037 / 0.19, vhat = 9.991e-5 / (1 - 0.999 * 0.999);
    double want = 0.99 - 0.01 * mhat / (sqrt(vhat) + 1e-8);
    assert_true(fabs(p[0] - want) < 1e-5);
    mt_optim_free(&o);
}

static void test_adamw_decouples_decay(void **s)
{
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_ADAMW, .beta1 = 0.9f,
                                     .beta2 = 0.999f, .eps = 1e-8f,
                                     .weight_decay = 0.5f},
                      1);
    float p = 2.0f, g = 0.0f;
    /* Zero gradient: only the decay moves p, by lr * wd * p. */
    mt_optim_step(&o, &p, &g, 0.1f);
    assert_true(fabsf(p - 1.9f) < 1e-6f);
    mt_optim_free(&o);

    /* Adam with L2 puts the decay in the gradient: first step lr*sign. */
    o = make((mt_optim_cfg){.kind = MT_OPT_ADAM, .beta1 = 0.9f,
                            .beta2 = 0.999f, .eps = 1e-8f,
                            .weight_decay = 0.5f},
             1);
    p = 2.0f;
    mt_optim_step(&o, &p, &g, 0.1f);
    assert_true(fabsf(p - 1.9f) < 1e-5f);
    mt_optim_free(&o);
}

static void test_l1_pulls_toward_zero(void **s)
{
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_SGD, .l1 = 0.1f}, 3);
    float p[3] = {1.0f, -1.0f, 0.0f}, g[3] = {0.0f, 0.0f, 0.0f};
    mt_optim_step(&o, p, g, 0.5f);
    assert_true(fabsf(p[0] - 0.95f) < 1e-7f);
    assert_true(fabsf(p[1] + 0.95f) < 1e-7f);
    assert_true(p[2] == 0.0f); /* subgradient 0 at 0 */
    mt_optim_free(&o);
}

/* Per-layer penalties: each range gets its own weight decay and L1, the
 * gaps between ranges the global ones; AdamW shrinks by its range's. */
static void test_penalty_ranges(void **s)
{
    char err[MT_ERR_LEN];
    mt_optim o = make((mt_optim_cfg){.kind = MT_OPT_SGD, .weight_decay = 0.1f},
                      6);
    const mt_penalty r[2] = {{1, 3, 0.5f, 0.0f}, {4, 5, 0.0f, 0.25f}};
    assert_int_equal(mt_optim_set_penalties(&o, r, 2, err), MT_OK);
    float p[6] = {1, 1, 1, 1, 1, 1}, g[6] = {0};
    mt_optim_step(&o, p, g, 1.0f);
    const float want[6] = {0.9f, 0.5f, 0.5f, 0.9f, 0.75f, 0.9f};
    for (int i = 0; i < 6; i++)
        assert_true(fabsf(p[i] - want[i]) < 1e-6f);
    const mt_penalty overlap[2] = {{0, 3, 0, 0}, {2, 4, 0, 0}};
    assert_int_equal(mt_optim_set_penalties(&o, overlap, 2, err), MT_EINVAL);
    mt_optim_free(&o);

    /* A shard's optimizer (arena [3, 6)) cuts the arena's ranges to its
     * own slots: range 1 covers its first slot, range 2 its second. */
    mt_optim_cfg sgd = {.kind = MT_OPT_SGD, .weight_decay = 0.1f};
    assert_int_equal(mt_optim_init_range(&o, &sgd, 3, 3, err), MT_OK);
    const mt_penalty arena[3] = {{0, 1, 0.7f, 0.0f},
                                 {1, 4, 0.5f, 0.0f},
                                 {4, 5, 0.0f, 0.25f}};
    assert_int_equal(mt_optim_set_penalties(&o, arena, 3, err), MT_OK);
    float ps[3] = {1, 1, 1}, gs[3] = {0};
    mt_optim_step(&o, ps, gs, 1.0f);
    const float want_shard[3] = {0.5f, 0.75f, 0.9f};
    for (int i = 0; i < 3; i++)
        assert_true(fabsf(ps[i] - want_shard[i]) < 1e-6f);
    mt_optim_free(&o);

    o = make((mt_optim_cfg){.kind = MT_OPT_ADAMW, .beta1 = 0.9f,
                            .beta2 = 0.999f, .eps = 1e-8f,
                            .weight_decay = 0.1f},
             2);
    const mt_penalty none[1] = {{1, 2, 0.0f, 0.0f}};
    assert_int_equal(mt_optim_set_penalties(&o, none, 1, err), MT_OK);
    float q[2] = {1, 1}, h[2] = {0, 0};
    mt_optim_step(&o, q, h, 0.5f); /* zero gradient: only the shrink */
    assert_true(fabsf(q[0] - 0.95f) < 1e-6f);
    assert_true(q[1] == 1.0f);
    mt_optim_free(&o);
}

static void test_schedules(void **s)
{
    mt_schedule c = {.kind = MT_SCHED_CONSTANT, .lr0 = 0.1f};
    assert_true(mt_schedule_lr(&c, 0) == 0.1f);
    assert_true(mt_schedule_lr(&c, 1000000) == 0.1f);

    mt_schedule st = {.kind = MT_SCHED_STEP, .lr0 = 1.0f, .gamma = 0.5f,
                      .step_size = 10};
    assert_true(mt_schedule_lr(&st, 9) == 1.0f);
    assert_true(mt_schedule_lr(&st, 10) == 0.5f);
    assert_true(mt_schedule_lr(&st, 35) == 0.125f);

    mt_schedule cos = {.kind = MT_SCHED_COSINE, .lr0 = 1.0f, .min_lr = 0.1f,
                       .total_steps = 100};
    assert_true(fabsf(mt_schedule_lr(&cos, 0) - 1.0f) < 1e-6f);
    assert_true(fabsf(mt_schedule_lr(&cos, 50) - 0.55f) < 1e-6f);
    assert_true(fabsf(mt_schedule_lr(&cos, 100) - 0.1f) < 1e-6f);
    assert_true(fabsf(mt_schedule_lr(&cos, 500) - 0.1f) < 1e-6f);

    /* Warm-up ramps linearly to the scheduled value. */
    cos.warmup_steps = 4;
    assert_true(fabsf(mt_schedule_lr(&cos, 0) - 0.25f) < 1e-6f);
    assert_true(fabsf(mt_schedule_lr(&cos, 3) -
                      mt_schedule_lr(&(mt_schedule){.kind = MT_SCHED_COSINE,
                                                    .lr0 = 1.0f,
                                                    .min_lr = 0.1f,
                                                    .total_steps = 100},
                                     3)) < 1e-6f);
    mt_schedule ms = {.kind = MT_SCHED_MULTISTEP, .lr0 = 1.0f, .gamma = 0.1f,
                      .milestones = {10, 25}, .n_milestones = 2};
    assert_true(mt_schedule_lr(&ms, 9) == 1.0f);
    assert_true(fabsf(mt_schedule_lr(&ms, 10) - 0.1f) < 1e-7f);
    assert_true(fabsf(mt_schedule_lr(&ms, 30) - 0.01f) < 1e-8f);
    mt_schedule ex = {.kind = MT_SCHED_EXPONENTIAL, .lr0 = 1.0f,
                      .gamma = 0.5f, .step_size = 10};
    assert_true(fabsf(mt_schedule_lr(&ex, 5) - 0.70710678f) < 1e-6f);
    assert_true(fabsf(mt_schedule_lr(&ex, 20) - 0.25f) < 1e-7f);
    mt_schedule it = {.kind = MT_SCHED_INVERSE_TIME, .lr0 = 0.3f,
                      .decay = 0.5};
    assert_true(fabsf(mt_schedule_lr(&it, 4) - 0.1f) < 1e-7f);
    /* SGDR: cycles of 10 then 20 steps; a restart goes back to lr0. */
    mt_schedule sr = {.kind = MT_SCHED_COSINE_RESTARTS, .lr0 = 1.0f,
                      .restart_steps = 10, .restart_mult = 2.0};
    assert_true(fabsf(mt_schedule_lr(&sr, 5) - 0.5f) < 1e-6f);
    assert_true(mt_schedule_lr(&sr, 10) == 1.0f);
    assert_true(fabsf(mt_schedule_lr(&sr, 20) - 0.5f) < 1e-6f);
    assert_true(mt_schedule_lr(&sr, 30) == 1.0f);
    assert_int_equal(mt_schedule_from_name("cosine"), MT_SCHED_COSINE);
    assert_int_equal(mt_schedule_from_name("linear"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_adam_first_steps),
        cmocka_unit_test(test_adamw_decouples_decay),
        cmocka_unit_test(test_l1_pulls_toward_zero),
        cmocka_unit_test(test_penalty_ranges),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
