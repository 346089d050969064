/* conv's oneDNN backend: the same convolution as conv2d.c's im2col +
 * sgemm, computed by oneDNN's direct kernels (PyTorch's CPU engine).
 *
 * Those kernels want blocked layouts (channels in groups of the SIMD
 * width: nChw8c on AVX2, nChw16c on AVX-512), which oneDNN picks for us
 * (format "any"); our tensors stay NCHW, so every call reorders its
 * inputs in and its outputs out. That is cheap next to the convolution
 * (included in the figures of bench/README.md), and it leaves nothing
 * between forward and backward: backward reads x, dy and the weights
 * alone, so a pipeline may keep the activations and split the backward.
 *
 * Primitives depend on the batch size, so a layer holds plans for the
 * last few sizes it saw (training batch, a short last batch, evaluation
 * chunks); the blocked buffers are sized once for max_batch and shared by
 * them. oneDNN runs on this thread alone, or with OMP_WAIT_POLICY=passive
 * on as many OpenMP threads as OpenBLAS has ([run] threads). */
#include "config.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mpitrain/core.h"
#include "nn/internal.h"

#ifdef HAVE_ONEDNN
#include <dnnl.h>
#include <omp.h>

#include "nn/onednn.h"

/* One tensor of a primitive: the user's plain memory (data handle set per
 * call) and, where the primitive wants another layout, its own memory on
 * a buffer of the state and the reorder between them. */
typedef struct arg {
    dnnl_memory_t user, mem;
    dnnl_primitive_t reorder; /* NULL: mem is user */
} arg;

enum role { F_SRC, F_WEI, F_DST, D_DST, D_WEI, D_SRC, W_SRC, W_DST, W_DWEI,
            ROLES };

typedef struct plan {
    size_t B;    /* 0: unused */
    int direct;  /* oneDNN's own kernels, not its gemm or reference code */
    int same_dy; /* both backward halves take dy in the same layout */
    int threads; /* oneDNN cuts the work for this many when it makes a
                    primitive, so it runs on that many or is made again */
    dnnl_primitive_t fwd, bwd_data, bwd_weights;
    arg a[ROLES];
    dnnl_memory_t bias, dbias;
} plan;

#define PLANS 4

typedef struct state {
    plan plans[PLANS];
    unsigned next;       /* the plan to replace next */
    void *buf[ROLES];    /* blocked buffers, for max_batch */
    size_t buf_bytes[ROLES];
    float *dw, *db;      /* this call's weight and bias gradients */
    int moved;           /* a buffer grew while making the last plan */
    char impl[48];       /* "oneDNN jit:avx2": max_batch's forward kernel */
} state;

/* Shared with dense_onednn.c (nn/onednn.h): made once, by whichever
 * layer comes first. */
static dnnl_engine_t engine;
static dnnl_stream_t stream;

/* oneDNN's threads, set before it makes or runs anything (it cuts a
 * primitive's work for the count it sees when it makes it): OpenBLAS's
 * ([run] threads) where OpenMP's idle threads sleep, else one. GNU
 * OpenMP's idle threads spin for a while after every parallel region and
 * starved OpenBLAS's own threads: LeNet-5 at [run] threads = 2 trained at
 * 4.2k samples/s, against 13.0k with OMP_WAIT_POLICY=passive and 12.1k at
 * one thread. The policy is read when OpenMP loads, before main, so only
 * the job's environment can set it. */
int mt__onednn_threads(void)
{
    const char *policy = getenv("OMP_WAIT_POLICY");
    int n = policy && strcasecmp(policy, "passive") == 0
                ? openblas_get_num_threads()
                : 1;
    omp_set_num_threads(n);
    return n;
}

/* oneDNN follows MPITRAIN_ISA below the CPU's best (its limit can be set
 * only before its first primitive, hence here, once). */
static dnnl_status_t engine_init(void)
{
    if (engine)
        return dnnl_success;
    mt__onednn_threads();
    static const dnnl_cpu_isa_t isa[] = {dnnl_cpu_isa_sse41,
                                         dnnl_cpu_isa_avx2,
                                         dnnl_cpu_isa_avx512_core};
    if (mt_isa_current() < mt_isa_best())
        dnnl_set_max_cpu_isa(isa[mt_isa_current()]);
    dnnl_status_t s = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    return s;
}

