/* cuda/hash_ref.c, the split XXH3 the GPU's record hashes are to follow,
 * against libxxhash's XXH3_64bits (the oracle, and what the encoder and
 * the CPU decoder use): one contiguous input of every length class, the
 * block sums taken in reverse order before the scan, and records arriving
 * in segments of random and of awkward sizes. No device needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "hash_ref.h"

#define MAX_LEN ((3u << 20) + 77)

static uint8_t *data;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int setup(void **state)
{
    (void)state;
    data = malloc(MAX_LEN);
    for (size_t i = 0; i < MAX_LEN; i++) data[i] = (uint8_t)(next() >> 24);
    return data ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(data);
    return 0;
}

/* lengths around every boundary of the split: 240/241 (the long path's
 * start), a stripe, a block, a block and a stripe, several blocks */
static const uint64_t lens[] = {241, 255, 256, 257, 319, 320, 1023, 1024, 1025, 1087, 1088, 1089, 2047, 2048,
                                2049, 3072 + 63, 3072 + 64, 3072 + 65, 16384, 65537, MAX_LEN};

static void one_input(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++)
        assert_int_equal(wcg_xxh3_long(data, lens[k]), XXH3_64bits(data, lens[k]));
    for (int k = 0; k < 300; k++) { /* and anywhere in the data, any length */
        uint64_t len = WCG_XXH3_MIN_LONG + next() % 20000, off = next() % (MAX_LEN - len);
        assert_int_equal(wcg_xxh3_long(data + off, len), XXH3_64bits(data + off, len));
    }
}

/* every block's sum first, last block first (as threads finishing in any
 * order), then the scan and the end: the split the kernels make */
static void sums_in_any_order(void **state)
{
    (void)state;
    const uint64_t len = MAX_LEN, nb = wcg_xxh3_blocks(len);
    uint64_t(*sums)[8] = malloc(nb * sizeof *sums), acc[8];
    assert_non_null(sums);
    for (uint64_t b = nb; b-- > 0;) wcg_xxh3_block_sum(data + b * WCG_XXH3_BLOCK, sums[b]);
    wcg_xxh3_init(acc);
    for (uint64_t b = 0; b < nb; b++) wcg_xxh3_step(acc, sums[b]);
    uint64_t h = wcg_xxh3_end(acc, data + nb * WCG_XXH3_BLOCK, (size_t)(len - nb * WCG_XXH3_BLOCK),
                              data + len - 64, len);
    assert_int_equal(h, XXH3_64bits(data, len));
    free(sums);
}

static uint64_t streamed(const uint8_t *p, uint64_t len, size_t (*cut)(uint64_t at, uint64_t left))
{
    wcg_xxh3_stream s;
    wcg_xxh3_stream_init(&s, len);
    for (uint64_t at = 0; at < len;) {
        size_t n = cut(at, len - at);
        wcg_xxh3_stream_add(&s, p + at, n);
        at += n;
    }
    return wcg_xxh3_stream_end(&s);
}

static size_t cut_random(uint64_t at, uint64_t left)
{
    (void)at;
    size_t n = 1 + (size_t)(next() % 5000);
    return n < left ? n : (size_t)left;
}

/* one byte at a time within 70 bytes of any block boundary and of the end,
 * else up to the next such point: every straddling case */
static size_t cut_edges(uint64_t at, uint64_t left)
{
    uint64_t in = at % WCG_XXH3_BLOCK;
    if (in < 70 || in > WCG_XXH3_BLOCK - 70 || left < 70) return 1;
    uint64_t n = WCG_XXH3_BLOCK - 70 - in;
    return (size_t)(n ? (n < left ? n : left) : 1);
}

/* segments of exactly a block, then of 3 blocks and 5 bytes */
static size_t cut_blocks(uint64_t at, uint64_t left)
{
    uint64_t n = (at / WCG_XXH3_BLOCK) % 2 ? 3 * WCG_XXH3_BLOCK + 5 : WCG_XXH3_BLOCK;
    return (size_t)(n < left ? n : left);
}

static void segments(void **state)
{
    (void)state;
    size_t (*cuts[])(uint64_t, uint64_t) = {cut_random, cut_edges, cut_blocks};
    for (size_t c = 0; c < 3; c++) {
        for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
            uint64_t len = lens[k] > 70000 && c == 1 ? 70000 : lens[k]; /* byte steps are slow */
            assert_int_equal(streamed(data, len, cuts[c]), XXH3_64bits(data, len));
        }
        for (int k = 0; k < 50; k++) {
            uint64_t len = WCG_XXH3_MIN_LONG + next() % 9000, off = next() % (MAX_LEN - len);
            assert_int_equal(streamed(data + off, len, cuts[c]), XXH3_64bits(data + off, len));
        }
    }
}

/* a changed byte anywhere changes the hash (as the oracle's does) */
static void damage(void **state)
{
    (void)state;
    const uint64_t len = 5000, want = XXH3_64bits(data, len);
    for (uint64_t at = 0; at < len; at += 997) {
        data[at] ^= 0x40;
        assert_int_not_equal(wcg_xxh3_long(data, len), want);
        assert_int_equal(wcg_xxh3_long(data, len), XXH3_64bits(data, len));
        data[at] ^= 0x40;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_input),
        cmocka_unit_test(sums_in_any_order),
        cmocka_unit_test(segments),
        cmocka_unit_test(damage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
