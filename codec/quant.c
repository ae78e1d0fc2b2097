/* INT8 quantizer. Built without -ffast-math: every step is IEEE float32. */
#include <math.h>

#include "quant.h"

bool wc_dtype_quantizable(wc_dtype dt, bool ints_as_float)
{
    switch (dt) {
    case WC_DT_F32: case WC_DT_F16: case WC_DT_BF16: return true;
    case WC_DT_I16: case WC_DT_I32: return ints_as_float;
    default: return false;
    }
}

float wc_load_as_f32(const uint8_t *data, wc_dtype dt, size_t i)
{
    switch (dt) {
    case WC_DT_F32: {
        float f;
        memcpy(&f, data + 4 * i, 4);
        return f;
    }
    case WC_DT_F16: return wc_f16_to_f32(wc_rd16(data + 2 * i));
    case WC_DT_BF16: return wc_bf16_to_f32(wc_rd16(data + 2 * i));
    case WC_DT_I16: return (float)(int16_t)wc_rd16(data + 2 * i);
    case WC_DT_I32: return (float)(int32_t)wc_rd32(data + 4 * i);
    default: return NAN;
    }
}

int wc_quantize_row(const uint8_t *row, wc_dtype dt, size_t n, int8_t *q, float *scale,
                    size_t *bad_col)
{
    float amax = 0.0f;
    for (size_t c = 0; c < n; c++) {
        float w = wc_load_as_f32(row, dt, c);
        if (!isfinite(w)) {
            *bad_col = c;
            return WC_ERANGE;
        }
        float a = fabsf(w);
        if (a > amax) amax = a;
    }
    float s = amax > 0.0f ? amax / 127.0f : 1.0f;
    /* amax / 127 can underflow to 0 for subnormal rows: w / 0 would be Inf. */
    if (s == 0.0f) s = 1.0f;
    for (size_t c = 0; c < n; c++) {
        float v = rintf(wc_load_as_f32(row, dt, c) / s);
        q[c] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v);
    }
    *scale = s;
    return 0;
}
