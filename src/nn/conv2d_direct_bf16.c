/* The direct convolution's kernels in mixed precision ([train]
 * precision = bf16): AVX512_BF16's vdpbf16ps multiplies pairs of
 * bfloat16 and adds both products to a float32 lane, so each
 * instruction does two taps of the window (forward, input gradient:
 * pairs along kw, an odd K's last paired with a zero weight) or two
 * output columns (weight gradient: dy's columns ox and ox + 1 against
 * x's ox + kw and ox + kw + 1). Inputs are rounded to nearest even, sums
 * stay float32. The tiles and loops are conv2d_direct.c's. */

#include "core/bf16.h"
#include "mpitrain/core.h"
#include "nn/conv_direct.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

#define BF16 "avx512f,avx512bw,avx512bf16"
#define KERNEL __attribute__((target(BF16), always_inline)) inline

int mt__direct_has_bf16(void) { return __builtin_cpu_supports("avx512bf16"); }

__attribute__((target(BF16))) void mt__direct_pairs(const float *src,
                                                    uint16_t *dst, size_t n)
{
    /* word 2i of the result: a's lane i, word 2i + 1: b's */
    const __m512i mix = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
        22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (size_t v = 0; v < n; v++) {
        __m512 a = _mm512_load_ps(src + v * LANES);
        __m512 b = v + 1 < n ? _mm512_load_ps(src + (v + 1) * LANES)
                             : _mm512_setzero_ps();
        __m512i ab = (__m512i)_mm512_cvtne2ps_pbh(b, a); /* a low, b high */
        _mm512_store_si512(dst + v * 2 * LANES,
                           _mm512_permutexvar_epi16(mix, ab));
    }
}

void mt__direct_weight_pairs(const float *w, size_t F, size_t C, size_t K,
                             int flip, uint32_t *wp)
{
    size_t KK = K * K, KP = (K + 1) / 2;
    for (size_t f = 0; f < F; f++)
        for (size_t c = 0; c < C; c++)
            for (size_t kh = 0; kh < K; kh++)
                for (size_t j = 0; j < KP; j++) {
                    const float *wk = w + (f * C + c) * KK;
                    float lo, hi = 0.0f;
                    if (flip) {
                        lo = wk[KK - 1 - (kh * K + 2 * j)];
                        if (2 * j + 1 < K)
                            hi = wk[KK - 1 - (kh * K + 2 * j + 1)];
                    } else {
                        lo = wk[kh * K + 2 * j];
                        if (2 * j + 1 < K)
                            hi = wk[kh * K + 2 * j + 1];
                    }
                    size_t row = flip ? c * F + f : f * C + c;
                    wp[(row * K + kh) * KP + j] =
                        mt__bf16_round(lo) |
                        (uint32_t)mt__bf16_round(hi) << 16;
                }
}

static KERNEL __m512 dot(__m512 acc, __m512i a, __m512i b)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* One tile: FO output channels x XO columns of an output row. */
static KERNEL void corr_tile(const corr_args *a, const uint16_t *in,
                             const uint32_t *wp, const float *bias,
                             float *out, size_t kh_lo, size_t kh_hi,
                             const int FO, const int XO)
{
    size_t K = a->K, KP = (K + 1) / 2, wfs = a->ci * K * KP;
    size_t plane = a->in_rows * a->irs;
    __m512 acc[8][6];
    for (int f = 0; f < FO; f++)
        for (int x = 0; x < XO; x++)
            acc[f][x] = bias ? _mm512_set1_ps(bias[f]) : _mm512_setzero_ps();
    for (size_t c = 0; c < a->ci; c++)
        for (size_t kh = kh_lo; kh < kh_hi; kh++) {
            const uint16_t *row = in + (c * plane + kh * a->irs) * 2 * LANES;
            const uint32_t *wr = wp + (c * K + kh) * KP;
            for (size_t j = 0; j < KP; j++) {
                __m512i wb[8];
                for (int f = 0; f < FO; f++)
                    wb[f] = _mm512_set1_epi32((int)wr[(size_t)f * wfs + j]);
                for (int x = 0; x < XO; x++) {
                    __m512i v = _mm512_load_si512(
                        row + (2 * j + (size_t)x) * 2 * LANES);
                    for (int f = 0; f < FO; f++)
                        acc[f][x] = dot(acc[f][x], v, wb[f]);
                }
            }
        }
    size_t ocs = a->oh * a->ow * LANES;
    for (int f = 0; f < FO; f++)
        for (int x = 0; x < XO; x++)
            _mm512_store_ps(out + f * ocs + (size_t)x * LANES, acc[f][x]);
}

