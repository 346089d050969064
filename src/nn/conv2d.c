/* 2-D convolution lowered to sgemm through im2col, one sample at a time
 * (as Caffe and Darknet do): col (C K K, OH OW) holds every input window as
 * a column, so y_n (F, OH OW) = W (F, C K K) col + b.
 * C, H, W = input channels and size; F = filters; K = window; S = stride;
 * P = zero padding; OH, OW = output size. */
#include <cblas.h>
#include <string.h>

#include "mpitrain/core.h"
#include "nn/internal.h"

typedef struct geom {
    size_t C, H, W, F, K, S, P, OH, OW;
} geom;

static geom geom_of(const mt_layer *l)
{
    return (geom){l->in.c, l->in.h, l->in.w, l->spec.filters, l->spec.size,
                  l->spec.stride, l->spec.pad, l->out.h, l->out.w};
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
    return MT_OK;
}

static int conv_alloc(mt_layer *l, char *err)
{
    geom g = geom_of(l);
    /* col for every sample of the batch, kept from forward for backward,
     * then one dcol (C K K, OH OW). */
    size_t col = g.C * g.K * g.K * g.OH * g.OW;
    return mt__layer_scratch(l, (l->max_batch + 1) * col * sizeof(float),
                             err);
}

static void conv_init(mt_layer *l, uint64_t seed)
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

static void im2col(const geom *g, const float *x, float *col)
{
    size_t ohw = g->OH * g->OW;
    for (size_t c = 0; c < g->C; c++)
        for (size_t kh = 0; kh < g->K; kh++)
            for (size_t kw = 0; kw < g->K; kw++) {
                float *row = col + ((c * g->K + kh) * g->K + kw) * ohw;
                size_t lo, hi;
                valid_range(g, kw, &lo, &hi);
                for (size_t oh = 0; oh < g->OH; oh++) {
                    /* ih may be "negative": compare in signed arithmetic. */
                    ptrdiff_t ih = (ptrdiff_t)(oh * g->S + kh) -
                                   (ptrdiff_t)g->P;
                    float *out = row + oh * g->OW;
                    if (ih < 0 || ih >= (ptrdiff_t)g->H || lo == hi) {
                        memset(out, 0, g->OW * sizeof(float));
                        continue;
                    }
                    /* Input column of output column lo: never negative. */
                    const float *in = x + (c * g->H + (size_t)ih) * g->W +
                                      lo * g->S + kw - g->P;
                    memset(out, 0, lo * sizeof(float));
                    if (g->S == 1)
                        memcpy(out + lo, in, (hi - lo) * sizeof(float));
                    else
                        for (size_t ow = lo; ow < hi; ow++)
                            out[ow] = in[(ow - lo) * g->S];
                    memset(out + hi, 0, (g->OW - hi) * sizeof(float));
                }
            }
}

/* The adjoint of im2col: adds every column entry back to its pixel. */
static void col2im(const geom *g, const float *col, float *dx)
{
    size_t ohw = g->OH * g->OW;
    memset(dx, 0, g->C * g->H * g->W * sizeof(float));
    for (size_t c = 0; c < g->C; c++)
        for (size_t kh = 0; kh < g->K; kh++)
            for (size_t kw = 0; kw < g->K; kw++) {
                const float *row = col + ((c * g->K + kh) * g->K + kw) * ohw;
                size_t lo, hi;
                valid_range(g, kw, &lo, &hi);
                for (size_t oh = 0; oh < g->OH; oh++) {
                    ptrdiff_t ih = (ptrdiff_t)(oh * g->S + kh) -
                                   (ptrdiff_t)g->P;
                    if (ih < 0 || ih >= (ptrdiff_t)g->H)
                        continue;
                    if (lo == hi)
                        continue;
                    float *out = dx + (c * g->H + (size_t)ih) * g->W +
                                 lo * g->S + kw - g->P;
                    const float *in = row + oh * g->OW;
                    for (size_t ow = lo; ow < hi; ow++)
                        out[(ow - lo) * g->S] += in[ow];
                }
            }
}

static void conv_forward(mt_layer *l, const mt_step_ctx *ctx, const float *x,
                         float *y, size_t B)
{
    geom g = geom_of(l);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW, in_n = g.C * g.H * g.W;
    const float *Wt = l->param[0].data, *b = l->param[1].data;
    for (size_t n = 0; n < B; n++) {
        float *yn = y + n * g.F * ohw, *col = (float *)l->scratch + n * ckk * ohw;
        for (size_t f = 0; f < g.F; f++)
            for (size_t i = 0; i < ohw; i++)
                yn[f * ohw + i] = b[f];
        im2col(&g, x + n * in_n, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.F,
                    (int)ohw, (int)ckk, 1.0f, Wt, (int)ckk, col, (int)ohw,
                    1.0f, yn, (int)ohw);
    }
}

static void conv_backward(mt_layer *l, const float *x, const float *y,
                          const float *dy, float *dx, size_t B)
{
    geom g = geom_of(l);
    size_t ckk = g.C * g.K * g.K, ohw = g.OH * g.OW, in_n = g.C * g.H * g.W;
    float *dcol = (float *)l->scratch + l->max_batch * ckk * ohw;
    float *dW = l->param[0].grad, *db = l->param[1].grad;
    for (size_t n = 0; n < B; n++) {
        const float *dyn = dy + n * g.F * ohw;
        for (size_t f = 0; f < g.F; f++) {
            float s = 0.0f;
            for (size_t i = 0; i < ohw; i++)
                s += dyn[f * ohw + i];
            db[f] += s;
        }
        /* forward left this sample's columns in scratch */
        const float *col = (const float *)l->scratch + n * ckk * ohw;
        /* dW (F, CKK) += dy_n (F, OHW) col^T (OHW, CKK) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g.F,
                    (int)ckk, (int)ohw, 1.0f, dyn, (int)ohw, col, (int)ohw,
                    1.0f, dW, (int)ckk);
        if (!dx)
            continue;
        /* dcol (CKK, OHW) = W^T (CKK, F) dy_n (F, OHW) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ckk,
                    (int)ohw, (int)g.F, 1.0f, l->param[0].data, (int)ckk, dyn,
                    (int)ohw, 0.0f, dcol, (int)ohw);
        col2im(&g, dcol, dx + n * in_n);
    }
}

const mt_layer_ops mt__conv2d_ops = {
    .kind_name = "conv",
    .setup = conv_setup,
    .alloc = conv_alloc,
    .init_params = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
};
