/* Image augmentation: random shifts (a crop of the zero-padded image) and
 * horizontal flips, keyed by (seed, epoch, file row) so that results do
 * not depend on the rank count or the order of samples. */
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"

void mt_augment_image(float *x, mt_shape s, int dx, int dy, int flip,
                      float *tmp)
{
    size_t H = s.h, W = s.w;
    memcpy(tmp, x, mt_shape_size(s) * sizeof(float));
    for (size_t c = 0; c < s.c; c++) {
        const float *src = tmp + c * H * W;
        float *dst = x + c * H * W;
        for (size_t r = 0; r < H; r++)
            for (size_t col = 0; col < W; col++) {
                /* Output pixel (r, col) shows input (r - dy, col' - dx),
                 * col' the column before mirroring. */
                long sc = (long)(flip ? W - 1 - col : col) - dx;
                long sr = (long)r - dy;
                dst[r * W + col] = (sr < 0 || sr >= (long)H || sc < 0 ||
                                    sc >= (long)W)
                                       ? 0.0f
                                       : src[(size_t)sr * W + (size_t)sc];
            }
    }
}

void mt_augment_draw(uint64_t seed, uint64_t epoch, uint64_t row,
                     int max_shift, int allow_flip, int *dx, int *dy,
                     int *flip)
{
    uint64_t span = 2 * (uint64_t)max_shift + 1;
    *dx = (int)mt_rng_below(span, seed, MT_RNG_AUGMENT, epoch, 3 * row) -
          max_shift;
    *dy = (int)mt_rng_below(span, seed, MT_RNG_AUGMENT, epoch, 3 * row + 1) -
          max_shift;
    *flip = allow_flip &&
            mt_rng_below(2, seed, MT_RNG_AUGMENT, epoch, 3 * row + 2);
}
