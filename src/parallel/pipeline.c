/* One pipeline step (pipeline.h): a stage runs its passes in the
 * schedule's order.
 *
 *   F i  take micro-batch i's input (stage 0: from the batch; else
 *        MPI_Recv from the stage above), keep it, forward the stage's
 *        layers, and send the output on (MPI_Isend) or, on the last
 *        stage, add up the loss
 *   B i  take the output's gradient (the last stage: the loss's; else
 *        MPI_Recv from the stage below), forward micro-batch i again from
 *        its kept input unless its activations are still in place,
 *        backward (adding into the gradients), and send the input's
 *        gradient up
 *
 * Where every layer of the stage can run its backward from kept
 * activations alone (stateless_backward, the split backward, or scratch
 * kept by row: every layer kind today) and recompute is not asked for,
 * the stage keeps them (w->stash): micro-batch i runs on rows of its own in
 * the model's activation buffers from its F to its last pass, a slot the
 * schedule's order then frees for a later micro-batch (assign_slots:
 * 1f1b's stage s holds P - s, not M), and its B needs no forward again.
 * Otherwise it keeps only each micro-batch's stage input and recomputes,
 * which costs a forward per B, except where B follows its own F (1f1b's
 * last stage). zb's B computes the input gradients only where a layer
 * can split (dense, conv, maxpool, batch norm) and keeps that layer's
 * input and output gradient for its W, which adds the parameter
 * gradients later (stashing, W reads them in their rows). The orders
 * come from the schedule's simulation, so the blocking receives cannot
 * wait in a cycle; sends never block (a kept slot's complete before its
 * reuse), and all complete before the step returns. */
#include "mpitrain/pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/watchdog.h"

typedef struct stage_run {
    const mt_pipe_plan *p;
    const mt_pipe_stage *st;
    const mt_pipe_batch *b;
    mt_pipe_work *w;
    size_t in_n, out_n; /* floats per sample at the stage's input, output */
    int n_reqs;
    int in_place;       /* micro-batch whose activations the model holds */
    int ring;           /* stash: micro-batch i in slot[i]'s rows */
    size_t slot_rows;   /* ...a slot's: the largest micro-batch */
    double loss;
    mt_pipe_stats stats;
} stage_run;

/* MPI_Recv, its time counted as waiting. */
static int recv_timed(stage_run *r, float *buf, size_t n, int from, int tag)
{
    double t = MPI_Wtime();
    int rc = MPI_Recv(buf, (int)n, MPI_FLOAT, from, tag, r->st->comm,
                      MPI_STATUS_IGNORE);
    r->stats.wait_s += MPI_Wtime() - t;
    return rc;
}

/* Floats per sample of m->act[act]. */
static size_t width(const mt_model *m, size_t act)
{
    return mt_shape_size(act == 0 ? m->in : m->layers[act - 1].out);
}

static size_t row0(const stage_run *r, int i)
{
    return (size_t)i * r->b->G / (size_t)r->p->micro;
}

static size_t rows(const stage_run *r, int i)
{
    return row0(r, i + 1) - row0(r, i);
}

/* Stash: the first row of micro-batch i in the stage's buffers. */
static size_t buf0(const stage_run *r, int i)
{
    return r->ring ? (size_t)r->w->slot[i] * r->slot_rows : row0(r, i);
}

static int is_last(const stage_run *r)
{
    return r->st->stage == r->st->stages - 1;
}

/* Stash: points the stage's activation buffers (act and dact of its
 * layers' inputs and outputs), and the scratch its layers keep by row,
 * at rows [o, ...) of their bases. */
static void rows_at(stage_run *r, size_t o)
{
    const mt_pipe_stage *st = r->st;
    for (size_t l = st->first; l <= st->last; l++) {
        size_t k = l - st->first, n = o * width(st->m, l);
        st->m->act[l] = r->w->act_base[k] + n;
        st->m->dact[l] = r->w->dact_base[k] + n;
        mt_layer *ly = &st->m->layers[l];
        if (l < st->last && ly->ops->scratch_row)
            ly->scratch = r->w->scratch_base[k] + o * ly->ops->scratch_row(ly);
    }
}

/* Forward of micro-batch i from its kept input (again, for its
 * backward: recompute). */
