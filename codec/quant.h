/* The INT8 quantizer of design.md, decision 1. */
#ifndef WC_QUANT_H
#define WC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "wc_internal.h"

/* Reads element i of a float tensor of dtype dt (F32, F16, BF16, or I16/I32
 * read as float) as float32. */
float wc_load_as_f32(const uint8_t *data, wc_dtype dt, size_t i);
bool wc_dtype_quantizable(wc_dtype dt, bool ints_as_float);

/* Quantizes one row of n values (dtype dt) to q with scale *scale:
 * s = max|w| / 127 in float32 (1 for an all-zero row),
 * q = clamp(rint(w / s), -127, 127), rint rounding half to even.
 * A NaN or infinite value is refused: returns WC_ERANGE and sets *bad_col. */
int wc_quantize_row(const uint8_t *row, wc_dtype dt, size_t n, int8_t *q, float *scale,
                    size_t *bad_col);

#endif
