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
 * RING_SEGS segments in shared memory, AHEAD segments in flight (cp.async,
 * 16 bytes a lane, zero-filled past the stream's end), so that a step reads
 * its words from shared memory instead of waiting on global memory.
 * Segments are aligned to 16 bytes in global memory: the stream (4-byte
 * aligned) starts `shift` words into the first one, and word positions
 * (tile_dec.pos) count from that aligned start. */
#define SEG_WORDS 256
#define RING_SEGS 4
#define AHEAD 2
#define RING_WORDS (SEG_WORDS * RING_SEGS)
static_assert(RING_WORDS == WC_GPU_RING_WORDS, "ring size");

struct ring_src {
    const uint16_t *base;    /* the stream's words, rounded down to 16 bytes */
    uint32_t end;            /* the stream's end, in words from base */
    uint16_t *ring;          /* the warp's ring */
    uint32_t ready;          /* segments known complete */
};

__device__ __forceinline__ void seg_issue(const ring_src &rs, uint32_t seg, uint32_t lane)
{
    /* lane copies words 8*lane .. 8*lane+7 of the segment (16 bytes) */
    const uint32_t w0 = seg * SEG_WORDS + 8 * lane;
    uint16_t *dst = rs.ring + (seg % RING_SEGS) * SEG_WORDS + 8 * lane;
    const uint32_t saddr = (uint32_t)__cvta_generic_to_shared(dst);
    const uint32_t bytes = w0 + 8 <= rs.end ? 16u : w0 < rs.end ? 2 * (rs.end - w0) : 0u;
    const void *src = bytes ? (const void *)(rs.base + w0) : (const void *)rs.base;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(src), "r"(bytes));
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Makes words [pos, end) present in the ring (end - pos <= 64, so the
 * window spans at most two segments): while they are not, waits for the
 * oldest segment in flight and issues the next. The slot an issue
 * overwrites, AHEAD segments on, is then never one of the two being read. */
static_assert(AHEAD + 2 <= RING_SEGS, "ring too small for its segments in flight");
__device__ __forceinline__ void ring_ensure(ring_src &rs, uint32_t end, uint32_t lane)
{
    while ((end + SEG_WORDS - 1) / SEG_WORDS > rs.ready) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(AHEAD - 1));
        __syncwarp();
        seg_issue(rs, rs.ready + AHEAD, lane);
        rs.ready++;
    }
}

/* Decodes the lane's next symbol with table t (when ALL or active) and
 * renormalises its state from the ring; returns the symbol. */
template <bool PACKED, bool ALL>
__device__ __forceinline__ uint32_t dec_sym(uint32_t &x, uint32_t &pos, const uint8_t *t, uint32_t bits, uint32_t lt,
                                            const uint16_t *ring, bool active)
{
    const uint32_t slot = x & ((1u << bits) - 1);
    uint32_t s, y;
    if (PACKED) {
        const uint32_t e = ((const uint32_t *)t)[slot];
        s = e & 0xffu;
        y = ((e >> 20) + 1) * (x >> bits) + ((e >> 8) & 0xfffu);
    } else {
        s = t[1024 + slot];
        const uint32_t fc = ((const uint32_t *)t)[s];
        y = (fc & 0xffffu) * (x >> bits) + slot - (fc >> 16);
    }
    const bool need = (ALL || active) && y < WC_RANS_L;
    const uint32_t bal = __ballot_sync(FULL_MASK, need);
    if (need) y = y << 16 | ring[(pos + __popc(bal & lt)) % RING_WORDS];
    pos += __popc(bal);
    if (ALL || active) x = y;
    return s;
}

/* `steps` steps in which every lane has a symbol, all with table t: the
 * lane's symbols go to o[32 k + lane]. Two steps to a ring check. */
template <bool PACKED>
__device__ __forceinline__ void dec_run(uint32_t &x, uint32_t &pos, ring_src &rs, const uint8_t *t, uint8_t *o,
                                        uint32_t steps, uint32_t bits, uint32_t lane, uint32_t lt)
{
    o += lane;
    uint32_t k = 0;
    for (; k + 2 <= steps; k += 2) {
        ring_ensure(rs, pos + 64, lane);
        o[32 * k] = (uint8_t)dec_sym<PACKED, true>(x, pos, t, bits, lt, rs.ring, true);
        o[32 * k + 32] = (uint8_t)dec_sym<PACKED, true>(x, pos, t, bits, lt, rs.ring, true);
    }
    if (k < steps) {
        ring_ensure(rs, pos + 32, lane);
        o[32 * k] = (uint8_t)dec_sym<PACKED, true>(x, pos, t, bits, lt, rs.ring, true);
    }
}

