/* wc_decode_tensor_dequant and its float rounding, against hand-computed
 * bit patterns and the compiler's own float -> _Float16 conversion. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "dequant.h"
#include "helpers.h"

static float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Each row: float32 bits in, bf16 bits out, worked by hand. */
static void test_bf16_vectors(void **state)
{
    (void)state;
    static const uint32_t v[][2] = {
        {0x3f800000, 0x3f80}, /* 1.0 */
        {0x3f808000, 0x3f80}, /* 1 + 2^-8: a tie, lsb 0 stays */
        {0x3f818000, 0x3f82}, /* a tie, lsb 1 rounds up to even */
        {0x3f808001, 0x3f81}, /* just above the tie: up */
        {0x3f807fff, 0x3f80}, /* just below: down */
        {0xbf818000, 0xbf82}, /* negative tie to even */
        {0x80000000, 0x8000}, /* -0 */
        {0x00000001, 0x0000}, /* smallest subnormal: to +0 */
        {0x00018000, 0x0002}, /* a subnormal tie, lsb 1: up */
        {0x7f7fffff, 0x7f80}, /* FLT_MAX: to inf */
        {0x7f7f7fff, 0x7f7f}, /* below the tie: the largest finite bf16 */
        {0xff800000, 0xff80}, /* -inf */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint16_t got = wc_f32_to_bf16(bits_f32(v[i][0]));
        if (got != v[i][1]) fail_msg("bf16(0x%08x) = 0x%04x, want 0x%04x", v[i][0], got, v[i][1]);
    }
    assert_true((wc_f32_to_bf16(nanf("")) & 0x7fc0) == 0x7fc0); /* a quiet NaN */
}

static void test_f16_vectors(void **state)
{
    (void)state;
    static const uint32_t v[][2] = {
        {0x3f800000, 0x3c00}, /* 1.0 */
        {0x3f801000, 0x3c00}, /* 1 + 2^-11: a tie, lsb 0 stays */
        {0x3f803000, 0x3c02}, /* 1 + 3 * 2^-11: a tie, lsb 1 up */
        {0x477fe000, 0x7bff}, /* 65504, the largest finite */
        {0x477fefff, 0x7bff}, /* just below 65520 */
        {0x477ff000, 0x7c00}, /* 65520: a tie to inf */
        {0x38800000, 0x0400}, /* 2^-14, the smallest normal */
        {0x387fc000, 0x03ff}, /* 2^-14 - 2^-24, the largest subnormal */
        {0x387fe000, 0x0400}, /* 2^-14 - 2^-25: a subnormal tie that rounds into the normals */
        {0x33800000, 0x0001}, /* 2^-24, the smallest subnormal */
        {0x33000000, 0x0000}, /* 2^-25: a tie to 0 */
        {0x33400000, 0x0001}, /* 1.5 * 2^-25: up */
        {0x33c00000, 0x0002}, /* 1.5 * 2^-24: a tie, lsb 1 up to 2 */
        {0x34200000, 0x0002}, /* 2.5 * 2^-24: a tie, lsb 0 stays 2 */
        {0xc0490fdb, 0xc248}, /* -pi */
        {0x80000000, 0x8000},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint16_t got = wc_f32_to_f16(bits_f32(v[i][0]));
        if (got != v[i][1]) fail_msg("f16(0x%08x) = 0x%04x, want 0x%04x", v[i][0], got, v[i][1]);
    }
}

/* Every float32 exponent that reaches fp16, random mantissas, both signs:
 * the same bits as the compiler's conversion (IEEE round to nearest even). */
static void test_f16_against_compiler(void **state)
{
    (void)state;
#ifdef __FLT16_MAX__
    uint64_t s = 7;
    for (uint32_t e = 90; e <= 145; e++)
        for (int k = 0; k < 20000; k++) {
            uint32_t x = (uint32_t)(th_rand(&s) & 0x807fffffu) | e << 23;
            _Float16 h = (_Float16)bits_f32(x);
            uint16_t want;
            memcpy(&want, &h, 2);
            uint16_t got = wc_f32_to_f16(bits_f32(x));
            if (got != want) fail_msg("f16(0x%08x) = 0x%04x, the compiler 0x%04x", x, got, want);
        }
#else
    skip();
#endif
}

