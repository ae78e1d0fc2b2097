/* The quantizer against hand-computed vectors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quant.h"

static int quant_f32(const float *w, size_t n, int8_t *q, float *s, size_t *bad)
{
    return wc_quantize_row((const uint8_t *)w, WC_DT_F32, n, q, s, bad);
}

/* With max|w| = 127 the scale is exactly 1, so w/s = w and the rounding of
 * every tie is visible: half to even, both signs. */
static void test_ties_half_to_even(void **state)
{
    (void)state;
    const float w[] = {127, 0.5f, 1.5f, 2.5f, 3.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f};
    const int8_t want[] = {127, 0, 2, 2, 4, 0, -2, -2, 126, -126};
    int8_t q[10];
    float s;
    size_t bad;
    assert_int_equal(quant_f32(w, 10, q, &s, &bad), 0);
    assert_true(s == 1.0f);
    assert_memory_equal(q, want, sizeof want);
}

static void test_max_maps_to_127(void **state)
{
    (void)state;
    const float w[] = {0.1f, -3.0f, 2.0f, 1.0f};
    int8_t q[4];
    float s;
    size_t bad;
    assert_int_equal(quant_f32(w, 4, q, &s, &bad), 0);
    assert_true(s == 3.0f / 127.0f);
    /* 0.1/s = 4.2333 -> 4; 2/s = 84.667 -> 85; 1/s = 42.333 -> 42 */
    const int8_t want[] = {4, -127, 85, 42};
    assert_memory_equal(q, want, sizeof want);
    const float p[] = {5.0f, -1.0f};
    assert_int_equal(quant_f32(p, 2, q, &s, &bad), 0);
    assert_int_equal(q[0], 127);
    assert_int_equal(q[1], -25); /* -1/(5/127) = -25.4 */
}

static void test_zero_row_scale_one(void **state)
{
    (void)state;
    const float w[] = {0.0f, -0.0f, 0.0f};
    int8_t q[3] = {9, 9, 9};
    float s;
    size_t bad;
    assert_int_equal(quant_f32(w, 3, q, &s, &bad), 0);
    assert_true(s == 1.0f);
    assert_int_equal(q[0] | q[1] | q[2], 0);
}

/* Where max|w| / 127 underflows to zero the row is treated as all-zero. */
static void test_subnormal_row(void **state)
{
    (void)state;
    const float w[] = {0x1p-149f, -0x1p-149f};
    int8_t q[2] = {9, 9};
    float s;
    size_t bad;
    assert_int_equal(quant_f32(w, 2, q, &s, &bad), 0);
    assert_true(s == 1.0f);
    assert_int_equal(q[0] | q[1], 0);
}

static void test_nan_and_inf_refused(void **state)
{
    (void)state;
    const float w1[] = {1.0f, 2.0f, NAN, 3.0f};
    const float w2[] = {1.0f, -INFINITY};
    int8_t q[4];
    float s;
    size_t bad = 99;
    assert_int_equal(quant_f32(w1, 4, q, &s, &bad), WC_ERANGE);
    assert_int_equal(bad, 2);
    assert_int_equal(quant_f32(w2, 2, q, &s, &bad), WC_ERANGE);
    assert_int_equal(bad, 1);
}

static void test_half_and_bfloat(void **state)
{
    (void)state;
    /* fp16: 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800, smallest subnormal 0x0001 = 2^-24 */
    assert_true(wc_f16_to_f32(0x3c00) == 1.0f);
    assert_true(wc_f16_to_f32(0xc000) == -2.0f);
    assert_true(wc_f16_to_f32(0x3800) == 0.5f);
    assert_true(wc_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(wc_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(isinf(wc_f16_to_f32(0x7c00)));
    assert_true(isnan(wc_f16_to_f32(0x7e00)));
    /* bf16 is the top half of a float32 */
    assert_true(wc_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(wc_bf16_to_f32(0xc040) == -3.0f);
    const uint16_t h[] = {0x3c00, 0xc000, 0x3800}; /* 1, -2, 0.5 as F16 */
    int8_t q[3];
    float s;
    size_t bad;
    assert_int_equal(wc_quantize_row((const uint8_t *)h, WC_DT_F16, 3, q, &s, &bad), 0);
    assert_true(s == 2.0f / 127.0f);
    const int8_t want[] = {64, -127, 32}; /* 63.5 -> 64 (even), 31.75 -> 32 */
    assert_memory_equal(q, want, 3);
}

static void test_ints_as_float(void **state)
{
    (void)state;
    const int16_t w[] = {-254, 127, 1};
    int8_t q[3];
    float s;
    size_t bad;
    assert_int_equal(wc_quantize_row((const uint8_t *)w, WC_DT_I16, 3, q, &s, &bad), 0);
    assert_true(s == 2.0f);
    const int8_t want[] = {-127, 64, 0}; /* 63.5 -> 64, 0.5 -> 0 */
    assert_memory_equal(q, want, 3);
    assert_true(wc_dtype_quantizable(WC_DT_I16, true));
    assert_false(wc_dtype_quantizable(WC_DT_I16, false));
    assert_false(wc_dtype_quantizable(WC_DT_I8, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_half_to_even), cmocka_unit_test(test_max_maps_to_127),
        cmocka_unit_test(test_zero_row_scale_one), cmocka_unit_test(test_subnormal_row),
        cmocka_unit_test(test_nan_and_inf_refused), cmocka_unit_test(test_half_and_bfloat),
        cmocka_unit_test(test_ints_as_float),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
