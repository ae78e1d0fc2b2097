/* Whole files: safetensors -> .wcodec -> safetensors, on every kind of
 * tensor and every tile-size edge, checked against the quantizer applied to
 * the source. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "helpers.h"
#include "quant.h"
#include "reader.h"
#include "record.h"

static float *randf(size_t n, uint64_t seed, float scale)
{
    float *p = malloc(4 * n + 4);
    for (size_t i = 0; i < n; i++) {
        /* sum of uniforms: bell-shaped like trained weights */
        double v = 0;
        for (int k = 0; k < 4; k++) v += (double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
        p[i] = (float)(v * scale);
    }
    return p;
}

/* Checks that decoding `wc` gives, for every source tensor, what the rule
 * says, and that `nameN_scale` sits beside every quantized tensor. */
static void check_decoded(const char *src_path, const char *out_path, uint64_t min_weights)
{
    wc_st_file src, out;
    assert_int_equal(wc_st_open(&src, src_path, NULL), 0);
    assert_int_equal(wc_st_open(&out, out_path, NULL), 0);
    size_t expect_n = 0;
    for (size_t i = 0; i < src.n_tensors; i++) {
        const wc_st_tensor *s = &src.tensors[i];
        long k = wc_st_find(&out, s->name);
        assert_true(k >= 0);
        const wc_st_tensor *o = &out.tensors[k];
        assert_int_equal(o->ndim, s->ndim);
        assert_memory_equal(o->shape, s->shape, 8 * s->ndim);
        bool quant = s->ndim >= 2 && s->numel >= min_weights && s->numel > 0 &&
                     wc_dtype_quantizable(s->dtype, false);
        expect_n++;
        if (!quant) {
            assert_int_equal(o->dtype, s->dtype);
            assert_int_equal(o->size, s->size);
            if (s->size) assert_memory_equal(o->data, s->data, s->size);
            continue;
        }
        assert_int_equal(o->dtype, WC_DT_I8);
        uint64_t rows = s->ndim >= 2 ? s->shape[0] : 1, cols = s->numel / rows;
        int8_t *q = malloc(s->numel);
        float *sc = malloc(4 * rows);
        size_t bad;
        for (uint64_t r = 0; r < rows; r++)
            assert_int_equal(wc_quantize_row(s->data + r * cols * wc_dtype_size(s->dtype), s->dtype,
                                             cols, q + r * cols, &sc[r], &bad), 0);
        assert_memory_equal(o->data, q, s->numel);
        char name[256];
        snprintf(name, sizeof name, "%s_scale", s->name);
        long ks = wc_st_find(&out, name);
        assert_true(ks >= 0);
        assert_int_equal(out.tensors[ks].dtype, WC_DT_F32);
        assert_int_equal(out.tensors[ks].numel, rows);
        assert_memory_equal(out.tensors[ks].data, sc, 4 * rows);
        expect_n++;
        free(q);
        free(sc);
    }
    assert_int_equal(out.n_tensors, expect_n);
    wc_st_close(&src);
    wc_st_close(&out);
}

/* The reference decoder, the fast one and the threaded one give the same
 * bytes on every tensor. */
static void check_decoders_agree(const wc_file *f)
{
    const wc_decode_opts how[] = {{.reference = true}, {.threads = 1}, {.threads = 3}};
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        wc_file_tensor_info(f, i, &t);
        uint8_t *want = malloc(t.out_bytes + 1), *got = malloc(t.out_bytes + 1);
        float *ws = malloc(4 * t.n_scales + 4), *gs = malloc(4 * t.n_scales + 4);
        wc_err e = {0};
        assert_int_equal(wc_decode_tensor_ex(f, i, want, t.out_bytes, ws, t.n_scales, &how[0], &e), 0);
        for (size_t k = 1; k < 3; k++) {
            memset(got, 0x55, t.out_bytes);
            assert_int_equal(wc_decode_tensor_ex(f, i, got, t.out_bytes, gs, t.n_scales, &how[k], &e), 0);
            assert_memory_equal(got, want, t.out_bytes);
            assert_memory_equal(gs, ws, 4 * t.n_scales);
        }
        free(want), free(got), free(ws), free(gs);
    }
}

