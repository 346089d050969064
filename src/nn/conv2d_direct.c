/* 2-D convolution computed directly with AVX-512, 16 samples at a time
 * (conv's backend "direct"; stride 1 and windows up to 7, for the small
 * channel counts where im2col + sgemm and oneDNN waste the vector lanes:
 * one input channel, 6 filters, as LeNet-5's conv1).
 *
 * C, H, W = input channels and size; F = filters; K = window; P = zero
 * padding; OH, OW = output size; B = batch, in blocks of 16 samples.
 *
 * Each tensor is re-ordered into blocks: (B / 16, channels, rows, cols,
 * 16), one sample a vector lane, so that every vector is full whatever
 * the image width and every weight is one broadcast:
 *
 *   xt  (C, H + 2P, OWp + K)      x with its padding (zero borders)
 *   y   = bias + corr(xt, w)      forward, OW padded to OWp
 *   dyp (F, OH + 2Q, Wp + K)      dy with Q = K - 1 - P of zeros around
 *   dx  = corr(dyp, w flipped, channels swapped)       input gradient
 *   dW += sum over samples and pixels of dy * (the xt window)
 *
 * corr runs register tiles of FO filters x XO output columns (up to 24
 * accumulators); rows known to be padding are skipped. Filters and
 * columns are padded to whole tiles with zeros, so no tile is partial.
 * Lanes of samples past B are zero, so they add nothing to dW. Rows
 * have a spare zero column, which bf16 pairs a row's last one with.
 * conv2d_blocks.c re-orders; with [train] precision = bf16 the products
 * run in conv2d_direct_bf16.c, on bf16 pairs of xt and dyp.
 *
 * The sums run in another order than im2col's: results equal the
 * reference within float rounding (tests/test_conv_direct.c), and alike
 * on every machine with AVX-512 (fused multiply-adds throughout). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"
#include "nn/conv_direct.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f"), always_inline)) inline

/* The register tiles corr may use, (filters, columns); dgeom picks the
 * one that pads least. */
#define TILE(FO, XO) {FO, XO},
static const int tiles[][2] = {MT__DIRECT_TILES(TILE)};
#undef TILE
#define N_TILES (sizeof tiles / sizeof tiles[0])

typedef struct dgeom {
    size_t C, H, W, F, K, P, OH, OW, Q;
    int ft, bt;      /* tiles of the forward and the input gradient */
    size_t Fp, OWp;  /* forward: filters and columns padded to the tile */
    size_t Cp, Wp;   /* input gradient: channels and columns padded */
    size_t Fd;       /* filters padded to the weight gradient's block */
    size_t xrs, drs; /* columns of a row of xt and of dyp */
    size_t xt, out, dyp; /* floats of each buffer per block of samples */
    size_t wp, wf, dw;   /* floats of the weight buffers */
    size_t KP, wpf, wpb; /* bf16: kw pairs; pairs of wp and of wf */
} dgeom;

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* The weight gradient's block of filters for window K (accumulators
 * FO x K, up to 24, plus K inputs and a gradient). */
static size_t dw_filters(size_t K) { return K >= 3 ? 24 / K : 8; }

static int best_tile(size_t rows, size_t cols)
{
    int best = 0;
    size_t least = SIZE_MAX;
    for (size_t i = 0; i < N_TILES; i++) {
        size_t work = round_up(rows, (size_t)tiles[i][0]) *
                      round_up(cols, (size_t)tiles[i][1]);
        if (work < least) {
            least = work;
            best = (int)i;
        }
    }
    return best;
}

static dgeom dgeom_of(const mt_layer *l)
{
    dgeom g = {0};
    g.C = l->in.c, g.H = l->in.h, g.W = l->in.w;
    g.F = l->spec.filters, g.K = l->spec.size, g.P = l->spec.pad;
    g.OH = l->out.h, g.OW = l->out.w;
    g.Q = g.K - 1 - g.P;
    g.ft = best_tile(g.F, g.OW);
    g.bt = best_tile(g.C, g.W);
    g.Fp = round_up(g.F, (size_t)tiles[g.ft][0]);
    g.OWp = round_up(g.OW, (size_t)tiles[g.ft][1]);
    g.Cp = round_up(g.C, (size_t)tiles[g.bt][0]);
    g.Wp = round_up(g.W, (size_t)tiles[g.bt][1]);
    g.Fd = round_up(g.F, dw_filters(g.K));
    /* a spare zero column: bf16 pairs a row's last with it */
    g.xrs = g.OWp + g.K;
    g.drs = g.Wp + g.K;
    g.xt = g.C * (g.H + 2 * g.P) * g.xrs * LANES;
    size_t yt = g.Fp * g.OH * g.OWp, dxt = g.Cp * g.H * g.Wp;
    g.out = (yt > dxt ? yt : dxt) * LANES;
    g.dyp = g.Fd * (g.OH + 2 * g.Q) * g.drs * LANES;
    g.wp = g.Fp * g.C * g.K * g.K + g.Fp; /* and the bias */
    g.wf = g.Cp * g.F * g.K * g.K;
    g.dw = g.Fd * g.C * g.K * g.K;
    g.KP = (g.K + 1) / 2;
    g.wpf = l->spec.bf16 ? g.Fp * g.C * g.K * g.KP : 0;
    g.wpb = l->spec.bf16 ? g.Cp * g.F * g.K * g.KP : 0;
    return g;
}

