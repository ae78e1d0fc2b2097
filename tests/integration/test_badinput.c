/* Every kind of bad input gets a clear error naming the file, the tensor and
 * the offset at fault; nothing is written for a failed encode. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#include "format.h"
#include "helpers.h"

static uint8_t *good;
static size_t good_size;
static const char *good_path;

/* A small model: a coded matrix, with scales, over several tiles, and a raw
 * vector. Tensor 0 is coded, tensor 1 raw. */
static int setup(void **state)
{
    (void)state;
    static float w[96 * 100], b[100];
    uint64_t seed = 1;
    for (size_t i = 0; i < 96 * 100; i++) w[i] = (float)((int64_t)(th_rand(&seed) % 2001) - 1000) / 997.0f;
    for (size_t i = 0; i < 100; i++) b[i] = (float)i;
    const th_tensor t[] = {{"enc.weight", WC_DT_F32, 2, {96, 100}, w},
                           {"enc.bias", WC_DT_F32, 1, {100}, b}};
    const char *src = th_path("good.safetensors");
    if (th_write_safetensors(src, t, 2)) return -1;
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.tile_weights = 1000;
    good_path = strdup(th_path("good.wcodec"));
    if (wc_encode_file(src, good_path, &o, NULL)) return -1;
    good = th_read_file(good_path, &good_size);
    return good ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(good);
    th_cleanup();
    return 0;
}

/* Decoding threads of try_image (wc_decode_tensor_ex's): with one, each
 * stream is hashed as it is decoded; with several, the record's rest after. */
static int g_threads = 1;

/* Writes the image and opens it; returns the open error, or the decode
 * error of tensor `decode` (or of verify, if decode < 0). */
static int try_image(const uint8_t *img, size_t n, int decode, wc_err *e)
{
    const char *p = th_path("bad.wcodec");
    assert_int_equal(th_write_file(p, img, n), 0);
    wc_file *f;
    memset(e, 0, sizeof *e);
    int r = wc_file_open(&f, p, e);
    if (r) return r;
    if (decode < 0) {
        r = wc_file_verify(f, e);
    } else {
        uint8_t *out = malloc(96 * 100);
        float sc[96];
        const wc_decode_opts o = {.threads = g_threads};
        r = wc_decode_tensor_ex(f, (size_t)decode, out, 96 * 100, sc, 96, &o, e);
        free(out);
    }
    wc_file_close(f);
    return r;
}

static uint8_t *copy_good(void)
{
    uint8_t *p = malloc(good_size);
    memcpy(p, good, good_size);
    return p;
}

static void test_good_file_is_good(void **state)
{
    (void)state;
    wc_err e;
    assert_int_equal(try_image(good, good_size, -1, &e), 0);
}

static void test_truncated(void **state)
{
    (void)state;
    wc_err e;
    const size_t cuts[] = {0, 1, 8, 63, 64, 100, good_size / 2, good_size - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        int r = try_image(good, cuts[k], -1, &e);
        assert_int_equal(r, WC_EFORMAT);
        assert_true(th_msg_has(e.msg, "bad.wcodec", "truncated", NULL));
    }
}

static void test_wrong_magic(void **state)
{
    (void)state;
    uint8_t *p = copy_good();
    wc_err e;
    p[1] = 'X';
    assert_int_equal(try_image(p, good_size, -1, &e), WC_EFORMAT);
    assert_true(th_msg_has(e.msg, "bad.wcodec", "magic", "offset 0", NULL));
    free(p);
}

static void test_wrong_version(void **state)
{
    (void)state;
    uint8_t *p = copy_good();
    wc_err e;
    wc_wr16(p + 8, 7);
    th_reseal(p, good_size);
    assert_int_equal(try_image(p, good_size, -1, &e), WC_EVERSION);
    assert_true(th_msg_has(e.msg, "bad.wcodec", "version 7", "offset 8", NULL));
    /* and without resealing, the header checksum catches it first */
    wc_wr16(p + 56, (uint16_t)(wc_rd16(p + 56) ^ 1));
    assert_int_equal(try_image(p, good_size, -1, &e), WC_ECHECKSUM);
    free(p);
}

