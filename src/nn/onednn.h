/* Private to src/nn, and only where the build has oneDNN: the engine,
 * stream and thread count that every oneDNN layer shares
 * (conv2d_onednn.c makes them; dense_bf16.c uses them too). */
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

#endif