static float *forward(stage_run *r, int i, int recompute)
{
    mt_model *m = r->st->m;
    size_t n = rows(r, i);
    memcpy(m->act[r->st->first], r->w->kept + row0(r, i) * r->in_n,
           n * r->in_n * sizeof(float));
    mt_step_ctx ctx = r->b->ctx;
    ctx.sample0 += row0(r, i);
    ctx.recompute = recompute;
    r->in_place = i;
    return mt_model_forward_range(m, &ctx, n, r->st->first, r->st->last);
}

/* The loss of micro-batch i's output, its gradient into dact[last]. */
static double loss_of(stage_run *r, int i, const float *out)
{
    const mt_pipe_batch *b = r->b;
    size_t o = row0(r, i);
    return mt_loss_objective(b->loss, out, b->labels ? b->labels + o : NULL,
                             b->targets ? b->targets + o * r->out_n : NULL,
                             rows(r, i), r->out_n,
                             b->scale > 0.0f ? b->scale : 1.0f / (float)b->G,
                             r->st->m->dact[r->st->last], b->loss_opts);
}

/* Stash: micro-batch i's forward in its rows, from the input there. */
static float *forward_in_place(stage_run *r, int i)
{
    mt_step_ctx ctx = r->b->ctx;
    ctx.sample0 += row0(r, i);
    r->in_place = i; /* the layers' scratch is i's */
    return mt_model_forward_range(r->st->m, &ctx, rows(r, i), r->st->first,
                                  r->st->last);
}

/* Do `slots` slots of S rows fit the buffers (else rows row0(i))? */
static int slots_fit(const mt_model *m, size_t slots, size_t S)
{
    return slots * S <= m->max_batch;
}

/* Stash: each micro-batch's slot for this step, in the stage's order:
 * an F takes the lowest free slot, the micro-batch's last pass (B; zb:
 * W) frees it, so the slots in use are the most micro-batches the order
 * holds at once. Slot k is rows [k S, (k + 1) S), S the largest
 * micro-batch; where they would not fit the buffers (every micro-batch
 * held, M not dividing G) micro-batch i keeps rows row0(i). */
static void assign_slots(stage_run *r)
{
    const mt_pipe_plan *p = r->p;
    mt_pipe_work *w = r->w;
    mt_pipe_pass last = p->schedule == MT_PIPE_ZB ? MT_PIPE_W : MT_PIPE_B;
    const mt_pipe_op *ops = mt_pipe_stage_ops(p, r->st->stage);
    int used = 0;
    memset(w->slot_busy, 0, (size_t)p->micro * sizeof *w->slot_busy);
    for (size_t j = 0; j < p->ops_per_stage; j++) {
        int i = ops[j].micro, k = 0;
        if (ops[j].pass == MT_PIPE_F) {
            while (w->slot_busy[k])
                k++;
            w->slot_busy[k] = 1;
            w->slot[i] = k;
            used = k + 1 > used ? k + 1 : used;
        } else if (ops[j].pass == last) {
            w->slot_busy[w->slot[i]] = 0;
        }
    }
    for (int k = 0; k < 2 * used; k++)
        w->slot_req[k] = -1;
    r->ring = slots_fit(r->st->m, (size_t)used, r->slot_rows);
    w->slots_used = r->ring ? used : p->micro;
}

/* Stash, before micro-batch i's F in slot k: the sends of the slot's
 * last micro-batch (its output down, its input gradient up) complete.
 * They cannot wait for this stage: the stage below took the output
 * before the gradient this stage's last pass of that micro-batch needed,
 * and the stage above takes the gradient in its own B of that
 * micro-batch, which waits for nothing this stage has yet to do. */
static void reuse_slot(stage_run *r, int k)
{
    if (!r->ring)
        return;
    for (int d = 0; d < 2; d++) {
        int q = r->w->slot_req[2 * k + d];
        if (q < 0)
            continue;
        mt_watch("pipeline: a slot's sends before its reuse (MPI_Wait)");
        double t = MPI_Wtime();
        MPI_Wait(&r->w->reqs[q], MPI_STATUS_IGNORE);
        r->stats.wait_s += MPI_Wtime() - t;
        r->w->slot_req[2 * k + d] = -1;
    }
}

