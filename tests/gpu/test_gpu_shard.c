/* Tensor-parallel shards through the GPU decoder (docs/SHARDING.md), all on
 * one device: for every tensor, both dimensions and shard counts that do and
 * do not divide them, the shards decoded on the GPU put back together are
 * the CPU reference's whole decode, bit for bit (scales too), one tensor at
 * a time and a rank's whole model at once; a shard decodes with the tiles it
 * does not need destroyed; its device buffers are given back.
 *
 * Without a CUDA device it exits 77; with --nodev (CUDA_VISIBLE_DEVICES=
 * set) it checks the same on the CPU backend, in host memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cuda_runtime_api.h>

#include "format.h"
#include "helpers.h"
#include "reader.h"
#include "wcodec/wcodec_gpu.h"

static bool g_dev; /* the CUDA backend; else the CPU backend in host memory */

static void *buf_alloc(size_t n)
{
    void *p = NULL;
    if (g_dev) assert_int_equal(cudaMalloc(&p, n ? n : 1), cudaSuccess);
    else p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void buf_free(void *p)
{
    if (g_dev) assert_int_equal(cudaFree(p), cudaSuccess);
    else free(p);
}

static void buf_get(void *dst, const void *src, size_t n)
{
    if (!n) return;
    if (g_dev) assert_int_equal(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), cudaSuccess);
    else memcpy(dst, src, n);
}

static wc_gpu *make_gpu(void)
{
    wc_gpu_opts o;
    wc_gpu_opts_default(&o);
    o.require_gpu = g_dev;
    wc_gpu *g;
    wc_err e = {0};
    int r = wc_gpu_create(&g, &o, &e);
    if (r) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(r, 0);
    assert_int_equal(wc_gpu_backend(g), g_dev ? WC_BACKEND_CUDA : WC_BACKEND_CPU);
    return g;
}

/* Tensor i's shards along dim through wc_gpu_decode_shard, put back
 * together ([outer, len, inner] with the shard's len), against the CPU
 * reference's whole decode. */
