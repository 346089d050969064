#include "mpitrain/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mpitrain/core.h"

/* The arenas are anonymous mappings (zeroed, page aligned), so that a
 * pipeline stage can hand the pages of the layers it does not hold back
 * to the system (mt_model_keep_layers). */
static size_t page_bytes(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static size_t mapped_bytes(size_t floats)
{
    size_t pg = page_bytes(), b = (floats ? floats : 1) * sizeof(float);
    return (b + pg - 1) / pg * pg;
}

static float *arena_map(size_t floats)
{
    void *p = mmap(NULL, mapped_bytes(floats), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void arena_unmap(float *a, size_t floats)
{
    if (a)
        munmap(a, mapped_bytes(floats));
}

void mt_model_free(mt_model *m)
{
    for (size_t i = 0; m->layers && i < m->n_layers; i++)
        mt_layer_free(&m->layers[i]);
    mt_free(m->layers);
    if (!m->arenas_lent) {
        arena_unmap(m->params, m->n_params);
        arena_unmap(m->grads, m->n_params);
    }
    m->arenas_lent = 0;
    arena_unmap(m->state, m->n_state);
    arena_unmap(m->act_arena, m->n_act);
    mt_free(m->act);
    mt_free(m->dact);
    m->layers = NULL;
    m->params = m->grads = m->state = m->act_arena = NULL;
    m->act = m->dact = NULL;
    m->n_layers = m->n_params = m->n_state = m->n_act = 0;
}

/* Hands out consecutive views of the params/grads and state arenas. */
static void layout(mt_model *m)
{
    size_t p = 0, s = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        mt_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_param; k++) {
            l->param[k].data = m->params + p;
            l->param[k].grad = m->grads + p;
            p += l->param[k].n;
        }
        for (int k = 0; k < l->n_state; k++) {
            l->state[k].data = m->state + s;
            s += l->state[k].n;
        }
    }
}

/* The arenas to params and grads (values copied, views moved). */
static void move_arenas(mt_model *m, float *params, float *grads)
{
    memcpy(params, m->params, m->n_params * sizeof(float));
    memcpy(grads, m->grads, m->n_params * sizeof(float));
    if (!m->arenas_lent) {
        arena_unmap(m->params, m->n_params);
        arena_unmap(m->grads, m->n_params);
    }
    m->params = params;
    m->grads = grads;
    layout(m);
}

void mt_model_place_arenas(mt_model *m, float *params, float *grads)
{
    move_arenas(m, params, grads);
    m->arenas_lent = 1;
}

int mt_model_own_arenas(mt_model *m, char *err)
{
    if (!m->arenas_lent)
        return MT_OK;
    float *p = arena_map(m->n_params), *g = arena_map(m->n_params);
    if (!p || !g) {
        arena_unmap(p, m->n_params);
        arena_unmap(g, m->n_params);
        mt_seterr(err, "model: out of memory for %zu parameters",
                  m->n_params);
        return MT_ENOMEM;
    }
    move_arenas(m, p, g);
    m->arenas_lent = 0;
    return MT_OK;
}

static int alloc_arenas(mt_model *m, char *err)
{
    size_t total_act = mt_shape_size(m->in);
    for (size_t i = 0; i < m->n_layers; i++) {
        const mt_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_param; k++)
            m->n_params += l->param[k].n;
        for (int k = 0; k < l->n_state; k++)
            m->n_state += l->state[k].n;
        total_act += mt_shape_size(l->out);
    }
    size_t L = m->n_layers;
    m->n_act = 2 * total_act * m->max_batch;
    m->params = arena_map(m->n_params);
    m->grads = arena_map(m->n_params);
    m->state = arena_map(m->n_state);
    m->act = mt_calloc(L + 1, sizeof(float *));
    m->dact = mt_calloc(L + 1, sizeof(float *));
    m->act_arena = arena_map(m->n_act);
    if (!m->params || !m->grads || !m->state || !m->act || !m->dact ||
        !m->act_arena) {
        mt_seterr(err, "model: out of memory (%zu parameters, %zu floats "
                       "of activations)",
                  m->n_params, 2 * total_act * m->max_batch);
        return MT_ENOMEM;
    }
    m->live_lo = 0;
    m->live_hi = L;
    float *a = m->act_arena;
    for (size_t i = 0; i <= L; i++) {
        size_t n = (i == 0 ? mt_shape_size(m->in)
                           : mt_shape_size(m->layers[i - 1].out)) *
                   m->max_batch;
        m->act[i] = a;
        m->dact[i] = a + n;
        a += 2 * n;
    }
    layout(m);
    return MT_OK;
}

