/* Private: run-time selectable copies of the hot element-wise loops.
 *
 * A cluster binary must run on every node, so it is built for the x86-64
 * baseline (SSE2). MT_VECTOR gives a function AVX2 and AVX-512 copies as
 * well, and a dispatcher that calls the copy of the path in use
 * (mt_isa_current: the best the CPU has, or MPITRAIN_ISA's choice), so
 * that tests can run every path a machine has in one process. Without
 * -ffast-math, and with -ffp-contract=off (no fused multiply-adds), the
 * copies compute the same floats in the same order: results do not
 * depend on the path (tests/test_layers.c checks it bit for bit, and
 * fails when the copies are allowed FMA).
 *
 *   MT_VECTOR(static, relu_forward, (mt_layer *l, float *y, size_t B),
 *             (l, y, B))
 *   { ...the loop... }
 *
 * declares relu_forward (the dispatcher, with the given linkage) and
 * defines the body once, as an always-inline function that each copy
 * inlines under its own target: the vectorizer then uses that target's
 * registers. Only for functions returning void. */
#ifndef MPITRAIN_CORE_SIMD_H
#define MPITRAIN_CORE_SIMD_H

#include "mpitrain/core.h"

/* The path in use (an mt_isa); set by mt_isa_set. */
extern int mt__isa;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MT_NO_CLONES)
#define MT_VECTOR(linkage, name, params, args)                              \
    MT__VECTOR(linkage, name, params, args, "avx512f")
/* The same, with the AVX-512 copy in 256-bit registers (AVX-512VL's
 * masks, AVX2's width): for loops of divisions and square roots, which
 * Zen 4 runs at half the rate in 512-bit ones (Adam's step 0.93 ns a
 * parameter with zmm, 0.45 with ymm; on Intel about level). */
#define MT_VECTOR_256(linkage, name, params, args)                          \
    MT__VECTOR(linkage, name, params, args,                                 \
               "avx512f,avx512vl,prefer-vector-width=256")
#define MT__VECTOR(linkage, name, params, args, avx512)                     \
    static inline void name##_body params __attribute__((always_inline));  \
    __attribute__((target(avx512))) static void name##_avx512 params        \
    {                                                                       \
        name##_body args;                                                   \
    }                                                                       \
    __attribute__((target("avx2"))) static void name##_avx2 params          \
    {                                                                       \
        name##_body args;                                                   \
    }                                                                       \
    static void name##_baseline params { name##_body args; }                \
    linkage void name params                                                \
    {                                                                       \
        if (mt__isa == MT_ISA_AVX512)                                       \
            name##_avx512 args;                                             \
        else if (mt__isa == MT_ISA_AVX2)                                    \
            name##_avx2 args;                                               \
        else                                                                \
            name##_baseline args;                                           \
    }                                                                       \
    static inline void name##_body params
#else
#define MT_VECTOR(linkage, name, params, args) linkage void name params
#define MT_VECTOR_256(linkage, name, params, args) linkage void name params
#endif

#endif
