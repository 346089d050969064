#include "mpitrain/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "nn/internal.h"

static const mt_layer_ops *const ops_by_kind[MT_LAYER_KINDS] = {
    [MT_DENSE] = &mt__dense_ops,         [MT_CONV2D] = &mt__conv2d_ops,
    [MT_MAXPOOL] = &mt__maxpool_ops,     [MT_AVGPOOL] = &mt__avgpool_ops,
    [MT_FLATTEN] = &mt__flatten_ops,     [MT_RELU] = &mt__relu_ops,
    [MT_LEAKY_RELU] = &mt__leaky_relu_ops, [MT_SIGMOID] = &mt__sigmoid_ops,
    [MT_TANH] = &mt__tanh_ops,           [MT_DROPOUT] = &mt__dropout_ops,
    [MT_BATCHNORM] = &mt__batchnorm_ops,
};

const mt_layer_ops *mt_layer_ops_of(mt_layer_kind kind)
{
    return (unsigned)kind < MT_LAYER_KINDS ? ops_by_kind[kind] : NULL;
}

int mt_layer_kind_from_name(const char *name)
{
    for (int k = 0; k < MT_LAYER_KINDS; k++)
        if (strcmp(ops_by_kind[k]->kind_name, name) == 0)
            return k;
    return -1;
}

int mt_layer_setup(mt_layer *l, const mt_layer_spec *spec, size_t index,
                   mt_shape in, size_t max_batch, char *err)
{
    memset(l, 0, sizeof *l);
    l->ops = mt_layer_ops_of(spec->kind);
    if (!l->ops) {
        mt_seterr(err, "layer %zu: unknown layer kind %d", index + 1,
                  (int)spec->kind);
        return MT_EINVAL;
    }
    l->spec = *spec;
    l->index = index;
    l->in = in;
    l->max_batch = max_batch;
    snprintf(l->name, sizeof l->name, "%s%zu", l->ops->kind_name,
             index + 1);
    if (mt_shape_size(in) == 0) {
        mt_seterr(err, "%s: input has no elements", l->name);
        return MT_EINVAL;
    }
    return l->ops->setup(l, err);
}

void mt_layer_free(mt_layer *l)
{
    if (l->ops && l->ops->release)
        l->ops->release(l);
    mt_free(l->scratch);
    l->scratch_bytes = 0;
}

int mt__layer_scratch(mt_layer *l, size_t bytes, char *err)
{
    mt_free(l->scratch);
    l->scratch = mt_calloc(1, bytes);
    if (!l->scratch) {
        mt_seterr(err, "%s: out of memory for %zu bytes of scratch",
                  l->name, bytes);
        return MT_ENOMEM;
    }
    l->scratch_bytes = bytes;
    return MT_OK;
}

void mt__tensor_def(mt_tensor *t, const char *name, int ndim, size_t d0,
                    size_t d1, size_t d2, size_t d3)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    size_t d[4] = {d0, d1, d2, d3};
    t->n = 1;
    for (int i = 0; i < ndim; i++) {
        t->dims[i] = d[i];
        t->n *= d[i];
    }
}

void mt__init_weights(mt_tensor *w, size_t fan_in, size_t fan_out,
                      mt_init init, uint64_t seed, size_t layer)
{
    if (init == MT_INIT_HE) {
        float std = sqrtf(2.0f / (float)fan_in);
        for (size_t i = 0; i < w->n; i++)
            w->data[i] = std * mt_rng_normal(seed, MT_RNG_INIT, layer, i);
    } else {
        float lim = sqrtf(6.0f / (float)(fan_in + fan_out));
        for (size_t i = 0; i < w->n; i++)
            w->data[i] =
                lim * (2.0f * mt_rng_uniform(seed, MT_RNG_INIT, layer, i) -
                       1.0f);
    }
}

size_t mt__window_out(size_t n, size_t size, size_t stride, size_t pad)
{
    if (size == 0 || stride == 0 || n + 2 * pad < size)
        return 0;
    return (n + 2 * pad - size) / stride + 1;
}
