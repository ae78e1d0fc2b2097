/* Prediction (docs/FORMAT.md, "Modes", stage 3) over a whole decoded
 * tensor, after the rANS decode and inverse transform of all its tiles.
 *
 * Every prediction looks only at the same row (left) and at row r - D
 * (top, avg, planar). A row whose tiles are all none or left is free: a
 * warp each, all at once, before the others (wc_predict_free_kernel). The
 * other rows split into D independent chains r = j, j + D, j + 2D, ...; one
 * block walks one chain, row by row, and each row tile segment by tile
 * segment (a segment's mode is its tile's):
 *   none    nothing
 *   top     q += up                                  (parallel)
 *   left    prefix sum along the row from `left`      (block scan)
 *   planar  prefix sum from (left - upleft), then + up (block scan)
 *   avg     a true recurrence: slices of the segment per thread, each
 *           from a checked guess of the value left of it (block_avg)
 * All arithmetic is modulo 256. */
#include <cuda_runtime.h>

#include "kernels.cuh"

#define PT 256          /* threads per block */
#define PB 8            /* bytes per thread per chunk */

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

#define AVG_CHUNK 4096
static_assert(AVG_CHUNK == 16 * PT, "a chunk is staged 16 bytes a thread");
/* steps before a slice that make its guess; -DWC_AVG_WARM=1 makes most
 * guesses wrong, to test the recomputation (device_run.sh test) */
#ifdef WC_AVG_WARM
#define AVG_WARM WC_AVG_WARM
#else
#define AVG_WARM 32
#endif

/* block_avg's chunk: the residuals, the row above and the values. `so`
 * outlives a call: a chain's next row reads its row above from it instead
 * of from global memory (the kernel knows which row it holds). */
struct avg_smem {
    __align__(16) uint8_t sq[AVG_CHUNK];
    __align__(16) uint8_t su[AVG_CHUNK];
    __align__(16) uint8_t so[AVG_CHUNK];
    uint32_t bad; /* the first slice whose guess was wrong */
};

/* One avg step: the value from the residual q, the one above u and the
 * one to the left l (signed bytes, the sum halved rounding down). */
__device__ __forceinline__ int avg_step(int l, uint32_t q, uint32_t u)
{
    return (int8_t)(q + ((l + (int)(int8_t)u) >> 1));
}

/* Copies n <= AVG_CHUNK bytes of global src (and of up, unless null) into
 * shared dst (and du), 16 bytes a thread where both are aligned: the loads
 * are then all in flight at once, one trip to memory for the chunk. Loads
 * bypass L1 (ld.global.cg): rows above were written by this kernel. */
__device__ __forceinline__ void stage_rows(uint8_t *dst, const uint8_t *src, uint8_t *du, const uint8_t *up,
                                           uint32_t n)
{
    const uint32_t c = 16 * threadIdx.x;
    if ((((uintptr_t)src | (uintptr_t)up) & 15) == 0 && c + 16 <= n) {
        const uint4 a = __ldcg((const uint4 *)(src + c));
        if (up) *(uint4 *)(du + c) = __ldcg((const uint4 *)(up + c));
        *(uint4 *)(dst + c) = a;
        return;
    }
    for (uint32_t k = c; k < c + 16 && k < n; k++) {
        dst[k] = __ldcg(src + k);
        if (up) du[k] = __ldcg(up + k);
    }
}

/* avg over q[0..w) from `left`, with the row D above at up (global), or
 * in sm.so (up_in_so: w <= AVG_CHUNK, the previous call's values), or
 * none. The recurrence is serial (a byte every ~15 cycles on one thread:
 * ~30 us for a 2880-wide row), so each thread takes a slice of the segment
 * and guesses the value left of it by running AVG_WARM steps from 0 before
 * it: the halving forgets the start, and the guess is checked against the
 * value the thread to its left computed. The slices after the first wrong
 * guess (none, in practice) are recomputed in order by one thread, so the
 * result is exact whatever the data. */
