/* wc_decode_tensor_dequant: a tensor decoded straight to BF16/F16/F32.
 *
 * The rule (docs/FORMAT.md, "Dequantized output"): w = q * scale computed in
 * float32 (one rounding, of the product), then rounded to the output dtype
 * to nearest, ties to even. That is what PyTorch's
 * (q.float() * s[:, None]).to(dtype) gives on any device, so the CPU path,
 * a GPU path and an independent PyTorch check agree bit for bit. */
#include <stdlib.h>

#include "dequant.h"
#include "reader.h"

uint16_t wc_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(x >> 16 | 0x40); /* quiet NaN */
    /* add just under half an ulp, plus the kept lsb: ties go to even; an
     * overflow carries into the exponent and lands on inf */
    return (uint16_t)((x + 0x7fffu + (x >> 16 & 1)) >> 16);
}

/* n >> shift rounded to nearest, ties to even */
static uint32_t shr_rne(uint32_t n, unsigned shift)
{
    uint32_t r = n >> shift, rem = n & ((1u << shift) - 1), half = 1u << (shift - 1);
    return r + (rem > half || (rem == half && (r & 1)));
}

uint16_t wc_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | (uint16_t)(ax >> 13 & 0x1ff); /* quiet NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* >= 65520: inf (65504 + half an ulp ties up) */
    if (ax >= 0x38800000u)                       /* normal: rebias 127 -> 15, 23 -> 10 bits */
        return sign | (uint16_t)shr_rne(ax - 0x38000000u, 13); /* a carry moves the exponent */
    if (ax < 0x33000000u) return sign;           /* below 2^-25: to zero (2^-25 ties to 0) */
    /* subnormal: the value in units of 2^-24 is m * 2^(e - 126), e = 102..112 */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    return sign | (uint16_t)shr_rne(m, 126 - e);
}

void wc_dequant_rows(const int8_t *q, const float *scales, uint64_t rows, uint64_t cols,
                     wc_dtype dtype, void *out)
{
    uint8_t *o = out;
    for (uint64_t r = 0, k = 0; r < rows; r++) {
        const float s = scales ? scales[r] : 1.0f;
        for (uint64_t c = 0; c < cols; c++, k++) {
            float w = (float)q[k] * s; /* q[k] read before element k is written */
            if (dtype == WC_DT_F32) {
                memcpy(o + 4 * k, &w, 4);
            } else {
                uint16_t h = dtype == WC_DT_BF16 ? wc_f32_to_bf16(w) : wc_f32_to_f16(w);
                memcpy(o + 2 * k, &h, 2);
            }
        }
    }
}

static float load_f32(const uint8_t *p, wc_dtype dt)
{
    uint16_t h;
    float f;
    if (dt == WC_DT_F32) {
        memcpy(&f, p, 4);
        return f;
    }
    memcpy(&h, p, 2);
    return dt == WC_DT_BF16 ? wc_bf16_to_f32(h) : wc_f16_to_f32(h);
}

/* A raw float tensor of n elements, decoded at `in`, converted to dtype at
 * out (in == out when the element size does not grow: converted forward). */
static void convert_raw(const uint8_t *in, wc_dtype from, uint64_t n, wc_dtype dtype, uint8_t *out)
{
    const int fs = wc_dtype_size(from);
    for (uint64_t k = 0; k < n; k++) {
        float w = load_f32(in + fs * k, from);
        if (dtype == WC_DT_F32) {
            memcpy(out + 4 * k, &w, 4);
        } else {
            uint16_t h = dtype == WC_DT_BF16 ? wc_f32_to_bf16(w) : wc_f32_to_f16(w);
            memcpy(out + 2 * k, &h, 2);
        }
    }
}

static bool is_float(wc_dtype dt) { return dt == WC_DT_F32 || dt == WC_DT_F16 || dt == WC_DT_BF16; }

/* A raw tensor: decoded (hash checked) into out when it fits, else into a
 * buffer of its own, then converted. */
static int dequant_raw(const wc_file *f, size_t i, const wc_tensor_info *ti, wc_dtype dtype,
                       uint8_t *out, uint64_t need, wc_err *err)
{
    if (!is_float(ti->dtype))
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s' is %s, not a float tensor: it has no "
                       "dequantized form", wc_file_label(f), ti->name, wc_dtype_name(ti->dtype));
    const uint64_t n = need / (uint64_t)wc_dtype_size(dtype);
    if (ti->out_bytes <= need) {
        /* the source sits in out's last bytes; converting forward reads each
         * element before anything overwrites it (as in wc_dequant_rows) */
        uint8_t *src = out + (need - ti->out_bytes);
        int r = wc_decode_tensor(f, i, src, ti->out_bytes, NULL, 0, err);
        if (!r && !(ti->dtype == dtype)) convert_raw(src, ti->dtype, n, dtype, out);
        return r;
    }
    uint8_t *tmp = malloc(ti->out_bytes);
    if (!tmp) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = wc_decode_tensor(f, i, tmp, ti->out_bytes, NULL, 0, err);
    if (!r) convert_raw(tmp, ti->dtype, n, dtype, out);
    free(tmp);
    return r;
}

int wc_decode_tensor_dequant(const wc_file *f, size_t i, wc_dtype dtype, void *out,
                             size_t out_size, wc_err *err)
{
    wc_tensor_info ti;
    int r = wc_file_tensor_info(f, i, &ti);
    if (r) return wc_fail(err, r, "%s: no tensor %zu", wc_file_label(f), i);
    if (!is_float(dtype))
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': dequantized output must be BF16, F16 or "
                       "F32, not %s", wc_file_label(f), ti.name,
                       wc_dtype_name(dtype) ? wc_dtype_name(dtype) : "an unknown dtype");
    const uint64_t numel = ti.rows * ti.cols, need = numel * (uint64_t)wc_dtype_size(dtype);
    uint8_t none[1];
    if (!need) out = none; /* an empty tensor: its record is still checked, into valid memory */
    if (out_size < need)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': output buffer of %zu bytes, needs %llu",
                       wc_file_label(f), ti.name, out_size, (unsigned long long)need);
    if (ti.coding == WC_CODING_RAW) return dequant_raw(f, i, &ti, dtype, out, need, err);
    float *scales = ti.n_scales ? malloc(4 * ti.n_scales) : NULL;
    if (ti.n_scales && !scales) return wc_fail(err, WC_ENOMEM, "out of memory");
    /* INT8 values into the last numel bytes of out, dequantized forward in place */
    int8_t *q = (int8_t *)out + (need - numel);
    r = wc_decode_tensor(f, i, q, numel, scales, ti.n_scales, err);
    if (!r) wc_dequant_rows(q, scales, ti.rows, ti.cols, dtype, out);
    free(scales);
    return r;
}