/* Row shapes of tiles whose steps need to know where a lane's symbol lies
 * (a table per row, or rows not contiguous in the output). ALIGNED: 32
 * divides w, a row is a run of whole steps. WIDE: w > 32, a step spans at
 * most two rows: the walk stays warp-uniform, the step's symbols start at
 * column w - b of row r, lanes below b are in row r and the others in row
 * r + 1. NARROW: w < 32, each lane keeps its own row and column. */
enum { ROWS_ALIGNED = 0, ROWS_WIDE = 1, ROWS_NARROW = 2 };

struct row_walk {
    uint32_t r, b;            /* WIDE: row of lane 0, symbols left in it */
    const uint8_t *t0, *t1;   /* WIDE: tables of rows r and r + 1 */
    uint32_t map2;            /* WIDE: row map entry of row r + 2 */
    uint8_t *row;             /* WIDE: output row r */
    uint32_t ty, tx;          /* NARROW: the lane's row and column */
};

__device__ __forceinline__ const uint8_t *row_table(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                                    uint32_t r, uint32_t h)
{
    return tab + (uint32_t)__ldg(rowmap + min(r, h - 1)) * tab_bytes;
}

/* One step of a WIDE or NARROW tile: symbol i for this lane (when ALL or
 * i < n). MULTI: a table per row (row map); GENERAL: the tile's rows are
 * not contiguous in the output. */
template <bool MULTI, bool GENERAL, bool PACKED, int SHAPE, bool ALL>
__device__ __forceinline__ void walk_step(row_walk &k, uint32_t &x, uint32_t &pos, const uint16_t *ring, uint32_t i,
                                          uint32_t n, const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                          uint8_t *out, uint64_t stride, uint32_t h, uint32_t w, uint32_t bits,
                                          uint32_t lane, uint32_t lt)
{
    constexpr bool NARROW = SHAPE == ROWS_NARROW;
    const bool active = ALL || i < n;
    const bool hi = !NARROW && lane >= k.b;
    const uint8_t *t = tab;
    if (MULTI) t = NARROW ? row_table(tab, tab_bytes, rowmap, k.ty, h) : hi ? k.t1 : k.t0;
    const uint32_t s = dec_sym<PACKED, ALL>(x, pos, t, bits, lt, ring, active);
    if (active) {
        if (GENERAL && !NARROW) k.row[w - k.b + lane + (hi ? stride - w : 0)] = (uint8_t)s;
        else if (GENERAL) out[(uint64_t)k.ty * stride + k.tx] = (uint8_t)s;
        else out[i] = (uint8_t)s;
    }
    if (NARROW) {
        const uint32_t j = i + 32;
        k.ty = j / w;
        k.tx = j - k.ty * w;
        return;
    }
    if (k.b <= 32) { /* the next step starts in the next row */
        k.b += w;
        k.r++;
        if (MULTI) {
            k.t0 = k.t1;
            k.t1 = tab + k.map2 * tab_bytes;
            k.map2 = __ldg(rowmap + min(k.r + 2, h - 1));
        }
        if (GENERAL) k.row += stride;
    }
    k.b -= 32;
}

/* Decodes one tile (h x w at out, row stride `stride`); false when its
 * stream fails the end-state or word-count check. Tiles whose output is
 * contiguous and that have one table are one run of steps, ALIGNED tiles a
 * run per row; the others walk step by step. */
