/* 2-D convolution lowered to one sgemm per batch through im2col (as Caffe
 * and Darknet do, but over the whole batch so that OpenBLAS gets one large
 * product instead of B small ones).
 *
 * C, H, W = input channels and size; F = filters; K = window; S = stride;
 * P = zero padding; OH, OW = output size; B = batch; L = B OH OW.
 *
 *   col (C K K, L)   column n OHW + o holds the input window of output
 *                    pixel o of sample n (zeros where it overhangs)
 *   yt  (F, L)     = W (F, C K K) col          forward
 *   y   (B, F, OHW)  yt re-ordered to NCHW, plus the bias
 *   dyt (F, L)       dy re-ordered
 *   dW += dyt col^T,  db += row sums of dyt,  dcol = W^T dyt, col2im -> dx
 *
 * Scratch: col and dcol (C K K, max L) and yt/dyt (F, max L); col is kept
 * from forward for backward.
 *
 * This is the reference; conv2d_onednn.c computes the same with oneDNN,
 * or conv2d_direct.c, chosen by the layer's backend at setup. */
#include <cblas.h>
#include <string.h>

#include "mpitrain/core.h"
#include "core/simd.h"
#include "nn/internal.h"

typedef struct geom {
    size_t C, H, W, F, K, S, P, OH, OW;
} geom;

static geom geom_of(const mt_layer *l)
{
    return (geom){l->in.c, l->in.h, l->in.w, l->spec.filters, l->spec.size,
                  l->spec.stride, l->spec.pad, l->out.h, l->out.w};
}

typedef struct bufs {
    float *col, *dcol, *yt; /* see the top of the file */
    float *xp;              /* one padded sample, borders zero */
} bufs;

static size_t padded_size(const geom *g)
{
    return g->P ? g->C * (g->H + 2 * g->P) * (g->W + 2 * g->P) : 0;
}

static bufs bufs_of(const mt_layer *l)
{
    geom g = geom_of(l);
    size_t L = l->max_batch * g.OH * g.OW, ckk = g.C * g.K * g.K;
    float *base = l->scratch;
    return (bufs){base, base + ckk * L, base + 2 * ckk * L,
                  base + (2 * ckk + g.F) * L};
}

/* Whether auto takes the direct backend for a layer it fits: below 16
 * input channels, where oneDNN's blocked kernels waste lanes (one Zen 4
 * core, batch 64: its forward level with direct's, its input gradient
 * 1.7-10x slower, its weight gradient up to 2.3x); from 16 on oneDNN's
 * weight gradient is 10-20% faster (bench/README.md). */
static int auto_direct(const mt_layer *l) { return l->in.c < 16; }

/* Points l->ops at the backend the spec asks for and this build and CPU
 * have, or says why it cannot. */
static int conv_backend(mt_layer *l, char *err)
{
    char why[96];
    int fits = mt__conv_direct_fits(l, why, sizeof why);
    if (l->spec.backend == MT_CONV_DIRECT && !fits) {
        mt_seterr(err, "%s: backend = direct %s", l->name, why);
        return MT_EINVAL;
    }
    if (l->spec.backend == MT_CONV_DIRECT ||
        (l->spec.backend == MT_CONV_AUTO && fits && auto_direct(l))) {
        l->ops = &mt__conv2d_direct_ops;
        return MT_OK;
    }
    return mt__conv_onednn_backend(l, err);
}

static int conv_setup(mt_layer *l, char *err)
{
    const mt_layer_spec *s = &l->spec;
    if (s->filters == 0 || s->size == 0 || s->stride == 0) {
        mt_seterr(err, "%s: filters, size and stride must be > 0", l->name);
        return MT_EINVAL;
    }
    size_t oh = mt__window_out(l->in.h, s->size, s->stride, s->pad);
    size_t ow = mt__window_out(l->in.w, s->size, s->stride, s->pad);
    if (oh == 0 || ow == 0) {
        mt_seterr(err,
                  "%s: window %zu (pad %zu) does not fit input %zux%zux%zu",
                  l->name, s->size, s->pad, l->in.c, l->in.h, l->in.w);
        return MT_EINVAL;
    }
    l->out = (mt_shape){s->filters, oh, ow};
    mt__tensor_def(&l->param[0], "weight", 4, s->filters, l->in.c, s->size,
                   s->size);
    mt__tensor_def(&l->param[1], "bias", 1, s->filters, 0, 0, 0);
    l->n_param = 2;
    return conv_backend(l, err);
}

