/* 2x2 max-pooling's winners on every SIMD path (AVX-512 has its own
 * masked loop): the same values and the same winners, hence the same
 * input gradient, as a plain reference, with ties, NaN, signed zeros and
 * infinities, and rows of fewer, exactly and more than 16 outputs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/model.h"

/* Values that tie, NaN, -0 and +0, infinities and plain numbers. */
static float tricky(size_t i)
{
    static const float v[] = {1.0f, 1.0f, -0.0f, 0.0f, NAN, 2.5f,
                              -INFINITY, INFINITY, -3.0f, 2.5f, 0.5f};
    uint64_t r = (uint64_t)(mt_rng_uniform(77, 1, 0, i) * 23.0f) % 23;
    return r < sizeof v / sizeof *v ? v[r] : (float)r - 15.0f;
}

/* The window's winner as the 2x2 loop defines it: the first of the four
 * (row-major) unless a later one compares greater; NaN never does. */
static size_t reference_winner(const float *x, size_t W, size_t oh,
                               size_t ow)
{
    size_t at = 2 * oh * W + 2 * ow, best = at;
    const size_t cand[3] = {at + 1, at + W, at + W + 1};
    for (int k = 0; k < 3; k++)
        if (x[cand[k]] > x[best])
            best = cand[k];
    return best;
}

/* y and dx of one forward and backward at the current path. */
static void run(mt_model *m, size_t B, float *y, float *dx)
{
    mt_layer *l = &m->layers[0];
    size_t No = B * mt_shape_size(l->out);
    mt_step_ctx ctx = {0};
    memcpy(y, mt_model_forward(m, &ctx, B), No * sizeof(float));
    float *dy = mt_calloc(No, sizeof(float));
    for (size_t i = 0; i < No; i++)
        dy[i] = (float)(i + 1);
    l->ops->backward(l, m->act[0], m->act[1], dy, dx, B);
    free(dy);
}

static void expect_reference(const mt_model *m, size_t B, const float *y,
                             const float *dx, mt_isa isa)
{
    const mt_layer *l = &m->layers[0];
    size_t H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    for (size_t p = 0; p < B * l->in.c; p++)
        for (size_t oh = 0; oh < OH; oh++)
            for (size_t ow = 0; ow < OW; ow++) {
                const float *x = m->act[0] + p * H * W;
                size_t win = reference_winner(x, W, oh, ow);
                size_t o = (p * OH + oh) * OW + ow;
                if (memcmp(&y[o], &x[win], sizeof(float)) ||
                    dx[p * H * W + win] != (float)(o + 1))
                    fail_msg("%s, %zux%zu: output %zu is %g, the reference "
                             "winner %zu holds %g",
                             mt_isa_name(isa), H, W, o, y[o], win, x[win]);
            }
}

static void test_maxpool2_every_path(void **state)
{
    const mt_shape shapes[] = {{2, 6, 37}, {1, 4, 64}, {3, 8, 6},
                               {1, 2, 2},  {2, 5, 33}, {1, 2, 30}};
    const size_t B = 3;
    mt_isa was = mt_isa_current();
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int isa = 0; isa <= (int)mt_isa_best(); isa++) {
            mt_isa_set((mt_isa)isa);
            mt_layer_spec spec = {.kind = MT_MAXPOOL, .size = 2};
            mt_model m;
            char err[MT_ERR_LEN];
            if (mt_model_init(&m, &spec, 1, shapes[s], B, 1, err))
                fail_msg("%s", err);
            size_t Ni = B * mt_shape_size(shapes[s]);
            for (size_t i = 0; i < Ni; i++)
                m.act[0][i] = tricky(s * 1000 + i);
            float *y = mt_calloc(B * mt_shape_size(m.layers[0].out),
                                 sizeof(float));
            float *dx = mt_calloc(Ni, sizeof(float));
            run(&m, B, y, dx);
            expect_reference(&m, B, y, dx, (mt_isa)isa);
            free(y);
            free(dx);
            mt_model_free(&m);
        }
    mt_isa_set(was);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool2_every_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