dnnl_status_t mt__onednn_engine(dnnl_engine_t *e, dnnl_stream_t *st)
{
    dnnl_status_t s = engine_init();
    *e = engine;
    *st = stream;
    return s;
}

const char *mt_onednn_version(void)
{
    static char text[48];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "oneDNN %d.%d.%d", v->major, v->minor,
             v->patch);
    return text;
}

static void arg_free(arg *a)
{
    if (a->reorder)
        dnnl_primitive_destroy(a->reorder);
    if (a->mem && a->mem != a->user)
        dnnl_memory_destroy(a->mem);
    if (a->user)
        dnnl_memory_destroy(a->user);
    memset(a, 0, sizeof *a);
}

static void plan_free(plan *p)
{
    dnnl_primitive_t *prims[] = {&p->fwd, &p->bwd_data, &p->bwd_weights};
    for (int i = 0; i < 3; i++)
        if (*prims[i])
            dnnl_primitive_destroy(*prims[i]);
    for (int r = 0; r < ROLES; r++)
        arg_free(&p->a[r]);
    if (p->bias)
        dnnl_memory_destroy(p->bias);
    if (p->dbias)
        dnnl_memory_destroy(p->dbias);
    memset(p, 0, sizeof *p);
}

#define TRY(call)                                                         \
    do {                                                                  \
        if ((s = (call)) != dnnl_success)                                 \
            goto out;                                                     \
    } while (0)

/* Role r of pd (query q) over a plain tensor of descriptor user_md: mem
 * on the state's buffer when the layouts differ, with the reorder from
 * the user's memory (to_user 0) or back to it (1). The buffer is max
 * batch's size, made first, unless a smaller batch's layout pads more
 * (oneDNN may pick another kernel for it): then it grows, and the plans
 * on the old one go (plan_for). */
static dnnl_status_t arg_make(state *st, int r, const_dnnl_primitive_desc_t pd,
                              dnnl_query_t q,
                              const dnnl_memory_desc_t *user_md, int to_user,
                              arg *a)
{
    dnnl_status_t s;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q, 0);
    dnnl_primitive_desc_t rpd = NULL;
    TRY(dnnl_memory_create(&a->user, user_md, engine, DNNL_MEMORY_NONE));
    if (dnnl_memory_desc_equal(md, user_md)) {
        a->mem = a->user;
        return dnnl_success;
    }
    size_t bytes = dnnl_memory_desc_get_size(md);
    if (bytes > st->buf_bytes[r]) { /* contents need not survive */
        free(st->buf[r]);
        st->buf_bytes[r] = 0;
        /* 64-byte lines, as oneDNN's own allocations */
        st->buf[r] = aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!st->buf[r])
            return dnnl_out_of_memory;
        st->buf_bytes[r] = bytes;
        st->moved = 1; /* the other plans point at the old buffer */
    }
    TRY(dnnl_memory_create(&a->mem, md, engine, st->buf[r]));
    TRY(to_user ? dnnl_reorder_primitive_desc_create(&rpd, md, engine,
                                                     user_md, engine, NULL)
                : dnnl_reorder_primitive_desc_create(&rpd, user_md, engine,
                                                     md, engine, NULL));
    TRY(dnnl_primitive_create(&a->reorder, rpd));
out:
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    return s;
}

typedef struct descs {
    dnnl_memory_desc_t x, w, b, y;         /* plain: NCHW, OIHW, (F) */
    dnnl_memory_desc_t any_x, any_w, any_y; /* layouts oneDNN picks */
    /* the products' inputs: any_* again, or bf16 for precision = bf16
     * (the reorders from our float32 round them to nearest even) */
    dnnl_memory_desc_t in_x, in_w, in_y;
    dnnl_dims_t strides, pad;
} descs;

