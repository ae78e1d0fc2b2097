/* Frames: a 4-byte little-endian payload length, then the payload. Kept free
 * of I/O so that the fuzz target drives it directly. */
#include <stdlib.h>
#include <string.h>

#include "wcd.h"

int wcd_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame, const uint8_t **payload,
                   uint32_t *plen, size_t *consumed)
{
    if (len < 4) return 0;
    uint32_t n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
                 (uint32_t)buf[3] << 24;
    if (n > max_frame) return WC_EPROTO;
    if (len - 4 < n) return 0;
    *payload = buf + 4;
    *plen = n;
    *consumed = 4 + (size_t)n;
    return 1;
}

int wcd_frame_pack_reply(const Wcodec__V1__Reply *r, uint8_t **out, size_t *len)
{
    size_t n = wcodec__v1__reply__get_packed_size(r);
    if (n > UINT32_MAX) return WC_ERANGE;
    uint8_t *b = malloc(4 + n);
    if (!b) return WC_ENOMEM;
    b[0] = (uint8_t)n;
    b[1] = (uint8_t)(n >> 8);
    b[2] = (uint8_t)(n >> 16);
    b[3] = (uint8_t)(n >> 24);
    wcodec__v1__reply__pack(r, b + 4);
    *out = b;
    *len = 4 + n;
    return 0;
}
