/* Inverse integer transforms (docs/FORMAT.md, "Modes", stage 2), as device
 * functions: the decode kernel applies them to a tile right after its rANS
 * decode (fused), transform.cu's kernel does the same as a separate pass. */
#ifndef WC_CUDA_TRANSFORM_CUH
#define WC_CUDA_TRANSFORM_CUH

#include <stdint.h>

/* Haar step: (s, d) -> (a, b) with a = s - (sx(d) >> 1), b = a + d. */
__device__ __forceinline__ void wc_haar_inv(uint32_t &s, uint32_t &d)
{
    uint32_t a = (s - (uint32_t)((int32_t)(int8_t)d >> 1)) & 0xff;
    d = (a + d) & 0xff;
    s = a;
}

/* One block of four columns (ss, ds, sd, dd) back to four values. */
__device__ __forceinline__ void wc_wht4_inv(uint32_t &p0, uint32_t &p1, uint32_t &p2, uint32_t &p3)
{
    uint32_t s0 = p0, s1 = p1, d0 = p2, d1 = p3;
    wc_haar_inv(s0, s1);
    wc_haar_inv(d0, d1);
    p0 = s0, p1 = d0, p2 = s1, p3 = d1;
    wc_haar_inv(p0, p1);
    wc_haar_inv(p2, p3);
}

/* The whole h x w tile at p (row stride `stride`), in place, by one warp.
 * tx: 1 Haar, 2 WHT4; anything else leaves the tile alone. The caller
 * makes the tile's bytes visible to the warp first (__syncwarp). */
__device__ __forceinline__ void wc_itx_tile_warp(uint8_t *p, uint64_t stride, uint32_t h, uint32_t w,
                                                 uint32_t tx, uint32_t lane)
{
    if (tx == 1) {
        const uint32_t per_row = w / 2;
        const uint64_t units = (uint64_t)per_row * h;
        for (uint64_t u = lane; u < units; u += 32) {
            uint32_t y = (uint32_t)(u / per_row), k = (uint32_t)(u - (uint64_t)y * per_row);
            uint8_t *q = p + y * stride + 2 * k;
            uint32_t s = q[0], d = q[1];
            wc_haar_inv(s, d);
            q[0] = (uint8_t)s, q[1] = (uint8_t)d;
        }
    } else if (tx == 2) {
        const uint32_t full = w / 4, per_row = full + ((w & 3) >= 2);
        const uint64_t units = (uint64_t)per_row * h;
        for (uint64_t u = lane; u < units; u += 32) {
            uint32_t y = (uint32_t)(u / per_row), k = (uint32_t)(u - (uint64_t)y * per_row);
            uint8_t *q = p + y * stride + 4 * k;
            if (k < full) {
                uint32_t a = q[0], b = q[1], c = q[2], d = q[3];
                wc_wht4_inv(a, b, c, d);
                q[0] = (uint8_t)a, q[1] = (uint8_t)b, q[2] = (uint8_t)c, q[3] = (uint8_t)d;
            } else {
                uint32_t s = q[0], d = q[1];
                wc_haar_inv(s, d);
                q[0] = (uint8_t)s, q[1] = (uint8_t)d;
            }
        }
    }
}

#endif