static void encode_decode_opts(const char *src, const wc_encode_opts *opts)
{
    wc_encode_opts o = *opts;
    const uint64_t min_weights = o.min_weights;
    wc_err e = {0};
    const char *wc = th_path("m.wcodec"), *back = th_path("back.safetensors");
    int r = wc_encode_file(src, wc, &o, &e);
    if (r) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(r, 0);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, wc, &e), 0);
    assert_int_equal(wc_file_verify(f, &e), 0);
    assert_int_equal(wc_file_compare_source(f, src, &e), 0);
    check_decoders_agree(f);
    wc_file_close(f);
    assert_int_equal(wc_decode_file(wc, back, NULL, NULL, &e), 0);
    check_decoded(src, back, min_weights);
}

static void encode_decode(const char *src, uint64_t min_weights, uint32_t tile_weights, int threads)
{
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = min_weights;
    o.tile_weights = tile_weights;
    o.threads = threads;
    encode_decode_opts(src, &o);
}

/* Every shape edge: 1x1, odd sizes, smaller than a tile, rows wider than a
 * tile, a tile count that does not divide, 3-D and 4-D kernels. */
static void test_shapes_and_tiles(void **state)
{
    (void)state;
    static const struct { uint32_t nd; uint64_t s[4]; } shapes[] = {
        {2, {1, 1}}, {2, {1, 33}}, {2, {33, 1}}, {2, {3, 5}}, {2, {17, 31}}, {2, {64, 64}},
        {2, {5, 1000}}, {2, {1000, 3}}, {3, {7, 13, 3}}, {4, {6, 5, 3, 3}}, {2, {129, 257}},
    };
    const uint32_t tiles[] = {32, 33, 100, 4096, 65536};
    th_tensor t[16];
    float *data[16];
    char names[16][32];
    size_t n = sizeof shapes / sizeof *shapes;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (uint32_t d = 0; d < shapes[i].nd; d++) numel *= shapes[i].s[d];
        data[i] = randf(numel, 10 + i, 0.1f * (float)(i + 1));
        snprintf(names[i], sizeof names[i], "layer%zu.weight", i);
        t[i] = (th_tensor){names[i], WC_DT_F32, shapes[i].nd, {0}, data[i]};
        memcpy(t[i].shape, shapes[i].s, sizeof shapes[i].s);
    }
    const char *src = th_path("shapes.safetensors");
    assert_int_equal(th_write_safetensors(src, t, n), 0);
    for (size_t k = 0; k < sizeof tiles / sizeof *tiles; k++) encode_decode(src, 1, tiles[k], 2);
    encode_decode(src, 200, 65536, 1); /* small ones stay raw fp32 */
    for (size_t i = 0; i < n; i++) free(data[i]);
}

