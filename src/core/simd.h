/* Private: function multiversioning for the hot element-wise loops.
 *
 * A cluster binary must run on every node, so it is built for the x86-64
 * baseline (SSE2). MT_VECTOR gives a function AVX2 and AVX-512 copies as
 * well, and the dynamic loader picks the best one the CPU has (GCC
 * target_clones, an ifunc). Without -ffast-math the copies compute the
 * same floats in the same order, so results do not depend on the node. */
#ifndef MPITRAIN_CORE_SIMD_H
#define MPITRAIN_CORE_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(MT_NO_CLONES)
#define MT_VECTOR __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MT_VECTOR
#endif

#endif
