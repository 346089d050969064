/* Private to src/nn, and only where the build has oneDNN: the engine,
 * stream and thread count that every oneDNN layer shares, and its bf16
 * rule (conv2d_onednn.c makes the engine, dense_onednn.c has the rule;
 * each uses the other's). */
#ifndef MPITRAIN_NN_ONEDNN_H
#define MPITRAIN_NN_ONEDNN_H

#include <dnnl.h>

/* The CPU engine and its stream, made on the first call (oneDNN then
 * follows MPITRAIN_ISA below the CPU's best). */
dnnl_status_t mt__onednn_engine(dnnl_engine_t *engine, dnnl_stream_t *stream);
/* Sets and returns oneDNN's OpenMP threads: [run] threads under
 * OMP_WAIT_POLICY=passive, else one. Call before making or running a
 * primitive: oneDNN cuts a primitive's work for the count it saw then. */
int mt__onednn_threads(void);
/* precision = bf16 runs only on oneDNN's own bf16 kernels (vdpbf16ps,
 * AMX), named so in impl; elsewhere oneDNN emulates them, slower than
 * float32. MT_OK if impl is one; else MT_EINVAL with the refusal,
 * naming the layer and impl ("" if oneDNN had nothing), in err. */
int mt__onednn_bf16_check(const mt_layer *l, const char *impl, char *err);

#endif