/* dtypes: F16/BF16 quantized; I8 with and without N_scale; others raw. */
static void test_dtypes(void **state)
{
    (void)state;
    uint16_t f16[64 * 80], bf16[64 * 80];
    int8_t i8[64 * 70];
    float i8s[64], vec[100];
    int64_t i64[40];
    uint8_t u8[300];
    uint64_t seed = 42;
    for (size_t i = 0; i < 64 * 80; i++) {
        uint64_t r = th_rand(&seed);
        f16[i] = (uint16_t)(0x2000 + r % 0x1c00) | (uint16_t)(r >> 63 << 15); /* finite halves */
        bf16[i] = (uint16_t)(0x3a00 + (r >> 8) % 0x600) | (uint16_t)((r >> 62 & 1) << 15);
    }
    for (size_t i = 0; i < sizeof i8; i++) i8[i] = (int8_t)(th_rand(&seed) % 255 - 127);
    for (size_t i = 0; i < 64; i++) i8s[i] = 0.01f * (float)(i + 1);
    for (size_t i = 0; i < 100; i++) vec[i] = (float)i;
    for (size_t i = 0; i < 40; i++) i64[i] = (int64_t)th_rand(&seed);
    for (size_t i = 0; i < 300; i++) u8[i] = (uint8_t)i;
    const th_tensor t[] = {
        {"h.weight", WC_DT_F16, 2, {64, 80}, f16},
        {"b.weight", WC_DT_BF16, 2, {64, 80}, bf16},
        {"q.weight", WC_DT_I8, 2, {64, 70}, i8},
        {"q.weight_scale", WC_DT_F32, 1, {64}, i8s},
        {"noscale.weight", WC_DT_I8, 2, {70, 64}, i8},
        {"norm", WC_DT_F32, 1, {100}, vec},
        {"ids", WC_DT_I64, 2, {4, 10}, i64},
        {"mask", WC_DT_U8, 3, {3, 10, 10}, u8},
        {"scalar", WC_DT_F32, 0, {0}, vec},
        {"empty", WC_DT_F32, 2, {0, 5}, vec},
    };
    const char *src = th_path("dtypes.safetensors");
    assert_int_equal(th_write_safetensors(src, t, sizeof t / sizeof *t), 0);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 1000;
    wc_err e = {0};
    const char *wc = th_path("d.wcodec"), *back = th_path("d.safetensors");
    assert_int_equal(wc_encode_file(src, wc, &o, &e), 0);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, wc, &e), 0);
    assert_int_equal(wc_file_compare_source(f, src, &e), 0);
    /* the I8 tensor carries its scales; its N_scale is not a tensor of its own */
    assert_int_equal(wc_file_tensor_count(f), 9);
    wc_tensor_info ti;
    assert_int_equal(wc_file_tensor_info(f, wc_file_find(f, "q.weight"), &ti), 0);
    assert_int_equal(ti.coding, WC_CODING_RANS_I8);
    assert_int_equal(ti.n_scales, 64);
    assert_int_equal(wc_file_tensor_info(f, wc_file_find(f, "noscale.weight"), &ti), 0);
    assert_int_equal(ti.coding, WC_CODING_RANS_I8);
    assert_int_equal(ti.n_scales, 0);
    assert_int_equal(wc_file_find(f, "q.weight_scale"), WC_ENOTFOUND);
    wc_file_close(f);
    assert_int_equal(wc_decode_file(wc, back, NULL, NULL, &e), 0);

    wc_st_file out;
    assert_int_equal(wc_st_open(&out, back, NULL), 0);
    assert_int_equal(out.n_tensors, 12); /* 9 + h/b scales + q scales */
    long k = wc_st_find(&out, "q.weight");
    assert_memory_equal(out.tensors[k].data, i8, 64 * 70);
    k = wc_st_find(&out, "q.weight_scale");
    assert_memory_equal(out.tensors[k].data, i8s, sizeof i8s);
    k = wc_st_find(&out, "ids");
    assert_int_equal(out.tensors[k].dtype, WC_DT_I64);
    assert_memory_equal(out.tensors[k].data, i64, sizeof i64);
    wc_st_close(&out);

    /* decoding what was decoded takes INT8 + scales as they are: same bytes */
    const char *wc2 = th_path("d2.wcodec");
    assert_int_equal(wc_encode_file(back, wc2, &o, &e), 0);
    assert_int_equal(wc_file_open(&f, wc2, &e), 0);
    assert_int_equal(wc_file_compare_source(f, back, &e), 0);
    wc_file_close(f);
}

/* The real weights: every tensor round-trips (numpy's check is in the
 * python suite); the int16 matrix quantized as float. */
