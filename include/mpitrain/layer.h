/* mpitrain layers: plain structs with forward/backward over a batch.
 *
 * Tensors are float32, row-major, NCHW (PyTorch's layout). A sample's shape
 * is (c, h, w); a dense layer's features are (n, 1, 1). Parameters and their
 * gradients are views into the model's flat arenas (DESIGN.md decision 1);
 * a layer owns only its scratch memory, sized once for the largest batch. */
#ifndef MPITRAIN_LAYER_H
#define MPITRAIN_LAYER_H

#include <stddef.h>
#include <stdint.h>

typedef enum mt_layer_kind {
    MT_DENSE,
    MT_CONV2D,
    MT_MAXPOOL,
    MT_AVGPOOL,
    MT_FLATTEN,
    MT_RELU,
    MT_LEAKY_RELU,
    MT_SIGMOID,
    MT_TANH,
    MT_DROPOUT,
    MT_BATCHNORM,
    MT_LAYER_KINDS
} mt_layer_kind;

typedef enum mt_init { MT_INIT_AUTO, MT_INIT_HE, MT_INIT_XAVIER } mt_init;

/* How a convolution computes (the same function, rounded differently):
 * im2col + OpenBLAS sgemm (the reference), or oneDNN's direct kernels
 * (PyTorch's CPU engine), where the build has oneDNN. auto: oneDNN for
 * layers of 3 or more input channels where it has direct kernels for the
 * CPU, else im2col (bench/README.md). */
typedef enum mt_conv_backend {
    MT_CONV_AUTO,
    MT_CONV_IM2COL,
    MT_CONV_ONEDNN,
    MT_CONV_DIRECT
} mt_conv_backend;

/* How a dense layer computes: OpenBLAS sgemm (the reference) or oneDNN's
 * matmul (its brgemm kernels, 1.2x OpenBLAS on one AVX-512 core; slower
 * at AVX2, where auto keeps OpenBLAS). precision = bf16 always takes
 * oneDNN. */
typedef enum mt_dense_backend {
    MT_DENSE_AUTO,
    MT_DENSE_OPENBLAS,
    MT_DENSE_ONEDNN
} mt_dense_backend;

/* "oneDNN 2.6.3" when the build has it, else NULL. */
const char *mt_onednn_version(void);

typedef struct mt_shape {
    size_t c, h, w;
} mt_shape;

static inline size_t mt_shape_size(mt_shape s) { return s.c * s.h * s.w; }

/* What the config says about one layer. Unused fields stay zero. */
typedef struct mt_layer_spec {
    mt_layer_kind kind;
    size_t units;              /* dense: output features */
    size_t inputs;             /* dense: declared input features, 0 = any */
    size_t filters;            /* conv: output channels */
    size_t size, stride, pad;  /* conv and pool window */
    float alpha;               /* leaky relu: slope for x < 0 */
    float rate;                /* dropout: probability of dropping */
    float momentum, eps;       /* batch norm running stats and epsilon */
    mt_init init;              /* dense and conv weights */
    mt_conv_backend backend;   /* conv */
    mt_dense_backend dense_backend; /* dense */
    int bf16;                  /* [train] precision = bf16: the products'
                                  inputs in bfloat16, sums and parameters
                                  in float32 (dense, oneDNN conv) */
    float weight_decay, l1;    /* this layer's penalties on its parameters;
                                  NaN (the config reader's default): the
                                  [optimizer] ones. Read by the trainer. */
    int line;                  /* config line of the section, for errors */
} mt_layer_spec;

/* What forward needs besides the input. Dropout keys its mask by the global
 * sample index, so sample i gets the same mask on any rank count. */
typedef struct mt_step_ctx {
    int train;        /* 1: dropout active, batch norm uses batch stats */
    uint64_t seed;
    uint64_t step;    /* optimizer step (global) */
    uint64_t sample0; /* global index of this batch's first sample */
    int recompute;    /* 1: a forward done again for its backward (a
                         pipeline's): batch norm leaves its running
                         statistics as the first pass left them */
    /* If set: called before the forward of each layer (the deferred
     * update moves its reductions and applies a layer's last step). */
    void (*before_layer)(void *user, size_t layer);
    void *user;
} mt_step_ctx;