typedef struct dbufs {
    float *xt, *out, *dyp; /* (blocks, ...) as at the top */
    float *wp;  /* (Fp, C, K, K) the weights, zero filters past F, then
                   the bias (Fp) */
    float *wf;  /* (Cp, F, K, K) flipped, channels swapped */
    float *dw;  /* (Fd, C, K, K) one call's weight gradient */
    /* bf16 only: xt and dyp as pairs of columns (conv_direct.h), and the
     * weights as pairs along kw, forward's and the input gradient's */
    uint16_t *x16, *dy16;
    uint32_t *wpf, *wpb;
} dbufs;

static size_t blocks_of(size_t B) { return (B + LANES - 1) / LANES; }

static dbufs dbufs_of(const mt_layer *l, const dgeom *g)
{
    size_t NB = blocks_of(l->max_batch);
    /* 64-byte aligned: the scratch has a vector to spare */
    float *p = (float *)(((uintptr_t)l->scratch + 63) & ~(uintptr_t)63);
    dbufs s;
    s.xt = p;
    s.out = s.xt + NB * g->xt;
    s.dyp = s.out + NB * g->out;
    s.wp = s.dyp + NB * g->dyp;
    s.wf = s.wp + round_up(g->wp, LANES);
    s.dw = s.wf + round_up(g->wf, LANES);
    float *q = s.dw + round_up(g->dw, LANES);
    int bf16 = l->spec.bf16;
    s.x16 = bf16 ? (uint16_t *)q : NULL;
    s.dy16 = bf16 ? (uint16_t *)(q + NB * g->xt) : NULL;
    s.wpf = bf16 ? (uint32_t *)(q + NB * (g->xt + g->dyp)) : NULL;
    s.wpb = bf16 ? s.wpf + round_up(g->wpf, LANES) : NULL;
    return s;
}

static size_t scratch_floats(const mt_layer *l, const dgeom *g)
{
    size_t bf16 = l->spec.bf16 ? blocks_of(l->max_batch) * (g->xt + g->dyp) +
                                     round_up(g->wpf, LANES) + g->wpb
                               : 0;
    return blocks_of(l->max_batch) * (g->xt + g->out + g->dyp) +
           round_up(g->wp, LANES) + round_up(g->wf, LANES) +
           round_up(g->dw, LANES) + bf16 + LANES;
}

/* Floats of one channel's plane of xt and of dyp. */
static size_t x_plane(const dgeom *g)
{
    return (g->H + 2 * g->P) * g->xrs * LANES;
}

static size_t d_plane(const dgeom *g)
{
    return (g->OH + 2 * g->Q) * g->drs * LANES;
}

/* ---- the correlation: out = bias + sum over c, kh, kw ---- */

/* One tile: FO output channels x XO columns of output row oy. */
static AVX512 void corr_tile(const corr_args *a, const float *in,
                             const float *w, const float *bias, float *out,
                             size_t kh_lo, size_t kh_hi, const int FO,
                             const int XO)
{
    size_t K = a->K, wfs = a->ci * K * K, plane = a->in_rows * a->irs;
    __m512 acc[8][6];
    for (int f = 0; f < FO; f++)
        for (int x = 0; x < XO; x++)
            acc[f][x] = bias ? _mm512_set1_ps(bias[f]) : _mm512_setzero_ps();
    for (size_t c = 0; c < a->ci; c++)
        for (size_t kh = kh_lo; kh < kh_hi; kh++) {
            const float *row = in + (c * plane + kh * a->irs) * LANES;
            const float *wr = w + (c * K + kh) * K;
            for (size_t kw = 0; kw < K; kw++) {
                __m512 wb[8];
                for (int f = 0; f < FO; f++)
                    wb[f] = _mm512_set1_ps(wr[(size_t)f * wfs + kw]);
                for (int x = 0; x < XO; x++) {
                    __m512 v = _mm512_load_ps(row + (kw + (size_t)x) * LANES);
                    for (int f = 0; f < FO; f++)
                        acc[f][x] = _mm512_fmadd_ps(wb[f], v, acc[f][x]);
                }
            }
        }
    size_t ocs = a->oh * a->ow * LANES;
    for (int f = 0; f < FO; f++)
        for (int x = 0; x < XO; x++)
            _mm512_store_ps(out + f * ocs + (size_t)x * LANES, acc[f][x]);
}