static void check_tensor_dim(wc_gpu *g, const wc_file *f, size_t i, int dim, uint32_t n, const uint8_t *want,
                             const float *ws)
{
    wc_tensor_info ti;
    assert_int_equal(wc_file_tensor_info(f, i, &ti), 0);
    const uint64_t esz = (uint64_t)wc_dtype_size(ti.out_dtype), len = ti.shape[dim];
    uint64_t outer = 1, inner = 1;
    for (int k = 0; k < dim; k++) outer *= ti.shape[k];
    for (uint32_t k = (uint32_t)dim + 1; k < ti.ndim; k++) inner *= ti.shape[k];
    uint8_t *got = malloc(ti.out_bytes + 1);
    float *gs = calloc(ti.rows + 1, sizeof *gs);
    memset(got, 0x5a, ti.out_bytes);
    for (uint32_t r = 0; r < n; r++) {
        wc_shard_info si;
        wc_err e = {0};
        assert_int_equal(wc_shard_info_get(f, i, dim, r, n, &si, &e), 0);
        void *d = buf_alloc(si.out_bytes);
        float *ds = buf_alloc(4 * si.n_scales);
        int rc = wc_gpu_decode_shard(g, f, i, dim, r, n, d, si.out_bytes, ds, si.n_scales, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        uint8_t *part = malloc(si.out_bytes + 1);
        float *ps = malloc(4 * si.n_scales + 4);
        buf_get(part, d, si.out_bytes);
        buf_get(ps, ds, 4 * si.n_scales);
        for (uint64_t o = 0; o < outer; o++)
            memcpy(got + (o * len + si.start) * inner * esz, part + o * si.len * inner * esz, si.len * inner * esz);
        if (si.n_scales && dim == 0 && ti.ndim >= 2) memcpy(gs + si.start, ps, 4 * si.len);
        else if (si.n_scales) assert_memory_equal(ps, ws, 4 * ti.rows);
        buf_free(d);
        buf_free(ds);
        free(part);
        free(ps);
    }
    assert_memory_equal(got, want, ti.out_bytes);
    if (ti.n_scales && dim == 0 && ti.ndim >= 2) assert_memory_equal(gs, ws, 4 * ti.rows);
    free(got);
    free(gs);
}

/* A rank's whole model in one call (every tensor of two or more dimensions
 * split along `dim`, vectors along 0), against the CPU shard decode. */
static void check_file_shards(wc_gpu *g, const wc_file *f, int dim, uint32_t n)
{
    const size_t nt = wc_file_tensor_count(f);
    wc_gpu_shard_dst *dst = calloc(nt, sizeof *dst);
    wc_shard_info *si = calloc(nt, sizeof *si);
    for (uint32_t r = 0; r < n; r++) {
        wc_err e = {0};
        for (size_t i = 0; i < nt; i++) {
            wc_tensor_info ti;
            wc_file_tensor_info(f, i, &ti);
            const int d = ti.ndim >= 2 ? dim : 0;
            const uint32_t k = ti.ndim ? n : 1; /* a scalar is replicated */
            assert_int_equal(wc_shard_info_get(f, i, d, r % k, k, &si[i], &e), 0);
            dst[i] = (wc_gpu_shard_dst){.out = buf_alloc(si[i].out_bytes), .out_size = si[i].out_bytes,
                                        .scales = buf_alloc(4 * si[i].n_scales), .n_scales = si[i].n_scales,
                                        .dim = d, .rank = r % k, .n_shards = k};
        }
        int rc = wc_gpu_decode_file_shards(g, f, dst, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        for (size_t i = 0; i < nt; i++) {
            uint8_t *want = malloc(si[i].out_bytes + 1), *got = malloc(si[i].out_bytes + 1);
            float *ws = malloc(4 * si[i].n_scales + 4), *gs = malloc(4 * si[i].n_scales + 4);
            assert_int_equal(wc_decode_tensor_shard(f, i, dst[i].dim, dst[i].rank, dst[i].n_shards, want,
                                                    si[i].out_bytes, ws, si[i].n_scales, &e), 0);
            buf_get(got, dst[i].out, si[i].out_bytes);
            buf_get(gs, dst[i].scales, 4 * si[i].n_scales);
            assert_memory_equal(got, want, si[i].out_bytes);
            assert_memory_equal(gs, ws, 4 * si[i].n_scales);
            free(want), free(got), free(ws), free(gs);
            buf_free(dst[i].out);
            buf_free(dst[i].scales);
        }
    }
    free(dst);
    free(si);
}

/* Every tensor of the .wcodec file at path: both dims, n = 1, 2, 3, 4, 7
 * and one more than the dimension where that is small; then whole-model
 * requests for 2 and 3 ranks along each dim. */
static void check_file(wc_gpu *g, const char *path)
{
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    const wc_decode_opts ref = {.reference = true};
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        uint8_t *want = malloc(ti.out_bytes + 1);
        float *ws = malloc(4 * ti.n_scales + 4);
        assert_int_equal(wc_decode_tensor_ex(f, i, want, ti.out_bytes, ws, ti.n_scales, &ref, &e), 0);
        for (int dim = 0; dim < 2 && (uint32_t)dim < ti.ndim; dim++) {
            const uint32_t ns[] = {1, 2, 3, 4, 7, (uint32_t)(ti.shape[dim] < 40 ? ti.shape[dim] + 1 : 1)};
            for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) check_tensor_dim(g, f, i, dim, ns[k], want, ws);
        }
        free(want);
        free(ws);
    }
    for (int dim = 0; dim < 2; dim++)
        for (uint32_t n = 2; n <= 3; n++) check_file_shards(g, f, dim, n);
    wc_file_close(f);
}

static void encode_opts(const char *src, const char *dst, const wc_encode_opts *o)
{
    wc_err e = {0};
    int r = wc_encode_file(src, dst, o, &e);
    if (r) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(r, 0);
}