static int conv_alloc(mt_layer *l, char *err)
{
    geom g = geom_of(l);
    size_t L = l->max_batch * g.OH * g.OW;
    /* The scratch comes zeroed: xp's borders stay zero for good. */
    return mt__layer_scratch(
        l, ((2 * g.C * g.K * g.K + g.F) * L + padded_size(&g)) * sizeof(float),
        err);
}

void mt__conv_init(mt_layer *l, uint64_t seed)
{
    geom g = geom_of(l);
    mt__init_weights(&l->param[0], g.C * g.K * g.K, g.F * g.K * g.K,
                     l->spec.init, seed, l->index);
    memset(l->param[1].data, 0, g.F * sizeof(float));
}

/* Output columns ow whose input column ow S + kw - P lies inside [0, W):
 * [*lo, *hi). Everything outside is zero padding. */
static void valid_range(const geom *g, size_t kw, size_t *lo, size_t *hi)
{
    ptrdiff_t off = (ptrdiff_t)kw - (ptrdiff_t)g->P, S = (ptrdiff_t)g->S;
    ptrdiff_t a = off >= 0 ? 0 : (-off + S - 1) / S;
    ptrdiff_t b = ((ptrdiff_t)g->W - 1 - off) < 0
                      ? 0
                      : ((ptrdiff_t)g->W - 1 - off) / S + 1;
    if (b > (ptrdiff_t)g->OW)
        b = (ptrdiff_t)g->OW;
    *lo = (size_t)a;
    *hi = b > a ? (size_t)b : (size_t)a;
}

/* One sample's windows into col, whose rows are ld floats apart. With
 * padding the sample is first copied into a zeroed, padded image xp
 * (C, H + 2P, W + 2P), so that every row of col is one branch-free copy
 * (conv1 of LeNet-5 spent its time on the edges before). */
MT_VECTOR(static, im2col,
          (const geom *g, const float *x, float *xp, float *col, size_t ld),
          (g, x, xp, col, ld))
{
    size_t Hp = g->H + 2 * g->P, Wp = g->W + 2 * g->P;
    if (g->P) {
        for (size_t c = 0; c < g->C; c++)
            for (size_t h = 0; h < g->H; h++) {
                float *dst = xp + (c * Hp + h + g->P) * Wp + g->P;
                const float *src = x + (c * g->H + h) * g->W;
                for (size_t w = 0; w < g->W; w++)
                    dst[w] = src[w];
            }
        x = xp;
    }
    for (size_t c = 0; c < g->C; c++)
        for (size_t kh = 0; kh < g->K; kh++)
            for (size_t kw = 0; kw < g->K; kw++) {
                float *row = col + ((c * g->K + kh) * g->K + kw) * ld;
                for (size_t oh = 0; oh < g->OH; oh++) {
                    const float *in = x + (c * Hp + oh * g->S + kh) * Wp + kw;
                    float *out = row + oh * g->OW;
                    if (g->S == 1)
                        for (size_t ow = 0; ow < g->OW; ow++)
                            out[ow] = in[ow];
                    else
                        for (size_t ow = 0; ow < g->OW; ow++)
                            out[ow] = in[ow * g->S];
                }
            }
}

/* The adjoint of im2col: adds every column entry back to its pixel. */
MT_VECTOR(static, col2im,
          (const geom *g, const float *col, size_t ld, float *dx),
          (g, col, ld, dx))
{
    memset(dx, 0, g->C * g->H * g->W * sizeof(float));
    for (size_t c = 0; c < g->C; c++)
        for (size_t kh = 0; kh < g->K; kh++)
            for (size_t kw = 0; kw < g->K; kw++) {
                const float *row = col + ((c * g->K + kh) * g->K + kw) * ld;
                size_t lo, hi;
                valid_range(g, kw, &lo, &hi);
                for (size_t oh = 0; oh < g->OH; oh++) {
                    ptrdiff_t ih = (ptrdiff_t)(oh * g->S + kh) -
                                   (ptrdiff_t)g->P;
                    if (ih < 0 || ih >= (ptrdiff_t)g->H || lo == hi)
                        continue;
                    float *out = dx + (c * g->H + (size_t)ih) * g->W +
                                 lo * g->S + kw - g->P;
                    const float *in = row + oh * g->OW + lo;
                    /* Stride 1 (the common case) adds contiguous runs,
                     * which vectorize. */
                    if (g->S == 1)
                        for (size_t i = 0; i < hi - lo; i++)
                            out[i] += in[i];
                    else
                        for (size_t i = 0; i < hi - lo; i++)
                            out[i * g->S] += in[i];
                }
            }
}