static void test_flipped_directory_byte(void **state)
{
    (void)state;
    uint64_t dir = wc_rd64(good + 24);
    wc_err e;
    for (uint64_t at = dir; at < good_size; at += 7) {
        uint8_t *p = copy_good();
        p[at] ^= 0x10;
        assert_int_equal(try_image(p, good_size, -1, &e), WC_ECHECKSUM);
        assert_true(th_msg_has(e.msg, "bad.wcodec", "directory", NULL));
        free(p);
    }
}

/* A flipped byte in a tile stream: the record checksum finds every one and
 * names the tensor and its byte range. With the checksum forged, the rANS
 * end-state check names the tile and its offset for nearly all, but not a
 * flip that only moves a slot to another symbol of the same frequency
 * (docs/FORMAT.md, "Integrity"): of this model's 109 sampled flips, none
 * passes it at the default 13-bit tables and one did at 12-bit tables. */
static void test_flipped_tile_byte(void **state)
{
    (void)state;
    size_t ent = th_dir_entry(good, 0);
    uint64_t rec = wc_rd64(good + ent + 8), size = wc_rd64(good + ent + 16);
    uint64_t tiles = wc_rd64(good + ent + WC_DIR_FIXED + 16 + WC_DIR_RANS - 8);
    wc_err e;
    char at[64];
    unsigned flips = 0, missed = 0;
    for (uint64_t k = tiles + 3; k < size; k += 97) {
        uint8_t *p = copy_good();
        p[rec + k] ^= 0x40;
        assert_int_equal(try_image(p, good_size, 0, &e), WC_ECHECKSUM);
        snprintf(at, sizeof at, "[%llu, %llu)", (unsigned long long)rec,
                 (unsigned long long)(rec + size));
        assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", at, NULL));
        th_rehash_record(p, 0);
        th_reseal(p, good_size);
        int r = try_image(p, good_size, 0, &e);
        flips++;
        if (r == 0) {
            missed++;
        } else {
            assert_int_equal(r, WC_ECORRUPT);
            assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", "tile", "offset", NULL));
        }
        free(p);
    }
    assert_true(flips >= 100);
    assert_true(missed * 50 <= flips);
}

static void test_flipped_tile_byte_threads(void **state)
{
    g_threads = 3;
    test_flipped_tile_byte(state);
    g_threads = 1;
}

/* Forged directory fields (checksums recomputed) reach the semantic checks. */
static void forge(size_t tensor, size_t field_off, int width, uint64_t value, int want,
                  const char *word)
{
    uint8_t *p = copy_good();
    size_t ent = th_dir_entry(p, tensor);
    if (width == 1) p[ent + field_off] = (uint8_t)value;
    else if (width == 4) wc_wr32(p + ent + field_off, (uint32_t)value);
    else wc_wr64(p + ent + field_off, value);
    th_reseal(p, good_size);
    wc_err e;
    assert_int_equal(try_image(p, good_size, -1, &e), want);
    assert_true(th_msg_has(e.msg, "bad.wcodec", word, NULL));
    if (tensor == 0 && want != WC_EFORMAT) assert_true(th_msg_has(e.msg, "enc.weight", NULL));
    free(p);
}

