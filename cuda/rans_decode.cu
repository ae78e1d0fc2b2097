/* Per-tile rANS decode (docs/FORMAT.md, "Tile streams"): one warp per tile,
 * lane l owning interleaved state l; the lanes that need a renormalisation
 * word take consecutive words in lane order (ballot + popc). A block's warps
 * decode tiles of one or several tensors and hold each one's frequency
 * tables in shared memory once (kernels.cuh: fc[s] = freq | cum << 16 and
 * the slot -> symbol bytes, or the packed slot entries).
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
 * aligned) starts `shift` words into the first one, and positions (`pos`
 * below) count bytes from that aligned start. The ring's first segment is
 * also copied past its end (the mirror), so that any window of at most a
 * segment reads straight on from its first byte's address: a run of steps
 * keeps a shared address (`a`) and adds to it, with no wrap a step. */
#define SEG_WORDS 256
#define SEG_BYTES (2 * SEG_WORDS)
#define RING_SEGS 4
#define AHEAD 2
#define RING_WORDS (SEG_WORDS * RING_SEGS)
#define RING_BYTES (2 * RING_WORDS)
static_assert(RING_WORDS == WC_GPU_RING_WORDS, "ring size");
static_assert(WC_GPU_RING_AREA == RING_BYTES + SEG_BYTES, "ring and mirror");

struct ring_src {
    const uint16_t *base;    /* the stream's words, rounded down to 16 bytes */
    uint32_t end;            /* the stream's end, in words from base */
    uint32_t ring;           /* shared address of the warp's ring (and mirror) */
    uint32_t lim;            /* bytes from base known to be in the ring (whole segments) */
};

__device__ __forceinline__ void cp_async(uint32_t saddr, const void *src, uint32_t size, uint32_t bytes)
{
    if (size == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(src), "r"(bytes));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(saddr), "l"(src), "r"(bytes));
}

/* A copy reads its whole size whatever it keeps (compute-sanitizer counts
 * the 16 bytes): the chunk that holds the stream's end goes in 4-byte
 * copies (the end is 4-byte aligned), and chunks wholly past it read the
 * 16 bytes before base, inside the tile's 128-byte head, and keep none. */
__device__ __forceinline__ void seg_copy(const ring_src &rs, uint32_t saddr, uint32_t w0)
{
    const uint32_t bytes = w0 + 8 <= rs.end ? 16u : w0 < rs.end ? 2 * (rs.end - w0) : 0u;
    const uint16_t *before = rs.base - 8;
    if (bytes == 16 || bytes == 0) {
        cp_async(saddr, bytes ? rs.base + w0 : before, 16, bytes);
    } else {
        for (uint32_t k = 0; k < 4; k++)
            cp_async(saddr + 4 * k, 4 * k < bytes ? rs.base + w0 + 2 * k : before, 4, 4 * k < bytes ? 4u : 0u);
    }
}

/* Lane copies words 8*lane .. 8*lane+7 of segment seg (16 bytes), into its
 * slot and, for the first slot, into the mirror too. */
__device__ __forceinline__ void seg_issue(const ring_src &rs, uint32_t seg, uint32_t lane)
{
    const uint32_t w0 = seg * SEG_WORDS + 8 * lane, slot = seg % RING_SEGS;
    seg_copy(rs, rs.ring + slot * SEG_BYTES + 16 * lane, w0);
    if (slot == 0) seg_copy(rs, rs.ring + RING_BYTES + 16 * lane, w0);
    asm volatile("cp.async.commit_group;\n" ::);
}

/* Makes bytes [pos, end) present in the ring (end - pos <= SEG_BYTES, so
 * the window spans at most two segments): while they are not, waits for the
 * oldest segment in flight and issues the next. The slot an issue
 * overwrites, AHEAD segments on, is then never one of the two being read. */
static_assert(AHEAD + 2 <= RING_SEGS, "ring too small for its segments in flight");
__device__ __forceinline__ void ring_ensure(ring_src &rs, uint32_t end, uint32_t lane)
{
    while (end > rs.lim) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(AHEAD - 1));
        __syncwarp();
        seg_issue(rs, rs.lim / SEG_BYTES + AHEAD, lane);
        rs.lim += SEG_BYTES;
    }
}

/* The shared address of byte pos: from there a window of up to SEG_BYTES
 * reads straight on (the mirror). */