__device__ void block_avg(avg_smem &sm, uint8_t *q, const uint8_t *up, bool up_in_so, uint32_t w, uint32_t left)
{
    const uint32_t t = threadIdx.x;
    int carry = (int8_t)left;
    for (uint32_t base = 0; base < w; base += AVG_CHUNK) {
        const uint32_t n = min(w - base, (uint32_t)AVG_CHUNK);
        if (up_in_so) {
            for (uint32_t c = 16 * t; c < n; c += 16 * PT) *(uint4 *)(sm.su + c) = *(const uint4 *)(sm.so + c);
            stage_rows(sm.sq, q + base, nullptr, nullptr, n);
        } else if (up) {
            stage_rows(sm.sq, q + base, sm.su, up + base, n);
        } else {
            stage_rows(sm.sq, q + base, nullptr, nullptr, n);
            for (uint32_t c = t; c < n; c += PT) sm.su[c] = 0;
        }
        if (t == 0) sm.bad = PT;
        __syncthreads();
        const uint32_t S = (n + PT - 1) / PT, c0 = t * S, c1 = min(c0 + S, n);
        int l = c0 > AVG_WARM ? 0 : carry;
        for (uint32_t c = c0 > AVG_WARM ? c0 - AVG_WARM : 0; c < c0 && c < n; c++) l = avg_step(l, sm.sq[c], sm.su[c]);
        const int guess = l;
        for (uint32_t c = c0; c < c1; c++) {
            l = avg_step(l, sm.sq[c], sm.su[c]);
            sm.so[c] = (uint8_t)l;
        }
        __syncthreads();
        if (t > 0 && c0 < n && guess != (int8_t)sm.so[c0 - 1]) atomicMin(&sm.bad, t);
        __syncthreads();
        if (sm.bad < PT) {
            if (t == 0) {
                int v = (int8_t)sm.so[sm.bad * S - 1];
                for (uint32_t c = sm.bad * S; c < n; c++) {
                    v = avg_step(v, sm.sq[c], sm.su[c]);
                    sm.so[c] = (uint8_t)v;
                }
            }
            __syncthreads();
        }
        carry = (int8_t)sm.so[n - 1];
        for (uint32_t c = t; c < n; c += PT) q[base + c] = sm.so[c];
        __syncthreads();
    }
}

/* 16 bytes of a row from p (n of them where n < 16; the rest 0), one load
 * where aligned. Bypasses L1 (rows above may have been written by this
 * kernel). */
__device__ __forceinline__ uint4 ld16(const uint8_t *p, uint32_t n)
{
    if (n >= 16 && ((uintptr_t)p & 15) == 0) return __ldcg((const uint4 *)p);
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (uint32_t k = 0; k < 16; k++)
        if (k < n) w[k / 4] |= (uint32_t)__ldcg(p + k) << (8 * (k % 4));
    return make_uint4(w[0], w[1], w[2], w[3]);
}

__device__ __forceinline__ void st16(uint8_t *p, uint4 v, uint32_t n)
{
    if (n >= 16 && ((uintptr_t)p & 15) == 0) {
        *(uint4 *)p = v;
        return;
    }
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (uint32_t k = 0; k < 16; k++)
        if (k < n) p[k] = (uint8_t)(w[k / 4] >> (8 * (k % 4)));
}

/* Whether row of tiles tr reads the row D above (top, avg or planar). */
__device__ bool tile_row_chained(const uint8_t *modes, uint64_t tr, uint32_t tiles_across)
{
    bool chained = false;
    for (uint32_t tc = 0; tc < tiles_across; tc++) {
        const uint32_t pm = modes[tr * tiles_across + tc] & 15;
        chained |= pm >= 2;
    }
    return chained;
}