static void test_real_files(void **state)
{
    (void)state;
    const char *files[] = {WCT_EXAMPLE_MODEL, WCT_WEIGHTS_DIR "/ppocrv4_onnx_fp32.safetensors",
                           WCT_WEIGHTS_DIR "/slice_mixed.safetensors"};
    int done = 0;
    for (size_t i = 0; i < 3; i++) {
        FILE *fp = fopen(files[i], "rb");
        if (!fp) {
            printf("# %s: absent, not tested (real weights: meson option weights_dir)\n", files[i]);
            continue;
        }
        fclose(fp);
        encode_decode(files[i], 4096, 65536, 2);
        done++;
    }
    if (!done) skip();
}

/* Matrices with the structures the modes are for: rows repeating with a
 * period (top at distance 12), smooth rows (left, planar), and noise. */
static const char *structured_model(void)
{
    static float per[96 * 200], smooth[50 * 300], noise[40 * 123];
    uint64_t seed = 99;
    float *base = randf(12 * 200, 77, 80.0f); /* 12 random rows, repeated with noise */
    for (size_t r = 0; r < 96; r++)
        for (size_t c = 0; c < 200; c++)
            per[r * 200 + c] = base[(r % 12) * 200 + c] + (float)(th_rand(&seed) % 3);
    free(base);
    for (size_t r = 0; r < 50; r++)
        for (size_t c = 0; c < 300; c++) smooth[r * 300 + c] = (float)(c + r) * 0.25f - 50.0f;
    float *n = randf(40 * 123, 5, 1.0f);
    memcpy(noise, n, sizeof noise);
    free(n);
    const th_tensor t[] = {{"periodic.weight", WC_DT_F32, 2, {96, 200}, per},
                           {"smooth.weight", WC_DT_F32, 2, {50, 300}, smooth},
                           {"noise.weight", WC_DT_F32, 2, {40, 123}, noise}};
    static char src[512];
    snprintf(src, sizeof src, "%s", th_path("structured.safetensors"));
    assert_int_equal(th_write_safetensors(src, t, 3), 0);
    return src;
}

/* Every prediction and transform forced on every tile, with one and with
 * several tables, over tile sizes with ragged edges. */
static void test_forced_modes(void **state)
{
    (void)state;
    const char *src = structured_model();
    const uint32_t tiles[] = {37, 1000, 65536};
    for (int pred = 0; pred < 5; pred++)
        for (int tx = 0; tx < 3; tx++)
            for (size_t k = 0; k < 3; k++) {
                wc_encode_opts o;
                wc_encode_opts_default(&o);
                o.min_weights = 100, o.tile_weights = tiles[k], o.threads = 2;
                o.force_pred = pred, o.force_tx = tx, o.max_tables = k == 1 ? 1 : 8;
                encode_decode_opts(src, &o);
                wc_file *f;
                size_t n;
                uint8_t *img = th_read_file(th_path("m.wcodec"), &n);
                assert_non_null(img);
                assert_int_equal(wc_file_open(&f, th_path("m.wcodec"), NULL), 0);
                for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
                    const wc_entry *e = wc_file_entry(f, i);
                    for (uint32_t t = 0; t < e->n_tiles; t++)
                        assert_int_equal(img[e->offset + e->index_off + 8ull * t + 4], WC_MODE(pred, tx));
                }
                wc_file_close(f);
                free(img);
            }
}

/* Chosen freely: the periodic matrix is predicted from a multiple of 12 rows up, and the
 * choice makes it smaller than the identity. */
static void test_free_choice_finds_structure(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 100;
    encode_decode_opts(src, &o);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, th_path("m.wcodec"), NULL), 0);
    wc_tensor_info chosen, plain;
    assert_int_equal(wc_file_tensor_info(f, wc_file_find(f, "periodic.weight"), &chosen), 0);
    assert_int_equal(chosen.top_distance % 12, 0); /* any multiple of the period fits */
    wc_file_close(f);
    o.force_pred = 0, o.force_tx = 0, o.max_tables = 1;
    encode_decode_opts(src, &o);
    assert_int_equal(wc_file_open(&f, th_path("m.wcodec"), NULL), 0);
    assert_int_equal(wc_file_tensor_info(f, wc_file_find(f, "periodic.weight"), &plain), 0);
    assert_true(chosen.stored_bytes < plain.stored_bytes);
    wc_file_close(f);
}

