/* docs/FORMAT.md's rules for a coded record, broken one at a time: the CPU
 * decoder (wc_decode_tensor) and the GPU decoder's host side (wcg_prep_all,
 * which checks every record head before any descriptor is built, and needs
 * no device) refuse each file with the same code and the same message. Both
 * read the head through codec/rec_reader.c; before it they had readers of
 * their own, and a file whose tile streams all sit 2 bytes off a multiple of
 * 4 decoded on the CPU and was refused on the GPU (issue 17). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gpu_int.h"
#include "helpers.h"

#define ROWS 256
#define COLS 128

static uint8_t *good;
static size_t good_size;

/* A raw vector and a coded matrix whose rows come in two spreads (so that it
 * takes several tables and a row map), in tiles of 8 rows; the matrix is the
 * file's last record, so that bytes can be inserted into it by moving only
 * the directory. */
static uint8_t *make_image(const wc_encode_opts *o, size_t *size)
{
    static float w[ROWS * COLS], b[64];
    uint64_t seed = 7;
    for (size_t i = 0; i < ROWS * COLS; i++) {
        const int spread = (i / COLS) % 2 ? 1001 : 31;
        w[i] = (float)((int64_t)(th_rand(&seed) % spread) - spread / 2) / 97.0f;
    }
    for (size_t i = 0; i < 64; i++) b[i] = (float)i;
    const th_tensor t[] = {{"a.bias", WC_DT_F32, 1, {64}, b}, {"w.weight", WC_DT_F32, 2, {ROWS, COLS}, w}};
    const char *src = th_path("rules.safetensors"), *out = th_path("rules.wcodec");
    if (th_write_safetensors(src, t, 2) || wc_encode_file(src, out, o, NULL)) return NULL;
    return th_read_file(out, size);
}

/* The directory entry of the coded tensor (w.weight) and its fields. */
typedef struct coded {
    size_t ent, index;
    uint64_t rec, size, tables, index_off, tiles_off;
    uint32_t n_tables;
} coded;

static coded find_coded(const uint8_t *img)
{
    coded c = {0};
    for (c.index = 0; c.index < wc_rd32(img + 16); c.index++) {
        c.ent = th_dir_entry(img, c.index);
        if (img[c.ent + 5] == WC_CODING_RANS_I8) break;
    }
    const size_t f = c.ent + WC_DIR_FIXED + 8 * img[c.ent + 6];
    c.rec = wc_rd64(img + c.ent + 8), c.size = wc_rd64(img + c.ent + 16);
    c.n_tables = img[f + 9];
    c.tables = wc_rd64(img + f + 16), c.index_off = wc_rd64(img + f + 24), c.tiles_off = wc_rd64(img + f + 32);
    return c;
}

static int setup(void **state)
{
    (void)state;
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.tile_weights = 8 * COLS;
    o.min_weights = 100;
    good = make_image(&o, &good_size);
    if (!good) return -1;
    const coded c = find_coded(good);
    /* the cases below need several tables and the record last */
    if (c.n_tables < 2 || c.rec + c.size != wc_rd64(good + 24)) {
        fprintf(stderr, "setup: %u tables, record [%llu, +%llu), directory at %llu\n", c.n_tables,
                (unsigned long long)c.rec, (unsigned long long)c.size, (unsigned long long)wc_rd64(good + 24));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(good);
    th_cleanup();
    return 0;
}

/* The outcome of one decoder: its code and message. */
typedef struct outcome {
    int code;
    wc_err e;
} outcome;

/* Writes the image and runs both decoders' reading of the coded tensor. */
static void run_both(const uint8_t *img, size_t n, outcome *cpu, outcome *gpu)
{
    const char *p = th_path("bad.wcodec");
    assert_int_equal(th_write_file(p, img, n), 0);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, p, &e), 0);
    const size_t i = find_coded(img).index;
    wc_tensor_info ti;
    assert_int_equal(wc_file_tensor_info(f, i, &ti), 0);
    uint8_t *out = malloc(ti.out_bytes);
    float *sc = malloc(4 * ti.n_scales);
    memset(cpu, 0, sizeof *cpu), memset(gpu, 0, sizeof *gpu);
    cpu->code = wc_decode_tensor(f, i, out, ti.out_bytes, sc, ti.n_scales, &cpu->e);
    const wc_gpu_dst dst = {out, ti.out_bytes, sc, ti.n_scales};
    treq *rq = NULL;
    gpu->code = wcg_prep_all(f, &dst, &i, 1, true, &rq, &gpu->e);
    if (!gpu->code) wcg_free_reqs(rq, 1);
    free(out);
    free(sc);
    wc_file_close(f);
}

/* Both refuse img (its record's checksum forged, or, with keep_hash, left as
 * it was) with want, the same message, naming the file, the tensor and the
 * word. */
static void both_refuse_with(uint8_t *img, size_t n, bool keep_hash, int want, const char *word)
{
    if (!keep_hash) th_rehash_record(img, find_coded(img).index);
    th_reseal(img, n);
    outcome cpu, gpu;
    run_both(img, n, &cpu, &gpu);
    fprintf(stderr, "  %-16s CPU %d, GPU host %d: %s\n", word, cpu.code, gpu.code, cpu.e.msg);
    assert_int_equal(cpu.code, want);
    assert_int_equal(gpu.code, cpu.code);
    assert_string_equal(gpu.e.msg, cpu.e.msg);
    assert_true(th_msg_has(cpu.e.msg, "bad.wcodec", "'w.weight'", word, want == WC_EFORMAT ? "offset" : word, NULL));
}

/* ... a rule broken, with the checksum forged: WC_EFORMAT, at an offset. */
static void both_refuse(uint8_t *img, size_t n, const char *word)
{
    both_refuse_with(img, n, false, WC_EFORMAT, word);
}