/* In-place prefix sum (mod 256) of q[0..n) plus carry by one warp. */
__device__ void warp_prefix(uint8_t *q, uint32_t n, uint32_t carry, uint32_t lane)
{
    for (uint32_t base = 0; base < n; base += 128) {
        const uint32_t at = base + 4 * lane;
        uint32_t v[4], sum = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            sum += at + k < n ? q[at + k] : 0;
            v[k] = sum;
        }
        uint32_t inc = sum;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const uint32_t y = __shfl_up_sync(0xffffffffu, inc, o);
            if (lane >= o) inc += y;
        }
        const uint32_t before = carry + inc - sum;
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (at + k < n) q[at + k] = (uint8_t)(v[k] + before);
        carry = __shfl_sync(0xffffffffu, before + sum, 31);
    }
}

/* The free rows: warp w of block (x, y) takes rows x * 8 + w, then every
 * gridDim.x * 8 rows on, of job idx[y], and walks each row's tiles left to
 * right (left: a prefix sum from the value left of the tile). */
__global__ void __launch_bounds__(PT) wc_predict_free_kernel(const wc_gpu_pred_job *jobs, const uint32_t *idx,
                                                              const uint8_t *desc)
{
    const wc_gpu_pred_job p = jobs[idx[blockIdx.y]];
    const uint8_t *modes = desc + p.modes_off;
    const uint32_t lane = threadIdx.x & 31;
    for (uint64_t r = (uint64_t)blockIdx.x * (PT / 32) + threadIdx.x / 32; r < p.rows; r += gridDim.x * (PT / 32)) {
        const uint64_t tr = r / p.tile_rows;
        if (tile_row_chained(modes, tr, p.tiles_across)) continue;
        uint8_t *row = p.q + r * p.cols;
        for (uint32_t tc = 0; tc < p.tiles_across; tc++) {
            if ((modes[tr * p.tiles_across + tc] & 15) != 1) continue;
            const uint64_t c0 = (uint64_t)tc * p.tile_cols;
            const uint32_t w = (uint32_t)min((uint64_t)p.tile_cols, p.cols - c0);
            __syncwarp(); /* the tile left of it, finished by this warp */
            warp_prefix(row + c0, w, c0 ? row[c0 - 1] : 0, lane);
        }
    }
}

/* The modes of a window of a job's tile rows in shared memory, with a flag
 * per tile row for whether it is chained, so that walking a chain reads no
 * mode from global memory: the whole block loads a window at once, instead
 * of one trip to memory per row of the chain, in turn. */
#define MODE_WIN 2048
struct mode_win {
    uint8_t m[MODE_WIN];
    uint8_t chained[MODE_WIN];
};

/* Loads the tile rows from tr on that fit (tiles_across <= MODE_WIN);
 * returns how many. Every thread of the block calls it. */
__device__ uint32_t mode_win_load(mode_win &mw, const uint8_t *modes, uint64_t tr, uint64_t tiles_down,
                                  uint32_t tiles_across)
{
    const uint32_t nr = (uint32_t)min(tiles_down - tr, (uint64_t)(MODE_WIN / tiles_across));
    const uint32_t n = nr * tiles_across;
    const uint8_t *src = modes + tr * tiles_across;
    __syncthreads(); /* nobody reads the previous window any more */
    for (uint32_t i = threadIdx.x; i < n; i += PT) mw.m[i] = __ldg(src + i);
    __syncthreads();
    for (uint32_t i = threadIdx.x; i < nr; i += PT) mw.chained[i] = tile_row_chained(mw.m, i, tiles_across);
    __syncthreads();
    return nr;
}

/* Row r of tile row trow, rin rows into it, to row r + D (D = dq tile rows
 * and dr rows). */
__device__ __forceinline__ void advance_row(uint64_t &trow, uint32_t &rin, uint64_t dq, uint32_t dr, uint32_t tile_rows)
{
    rin += dr;
    trow += dq + (rin >= tile_rows);
    rin -= rin >= tile_rows ? tile_rows : 0;
}