static KERNEL void corr_all(const corr_args *a, const uint16_t *in16,
                            const uint32_t *wp, const int FO, const int XO)
{
    size_t KP = (a->K + 1) / 2;
    for (size_t nb = 0; nb < a->blocks; nb++)
        for (size_t f0 = 0; f0 < a->co; f0 += (size_t)FO)
            for (size_t oy = 0; oy < a->oh; oy++) {
                size_t kh_lo, kh_hi;
                mt__direct_rows(a, oy, &kh_lo, &kh_hi);
                const uint16_t *in = in16 + (nb * a->in_block +
                                             oy * a->irs * LANES) * 2;
                float *out = a->out + nb * a->out_block +
                             ((f0 * a->oh + oy) * a->ow) * LANES;
                const uint32_t *w = wp + f0 * a->ci * a->K * KP;
                const float *bias = a->bias ? a->bias + f0 : NULL;
                for (size_t ox = 0; ox < a->ow; ox += (size_t)XO)
                    corr_tile(a, in + ox * 2 * LANES, w, bias,
                              out + ox * LANES, kh_lo, kh_hi, FO, XO);
            }
}

#define CORR(FO, XO)                                                         \
    __attribute__((target(BF16))) static void corr_##FO##_##XO(           \
        const corr_args *a, const uint16_t *in16, const uint32_t *wp)      \
    {                                                                      \
        corr_all(a, in16, wp, FO, XO);                                     \
    }
MT__DIRECT_TILES(CORR)
#undef CORR

void mt__direct_corr_bf16(const corr_args *a, const uint16_t *in16,
                          const uint32_t *wp, int tile)
{
#define ENTRY(FO, XO) corr_##FO##_##XO,
    static void (*const run[])(const corr_args *, const uint16_t *,
                               const uint32_t *) = {MT__DIRECT_TILES(ENTRY)};
#undef ENTRY
    run[tile](a, in16, wp);
}

/* dw[f0 .. f0 + FO)[c][kh][0 .. K), two dy columns a product. */
static KERNEL void dw_tile(const dw_args *a, const uint16_t *x16,
                           const uint16_t *dy16, size_t f0, size_t c,
                           size_t kh, const int FO, const int K)
{
    __m512 acc[8][MAX_K];
    for (int f = 0; f < FO; f++)
        for (int k = 0; k < K; k++)
            acc[f][k] = _mm512_setzero_ps();
    for (size_t nb = 0; nb < a->blocks; nb++) {
        const uint16_t *x = x16 + (nb * a->x_block + c * a->x_plane) * 2;
        const uint16_t *d = dy16 + (nb * a->d_block + f0 * a->d_plane) * 2;
        for (size_t oy = 0; oy < a->OH; oy++) {
            const uint16_t *xr = x + (oy + kh) * a->xrs * LANES * 2;
            const uint16_t *dr = d + ((oy + a->Q) * a->drs + a->Q) *
                                         LANES * 2;
            for (size_t ox = 0; ox < a->OW; ox += 2) {
                __m512i xv[MAX_K];
                for (int k = 0; k < K; k++)
                    xv[k] = _mm512_load_si512(xr + (ox + (size_t)k) *
                                                       LANES * 2);
                for (int f = 0; f < FO; f++) {
                    __m512i g = _mm512_load_si512(
                        dr + (f * a->d_plane + ox * LANES) * 2);
                    for (int k = 0; k < K; k++)
                        acc[f][k] = dot(acc[f][k], g, xv[k]);
                }
            }
        }
    }
    for (int f = 0; f < FO; f++)
        for (int k = 0; k < K; k++)
            a->dw[(((f0 + (size_t)f) * a->C + c) * (size_t)K + kh) * K + k] =
                _mm512_reduce_add_ps(acc[f][k]);
}

static KERNEL void dw_all(const dw_args *a, const uint16_t *x16,
                          const uint16_t *dy16, size_t Fd, const int K)
{
    const int FO = K >= 3 ? 24 / K : 8;
    for (size_t c = 0; c < a->C; c++)
        for (size_t kh = 0; kh < (size_t)K; kh++)
            for (size_t f0 = 0; f0 < Fd; f0 += (size_t)FO)
                dw_tile(a, x16, dy16, f0, c, kh, FO, K);
}

__attribute__((target(BF16))) void
mt__direct_dw_bf16(const dw_args *a, const uint16_t *x16,
                   const uint16_t *dy16, size_t Fd)
{
    switch (a->K) {
    case 1: dw_all(a, x16, dy16, Fd, 1); break;
    case 2: dw_all(a, x16, dy16, Fd, 2); break;
    case 3: dw_all(a, x16, dy16, Fd, 3); break;
    case 4: dw_all(a, x16, dy16, Fd, 4); break;
    case 5: dw_all(a, x16, dy16, Fd, 5); break;
    case 6: dw_all(a, x16, dy16, Fd, 6); break;
    default: dw_all(a, x16, dy16, Fd, 7); break;
    }
}

#else

int mt__direct_has_bf16(void) { return 0; }

#endif
