/* What the GPU decoder's kernels and its host side share: the device-side
 * work descriptors and the launchers (docs/FORMAT.md is the bitstream).
 *
 * The host parses and checks every record (tables, row map, tile index) and
 * hands the kernels flat descriptors, so that a kernel never parses a file:
 *   wc_gpu_job   one coded tensor (or a piece of one: a range of its tiles)
 *   wc_gpu_tile  one tile: where its stream lies, its job, where the job's
 *                tables lie in its block's shared memory
 * One warp decodes one tile. A block's WC_GPU_WARPS tiles lie in runs of one
 * job each, and the block holds each of those jobs' frequency tables in
 * shared memory once: small tensors share blocks instead of leaving most of
 * their warps idle (gpu_desc.c packs them within a shared memory budget).
 *
 * Expanded table layout (in the descriptor area, 16-byte aligned), per table:
 *   256 x u32  fc[s] = freq[s] | cum[s] << 16
 *   M   x u8   slot_sym[slot]
 * so one table takes WC_GPU_TABLE_BYTES(prob_bits) bytes. A tensor whose
 * frequencies are all <= 4096 and whose tables take at most
 * WC_GPU_PACKED_MAX bytes packed gets the packed layout instead
 * (wc_gpu_job.packed) where its piece fills its blocks or packed tables are
 * no larger (gpu_desc.c, piece_packed), per table the CPU decoders'
 * slot_dec (codec/rans.h):
 *   M   x u32  (freq - 1) << 20 | (slot - cum) << 8 | symbol
 * so that a step costs one shared load instead of two dependent ones. */
#ifndef WC_CUDA_KERNELS_CUH
#define WC_CUDA_KERNELS_CUH

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WC_GPU_WARPS
#define WC_GPU_WARPS 16                      /* tiles (warps) per block */
#endif
#define WC_GPU_THREADS (32 * WC_GPU_WARPS)
#define WC_GPU_RING_WORDS 1024               /* per-warp word ring (rans_decode.cu) */
#define WC_GPU_RING_AREA (WC_GPU_RING_WORDS * 2 + 512) /* a ring and the mirror of its first segment */
#define WC_GPU_STATIC_SMEM (WC_GPU_WARPS * WC_GPU_RING_AREA) /* the rings (rans_decode.cu) */
#define WC_GPU_TABLE_BYTES(bits) (1024u + (1u << (bits)))
#define WC_GPU_PACKED_BYTES(bits) (4u << (bits))
#define WC_GPU_ONE_TABLE_BYTES(packed, bits) ((packed) ? WC_GPU_PACKED_BYTES(bits) : WC_GPU_TABLE_BYTES(bits))
#ifndef WC_GPU_PACKED_MAX
#define WC_GPU_PACKED_MAX 65536u             /* a tensor's packed tables at most (two blocks per SM) */
#endif
/* Whether n tables of `bits` may take the packed layout (every frequency
 * <= 4096 is the caller's to check). */
#define WC_GPU_PACKED_FITS(n, bits) ((uint64_t)(n) * WC_GPU_PACKED_BYTES(bits) <= WC_GPU_PACKED_MAX)
#define WC_GPU_NO_ROWMAP UINT64_MAX
#define WC_GPU_NO_SCALES UINT64_MAX
#define WC_GPU_TILE_PAD UINT32_MAX          /* wc_gpu_tile.tile of a padding entry */
#define WC_GPU_JOB_SCALES (1u << 31)        /* wc_gpu_tile.job: this block copies the job's scales */
/* Blocks per SM the decode kernel is built for (its launch bounds): the
 * host sizes a block's tables so as not to lower it. */
#ifndef WC_GPU_BPSM_MULTI
#define WC_GPU_BPSM_MULTI 2
#endif
#ifndef WC_GPU_BPSM_ONE
#define WC_GPU_BPSM_ONE 3
#endif
#define WC_GPU_BLOCKS_PER_SM(several_tables) ((several_tables) ? WC_GPU_BPSM_MULTI : WC_GPU_BPSM_ONE)

/* Error word per job: the lowest (tile << 8 | kind) found, UINT64_MAX when none. */
#define WC_GPU_ERR_CORRUPT 1u               /* end-state / word-count check failed */

typedef struct wc_gpu_job {
    uint8_t *out;            /* device: the tensor's INT8 matrix (rows x cols) */
    float *scales_dst;       /* device: where the scales go, or NULL */
    uint64_t scales_src;     /* offset of rows floats in the descriptor area, or NO_SCALES */
    uint64_t tables_off;     /* offset of the expanded tables in the descriptor area */
    uint64_t rowmap_off;     /* offset of the row map (rows bytes) in the descriptor area */
    uint64_t rows, cols;
    uint32_t tile_rows, tile_cols, tiles_across, prob_bits;
    uint32_t n_tables, any_tx, packed, pad1; /* packed: one table, packed layout */
} wc_gpu_job;

typedef struct wc_gpu_tile {
    uint64_t src;            /* offset of the stream in the data area */
    uint32_t len;            /* stream bytes */
    uint32_t tile;           /* tile number in its tensor, or WC_GPU_TILE_PAD */
    uint32_t job;            /* index of its job | WC_GPU_JOB_SCALES on the job's first tile */
    uint32_t tab;            /* byte offset of the job's tables in the block's dynamic shared memory */
} wc_gpu_tile;

