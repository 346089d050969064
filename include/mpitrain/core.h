/* mpitrain core: error codes and messages, the counter-based RNG, small helpers.
 *
 * Every function that can fail returns MT_OK (0) or a negative MT_E* code and
 * fills `err` (MT_ERR_LEN bytes, NULL allowed) with one line naming the file,
 * key, layer or tensor at fault. */
#ifndef MPITRAIN_CORE_H
#define MPITRAIN_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* free, for mt_free */

#define MT_ERR_LEN 512

enum {
    MT_OK = 0,
    MT_EINVAL = -1,  /* bad argument, value, shape or config */
    MT_ENOMEM = -2,  /* allocation failed */
    MT_EIO = -3,     /* a file could not be read or written */
    MT_EFORMAT = -4, /* a file exists but its content is wrong */
    MT_ENUMERIC = -5, /* NaN or Inf appeared in training */
    MT_ESTOPPED = -6  /* a stop was requested (signal): state was saved */
};

/* printf-style message into err (if not NULL); returns nothing. */
void mt_seterr(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mpitrain's version string, e.g. "0.1.0". */
const char *mt_version(void);

/* Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, as in
 * Random123). There is no state; every draw is a pure function of a 64-bit
 * key and a 128-bit counter, so the same (seed, purpose, index) gives the
 * same number on any rank, in any order, after any resume. */
typedef struct mt_rng_ctr {
    uint32_t v[4];
} mt_rng_ctr;

/* Philox4x32-10 block: four 32-bit outputs for counter c under key k. */
mt_rng_ctr mt_rng_philox(mt_rng_ctr c, uint64_t key);

/* Purposes keep the streams of different uses apart. */
enum {
    MT_RNG_INIT = 1,    /* weight initialisation: (layer, element) */
    MT_RNG_SHUFFLE = 2, /* per-epoch shuffle: (epoch, position) */
    MT_RNG_SPLIT = 3,   /* train/validation split: (0, position) */
    MT_RNG_DROPOUT = 4, /* dropout masks: (layer, step, sample, element) */
    MT_RNG_AUGMENT = 5, /* augmentation: (epoch, sample) */
    MT_RNG_SAMPLE = 6,  /* class resampling: (epoch * classes + class) */
    MT_RNG_SEARCH = 7,  /* search trial values: (trial, parameter) */
    MT_RNG_BENCH = 8    /* benchmark knobs: (rank, step) */
};

/* A uniform 64-bit value for (seed, purpose, a, b). */
uint64_t mt_rng_u64(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b);
/* Uniform in [0, 1) with 24 random bits (exactly representable in float). */
float mt_rng_uniform(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b);
/* Standard normal (Box-Muller on one Philox block). */
float mt_rng_normal(uint64_t seed, uint32_t purpose, uint64_t a, uint64_t b);
/* Uniform integer in [0, n), n > 0, without modulo bias worth noticing
 * (64-bit multiply-shift). */
uint64_t mt_rng_below(uint64_t n, uint64_t seed, uint32_t purpose, uint64_t a,
                      uint64_t b);

/* Fills perm[0..n) with a permutation of 0..n-1 that depends only on
 * (seed, purpose, stream): Fisher-Yates with counter-based draws. */
void mt_rng_permutation(size_t *perm, size_t n, uint64_t seed,
                        uint32_t purpose, uint64_t stream);

/* Index of `name` in a NULL-terminated table of names, or -1. */
int mt_name_index(const char *const *names, const char *name);

/* malloc that zeroes, and NULL-safe free that clears the pointer. */
void *mt_calloc(size_t n, size_t size);
#define mt_free(p) do { free(p); (p) = NULL; } while (0)

/* SIMD paths of the hot loops (src/core/simd.h). The best one the CPU
 * has is chosen when the library loads, unless the environment variable
 * MPITRAIN_ISA names another (baseline, avx2, avx512); a path the CPU
 * lacks falls back to the best it has. */
typedef enum mt_isa {
    MT_ISA_BASELINE = 0, /* x86-64 SSE2: every node */
    MT_ISA_AVX2 = 1,
    MT_ISA_AVX512 = 2 /* AVX-512F */
} mt_isa;

/* The best path this CPU runs (MT_ISA_BASELINE off x86-64). */
mt_isa mt_isa_best(void);
/* The path in use. */
mt_isa mt_isa_current(void);
/* Selects `want` if the CPU has it, else the best it has; returns the
 * path taken. Not thread-safe: call it between steps. */
mt_isa mt_isa_set(mt_isa want);
/* "baseline", "avx2", "avx512". */
const char *mt_isa_name(mt_isa isa);
/* The path named, or -1. */
int mt_isa_from_name(const char *name);
/* Why the path in use is not the one MPITRAIN_ISA asked for ("" if it
 * is, or nothing was asked): for the CLI to print once. */
const char *mt_isa_note(void);

/* Sets FTZ/DAZ in this thread's MXCSR so denormal floats do not slow down
 * training (a no-op where the CPU has no MXCSR). */
void mt_flush_denormals(int on);

#endif
