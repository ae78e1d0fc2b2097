/* Dequantization on the device (wc_gpu_dequant): decoded INT8 values times
 * their row's scale, the product in float32, rounded to BF16 or F16 to
 * nearest, ties to even (cuda_bf16.h's and cuda_fp16.h's _rn conversions:
 * IEEE 754's default, subnormals kept, beyond the range +-inf), which is
 * wc_dequant_rows' rule on the CPU (codec/dequant.c) bit for bit. A pass of
 * its own after the decode: it reads one byte and writes two per weight, a
 * few percent of the decode's time, and keeps the decode kernels' registers
 * as they are. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define DQ_THREADS 256
#define DQ_PER_THREAD 4

template <int KIND> __device__ __forceinline__ void store(void *out, uint64_t i, float v)
{
    if (KIND == 0) ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(v);
    else if (KIND == 1) ((__half *)out)[i] = __float2half_rn(v);
    else ((float *)out)[i] = v;
}

/* Block (x, y) covers columns [x * 1024, +1024) of rows y, y + gridDim.y, ...:
 * a row's scale is read once a block, with no division by cols. */
template <int KIND>
__global__ void __launch_bounds__(DQ_THREADS) wc_dequant_kernel(const int8_t *q, const float *scales, uint64_t rows,
                                                                uint64_t cols, void *out)
{
    const uint64_t c0 = ((uint64_t)blockIdx.x * DQ_THREADS + threadIdx.x) * DQ_PER_THREAD;
    for (uint64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float s = scales ? scales[r] : 1.0f;
        const uint64_t base = r * cols;
#pragma unroll
        for (int k = 0; k < DQ_PER_THREAD; k++) {
            const uint64_t c = c0 + k;
            if (c < cols) store<KIND>(out, base + c, (float)q[base + c] * s);
        }
    }
}

/* kind: 0 BF16, 1 F16, 2 F32. Returns a cudaError_t. */
extern "C" int wcg_dequant_launch(const int8_t *q, const float *scales, uint64_t rows, uint64_t cols, int kind,
                                  void *out, void *stream)
{
    if (!rows || !cols) return 0;
    const uint64_t per_block = (uint64_t)DQ_THREADS * DQ_PER_THREAD;
    const dim3 grid((unsigned)((cols + per_block - 1) / per_block), (unsigned)(rows < 65535 ? rows : 65535));
    if ((cols + per_block - 1) / per_block > 0x7fffffffu) return (int)cudaErrorInvalidValue;
    (void)cudaGetLastError();
    cudaStream_t st = (cudaStream_t)stream;
    if (kind == 0) wc_dequant_kernel<0><<<grid, DQ_THREADS, 0, st>>>(q, scales, rows, cols, out);
    else if (kind == 1) wc_dequant_kernel<1><<<grid, DQ_THREADS, 0, st>>>(q, scales, rows, cols, out);
    else wc_dequant_kernel<2><<<grid, DQ_THREADS, 0, st>>>(q, scales, rows, cols, out);
    return (int)cudaGetLastError();
}