static dnnl_status_t descs_of(const mt_layer *l, size_t B, descs *d)
{
    dnnl_status_t s;
    dnnl_dims_t x = {(dnnl_dim_t)B, (dnnl_dim_t)l->in.c, (dnnl_dim_t)l->in.h,
                     (dnnl_dim_t)l->in.w};
    dnnl_dims_t y = {(dnnl_dim_t)B, (dnnl_dim_t)l->out.c,
                     (dnnl_dim_t)l->out.h, (dnnl_dim_t)l->out.w};
    dnnl_dims_t w = {(dnnl_dim_t)l->out.c, (dnnl_dim_t)l->in.c,
                     (dnnl_dim_t)l->spec.size, (dnnl_dim_t)l->spec.size};
    dnnl_dims_t b = {(dnnl_dim_t)l->out.c};
    d->strides[0] = d->strides[1] = (dnnl_dim_t)l->spec.stride;
    d->pad[0] = d->pad[1] = (dnnl_dim_t)l->spec.pad;
    TRY(dnnl_memory_desc_init_by_tag(&d->x, 4, x, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&d->y, 4, y, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&d->w, 4, w, dnnl_f32, dnnl_oihw));
    TRY(dnnl_memory_desc_init_by_tag(&d->b, 1, b, dnnl_f32, dnnl_x));
    TRY(dnnl_memory_desc_init_by_tag(&d->any_x, 4, x, dnnl_f32,
                                     dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&d->any_y, 4, y, dnnl_f32,
                                     dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&d->any_w, 4, w, dnnl_f32,
                                     dnnl_format_tag_any));
    dnnl_data_type_t in = l->spec.bf16 ? dnnl_bf16 : dnnl_f32;
    TRY(dnnl_memory_desc_init_by_tag(&d->in_x, 4, x, in,
                                     dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&d->in_y, 4, y, in,
                                     dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&d->in_w, 4, w, in,
                                     dnnl_format_tag_any));
out:
    return s;
}

/* pd's implementation, as oneDNN names it ("jit:avx2", "gemm:jit"). */
static const char *impl_of(const_dnnl_primitive_desc_t pd)
{
    const char *impl = "";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl;
}

/* One of oneDNN's direct kernels rather than its im2col + gemm or its
 * reference code? Where the ISA limit leaves only those
 * (MPITRAIN_ISA=baseline), our own im2col is faster (bench/README.md). */
static int is_direct(const_dnnl_primitive_desc_t pd)
{
    const char *impl = impl_of(pd);
    return strncmp(impl, "ref", 3) != 0 && !strstr(impl, "gemm");
}

/* The three primitives for batch B, and their tensors. The right
 * padding is what the output size needs: negative where the last window
 * stops short of the far edge (the floor in mt__window_out), as im2col's
 * windows do. */