static AVX512 void corr_all(const corr_args *a, const int FO, const int XO)
{
    for (size_t nb = 0; nb < a->blocks; nb++)
        for (size_t f0 = 0; f0 < a->co; f0 += (size_t)FO)
            for (size_t oy = 0; oy < a->oh; oy++) {
                size_t kh_lo, kh_hi;
                mt__direct_rows(a, oy, &kh_lo, &kh_hi);
                const float *in = a->in + nb * a->in_block +
                                  oy * a->irs * LANES;
                float *out = a->out + nb * a->out_block +
                             ((f0 * a->oh + oy) * a->ow) * LANES;
                const float *w = a->w + f0 * a->ci * a->K * a->K;
                const float *bias = a->bias ? a->bias + f0 : NULL;
                for (size_t ox = 0; ox < a->ow; ox += (size_t)XO)
                    corr_tile(a, in + ox * LANES, w, bias, out + ox * LANES,
                              kh_lo, kh_hi, FO, XO);
            }
}

#define CORR(FO, XO)                                                         \
    __attribute__((target("avx512f"))) static void corr_##FO##_##XO(      \
        const corr_args *a)                                                \
    {                                                                      \
        corr_all(a, FO, XO);                                               \
    }
MT__DIRECT_TILES(CORR)
#undef CORR

static void corr(const corr_args *a, int tile)
{
#define ENTRY(FO, XO) corr_##FO##_##XO,
    static void (*const run[N_TILES])(const corr_args *) = {
        MT__DIRECT_TILES(ENTRY)};
#undef ENTRY
    run[tile](a);
}

/* ---- the weight gradient ---- */

/* dw[f0 .. f0 + FO)[c][kh][0 .. K) = sums over the blocks and pixels. */
static AVX512 void dw_tile(const dw_args *a, size_t f0, size_t c, size_t kh,
                           const int FO, const int K)
{
    __m512 acc[8][MAX_K];
    for (int f = 0; f < FO; f++)
        for (int k = 0; k < K; k++)
            acc[f][k] = _mm512_setzero_ps();
    for (size_t nb = 0; nb < a->blocks; nb++) {
        const float *x = a->xt + nb * a->x_block + c * a->x_plane;
        const float *d = a->dyp + nb * a->d_block + f0 * a->d_plane;
        for (size_t oy = 0; oy < a->OH; oy++) {
            const float *xr = x + (oy + kh) * a->xrs * LANES;
            const float *dr = d + ((oy + a->Q) * a->drs + a->Q) * LANES;
            for (size_t ox = 0; ox < a->OW; ox++) {
                __m512 xv[MAX_K];
                for (int k = 0; k < K; k++)
                    xv[k] = _mm512_load_ps(xr + (ox + (size_t)k) * LANES);
                for (int f = 0; f < FO; f++) {
                    __m512 g = _mm512_load_ps(dr + f * a->d_plane +
                                              ox * LANES);
                    for (int k = 0; k < K; k++)
                        acc[f][k] = _mm512_fmadd_ps(g, xv[k], acc[f][k]);
                }
            }
        }
    }
    for (int f = 0; f < FO; f++)
        for (int k = 0; k < K; k++)
            a->dw[(((f0 + (size_t)f) * a->C + c) * (size_t)K + kh) * K + k] =
                _mm512_reduce_add_ps(acc[f][k]);
}

static AVX512 void dw_all(const dw_args *a, size_t Fd, const int FO,
                          const int K)
{
    for (size_t c = 0; c < a->C; c++)
        for (size_t kh = 0; kh < (size_t)K; kh++)
            for (size_t f0 = 0; f0 < Fd; f0 += (size_t)FO)
                dw_tile(a, f0, c, kh, FO, K);
}

