/* Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and
 * Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11). Constants and
 * round structure follow Random123's philox.h; tests/test_core.c checks the
 * known-answer vectors. */
#include "mpitrain/core.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

mt_rng_ctr mt_rng_philox(mt_rng_ctr c, uint64_t key)
{
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, c.v[0], &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, c.v[2], &hi1);
        mt_rng_ctr n = {{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
        c = n;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return c;
}

/* The key mixes seed and purpose; the counter carries (a, b). Purposes go
 * into the high bits of the key so that seeds 0, 1, 2 ... never collide
 * with another purpose's stream. */
static mt_rng_ctr block(uint64_t seed, uint32_t purpose, uint64_t a,
                        uint64_t b)
{
    mt_rng_ctr c = {{(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)a,
                     (uint32_t)(a >> 32)}};
    uint64_t key = seed ^ ((uint64_t)purpose * 0x9E3779B97F4A7C15ull);
    return mt_rng_philox(c, key);
}

uint64_t mt_rng_u64(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b)
{
    mt_rng_ctr r = block(seed, purpose, a, b);
    return ((uint64_t)r.v[0] << 32) | r.v[1];
}

float mt_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b)
{
    mt_rng_ctr r = block(seed, purpose, a, b);
    return (float)(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

float mt_rng_normal(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b)
{
    mt_rng_ctr r = block(seed, purpose, a, b);
    /* u1 in (0, 1] so that log(u1) is finite. */
    double u1 = ((double)(r.v[0] >> 8) + 1.0) / 16777216.0;
    double u2 = (double)(r.v[1] >> 8) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t mt_rng_below(uint64_t n, uint64_t seed, uint32_t purpose, uint64_t a,
                      uint64_t b)
{
    unsigned __int128 p =
        (unsigned __int128)mt_rng_u64(seed, purpose, a, b) * n;
    return (uint64_t)(p >> 64);
}

void mt_rng_permutation(size_t *perm, size_t n, uint64_t seed,
                        uint32_t purpose, uint64_t stream)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mt_rng_below(i, seed, purpose, stream, i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
