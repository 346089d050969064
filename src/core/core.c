#include "mpitrain/core.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "config.h"
#include "core/bf16.h"
#include "core/simd.h"

void mt_seterr(char *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, MT_ERR_LEN, fmt, ap);
    va_end(ap);
}

const char *mt_version(void) { return PACKAGE_VERSION; }

int mt_name_index(const char *const *names, const char *name)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

void *mt_calloc(size_t n, size_t size)
{
    /* calloc(0, x) may return NULL; a zero-sized request is not a failure. */
    return calloc(n ? n : 1, size ? size : 1);
}

void mt_flush_denormals(int on)
{
#if defined(__x86_64__) || defined(__i386__)
    /* Bit 15 is flush-to-zero, bit 6 is denormals-are-zero. */
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | 0x8040u) : (csr & ~0x8040u));
#else
    (void)on;
#endif
}

static const char *const isa_names[] = {"baseline", "avx2", "avx512", NULL};
int mt__isa;
static char isa_note[160];

mt_isa mt_isa_best(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return MT_ISA_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return MT_ISA_AVX2;
#endif
    return MT_ISA_BASELINE;
}

mt_isa mt_isa_current(void) { return (mt_isa)mt__isa; }

mt_isa mt_isa_set(mt_isa want)
{
    mt_isa best = mt_isa_best();
    mt__isa = want <= best ? want : best;
    return (mt_isa)mt__isa;
}

const char *mt_isa_name(mt_isa isa)
{
    return isa >= MT_ISA_BASELINE && isa <= MT_ISA_AVX512 ? isa_names[isa]
                                                          : "?";
}

int mt_isa_from_name(const char *name)
{
    return mt_name_index(isa_names, name);
}

const char *mt_isa_note(void) { return isa_note; }

/* Before main, and before any loop runs: the best path, or the one
 * MPITRAIN_ISA names (tests run every path a machine has this way). */
__attribute__((constructor)) static void isa_init(void)
{
    const char *want = getenv("MPITRAIN_ISA");
    mt__isa = mt_isa_best();
    if (!want || !*want)
        return;
    int w = mt_isa_from_name(want);
    if (w < 0) {
        snprintf(isa_note, sizeof isa_note,
                 "MPITRAIN_ISA=%s is not baseline, avx2 or avx512: using %s",
                 want, mt_isa_name((mt_isa)mt__isa));
        return;
    }
    if (mt_isa_set((mt_isa)w) != (mt_isa)w)
        snprintf(isa_note, sizeof isa_note,
                 "MPITRAIN_ISA=%s: this CPU lacks it, using %s", want,
                 mt_isa_name((mt_isa)mt__isa));
}

MT_VECTOR(, mt__bf16_pack,
          (uint16_t *restrict dst, const float *restrict src, size_t n),
          (dst, src, n))
{
    for (size_t i = 0; i < n; i++)
        dst[i] = mt__bf16_round(src[i]);
}
