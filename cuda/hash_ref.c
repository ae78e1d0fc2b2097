/* XXH3_64bits split into block sums, a scan and an end (hash_ref.h),
 * written from XXH3's specification (xxHash's doc/xxhash_spec.md, "XXH3
 * algorithm description", long inputs, seed 0, default secret). */
#include <string.h>

#include "hash_ref.h"

/* The default secret, xxHash's own bytes (its single header carries the
 * implementation; inlined here for the constant alone). */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define STRIPE 64u
#define SECRET_SIZE 192u
#define PRIME_MX2 0x165667919E3779F9ull

static const uint8_t *const secret = XXH3_kSecret;

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only, as the format (docs/FORMAT.md) */
}

/* One stripe of 64 bytes against the secret at key: what it adds. */
static void stripe(uint64_t acc[8], const uint8_t *in, const uint8_t *key)
{
    for (int i = 0; i < 8; i++) {
        uint64_t v = rd64(in + 8 * i), k = v ^ rd64(key + 8 * i);
        acc[i ^ 1] += v;
        acc[i] += (uint64_t)(uint32_t)k * (k >> 32);
    }
}

void wcg_xxh3_block_sum(const uint8_t block[WCG_XXH3_BLOCK], uint64_t sum[8])
{
    memset(sum, 0, 8 * sizeof *sum);
    for (unsigned s = 0; s < WCG_XXH3_BLOCK / STRIPE; s++) stripe(sum, block + s * STRIPE, secret + 8 * s);
}

void wcg_xxh3_init(uint64_t acc[8])
{
    static const uint64_t init[8] = {XXH_PRIME32_3, XXH_PRIME64_1, XXH_PRIME64_2, XXH_PRIME64_3,
                                     XXH_PRIME64_4, XXH_PRIME32_2, XXH_PRIME64_5, XXH_PRIME32_1};
    memcpy(acc, init, sizeof init);
}

void wcg_xxh3_step(uint64_t acc[8], const uint64_t sum[8])
{
    const uint8_t *key = secret + SECRET_SIZE - STRIPE;
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i] + sum[i];
        a ^= a >> 47;
        a ^= rd64(key + 8 * i);
        acc[i] = a * XXH_PRIME32_1;
    }
}

static uint64_t mul_fold(uint64_t a, uint64_t b)
{
    unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
}

uint64_t wcg_xxh3_end(const uint64_t acc_in[8], const uint8_t *tail, size_t tail_len, const uint8_t last64[64],
                      uint64_t len)
{
    uint64_t acc[8];
    memcpy(acc, acc_in, sizeof acc);
    /* the tail's whole stripes but the one that ends the input (a tail of
     * exactly 64 k bytes leaves its last stripe to last64) */
    for (size_t s = 0; s < (tail_len - 1) / STRIPE; s++) stripe(acc, tail + s * STRIPE, secret + 8 * s);
    stripe(acc, last64, secret + SECRET_SIZE - STRIPE - 7);
    uint64_t h = len * XXH_PRIME64_1;
    for (int i = 0; i < 4; i++)
        h += mul_fold(acc[2 * i] ^ rd64(secret + 11 + 16 * i), acc[2 * i + 1] ^ rd64(secret + 11 + 16 * i + 8));
    h ^= h >> 37;
    h *= PRIME_MX2;
    return h ^ (h >> 32);
}

uint64_t wcg_xxh3_long(const uint8_t *p, uint64_t len)
{
    uint64_t acc[8], sum[8], nb = wcg_xxh3_blocks(len);
    wcg_xxh3_init(acc);
    for (uint64_t b = 0; b < nb; b++) {
        wcg_xxh3_block_sum(p + b * WCG_XXH3_BLOCK, sum);
        wcg_xxh3_step(acc, sum);
    }
    return wcg_xxh3_end(acc, p + nb * WCG_XXH3_BLOCK, (size_t)(len - nb * WCG_XXH3_BLOCK), p + len - 64, len);
}

void wcg_xxh3_stream_init(wcg_xxh3_stream *s, uint64_t len)
{
    memset(s, 0, sizeof *s);
    wcg_xxh3_init(s->acc);
    s->len = len;
}

const uint8_t *wcg_xxh3_secret(void) { return secret; }

wcg_xxh3_split wcg_xxh3_split_of(uint64_t at, uint64_t n, uint64_t len)
{
    const uint64_t body = wcg_xxh3_blocks(len) * WCG_XXH3_BLOCK, in = at % WCG_XXH3_BLOCK;
    wcg_xxh3_split x = {0, 0, 0};
    x.head = in ? WCG_XXH3_BLOCK - in : 0;
    if (x.head > n) x.head = n;
    const uint64_t q = at + x.head, end = at + n < body ? at + n : body;
    x.blocks = end > q ? (end - q) / WCG_XXH3_BLOCK : 0;
    x.rest = n - x.head - x.blocks * WCG_XXH3_BLOCK;
    return x;
}

/* The segment's bytes at record positions >= len - 64, into last64. */
static void keep_last64(wcg_xxh3_stream *s, const uint8_t *p, size_t n)
{
    const uint64_t from = s->at > s->len - 64 ? s->at : s->len - 64, to = s->at + n;
    if (from < to) memcpy(s->last64 + (from - (s->len - 64)), p + (from - s->at), (size_t)(to - from));
}

void wcg_xxh3_stream_add(wcg_xxh3_stream *s, const uint8_t *p, size_t n)
{
    const uint64_t body = wcg_xxh3_blocks(s->len) * WCG_XXH3_BLOCK;
    const wcg_xxh3_split x = wcg_xxh3_split_of(s->at, n, s->len);
    uint64_t sum[8];
    keep_last64(s, p, n);
    /* 1: the head finishes the block begun in `part`: stepped if that was a
     * block of the body (the tail waits for the end) */
    const uint64_t in = s->at % WCG_XXH3_BLOCK;
    memcpy(s->part + in, p, (size_t)x.head);
    if (x.head && (in + x.head) % WCG_XXH3_BLOCK == 0 && s->at + x.head <= body) {
        wcg_xxh3_block_sum(s->part, sum);
        wcg_xxh3_step(s->acc, sum);
    }
    /* 2: whole blocks, straight from the segment (the kernels sum these in
     * parallel, then scan) */
    for (uint64_t b = 0; b < x.blocks; b++) {
        wcg_xxh3_block_sum(p + x.head + b * WCG_XXH3_BLOCK, sum);
        wcg_xxh3_step(s->acc, sum);
    }
    /* 3: the rest begins the next block, or is the tail */
    memcpy(s->part, p + x.head + x.blocks * WCG_XXH3_BLOCK, (size_t)x.rest);
    s->at += n;
}

uint64_t wcg_xxh3_stream_end(const wcg_xxh3_stream *s)
{
    const uint64_t body = wcg_xxh3_blocks(s->len) * WCG_XXH3_BLOCK;
    return wcg_xxh3_end(s->acc, s->part, (size_t)(s->len - body), s->last64, s->len);
}
