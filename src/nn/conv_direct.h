/* Private to conv2d_direct.c and conv2d_direct_bf16.c: the blocked
 * layout's sizes and the kernels' arguments (conv2d_direct.c's top
 * comment has the layout). */
#ifndef MPITRAIN_NN_CONV_DIRECT_H
#define MPITRAIN_NN_CONV_DIRECT_H

#include <stddef.h>
#include <stdint.h>

#define LANES 16 /* samples a vector */
#define MAX_K 7  /* the largest window */

/* The register tiles corr may use, X(filters, columns), in the order
 * of their index: the fp32 and bf16 kernels are instantiated from this
 * one list, so a tile added here exists in both. */
#define MT__DIRECT_TILES(X) X(8, 3) X(6, 4) X(4, 6) X(4, 5) X(6, 3) X(4, 4)

typedef struct corr_args {
    const float *in;  /* blocks of (ci, in_rows, irs, 16) */
    size_t ci, in_rows, irs, in_block;
    size_t r_lo, r_hi; /* input rows that may be non-zero */
    const float *w;    /* (co, ci, K, K) */
    const float *bias; /* (co) or NULL */
    float *out;        /* blocks of (co, oh, ow, 16) */
    size_t co, oh, ow, out_block;
    size_t K, blocks;
} corr_args;

/* The window rows kh in [*lo, *hi) of output row oy whose input rows
 * oy + kh may be non-zero (the others are padding). */
static inline void mt__direct_rows(const corr_args *a, size_t oy,
                                   size_t *lo, size_t *hi)
{
    *lo = a->r_lo > oy ? a->r_lo - oy : 0;
    *hi = a->r_hi <= oy ? 0 : a->r_hi - oy < a->K ? a->r_hi - oy : a->K;
}

typedef struct dw_args {
    const float *xt, *dyp; /* blocks as at the top of the file */
    size_t x_block, x_plane, xrs, d_block, d_plane, drs, Q;
    size_t C, K, OH, OW, blocks;
    float *dw; /* (Fd, C, K, K) */
} dw_args;

/* src (B, ch, h, w) NCHW into dst's blocks (block floats apart, planes
 * of `plane` floats, rows of rs columns), pixel (i, j) at row i + at,
 * column j + at; lanes past B get zeros (conv2d_blocks.c). */
void mt__direct_to_blocks(const float *src, size_t B, size_t ch, size_t h,
                          size_t w, float *dst, size_t block, size_t plane,
                          size_t rs, size_t at);
/* The inverse: blocks (image at row and column 0) into dst (B, ch, h,
 * w). */
void mt__direct_from_blocks(const float *src, size_t block, size_t plane,
                            size_t rs, size_t B, size_t ch, size_t h,
                            size_t w, float *dst);
/* Whether this CPU has AVX512_BF16 (vdpbf16ps). */
int mt__direct_has_bf16(void);
/* n vectors of 16 floats (src, a blocked buffer) into bf16 pairs: dst's
 * vector v holds, per sample, src's vectors v and v + 1 (zero for the
 * last), so a dot product of two bf16 pairs sums two neighbouring
 * columns' products. dst has n vectors of 32 bf16. */
void mt__direct_pairs(const float *src, uint16_t *dst, size_t n);
/* The weights w (F, C, K, K) as bf16 pairs along kw, the last of an odd
 * K paired with zero: wp (F, C, K, (K + 1) / 2), or with flip the input
 * gradient's, the kernel flipped and F and C swapped: wp (C, F, K,
 * (K + 1) / 2). Rows past F (or C) are left as they are (zero). */
void mt__direct_weight_pairs(const float *w, size_t F, size_t C, size_t K,
                             int flip, uint32_t *wp);
/* corr over bf16 pairs: a->in is not read; in16 holds the pairs of a's
 * input, wp the weights' pairs; tile: an index into MT__DIRECT_TILES. */
void mt__direct_corr_bf16(const corr_args *a, const uint16_t *in16,
                          const uint32_t *wp, int tile);
/* The weight gradient from the pairs of xt and dyp (a->xt and a->dyp
 * are not read), two columns of dy a product. */
void mt__direct_dw_bf16(const dw_args *a, const uint16_t *x16,
                        const uint16_t *dy16, size_t Fd);

#endif
