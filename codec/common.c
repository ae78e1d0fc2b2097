/* Error names, dtypes and the byte buffer (wc_fail: fail.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "wc_internal.h"

const char *wc_strerror(int code)
{
    switch (code) {
    case WC_OK: return "success";
    case WC_EINVAL: return "invalid argument";
    case WC_EIO: return "input/output error";
    case WC_ENOMEM: return "out of memory";
    case WC_EFORMAT: return "malformed file";
    case WC_ECHECKSUM: return "checksum mismatch";
    case WC_EVERSION: return "unsupported format version";
    case WC_ERANGE: return "value out of range";
    case WC_ENOTFOUND: return "not found";
    case WC_EUNSUPPORTED: return "unsupported";
    case WC_ECORRUPT: return "corrupt coded stream";
    case WC_ECUDA: return "CUDA error";
    case WC_ENODEV: return "no CUDA device";
    case WC_ECANCELED: return "canceled";
    default: return "unknown error";
    }
}

static const struct {
    const char *name;
    int size;
} dtypes[] = {
    [WC_DT_BOOL] = {"BOOL", 1},     [WC_DT_U8] = {"U8", 1},
    [WC_DT_I8] = {"I8", 1},         [WC_DT_I16] = {"I16", 2},
    [WC_DT_U16] = {"U16", 2},       [WC_DT_F16] = {"F16", 2},
    [WC_DT_BF16] = {"BF16", 2},     [WC_DT_I32] = {"I32", 4},
    [WC_DT_U32] = {"U32", 4},       [WC_DT_F32] = {"F32", 4},
    [WC_DT_F64] = {"F64", 8},       [WC_DT_I64] = {"I64", 8},
    [WC_DT_U64] = {"U64", 8},       [WC_DT_F8_E4M3] = {"F8_E4M3", 1},
    [WC_DT_F8_E5M2] = {"F8_E5M2", 1},
};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

const char *wc_dtype_name(wc_dtype dt)
{
    return (int)dt > 0 && (int)dt < N_DTYPES ? dtypes[dt].name : NULL;
}

int wc_dtype_size(wc_dtype dt)
{
    return (int)dt > 0 && (int)dt < N_DTYPES ? dtypes[dt].size : 0;
}

int wc_dtype_from_name(const char *name)
{
    for (int i = 1; i < N_DTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return WC_EINVAL;
}

int wc_buf_reserve(wc_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra) {
        if (cap > SIZE_MAX / 2) return WC_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) return WC_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int wc_buf_append(wc_buf *b, const void *p, size_t n)
{
    int r = wc_buf_reserve(b, n);
    if (r) return r;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void wc_buf_free(wc_buf *b)
{
    free(b->data);
    *b = (wc_buf){0};
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float wc_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

float wc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | man << 13); /* Inf, NaN */
    if (exp) return f32_from_bits(sign | (exp + 112) << 23 | man << 13);
    if (!man) return f32_from_bits(sign);
    /* subnormal half: value is man * 2^-24, exact in float32 */
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}
