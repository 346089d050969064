/* mpitrain model: a chain of layers over three flat arenas (parameters,
 * gradients, non-trained state) and one arena of activations.
 *
 * Sizes are computed first, memory is allocated once at build time, and
 * layers get views. Nothing is allocated in the training loop. */
#ifndef MPITRAIN_MODEL_H
#define MPITRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mpitrain/layer.h"

typedef struct mt_model {
    mt_layer *layers;
    size_t n_layers;
    mt_shape in;       /* per-sample input shape */
    size_t max_batch;  /* the largest batch forward may be given */
    float *params;     /* (n_params): every parameter, layer by layer */
    float *grads;      /* (n_params): same layout as params */
    size_t n_params;
    float *state;      /* (n_state): running statistics, not trained */
    size_t n_state;
    float **act;  /* act[0] input, act[i + 1] output of layer i: (B, size) */
    float **dact; /* gradient of the loss w.r.t. act[i], same shapes */
    float *act_arena;
    size_t n_act; /* floats of act_arena */
    /* The layers whose memory this rank holds: all of them, or after
     * mt_model_keep_layers a pipeline stage's. */
    size_t live_lo, live_hi;
    /* params and grads are memory lent by mt_model_place_arenas (not
     * unmapped by mt_model_free). */
    int arenas_lent;
} mt_model;

/* Builds the model: sets up every layer in turn (so a shape that does not
 * chain fails naming the layer and its config line), lays out the arenas,
 * and initialises parameters from `seed`. Frees everything on error. */
int mt_model_init(mt_model *m, const mt_layer_spec *specs, size_t n_specs,
                  mt_shape in, size_t max_batch, uint64_t seed, char *err);
/* The same in two parts: the layers and arenas with every value zero
 * (untouched pages: a pipeline stage sets only its own layers' and never
 * holds the others'), then the initial values of layers [a, b), each
 * layer's from seed and its index alone. */
int mt_model_build(mt_model *m, const mt_layer_spec *specs, size_t n_specs,
                   mt_shape in, size_t max_batch, char *err);
void mt_model_init_params(mt_model *m, size_t a, size_t b, uint64_t seed);
/* Checks that the layers chain from input `in` without allocating; on
 * error *bad is the index of the first layer that does not fit. */
int mt_model_check(const mt_layer_spec *specs, size_t n_specs, mt_shape in,
                   size_t *bad, char *err);
/* Frees the model. Safe on a zeroed model and twice. */
void mt_model_free(mt_model *m);

/* Moves the parameter and gradient arenas into memory the caller owns
 * (n_params floats each, e.g. a node's shared-memory window:
 * src/parallel/sync_shm.c), values copied and every layer's views moved;
 * mt_model_free leaves that memory alone. mt_model_own_arenas moves them
 * back into memory of the model's own (MT_ENOMEM, the arenas left where
 * they are, if it cannot be had). Not for a pipeline stage's model. */
void mt_model_place_arenas(mt_model *m, float *params, float *grads);
int mt_model_own_arenas(mt_model *m, char *err);

/* Output shape of the last layer. */
mt_shape mt_model_out(const mt_model *m);

/* Forward over B <= max_batch samples already in m->act[0]; returns the
 * output (m->act[n_layers]). */
float *mt_model_forward(mt_model *m, const mt_step_ctx *ctx, size_t B);
/* Layers [a, b) only, from m->act[a] (a pipeline stage); returns
 * m->act[b]. */
float *mt_model_forward_range(mt_model *m, const mt_step_ctx *ctx, size_t B,
                              size_t a, size_t b);
/* Backward through layers [a, b) from m->dact[b], adding into grads; with
 * need_din m->dact[a] gets the gradient of layer a's input (for the stage
 * below), otherwise layers below the first with parameters are skipped. */
void mt_model_backward_range(mt_model *m, size_t B, size_t a, size_t b,
                             int need_din);
/* The same, but layers that split their backward (ops backward_input and
 * backward_weight: dense) compute only their input gradient; their
 * parameter gradients are left to backward_weight, from m->act[i] and
 * m->dact[i + 1] as they are now (a pipeline keeps copies). */
void mt_model_backward_inputs_range(mt_model *m, size_t B, size_t a,
                                    size_t b, int need_din);
/* Backward from the loss gradient in m->dact[n_layers]; adds into grads. */
void mt_model_backward(mt_model *m, size_t B);
/* The same, calling hook(user, i) after layer i's backward (layers go last
 * to first), so gradient buckets can be sent while backward goes on. The
 * first non-zero hook result stops the calls and is returned. */
typedef int (*mt_layer_hook)(void *user, size_t layer);
int mt_model_backward_hook(mt_model *m, size_t B, mt_layer_hook hook,
                           void *user);
/* Zeroes every gradient of the layers held (one memset). */
void mt_model_zero_grad(mt_model *m);

/* Zeroes the gradients of layers [a, b), handing their whole pages back
 * to the system (a pipeline's start-up profile, so that a stage never
 * holds every layer's gradients at once). */
void mt_model_release_grads(mt_model *m, size_t a, size_t b);
/* Arena range [*lo, *hi) of the parameters (state: 1, the running
 * statistics) of layers [a, b). */
void mt_model_span(const mt_model *m, size_t a, size_t b, int state,
                   size_t *lo, size_t *hi);
/* A pipeline stage: keeps the memory of layers [a, b) only. The pages of
 * the other layers' parameters, gradients, running statistics and
 * activations (all but act[a] .. act[b] and their gradients) go back to
 * the system and fault if touched, and their scratch is freed; their
 * tensors keep names, shapes and arena offsets (a checkpoint's layout).
 * Only forward and backward over [a, b), mt_model_zero_grad and
 * mt_model_check_finite (which see only the layers held) may follow.
 * MT_EIO if the system refuses. */
int mt_model_keep_layers(mt_model *m, size_t a, size_t b, char *err);

/* Visits every tensor (parameters then state, layer by layer) in a stable
 * order; stops and returns the first non-zero value fn returns. */
typedef int (*mt_tensor_fn)(const mt_layer *l, mt_tensor *t, int is_state,
                            void *user);
int mt_model_each_tensor(mt_model *m, mt_tensor_fn fn, void *user);
/* The same over layers [a, b), or over the layers held. */
int mt_model_each_tensor_of(mt_model *m, size_t a, size_t b,
                            mt_tensor_fn fn, void *user);
int mt_model_each_live_tensor(mt_model *m, mt_tensor_fn fn, void *user);

/* MT_ENUMERIC, naming the tensor and element, if a parameter or state
 * value of a layer held is NaN or infinite (with err NULL allowed); else
 * MT_OK. Local. */
int mt_model_check_finite(mt_model *m, char *err);

/* One line per layer: name, output shape, parameter count. */
void mt_model_summary(const mt_model *m, void (*emit)(const char *line,
                                                      void *user),
                      void *user);

#endif
