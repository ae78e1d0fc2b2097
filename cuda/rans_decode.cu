/* Per-tile rANS decode (docs/FORMAT.md, "Tile streams"): one warp per tile,
 * lane l owning interleaved state l; the lanes that need a renormalisation
 * word take consecutive words in lane order (ballot + popc). A block's warps
 * decode tiles of one tensor and share its expanded frequency tables in
 * shared memory (fc[s] = freq | cum << 16, then the slot -> symbol bytes).
 * The inverse transform of the tile's mode follows in the same kernel. */
#include <cuda_runtime.h>

#include "kernels.cuh"
#include "transform.cuh"

#define WC_RANS_L (1u << 16)
#define FULL_MASK 0xffffffffu

/* Decodes one tile. MULTI: a table per row (row map); GENERAL: the tile's
 * rows are not contiguous in the output (tile_cols < cols and h > 1). */
/* Each warp stages its tile's renormalisation words through a ring of
 * RING_SEGS segments of 64 words in shared memory, AHEAD segments in flight
 * (cp.async, zero-filled past the stream's end), so that a step reads its
 * words from shared memory instead of waiting on global memory. */
#define SEG_WORDS 64
#define RING_SEGS 8
#define AHEAD 6
#define RING_WORDS (SEG_WORDS * RING_SEGS)
static_assert(RING_WORDS == WC_GPU_RING_WORDS, "ring size");

__device__ __forceinline__ void seg_issue(uint16_t *ring, const uint16_t *words, uint32_t nw, uint32_t seg,
                                          uint32_t lane)
{
    /* lane copies words 2*lane, 2*lane+1 of the segment (4 bytes) */
    const uint32_t w0 = seg * SEG_WORDS + 2 * lane;
    uint16_t *dst = ring + (seg % RING_SEGS) * SEG_WORDS + 2 * lane;
    const uint32_t saddr = (uint32_t)__cvta_generic_to_shared(dst);
    const uint32_t bytes = w0 + 2 <= nw ? 4u : w0 < nw ? 2u : 0u;
    const void *src = bytes ? (const void *)(words + w0) : (const void *)words;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(saddr), "l"(src), "r"(bytes));
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Decodes one tile. MULTI: a table per row (row map); GENERAL: the tile's
 * rows are not contiguous in the output (tile_cols < cols and h > 1). */
template <bool MULTI, bool GENERAL>
__device__ __forceinline__ bool decode_tile(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                            const uint8_t *stream, uint32_t len, uint8_t *out,
                                            uint64_t stride, uint32_t h, uint32_t w, uint32_t bits,
                                            uint32_t lane, uint16_t *ring)
{
    if (len < 128 || (len - 128) & 3) return false;
    const uint32_t mask = (1u << bits) - 1;
    const uint16_t *words = (const uint16_t *)(stream + 128);
    const uint32_t nw = (len - 128) / 2;
#pragma unroll
    for (uint32_t k = 0; k < AHEAD; k++) seg_issue(ring, words, nw, k, lane);
    uint32_t x = __ldg((const uint32_t *)stream + lane);
    bool ok = x >= WC_RANS_L;
    const uint32_t lt = (1u << lane) - 1;
    const uint32_t n = h * w;
    uint32_t pos = 0;
    uint32_t ready = 0;      /* segments known complete */

    const uint32_t *fct = (const uint32_t *)tab;
    const uint8_t *sym = tab + 1024;
    /* row and column (in the tile) of this lane's symbol */
    uint32_t ty = 0, tx = lane;
    if (MULTI || GENERAL) {
        ty = lane / w;
        tx = lane - ty * w;
    }
    uint32_t cur_ty = UINT32_MAX;
    if (MULTI) {
        if (ty < h) {
            cur_ty = ty;
            const uint8_t *t = tab + (uint32_t)rowmap[ty] * tab_bytes;
            fct = (const uint32_t *)t;
            sym = t + 1024;
        }
    }

    for (uint32_t base = 0; base < n; base += 32) {
        /* words [pos, pos + 32) must be in the ring */
        while ((pos + 32 + SEG_WORDS - 1) / SEG_WORDS > ready) {
            asm volatile("cp.async.wait_group %0;\n" ::"n"(AHEAD - 1));
            __syncwarp();
            seg_issue(ring, words, nw, ready + AHEAD, lane);
            ready++;
        }
        const uint32_t i = base + lane;
        const bool active = i < n;
        if (MULTI && active && ty != cur_ty) {
            cur_ty = ty;
            const uint8_t *t = tab + (uint32_t)rowmap[ty] * tab_bytes;
            fct = (const uint32_t *)t;
            sym = t + 1024;
        }
        const uint32_t slot = x & mask;
        const uint32_t s = sym[slot];
        const uint32_t fc = fct[s];
        uint32_t y = (fc & 0xffffu) * (x >> bits) + slot - (fc >> 16);
        const bool need = active && y < WC_RANS_L;
        const uint32_t b = __ballot_sync(FULL_MASK, need);
        if (need) {
            const uint32_t idx = pos + __popc(b & lt);
            y = y << 16 | ring[idx % RING_WORDS];
        }
        pos += __popc(b);
        if (active) {
            x = y;
            if (GENERAL) out[(uint64_t)ty * stride + tx] = (uint8_t)s;
            else out[i] = (uint8_t)s;
        }
        if (MULTI || GENERAL) {
            if (w >= 32) {
                tx += 32;
                if (tx >= w) tx -= w, ty++;
            } else {
                const uint32_t j = i + 32;
                ty = j / w;
                tx = j - ty * w;
            }
        }
    }
    asm volatile("cp.async.wait_all;\n" ::);
    __syncwarp();
    ok = __all_sync(FULL_MASK, ok && x == WC_RANS_L);
    /* words past nw were zero-filled: pos > nw means the stream ran out */
    if (pos == nw) return ok;
    if (pos + 1 == nw && (pos & 1) && __ldg(words + pos) == 0) return ok;
    return false;
}

