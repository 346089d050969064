/* Private: bfloat16 rounding, shared by the ring's bf16 payload
 * (parallel/ring.c) and mixed precision (nn/dense_onednn.c,
 * nn/conv2d_direct_bf16.c), so that all round alike. */
#ifndef MPITRAIN_CORE_BF16_H
#define MPITRAIN_CORE_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* To the nearest bf16, ties to even; NaN stays NaN. Branch-free, so that
 * loops over it vectorize. */
static inline uint16_t mt__bf16_round(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* to even */
    uint32_t quiet_nan = (u >> 16) | 0x40u; /* NaN must stay NaN */
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
}

static inline float mt__bf16_widen(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* dst[i] = src[i] rounded, on the SIMD path in use (core.c). */
void mt__bf16_pack(uint16_t *restrict dst, const float *restrict src,
                   size_t n);

#endif