#define DW(K)                                                                \
    __attribute__((target("avx512f"))) static void dw_##K(const dw_args *a, \
                                                          size_t Fd)        \
    {                                                                       \
        dw_all(a, Fd, K >= 3 ? 24 / K : 8, K);                              \
    }
DW(1)
DW(2)
DW(3)
DW(4)
DW(5)
DW(6)
DW(7)

static void weight_grad(const dw_args *a, size_t Fd)
{
    static void (*const run[MAX_K + 1])(const dw_args *, size_t) = {
        NULL, dw_1, dw_2, dw_3, dw_4, dw_5, dw_6, dw_7};
    run[a->K](a, Fd);
}

/* db[f] += the sum of dy's channel f, from its blocks. */
__attribute__((target("avx512f"))) static void
bias_grad(const dgeom *g, const float *dyp, size_t blocks, float *db)
{
    size_t plane = d_plane(g);
    for (size_t f = 0; f < g->F; f++) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t nb = 0; nb < blocks; nb++) {
            const float *d = dyp + nb * g->dyp + f * plane;
            for (size_t oy = 0; oy < g->OH; oy++)
                for (size_t ox = 0; ox < g->OW; ox++)
                    acc = _mm512_add_ps(
                        acc, _mm512_load_ps(d + ((oy + g->Q) * g->drs +
                                                 g->Q + ox) * LANES));
        }
        db[f] += _mm512_reduce_add_ps(acc);
    }
}

/* ---- the layer ---- */

static int direct_alloc(mt_layer *l, char *err)
{
    dgeom g = dgeom_of(l);
    /* zeroed: the borders of xt and dyp and the padding filters and
     * channels of wp and wf stay zero for good */
    return mt__layer_scratch(l, scratch_floats(l, &g) * sizeof(float), err);
}

static void x_to_blocks(const dgeom *g, const dbufs *s, const float *x,
                        size_t B)
{
    mt__direct_to_blocks(x, B, g->C, g->H, g->W, s->xt, g->xt, x_plane(g),
                         g->xrs, g->P);
    if (s->x16)
        mt__direct_pairs(s->xt, s->x16, blocks_of(B) * g->xt / LANES);
}

static void dy_to_blocks(const dgeom *g, const dbufs *s, const float *dy,
                         size_t B)
{
    mt__direct_to_blocks(dy, B, g->F, g->OH, g->OW, s->dyp, g->dyp,
                         d_plane(g), g->drs, g->Q);
    if (s->dy16)
        mt__direct_pairs(s->dyp, s->dy16, blocks_of(B) * g->dyp / LANES);
}

static void direct_forward(mt_layer *l, const mt_step_ctx *ctx,
                           const float *x, float *y, size_t B)
{
    (void)ctx;
    dgeom g = dgeom_of(l);
    dbufs s = dbufs_of(l, &g);
    size_t nw = g.F * g.C * g.K * g.K, bias_at = g.Fp * g.C * g.K * g.K;
    memcpy(s.wp, l->param[0].data, nw * sizeof(float));
    memcpy(s.wp + bias_at, l->param[1].data, g.F * sizeof(float));
    x_to_blocks(&g, &s, x, B);
    size_t out_block = g.Fp * g.OH * g.OWp * LANES;
    corr_args a = {s.xt, g.C, g.H + 2 * g.P, g.xrs, g.xt, g.P, g.P + g.H,
                   s.wp, s.wp + bias_at, s.out, g.Fp, g.OH, g.OWp,
                   out_block, g.K, blocks_of(B)};
    if (l->spec.bf16) {
        mt__direct_weight_pairs(l->param[0].data, g.F, g.C, g.K, 0, s.wpf);
        mt__direct_corr_bf16(&a, s.x16, s.wpf, g.ft);
    } else {
        corr(&a, g.ft);
    }
    mt__direct_from_blocks(s.out, out_block, g.OH * g.OWp * LANES, g.OWp, B,
                           g.F, g.OH, g.OW, y);
}

/* dW and db from xt and dyp as they are. */
static void grads_of_weights(mt_layer *l, const dgeom *g, const dbufs *s,
                             size_t B)
{
    size_t blocks = blocks_of(B);
    bias_grad(g, s->dyp, blocks, l->param[1].grad);
    dw_args a = {s->xt, s->dyp, g->xt, x_plane(g), g->xrs, g->dyp,
                 d_plane(g), g->drs, g->Q, g->C, g->K, g->OH, g->OW,
                 blocks, s->dw};
    if (l->spec.bf16)
        mt__direct_dw_bf16(&a, s->x16, s->dy16, g->Fd);
    else
        weight_grad(&a, g->Fd);
    float *dw = l->param[0].grad;
    for (size_t i = 0; i < g->F * g->C * g->K * g->K; i++)
        dw[i] += s->dw[i];
}

