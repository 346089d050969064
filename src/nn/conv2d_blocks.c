/* conv's direct backend: tensors between NCHW and blocks of 16 samples,
 * one sample a vector lane (conv2d_direct.c's top comment), by 16 x 16
 * transposes in registers. */
#include "nn/conv_direct.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

/* Transposes 16 rows of 16 floats in place (r[i] lane j <- r[j] lane i). */
static __attribute__((target("avx512f"), always_inline)) inline void
transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]);
        __m512d b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]);
        __m512d d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4i + j], 128-bit lane k: rows 4i .. 4i + 3 of column 4k + j */
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
        __m512 b = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
        __m512 c = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 d = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        t[j] = _mm512_shuffle_f32x4(a, b, 0x88);
        t[8 + j] = _mm512_shuffle_f32x4(a, b, 0xdd);
        t[4 + j] = _mm512_shuffle_f32x4(c, d, 0x88);
        t[12 + j] = _mm512_shuffle_f32x4(c, d, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

/* Where pixel p of an h x w plane goes in a block's plane whose rows are
 * rs columns, the image starting at row and column `at`. */
static inline size_t pixel_at(size_t p, size_t w, size_t rs, size_t at)
{
    return ((p / w + at) * rs + p % w + at) * LANES;
}

/* src (B, ch, h, w) NCHW into dst's blocks (block floats apart, planes
 * of `plane` floats), pixel (i, j) at row i + at, column j + at; lanes
 * past B get zeros. */
__attribute__((target("avx512f"))) void
mt__direct_to_blocks(const float *src, size_t B, size_t ch, size_t h, size_t w,
          float *dst, size_t block, size_t plane, size_t rs, size_t at)
{
    size_t hw = h * w;
    for (size_t n0 = 0; n0 < B; n0 += LANES)
        for (size_t c = 0; c < ch; c++) {
            float *d = dst + n0 / LANES * block + c * plane;
            for (size_t p = 0; p < hw; p += LANES) {
                size_t m = hw - p < LANES ? hw - p : LANES;
                __mmask16 k = (__mmask16)((1u << m) - 1);
                __m512 r[16];
                for (size_t i = 0; i < LANES; i++)
                    r[i] = n0 + i < B ? _mm512_maskz_loadu_ps(
                                            k, src + ((n0 + i) * ch + c) *
                                                         hw + p)
                                      : _mm512_setzero_ps();
                transpose16(r);
                for (size_t j = 0; j < m; j++)
                    _mm512_store_ps(d + pixel_at(p + j, w, rs, at), r[j]);
            }
        }
}

/* The inverse: blocks (image at row and column 0) into dst (B, ch, h, w). */
__attribute__((target("avx512f"))) void
mt__direct_from_blocks(const float *src, size_t block, size_t plane, size_t rs,
            size_t B, size_t ch, size_t h, size_t w, float *dst)
{
    size_t hw = h * w;
    for (size_t n0 = 0; n0 < B; n0 += LANES)
        for (size_t c = 0; c < ch; c++) {
            const float *s = src + n0 / LANES * block + c * plane;
            for (size_t p = 0; p < hw; p += LANES) {
                size_t m = hw - p < LANES ? hw - p : LANES;
                __mmask16 k = (__mmask16)((1u << m) - 1);
                __m512 r[16];
                for (size_t j = 0; j < LANES; j++)
                    r[j] = j < m ? _mm512_load_ps(s + pixel_at(p + j, w, rs,
                                                               0))
                                 : _mm512_setzero_ps();
                transpose16(r);
                for (size_t i = 0; i < LANES && n0 + i < B; i++)
                    _mm512_mask_storeu_ps(dst + ((n0 + i) * ch + c) * hw + p,
                                          k, r[i]);
            }
        }
}

#endif
