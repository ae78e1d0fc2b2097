/* Record hashes (XXH3_64bits) on the device, as cuda/hash_ref.c splits
 * them: a batch's segments, one per record, each added to its record's
 * state (wcg_xxh3_stream in device memory) as wcg_xxh3_stream_add does.
 *   sum kernel:  one warp per whole 1,024-byte block of every segment, its
 *                eight lane sums into the batch's sum array (memory-bound);
 *   scan kernel: one warp per segment: the head finishes the block begun
 *                in `part` (summed by the warp, stepped), the block sums
 *                are scanned in order (lanes 0-7, one chain each), the rest
 *                goes to `part`, the last 64 bytes of the record to last64.
 * Segments start anywhere: a block is read as aligned words funnel-shifted
 * into place (the aligned word holding a block's last byte ends inside the
 * allocation that holds the byte). */
#include <cuda_runtime.h>
#include <stdint.h>

#include "hash_ref.h"

#define HS_WARPS 8 /* warps per block of the sum kernel */

__constant__ uint64_t c_secret[24]; /* the 192-byte default secret */

/* Word w (0..127) of the 1,024 bytes at p, any alignment; through the
 * read-only cache (RO: bytes no thread of this kernel writes) or not. */
template <bool RO> __device__ __forceinline__ uint64_t load(const uint64_t *p) { return RO ? __ldg(p) : *p; }

template <bool RO> __device__ __forceinline__ uint64_t word_at(const uint8_t *p, unsigned w)
{
    const uintptr_t a = (uintptr_t)p;
    const unsigned sh = (unsigned)(a & 7u) * 8u;
    const uint64_t *base = (const uint64_t *)(a & ~(uintptr_t)7);
    const uint64_t lo = load<RO>(base + w);
    if (!sh) return lo;
    return (lo >> sh) | (load<RO>(base + w + 1) << (64u - sh));
}

/* The block's sum, lane t & 7 of it in thread t < 8 (all 32 threads take part). */
template <bool RO> __device__ __forceinline__ uint64_t warp_block_sum(const uint8_t *blk)
{
    const unsigned t = threadIdx.x & 31u, lane = t & 7u;
    uint64_t prod = 0, vsum = 0;
#pragma unroll
    for (unsigned k = 0; k < 4; k++) {
        const unsigned w = t + 32u * k; /* stripe w / 8, lane w % 8 == lane */
        const uint64_t v = word_at<RO>(blk, w), key = v ^ c_secret[w / 8u + lane];
        vsum += v;
        prod += (uint64_t)(uint32_t)key * (key >> 32);
    }
    /* the four threads of each lane: t, t ^ 8, t ^ 16, t ^ 24 */
    prod += __shfl_xor_sync(0xffffffffu, prod, 8);
    vsum += __shfl_xor_sync(0xffffffffu, vsum, 8);
    prod += __shfl_xor_sync(0xffffffffu, prod, 16);
    vsum += __shfl_xor_sync(0xffffffffu, vsum, 16);
    /* lane l's sum: its products, and the words of lane l ^ 1 (acc[i ^ 1] += v[i]) */
    return prod + __shfl_xor_sync(0xffffffffu, vsum, 1);
}

__device__ __forceinline__ uint64_t step(uint64_t a, uint64_t sum, unsigned lane)
{
    a += sum;
    a ^= a >> 47;
    a ^= c_secret[16 + lane];
    return a * 0x9E3779B1ull;
}

__global__ void __launch_bounds__(32 * HS_WARPS)
    wcg_hash_sums(const wcg_hash_job *jobs, uint32_t n_jobs, uint64_t total, uint64_t *sums)
{
    const uint64_t i = (uint64_t)blockIdx.x * HS_WARPS + (threadIdx.x >> 5);
    if (i >= total) return;
    uint32_t lo = 0, hi = n_jobs; /* the job whose sums hold i: the last with sums <= i */
    while (hi - lo > 1) {
        const uint32_t mid = (lo + hi) / 2;
        if (jobs[mid].sums <= i) lo = mid;
        else hi = mid;
    }
    const wcg_hash_job *j = &jobs[lo];
    const uint64_t s = warp_block_sum<true>(j->src + j->head + (i - j->sums) * WCG_XXH3_BLOCK);
    if ((threadIdx.x & 31u) < 8u) sums[i * 8 + (threadIdx.x & 7u)] = s;
}

