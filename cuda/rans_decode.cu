/* Per-tile rANS decode (docs/FORMAT.md, "Tile streams"): one warp per tile,
 * lane l owning interleaved state l; the lanes that need a renormalisation
 * word take consecutive words in lane order (ballot + popc). A block's warps
 * decode tiles of one tensor and share its expanded frequency tables in
 * shared memory (kernels.cuh: fc[s] = freq | cum << 16 and the slot ->
 * symbol bytes, or for one table the packed slot entries).
 * The inverse transform of the tile's mode follows in the same kernel. */
#include <cuda_runtime.h>

#include "kernels.cuh"
#include "transform.cuh"

#define WC_RANS_L (1u << 16)
#define FULL_MASK 0xffffffffu

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

/* Makes words [pos, end) of the stream present in the ring (end - pos <=
 * SEG_WORDS, so the window spans at most two segments): while they are
 * not, waits for the oldest segment in flight and issues the next. The slot
 * an issue overwrites, AHEAD segments on, is then never one of the two
 * being read. */
static_assert(AHEAD + 2 <= RING_SEGS, "ring too small for its segments in flight");
__device__ __forceinline__ void ring_ensure(uint16_t *ring, const uint16_t *words, uint32_t nw, uint32_t end,
                                            uint32_t &ready, uint32_t lane)
{
    while ((end + SEG_WORDS - 1) / SEG_WORDS > ready) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(AHEAD - 1));
        __syncwarp();
        seg_issue(ring, words, nw, ready + AHEAD, lane);
        ready++;
    }
}

/* A warp's decoder state; lane l decodes symbols l, l + 32, l + 64, ... */
struct tile_dec {
    uint32_t x, pos;          /* lane state; words consumed by the warp */
    uint32_t ty, tx, cur_ty;  /* row and column (in the tile) of the lane's symbol; row of its table */
    const uint32_t *fct;      /* fc[] of the lane's table, or the packed slot table */
    const uint8_t *sym;       /* slot_sym[] of the lane's table (unpacked) */
};

/* One step of the warp: symbol i of the tile for this lane (when ACTIVE or
 * i < n). MULTI: a table per row (row map); GENERAL: the tile's rows are
 * not contiguous in the output; PACKED: one table, packed layout. */
template <bool MULTI, bool GENERAL, bool PACKED, bool ALL>
__device__ __forceinline__ void dec_step(tile_dec &d, uint32_t i, uint32_t n, const uint8_t *tab, uint32_t tab_bytes,
                                         const uint8_t *rowmap, uint8_t *out, uint64_t stride, uint32_t w,
                                         uint32_t bits, uint32_t lt, const uint16_t *ring)
{
    const bool active = ALL || i < n;
    if (MULTI && active && d.ty != d.cur_ty) {
        d.cur_ty = d.ty;
        const uint8_t *t = tab + (uint32_t)rowmap[d.ty] * tab_bytes;
        d.fct = (const uint32_t *)t;
        d.sym = t + 1024;
    }
    const uint32_t x = d.x, slot = x & ((1u << bits) - 1);
    uint32_t s, y;
    if (PACKED) {
        const uint32_t e = d.fct[slot];
        s = e & 0xffu;
        y = ((e >> 20) + 1) * (x >> bits) + ((e >> 8) & 0xfffu);
    } else {
        s = d.sym[slot];
        const uint32_t fc = d.fct[s];
        y = (fc & 0xffffu) * (x >> bits) + slot - (fc >> 16);
    }
    const bool need = active && y < WC_RANS_L;
    const uint32_t b = __ballot_sync(FULL_MASK, need);
    if (need) y = y << 16 | ring[(d.pos + __popc(b & lt)) % RING_WORDS];
    d.pos += __popc(b);
    if (active) {
        d.x = y;
        if (GENERAL) out[(uint64_t)d.ty * stride + d.tx] = (uint8_t)s;
        else out[i] = (uint8_t)s;
    }
    if (MULTI || GENERAL) {
        if (w >= 32) {
            d.tx += 32;
            if (d.tx >= w) d.tx -= w, d.ty++;
        } else {
            const uint32_t j = i + 32;
            d.ty = j / w;
            d.tx = j - d.ty * w;
        }
    }
}

