/* Dequantization and float rounding (issue 20), shared by
 * wc_decode_tensor_dequant and its tests. */
#ifndef WC_DEQUANT_H
#define WC_DEQUANT_H

#include <stdint.h>

#include "wc_internal.h"

/* float32 to bf16 / f16 bits, rounded to nearest, ties to even (IEEE
 * 754's default), subnormals kept, out-of-range values to +-inf, NaN kept
 * a quiet NaN. */
uint16_t wc_f32_to_bf16(float f);
uint16_t wc_f32_to_f16(float f);

/* out[r][c] = q[r][c] * scales[r] (float32 product), stored as dtype
 * (BF16, F16 or F32) with the rounding above; scales NULL: a scale of 1.
 * Converts in place where out is q's buffer with q in its last rows * cols
 * bytes (read ahead of write, element by element). */
void wc_dequant_rows(const int8_t *q, const float *scales, uint64_t rows, uint64_t cols,
                     wc_dtype dtype, void *out);

#endif