/* One named tensor of a layer: a parameter (with gradient) or state such as
 * batch norm's running mean (grad NULL). Shape is the natural one, e.g.
 * dense weight (out, in), conv weight (out, in, kh, kw). */
typedef struct mt_tensor {
    char name[16];
    int ndim;
    size_t dims[4];
    size_t n;
    float *data; /* view into the model's params or state arena */
    float *grad; /* view into the grads arena; NULL for state */
} mt_tensor;

typedef struct mt_layer mt_layer;

typedef struct mt_layer_ops {
    const char *kind_name; /* the INI section name, e.g. "conv" */
    /* From spec and in: sets out, the tensors' names and shapes; checks the
     * spec (MT_EINVAL with a message naming the layer). May set l->ops to
     * another table of the same kind (conv's backends). */
    int (*setup)(mt_layer *l, char *err);
    /* Allocates scratch for max_batch samples. NULL if none is needed. */
    int (*alloc)(mt_layer *l, char *err);
    /* Initial parameter values from the counter RNG. NULL if no params. */
    void (*init_params)(mt_layer *l, uint64_t seed);
    /* x is (B, in), y is (B, out). May record what backward needs. */
    void (*forward)(mt_layer *l, const mt_step_ctx *ctx, const float *x,
                    float *y, size_t B);
    /* Adds (+=) into the parameter gradients; overwrites dx, which is NULL
     * when nobody needs it (the first layer). */
    void (*backward)(mt_layer *l, const float *x, const float *y,
                     const float *dy, float *dx, size_t B);
    /* Optional, both or neither: backward in two halves, for a pipeline
     * that defers the second (zb): the input gradient alone (dx may be
     * NULL: nothing to do), and the parameter gradients alone (+=), which
     * may run later from kept copies of x and dy. */
    void (*backward_input)(mt_layer *l, const float *x, const float *y,
                           const float *dy, float *dx, size_t B);
    void (*backward_weight)(mt_layer *l, const float *x, const float *dy,
                            size_t B);
    /* 1: backward reads only x, y, dy and the parameters (nothing forward
     * left in scratch), so it may run long after the forward, from kept
     * activations: a pipeline then keeps them instead of recomputing.
     * Layers with backward_input and backward_weight qualify through
     * those, which have this property by contract. */
    int stateless_backward;
    /* Optional: what backward needs beyond x, y and dy lives in scratch
     * by sample, this many floats a row (sample n of a batch at n times
     * that), as dropout's mask: a pipeline keeping activations keeps a
     * micro-batch's scratch rows with them (it shifts l->scratch to the
     * micro-batch's first row, as it shifts the activations). */
    size_t (*scratch_row)(const mt_layer *l);
    /* Optional: frees what the layer holds besides plain scratch memory
     * (conv's oneDNN primitives), before mt_layer_free frees scratch. */
    void (*release)(mt_layer *l);
    /* Optional: how the layer computes, for the model summary (conv:
     * "im2col + OpenBLAS", "oneDNN jit:avx2"). */
    const char *(*describe)(const mt_layer *l);
} mt_layer_ops;

struct mt_layer {
    const mt_layer_ops *ops;
    mt_layer_spec spec;
    size_t index;     /* 0-based position in the model */
    char name[24];    /* e.g. "conv1", "dense5": used in files and errors */
    mt_shape in, out; /* per sample */
    size_t max_batch;
    mt_tensor param[2]; /* weight/gamma, bias/beta */
    int n_param;
    mt_tensor state[2]; /* batch norm running mean, running var */
    int n_state;
    void *scratch; /* owned; freed by mt_layer_free */
    size_t scratch_bytes;
};

/* The ops table of a kind; names map to kinds for the config reader. */
const mt_layer_ops *mt_layer_ops_of(mt_layer_kind kind);
/* Kind for an INI section name ("conv", "dense", ...); -1 if unknown. */
int mt_layer_kind_from_name(const char *name);

/* Sets up a layer from its spec and input shape (no memory yet). */
int mt_layer_setup(mt_layer *l, const mt_layer_spec *spec, size_t index,
                   mt_shape in, size_t max_batch, char *err);
/* Frees the layer's scratch. Safe on a zeroed layer and twice. */
void mt_layer_free(mt_layer *l);

/* Scratch helper for the layer files: one zeroed block of `bytes`. */
int mt__layer_scratch(mt_layer *l, size_t bytes, char *err);

#endif