static void test_real_files(void **state)
{
    (void)state;
    const char *files[] = {WCT_EXAMPLE_MODEL, WCT_WEIGHTS_DIR "/ppocrv4_onnx_fp32.safetensors",
                           WCT_WEIGHTS_DIR "/slice_mixed.safetensors",
                           WCT_WEIGHTS_DIR "/stockfish15_nnue_int.safetensors"};
    wc_gpu *g = make_gpu();
    int done = 0;
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        FILE *fp = fopen(files[k], "rb");
        if (!fp) {
            printf("# %s: absent, not tested (real weights: meson option weights_dir)\n", files[k]);
            continue;
        }
        fclose(fp);
        const uint32_t sizes[] = {0, 262144, 4096}; /* the default (from the model's size), the largest, small */
        for (size_t z = 0; z < 3; z++) {
            wc_encode_opts o;
            wc_encode_opts_default(&o);
            if (sizes[z]) o.tile_weights = sizes[z];
            encode_opts(files[k], th_path("real.wcodec"), &o);
            check_file(g, th_path("real.wcodec"));
        }
        done++;
    }
    wc_gpu_destroy(g);
    if (!done) skip();
}

static const char *structured_model(void)
{
    const char *src = th_structured_model();
    assert_non_null(src);
    return src;
}

/* Every prediction forced (each transform with it), on tiles narrower than
 * rows, of a few rows, and of the whole tensor; D 1, 12 and searched. */
static void test_forced_modes(void **state)
{
    (void)state;
    const char *src = structured_model();
    const uint32_t tiles[] = {37, 1000, 65536}, dists[] = {0, 1, 12};
    wc_gpu *g = make_gpu();
    for (int pred = 0; pred < 5; pred++)
        for (int tx = 0; tx < 3; tx++)
            for (size_t k = 0; k < 3; k++) {
                wc_encode_opts o;
                wc_encode_opts_default(&o);
                o.min_weights = 100, o.tile_weights = tiles[k], o.force_pred = pred, o.force_tx = tx;
                o.max_tables = k == 1 ? 1 : 8, o.top_distance = dists[(size_t)(pred + tx) % 3];
                encode_opts(src, th_path("forced.wcodec"), &o);
                check_file(g, th_path("forced.wcodec"));
            }
    wc_gpu_destroy(g);
}

/* Tile modes redrawn at random (the streams stay valid): neighbours of
 * every mode beside and above each other (the CPU test's). */
static void test_random_modes(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_gpu *g = make_gpu();
    const uint32_t tiles[] = {37, 500, 1000};
    for (size_t k = 0; k < 3; k++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            wc_encode_opts o;
            wc_encode_opts_default(&o);
            o.min_weights = 100, o.tile_weights = tiles[k], o.top_distance = (uint32_t)seed * 2 - 1;
            encode_opts(src, th_path("mixed.wcodec"), &o);
            size_t size;
            uint8_t *img = th_read_file(th_path("mixed.wcodec"), &size);
            wc_file *f;
            assert_int_equal(wc_file_open(&f, th_path("mixed.wcodec"), NULL), 0);
            uint64_t s = seed * 7919;
            for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
                const wc_entry *e = wc_file_entry(f, i);
                if (e->coding != WC_CODING_RANS_I8) continue;
                for (uint32_t t = 0; t < e->n_tiles; t++)
                    img[e->offset + e->index_off + 8ull * t + 4] = (uint8_t)(th_rand(&s) % 5 | th_rand(&s) % 3 << 4);
                th_rehash_record(img, i);
            }
            wc_file_close(f);
            th_reseal(img, size);
            assert_int_equal(th_write_file(th_path("mixed.wcodec"), img, size), 0);
            free(img);
            check_file(g, th_path("mixed.wcodec"));
        }
    wc_gpu_destroy(g);
}

/* The streams of every tile outside a row shard destroyed (left
 * predictions: it needs only its rows of tiles): the shard decodes on the
 * GPU; one of its own destroyed: WC_ECORRUPT naming the shard. */
