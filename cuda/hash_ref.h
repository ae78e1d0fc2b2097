/* XXH3_64bits (seed 0, the default secret: what a record's hash is,
 * docs/FORMAT.md) of inputs longer than 240 bytes, split the way a GPU can
 * compute it. In XXH3's long-input loop each 1,024-byte block adds to the
 * eight 64-bit accumulators a sum that depends on the block's bytes alone
 * (additions mod 2^64), and only the scramble between two blocks depends
 * on what came before. So the block sums of a record can be computed in
 * any order, by as many threads as there are blocks (memory-bound), and
 * one short sequential scan per record (acc = scramble(acc + sum), eight
 * lanes) and a last step (the partial block, the last stripe, the merge)
 * give the hash.
 *
 * This is the plain C reference of that split: the GPU kernels of the
 * record hashes are to match it, and tests/gpu/test_hash_ref.c checks it
 * against libxxhash's XXH3_64bits, the oracle, for every length class and
 * for records that arrive in segments of any size (a batch of the pipeline
 * holds a part of a record, and a block may straddle two batches). */
#ifndef WCODEC_CUDA_HASH_REF_H
#define WCODEC_CUDA_HASH_REF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WCG_XXH3_BLOCK 1024u     /* bytes of a block: 16 stripes of 64 */
#define WCG_XXH3_MIN_LONG 241u   /* shorter inputs take XXH3's other paths */

/* The sum a block adds to the accumulators (lanes 0..7). */
void wcg_xxh3_block_sum(const uint8_t block[WCG_XXH3_BLOCK], uint64_t sum[8]);
/* The accumulators before the first block. */
void wcg_xxh3_init(uint64_t acc[8]);
/* acc after a block whose sum is given: acc + sum, scrambled. */
void wcg_xxh3_step(uint64_t acc[8], const uint64_t sum[8]);
/* The full blocks of an input of len bytes: those the scan steps over;
 * the rest (1 to 1,024 bytes, a whole block included) is the tail. */
static inline uint64_t wcg_xxh3_blocks(uint64_t len) { return (len - 1) / WCG_XXH3_BLOCK; }
/* The hash: acc after every full block, the tail (its bytes from
 * blocks * 1,024 on), and the input's last 64 bytes (which may begin
 * before the tail). */
uint64_t wcg_xxh3_end(const uint64_t acc[8], const uint8_t *tail, size_t tail_len, const uint8_t last64[64],
                      uint64_t len);
/* All of it on one contiguous input of len >= WCG_XXH3_MIN_LONG bytes. */
uint64_t wcg_xxh3_long(const uint8_t *p, uint64_t len);

/* A record of known length arriving in segments in order, as a pipeline's
 * batches bring it: each complete block is summed and stepped at once,
 * those that straddle two segments pass through `part`; the tail and the
 * last 64 bytes are kept for the end. */
typedef struct wcg_xxh3_stream {
    uint64_t acc[8];
    uint64_t len, at;               /* the record's length, bytes seen */
    uint8_t part[WCG_XXH3_BLOCK];   /* the block being assembled, or the tail */
    uint8_t last64[64];
} wcg_xxh3_stream;

/* How a segment of n bytes at record position `at` splits, the same for
 * this reference and the kernels (cuda/hash.cu): its first `head` bytes
 * finish the block begun before it (or fall in the tail), then `blocks`
 * whole blocks of the record are summed straight from the segment, and the
 * rest begins a block (or is the tail) and waits in `part`. */
typedef struct wcg_xxh3_split {
    uint64_t head, blocks, rest;
} wcg_xxh3_split;

wcg_xxh3_split wcg_xxh3_split_of(uint64_t at, uint64_t n, uint64_t len);
/* The 192 bytes of XXH3's default secret (for the kernels' constant memory). */
const uint8_t *wcg_xxh3_secret(void);

void wcg_xxh3_stream_init(wcg_xxh3_stream *s, uint64_t len);
void wcg_xxh3_stream_add(wcg_xxh3_stream *s, const uint8_t *p, size_t n);
/* The hash once len bytes were added. */
uint64_t wcg_xxh3_stream_end(const wcg_xxh3_stream *s);

/* ---- the kernels (cuda/hash.cu): a batch's segments, one per record ---- */

/* One segment of a record in device memory; head, blocks: its
 * wcg_xxh3_split (the host knows where each record stands); sums: the
 * index of its first whole block's sum in the batch's sum array. */
typedef struct wcg_hash_job {
    const uint8_t *src;
    uint64_t n, head, blocks, sums;
    uint32_t state;          /* its record's wcg_xxh3_stream in the state array */
    uint32_t reserved;
} wcg_hash_job;

/* The secret into the current device's constant memory (a cudaError_t). */
int wcg_hash_setup(void);
/* Adds each job's segment to its record's state (device memory, as
 * wcg_xxh3_stream_add would), on `stream`: block sums of every job into
 * sums (8 x u64 each, `total` in all), then one warp a job. Jobs name
 * distinct states. A cudaError_t. */
int wcg_hash_launch(const wcg_hash_job *jobs, uint32_t n_jobs, uint64_t total, uint64_t *sums,
                    wcg_xxh3_stream *states, void *stream);

#ifdef __cplusplus
}
#endif

#endif