/* dx from dyp as it is: the correlation with the flipped weights. */
static void grad_of_input(const mt_layer *l, const dgeom *g, const dbufs *s,
                          float *dx, size_t B)
{
    size_t K = g->K, KK = K * K;
    const float *w = l->param[0].data;
    size_t out_block = g->Cp * g->H * g->Wp * LANES;
    corr_args a = {s->dyp, g->F, g->OH + 2 * g->Q, g->drs, g->dyp, g->Q,
                   g->Q + g->OH, s->wf, NULL, s->out, g->Cp, g->H, g->Wp,
                   out_block, K, blocks_of(B)};
    if (l->spec.bf16) {
        mt__direct_weight_pairs(w, g->F, g->C, K, 1, s->wpb);
        mt__direct_corr_bf16(&a, s->dy16, s->wpb, g->bt);
    } else {
        for (size_t f = 0; f < g->F; f++)
            for (size_t c = 0; c < g->C; c++)
                for (size_t i = 0; i < KK; i++)
                    s->wf[(c * g->F + f) * KK + i] =
                        w[(f * g->C + c) * KK + KK - 1 - i];
        corr(&a, g->bt);
    }
    mt__direct_from_blocks(s->out, out_block, g->H * g->Wp * LANES, g->Wp, B,
                           g->C, g->H, g->W, dx);
}

/* Both gradients; xt is forward's. */
static void direct_backward(mt_layer *l, const float *x, const float *y,
                            const float *dy, float *dx, size_t B)
{
    (void)x, (void)y;
    dgeom g = dgeom_of(l);
    dbufs s = dbufs_of(l, &g);
    dy_to_blocks(&g, &s, dy, B);
    grads_of_weights(l, &g, &s, B);
    if (dx)
        grad_of_input(l, &g, &s, dx, B);
}

static void direct_backward_input(mt_layer *l, const float *x,
                                  const float *y, const float *dy,
                                  float *dx, size_t B)
{
    (void)x, (void)y;
    if (!dx)
        return;
    dgeom g = dgeom_of(l);
    dbufs s = dbufs_of(l, &g);
    dy_to_blocks(&g, &s, dy, B);
    grad_of_input(l, &g, &s, dx, B);
}

/* Later, from copies of x and dy (a pipeline's W): xt made again. */
static void direct_backward_weight(mt_layer *l, const float *x,
                                   const float *dy, size_t B)
{
    dgeom g = dgeom_of(l);
    dbufs s = dbufs_of(l, &g);
    x_to_blocks(&g, &s, x, B);
    dy_to_blocks(&g, &s, dy, B);
    grads_of_weights(l, &g, &s, B);
}

static const char *direct_describe(const mt_layer *l)
{
    return l->spec.bf16 ? "direct AVX-512 bf16" : "direct AVX-512";
}

const mt_layer_ops mt__conv2d_direct_ops = {
    .kind_name = "conv",
    .alloc = direct_alloc,
    .init_params = mt__conv_init,
    .forward = direct_forward,
    .backward = direct_backward,
    .backward_input = direct_backward_input,
    .backward_weight = direct_backward_weight,
    .describe = direct_describe,
};

int mt__conv_direct_fits(const mt_layer *l, char *why, size_t len)
{
    const char *no = NULL;
    if (mt_isa_current() < MT_ISA_AVX512)
        no = "needs AVX-512 (this CPU, or MPITRAIN_ISA, has less)";
    else if (l->spec.stride != 1)
        no = "needs stride 1";
    else if (l->spec.size > MAX_K)
        no = "needs a window of at most 7";
    else if (l->spec.pad >= l->spec.size)
        no = "needs pad < size";
    else if (l->spec.bf16 && !mt__direct_has_bf16())
        no = "needs AVX512_BF16 for precision = bf16";
    if (no && why)
        snprintf(why, len, "%s", no);
    return no == NULL;
}

#else /* not x86-64 with GCC */

const mt_layer_ops mt__conv2d_direct_ops = {.kind_name = "conv"};

int mt__conv_direct_fits(const mt_layer *l, char *why, size_t len)
{
    (void)l;
    if (why)
        snprintf(why, len, "needs x86-64 with AVX-512");
    return 0;
}

#endif