static void test_forged_directory(void **state)
{
    (void)state;
    const size_t shape = WC_DIR_FIXED, rans = WC_DIR_FIXED + 16; /* tensor 0 is 2-D */
    forge(0, 4, 1, 99, WC_EFORMAT, "unknown dtype 99");
    forge(0, 5, 1, 7, WC_EFORMAT, "unknown coding");
    forge(0, shape, 8, 1ull << 40, WC_EFORMAT, "enc.weight");     /* absurd shape */
    forge(0, shape, 8, ~0ull, WC_EFORMAT, "absurd shape");
    forge(1, shape, 8, 101, WC_EFORMAT, "raw record");            /* shape vs size */
    forge(0, 8, 8, 1ull << 62, WC_EFORMAT, "outside the data area"); /* absurd offset */
    forge(0, 16, 8, 1ull << 62, WC_EFORMAT, "outside the data area");
    forge(1, 8, 8, 3, WC_EFORMAT, "outside the data area");
    forge(0, rans, 4, 0, WC_EFORMAT, "tile 0x");                  /* tile rows */
    forge(0, rans + 4, 4, 1u << 30, WC_EFORMAT, "does not fit");
    forge(0, rans + 8, 1, 20, WC_EFORMAT, "prob_bits 20");
    forge(0, rans + 24, 8, 1ull << 40, WC_EFORMAT, "do not fit");  /* index offset */
    forge(0, rans + 32, 8, 8, WC_EFORMAT, "do not fit");           /* tiles offset */
    forge(0, 7, 1, 0x80, WC_EFORMAT, "unknown flags");
    forge(1, 2, 1, 200, WC_EFORMAT, "inconsistent sizes");         /* name length */
    /* records start at multiples of 64, tile streams at multiples of 4 */
    const size_t e0 = th_dir_entry(good, 0), e1 = th_dir_entry(good, 1);
    forge(1, 8, 8, wc_rd64(good + e1 + 8) - 4, WC_EFORMAT, "multiple of 64");
    uint8_t *p = copy_good();
    for (size_t k = 24; k <= 32; k += 8) wc_wr64(p + e0 + rans + k, wc_rd64(p + e0 + rans + k) + 2);
    th_reseal(p, good_size);
    wc_err e;
    assert_int_equal(try_image(p, good_size, -1, &e), WC_EFORMAT);
    assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", "tile streams", "multiple of 4", NULL));
    free(p);
}

/* Tile index entries (record checksum forged) with bad mode, table or
 * offsets. */
static void test_forged_tile_index(void **state)
{
    (void)state;
    size_t ent = th_dir_entry(good, 0);
    uint64_t rec = wc_rd64(good + ent + 8);
    uint64_t index = wc_rd64(good + ent + WC_DIR_FIXED + 16 + 24);
    const struct { size_t off; uint8_t v; const char *word; int want; } cases[] = {
        {4, 0x08, "unknown mode", WC_EFORMAT}, /* prediction 8..12 */
        {4, 0x40, "unknown mode", WC_EFORMAT}, /* transform 4..6 */
        {5, 1, "reserved", WC_EFORMAT},
        {6, 1, "reserved", WC_EFORMAT},
        {8 + 3, 0xff, "out of bounds", WC_EFORMAT}, /* tile 1 starts far away */
        {8 + 0, 0x04, "tile", WC_ECORRUPT},         /* tile 1 starts 4 bytes late */
        {8 + 0, 0x02, "multiple of 4", WC_EFORMAT}, /* tile 1 starts 2 bytes late */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        uint8_t *p = copy_good();
        p[rec + index + cases[k].off] ^= cases[k].v;
        wc_err e;
        /* with the record's checksum as it was, the checksum is the cause */
        for (g_threads = 1; g_threads <= 3; g_threads += 2) {
            assert_int_equal(try_image(p, good_size, 0, &e), WC_ECHECKSUM);
            assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", "checksum", NULL));
        }
        g_threads = 1;
        th_rehash_record(p, 0);
        th_reseal(p, good_size);
        assert_int_equal(try_image(p, good_size, 0, &e), cases[k].want);
        assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", cases[k].word, "offset", NULL));
        free(p);
    }
    /* a frequency table that does not sum to 1 << prob_bits */
    uint64_t tables = wc_rd64(good + ent + WC_DIR_FIXED + 16 + 16);
    uint8_t *p = copy_good();
    p[rec + tables + 3] ^= 1;
    th_rehash_record(p, 0);
    th_reseal(p, good_size);
    wc_err e;
    assert_int_equal(try_image(p, good_size, 0, &e), WC_EFORMAT);
    assert_true(th_msg_has(e.msg, "bad.wcodec", "enc.weight", "frequency table", "offset", NULL));
    free(p);
}

