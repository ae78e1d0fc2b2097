/* wcd_spans against hand-worked cases and against an independent model: a
 * map of the arena's align-sized units, where first fit is "the lowest run
 * of free units long enough", checked after every step of random
 * allocations and frees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <wcodec/wcodec.h>

#include "spans.h"

static void test_hand(void **state)
{
    (void)state;
    wcd_spans s;
    uint64_t a, b, c, d;
    assert_int_equal(wcd_spans_init(&s, 4096, 256), 0);
    assert_int_equal(wcd_spans_alloc(&s, 1, &a), 0);     /* 256 at 0 */
    assert_int_equal(wcd_spans_alloc(&s, 300, &b), 0);   /* 512 at 256 */
    assert_int_equal(wcd_spans_alloc(&s, 1024, &c), 0);  /* 1024 at 768 */
    assert_int_equal(a, 0);
    assert_int_equal(b, 256);
    assert_int_equal(c, 768);
    assert_int_equal(s.used, 1792);
    assert_int_equal(wcd_spans_free(&s, b, 300), 0);     /* hole [256, 768) */
    assert_int_equal(wcd_spans_largest(&s), 4096 - 1792);
    assert_int_equal(wcd_spans_alloc(&s, 600, &d), 0);   /* 768 does not fit the hole */
    assert_int_equal(d, 1792);
    assert_int_equal(wcd_spans_alloc(&s, 512, &d), 0);   /* fits it exactly */
    assert_int_equal(d, 256);
    assert_int_equal(wcd_spans_free(&s, 256, 512), 0);
    assert_int_equal(wcd_spans_free(&s, 256, 512), WC_EINVAL); /* double free */
    assert_int_equal(wcd_spans_free(&s, 128, 256), WC_EINVAL); /* misaligned */
    assert_int_equal(wcd_spans_free(&s, 3840, 512), WC_EINVAL); /* past the end */
    assert_int_equal(wcd_spans_alloc(&s, 4096, &d), WC_ENOMEM);
    assert_int_equal(wcd_spans_alloc(&s, 0, &d), WC_EINVAL);
    assert_int_equal(wcd_spans_free(&s, 0, 1), 0);
    assert_int_equal(wcd_spans_free(&s, 768, 1024), 0);
    assert_int_equal(wcd_spans_free(&s, 1792, 600), 0);
    assert_true(wcd_spans_empty(&s));
    assert_int_equal(s.n_free, 1);                       /* all merged again */
    assert_int_equal(wcd_spans_largest(&s), 4096);
    wcd_spans_deinit(&s);
    assert_int_equal(wcd_spans_init(&s, 4096, 100), WC_EINVAL);
    assert_int_equal(wcd_spans_init(&s, 4000, 256), WC_EINVAL);
}

#define UNITS 512
#define ALIGN 64
#define MAXLIVE 200

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* first run of `n` free units in the map, or -1 */
static long model_first_fit(const unsigned char *map, size_t n)
{
    for (size_t i = 0, run = 0; i < UNITS; i++) {
        run = map[i] ? 0 : run + 1;
        if (run == n) return (long)(i + 1 - n);
    }
    return -1;
}

static void test_random(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        uint64_t x = seed * 0x9E3779B97F4A7C15ull;
        unsigned char map[UNITS] = {0};
        struct { uint64_t off, len; } live[MAXLIVE];
        size_t n_live = 0;
        wcd_spans s;
        assert_int_equal(wcd_spans_init(&s, UNITS * ALIGN, ALIGN), 0);
        for (int step = 0; step < 4000; step++) {
            if (n_live < MAXLIVE && (rnd(&x) % 3 || !n_live)) {
                uint64_t len = 1 + rnd(&x) % (ALIGN * 24);
                size_t units = (size_t)((len + ALIGN - 1) / ALIGN);
                long want = model_first_fit(map, units);
                uint64_t off = 0;
                int r = wcd_spans_alloc(&s, len, &off);
                if (want < 0) {
                    assert_int_equal(r, WC_ENOMEM);
                    continue;
                }
                assert_int_equal(r, 0);
                assert_int_equal(off, (uint64_t)want * ALIGN);
                memset(map + want, 1, units);
                live[n_live].off = off;
                live[n_live++].len = len;
            } else {
                size_t k = (size_t)(rnd(&x) % n_live);
                assert_int_equal(wcd_spans_free(&s, live[k].off, live[k].len), 0);
                assert_int_equal(wcd_spans_free(&s, live[k].off, live[k].len), WC_EINVAL);
                memset(map + live[k].off / ALIGN, 0, (size_t)((live[k].len + ALIGN - 1) / ALIGN));
                live[k] = live[--n_live];
            }
            /* the free list is exactly the map's free runs */
            size_t used = 0, runs = 0;
            for (size_t i = 0; i < UNITS; i++) {
                used += map[i];
                if (!map[i] && (i == 0 || map[i - 1])) runs++;
            }
            assert_int_equal(s.used, used * ALIGN);
            assert_int_equal(s.n_free, runs);
        }
        while (n_live) {
            n_live--;
            assert_int_equal(wcd_spans_free(&s, live[n_live].off, live[n_live].len), 0);
        }
        assert_true(wcd_spans_empty(&s));
        assert_int_equal(s.n_free, 1);
        wcd_spans_deinit(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