static dnnl_status_t plan_make(state *st, const mt_layer *l, size_t B,
                               plan *p)
{
    dnnl_status_t s;
    descs d;
    dnnl_convolution_desc_t fd, dd, wd;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    const dnnl_alg_kind_t alg = dnnl_convolution_direct;
    p->threads = mt__onednn_threads();
    TRY(descs_of(l, B, &d));
    dnnl_dims_t pad_r;
    for (int i = 0; i < 2; i++) {
        size_t n = i ? l->in.w : l->in.h, o = i ? l->out.w : l->out.h;
        pad_r[i] = (dnnl_dim_t)((o - 1) * l->spec.stride + l->spec.size) -
                   (dnnl_dim_t)(n + l->spec.pad);
    }
    /* inputs of each product in_*, its results float32 */
    TRY(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg,
                                           &d.in_x, &d.in_w, &d.b,
                                           &d.any_y, d.strides, d.pad,
                                           pad_r));
    TRY(dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL));
    TRY(dnnl_convolution_backward_data_desc_init(&dd, alg, &d.any_x,
                                                 &d.in_w, &d.in_y,
                                                 d.strides, d.pad, pad_r));
    TRY(dnnl_primitive_desc_create(&dpd, &dd, NULL, engine, fpd));
    TRY(dnnl_convolution_backward_weights_desc_init(
        &wd, alg, &d.in_x, &d.any_w, &d.b, &d.in_y, d.strides, d.pad,
        pad_r));
    TRY(dnnl_primitive_desc_create(&wpd, &wd, NULL, engine, fpd));
    p->direct = is_direct(fpd) && is_direct(dpd) && is_direct(wpd);
    if (!st->impl[0]) /* max_batch's, the first plan */
        snprintf(st->impl, sizeof st->impl, "oneDNN %s", impl_of(fpd));
    TRY(dnnl_primitive_create(&p->fwd, fpd));
    TRY(dnnl_primitive_create(&p->bwd_data, dpd));
    TRY(dnnl_primitive_create(&p->bwd_weights, wpd));
    struct {
        const_dnnl_primitive_desc_t pd;
        dnnl_query_t q;
        const dnnl_memory_desc_t *user;
        int to_user;
    } roles[ROLES] = {
        [F_SRC] = {fpd, dnnl_query_src_md, &d.x, 0},
        [F_WEI] = {fpd, dnnl_query_weights_md, &d.w, 0},
        [F_DST] = {fpd, dnnl_query_dst_md, &d.y, 1},
        [D_DST] = {dpd, dnnl_query_diff_dst_md, &d.y, 0},
        [D_WEI] = {dpd, dnnl_query_weights_md, &d.w, 0},
        [D_SRC] = {dpd, dnnl_query_diff_src_md, &d.x, 1},
        [W_SRC] = {wpd, dnnl_query_src_md, &d.x, 0},
        [W_DST] = {wpd, dnnl_query_diff_dst_md, &d.y, 0},
        [W_DWEI] = {wpd, dnnl_query_diff_weights_md, &d.w, 1},
    };
    for (int r = 0; r < ROLES; r++)
        TRY(arg_make(st, r, roles[r].pd, roles[r].q, roles[r].user,
                     roles[r].to_user, &p->a[r]));
    p->same_dy = dnnl_memory_desc_equal(
        dnnl_primitive_desc_query_md(dpd, dnnl_query_diff_dst_md, 0),
        dnnl_primitive_desc_query_md(wpd, dnnl_query_diff_dst_md, 0));
    TRY(dnnl_memory_create(&p->bias, &d.b, engine, DNNL_MEMORY_NONE));
    TRY(dnnl_memory_create(&p->dbias, &d.b, engine, st->db));
    dnnl_memory_set_data_handle(p->a[W_DWEI].user, st->dw);
    p->B = B;
out:
    if (fpd)
        dnnl_primitive_desc_destroy(fpd);
    if (dpd)
        dnnl_primitive_desc_destroy(dpd);
    if (wpd)
        dnnl_primitive_desc_destroy(wpd);
    if (s != dnnl_success)
        plan_free(p);
    return s;
}

/* The plan for batch B, made if this layer has not seen B lately. A
 * failure here (after max_batch's plan was made at alloc) is out of
 * memory or a oneDNN defect: no way to go on with this layer. */
static plan *plan_for(mt_layer *l, size_t B)
{
    state *st = l->scratch;
    int threads = mt__onednn_threads();
    for (int i = 0; i < PLANS; i++)
        if (st->plans[i].B == B && st->plans[i].threads == threads)
            return &st->plans[i];
    plan *p = &st->plans[st->next];
    st->next = (st->next + 1) % PLANS;
    plan_free(p);
    st->moved = 0;
    dnnl_status_t s = plan_make(st, l, B, p);
    if (s != dnnl_success) {
        fprintf(stderr, "mpitrain: %s: oneDNN could not set up batch %zu "
                        "(status %d)\n", l->name, B, (int)s);
        abort();
    }
    for (int i = 0; st->moved && i < PLANS; i++)
        if (&st->plans[i] != p)
            plan_free(&st->plans[i]);
    return p;
}

/* Points the user side of a tensor at ptr (this call's x, y, dy, ...). */
static void bind(arg *a, const void *ptr)
{
    dnnl_memory_set_data_handle(a->user, (void *)ptr);
}

/* Runs prim; a primitive that was made and then fails to run (a oneDNN
 * defect) leaves no result to go on with. */
static void run(const mt_layer *l, dnnl_primitive_t prim, int n,
                const dnnl_exec_arg_t *args)
{
    dnnl_status_t s = dnnl_primitive_execute(prim, stream, n, args);
    if (s != dnnl_success) {
        fprintf(stderr, "mpitrain: %s: a oneDNN primitive failed (status "
                        "%d)\n", l->name, (int)s);
        abort();
    }
}