static int pass_f(stage_run *r, int i, char *err)
{
    const mt_pipe_stage *st = r->st;
    size_t n = rows(r, i), o = row0(r, i);
    if (r->w->stash) {
        reuse_slot(r, r->w->slot[i]);
        rows_at(r, buf0(r, i));
    }
    float *in = r->w->stash ? st->m->act[st->first]
                            : r->w->kept + o * r->in_n;
    if (st->stage == 0) {
        memcpy(in, r->b->x + o * r->in_n, n * r->in_n * sizeof(float));
    } else {
        mt_watch("pipeline: activations from the stage above (MPI_Recv)");
        if (recv_timed(r, in, n * r->in_n, st->stage - 1, MT_TAG_PIPE_ACT) !=
            MPI_SUCCESS) {
            mt_seterr(err, "pipeline stage %d: receiving micro-batch %d's "
                           "activations from stage %d failed",
                      st->stage, i, st->stage - 1);
            return MT_EIO;
        }
    }
    float *out = r->w->stash ? forward_in_place(r, i) : forward(r, i, 0);
    if (is_last(r)) {
        r->loss += loss_of(r, i, out);
        if (r->b->on_output)
            r->b->on_output(r->b->user, out, o, n);
        return MT_OK;
    }
    /* Stash: the output stays in its rows until the send completes. */
    float *keep = r->w->stash ? out : r->w->sent + o * r->out_n;
    if (r->w->stash)
        r->w->slot_req[2 * r->w->slot[i]] = r->n_reqs;
    else
        memcpy(keep, out, n * r->out_n * sizeof(float));
    MPI_Isend(keep, (int)(n * r->out_n), MPI_FLOAT, st->stage + 1,
              MT_TAG_PIPE_ACT, st->comm, &r->w->reqs[r->n_reqs++]);
    return MT_OK;
}

/* zb, after B of micro-batch i: each splitting layer's input and output
 * gradient, copied for its W. */
static void keep_for_w(stage_run *r, int i)
{
    const mt_pipe_stage *st = r->st;
    size_t n = rows(r, i), o = row0(r, i);
    for (size_t l = st->first; l < st->last; l++) {
        if (!r->w->wx[l - st->first])
            continue;
        size_t in = width(st->m, l), out = width(st->m, l + 1);
        memcpy(r->w->wx[l - st->first] + o * in, st->m->act[l],
               n * in * sizeof(float));
        memcpy(r->w->wdy[l - st->first] + o * out, st->m->dact[l + 1],
               n * out * sizeof(float));
    }
}

/* The parameter gradients of micro-batch i's splitting layers, from the
 * activations kept in its rows (stash: rows_at(r, buf0(r, i)) done). */
static void weights_in_place(stage_run *r, int i)
{
    const mt_pipe_stage *st = r->st;
    for (size_t l = st->first; l < st->last; l++) {
        mt_layer *ly = &st->m->layers[l];
        if (ly->ops->backward_weight && ly->n_param)
            ly->ops->backward_weight(ly, st->m->act[l], st->m->dact[l + 1],
                                     rows(r, i));
    }
}

/* Stash: B of micro-batch i in its rows. The last stage's loss gradient
 * is there since its F. Right after i's own forward (1f1b's last stage)
 * the layers' joint backward may use what that forward left in scratch
 * (conv's columns, maxpool's winners); otherwise gpipe and 1f1b run the
 * split halves at once, which do not. */
static int pass_b_in_place(stage_run *r, int i, char *err)
{
    const mt_pipe_stage *st = r->st;
    mt_model *m = st->m;
    size_t n = rows(r, i);
    rows_at(r, buf0(r, i));
    if (!is_last(r)) {
        mt_watch("pipeline: gradients from the stage below (MPI_Recv)");
        if (recv_timed(r, m->dact[st->last], n * r->out_n, st->stage + 1,
                       MT_TAG_PIPE_GRAD) != MPI_SUCCESS) {
            mt_seterr(err, "pipeline stage %d: receiving micro-batch %d's "
                           "gradient from stage %d failed",
                      st->stage, i, st->stage + 1);
            return MT_EIO;
        }
    }
    if (r->p->schedule != MT_PIPE_ZB && r->in_place == i) {
        mt_model_backward_range(m, n, st->first, st->last, st->stage > 0);
    } else {
        mt_model_backward_inputs_range(m, n, st->first, st->last,
                                       st->stage > 0);
        if (r->p->schedule != MT_PIPE_ZB)
            weights_in_place(r, i);
    }
    r->in_place = -1;
    if (st->stage > 0) { /* dact[first]'s rows stay until it is sent */
        r->w->slot_req[2 * r->w->slot[i] + 1] = r->n_reqs;
        MPI_Isend(m->dact[st->first], (int)(n * r->in_n), MPI_FLOAT,
                  st->stage - 1, MT_TAG_PIPE_GRAD, st->comm,
                  &r->w->reqs[r->n_reqs++]);
    }
    return MT_OK;
}

