/* Helpers shared by the modules of libwcodec; not installed. */
#ifndef WC_INTERNAL_H
#define WC_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "wcodec/wcodec.h"
#include "wc_fail.h"

#define WC_ATTR_PRINTF(a, b) __attribute__((format(printf, a, b)))

static inline uint16_t wc_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t wc_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t wc_rd64(const uint8_t *p) { return wc_rd32(p) | (uint64_t)wc_rd32(p + 4) << 32; }
static inline void wc_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wc_wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static inline void wc_wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}

/* a * b without overflow; returns 0 and sets *r, or -1 on overflow. */
static inline int wc_mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
    return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}

/* A growable byte buffer; owns its memory. */
typedef struct wc_buf {
    uint8_t *data;
    size_t len, cap;
} wc_buf;

int wc_buf_reserve(wc_buf *b, size_t extra);
int wc_buf_append(wc_buf *b, const void *p, size_t n);
void wc_buf_free(wc_buf *b);

/* fp16 / bf16 to float32, exact. */
float wc_f16_to_f32(uint16_t h);
float wc_bf16_to_f32(uint16_t h);

#endif