__device__ __forceinline__ uint32_t ring_at(const ring_src &rs, uint32_t pos)
{
    return rs.ring + (pos & (RING_BYTES - 1));
}

__device__ __forceinline__ uint32_t lds_u8(uint32_t a)
{
    uint32_t v;
    asm volatile("ld.shared.u8 %0, [%1];" : "=r"(v) : "r"(a));
    return v;
}
__device__ __forceinline__ uint32_t lds_u16(uint32_t a)
{
    uint16_t v;
    asm volatile("ld.shared.u16 %0, [%1];" : "=h"(v) : "r"(a));
    return v;
}
__device__ __forceinline__ uint32_t lds_u32(uint32_t a)
{
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(a));
    return v;
}

/* The block's tables (dynamic shared memory, 16-byte aligned). */
extern __shared__ uint4 wc_smem[];

/* Where a table lies: its shared address (SHARED), so that a step's load
 * is one add and an LDS, or a global pointer. */
template <bool SHARED> struct tab_ref;
template <> struct tab_ref<true> {
    uint32_t a;
    __device__ __forceinline__ tab_ref(const uint8_t *p) : a((uint32_t)__cvta_generic_to_shared(p)) {}
    __device__ __forceinline__ uint32_t u8(uint32_t i) const { return lds_u8(a + i); }
    __device__ __forceinline__ uint32_t u32(uint32_t i) const { return lds_u32(a + 4 * i); }
};
template <> struct tab_ref<false> {
    const uint8_t *p;
    __device__ __forceinline__ tab_ref(const uint8_t *q) : p(q) {}
    __device__ __forceinline__ uint32_t u8(uint32_t i) const { return __ldg(p + i); }
    __device__ __forceinline__ uint32_t u32(uint32_t i) const { return __ldg((const uint32_t *)p + i); }
};

/* Output bytes go to global memory (a generic store would also check for
 * shared and local addresses); st.u8 keeps the register's low byte, so a
 * packed entry's symbol needs no mask first. */