static int count_files(void)
{
    DIR *d = opendir(th_tmpdir());
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Bad safetensors input: the encode fails with a message naming the file,
 * tensor and offset, and leaves nothing behind. */
static void expect_encode_fails(const char *json, size_t data_bytes, int want, const char *w1,
                                const char *w2)
{
    const char *src = th_path("lie.safetensors"), *out = th_path("lie.wcodec");
    size_t jl = strlen(json), n = 8 + jl + data_bytes;
    uint8_t *p = calloc(1, n);
    wc_wr64(p, jl);
    memcpy(p + 8, json, jl);
    assert_int_equal(th_write_file(src, p, n), 0);
    free(p);
    int before = count_files();
    wc_err e = {0};
    assert_int_equal(wc_encode_file(src, out, NULL, &e), want);
    assert_true(th_msg_has(e.msg, "lie.safetensors", w1, w2, NULL));
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(count_files(), before);
}

static void test_bad_safetensors(void **state)
{
    (void)state;
    expect_encode_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,400]}}", 16,
                        WC_EFORMAT, "'w'", "[0, 400)");
    expect_encode_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 16,
                        WC_EFORMAT, "'w'", "need 16");
    expect_encode_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}", 16,
                        WC_EFORMAT, "'w'", "[8, 4)");
    expect_encode_fails("{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 16,
                        WC_EUNSUPPORTED, "'w'", "unknown dtype 'Q4'");
    expect_encode_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
                        WC_EFORMAT, "'w'", "dimension 0");
    expect_encode_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}",
                        16, WC_EFORMAT, "overlap", "offset");
    expect_encode_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4]", 16, WC_EFORMAT,
                        "not a JSON object", "offset");
    expect_encode_fails("{\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}}", 16, WC_EFORMAT, "'w'",
                        "dtype");
    /* header length beyond the file */
    const char *src = th_path("lie.safetensors");
    uint8_t hdr[16] = {0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(th_write_file(src, hdr, sizeof hdr), 0);
    wc_err e = {0};
    assert_int_equal(wc_encode_file(src, th_path("x.wcodec"), NULL, &e), WC_EFORMAT);
    assert_true(th_msg_has(e.msg, "lie.safetensors", "header length", "offset 0", NULL));
}

static void test_nan_refused_nothing_written(void **state)
{
    (void)state;
    static float w[64 * 80];
    for (size_t i = 0; i < 64 * 80; i++) w[i] = (float)(i % 13) - 6.0f;
    w[5 * 80 + 17] = 0.0f / 0.0f;
    const th_tensor t[] = {{"nan.weight", WC_DT_F32, 2, {64, 80}, w}};
    const char *src = th_path("nan.safetensors"), *out = th_path("nan.wcodec");
    assert_int_equal(th_write_safetensors(src, t, 1), 0);
    int before = count_files();
    wc_err e = {0};
    assert_int_equal(wc_encode_file(src, out, NULL, &e), WC_ERANGE);
    assert_true(th_msg_has(e.msg, "nan.safetensors", "'nan.weight'", "row 5", "column 17", "offset", NULL));
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(count_files(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file_is_good),   cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_magic),         cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_flipped_directory_byte), cmocka_unit_test(test_flipped_tile_byte),
        cmocka_unit_test(test_flipped_tile_byte_threads),
        cmocka_unit_test(test_forged_directory),    cmocka_unit_test(test_forged_tile_index),
        cmocka_unit_test(test_bad_safetensors),     cmocka_unit_test(test_nan_refused_nothing_written),
    };
    return cmocka_run_group_tests(tests, setup, teardown) ? 1 : 0;
}