template <bool SHARED, bool MULTI, bool GENERAL>
__global__ void __launch_bounds__(WC_GPU_THREADS, 3) wc_decode_kernel(wc_gpu_launch l)
{
    extern __shared__ uint4 smem4[];
    __shared__ uint16_t rings[WC_GPU_WARPS][RING_WORDS];
    const uint32_t bj = l.block_job[blockIdx.x];
    const uint32_t jid = bj & 0x7fffffffu;
    const wc_gpu_job *job = &l.jobs[jid];
    const uint32_t bits = job->prob_bits;
    const uint32_t tab_bytes = WC_GPU_TABLE_BYTES(bits);
    const uint8_t *tab = l.desc + job->tables_off;
    if (SHARED) {
        const uint32_t n16 = job->n_tables * tab_bytes / 16;
        const uint4 *src = (const uint4 *)tab;
        for (uint32_t k = threadIdx.x; k < n16; k += blockDim.x) smem4[k] = src[k];
        tab = (const uint8_t *)smem4;
    }
    if ((bj >> 31) && job->scales_dst && job->scales_src != WC_GPU_NO_SCALES) {
        const float *s = (const float *)(l.desc + job->scales_src);
        for (uint64_t k = threadIdx.x; k < job->rows; k += blockDim.x) job->scales_dst[k] = s[k];
    }
    if (SHARED) __syncthreads();

    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint64_t idx = (uint64_t)blockIdx.x * WC_GPU_WARPS + warp;
    const wc_gpu_tile tile = l.tiles[idx];
    if (tile.tile == WC_GPU_TILE_PAD) return;
    const uint32_t mode = l.modes[idx];
    const uint64_t cols = job->cols;
    const uint64_t tr = tile.tile / job->tiles_across, tc = tile.tile % job->tiles_across;
    const uint64_t r0 = tr * job->tile_rows, c0 = tc * job->tile_cols;
    const uint32_t h = (uint32_t)min((uint64_t)job->tile_rows, job->rows - r0);
    const uint32_t w = (uint32_t)min((uint64_t)job->tile_cols, cols - c0);
    uint8_t *out = job->out + r0 * cols + c0;
    const uint8_t *rowmap = MULTI && job->n_tables > 1 ? l.desc + job->rowmap_off + r0 : nullptr;
    bool ok;
    if (MULTI && rowmap) {
        ok = GENERAL && h > 1 && w < cols
                 ? decode_tile<true, true>(tab, tab_bytes, rowmap, l.data + tile.src, tile.len, out, cols, h, w, bits, lane, rings[threadIdx.x >> 5])
                 : decode_tile<true, false>(tab, tab_bytes, rowmap, l.data + tile.src, tile.len, out, cols, h, w, bits, lane, rings[threadIdx.x >> 5]);
    } else {
        ok = GENERAL && h > 1 && w < cols
                 ? decode_tile<false, true>(tab, tab_bytes, rowmap, l.data + tile.src, tile.len, out, cols, h, w, bits, lane, rings[threadIdx.x >> 5])
                 : decode_tile<false, false>(tab, tab_bytes, rowmap, l.data + tile.src, tile.len, out, cols, h, w, bits, lane, rings[threadIdx.x >> 5]);
    }
    if (!ok) {
        if (lane == 0) atomicMin(&l.errs[jid], (unsigned long long)tile.tile << 8 | WC_GPU_ERR_CORRUPT);
        return;
    }
    if (mode >> 4) {
        __syncwarp();
        wc_itx_tile_warp(out, cols, h, w, mode >> 4, lane);
    }
}

template <bool S, bool M, bool G>
static int launch_one(const wc_gpu_launch *l, cudaStream_t st)
{
    (void)cudaGetLastError(); /* a failure of an earlier call is not this launch's */
    wc_decode_kernel<S, M, G><<<l->n_blocks, WC_GPU_THREADS, S ? l->smem_bytes : 0, st>>>(*l);
    return (int)cudaGetLastError();
}

extern "C" int wc_gpu_decode_setup(int max_smem_optin)
{
    int r;
#define SET(S, M, G)                                                                               \
    if ((r = (int)cudaFuncSetAttribute(wc_decode_kernel<S, M, G>,                                  \
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem_optin - WC_GPU_STATIC_SMEM))) \
        return r;
    SET(true, false, false) SET(true, false, true) SET(true, true, false) SET(true, true, true)
#undef SET
    return 0;
}

extern "C" int wc_gpu_launch_decode(const wc_gpu_launch *l, void *stream)
{
    if (!l->n_blocks) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    const bool s = l->smem_bytes != 0, m = l->multi_table != 0, g = l->general_tiles != 0;
    if (s) {
        if (m) return g ? launch_one<true, true, true>(l, st) : launch_one<true, true, false>(l, st);
        return g ? launch_one<true, false, true>(l, st) : launch_one<true, false, false>(l, st);
    }
    if (m) return g ? launch_one<false, true, true>(l, st) : launch_one<false, true, false>(l, st);
    return g ? launch_one<false, false, true>(l, st) : launch_one<false, false, false>(l, st);
}
