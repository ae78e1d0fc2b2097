/* Prediction (docs/FORMAT.md, "Modes", stage 3) over a whole decoded
 * tensor, after the rANS decode and inverse transform of all its tiles.
 *
 * Every prediction looks only at the same row (left) and at row r - D
 * (top, avg, planar), so the rows split into D independent chains
 * r = j, j + D, j + 2D, ...; one block walks one chain, row by row, and each
 * row tile segment by tile segment (a segment's mode is its tile's):
 *   none    nothing
 *   top     q += up                                  (parallel)
 *   left    prefix sum along the row from `left`      (block scan)
 *   planar  prefix sum from (left - upleft), then + up (block scan)
 *   avg     a true recurrence: one thread walks the segment
 * All arithmetic is modulo 256. */
#include <cuda_runtime.h>

#include "kernels.cuh"

#define PT 256          /* threads per block */
#define PB 16           /* bytes per thread per chunk */

/* In-place inclusive prefix sum (mod 256) of q[0..n) plus carry-in; returns
 * the last value. Every thread of the block calls it. */
__device__ uint32_t block_prefix(uint8_t *q, uint32_t n, uint32_t carry)
{
    __shared__ uint32_t warp_tot[PT / 32];
    __shared__ uint32_t chunk_carry;
    const uint32_t t = threadIdx.x, lane = t & 31, warp = t >> 5;
    for (uint32_t base = 0; base < n; base += PT * PB) {
        uint32_t v[PB], sum = 0;
        const uint32_t at = base + t * PB;
#pragma unroll
        for (int k = 0; k < PB; k++) {
            v[k] = at + k < n ? q[at + k] : 0;
            sum += v[k];
            v[k] = sum;
        }
        uint32_t inc = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            uint32_t y = __shfl_up_sync(0xffffffffu, inc, o);
            if (lane >= o) inc += y;
        }
        if (lane == 31) warp_tot[warp] = inc;
        __syncthreads();
        uint32_t before = carry;
        for (uint32_t k = 0; k < warp; k++) before += warp_tot[k];
        before += inc - sum;
#pragma unroll
        for (int k = 0; k < PB; k++)
            if (at + k < n) q[at + k] = (uint8_t)(v[k] + before);
        if (t == PT - 1) chunk_carry = before + sum;
        __syncthreads();
        carry = chunk_carry & 0xff;
        __syncthreads();
    }
    return carry;
}

/* Block (x, y) walks chains x, x + gridDim.x, ... of job y. */
__global__ void __launch_bounds__(PT) wc_predict_kernel(const wc_gpu_pred_job *jobs, const uint8_t *desc)
{
    const wc_gpu_pred_job p = jobs[blockIdx.y];
    const uint8_t *modes = desc + p.modes_off;
    const uint64_t D = p.top_distance;
    const uint64_t chains = D < p.rows ? D : p.rows;
    for (uint64_t j = blockIdx.x; j < chains; j += gridDim.x) {
        for (uint64_t r = j; r < p.rows; r += D) {
            uint8_t *row = p.q + r * p.cols;
            const uint8_t *upr = r >= D ? row - D * p.cols : nullptr;
            const uint64_t trow = (r / p.tile_rows) * p.tiles_across;
            for (uint32_t tc = 0; tc < p.tiles_across; tc++) {
                const uint32_t pm = modes[trow + tc] & 15;
                const uint64_t c0 = (uint64_t)tc * p.tile_cols;
                const uint32_t w = (uint32_t)min((uint64_t)p.tile_cols, p.cols - c0);
                uint8_t *q = row + c0;
                const uint8_t *up = upr ? upr + c0 : nullptr;
                /* q[-1] was finished by this block (earlier segment, barrier
                 * below); up[] by an earlier row of this chain. */
                const uint32_t left = c0 ? q[-1] : 0, upleft = c0 && up ? up[-1] : 0;
                if (pm == 2 || pm == 4) {
                    if (pm == 4) block_prefix(q, w, (left - upleft) & 0xff);
                    if (up)
                        for (uint32_t c = threadIdx.x; c < w; c += PT) q[c] = (uint8_t)(q[c] + up[c]);
                } else if (pm == 1) {
                    block_prefix(q, w, left);
                } else if (pm == 3) {
                    if (threadIdx.x == 0) {
                        int l = (int8_t)left;
                        for (uint32_t c = 0; c < w; c++) {
                            int t = up ? (int8_t)up[c] : 0;
                            uint8_t v = (uint8_t)(q[c] + ((l + t) >> 1));
                            q[c] = v;
                            l = (int8_t)v;
                        }
                    }
                }
                __syncthreads();
            }
        }
    }
}

extern "C" int wc_gpu_launch_predict(const wc_gpu_pred_job *jobs, uint32_t n, uint64_t max_chains,
                                     const uint8_t *desc, void *stream)
{
    const unsigned gx = (unsigned)(max_chains < 4096 ? max_chains : 4096);
    (void)cudaGetLastError();
    for (uint32_t j0 = 0; j0 < n && gx; j0 += 65535) { /* gridDim.y's limit */
        const unsigned gy = n - j0 < 65535 ? n - j0 : 65535;
        wc_predict_kernel<<<dim3(gx, gy), PT, 0, (cudaStream_t)stream>>>(jobs + j0, desc);
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return (int)e;
    }
    return 0;
}