int mt_model_init(mt_model *m, const mt_layer_spec *specs, size_t n_specs,
                  mt_shape in, size_t max_batch, uint64_t seed, char *err)
{
    int rc = mt_model_build(m, specs, n_specs, in, max_batch, err);
    if (rc == MT_OK)
        mt_model_init_params(m, 0, m->n_layers, seed);
    return rc;
}

void mt_model_init_params(mt_model *m, size_t a, size_t b, uint64_t seed)
{
    for (size_t i = a; i < b; i++) {
        mt_layer *l = &m->layers[i];
        if (l->ops->init_params)
            l->ops->init_params(l, seed);
    }
}

int mt_model_build(mt_model *m, const mt_layer_spec *specs, size_t n_specs,
                   mt_shape in, size_t max_batch, char *err)
{
    memset(m, 0, sizeof *m);
    int rc = MT_EINVAL;
    if (n_specs == 0 || max_batch == 0) {
        mt_seterr(err, "model: needs at least one layer and a batch > 0");
        return MT_EINVAL;
    }
    m->in = in;
    m->max_batch = max_batch;
    m->layers = mt_calloc(n_specs, sizeof(mt_layer));
    if (!m->layers) {
        mt_seterr(err, "model: out of memory");
        return MT_ENOMEM;
    }
    mt_shape cur = in;
    for (size_t i = 0; i < n_specs; i++) {
        rc = mt_layer_setup(&m->layers[i], &specs[i], i, cur, max_batch, err);
        m->n_layers = i + 1;
        if (rc)
            goto fail;
        cur = m->layers[i].out;
    }
    if ((rc = alloc_arenas(m, err)))
        goto fail;
    for (size_t i = 0; i < m->n_layers; i++) {
        mt_layer *l = &m->layers[i];
        if (l->ops->alloc && (rc = l->ops->alloc(l, err)))
            goto fail;
    }
    return MT_OK;
fail:
    mt_model_free(m);
    return rc;
}

int mt_model_check(const mt_layer_spec *specs, size_t n_specs, mt_shape in,
                   size_t *bad, char *err)
{
    mt_layer l;
    for (size_t i = 0; i < n_specs; i++) {
        int rc = mt_layer_setup(&l, &specs[i], i, in, 1, err);
        mt_layer_free(&l);
        if (rc) {
            *bad = i;
            return rc;
        }
        in = l.out;
    }
    return MT_OK;
}

mt_shape mt_model_out(const mt_model *m)
{
    return m->n_layers ? m->layers[m->n_layers - 1].out : m->in;
}

float *mt_model_forward(mt_model *m, const mt_step_ctx *ctx, size_t B)
{
    return mt_model_forward_range(m, ctx, B, 0, m->n_layers);
}

float *mt_model_forward_range(mt_model *m, const mt_step_ctx *ctx, size_t B,
                              size_t a, size_t b)
{
    for (size_t i = a; i < b; i++) {
        mt_layer *l = &m->layers[i];
        if (ctx && ctx->before_layer)
            ctx->before_layer(ctx->user, i);
        l->ops->forward(l, ctx, m->act[i], m->act[i + 1], B);
    }
    return m->act[b];
}

/* Backward through [a, b); with inputs_only, layers that can split do
 * only their input gradient. */