enum { R = 48, C = 96 }; /* 4608 weights: above the encoder's 4096, so coded */

/* A model with a coded F32 matrix, a raw BF16 vector and a raw I64 vector. */
static const char *encode_model(void)
{
    static float w[R * C];
    static uint16_t v[64];
    static int64_t ids[8];
    static const float nothing[1];
    uint64_t s = 3;
    for (int i = 0; i < R * C; i++) w[i] = ((int)(th_rand(&s) % 20001) - 10000) * 1e-5f * (1 + i / C);
    for (int i = 0; i < 64; i++) v[i] = (uint16_t)(0x3f00 + i * 3);
    const th_tensor t[] = {
        {"w", WC_DT_F32, 2, {R, C}, w},
        {"v", WC_DT_BF16, 1, {64}, v},
        {"ids", WC_DT_I64, 1, {8}, ids},
        {"empty", WC_DT_F32, 2, {0, 4}, nothing},
    };
    const char *src = th_path("dq.safetensors"), *out = th_path("dq.wcodec");
    assert_int_equal(th_write_safetensors(src, t, 4), 0);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.threads = 1;
    assert_int_equal(wc_encode_file(src, out, &o, NULL), 0);
    return out;
}

/* Whole tensors: F32 output equals q * scale computed here; F16 output the
 * compiler's conversion of that; the raw BF16 vector widens exactly. */
static void test_decode_dequant(void **state)
{
    (void)state;
    wc_file *f;
    wc_err e;
    assert_int_equal(wc_file_open(&f, encode_model(), &e), 0);
    int w = wc_file_find(f, "w"), v = wc_file_find(f, "v"), ids = wc_file_find(f, "ids");
    wc_tensor_info ti;
    assert_int_equal(wc_file_tensor_info(f, (size_t)w, &ti), 0);
    assert_int_equal(ti.coding, WC_CODING_RANS_I8);
    static int8_t q[R * C];
    static float s[R], f32[R * C];
    static uint16_t h[R * C];
    assert_int_equal(wc_decode_tensor(f, (size_t)w, q, sizeof q, s, R, &e), 0);
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)w, WC_DT_F32, f32, sizeof f32, &e), 0);
    for (int i = 0; i < R * C; i++) assert_true(f32[i] == (float)q[i] * s[i / C]);
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)w, WC_DT_F16, h, sizeof h, &e), 0);
#ifdef __FLT16_MAX__
    for (int i = 0; i < R * C; i++) {
        _Float16 want = (_Float16)((float)q[i] * s[i / C]);
        assert_memory_equal(&h[i], &want, 2);
    }
#endif
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)w, WC_DT_BF16, h, sizeof h, &e), 0);
    for (int i = 0; i < R * C; i++) assert_int_equal(h[i], wc_f32_to_bf16((float)q[i] * s[i / C]));
    float vf[64];
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)v, WC_DT_F32, vf, sizeof vf, &e), 0);
    for (int i = 0; i < 64; i++) {
        uint32_t want = (uint32_t)(0x3f00 + i * 3) << 16, got;
        memcpy(&got, &vf[i], 4);
        assert_int_equal(got, want);
    }
    /* an empty tensor: nothing to write, NULL is a valid output */
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)wc_file_find(f, "empty"), WC_DT_BF16, NULL, 0, &e), 0);
    /* errors name the file and tensor */
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)ids, WC_DT_F32, f32, sizeof f32, &e), WC_EINVAL);
    assert_true(th_msg_has(e.msg, "dq.wcodec", "'ids'", "I64", NULL));
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)w, WC_DT_I8, f32, sizeof f32, &e), WC_EINVAL);
    assert_int_equal(wc_decode_tensor_dequant(f, (size_t)w, WC_DT_F32, f32, sizeof f32 - 1, &e), WC_EINVAL);
    assert_true(th_msg_has(e.msg, "'w'", "needs", NULL));
    assert_int_equal(wc_decode_tensor_dequant(f, 99, WC_DT_F32, f32, sizeof f32, &e), WC_EINVAL);
    wc_file_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_vectors),
        cmocka_unit_test(test_f16_vectors),
        cmocka_unit_test(test_f16_against_compiler),
        cmocka_unit_test(test_decode_dequant),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r;
}