/* Modes of a tile live in a byte array beside the tiles (same index). */

typedef struct wc_gpu_launch {
    const wc_gpu_job *jobs;        /* device */
    const wc_gpu_tile *tiles;      /* device, n_blocks * WC_GPU_WARPS entries */
    const uint8_t *modes;          /* device, same count */
    const uint8_t *data;           /* device base of stream offsets */
    const uint8_t *desc;           /* device base of table / rowmap / scales offsets */
    unsigned long long *errs;      /* device, one per job */
    uint32_t n_blocks;
    uint32_t smem_bytes;           /* the most table bytes of a block; 0: tables from global memory */
    int multi_table;               /* some job has n_tables > 1 */
    int general_tiles;             /* some job has tiles that are not contiguous in its output */
} wc_gpu_launch;

/* Launches the rANS decode (and the fused inverse transform) of every tile
 * listed. Returns a cudaError_t value (0 = success). */
int wc_gpu_launch_decode(const wc_gpu_launch *l, void *stream);

/* Unfused inverse transform of every tile listed (for measurement and
 * tests; the decode kernel does it itself). */
int wc_gpu_launch_itx(const wc_gpu_launch *l, void *stream);
/* dequant.cu: q x scales[row] into out, kind 0 BF16, 1 F16, 2 F32 (a cudaError_t). */
int wcg_dequant_launch(const int8_t *q, const float *scales, uint64_t rows, uint64_t cols, int kind, void *out,
                       void *stream);

/* Prediction over whole tensors, after the decode of all their tiles: a
 * launch of each kernel some job of the batch needs, over those jobs.
 * `modes_off` locates each tile's mode byte (n_tiles of them) in the
 * descriptor area; q holds the residuals on entry and the values on
 * return. A row of tiles whose modes are all none or left needs no other
 * row ("free"): those rows go first, a warp each; the rows of the others
 * (top, avg, planar: the row D above) then follow their chains, in one of
 * three kernels (predictor_reconstruct.cu). */
#define WC_GPU_PRED_FREE 1u   /* some free row of tiles has a left tile */
#define WC_GPU_PRED_CHAINS 2u /* some row of tiles reads the row D above */
#define WC_GPU_PRED_TOP 4u    /* chained, one tile across, at most WC_GPU_PRED_TOP_W columns, tiles none or top */
#define WC_GPU_PRED_TOP_W 4096u
#define WC_GPU_PRED_NARROW 8u /* chained, one tile across, at most WC_GPU_PRED_NARROW_W columns, not TOP */
#define WC_GPU_PRED_NARROW_W 32u
typedef struct wc_gpu_pred_job {
    uint8_t *q;
    uint64_t modes_off;
    uint64_t rows, cols;
    uint32_t tile_rows, tile_cols, tiles_across, top_distance;
    uint32_t kinds, pad; /* WC_GPU_PRED_* */
} wc_gpu_pred_job;
/* Which jobs each prediction kernel takes, and what sizes its launch: a
 * kernel's blocks are only for its own jobs (idx: the job numbers, the
 * free kernel's first, then the general chain kernel's, the top kernel's
 * and the narrow kernel's; a job is in at most two lists). */
typedef struct wc_gpu_pred_sizes {
    uint32_t n_free, n_chain, n_top, n_narrow; /* jobs in each list */
    uint64_t free_rows;         /* the most rows of a job with WC_GPU_PRED_FREE */
    uint64_t max_chains;        /* the largest min(top_distance, rows) of a chained job neither TOP nor NARROW */
    uint64_t max_top_chains;    /* the same for the jobs with WC_GPU_PRED_TOP */
    uint64_t top_cols;          /* the most columns of a job with WC_GPU_PRED_TOP */
    uint64_t max_narrow_chains; /* the same for the jobs with WC_GPU_PRED_NARROW */
} wc_gpu_pred_sizes;
/* jobs and idx: device, in the descriptor area at desc. */
int wc_gpu_launch_predict(const wc_gpu_pred_job *jobs, const uint32_t *idx, const wc_gpu_pred_sizes *sz,
                          const uint8_t *desc, void *stream);

/* Allows the decode kernel max_smem_optin - WC_GPU_STATIC_SMEM bytes of
 * dynamic shared memory (the tables). */
int wc_gpu_decode_setup(int max_smem_optin);

#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
/* Tile t of job j: its first row and column, its height and width (the
 * device's wc_tile_rect, codec/record.c). */
__device__ __forceinline__ void wc_gpu_tile_rect(const wc_gpu_job *j, uint32_t t, uint64_t &r0, uint64_t &c0,
                                                 uint32_t &h, uint32_t &w)
{
    r0 = (uint64_t)(t / j->tiles_across) * j->tile_rows;
    c0 = (uint64_t)(t % j->tiles_across) * j->tile_cols;
    h = (uint32_t)min((uint64_t)j->tile_rows, j->rows - r0);
    w = (uint32_t)min((uint64_t)j->tile_cols, j->cols - c0);
}
#endif
#endif