static uint8_t *copy_good(void)
{
    uint8_t *p = malloc(good_size);
    memcpy(p, good, good_size);
    return p;
}

static void test_valid_file_passes_both(void **state)
{
    (void)state;
    outcome cpu, gpu;
    run_both(good, good_size, &cpu, &gpu);
    assert_int_equal(cpu.code, 0);
    assert_int_equal(gpu.code, 0);
}

/* "Frequency tables": a sum other than M, a range of no symbols. */
static void test_bad_tables(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    uint8_t *p = copy_good();
    p[c.rec + c.tables + 3] ^= 1;
    both_refuse(p, good_size, "frequency table");
    free(p);
    p = copy_good();
    wc_wr16(p + c.rec + c.tables + 1, 0);
    both_refuse(p, good_size, "frequency table");
    free(p);
}

/* "Row map": map[r] < n_tables. */
static void test_bad_row_map(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    uint8_t *p = copy_good();
    p[c.rec + 4 * ROWS + 5] = (uint8_t)c.n_tables; /* after the scales */
    both_refuse(p, good_size, "names table");
    free(p);
}

/* "Modes" and the index entry's reserved bytes. */
static void test_bad_modes(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    const size_t ent3 = c.rec + c.index_off + 8 * 3;
    const struct { size_t at; uint8_t v; const char *word; } cases[] = {
        {4, 5, "unknown mode"},    /* prediction 5 */
        {4, 0x0f, "unknown mode"},
        {4, 0x30, "unknown mode"}, /* transform 3 */
        {4, 0xf0, "unknown mode"},
        {5, 1, "reserved"},
        {6, 1, "reserved"},
        {7, 0x80, "reserved"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        uint8_t *p = copy_good();
        p[ent3 + cases[k].at] = cases[k].v;
        both_refuse(p, good_size, cases[k].word);
        free(p);
    }
}

/* "Tile index": each stream inside the record, in order, at a multiple of 4
 * from tiles_off. */
static void test_bad_stream_offsets(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    const size_t ent2 = c.rec + c.index_off + 8 * 2;
    const uint32_t b1 = wc_rd32(good + ent2 - 8), b2 = wc_rd32(good + ent2);
    const uint32_t values[] = {(uint32_t)(c.size - c.tiles_off + 4), b1 - 4, 0xfffffffcu};
    for (size_t k = 0; k < sizeof values / sizeof *values; k++) {
        uint8_t *p = copy_good();
        wc_wr32(p + ent2, values[k]);
        both_refuse(p, good_size, "out of bounds");
        free(p);
    }
    uint8_t *p = copy_good();
    wc_wr32(p + ent2, b2 + 2);
    both_refuse(p, good_size, "multiple of 4");
    free(p);
}

/* The drift of issue 17: two bytes inserted before the first stream, every
 * index entry moved with them, so that each stream is whole and 2 bytes off
 * a multiple of 4. The CPU decoder used to decode this file; the spec and
 * the GPU refuse it. */
static void test_streams_two_bytes_off(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    const size_t n = good_size + 2, at = c.rec + c.tiles_off;
    uint8_t *p = calloc(1, n);
    memcpy(p, good, at);
    memcpy(p + at + 2, good + at, good_size - at);
    for (uint64_t e = c.rec + c.index_off; e < at; e += 8) wc_wr32(p + e, wc_rd32(p + e) + 2);
    wc_wr64(p + 24, wc_rd64(p + 24) + 2); /* dir_offset */
    wc_wr64(p + 40, n);                   /* file_size */
    wc_wr64(p + th_dir_entry(p, c.index) + 16, c.size + 2);
    both_refuse(p, n, "multiple of 4");
    free(p);
}

/* "Version 1": only the identity mode. */
static void test_version1_modes(void **state)
{
    (void)state;
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.tile_weights = 8 * COLS, o.min_weights = 100;
    o.max_tables = 1, o.force_pred = 1, o.force_tx = 0, o.top_distance = 1;
    size_t n;
    uint8_t *p = make_image(&o, &n);
    assert_non_null(p);
    wc_wr16(p + 8, 1);
    const coded c = find_coded(p);
    wc_wr32(p + c.ent + WC_DIR_FIXED + 8 * p[c.ent + 6] + 12, 0); /* no distance in version 1 */
    both_refuse(p, n, "unknown mode");
    free(p);
}

/* The same damage with the record's checksum as it was: the checksum is the
 * cause, on both (the GPU host side checks it where the head is refused). */
static void test_checksum_comes_first(void **state)
{
    (void)state;
    const coded c = find_coded(good);
    const uint64_t at[] = {c.rec + c.tables + 3, c.rec + 4 * ROWS + 5, c.rec + c.index_off + 8 * 3 + 4,
                           c.rec + c.index_off + 8 * 2};
    const uint8_t v[] = {1, 0x0f, 0x0f, 2};
    for (size_t k = 0; k < sizeof at / sizeof *at; k++) {
        uint8_t *p = copy_good();
        p[at[k]] ^= v[k];
        both_refuse_with(p, good_size, true, WC_ECHECKSUM, "checksum");
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file_passes_both), cmocka_unit_test(test_bad_tables),
        cmocka_unit_test(test_bad_row_map),            cmocka_unit_test(test_bad_modes),
        cmocka_unit_test(test_bad_stream_offsets),     cmocka_unit_test(test_streams_two_bytes_off),
        cmocka_unit_test(test_version1_modes),         cmocka_unit_test(test_checksum_comes_first),
    };
    return cmocka_run_group_tests(tests, setup, teardown) ? 1 : 0;
}
