/* Private to src/nn: the ops tables of each layer kind and shared helpers. */
#ifndef MPITRAIN_NN_INTERNAL_H
#define MPITRAIN_NN_INTERNAL_H

#include "mpitrain/layer.h"

extern const mt_layer_ops mt__dense_ops;
extern const mt_layer_ops mt__conv2d_ops;
extern const mt_layer_ops mt__maxpool_ops;
extern const mt_layer_ops mt__avgpool_ops;
extern const mt_layer_ops mt__flatten_ops;
extern const mt_layer_ops mt__relu_ops;
extern const mt_layer_ops mt__leaky_relu_ops;
extern const mt_layer_ops mt__sigmoid_ops;
extern const mt_layer_ops mt__tanh_ops;
extern const mt_layer_ops mt__dropout_ops;
extern const mt_layer_ops mt__batchnorm_ops;

/* dense (dense.c): its initial weights; its oneDNN ops
 * (dense_onednn.c), which dense's setup takes for bf16, backend =
 * onednn or auto on AVX-512 (the error, naming the layer, where the
 * build has no oneDNN; alloc checks oneDNN's kernel for this CPU and
 * falls back to OpenBLAS for auto). */
void mt__dense_init(mt_layer *l, uint64_t seed);
/* db (No) += the column sums of dy (B, No), on the SIMD path in use. */
void mt__dense_bias_grad(const float *dy, float *db, size_t B, size_t No);
int mt__dense_onednn(mt_layer *l, char *err);

/* conv (conv2d.c): its initial weights, shared by its backends. */
void mt__conv_init(mt_layer *l, uint64_t seed);
/* Called by conv's setup once the direct backend is ruled out: points
 * l->ops at oneDNN or leaves im2col, as the spec asks and the build has
 * (conv2d_onednn.c), or says why it cannot. */
int mt__conv_onednn_backend(mt_layer *l, char *err);

/* conv's direct AVX-512 backend (conv2d_direct.c), and whether it can
 * run layer l here: 0 with the reason in why (len bytes) if not. */
extern const mt_layer_ops mt__conv2d_direct_ops;
int mt__conv_direct_fits(const mt_layer *l, char *why, size_t len);

/* Names and shapes a tensor: t = {name, dims...}. */
void mt__tensor_def(mt_tensor *t, const char *name, int ndim, size_t d0,
                    size_t d1, size_t d2, size_t d3);

/* He-normal (std sqrt(2/fan_in)) or Xavier-uniform (limit
 * sqrt(6/(fan_in+fan_out))) weights keyed by (seed, layer, element). */
void mt__init_weights(mt_tensor *w, size_t fan_in, size_t fan_out,
                      mt_init init, uint64_t seed, size_t layer);

/* Output size of a sliding window: floor((n + 2 pad - size) / stride) + 1,
 * or 0 when the window does not fit. */
size_t mt__window_out(size_t n, size_t size, size_t stride, size_t pad);

#endif