static void backward_range(mt_model *m, size_t B, size_t a, size_t b,
                           int need_din, int inputs_only)
{
    /* Below the first layer with parameters no gradient is needed, unless
     * a stage below waits for it. */
    size_t first = a;
    while (!need_din && first < b && m->layers[first].n_param == 0)
        first++;
    for (size_t i = b; i-- > first;) {
        mt_layer *l = &m->layers[i];
        float *dx = i == first && !need_din ? NULL : m->dact[i];
        if (inputs_only && l->ops->backward_input)
            l->ops->backward_input(l, m->act[i], m->act[i + 1],
                                   m->dact[i + 1], dx, B);
        else
            l->ops->backward(l, m->act[i], m->act[i + 1], m->dact[i + 1],
                             dx, B);
    }
}

void mt_model_backward_range(mt_model *m, size_t B, size_t a, size_t b,
                             int need_din)
{
    backward_range(m, B, a, b, need_din, 0);
}

void mt_model_backward_inputs_range(mt_model *m, size_t B, size_t a,
                                    size_t b, int need_din)
{
    backward_range(m, B, a, b, need_din, 1);
}

void mt_model_backward(mt_model *m, size_t B)
{
    mt_model_backward_hook(m, B, NULL, NULL);
}

int mt_model_backward_hook(mt_model *m, size_t B, mt_layer_hook hook,
                           void *user)
{
    int rc = 0;
    /* No gradient is needed below the first layer with parameters: the
     * first dense layer of an MLP need not compute d(input), its largest
     * product. */
    size_t first = 0;
    while (first < m->n_layers && m->layers[first].n_param == 0)
        first++;
    for (size_t i = m->n_layers; i-- > first;) {
        mt_layer *l = &m->layers[i];
        l->ops->backward(l, m->act[i], m->act[i + 1], m->dact[i + 1],
                         i == first ? NULL : m->dact[i], B);
        if (hook && rc == 0)
            rc = hook(user, i);
    }
    return rc;
}

/* Arena offset of the first tensor of the layers from i on (state: of
 * the state arena), or the arena's end. */
static size_t first_tensor(const mt_model *m, size_t i, int state)
{
    for (; i < m->n_layers; i++) {
        const mt_layer *l = &m->layers[i];
        if (!state && l->n_param)
            return (size_t)(l->param[0].data - m->params);
        if (state && l->n_state)
            return (size_t)(l->state[0].data - m->state);
    }
    return state ? m->n_state : m->n_params;
}

void mt_model_span(const mt_model *m, size_t a, size_t b, int state,
                   size_t *lo, size_t *hi)
{
    *lo = first_tensor(m, a, state);
    *hi = first_tensor(m, b, state);
}

void mt_model_zero_grad(mt_model *m)
{
    size_t lo, hi;
    mt_model_span(m, m->live_lo, m->live_hi, 0, &lo, &hi);
    memset(m->grads + lo, 0, (hi - lo) * sizeof(float));
}

/* The whole pages inside floats [lo, hi) of an arena (arenas start on a
 * page): floats [*from, *to), empty when to <= from. */
static void whole_pages(size_t lo, size_t hi, size_t *from, size_t *to)
{
    size_t pg = page_bytes() / sizeof(float);
    *from = (lo + pg - 1) / pg * pg;
    *to = hi / pg * pg;
}

/* The pages wholly inside floats [lo, hi) of arena a go back to the
 * system, and any later touch of them faults: a stray use of a layer
 * this rank does not hold shows at once instead of reading zeros. */
static int release(float *a, size_t lo, size_t hi)
{
    size_t from, to;
    whole_pages(lo, hi, &from, &to);
    if (to <= from)
        return 0;
    return madvise(a + from, (to - from) * sizeof(float), MADV_DONTNEED) ||
           mprotect(a + from, (to - from) * sizeof(float), PROT_NONE);
}

void mt_model_release_grads(mt_model *m, size_t a, size_t b)
{
    size_t lo, hi, from, to;
    mt_model_span(m, a, b, 0, &lo, &hi);
    whole_pages(lo, hi, &from, &to);
    if (to <= from) {
        memset(m->grads + lo, 0, (hi - lo) * sizeof(float));
        return;
    }
    memset(m->grads + lo, 0, (from - lo) * sizeof(float));
    memset(m->grads + to, 0, (hi - to) * sizeof(float));
    /* private anonymous pages read as zero once handed back */
    if (madvise(m->grads + from, (to - from) * sizeof(float), MADV_DONTNEED))
        memset(m->grads + from, 0, (to - from) * sizeof(float));
}