static int pass_b(stage_run *r, int i, char *err)
{
    if (r->w->stash)
        return pass_b_in_place(r, i, err);
    const mt_pipe_stage *st = r->st;
    mt_model *m = st->m;
    size_t n = rows(r, i), o = row0(r, i);
    float *dout = m->dact[st->last];
    r->stats.recomputed += r->in_place != i;
    if (is_last(r)) {
        const float *out = r->in_place == i ? m->act[st->last]
                                            : forward(r, i, 1);
        loss_of(r, i, out);
    } else {
        /* The gradient lands in dact[last] before any recompute: forward
         * does not touch it. */
        mt_watch("pipeline: gradients from the stage below (MPI_Recv)");
        if (recv_timed(r, dout, n * r->out_n, st->stage + 1,
                       MT_TAG_PIPE_GRAD) != MPI_SUCCESS) {
            mt_seterr(err, "pipeline stage %d: receiving micro-batch %d's "
                           "gradient from stage %d failed",
                      st->stage, i, st->stage + 1);
            return MT_EIO;
        }
        if (r->in_place != i)
            forward(r, i, 1);
    }
    if (r->p->schedule == MT_PIPE_ZB && r->w->wx) { /* B now, W later */
        mt_model_backward_inputs_range(m, n, st->first, st->last,
                                       st->stage > 0);
        keep_for_w(r, i);
    } else {
        mt_model_backward_range(m, n, st->first, st->last, st->stage > 0);
    }
    r->in_place = -1; /* backward may overwrite what it read */
    if (st->stage == 0)
        return MT_OK;
    float *keep = r->w->dsent + o * r->in_n;
    memcpy(keep, m->dact[st->first], n * r->in_n * sizeof(float));
    MPI_Isend(keep, (int)(n * r->in_n), MPI_FLOAT, st->stage - 1,
              MT_TAG_PIPE_GRAD, st->comm, &r->w->reqs[r->n_reqs++]);
    return MT_OK;
}


/* zb's W of micro-batch i: each splitting layer's parameter gradients
 * from the copies its B kept. */
static void pass_w(stage_run *r, int i)
{
    const mt_pipe_stage *st = r->st;
    float **wx = r->w->wx, **wdy = r->w->wdy;
    size_t n = rows(r, i), o = row0(r, i);
    if (r->w->stash) {
        rows_at(r, buf0(r, i));
        weights_in_place(r, i);
        return;
    }
    for (size_t l = st->first; wx && l < st->last; l++) {
        mt_layer *ly = &st->m->layers[l];
        if (wx[l - st->first])
            ly->ops->backward_weight(ly, wx[l - st->first] +
                                             o * width(st->m, l),
                                     wdy[l - st->first] +
                                         o * width(st->m, l + 1),
                                     n);
    }
}

/* zb: buffers for the splitting layers' W inputs; 0 or MT_ENOMEM. */
static int alloc_w(mt_pipe_work *w, const mt_pipe_stage *st)
{
    size_t L = st->last - st->first, G = w->max_G;
    w->wx = mt_calloc(L ? L : 1, sizeof *w->wx);
    w->wdy = mt_calloc(L ? L : 1, sizeof *w->wdy);
    if (!w->wx || !w->wdy)
        return MT_ENOMEM;
    w->n_w = L;
    for (size_t l = st->first; l < st->last; l++) {
        if (!st->m->layers[l].ops->backward_weight ||
            st->m->layers[l].n_param == 0) /* no W to defer */
            continue;
        w->wx[l - st->first] = mt_calloc(G * width(st->m, l), sizeof(float));
        w->wdy[l - st->first] =
            mt_calloc(G * width(st->m, l + 1), sizeof(float));
        w->bytes += G * (width(st->m, l) + width(st->m, l + 1)) *
                    sizeof(float);
        if (!w->wx[l - st->first] || !w->wdy[l - st->first])
            return MT_ENOMEM;
    }
    return MT_OK;
}