__global__ void __launch_bounds__(32) wcg_hash_scan(const wcg_hash_job *jobs, const uint64_t *sums,
                                                     wcg_xxh3_stream *states)
{
    const wcg_hash_job *j = &jobs[blockIdx.x];
    wcg_xxh3_stream *s = &states[j->state];
    const unsigned t = threadIdx.x, lane = t & 7u;
    const uint64_t at = s->at, len = s->len, body = (len - 1) / WCG_XXH3_BLOCK * WCG_XXH3_BLOCK; /* wcg_xxh3_blocks */
    const uint64_t in = at % WCG_XXH3_BLOCK;
    uint64_t acc = t < 8 ? s->acc[lane] : 0;
    /* the record's last 64 bytes, where this segment holds them */
    const uint64_t from = at > len - 64 ? at : len - 64;
    for (uint64_t p = from + t; p < at + j->n; p += 32) s->last64[p - (len - 64)] = j->src[p - at];
    /* 1: the head into part; a body block it completes is summed and stepped */
    for (uint64_t k = t; k < j->head; k += 32) s->part[in + k] = j->src[k];
    __syncwarp();
    if (j->head && (in + j->head) % WCG_XXH3_BLOCK == 0 && at + j->head <= body) {
        const uint64_t sum = warp_block_sum<false>(s->part); /* written just now: not through __ldg */
        if (t < 8) acc = step(acc, sum, lane);
    }
    __syncwarp();
    /* 2: the whole blocks' sums, in order */
    if (t < 8) {
        const uint64_t *q = sums + j->sums * 8 + lane;
        uint64_t b = 0;
        for (; b + 4 <= j->blocks; b += 4) { /* four loads in flight before the chain uses them */
            const uint64_t s0 = q[8 * b], s1 = q[8 * b + 8], s2 = q[8 * b + 16], s3 = q[8 * b + 24];
            acc = step(step(step(step(acc, s0, lane), s1, lane), s2, lane), s3, lane);
        }
        for (; b < j->blocks; b++) acc = step(acc, q[8 * b], lane);
        s->acc[lane] = acc;
    }
    /* 3: the rest begins the next block, or is the tail */
    const uint8_t *rest = j->src + j->head + j->blocks * WCG_XXH3_BLOCK;
    const uint64_t n_rest = j->n - j->head - j->blocks * WCG_XXH3_BLOCK;
    for (uint64_t k = t; k < n_rest; k += 32) s->part[k] = rest[k];
    __syncwarp();
    if (t == 0) s->at = at + j->n;
}

extern "C" int wcg_hash_setup(void)
{
    return (int)cudaMemcpyToSymbol(c_secret, wcg_xxh3_secret(), sizeof c_secret);
}

extern "C" int wcg_hash_launch(const wcg_hash_job *jobs, uint32_t n_jobs, uint64_t total, uint64_t *sums,
                               wcg_xxh3_stream *states, void *stream)
{
    if (!n_jobs) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    (void)cudaGetLastError();
    if (total) {
        const uint64_t grid = (total + HS_WARPS - 1) / HS_WARPS;
        if (grid > 0x7fffffffu) return (int)cudaErrorInvalidValue;
        wcg_hash_sums<<<(unsigned)grid, 32 * HS_WARPS, 0, st>>>(jobs, n_jobs, total, sums);
    }
    wcg_hash_scan<<<n_jobs, 32, 0, st>>>(jobs, sums, states);
    return (int)cudaGetLastError();
}