/* A version 1 file (identity tiles, one table, no distance) still decodes:
 * made by writing the identity coding and marking it version 1. */
static void test_version1_still_decodes(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 100, o.force_pred = 0, o.force_tx = 0, o.max_tables = 1, o.top_distance = 1;
    o.tile_weights = 1000;
    encode_decode_opts(src, &o);
    size_t n;
    uint8_t *img = th_read_file(th_path("m.wcodec"), &n);
    wc_wr16(img + 8, 1);
    for (size_t i = 0; i < wc_rd32(img + 16); i++) {
        size_t ent = th_dir_entry(img, i);
        if (img[ent + 5] == WC_CODING_RANS_I8) wc_wr32(img + ent + WC_DIR_FIXED + 8 * img[ent + 6] + 12, 0);
    }
    th_reseal(img, n);
    assert_int_equal(th_write_file(th_path("v1.wcodec"), img, n), 0);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, th_path("v1.wcodec"), &e), 0);
    assert_int_equal(wc_file_version(f), 1); /* the file's, not WC_FORMAT_VERSION */
    assert_int_equal(wc_file_compare_source(f, src, &e), 0);
    wc_file_close(f);
    /* a version 1 file may not use the modes of version 2 */
    encode_decode_opts(src, &(wc_encode_opts){.min_weights = 100, .tile_weights = 1000, .prob_bits = 13,
                                              .max_tables = 1, .force_pred = 1, .force_tx = 0,
                                              .top_distance = 1, .threads = 1});
    free(img);
    img = th_read_file(th_path("m.wcodec"), &n);
    wc_wr16(img + 8, 1);
    th_reseal(img, n);
    assert_int_equal(th_write_file(th_path("v1.wcodec"), img, n), 0);
    assert_int_equal(wc_file_open(&f, th_path("v1.wcodec"), &e), 0);
    assert_int_equal(wc_file_verify(f, &e), WC_EFORMAT);
    assert_non_null(strstr(e.msg, "unknown mode"));
    wc_file_close(f);
    free(img);
}

/* The most weights a tile of the file at `path` holds, over its coded
 * tensors, and how many tensors have more than one tile. */
static uint64_t largest_tile(const char *path, size_t *multi)
{
    wc_file *f;
    assert_int_equal(wc_file_open(&f, path, NULL), 0);
    uint64_t most = 0;
    *multi = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        assert_int_equal(wc_file_tensor_info(f, i, &t), 0);
        if (t.coding != WC_CODING_RANS_I8) continue;
        if ((uint64_t)t.tile_rows * t.tile_cols > most) most = (uint64_t)t.tile_rows * t.tile_cols;
        *multi += t.n_tiles > 1;
    }
    wc_file_close(f);
    return most;
}

/* By default the tile follows the model's size (codec/tiles.c): the example
 * model (2.7 M coded weights) gets the floor, 16 K weights, so its larger
 * tensors are cut into several tiles; an explicit size is kept. Both files
 * decode to the source's values (encode_decode_opts). */
static void test_default_tiles_follow_the_model(void **state)
{
    (void)state;
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    assert_int_equal(o.tile_weights, 0);
    o.threads = 2;
    encode_decode_opts(WCT_EXAMPLE_MODEL, &o);
    size_t multi;
    assert_true(largest_tile(th_path("m.wcodec"), &multi) <= 16384);
    assert_true(multi >= 10);
    o.tile_weights = 262144;
    encode_decode_opts(WCT_EXAMPLE_MODEL, &o);
    assert_true(largest_tile(th_path("m.wcodec"), &multi) > 65536);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_tiles),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_real_files),
        cmocka_unit_test(test_forced_modes),
        cmocka_unit_test(test_free_choice_finds_structure),
        cmocka_unit_test(test_version1_still_decodes),
        cmocka_unit_test(test_default_tiles_follow_the_model),
    };
    int fails = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return fails ? 1 : 0;
}