int mt_model_keep_layers(mt_model *m, size_t a, size_t b, char *err)
{
    size_t lo, hi, slo, shi, L = m->n_layers;
    mt_model_span(m, a, b, 0, &lo, &hi);
    mt_model_span(m, a, b, 1, &slo, &shi);
    /* This stage's activations: act[a] .. dact[b], one run. */
    size_t alo = (size_t)(m->act[a] - m->act_arena),
           ahi = (size_t)(m->dact[b] - m->act_arena) +
                 (size_t)(m->dact[b] - m->act[b]);
    int bad = 0;
    float *arenas[2] = {m->params, m->grads};
    for (int k = 0; k < 2; k++)
        bad |= release(arenas[k], 0, lo) ||
               release(arenas[k], hi, m->n_params);
    bad |= release(m->state, 0, slo) || release(m->state, shi, m->n_state);
    bad |= release(m->act_arena, 0, alo) ||
           release(m->act_arena, ahi, m->n_act);
    for (size_t i = 0; i < L; i++)
        if (i < a || i >= b)
            mt_layer_free(&m->layers[i]); /* its scratch */
    m->live_lo = a;
    m->live_hi = b;
    if (bad) {
        mt_seterr(err, "model: handing back the memory of layers outside "
                       "%zu-%zu failed",
                  a + 1, b);
        return MT_EIO;
    }
    return MT_OK;
}

int mt_model_each_tensor(mt_model *m, mt_tensor_fn fn, void *user)
{
    return mt_model_each_tensor_of(m, 0, m->n_layers, fn, user);
}

int mt_model_each_live_tensor(mt_model *m, mt_tensor_fn fn, void *user)
{
    return mt_model_each_tensor_of(m, m->live_lo, m->live_hi, fn, user);
}

int mt_model_each_tensor_of(mt_model *m, size_t a, size_t b,
                            mt_tensor_fn fn, void *user)
{
    for (size_t i = a; i < b; i++) {
        mt_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_param; k++) {
            int rc = fn(l, &l->param[k], 0, user);
            if (rc)
                return rc;
        }
        for (int k = 0; k < l->n_state; k++) {
            int rc = fn(l, &l->state[k], 1, user);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int tensor_finite(const mt_layer *l, mt_tensor *t, int is_state,
                         void *user)
{
    for (size_t i = 0; i < t->n; i++)
        if (!isfinite(t->data[i])) {
            mt_seterr(user, "%s %s/%s[%zu] is %s", is_state ? "state" :
                      "parameter", l->name, t->name, i,
                      isnan(t->data[i]) ? "NaN" : "infinite");
            return MT_ENUMERIC;
        }
    return MT_OK;
}

int mt_model_check_finite(mt_model *m, char *err)
{
    return mt_model_each_live_tensor(m, tensor_finite, err);
}

void mt_model_summary(const mt_model *m,
                      void (*emit)(const char *line, void *user), void *user)
{
    char line[160];
    snprintf(line, sizeof line, "%-12s %4zu x %3zu x %3zu", "input",
             m->in.c, m->in.h, m->in.w);
    emit(line, user);
    for (size_t i = 0; i < m->n_layers; i++) {
        const mt_layer *l = &m->layers[i];
        size_t np = 0;
        for (int k = 0; k < l->n_param; k++)
            np += l->param[k].n;
        snprintf(line, sizeof line,
                 "%-12s %4zu x %3zu x %3zu  %9zu params%s%s", l->name,
                 l->out.c, l->out.h, l->out.w, np,
                 l->ops->describe ? "  " : "",
                 l->ops->describe ? l->ops->describe(l) : "");
        emit(line, user);
    }
    snprintf(line, sizeof line, "total %zu parameters", m->n_params);
    emit(line, user);
}