__device__ __forceinline__ void put_u8(uint8_t *p, uint32_t v)
{
    asm volatile("st.global.cg.u8 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* Decodes the lane's next symbol with table t (when ALL or active) and
 * renormalises its state from the ring, whose next word is at shared
 * address a; returns the symbol. */
template <bool SHARED, bool PACKED, bool ALL>
__device__ __forceinline__ uint32_t dec_sym(uint32_t &x, uint32_t &a, tab_ref<SHARED> t, uint32_t bits,
                                            uint32_t lt, bool active)
{
    const uint32_t slot = x & ((1u << bits) - 1);
    uint32_t s, y;
    if (PACKED) {
        const uint32_t e = t.u32(slot);
        s = e; /* the symbol is its low byte */
        y = ((e >> 20) + 1) * (x >> bits) + ((e >> 8) & 0xfffu);
    } else {
        s = t.u8(1024 + slot);
        const uint32_t fc = t.u32(s);
        y = (fc & 0xffffu) * (x >> bits) + slot - (fc >> 16);
    }
    const bool need = (ALL || active) && y < WC_RANS_L;
    const uint32_t bal = __ballot_sync(FULL_MASK, need);
    /* every lane loads (the slot is in the ring whatever it holds): a
     * select instead of a branch around the load */
    const uint32_t word = lds_u16(a + 2 * __popc(bal & lt));
    y = need ? y << 16 | word : y;
    a += 2 * __popc(bal);
    if (ALL || active) x = y;
    return s;
}

/* One step on its own: makes its words present, then decodes. */
template <bool SHARED, bool PACKED, bool ALL>
__device__ __forceinline__ uint32_t dec_step(uint32_t &x, uint32_t &pos, ring_src &rs, tab_ref<SHARED> t,
                                             uint32_t bits, uint32_t lane, uint32_t lt, bool active)
{
    ring_ensure(rs, pos + 64, lane);
    const uint32_t a0 = ring_at(rs, pos);
    uint32_t a = a0;
    const uint32_t s = dec_sym<SHARED, PACKED, ALL>(x, a, t, bits, lt, active);
    pos += a - a0;
    return s;
}

/* `steps` steps in which every lane has a symbol, all with table t: the
 * lane's symbols go to o[32 k + lane]. Eight steps (512 bytes at most, a
 * segment) to a ring check, and one check for the rest. */
template <bool SHARED, bool PACKED>
__device__ __forceinline__ void dec_run(uint32_t &x, uint32_t &pos, ring_src &rs, tab_ref<SHARED> t, uint8_t *o,
                                        uint32_t steps, uint32_t bits, uint32_t lane, uint32_t lt)
{
    constexpr uint32_t G = SEG_BYTES / 64;
    o += lane;
    for (; steps >= G; steps -= G, o += 32 * G) {
        ring_ensure(rs, pos + G * 64, lane);
        const uint32_t a0 = ring_at(rs, pos);
        uint32_t a = a0;
#pragma unroll
        for (uint32_t k = 0; k < G; k++) put_u8(o + 32 * k, dec_sym<SHARED, PACKED, true>(x, a, t, bits, lt, true));
        pos += a - a0;
    }
    if (!steps) return;
    ring_ensure(rs, pos + steps * 64, lane);
    const uint32_t a0 = ring_at(rs, pos);
    uint32_t a = a0;
#pragma unroll
    for (uint32_t k = 0; k < G - 1; k++)
        if (k < steps) put_u8(o + 32 * k, dec_sym<SHARED, PACKED, true>(x, a, t, bits, lt, true));
    pos += a - a0;
}
__device__ __forceinline__ const uint8_t *row_table(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                                    uint32_t r, uint32_t h)
{
    return tab + (uint32_t)__ldg(rowmap + min(r, h - 1)) * tab_bytes;
}

/* Tiles with a table per row (MULTI) or rows not contiguous in the output
 * (GENERAL), w >= 32: each row is a run of whole steps, and where 32 does
 * not divide w, one step straddles two rows (lanes below b in row r, the
 * others in row r + 1). rstep: output distance between rows. */
template <bool SHARED, bool MULTI, bool PACKED>
__device__ __forceinline__ void decode_rows(uint32_t &x, uint32_t &pos, ring_src &rs, const uint8_t *tab,
                                            uint32_t tab_bytes, const uint8_t *rowmap, uint8_t *out, uint64_t rstep,
                                            uint32_t h, uint32_t w, uint32_t bits, uint32_t lane, uint32_t lt)
{
    const uint32_t n = h * w;
    uint32_t steps = n / 32;       /* whole steps left */
    uint32_t r = 0, b = w;         /* row, its symbols not yet decoded */
    uint8_t *row = out;
    const uint8_t *t0 = MULTI ? row_table(tab, tab_bytes, rowmap, 0, h) : tab;
    uint32_t map1 = MULTI ? __ldg(rowmap + min(1u, h - 1)) : 0; /* row r + 1's, loaded a row ahead */
    while (steps) {
        const uint32_t k = min(b / 32, steps);
        dec_run<SHARED, PACKED>(x, pos, rs, tab_ref<SHARED>(t0), row + (w - b), k, bits, lane, lt);
        steps -= k;
        b -= 32 * k;
        if (!steps) break;
        const uint8_t *t1 = MULTI ? tab + map1 * tab_bytes : tab;
        if (MULTI) map1 = __ldg(rowmap + min(r + 2, h - 1));
        if (b) {
            const bool hi = lane >= b;
            const uint32_t s = dec_step<SHARED, PACKED, true>(x, pos, rs, tab_ref<SHARED>(hi ? t1 : t0), bits, lane,
                                                              lt, true);
            put_u8(row + (w - b) + lane + (hi ? rstep - w : 0), s);
            steps--;
            b += w - 32;
        } else {
            b = w;
        }
        r++;
        row += rstep;
        t0 = t1;
    }
    if (n % 32) { /* the last b symbols of the last row */
        const uint32_t s = dec_step<SHARED, PACKED, false>(x, pos, rs, tab_ref<SHARED>(t0), bits, lane, lt, lane < b);
        if (lane < b) put_u8(row + (w - b) + lane, s);
    }
}

/* Tiles narrower than a step (w < 32) with a table per row or rows not
 * contiguous in the output: each lane keeps its own row and column. */
template <bool SHARED, bool MULTI, bool GENERAL, bool PACKED>
__device__ __forceinline__ void decode_narrow(uint32_t &x, uint32_t &pos, ring_src &rs, const uint8_t *tab,
                                              uint32_t tab_bytes, const uint8_t *rowmap, uint8_t *out,
                                              uint64_t stride, uint32_t h, uint32_t w, uint32_t bits, uint32_t lane,
                                              uint32_t lt)
{
    const uint32_t n = h * w;
    for (uint32_t i = lane; i - lane < n; i += 32) {
        const uint32_t ty = i / w, tx = i - ty * w;
        const uint8_t *t = MULTI ? row_table(tab, tab_bytes, rowmap, ty, h) : tab;
        const uint32_t s = dec_step<SHARED, PACKED, false>(x, pos, rs, tab_ref<SHARED>(t), bits, lane, lt, i < n);
        if (i < n) put_u8(out + (GENERAL ? (uint64_t)ty * stride + tx : i), s);
    }
}

/* Decodes one tile (h x w at out, row stride `stride`); false when its
 * stream fails the end-state or word-count check. A tile with one table
 * whose output is contiguous is one run of steps. */
template <bool SHARED, bool MULTI, bool GENERAL, bool PACKED>
__device__ __forceinline__ bool decode_tile(const uint8_t *tab, uint32_t tab_bytes, const uint8_t *rowmap,
                                            const uint8_t *stream, uint32_t len, uint8_t *out,
                                            uint64_t stride, uint32_t h, uint32_t w, uint32_t bits,
                                            uint32_t lane, uint32_t ring)
{
    if (len < 128 || (len - 128) & 3) return false;
    const uint16_t *words = (const uint16_t *)(stream + 128);
    const uint32_t nw = (len - 128) / 2;
    const uint32_t shift = (uint32_t)((uintptr_t)words & 15) / 2;
    ring_src rs = {words - shift, nw + shift, ring, 0};
#pragma unroll
    for (uint32_t k = 0; k < AHEAD; k++) seg_issue(rs, k, lane);
    uint32_t x = __ldg((const uint32_t *)stream + lane), pos = 2 * shift;
    bool ok = x >= WC_RANS_L;
    const uint32_t lt = (1u << lane) - 1;
    const uint32_t n = h * w;

    if (!MULTI && !GENERAL) {
        dec_run<SHARED, PACKED>(x, pos, rs, tab_ref<SHARED>(tab), out, n / 32, bits, lane, lt);
        if (n % 32) {
            const uint32_t i = n / 32 * 32 + lane;
            const uint32_t s = dec_step<SHARED, PACKED, false>(x, pos, rs, tab_ref<SHARED>(tab), bits, lane, lt, i < n);
            if (i < n) put_u8(out + i, s);
        }
    } else if (w >= 32) {
        decode_rows<SHARED, MULTI, PACKED>(x, pos, rs, tab, tab_bytes, rowmap, out, GENERAL ? stride : w, h, w, bits,
                                           lane, lt);
    } else {
        decode_narrow<SHARED, MULTI, GENERAL, PACKED>(x, pos, rs, tab, tab_bytes, rowmap, out, stride, h, w, bits,
                                                      lane, lt);
    }
    asm volatile("cp.async.wait_all;\n" ::);
    __syncwarp();
    ok = __all_sync(FULL_MASK, ok && x == WC_RANS_L);
    /* words past the end were zero-filled: more consumed means the stream
     * ran out; one word less is the padding word of an odd count */
    const uint32_t used = pos / 2 - shift;
    if (used == nw) return ok;
    if (used + 1 == nw && (used & 1) && __ldg(words + used) == 0) return ok;
    return false;
}

/* Brings the block's jobs into shared memory: the first entry of each run
 * of one job copies that job's tables (with the whole block), and the
 * scales where its entry says so. Every warp reads the block's entries at
 * once (lane k: entry k) and all the tables go in one round of cp.async,
 * so that a block waits one trip to memory instead of one per entry and
 * per table row. */
template <bool SHARED>
__device__ __forceinline__ void block_setup(const wc_gpu_launch &l, const wc_gpu_tile *bt)
{
    static_assert(WC_GPU_WARPS <= 32, "a lane per entry");
    const uint32_t lane = threadIdx.x & 31;
    uint32_t job = 0, tab = 0, tile = WC_GPU_TILE_PAD, n16 = 0;
    const wc_gpu_job *jp = nullptr;
    if (lane < WC_GPU_WARPS) {
        const wc_gpu_tile t = bt[lane];
        job = t.job, tab = t.tab, tile = t.tile;
    }
    const uint32_t prev = __shfl_up_sync(FULL_MASK, job, 1); /* entry lane - 1's */
    const bool start = tile != WC_GPU_TILE_PAD && (lane == 0 || ((prev ^ job) & ~WC_GPU_JOB_SCALES) != 0);
    const uint32_t starts = __ballot_sync(FULL_MASK, start);
    if (start) {
        jp = &l.jobs[job & ~WC_GPU_JOB_SCALES];
        const uint32_t bits = jp->prob_bits;
        n16 = jp->n_tables * WC_GPU_ONE_TABLE_BYTES(jp->packed, bits) / 16;
    }
    if (SHARED) {
        const uint32_t base = (uint32_t)__cvta_generic_to_shared(wc_smem);
        for (uint32_t m = starts; m; m &= m - 1) {
            const int k = __ffs(m) - 1;
            const uint32_t n = __shfl_sync(FULL_MASK, n16, k), dst = base + __shfl_sync(FULL_MASK, tab, k);
            const uint4 *src = (const uint4 *)(l.desc + (jp ? jp->tables_off : 0));
            src = (const uint4 *)__shfl_sync(FULL_MASK, (unsigned long long)src, k);
            for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) cp_async(dst + 16 * i, src + i, 16, 16);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    }
    /* the scales meanwhile (nothing in this block reads them) */
    const bool scales = start && (job & WC_GPU_JOB_SCALES) && jp->scales_dst && jp->scales_src != WC_GPU_NO_SCALES;
    for (uint32_t m = __ballot_sync(FULL_MASK, scales); m; m &= m - 1) {
        const int k = __ffs(m) - 1;
        const wc_gpu_job *j = (const wc_gpu_job *)__shfl_sync(FULL_MASK, (unsigned long long)jp, k);
        const float *s = (const float *)(l.desc + j->scales_src);
        for (uint64_t i = threadIdx.x; i < j->rows; i += blockDim.x) j->scales_dst[i] = s[i];
    }
    if (SHARED) {
        asm volatile("cp.async.wait_all;\n" ::);
        __syncthreads();
    }
}

template <bool SHARED, bool MULTI, bool GENERAL>
__global__ void __launch_bounds__(WC_GPU_THREADS, WC_GPU_BLOCKS_PER_SM(MULTI || GENERAL))
    wc_decode_kernel(wc_gpu_launch l)
{
    __shared__ __align__(16) uint8_t rings[WC_GPU_STATIC_SMEM];
    const wc_gpu_tile *bt = l.tiles + (uint64_t)blockIdx.x * WC_GPU_WARPS;
    block_setup<SHARED>(l, bt);

    const uint32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint64_t idx = (uint64_t)blockIdx.x * WC_GPU_WARPS + warp;
    const wc_gpu_tile tile = bt[warp];
    if (tile.tile == WC_GPU_TILE_PAD) return;
    const uint32_t jid = tile.job & ~WC_GPU_JOB_SCALES;
    const wc_gpu_job *job = &l.jobs[jid];
    const uint32_t bits = job->prob_bits;
    const uint32_t tab_bytes = WC_GPU_ONE_TABLE_BYTES(job->packed, bits);
    const uint8_t *tab = SHARED ? (const uint8_t *)wc_smem + tile.tab : l.desc + job->tables_off;
    const uint32_t mode = l.modes[idx];
    const uint64_t cols = job->cols;
    uint64_t r0, c0;
    uint32_t h, w;
    wc_gpu_tile_rect(job, tile.tile, r0, c0, h, w);
    uint8_t *out = job->out + r0 * cols + c0;
    const uint8_t *rowmap = MULTI && job->n_tables > 1 ? l.desc + job->rowmap_off + r0 : nullptr;
    const uint8_t *src = l.data + tile.src;
    const uint32_t ring = (uint32_t)__cvta_generic_to_shared(rings) + warp * WC_GPU_RING_AREA;
    const bool gen = GENERAL && h > 1 && w < cols;
    bool ok;
#define DEC(M, G, P) decode_tile<SHARED, M, G, P>(tab, tab_bytes, rowmap, src, tile.len, out, cols, h, w, bits, lane, ring)
    if (MULTI && rowmap && job->packed) ok = gen ? DEC(true, true, true) : DEC(true, false, true);
    else if (MULTI && rowmap) ok = gen ? DEC(true, true, false) : DEC(true, false, false);
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