/* Into the primitive's layout (to_user 0) or back out of it (1). */
static void reorder(const mt_layer *l, const arg *a, int to_user)
{
    if (!a->reorder)
        return;
    dnnl_exec_arg_t io[] = {{DNNL_ARG_FROM, to_user ? a->mem : a->user},
                            {DNNL_ARG_TO, to_user ? a->user : a->mem}};
    run(l, a->reorder, 2, io);
}

static void onednn_forward(mt_layer *l, const mt_step_ctx *ctx,
                           const float *x, float *y, size_t B)
{
    (void)ctx;
    plan *p = plan_for(l, B);
    arg *a = p->a;
    bind(&a[F_SRC], x);
    bind(&a[F_WEI], l->param[0].data);
    bind(&a[F_DST], y);
    dnnl_memory_set_data_handle(p->bias, l->param[1].data);
    reorder(l, &a[F_SRC], 0);
    reorder(l, &a[F_WEI], 0);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, a[F_SRC].mem},
                              {DNNL_ARG_WEIGHTS, a[F_WEI].mem},
                              {DNNL_ARG_BIAS, p->bias},
                              {DNNL_ARG_DST, a[F_DST].mem}};
    run(l, p->fwd, 4, args);
    reorder(l, &a[F_DST], 1);
    dnnl_stream_wait(stream);
}

/* dx from dy, which is in a[D_DST] already. */
static void input_grad(const mt_layer *l, plan *p, float *dx)
{
    arg *a = p->a;
    bind(&a[D_WEI], l->param[0].data);
    bind(&a[D_SRC], dx);
    reorder(l, &a[D_WEI], 0);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, a[D_DST].mem},
                              {DNNL_ARG_WEIGHTS, a[D_WEI].mem},
                              {DNNL_ARG_DIFF_SRC, a[D_SRC].mem}};
    run(l, p->bwd_data, 3, args);
    reorder(l, &a[D_SRC], 1);
    dnnl_stream_wait(stream);
}

/* The parameter gradients from x and dy in diff_dst (the weight
 * gradient's layout). oneDNN overwrites them; ours add (+=): through the
 * state's dw and db. */
static void weight_grads(mt_layer *l, plan *p, const float *x,
                         dnnl_memory_t diff_dst)
{
    state *st = l->scratch;
    arg *a = p->a;
    bind(&a[W_SRC], x);
    reorder(l, &a[W_SRC], 0);
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, a[W_SRC].mem},
                              {DNNL_ARG_DIFF_DST, diff_dst},
                              {DNNL_ARG_DIFF_WEIGHTS, a[W_DWEI].mem},
                              {DNNL_ARG_DIFF_BIAS, p->dbias}};
    run(l, p->bwd_weights, 4, args);
    reorder(l, &a[W_DWEI], 1);
    dnnl_stream_wait(stream);
    float *gw = l->param[0].grad, *gb = l->param[1].grad;
    for (size_t i = 0; i < l->param[0].n; i++)
        gw[i] += st->dw[i];
    for (size_t i = 0; i < l->param[1].n; i++)
        gb[i] += st->db[i];
}

/* dy into role r's layout. */
static dnnl_memory_t dy_in(const mt_layer *l, plan *p, int r,
                           const float *dy)
{
    bind(&p->a[r], dy);
    reorder(l, &p->a[r], 0);
    return p->a[r].mem;
}

static void onednn_backward_input(mt_layer *l, const float *x,
                                  const float *y, const float *dy, float *dx,
                                  size_t B)
{
    (void)x, (void)y;
    if (!dx)
        return;
    plan *p = plan_for(l, B);
    dy_in(l, p, D_DST, dy);
    input_grad(l, p, dx);
}

static void onednn_backward_weight(mt_layer *l, const float *x,
                                   const float *dy, size_t B)
{
    plan *p = plan_for(l, B);
    weight_grads(l, p, x, dy_in(l, p, W_DST, dy));
}

/* Both halves; dy is reordered once where they take the same layout (as
 * on AVX2 for LeNet-5's conv4: one pass over dy a step saved). */