static void test_other_tiles_destroyed(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 100, o.tile_weights = 1000, o.force_pred = 1;
    encode_opts(src, th_path("clean.wcodec"), &o);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, th_path("clean.wcodec"), &e), 0);
    const size_t i = (size_t)wc_file_find(f, "periodic.weight");
    const wc_entry ent = *wc_file_entry(f, i);
    uint8_t want[96 * 200];
    assert_int_equal(wc_decode_tensor(f, i, want, sizeof want, NULL, 0, &e), 0);
    wc_file_close(f);
    size_t size;
    uint8_t *img = th_read_file(th_path("clean.wcodec"), &size);
    wc_gpu *g = make_gpu();
    wc_shard_info si;
    for (uint32_t r = 0; r < 3; r++) {
        uint8_t *bad = malloc(size);
        memcpy(bad, img, size);
        assert_int_equal(wc_file_open(&f, th_path("clean.wcodec"), &e), 0);
        assert_int_equal(wc_shard_info_get(f, i, 0, r, 3, &si, &e), 0);
        wc_file_close(f);
        uint32_t own = UINT32_MAX;
        for (uint32_t t = 0; t < ent.n_tiles; t++) {
            const uint64_t r0 = (uint64_t)t * ent.tile_rows;
            const uint64_t at = ent.offset + ent.tiles_off + wc_rd32(img + ent.offset + ent.index_off + 8ull * t);
            if (r0 < si.start + si.len && r0 + ent.tile_rows > si.start) own = own == UINT32_MAX ? t : own;
            else memset(bad + at, 0, 128);
        }
        assert_int_equal(th_write_file(th_path("bad.wcodec"), bad, size), 0);
        assert_int_equal(wc_file_open(&f, th_path("bad.wcodec"), &e), 0);
        void *d = buf_alloc(si.out_bytes);
        int rc = wc_gpu_decode_shard(g, f, i, 0, r, 3, d, si.out_bytes, NULL, 0, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        assert_int_equal(rc, 0);
        uint8_t got[96 * 200];
        buf_get(got, d, si.out_bytes);
        assert_memory_equal(got, want + si.start * 200, si.out_bytes);
        wc_file_close(f);
        memset(bad + ent.offset + ent.tiles_off + wc_rd32(img + ent.offset + ent.index_off + 8ull * own), 0, 128);
        assert_int_equal(th_write_file(th_path("bad.wcodec"), bad, size), 0);
        assert_int_equal(wc_file_open(&f, th_path("bad.wcodec"), &e), 0);
        assert_int_equal(wc_gpu_decode_shard(g, f, i, 0, r, 3, d, si.out_bytes, NULL, 0, &e), WC_ECORRUPT);
        assert_true(th_msg_has(e.msg, "bad.wcodec", "periodic.weight", "of 3 along dim 0", "end-state", NULL));
        wc_file_close(f);
        buf_free(d);
        free(bad);
    }
    free(img);
    wc_gpu_destroy(g);
}

/* What the tests above allocated on the device, through the decoder and
 * their own buffers, is all given back. */
static size_t g_free_at_start;
static void test_leaks(void **state)
{
    (void)state;
    if (!g_dev) skip();
    size_t fr = 0, tot = 0;
    assert_int_equal(cudaMemGetInfo(&fr, &tot), cudaSuccess);
    if (fr != g_free_at_start)
        fprintf(stderr, "device memory free: %zu at start, %zu now\n", g_free_at_start, fr);
    assert_true(fr == g_free_at_start);
}

int main(int argc, char **argv)
{
    const bool nodev = argc > 1 && !strcmp(argv[1], "--nodev");
    if (!nodev) {
        setenv("CUDA_MODULE_LOADING", "EAGER", 0);
        int n = 0;
        cudaError_t ce = cudaGetDeviceCount(&n);
        if (ce != cudaSuccess || n == 0) {
            printf("no CUDA device (%s): GPU shard tests skipped\n", ce ? cudaGetErrorString(ce) : "none present");
            return 77;
        }
        g_dev = true;
        /* the runtime's own context and kernels, before the count starts */
        wc_gpu_opts o;
        wc_gpu_opts_default(&o);
        o.require_gpu = true;
        wc_gpu *g;
        wc_err e = {0};
        size_t tot;
        if (wc_gpu_create(&g, &o, &e) || cudaMemGetInfo(&g_free_at_start, &tot) != cudaSuccess) {
            fprintf(stderr, "a device, but no GPU decoder on it: %s\n", e.msg);
            return 1;
        }
        wc_gpu_destroy(g);
        if (cudaMemGetInfo(&g_free_at_start, &tot) != cudaSuccess) return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forced_modes),          cmocka_unit_test(test_random_modes),
        cmocka_unit_test(test_other_tiles_destroyed), cmocka_unit_test(test_real_files),
        cmocka_unit_test(test_leaks),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r ? 1 : 0;
}