/* Decodes one tile (h x w at out, row stride `stride`); false when its
 * stream fails the end-state or word-count check. The steps in which every
 * lane has a symbol go two at a time, with one ring check for both. */
template <bool MULTI, bool GENERAL, bool PACKED>
__device__ __forceinline__ bool decode_tile(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                            const uint8_t *stream, uint32_t len, uint8_t *out,
                                            uint64_t stride, uint32_t h, uint32_t w, uint32_t bits,
                                            uint32_t lane, uint16_t *ring)
{
    if (len < 128 || (len - 128) & 3) return false;
    const uint16_t *words = (const uint16_t *)(stream + 128);
    const uint32_t nw = (len - 128) / 2;
#pragma unroll
    for (uint32_t k = 0; k < AHEAD; k++) seg_issue(ring, words, nw, k, lane);
    tile_dec d;
    d.x = __ldg((const uint32_t *)stream + lane);
    bool ok = d.x >= WC_RANS_L;
    const uint32_t lt = (1u << lane) - 1;
    const uint32_t n = h * w;
    uint32_t ready = 0;      /* segments known complete */
    d.pos = 0;
    d.fct = (const uint32_t *)tab;
    d.sym = tab + 1024;
    d.ty = 0, d.tx = lane, d.cur_ty = UINT32_MAX;
    if (MULTI || GENERAL) {
        d.ty = lane / w;
        d.tx = lane - d.ty * w;
    }
    if (MULTI && d.ty < h) {
        d.cur_ty = d.ty;
        const uint8_t *t = tab + (uint32_t)rowmap[d.ty] * tab_bytes;
        d.fct = (const uint32_t *)t;
        d.sym = t + 1024;
    }

    const uint32_t full = n / 32;
    uint32_t k = 0;
    for (; k + 2 <= full; k += 2) {
        ring_ensure(ring, words, nw, d.pos + 64, ready, lane);
        dec_step<MULTI, GENERAL, PACKED, true>(d, 32 * k + lane, n, tab, tab_bytes, rowmap, out, stride, w, bits, lt, ring);
        dec_step<MULTI, GENERAL, PACKED, true>(d, 32 * k + 32 + lane, n, tab, tab_bytes, rowmap, out, stride, w, bits, lt, ring);
    }
    for (; 32 * k < n; k++) {
        ring_ensure(ring, words, nw, d.pos + 32, ready, lane);
        dec_step<MULTI, GENERAL, PACKED, false>(d, 32 * k + lane, n, tab, tab_bytes, rowmap, out, stride, w, bits, lt, ring);
    }
    asm volatile("cp.async.wait_all;\n" ::);
    __syncwarp();
    ok = __all_sync(FULL_MASK, ok && d.x == WC_RANS_L);
    /* words past nw were zero-filled: pos > nw means the stream ran out */
    const uint32_t pos = d.pos;
    if (pos == nw) return ok;
    if (pos + 1 == nw && (pos & 1) && __ldg(words + pos) == 0) return ok;
    return false;
}

template <bool SHARED, bool MULTI, bool GENERAL>
__global__ void __launch_bounds__(WC_GPU_THREADS, MULTI ? 2 : 3) wc_decode_kernel(wc_gpu_launch l)
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
        const uint32_t n16 = (job->packed ? WC_GPU_PACKED_BYTES(bits) : job->n_tables * tab_bytes) / 16;
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
    const uint8_t *src = l.data + tile.src;
    uint16_t *ring = rings[warp];
    const bool gen = GENERAL && h > 1 && w < cols;
    bool ok;
    if (MULTI && rowmap) {
        ok = gen ? decode_tile<true, true, false>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring)
                 : decode_tile<true, false, false>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring);
    } else if (job->packed) {
        ok = gen ? decode_tile<false, true, true>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring)
                 : decode_tile<false, false, true>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring);
    } else {
        ok = gen ? decode_tile<false, true, false>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring)
                 : decode_tile<false, false, false>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring);
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
