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
