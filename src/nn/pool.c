/* Max and average pooling over K x K windows with stride S and padding P,
 * per channel. Max pooling records the winning input index per output so
 * backward routes the gradient there (the split backward finds them
 * again from x); average pooling divides by K K (padding counts, as
 * PyTorch's default count_include_pad). */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"

static int pool_setup(mt_layer *l, char *err)
{
    mt_layer_spec *s = &l->spec;
    if (s->size == 0) {
        mt_seterr(err, "%s: size must be > 0", l->name);
        return MT_EINVAL;
    }
    if (s->stride == 0)
        s->stride = s->size;
    if (s->pad >= s->size) {
        mt_seterr(err, "%s: pad %zu must be smaller than size %zu", l->name,
                  s->pad, s->size);
        return MT_EINVAL;
    }
    size_t oh = mt__window_out(l->in.h, s->size, s->stride, s->pad);
    size_t ow = mt__window_out(l->in.w, s->size, s->stride, s->pad);
    if (oh == 0 || ow == 0) {
        mt_seterr(err, "%s: window %zu does not fit input %zux%zux%zu",
                  l->name, s->size, l->in.c, l->in.h, l->in.w);
        return MT_EINVAL;
    }
    l->out = (mt_shape){l->in.c, oh, ow};
    return MT_OK;
}

static int maxpool_alloc(mt_layer *l, char *err)
{
    return mt__layer_scratch(l, l->max_batch * mt_shape_size(l->out) *
                                    sizeof(uint32_t), err);
}

/* Calls body(ih, iw) for the in-bounds input pixels of window (oh, ow). */
#define FOR_WINDOW(l, oh, ow, body)                                          \
    for (size_t kh_ = 0; kh_ < (l)->spec.size; kh_++) {                      \
        ptrdiff_t ih = (ptrdiff_t)((oh) * (l)->spec.stride + kh_) -          \
                       (ptrdiff_t)(l)->spec.pad;                             \
        if (ih < 0 || ih >= (ptrdiff_t)(l)->in.h)                            \
            continue;                                                        \
        for (size_t kw_ = 0; kw_ < (l)->spec.size; kw_++) {                  \
            ptrdiff_t iw = (ptrdiff_t)((ow) * (l)->spec.stride + kw_) -      \
                           (ptrdiff_t)(l)->spec.pad;                         \
            if (iw < 0 || iw >= (ptrdiff_t)(l)->in.w)                        \
                continue;                                                    \
            body;                                                            \
        }                                                                    \
    }

/* The winner of window (oh, ow) in general (padding never wins), and its
 * value: -FLT_MAX and index 0 if nothing beats that. */
static inline uint32_t argmax_window(const mt_layer *l, const float *xp,
                                     size_t oh, size_t ow, float *value)
{
    size_t W = l->in.w;
    float best = -FLT_MAX;
    uint32_t besti = 0;
    FOR_WINDOW(l, oh, ow, {
        size_t i = (size_t)ih * W + (size_t)iw;
        if (xp[i] > best) {
            best = xp[i];
            besti = (uint32_t)i;
        }
    });
    *value = best;
    return besti;
}

static int is_2x2(const mt_layer *l)
{
    return l->spec.size == 2 && l->spec.stride == 2 && l->spec.pad == 0;
}

/* One output row of 2x2 windows (stride 2, no padding: the common case,
 * without the general loop's bounds tests), the winners and their
 * values: the first largest, the value carried along rather than read
 * back through the index, so that the loop over ow vectorizes (selects,
 * not branches; a NaN never wins a comparison, as in the general loop).
 * With each window compared on its own, maxpool3 was 10% of LeNet-5's
 * step in perf. */
static inline __attribute__((always_inline)) void
row_winners2(const float *xp, size_t W, size_t oh, size_t OW, float *y,
             uint32_t *arg)
{
    const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
    uint32_t base = (uint32_t)(2 * oh * W);
    for (size_t ow = 0; ow < OW; ow++) {
        uint32_t at = base + (uint32_t)(2 * ow);
        float v = r0[2 * ow], t;
        uint32_t i = at;
        t = r0[2 * ow + 1];
        i = t > v ? at + 1 : i;
        v = t > v ? t : v;
        t = r1[2 * ow];
        i = t > v ? at + (uint32_t)W : i;
        v = t > v ? t : v;
        t = r1[2 * ow + 1];
        i = t > v ? at + (uint32_t)W + 1 : i;
        v = t > v ? t : v;
        arg[ow] = i;
        y[ow] = v;
    }
}