/* Can layers [a, b) of m run their backward from kept activations
 * alone, needing nothing their forward left behind? */
static int layers_can_keep(const mt_model *m, size_t a, size_t b)
{
    for (size_t l = a; l < b; l++) {
        const mt_layer_ops *ops = m->layers[l].ops;
        if (!ops->stateless_backward && !ops->backward_weight &&
            !ops->scratch_row)
            return 0;
    }
    return 1;
}

/* Can stage st keep every micro-batch's activations of steps of max_G
 * samples? The rows must fit the model's buffers, and its layers allow. */
static int can_stash(const mt_pipe_stage *st, size_t max_G)
{
    return max_G <= st->m->max_batch &&
           layers_can_keep(st->m, st->first, st->last);
}

size_t mt_pipe_activation_rows(const mt_pipe_plan *p, int s,
                               const mt_model *m, size_t a, size_t b,
                               size_t G, int recompute)
{
    size_t S = (G + (size_t)p->micro - 1) / (size_t)p->micro,
           held = (size_t)p->peak_held[s];
    if (recompute || G > m->max_batch || !layers_can_keep(m, a, b))
        return S;
    return slots_fit(m, held, S) ? held * S : G;
}

/* Stash: the bases of the stage's activation buffers, which rows_at
 * shifts. */
static int alloc_bases(mt_pipe_work *w, const mt_pipe_stage *st)
{
    size_t n = st->last - st->first + 1, M = w->max_micro;
    w->act_base = mt_calloc(n, sizeof *w->act_base);
    w->dact_base = mt_calloc(n, sizeof *w->dact_base);
    w->slot = mt_calloc(M, sizeof *w->slot);
    w->slot_busy = mt_calloc(M, sizeof *w->slot_busy);
    w->slot_req = mt_calloc(2 * M, sizeof *w->slot_req);
    if (!w->act_base || !w->dact_base || !w->slot || !w->slot_busy ||
        !w->slot_req)
        return MT_ENOMEM;
    w->scratch_base = mt_calloc(n, sizeof *w->scratch_base);
    if (!w->scratch_base)
        return MT_ENOMEM;
    for (size_t l = st->first; l <= st->last; l++) {
        w->act_base[l - st->first] = st->m->act[l];
        w->dact_base[l - st->first] = st->m->dact[l];
        if (l < st->last)
            w->scratch_base[l - st->first] = st->m->layers[l].scratch;
    }
    return MT_OK;
}

/* Recompute: every micro-batch's stage input, the outputs and input
 * gradients until their sends complete, and zb's copies for W. */
static int alloc_kept(mt_pipe_work *w, const mt_pipe_stage *st,
                      mt_pipe_schedule sch)
{
    size_t max_G = w->max_G, in_n = width(st->m, st->first),
           out_n = width(st->m, st->last);
    w->kept = mt_calloc(max_G * in_n, sizeof(float));
    w->sent = mt_calloc(max_G * out_n, sizeof(float));
    w->dsent = mt_calloc(max_G * in_n, sizeof(float));
    w->bytes = max_G * (2 * in_n + out_n) * sizeof(float);
    int rc = w->kept && w->sent && w->dsent ? MT_OK : MT_ENOMEM;
    if (rc == MT_OK && sch == MT_PIPE_ZB)
        rc = alloc_w(w, st);
    return rc;
}

int mt_pipe_work_init(mt_pipe_work *w, const mt_pipe_stage *st,
                      mt_pipe_schedule sch, size_t max_G, size_t max_micro,
                      int recompute, char *err)
{
    memset(w, 0, sizeof *w);
    w->max_G = max_G;
    w->max_micro = max_micro;
    w->stash = !recompute && can_stash(st, max_G);
    w->reqs = mt_calloc(2 * max_micro, sizeof *w->reqs);
    int rc = w->reqs ? MT_OK : MT_ENOMEM;
    if (rc == MT_OK)
        rc = w->stash ? alloc_bases(w, st) : alloc_kept(w, st, sch);
    if (rc) {
        mt_pipe_work_free(w);
        mt_seterr(err, "pipeline stage %d: out of memory for %zu samples",
                  st->stage, max_G);
    }
    return rc;
}