/* The chains of a tensor one tile wide whose tiles are all none or top
 * (WC_GPU_PRED_TOP), block (x, y) walking chains x, x + gridDim.x, ... of
 * job idx[y]: a chain of top rows is a prefix sum down each column, so a thread
 * owns 16 columns and keeps the chain's last row in registers, and the
 * residuals of up to TOP_K rows of the chain are loaded at once: one trip
 * to memory per TOP_K rows, where wc_predict_kernel waits on a load and a
 * store per row (Stockfish's feature transformer, 1,258 top tiles of 16 x
 * 1,024 with D = 704: 32 copies took 2.85 ms that way, 0.39 ms so, which
 * is DRAM reading and writing them; bench/RESULTS.md#gpu-top-narrow).
 * No thread reads another's columns, so rows need no barrier. A kernel of
 * its own: in wc_predict_kernel, held to 64 registers, it made the other
 * paths spill. */
#define TOP_K 4
static_assert(WC_GPU_PRED_TOP_W == 16 * PT, "16 columns a thread, blocks of at most PT threads");
__global__ void __launch_bounds__(PT) wc_predict_top_kernel(const wc_gpu_pred_job *jobs, const uint32_t *idx,
                                                             const uint8_t *desc)
{
    __shared__ uint8_t win[MODE_WIN]; /* the modes of tile rows w0 .. w1 */
    const wc_gpu_pred_job p = jobs[idx[blockIdx.y]];
    const uint8_t *modes = desc + p.modes_off;
    const uint64_t D = p.top_distance, chains = D < p.rows ? D : p.rows;
    const uint64_t tiles_down = (p.rows + p.tile_rows - 1) / p.tile_rows;
    const uint64_t dq = D / p.tile_rows, step = D * p.cols;
    const uint32_t dr = (uint32_t)(D % p.tile_rows), w = (uint32_t)p.cols, c = 16 * threadIdx.x;
    for (uint64_t j = blockIdx.x; j < chains; j += gridDim.x) {
        uint64_t w0 = 0, w1 = 0, trow = j / p.tile_rows;
        uint32_t rin = (uint32_t)(j % p.tile_rows);
        uint4 above = make_uint4(0, 0, 0, 0); /* row r - D's columns, when `have` */
        bool have = false;
        for (uint64_t r = j; r < p.rows;) {
            if (trow >= w1) {
                w0 = trow, w1 = min(tiles_down, trow + MODE_WIN);
                __syncthreads(); /* nobody reads the previous window any more */
                for (uint64_t i = threadIdx.x; i < w1 - w0; i += blockDim.x) win[i] = __ldg(modes + w0 + i);
                __syncthreads();
            }
            if ((win[trow - w0] & 15) != 2) { /* none: the residuals are the values */
                have = false;
                r += D, advance_row(trow, rin, dq, dr, p.tile_rows);
                continue;
            }
            uint32_t k = 1; /* this row and the next rows of the chain in the window that are top */
            uint64_t tr = trow;
            uint32_t ri = rin;
            for (uint64_t rr = r + D; k < TOP_K && rr < p.rows; rr += D, k++) {
                advance_row(tr, ri, dq, dr, p.tile_rows);
                if (tr >= w1 || (win[tr - w0] & 15) != 2) break;
            }
            uint8_t *row = p.q + r * p.cols;
            if (c < w) {
                uint4 v[TOP_K];
#pragma unroll
                for (uint32_t i = 0; i < TOP_K; i++)
                    if (i < k) v[i] = ld16(row + i * step + c, w - c);
                if (!have && r >= D) above = ld16(row - step + c, w - c);
#pragma unroll
                for (uint32_t i = 0; i < TOP_K; i++)
                    if (i < k) {
                        above = make_uint4(__vadd4(v[i].x, above.x), __vadd4(v[i].y, above.y),
                                           __vadd4(v[i].z, above.z), __vadd4(v[i].w, above.w));
                        st16(row + i * step + c, above, w - c);
                    }
            }
            have = true;
            for (uint32_t i = 0; i < k; i++) r += D, advance_row(trow, rin, dq, dr, p.tile_rows);
        }
    }
}