/* Window winners of B samples: arg (B C, OH OW) and, if y, their values. */
MT_VECTOR(static, maxpool_winners,
          (const mt_layer *l, const float *x, float *y, uint32_t *arg,
           size_t B),
          (l, x, y, arg, B))
{
    size_t H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    int two = is_2x2(l);
    float row[OW]; /* y's row when the caller wants winners alone */
    for (size_t p = 0; p < B * l->in.c; p++) {
        const float *xp = x + p * H * W;
        for (size_t oh = 0; oh < OH; oh++) {
            size_t o = (p * OH + oh) * OW;
            if (two) {
                row_winners2(xp, W, oh, OW, y ? y + o : row, arg + o);
                continue;
            }
            for (size_t ow = 0; ow < OW; ow++) {
                float v;
                arg[o + ow] = argmax_window(l, xp, oh, ow, &v);
                if (y)
                    y[o + ow] = v;
            }
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_WINNERS2_AVX512 1

/* maxpool_winners for 2x2 windows with AVX-512, 16 outputs a vector with
 * masks for a row's tail: the loop above vectorizes only over whole
 * vectors, so at 14 outputs a row (LeNet-5) the AVX-512 copy ran it all
 * scalar. The same comparisons in the same order: the same winners and
 * values as every other path. */
__attribute__((target("avx512f"))) static void
winners2_avx512(const mt_layer *l, const float *x, float *y, uint32_t *arg,
                size_t B)
{
    size_t W = l->in.w, OH = l->out.h, OW = l->out.w;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16,
                                           18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i w1 = _mm512_set1_epi32((int)W);
    for (size_t p = 0; p < B * l->in.c; p++)
        for (size_t oh = 0; oh < OH; oh++) {
            const float *r0 = x + (p * l->in.h + 2 * oh) * W, *r1 = r0 + W;
            size_t o = (p * OH + oh) * OW;
            for (size_t ow = 0; ow < OW; ow += 16) {
                size_t m = OW - ow < 16 ? OW - ow : 16;
                __mmask16 lo = (__mmask16)((1u << (2 * m < 16 ? 2 * m : 16)) -
                                           1);
                __mmask16 hi = (__mmask16)(2 * m > 16
                                               ? (1u << (2 * m - 16)) - 1
                                               : 0);
                __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * ow);
                __m512 b0 = _mm512_maskz_loadu_ps(hi, r0 + 2 * ow + 16);
                __m512 a1 = _mm512_maskz_loadu_ps(lo, r1 + 2 * ow);
                __m512 b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * ow + 16);
                __m512i at = _mm512_add_epi32(
                    even, _mm512_set1_epi32((int)(2 * oh * W + 2 * ow)));
                __m512 v = _mm512_permutex2var_ps(a0, even, b0), t;
                __m512i i = at;
                __mmask16 gt;
                t = _mm512_permutex2var_ps(a0, odd, b0);
                gt = _mm512_cmp_ps_mask(t, v, _CMP_GT_OQ);
                i = _mm512_mask_add_epi32(i, gt, at, _mm512_set1_epi32(1));
                v = _mm512_mask_blend_ps(gt, v, t);
                t = _mm512_permutex2var_ps(a1, even, b1);
                gt = _mm512_cmp_ps_mask(t, v, _CMP_GT_OQ);
                i = _mm512_mask_add_epi32(i, gt, at, w1);
                v = _mm512_mask_blend_ps(gt, v, t);
                t = _mm512_permutex2var_ps(a1, odd, b1);
                gt = _mm512_cmp_ps_mask(t, v, _CMP_GT_OQ);
                i = _mm512_mask_add_epi32(
                    i, gt, at, _mm512_add_epi32(w1, _mm512_set1_epi32(1)));
                v = _mm512_mask_blend_ps(gt, v, t);
                __mmask16 k = (__mmask16)((1u << m) - 1);
                _mm512_mask_storeu_epi32(arg + o + ow, k, i);
                if (y)
                    _mm512_mask_storeu_ps(y + o + ow, k, v);
            }
        }
}
#endif

/* The winners of B samples (and their values, if y). */
static void winners(const mt_layer *l, const float *x, float *y,
                    uint32_t *arg, size_t B)
{
#ifdef HAVE_WINNERS2_AVX512
    if (mt__isa == MT_ISA_AVX512 && is_2x2(l)) {
        winners2_avx512(l, x, y, arg, B);
        return;
    }
#endif
    maxpool_winners(l, x, y, arg, B);
}

static void maxpool_forward(mt_layer *l, const mt_step_ctx *ctx,
                            const float *x, float *y, size_t B)
{
    winners(l, x, y, l->scratch, B);
}

/* dx: each output's gradient routed to its window's winner. */
static void route(const mt_layer *l, const uint32_t *arg, const float *dy,
                  float *dx, size_t B)
{
    size_t HW = l->in.h * l->in.w, OHW = l->out.h * l->out.w;
    memset(dx, 0, B * mt_shape_size(l->in) * sizeof(float));
    for (size_t p = 0; p < B * l->in.c; p++)
        for (size_t o = 0; o < OHW; o++)
            dx[p * HW + arg[p * OHW + o]] += dy[p * OHW + o];
}

/* From the winners forward recorded. */
static void maxpool_backward(mt_layer *l, const float *x, const float *y,
                             const float *dy, float *dx, size_t B)
{
    if (dx)
        route(l, l->scratch, dy, dx, B);
}

/* The split backward (a pipeline's), from x alone: the winners found
 * again, as forward found them, so that it may run after other
 * micro-batches' forwards have overwritten the scratch; the scratch
 * holds them meanwhile. No parameters, so no weight half. */
static void maxpool_backward_input(mt_layer *l, const float *x,
                                   const float *y, const float *dy,
                                   float *dx, size_t B)
{
    if (!dx)
        return;
    winners(l, x, NULL, l->scratch, B);
    route(l, l->scratch, dy, dx, B);
}

static void no_weights(mt_layer *l, const float *x, const float *dy,
                       size_t B)
{
}

MT_VECTOR(static, avgpool_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *x, float *y,
           size_t B),
          (l, ctx, x, y, B))
{
    size_t H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    float inv = 1.0f / (float)(l->spec.size * l->spec.size);
    for (size_t p = 0; p < B * l->in.c; p++) {
        const float *xp = x + p * H * W;
        for (size_t oh = 0; oh < OH; oh++)
            for (size_t ow = 0; ow < OW; ow++) {
                float s = 0.0f;
                FOR_WINDOW(l, oh, ow, s += xp[(size_t)ih * W + (size_t)iw]);
                y[(p * OH + oh) * OW + ow] = s * inv;
            }
    }
}

MT_VECTOR(static, avgpool_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    if (!dx)
        return;
    size_t H = l->in.h, W = l->in.w, OH = l->out.h, OW = l->out.w;
    float inv = 1.0f / (float)(l->spec.size * l->spec.size);
    memset(dx, 0, B * mt_shape_size(l->in) * sizeof(float));
    for (size_t p = 0; p < B * l->in.c; p++) {
        float *dxp = dx + p * H * W;
        for (size_t oh = 0; oh < OH; oh++)
            for (size_t ow = 0; ow < OW; ow++) {
                float g = dy[(p * OH + oh) * OW + ow] * inv;
                FOR_WINDOW(l, oh, ow, dxp[(size_t)ih * W + (size_t)iw] += g);
            }
    }
}

const mt_layer_ops mt__maxpool_ops = {
    .kind_name = "maxpool",
    .setup = pool_setup,
    .alloc = maxpool_alloc,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .backward_input = maxpool_backward_input,
    .backward_weight = no_weights,
};

const mt_layer_ops mt__avgpool_ops = {
    .kind_name = "avgpool",
    .setup = pool_setup,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .stateless_backward = 1,
};
