/* rANS: tables, and encode -> reference decode round trips. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "helpers.h"
#include "quant.h"
#include "rans.h"

static void hist_of(const uint8_t *p, size_t n, uint64_t h[256])
{
    memset(h, 0, 256 * sizeof *h);
    for (size_t i = 0; i < n; i++) h[p[i]]++;
}

/* Encodes p with its own table at `bits`, decodes, compares; returns the
 * stream size. */
static size_t round_trip(const uint8_t *p, size_t n, uint32_t bits)
{
    uint64_t h[256];
    hist_of(p, n, h);
    wc_rans_table t;
    assert_int_equal(wc_rans_normalize(h, bits, &t), 0);
    uint32_t sum = 0;
    for (int s = 0; s < 256; s++) {
        sum += t.freq[s];
        if (h[s]) assert_true(t.freq[s] > 0);
    }
    assert_int_equal(sum, 1u << bits);

    uint8_t ser[WC_RANS_TABLE_MAX];
    size_t len = wc_rans_table_write(&t, ser), used;
    wc_rans_table back;
    assert_int_equal(wc_rans_table_read(ser, len, bits, &back, &used), 0);
    assert_int_equal(used, len);
    assert_memory_equal(back.freq, t.freq, sizeof t.freq);

    wc_buf b = {0};
    assert_int_equal(wc_rans_encode_tile(&t, NULL, 1, p, n, &b), 0);
    assert_int_equal(b.len % 4, 0);
    static wc_rans_dec_table d;
    wc_rans_dec_table_init(&d, &back);
    uint8_t *out = malloc(n + 1);
    assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, b.len, out, n), 0);
    assert_memory_equal(out, p, n);
    free(out);
    size_t sz = b.len;
    wc_buf_free(&b);
    return sz;
}

static uint8_t *gen(size_t n, int kind, uint64_t seed)
{
    uint8_t *p = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = th_rand(&seed);
        switch (kind) {
        case 0: p[i] = (uint8_t)r; break;                        /* uniform */
        case 1: p[i] = 0x5a; break;                             /* constant */
        case 2: p[i] = (uint8_t)__builtin_ctzll(r | 1ull << 40); break; /* geometric */
        default: p[i] = (uint8_t)((r % 7) + (r >> 60 == 0 ? 200 : 0)); /* rare symbols */
        }
    }
    return p;
}

static void test_round_trip_kinds_and_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 31, 32, 33, 63, 64, 65, 1000, 4097, 65536 + 7};
    for (int kind = 0; kind < 4; kind++)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
            for (uint32_t bits = WC_RANS_MIN_PROB_BITS; bits <= WC_RANS_MAX_PROB_BITS; bits += 2) {
                uint8_t *p = gen(sizes[k], kind, 1 + k + 100 * kind);
                round_trip(p, sizes[k], bits);
                free(p);
            }
}

/* The stream of a constant tile is the 32 states and nothing else. */
static void test_constant_costs_nothing(void **state)
{
    (void)state;
    uint8_t *p = gen(100000, 1, 5);
    assert_int_equal(round_trip(p, 100000, 12), WC_RANS_HEADER_BYTES);
    free(p);
}

/* Coded size is close to the order-0 entropy on a large skewed input. */
static void test_size_near_entropy(void **state)
{
    (void)state;
    const size_t n = 1 << 20;
    uint8_t *p = gen(n, 2, 9);
    uint64_t h[256];
    hist_of(p, n, h);
    double h0 = wc_entropy_bits(h);
    double bits = 8.0 * (double)round_trip(p, n, 12);
    assert_true(bits < h0 * 1.002 + 2048);
    assert_true(bits > h0 * 0.99);
    free(p);
}

static void test_real_weights_round_trip(void **state)
{
    (void)state;
    wc_st_file f;
    if (wc_st_open(&f, WCT_EXAMPLE_MODEL, NULL)) skip();
    size_t done = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
        const wc_st_tensor *t = &f.tensors[i];
        if (t->ndim < 2 || t->numel < 4096) continue;
        uint64_t cols = t->numel / t->shape[0];
        int8_t *q = malloc(t->numel);
        float s;
        size_t bad;
        for (uint64_t r = 0; r < t->shape[0]; r++)
            assert_int_equal(wc_quantize_row(t->data + r * cols * 4, t->dtype, cols, q + r * cols, &s, &bad), 0);
        round_trip((uint8_t *)q, t->numel, 12);
        free(q);
        done++;
    }
    assert_true(done > 10);
    wc_st_close(&f);
}

static void test_damage_is_detected(void **state)
{
    (void)state;
    const size_t n = 20000;
    uint8_t *p = gen(n, 2, 77), *out = malloc(n);
    uint64_t h[256];
    hist_of(p, n, h);
    wc_rans_table t;
    assert_int_equal(wc_rans_normalize(h, 12, &t), 0);
    static wc_rans_dec_table d;
    wc_rans_dec_table_init(&d, &t);
    wc_buf b = {0};
    assert_int_equal(wc_rans_encode_tile(&t, NULL, 1, p, n, &b), 0);
    uint64_t seed = 3;
    for (int k = 0; k < 200; k++) {
        size_t at = th_rand(&seed) % b.len;
        uint8_t flip = (uint8_t)(1 + th_rand(&seed) % 255);
        b.data[at] ^= flip;
        assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, b.len, out, n), WC_ECORRUPT);
        b.data[at] ^= flip;
    }
    /* truncated by one word group, or given too few/many symbols */
    assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, b.len - 4, out, n), WC_ECORRUPT);
    assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, 100, out, n), WC_ECORRUPT);
    assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, b.len, out, n - 1), WC_ECORRUPT);
    assert_int_equal(wc_rans_decode_ref(&d, NULL, 1, b.data, b.len, out, n), 0);
    wc_buf_free(&b);
    free(p);
    free(out);
}

static void test_bad_tables_refused(void **state)
{
    (void)state;
    wc_rans_table t;
    size_t used;
    const uint8_t short_sum[] = {0, 2, 0, 100, 100};          /* sums to 200, not 4096 */
    const uint8_t too_long[] = {0, 0x01, 0x02, 1};            /* 513 entries */
    const uint8_t truncated[] = {0, 3, 0, 0x8f};              /* 2-byte freq cut short */
    uint8_t ok[] = {7, 1, 0, 0x90, 0x00};                     /* one symbol, 4096 */
    assert_int_equal(wc_rans_table_read(short_sum, sizeof short_sum, 12, &t, &used), WC_EFORMAT);
    assert_int_equal(wc_rans_table_read(too_long, sizeof too_long, 12, &t, &used), WC_EFORMAT);
    assert_int_equal(wc_rans_table_read(truncated, sizeof truncated, 12, &t, &used), WC_EFORMAT);
    assert_int_equal(wc_rans_table_read(ok, sizeof ok, 12, &t, &used), 0);
    assert_int_equal(t.freq[7], 4096);
    assert_int_equal(wc_rans_table_read(ok, sizeof ok, 15, &t, &used), WC_EFORMAT);
    uint64_t h[256] = {0};
    assert_int_equal(wc_rans_normalize(h, 12, &t), WC_EINVAL);
    h[1] = 1;
    assert_int_equal(wc_rans_normalize(h, 7, &t), WC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_kinds_and_sizes), cmocka_unit_test(test_constant_costs_nothing),
        cmocka_unit_test(test_size_near_entropy),          cmocka_unit_test(test_real_weights_round_trip),
        cmocka_unit_test(test_damage_is_detected),         cmocka_unit_test(test_bad_tables_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
