/* Finite-difference checks shared by the layer and loss tests. */
#ifndef MPITRAIN_TESTS_GRADCHECK_H
#define MPITRAIN_TESTS_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "mpitrain/model.h"

/* Fills x[0..n) with distinct values spaced 2 * spacing apart, shuffled,
 * none closer than `spacing` to zero: kinks (relu, max) stay further away
 * than the finite-difference step. */
void gc_fill_spaced(float *x, size_t n, float spacing, uint64_t seed);

/* Worst |analytic - numeric| / (|analytic| + |numeric| + floor) over every
 * input element and parameter of layer 0 of m, for L = sum(r .* y) with
 * random r, using central differences with step h. */
double gc_layer(mt_model *m, size_t B, const mt_step_ctx *ctx, float h,
                double floor);

/* Two backends' floats within float rounding of each other: the first i
 * with |got - want| > 1e-5 (top + |want|) or NaN, or len if none; *top
 * is the largest |want|. Sums of many terms (a weight gradient sums over
 * every output pixel of the batch) may cancel to near zero, so the bound
 * scales with the largest value. */
size_t gc_first_far(const float *got, const float *want, size_t len,
                    float *top);

#endif