MT_VECTOR(static, conv_forward,
          (mt_layer *l, const mt_step_ctx *ctx, const float *x, float *y,
           size_t B),
          (l, ctx, x, y, B))
{
    geom g = geom_of(l);
    bufs s = bufs_of(l);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW, L = B * ohw;
    for (size_t n = 0; n < B; n++)
        im2col(&g, x + n * g.C * g.H * g.W, s.xp, s.col + n * ohw, L);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.F, (int)L,
                (int)ckk, 1.0f, l->param[0].data, (int)ckk, s.col, (int)L,
                0.0f, s.yt, (int)L);
    const float *b = l->param[1].data;
    for (size_t n = 0; n < B; n++)
        for (size_t f = 0; f < g.F; f++) {
            const float *src = s.yt + f * L + n * ohw;
            float *dst = y + (n * g.F + f) * ohw, bf = b[f];
            for (size_t i = 0; i < ohw; i++)
                dst[i] = src[i] + bf;
        }
}

/* dyt (F, L) = dy re-ordered; db (if not NULL) += its row sums. */
static inline void reorder_dy(const geom *g, const float *dy, float *dyt,
                              size_t B, float *db)
{
    size_t ohw = g->OH * g->OW, L = B * ohw;
    for (size_t f = 0; f < g->F; f++) {
        float sum = 0.0f;
        for (size_t n = 0; n < B; n++) {
            const float *src = dy + (n * g->F + f) * ohw;
            float *dst = dyt + f * L + n * ohw;
            for (size_t i = 0; i < ohw; i++) {
                dst[i] = src[i];
                sum += src[i];
            }
        }
        if (db)
            db[f] += sum;
    }
}

/* dW (F, CKK) += dyt (F, L) col^T (L, CKK) */
static inline void weight_grad(mt_layer *l, const geom *g, const bufs *s,
                               size_t L)
{
    size_t ckk = g->C * g->K * g->K;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->F, (int)ckk,
                (int)L, 1.0f, s->yt, (int)L, s->col, (int)L, 1.0f,
                l->param[0].grad, (int)ckk);
}

/* dcol (CKK, L) = W^T (CKK, F) dyt (F, L), then col2im into dx. */
static inline void input_grad(const mt_layer *l, const geom *g,
                              const bufs *s, float *dx, size_t B)
{
    size_t ckk = g->C * g->K * g->K, L = B * g->OH * g->OW;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk, (int)L,
                (int)g->F, 1.0f, l->param[0].data, (int)ckk, s->yt, (int)L,
                0.0f, s->dcol, (int)L);
    for (size_t n = 0; n < B; n++)
        col2im(g, s->dcol + n * g->OH * g->OW, L, dx + n * g->C * g->H * g->W);
}

/* Both gradients; col is forward's. */
MT_VECTOR(static, conv_backward,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    geom g = geom_of(l);
    bufs s = bufs_of(l);
    reorder_dy(&g, dy, s.yt, B, l->param[1].grad);
    weight_grad(l, &g, &s, B * g.OH * g.OW);
    if (dx)
        input_grad(l, &g, &s, dx, B);
}

/* The input gradient alone (a pipeline's B; needs no col). */
MT_VECTOR(static, conv_backward_input,
          (mt_layer *l, const float *x, const float *y, const float *dy,
           float *dx, size_t B),
          (l, x, y, dy, dx, B))
{
    if (!dx)
        return;
    geom g = geom_of(l);
    bufs s = bufs_of(l);
    reorder_dy(&g, dy, s.yt, B, NULL);
    input_grad(l, &g, &s, dx, B);
}

/* The parameter gradients alone, later (a pipeline's W), from copies of
 * x and dy: col is made again from x, since forwards since may have
 * overwritten it. */
MT_VECTOR(static, conv_backward_weight,
          (mt_layer *l, const float *x, const float *dy, size_t B),
          (l, x, dy, B))
{
    geom g = geom_of(l);
    bufs s = bufs_of(l);
    size_t ohw = g.OH * g.OW, L = B * ohw;
    for (size_t n = 0; n < B; n++)
        im2col(&g, x + n * g.C * g.H * g.W, s.xp, s.col + n * ohw, L);
    reorder_dy(&g, dy, s.yt, B, l->param[1].grad);
    weight_grad(l, &g, &s, L);
}

static const char *conv_describe(const mt_layer *l)
{
    (void)l;
    return "im2col + OpenBLAS";
}

const mt_layer_ops mt__conv2d_ops = {
    .kind_name = "conv",
    .setup = conv_setup,
    .alloc = conv_alloc,
    .init_params = mt__conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .backward_input = conv_backward_input,
    .backward_weight = conv_backward_weight,
    .describe = conv_describe,
};
