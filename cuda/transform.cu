/* The inverse transforms as a pass of their own over decoded tiles (the
 * decode kernel fuses the same code; this kernel serves tests and the
 * fused-versus-separate measurement). */
#include <cuda_runtime.h>

#include "kernels.cuh"
#include "transform.cuh"

__global__ void __launch_bounds__(WC_GPU_THREADS) wc_itx_kernel(wc_gpu_launch l)
{
    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint64_t idx = (uint64_t)blockIdx.x * WC_GPU_WARPS + warp;
    const wc_gpu_tile tile = l.tiles[idx];
    if (tile.tile == WC_GPU_TILE_PAD) return;
    const uint32_t tx = l.modes[idx] >> 4;
    if (!tx) return;
    const wc_gpu_job *job = &l.jobs[tile.job & ~WC_GPU_JOB_SCALES];
    uint64_t r0, c0;
    uint32_t h, w;
    wc_gpu_tile_rect(job, tile.tile, r0, c0, h, w);
    wc_itx_tile_warp(job->out + r0 * job->cols + c0, job->cols, h, w, tx, lane);
}

extern "C" int wc_gpu_launch_itx(const wc_gpu_launch *l, void *stream)
{
    if (!l->n_blocks) return 0;
    (void)cudaGetLastError();
    wc_itx_kernel<<<l->n_blocks, WC_GPU_THREADS, 0, (cudaStream_t)stream>>>(*l);
    return (int)cudaGetLastError();
}