void mt_pipe_work_free(mt_pipe_work *w)
{
    for (size_t l = 0; l < w->n_w; l++) {
        free(w->wx[l]);
        free(w->wdy[l]);
    }
    free(w->wx);
    free(w->wdy);
    free(w->kept);
    free(w->sent);
    free(w->dsent);
    free(w->reqs);
    free(w->act_base);
    free(w->dact_base);
    free(w->scratch_base);
    free(w->slot);
    free(w->slot_busy);
    free(w->slot_req);
    memset(w, 0, sizeof *w);
}

int mt_pipe_step(const mt_pipe_plan *p, const mt_pipe_stage *st,
                 mt_pipe_work *w, const mt_pipe_batch *b, double *loss_sum,
                 mt_pipe_stats *stats, char *err)
{
    double t0 = MPI_Wtime();
    stage_run r = {.p = p, .st = st, .b = b, .w = w,
                   .in_n = width(st->m, st->first),
                   .out_n = width(st->m, st->last), .in_place = -1,
                   .slot_rows = (b->G + (size_t)p->micro - 1) /
                                (size_t)p->micro};
    *loss_sum = 0.0;
    if (r.slot_rows > st->m->max_batch || (size_t)p->micro > b->G ||
        b->G > w->max_G || (size_t)p->micro > w->max_micro) {
        mt_seterr(err, "pipeline: %zu samples in %d micro-batches: each "
                       "needs 1 to %zu, %zu samples at most",
                  b->G, p->micro, st->m->max_batch, w->max_G);
        return MT_EINVAL;
    }
    int rc = MT_OK;
    if (w->stash)
        assign_slots(&r);
    const mt_pipe_op *ops = mt_pipe_stage_ops(p, st->stage);
    for (size_t j = 0; rc == MT_OK && j < p->ops_per_stage; j++) {
        if (ops[j].pass == MT_PIPE_F)
            rc = pass_f(&r, ops[j].micro, err);
        else if (ops[j].pass == MT_PIPE_B)
            rc = pass_b(&r, ops[j].micro, err);
        else
            pass_w(&r, ops[j].micro);
    }
    mt_watch("pipeline: the step's sends (MPI_Waitall)");
    double tw = MPI_Wtime();
    if (r.n_reqs)
        MPI_Waitall(r.n_reqs, w->reqs, MPI_STATUSES_IGNORE);
    if (w->stash)
        rows_at(&r, 0); /* the buffers as everyone else knows them */
    r.stats.wait_s += MPI_Wtime() - tw;
    r.stats.seconds = MPI_Wtime() - t0;
    if (stats)
        *stats = r.stats;
    *loss_sum = r.loss;
    return rc;
}

int mt_pipe_forward(const mt_pipe_stage *st, size_t B, const float **out,
                    char *err)
{
    mt_model *m = st->m;
    size_t in_n = width(m, st->first), out_n = width(m, st->last);
    *out = NULL;
    if (st->stage > 0) {
        mt_watch("pipeline evaluation: activations from the stage above "
                 "(MPI_Recv)");
        if (MPI_Recv(m->act[st->first], (int)(B * in_n), MPI_FLOAT,
                     st->stage - 1, MT_TAG_PIPE_EVAL, st->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            mt_seterr(err, "pipeline stage %d: receiving evaluation "
                           "activations from stage %d failed",
                      st->stage, st->stage - 1);
            return MT_EIO;
        }
    }
    mt_step_ctx ctx = {.train = 0};
    const float *y = mt_model_forward_range(m, &ctx, B, st->first, st->last);
    if (st->stage == st->stages - 1) {
        *out = y;
        return MT_OK;
    }
    /* Blocking: the next chunk overwrites y. The stage below takes it
     * as soon as it is done with the chunk before, so the stages still
     * work on consecutive chunks at once. */
    mt_watch("pipeline evaluation: activations to the stage below "
             "(MPI_Send)");
    if (MPI_Send(y, (int)(B * out_n), MPI_FLOAT, st->stage + 1,
                 MT_TAG_PIPE_EVAL, st->comm) != MPI_SUCCESS) {
        mt_seterr(err, "pipeline stage %d: sending evaluation activations "
                       "to stage %d failed",
                  st->stage, st->stage + 1);
        return MT_EIO;
    }
    return MT_OK;
}