/* The chains of a tensor one tile wide of at most WC_GPU_PRED_NARROW_W
 * columns (WC_GPU_PRED_NARROW), a thread per chain: the rows are too
 * narrow for a block's scans (Stockfish's PSQT weights, 22,528 x 8 with
 * planar tiles and D = 2,112: 32 copies took 2.7 ms in wc_predict_kernel,
 * a block and three barriers per 8-byte row, and take 26 us so), so each
 * row is the CPU reference's loop (codec/dsp_ref.c). */
__global__ void __launch_bounds__(128) wc_predict_narrow_kernel(const wc_gpu_pred_job *jobs, const uint32_t *idx,
                                                                const uint8_t *desc)
{
    const wc_gpu_pred_job &p = jobs[idx[blockIdx.y]];
    const uint64_t j = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const uint64_t D = p.top_distance;
    if (j >= D || j >= p.rows) return;
    const uint8_t *modes = desc + p.modes_off;
    const uint32_t w = (uint32_t)p.cols;
    for (uint64_t r = j; r < p.rows; r += D) {
        const uint32_t pm = __ldg(modes + r / p.tile_rows) & 15;
        if (pm < 2) continue; /* free: done by wc_predict_free_kernel */
        uint8_t *q = p.q + r * w;
        const uint8_t *up = r >= D ? q - D * w : nullptr;
        uint8_t left = 0, upleft = 0;
        for (uint32_t c = 0; c < w; c++) {
            const uint8_t top = up ? up[c] : 0;
            if (pm == 2) q[c] = (uint8_t)(q[c] + top);
            else if (pm == 3) left = q[c] = (uint8_t)(q[c] + (((int)(int8_t)left + (int)(int8_t)top) >> 1));
            else left = q[c] = (uint8_t)(q[c] + left + top - upleft), upleft = top;
        }
    }
}

/* The chained rows: block (x, y) walks chains x, x + gridDim.x, ... of job
 * idx[y], skipping the free rows (done by wc_predict_free_kernel before it). */
__global__ void __launch_bounds__(PT, 4) wc_predict_kernel(const wc_gpu_pred_job *jobs, const uint32_t *idx,
                                                          const uint8_t *desc)
{
    __shared__ avg_smem asm_;
    __shared__ mode_win mw;
    const wc_gpu_pred_job p = jobs[idx[blockIdx.y]];
    const uint8_t *modes = desc + p.modes_off;
    const uint64_t D = p.top_distance;
    const uint64_t chains = D < p.rows ? D : p.rows;
    const uint64_t tiles_down = (p.rows + p.tile_rows - 1) / p.tile_rows;
    const bool windowed = p.tiles_across <= MODE_WIN;
    /* a chain's rows advance by D without a division a row */
    const uint64_t dq = D / p.tile_rows;
    const uint32_t dr = (uint32_t)(D % p.tile_rows);
    for (uint64_t j = blockIdx.x; j < chains; j += gridDim.x) {
        uint64_t w0 = 0, w1 = 0;      /* tile rows in mw */
        uint64_t seen = UINT64_MAX;   /* unwindowed: the row of tiles `chained` is of */
        bool chained = false;
        uint64_t so_row = UINT64_MAX; /* the row whose segment so_c0 is in asm_.so */
        uint64_t so_c0 = 0;
        uint64_t trow = j / p.tile_rows;
        uint32_t rin = (uint32_t)(j % p.tile_rows);
        for (uint64_t r = j; r < p.rows; r += D, advance_row(trow, rin, dq, dr, p.tile_rows)) {
            const uint8_t *m;
            if (windowed) {
                if (trow >= w1) w0 = trow, w1 = trow + mode_win_load(mw, modes, trow, tiles_down, p.tiles_across);
                m = mw.m + (trow - w0) * p.tiles_across;
                chained = mw.chained[trow - w0];
            } else {
                m = modes + trow * p.tiles_across;
                if (trow != seen) chained = tile_row_chained(modes, trow, p.tiles_across), seen = trow;
            }
            if (!chained) continue;
            uint8_t *row = p.q + r * p.cols;
            const uint8_t *upr = r >= D ? row - D * p.cols : nullptr;
            for (uint32_t tc = 0; tc < p.tiles_across; tc++) {
                const uint32_t pm = m[tc] & 15;
                const uint64_t c0 = (uint64_t)tc * p.tile_cols;
                const uint32_t w = (uint32_t)min((uint64_t)p.tile_cols, p.cols - c0);
                uint8_t *q = row + c0;
                const uint8_t *up = upr ? upr + c0 : nullptr;
                /* q[-1] was finished by this block (earlier segment, barrier
                 * below); up[] by an earlier row of this chain, or is free. */
                const uint32_t left = c0 ? q[-1] : 0, upleft = c0 && up ? up[-1] : 0;
                if (pm == 2 || pm == 4) {
                    if (pm == 4) block_prefix(q, w, (left - upleft) & 0xff);
                    if (up)
                        for (uint32_t c = threadIdx.x; c < w; c += PT) q[c] = (uint8_t)(q[c] + up[c]);
                } else if (pm == 1) {
                    block_prefix(q, w, left);
                } else if (pm == 3) {
                    block_avg(asm_, q, up, up && so_row == r - D && so_c0 == c0, w, left);
                    so_row = w <= AVG_CHUNK ? r : UINT64_MAX, so_c0 = c0;
                }
                __syncthreads();
            }
        }
    }
}