template <bool MULTI, bool GENERAL, bool PACKED, int SHAPE>
__device__ __forceinline__ bool decode_tile(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                            const uint8_t *stream, uint32_t len, uint8_t *out,
                                            uint64_t stride, uint32_t h, uint32_t w, uint32_t bits,
                                            uint32_t lane, uint16_t *ring)
{
    if (len < 128 || (len - 128) & 3) return false;
    const uint16_t *words = (const uint16_t *)(stream + 128);
    const uint32_t nw = (len - 128) / 2;
    const uint32_t shift = (uint32_t)((uintptr_t)words & 15) / 2;
    ring_src rs = {words - shift, nw + shift, ring, 0};
#pragma unroll
    for (uint32_t k = 0; k < AHEAD; k++) seg_issue(rs, k, lane);
    uint32_t x = __ldg((const uint32_t *)stream + lane), pos = shift;
    bool ok = x >= WC_RANS_L;
    const uint32_t lt = (1u << lane) - 1;
    const uint32_t n = h * w;

    if (!MULTI && !GENERAL) {
        dec_run<PACKED>(x, pos, rs, tab, out, n / 32, bits, lane, lt);
        if (n % 32) {
            ring_ensure(rs, pos + 32, lane);
            const uint32_t i = n / 32 * 32 + lane;
            const uint32_t s = dec_sym<PACKED, false>(x, pos, tab, bits, lt, ring, i < n);
            if (i < n) out[i] = (uint8_t)s;
        }
    } else if (SHAPE == ROWS_ALIGNED) {
        uint32_t map = MULTI ? __ldg(rowmap) : 0;
        for (uint32_t r = 0; r < h; r++) {
            const uint8_t *t = MULTI ? tab + map * tab_bytes : tab;
            if (MULTI) map = __ldg(rowmap + min(r + 1, h - 1)); /* used a row later */
            dec_run<PACKED>(x, pos, rs, t, out + r * (GENERAL ? stride : w), w / 32, bits, lane, lt);
        }
    } else {
        row_walk k;
        k.r = 0, k.b = w, k.row = out;
        k.ty = lane / w, k.tx = lane - k.ty * w;
        if (MULTI) {
            k.t0 = row_table(tab, tab_bytes, rowmap, 0, h);
            k.t1 = row_table(tab, tab_bytes, rowmap, 1, h);
            k.map2 = __ldg(rowmap + min(2u, h - 1));
        }
        const uint32_t full = n / 32;
        uint32_t j = 0;
        for (; j + 2 <= full; j += 2) {
            ring_ensure(rs, pos + 64, lane);
            walk_step<MULTI, GENERAL, PACKED, SHAPE, true>(k, x, pos, ring, 32 * j + lane, n, tab, tab_bytes, rowmap,
                                                           out, stride, h, w, bits, lane, lt);
            walk_step<MULTI, GENERAL, PACKED, SHAPE, true>(k, x, pos, ring, 32 * j + 32 + lane, n, tab, tab_bytes,
                                                           rowmap, out, stride, h, w, bits, lane, lt);
        }
        for (; 32 * j < n; j++) {
            ring_ensure(rs, pos + 32, lane);
            walk_step<MULTI, GENERAL, PACKED, SHAPE, false>(k, x, pos, ring, 32 * j + lane, n, tab, tab_bytes, rowmap,
                                                            out, stride, h, w, bits, lane, lt);
        }
    }
    asm volatile("cp.async.wait_all;\n" ::);
    __syncwarp();
    ok = __all_sync(FULL_MASK, ok && x == WC_RANS_L);
    /* words past the end were zero-filled: more consumed means the stream
     * ran out; one word less is the padding word of an odd count */
    const uint32_t used = pos - shift;
    if (used == nw) return ok;
    if (used + 1 == nw && (used & 1) && __ldg(words + used) == 0) return ok;
    return false;
}

/* decode_tile for the tile's row shape */
template <bool MULTI, bool GENERAL, bool PACKED>
__device__ __forceinline__ bool decode_shape(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                             const uint8_t *src, uint32_t len, uint8_t *out, uint64_t stride,
                                             uint32_t h, uint32_t w, uint32_t bits, uint32_t lane, uint16_t *ring)
{
    if (!MULTI && !GENERAL)
        return decode_tile<false, false, PACKED, ROWS_ALIGNED>(tab, tab_bytes, rowmap, src, len, out, stride, h, w,
                                                               bits, lane, ring);
    if (w % 32 == 0)
        return decode_tile<MULTI, GENERAL, PACKED, ROWS_ALIGNED>(tab, tab_bytes, rowmap, src, len, out, stride, h, w,
                                                                 bits, lane, ring);
    if (w > 32)
        return decode_tile<MULTI, GENERAL, PACKED, ROWS_WIDE>(tab, tab_bytes, rowmap, src, len, out, stride, h, w,
                                                              bits, lane, ring);
    return decode_tile<MULTI, GENERAL, PACKED, ROWS_NARROW>(tab, tab_bytes, rowmap, src, len, out, stride, h, w,
                                                            bits, lane, ring);
}

template <bool SHARED, bool MULTI, bool GENERAL>
__global__ void __launch_bounds__(WC_GPU_THREADS, MULTI || GENERAL ? 2 : 3) wc_decode_kernel(wc_gpu_launch l)
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
#define DEC(M, G, P) decode_shape<M, G, P>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring)
    if (MULTI && rowmap) ok = gen ? DEC(true, true, false) : DEC(true, false, false);
    else if (job->packed) ok = gen ? DEC(false, true, true) : DEC(false, false, true);
    else ok = gen ? DEC(false, true, false) : DEC(false, false, false);
#undef DEC
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