static void onednn_backward(mt_layer *l, const float *x, const float *y,
                            const float *dy, float *dx, size_t B)
{
    (void)y;
    plan *p = plan_for(l, B);
    dnnl_memory_t d = dx ? dy_in(l, p, D_DST, dy) : NULL;
    weight_grads(l, p, x, d && p->same_dy ? d : dy_in(l, p, W_DST, dy));
    if (dx)
        input_grad(l, p, dx);
}

static void onednn_release(mt_layer *l)
{
    state *st = l->scratch;
    if (!st)
        return;
    for (int i = 0; i < PLANS; i++)
        plan_free(&st->plans[i]);
    for (int r = 0; r < ROLES; r++)
        free(st->buf[r]);
    free(st->dw);
    free(st->db);
    memset(st, 0, sizeof *st);
}

/* The state and max_batch's plan; auto falls back to im2col when oneDNN
 * cannot build it or has no direct kernel for it (an explicit onednn
 * says why, or runs what oneDNN has). */
static int onednn_alloc(mt_layer *l, char *err)
{
    int rc = mt__layer_scratch(l, sizeof(state), err);
    if (rc)
        return rc;
    state *st = l->scratch;
    st->dw = calloc(l->param[0].n, sizeof(float));
    st->db = calloc(l->param[1].n, sizeof(float));
    dnnl_status_t s = st->dw && st->db ? engine_init() : dnnl_out_of_memory;
    if (s == dnnl_success)
        s = plan_make(st, l, l->max_batch, &st->plans[0]);
    int bf16_ok = !l->spec.bf16 ||
                  (s == dnnl_success &&
                   mt__onednn_bf16_check(l, st->impl, NULL) == MT_OK);
    if (s == dnnl_success && bf16_ok &&
        (st->plans[0].direct || l->spec.backend == MT_CONV_ONEDNN)) {
        st->next = 1;
        return MT_OK;
    }
    char impl[sizeof st->impl];
    snprintf(impl, sizeof impl, "%s", s == dnnl_success ? st->impl : "");
    mt_layer_free(l); /* releases what was made */
    if (!bf16_ok)
        return mt__onednn_bf16_check(l, impl, err);
    if (l->spec.backend == MT_CONV_AUTO) {
        l->ops = &mt__conv2d_ops;
        return l->ops->alloc(l, err);
    }
    mt_seterr(err, "%s: backend = onednn: oneDNN cannot run this "
                   "convolution (status %d)", l->name, (int)s);
    return s == dnnl_out_of_memory ? MT_ENOMEM : MT_EINVAL;
}

static const char *onednn_describe(const mt_layer *l)
{
    const state *st = l->scratch;
    return st && st->impl[0] ? st->impl : "oneDNN";
}

const mt_layer_ops mt__conv2d_onednn_ops = {
    .kind_name = "conv",
    .alloc = onednn_alloc,
    .init_params = mt__conv_init,
    .forward = onednn_forward,
    .backward = onednn_backward,
    .backward_input = onednn_backward_input,
    .backward_weight = onednn_backward_weight,
    .release = onednn_release,
    .describe = onednn_describe,
};

/* auto's oneDNN needs this many input channels: its kernels block the
 * channels by the SIMD width, so with fewer its weight gradient did up to
 * 8 times the work (one core, AVX2: 1-2 channels 1.5x slower than im2col,
 * 3 and 4 level, 6 to 16 1.4-1.6x faster; bench/README.md). */
#define AUTO_MIN_CHANNELS 3

int mt__conv_onednn_backend(mt_layer *l, char *err)
{
    (void)err;
    if (l->spec.backend == MT_CONV_IM2COL ||
        (l->spec.backend == MT_CONV_AUTO && l->in.c < AUTO_MIN_CHANNELS))
        return MT_OK;
    l->ops = &mt__conv2d_onednn_ops;
    return MT_OK;
}

#else /* no oneDNN in this build */

const char *mt_onednn_version(void) { return NULL; }

int mt__conv_onednn_backend(mt_layer *l, char *err)
{
    if (l->spec.backend != MT_CONV_ONEDNN)
        return MT_OK;
    mt_seterr(err, "%s: backend = onednn, but this build has no oneDNN "
                   "(install libdnnl-dev and run configure again)",
              l->name);
    return MT_EINVAL;
}

#endif