/* Launches kernel k over the n jobs listed at idx, gridDim.y at most 65,535 at a time. */
template <typename K>
static cudaError_t launch_jobs(K k, dim3 grid, unsigned threads, const wc_gpu_pred_job *jobs, const uint32_t *idx,
                               uint32_t n, const uint8_t *desc, cudaStream_t st)
{
    for (uint32_t j0 = 0; grid.x && j0 < n; j0 += 65535) {
        grid.y = n - j0 < 65535 ? n - j0 : 65535;
        k<<<grid, threads, 0, st>>>(jobs, idx + j0, desc);
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

extern "C" int wc_gpu_launch_predict(const wc_gpu_pred_job *jobs, const uint32_t *idx, const wc_gpu_pred_sizes *sz,
                                     const uint8_t *desc, void *stream)
{
    const uint64_t fb = (sz->free_rows + PT / 32 - 1) / (PT / 32);
    const unsigned gf = (unsigned)(fb < 1024 ? fb : 1024);
    const unsigned gx = (unsigned)(sz->max_chains < 4096 ? sz->max_chains : 4096);
    const unsigned gt = (unsigned)(sz->max_top_chains < 4096 ? sz->max_top_chains : 4096);
    /* a thread per 16 columns of the widest top job, whole warps */
    const unsigned tt = (unsigned)((sz->top_cols + 16 * 32 - 1) / (16 * 32) * 32);
    const unsigned gn = (unsigned)((sz->max_narrow_chains + 127) / 128); /* a thread per chain */
    cudaStream_t st = (cudaStream_t)stream;
    (void)cudaGetLastError();
    const uint32_t *i = idx;
    cudaError_t e = launch_jobs(wc_predict_free_kernel, dim3(gf), PT, jobs, i, sz->n_free, desc, st);
    i += sz->n_free;
    if (e == cudaSuccess) e = launch_jobs(wc_predict_kernel, dim3(gx), PT, jobs, i, sz->n_chain, desc, st);
    i += sz->n_chain;
    if (e == cudaSuccess) e = launch_jobs(wc_predict_top_kernel, dim3(gt), tt, jobs, i, sz->n_top, desc, st);
    i += sz->n_top;
    if (e == cudaSuccess) e = launch_jobs(wc_predict_narrow_kernel, dim3(gn), 128, jobs, i, sz->n_narrow, desc, st);
    return (int)e;
}
