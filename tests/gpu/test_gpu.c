/* GPU decoder against the CPU reference, checkasm style: random and real
 * tensors, every mode, tile-size edges, whole files through the pipeline
 * (small rings force batches and split tensors), the resident path, and
 * every error path that can be forced (no device, out of device memory, a
 * corrupt tile found on the GPU, bad pointers), each checked for leaks.
 *
 * Without a CUDA device the suite reports itself skipped (exit 77); run with
 * --nodev (and CUDA_VISIBLE_DEVICES= set) it checks the CPU fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <pthread.h>

#include <cuda_runtime_api.h>

#include "format.h"
#include "gpu_models.h"
#include "helpers.h"
#include "reader.h"
#include "wcodec/wcodec_gpu.h"

static const char *g_weights; /* a real model (safetensors, or .wcodec to compare as it is), or NULL */
static int g_quick;           /* WCT_GPU_QUICK=1: fewer sizes (for compute-sanitizer) */

static size_t g_free_at_start;

static size_t dev_free(void)
{
    size_t fr = 0, tot = 0;
    assert_int_equal(cudaMemGetInfo(&fr, &tot), cudaSuccess);
    return fr;
}

/* Decodes every tensor of `path` with the GPU (pipeline, per tensor, and
 * resident) and compares with the CPU reference, byte for byte. */
static void compare_file(const char *path, const wc_gpu_opts *go)
{
    wc_err e = {0};
    wc_file *f;
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    wc_gpu *g;
    int r = wc_gpu_create(&g, go, &e);
    if (r) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(r, 0);
    assert_int_equal(wc_gpu_backend(g), WC_BACKEND_CUDA);
    size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    uint8_t **ref = calloc(n, sizeof *ref);
    float **refs = calloc(n, sizeof *refs);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        assert_int_equal(wc_file_tensor_info(f, i, &ti), 0);
        ref[i] = malloc(ti.out_bytes + 1);
        refs[i] = malloc(4 * ti.n_scales + 4);
        assert_int_equal(wc_decode_tensor(f, i, ref[i], ti.out_bytes, refs[i], ti.n_scales, &e), 0);
        dst[i].out_size = ti.out_bytes;
        assert_int_equal(cudaMalloc(&dst[i].out, ti.out_bytes + 1), cudaSuccess);
        /* poison: every byte must be written */
        assert_int_equal(cudaMemset(dst[i].out, 0xa5, ti.out_bytes + 1), cudaSuccess);
        if (ti.n_scales) {
            dst[i].n_scales = ti.n_scales;
            assert_int_equal(cudaMalloc((void **)&dst[i].scales, 4 * ti.n_scales), cudaSuccess);
            assert_int_equal(cudaMemset(dst[i].scales, 0xa5, 4 * ti.n_scales), cudaSuccess);
        }
    }
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    for (int pass = 0; pass < 3; pass++) {
        wc_gpu_resident *res = NULL;
        if (pass == 0) {
            r = wc_gpu_decode_file(g, f, dst, &e);
        } else if (pass == 1) {
            r = 0;
            for (size_t i = 0; i < n && !r; i++)
                r = wc_gpu_decode_tensor(g, f, i, dst[i].out, dst[i].out_size, dst[i].scales, dst[i].n_scales, &e);
        } else {
            r = wc_gpu_resident_create(g, f, dst, &res, &e);
            if (!r) r = wc_gpu_resident_run(res, true, &e);
        }
        if (r) fprintf(stderr, "pass %d: %s\n", pass, e.msg);
        assert_int_equal(r, 0);
        for (size_t i = 0; i < n; i++) {
            uint8_t *got = malloc(dst[i].out_size + 1);
            assert_int_equal(cudaMemcpy(got, dst[i].out, dst[i].out_size + 1, cudaMemcpyDeviceToHost), cudaSuccess);
            if (memcmp(got, ref[i], dst[i].out_size)) {
                /* every tensor that differs, before failing on the first */
                for (size_t j = i; j < n; j++) {
                    uint8_t *g2 = malloc(dst[j].out_size + 1);
                    cudaMemcpy(g2, dst[j].out, dst[j].out_size, cudaMemcpyDeviceToHost);
                    size_t bad = 0, untouched = 0;
                    for (size_t b = 0; b < dst[j].out_size; b++) bad += g2[b] != ref[j][b], untouched += g2[b] == 0xa5;
                    if (bad) fprintf(stderr, "pass %d: tensor %zu: %zu of %zu bytes differ, %zu still 0xa5\n", pass, j, bad,
                                     dst[j].out_size, untouched);
                    free(g2);
                }
                size_t k = 0;
                while (got[k] == ref[i][k]) k++;
                wc_tensor_info ti;
                wc_file_tensor_info(f, i, &ti);
                fail_msg("%s pass %d: tensor '%s' [%llux%llu tiles %ux%u] differs at byte %zu: %d vs %d", path, pass,
                         ti.name, (unsigned long long)ti.rows, (unsigned long long)ti.cols, ti.tile_rows,
                         ti.tile_cols, k, got[k], ref[i][k]);
            }
            assert_int_equal(got[dst[i].out_size], 0xa5); /* nothing past the end */
            if (dst[i].n_scales) {
                float *s = malloc(4 * dst[i].n_scales);
                assert_int_equal(cudaMemcpy(s, dst[i].scales, 4 * dst[i].n_scales, cudaMemcpyDeviceToHost), cudaSuccess);
                assert_memory_equal(s, refs[i], 4 * dst[i].n_scales);
                free(s);
                cudaMemset(dst[i].scales, 0xa5, 4 * dst[i].n_scales);
            }
            cudaMemset(dst[i].out, 0xa5, dst[i].out_size + 1);
            free(got);
        }
        /* the poison is on the legacy stream, the decoder works on its own
         * non-blocking streams: it must have landed before the next pass */
        assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
        wc_gpu_resident_destroy(res);
    }
    for (size_t i = 0; i < n; i++) {
        cudaFree(dst[i].out);
        cudaFree(dst[i].scales);
        free(ref[i]);
        free(refs[i]);
    }
    free(dst);
    free(ref);
    free(refs);
    wc_gpu_destroy(g);
    wc_file_close(f);
}

/* Every shape edge with tiles from a single warp step to many rows. */
static void test_tile_edges(void **state)
{
    (void)state;
    const uint32_t tiles[] = {32, 33, 63, 100, 1024, 4096, 65536, 262144};
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    for (int kind = 0; kind < 4; kind++) {
        const char *src = make_model(kind);
        for (size_t k = 0; k < sizeof tiles / sizeof *tiles; k++) {
            if (g_quick && (k % 3 || kind >= 2)) continue;
            const char *wc = th_path("edges.wcodec");
            /* kind 3 with several tables: every row shape with a table per row */
            encode(src, wc, tiles[k], k % 2 ? 13 : 11 + (uint32_t)kind % 3, 0, 0, kind == 3 ? 8 : 1);
            compare_file(wc, &go);
        }
    }
}

/* Every prediction and transform forced on every tile, and the encoder's own
 * choice; several tables per tensor. */
static void test_modes(void **state)
{
    (void)state;
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    const uint32_t tiles[] = {33, 1000, 65536};
    for (int kind = 0; kind < 4; kind++) {
        const char *src = make_model(kind);
        for (int pred = -1; pred <= 4; pred++)
            for (int tx = -1; tx <= 2; tx++)
                for (size_t k = 0; k < 3; k++) {
                    if ((pred < 0) != (tx < 0) && k) continue;
                    if (g_quick && (k != 1 || kind)) continue;
                    const char *wc = th_path("modes.wcodec");
                    encode(src, wc, tiles[k], 12, pred, tx, k == 2 ? 1 : 8);
                    compare_file(wc, &go);
                }
    }
}

/* A tiny ring: many batches, tensors split across batches and slots. */
static void test_small_ring(void **state)
{
    (void)state;
    const uint64_t rows = 600, cols = 3000;
    float *d = randf(rows * cols, 7, 0.2f, 0);
    float *d2 = randf(rows * cols / 2, 8, 0.2f, 2);
    uint16_t *raw = malloc(2 * 300000);
    uint64_t s = 9;
    for (size_t i = 0; i < 300000; i++) raw[i] = (uint16_t)th_rand(&s);
    th_tensor t[] = {{"a.weight", WC_DT_F32, 2, {rows, cols}, d},
                     {"b.bias", WC_DT_BF16, 1, {300000}, raw},
                     {"c.weight", WC_DT_F32, 2, {rows / 2, cols}, d2}};
    const char *src = th_path("ring.safetensors"), *wc = th_path("ring.wcodec");
    assert_int_equal(th_write_safetensors(src, t, 3), 0);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.ring_bytes = 2u << 20;
    go.ring_slots = 2;
    for (int k = 0; k < 3; k++) {
        encode(src, wc, k == 0 ? 4096 : k == 1 ? 65536 : 1u << 20, 13, -1, -1, 8);
        for (int th = 1; th <= 4; th += 3) {
            go.io_threads = th;
            compare_file(wc, &go);
        }
    }
    go.ring_slots = 3;
    go.ring_bytes = 5u << 20;
    compare_file(wc, &go);
    free(d);
    free(d2);
    free(raw);
}

/* path decoded whole by g (wc_gpu_decode_file) against the CPU reference:
 * the tensors that differ, or -1 if a call failed (no cmocka assertion:
 * it runs on threads of its own too). */
typedef struct decode_job {
    wc_gpu *g;
    const char *path;
    int rounds, bad;
} decode_job;

static void *decode_and_check(void *arg)
{
    decode_job *j = arg;
    wc_err e = {0};
    wc_file *f;
    if (wc_file_open(&f, j->path, &e)) return j->bad = -1, NULL;
    const size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    uint8_t **ref = calloc(n, sizeof *ref);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        ref[i] = malloc(ti.out_bytes + 1);
        if (wc_decode_tensor(f, i, ref[i], ti.out_bytes, NULL, 0, &e)) j->bad = -1;
        dst[i].out_size = ti.out_bytes;
        if (cudaMalloc(&dst[i].out, ti.out_bytes + 1) != cudaSuccess) j->bad = -1;
        if (ti.n_scales) {
            dst[i].n_scales = ti.n_scales;
            if (cudaMalloc((void **)&dst[i].scales, 4 * ti.n_scales) != cudaSuccess) j->bad = -1;
        }
    }
    for (int k = 0; k < j->rounds && !j->bad; k++) {
        if (wc_gpu_decode_file(j->g, f, dst, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            j->bad = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            uint8_t *got = malloc(dst[i].out_size);
            cudaMemcpy(got, dst[i].out, dst[i].out_size, cudaMemcpyDeviceToHost);
            j->bad += memcmp(got, ref[i], dst[i].out_size) != 0;
            free(got);
        }
    }
    for (size_t i = 0; i < n; i++) cudaFree(dst[i].out), cudaFree(dst[i].scales), free(ref[i]);
    free(dst);
    free(ref);
    wc_file_close(f);
    return NULL;
}

/* Two decoders on one pool of io threads (wc_gpu_create_sharing, as
 * wcodecd has one decoder per GPU), each decoding from a thread of its own
 * at once, equal to the CPU's; the decoder that started the threads is
 * destroyed first, the other still decodes on them. */
static void test_shared_io(void **state)
{
    (void)state;
    const uint64_t rows = 900, cols = 2000;
    float *d = randf(rows * cols, 21, 0.2f, 0);
    th_tensor t[] = {{"a.weight", WC_DT_F32, 2, {rows, cols}, d}, {"b.weight", WC_DT_F32, 2, {cols, rows}, d}};
    const char *src = th_path("share.safetensors"), *wc = th_path("share.wcodec");
    assert_int_equal(th_write_safetensors(src, t, 2), 0);
    encode(src, wc, 16384, 13, -1, -1, 8);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.ring_bytes = 4u << 20; /* several batches a call */
    go.io_threads = 4;
    wc_gpu *a, *b;
    wc_err e = {0};
    assert_int_equal(wc_gpu_create(&a, &go, &e), 0);
    assert_int_equal(wc_gpu_create_sharing(&b, &go, a, &e), 0);
    decode_job ja = {a, wc, 20, 0}, jb = {b, wc, 20, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, decode_and_check, &ja), 0);
    assert_int_equal(pthread_create(&tb, NULL, decode_and_check, &jb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ja.bad, 0);
    assert_int_equal(jb.bad, 0);
    wc_gpu_destroy(a);
    jb.rounds = 3;
    decode_and_check(&jb);
    assert_int_equal(jb.bad, 0);
    wc_gpu_destroy(b);
    free(d);
}

static void test_real(void **state)
{
    (void)state;
    if (!g_weights) {
        fprintf(stderr, "no real weights given: skipped\n");
        return;
    }
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    const size_t len = strlen(g_weights);
    if (len > 7 && !strcmp(g_weights + len - 7, ".wcodec")) { /* a coded model: as it is */
        compare_file(g_weights, &go);
        return;
    }
    const uint32_t tiles[] = {16384, 262144};
    for (size_t k = 0; k < 4; k++) {
        const char *wc = th_path("real.wcodec");
        /* integers quantized too (k >= 2): Stockfish's feature transformer
         * is then coded with none and top tiles, wc_predict_top_kernel's
         * real case */
        encode_ints(g_weights, wc, tiles[k % 2], 13, -1, -1, 0, k >= 2);
        compare_file(wc, &go);
    }
}

/* A damaged word in one tile (checksums recomputed so that only the rANS
 * end-state check can find it): the GPU names the tile; nothing leaks. */
static void test_corrupt_tile(void **state)
{
    (void)state;
    const char *src = make_model(0), *wc = th_path("bad.wcodec"), *bad = th_path("bad2.wcodec");
    encode(src, wc, 100, 13, 0, 0, 1);
    size_t size;
    uint8_t *img = th_read_file(wc, &size);
    wc_err e = {0};
    wc_file *f;
    assert_int_equal(wc_file_open(&f, wc, &e), 0);
    int victim = wc_file_find(f, "layer11.weight");
    assert_true(victim >= 0);
    const wc_entry *en = wc_file_entry(f, (size_t)victim);
    /* tile 3: flip a byte in its words */
    const uint8_t *rec = img + en->offset;
    uint32_t b3 = wc_rd32(rec + en->index_off + 8 * 3), b4 = wc_rd32(rec + en->index_off + 8 * 4);
    assert_true(b4 - b3 > 140);
    img[en->offset + en->tiles_off + b3 + 136] ^= 0x5a;
    wc_file_close(f);
    th_rehash_record(img, (size_t)victim);
    th_reseal(img, size);
    assert_int_equal(th_write_file(bad, img, size), 0);
    free(img);

    assert_int_equal(wc_file_open(&f, bad, &e), 0);
    wc_tensor_info ti;
    wc_file_tensor_info(f, (size_t)victim, &ti);
    uint8_t *host = malloc(ti.out_bytes);
    assert_int_equal(wc_decode_tensor(f, (size_t)victim, host, ti.out_bytes, NULL, 0, &e), WC_ECORRUPT);
    free(host);

    size_t before = dev_free();
    wc_gpu *g;
    assert_int_equal(wc_gpu_create(&g, NULL, &e), 0);
    void *out;
    assert_int_equal(cudaMalloc(&out, ti.out_bytes), cudaSuccess);
    memset(&e, 0, sizeof e);
    assert_int_equal(wc_gpu_decode_tensor(g, f, (size_t)victim, out, ti.out_bytes, NULL, 0, &e), WC_ECORRUPT);
    assert_true(th_msg_has(e.msg, "layer11.weight", "tile 3", "GPU", NULL));
    fprintf(stderr, "corrupt: %s\n", e.msg);
    /* the whole file too, and the resident path */
    size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    dst[victim] = (wc_gpu_dst){out, ti.out_bytes, NULL, 0};
    memset(&e, 0, sizeof e);
    assert_int_equal(wc_gpu_decode_file(g, f, dst, &e), WC_ECORRUPT);
    assert_true(th_msg_has(e.msg, "tile 3", NULL));
    wc_gpu_resident *res = NULL;
    assert_int_equal(wc_gpu_resident_create(g, f, dst, &res, &e), 0);
    memset(&e, 0, sizeof e);
    assert_int_equal(wc_gpu_resident_run(res, true, &e), WC_ECORRUPT);
    assert_true(th_msg_has(e.msg, "tile 3", NULL));
    wc_gpu_resident_destroy(res);
    free(dst);
    assert_int_equal(cudaFree(out), cudaSuccess);
    /* after an error the decoder still works */
    int ok = wc_file_find(f, "layer5.weight");
    wc_file_tensor_info(f, (size_t)ok, &ti);
    assert_int_equal(cudaMalloc(&out, ti.out_bytes), cudaSuccess);
    assert_int_equal(wc_gpu_decode_tensor(g, f, (size_t)ok, out, ti.out_bytes, NULL, 0, &e), 0);
    assert_int_equal(cudaFree(out), cudaSuccess);
    wc_gpu_destroy(g);
    wc_file_close(f);
    assert_int_equal(dev_free(), before);
}

/* No device memory lost since `before`. Not an equality: at the edge of
 * out-of-memory the driver may give back memory of its own (on the H200,
 * 2 MiB more was free after a failed create than before it), while a leak
 * always leaves less free. */
static void assert_none_lost(size_t before)
{
    size_t now = dev_free();
    if (now < before) fprintf(stderr, "device memory: %zu bytes lost\n", before - now);
    assert_true(now >= before);
}

/* Out of device memory: the ring or the resident file cannot be allocated. */
static void test_oom(void **state)
{
    (void)state;
    size_t before = dev_free();
    /* hold all but 64 MiB */
    void *hog = NULL;
    size_t take = before - (64u << 20);
    while (cudaMalloc(&hog, take) != cudaSuccess) {
        cudaGetLastError();
        take -= 16u << 20;
    }
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.ring_bytes = 256u << 20;
    wc_gpu *g = NULL;
    wc_err e = {0};
    assert_int_equal(wc_gpu_create(&g, &go, &e), WC_ENOMEM);
    assert_null(g);
    assert_true(th_msg_has(e.msg, "CUDA", "cudaMalloc", "memory", NULL));
    fprintf(stderr, "oom: %s\n", e.msg);
    assert_int_equal(cudaFree(hog), cudaSuccess);
    assert_none_lost(before);

    /* resident: a file larger than what is left */
    const uint64_t rows = 2000, cols = 4000;
    float *big = randf(rows * cols, 3, 0.3f, 0);
    th_tensor bt[] = {{"big.weight", WC_DT_F32, 2, {rows, cols}, big}};
    const char *src = th_path("big.safetensors"), *wc = th_path("oom.wcodec");
    assert_int_equal(th_write_safetensors(src, bt, 1), 0);
    free(big);
    encode(src, wc, 4096, 13, 0, 0, 1);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, wc, &e), 0);
    assert_true(wc_file_size(f) > (4u << 20));
    go.ring_bytes = 8u << 20;
    assert_int_equal(wc_gpu_create(&g, &go, &e), 0);
    size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        dst[i].out_size = ti.out_bytes;
        assert_int_equal(cudaMalloc(&dst[i].out, ti.out_bytes + 1), cudaSuccess);
    }
    size_t mid = dev_free();
    /* leave about 1 MiB: less than the compressed file */
    void *hogs[4096];
    int nh = 0;
    for (size_t chunk = 1u << 30; chunk >= (1u << 20) && nh < 4096; chunk /= 2)
        while (nh < 4096 && cudaMalloc(&hogs[nh], chunk) == cudaSuccess) nh++;
    cudaGetLastError();
    wc_gpu_resident *res = NULL;
    int r = wc_gpu_resident_create(g, f, dst, &res, &e);
    fprintf(stderr, "resident oom: %d %s\n", r, e.msg);
    assert_int_equal(r, WC_ENOMEM);
    assert_null(res);
    for (int k = 0; k < nh; k++) assert_int_equal(cudaFree(hogs[k]), cudaSuccess);
    assert_none_lost(mid);
    /* and with memory back, the same call works */
    assert_int_equal(wc_gpu_resident_create(g, f, dst, &res, &e), 0);
    assert_int_equal(wc_gpu_resident_run(res, true, &e), 0);
    wc_gpu_resident_destroy(res);
    for (size_t i = 0; i < n; i++) cudaFree(dst[i].out);
    free(dst);
    wc_gpu_destroy(g);
    wc_file_close(f);
    assert_none_lost(before);
}

/* A model replaced by rename after it was opened by a relative path, from
 * another working directory: the pipeline and the resident path decode the
 * file that was opened, equal to the CPU decode of a copy of it (the
 * pipeline used to reopen the label: here, a file that no longer exists
 * from this directory, or the new file at the old file's offsets). */
static void test_replaced(void **state)
{
    (void)state;
    const char *old = th_path("old.wcodec");
    char *a = strdup(th_path("a.wcodec")), *b = strdup(th_path("b.wcodec")), cwd[4096];
    encode(make_model(1), a, 1000, 13, -1, -1, 8);
    encode(make_model(2), b, 4096, 13, -1, -1, 8);
    size_t n_img;
    uint8_t *img = th_read_file(a, &n_img);
    assert_int_equal(th_write_file(old, img, n_img), 0);
    free(img);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(th_tmpdir()), 0);
    wc_err e = {0};
    wc_file *f, *ref;
    assert_int_equal(wc_file_open(&f, "a.wcodec", &e), 0);
    assert_int_equal(rename(b, a), 0);
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(wc_file_open(&ref, old, &e), 0);
    wc_gpu *g;
    assert_int_equal(wc_gpu_create(&g, NULL, &e), 0);
    const size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        dst[i].out_size = ti.out_bytes;
        assert_int_equal(cudaMalloc(&dst[i].out, ti.out_bytes + 1), cudaSuccess);
    }
    for (int pass = 0; pass < 2; pass++) {
        wc_gpu_resident *res = NULL;
        int r = pass == 0 ? wc_gpu_decode_file(g, f, dst, &e) : wc_gpu_resident_create(g, f, dst, &res, &e);
        if (!r && res) r = wc_gpu_resident_run(res, true, &e);
        if (r) fail_msg("pass %d: %s", pass, e.msg);
        for (size_t i = 0; i < n; i++) {
            uint8_t *got = malloc(dst[i].out_size + 1), *want = malloc(dst[i].out_size + 1);
            assert_int_equal(cudaMemcpy(got, dst[i].out, dst[i].out_size, cudaMemcpyDeviceToHost), cudaSuccess);
            assert_int_equal(wc_decode_tensor(ref, i, want, dst[i].out_size, NULL, 0, &e), 0);
            assert_memory_equal(got, want, dst[i].out_size);
            free(got), free(want);
        }
        wc_gpu_resident_destroy(res);
    }
    for (size_t i = 0; i < n; i++) cudaFree(dst[i].out);
    free(dst);
    wc_gpu_destroy(g);
    wc_file_close(ref);
    wc_file_close(f);
    assert_int_equal(chdir(cwd), 0);
    free(a), free(b);
}

/* Bad arguments: host memory where device memory is needed, short buffers. */
static void test_bad_args(void **state)
{
    (void)state;
    const char *src = make_model(0), *wc = th_path("args.wcodec");
    encode(src, wc, 4096, 13, 0, 0, 1);
    wc_err e = {0};
    wc_file *f;
    assert_int_equal(wc_file_open(&f, wc, &e), 0);
    wc_gpu *g;
    assert_int_equal(wc_gpu_create(&g, NULL, &e), 0);
    int i = wc_file_find(f, "layer11.weight");
    wc_tensor_info ti;
    wc_file_tensor_info(f, (size_t)i, &ti);
    uint8_t *host = malloc(ti.out_bytes);
    assert_int_equal(wc_gpu_decode_tensor(g, f, (size_t)i, host, ti.out_bytes, NULL, 0, &e), WC_EINVAL);
    assert_true(th_msg_has(e.msg, "device memory", NULL));
    void *out;
    assert_int_equal(cudaMalloc(&out, ti.out_bytes), cudaSuccess);
    assert_int_equal(wc_gpu_decode_tensor(g, f, (size_t)i, out, ti.out_bytes - 1, NULL, 0, &e), WC_EINVAL);
    assert_int_equal(wc_gpu_decode_tensor(g, f, 1000, out, ti.out_bytes, NULL, 0, &e), WC_EINVAL);
    cudaFree(out);
    free(host);
    wc_gpu_destroy(g);
    wc_file_close(f);
}

/* A whole cycle (decoder, pipeline, resident, every kernel) leaves device
 * memory as it found it. The first cycle may grow the runtime's own pools
 * (module loading, allocator chunks), so the second is compared with it. */
static void test_leaks(void **state)
{
    (void)state;
    const char *src = make_model(1), *wc = th_path("leaks.wcodec");
    encode(src, wc, 1000, 13, -1, -1, 8);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.ring_bytes = 2u << 20;
    compare_file(wc, &go);
    size_t after_one = dev_free();
    compare_file(wc, &go);
    compare_file(wc, &go);
    assert_int_equal(dev_free(), after_one);
    fprintf(stderr, "device memory: %zu free at start, %zu after the tests\n", g_free_at_start, dev_free());
}

/* No device (run with CUDA_VISIBLE_DEVICES=): CPU fallback with its reason,
 * require_gpu refused, and the CPU path decodes into host memory. */
static int run_nodev(void)
{
    wc_err e = {0};
    wc_gpu *g = NULL;
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    int r = wc_gpu_create(&g, &go, &e);
    if (r != WC_ENODEV || g) {
        fprintf(stderr, "FAIL: require_gpu without a device gave %d\n", r);
        return 1;
    }
    fprintf(stderr, "require_gpu: %s\n", e.msg);
    go.require_gpu = false;
    if (wc_gpu_create(&g, &go, &e) || wc_gpu_backend(g) != WC_BACKEND_CPU || !wc_gpu_fallback_reason(g)[0] ||
        wc_gpu_device(g) != -1) {
        fprintf(stderr, "FAIL: no CPU fallback\n");
        return 1;
    }
    fprintf(stderr, "fallback reason: %s\n", wc_gpu_fallback_reason(g));
    const char *src = make_model(2), *wc = th_path("nodev.wcodec");
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.tile_weights = 100;
    o.min_weights = 1;
    if (wc_encode_file(src, wc, &o, &e)) return 1;
    wc_file *f;
    if (wc_file_open(&f, wc, &e)) return 1;
    size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        dst[i] = (wc_gpu_dst){malloc(ti.out_bytes), ti.out_bytes, malloc(4 * ti.n_scales + 4), ti.n_scales};
    }
    /* a decoder "sharing" the io threads of a CPU decoder: a CPU decoder too */
    wc_gpu *g2 = NULL;
    if (wc_gpu_create_sharing(&g2, &go, g, &e) || wc_gpu_backend(g2) != WC_BACKEND_CPU) {
        fprintf(stderr, "FAIL: wc_gpu_create_sharing without a device\n");
        return 1;
    }
    if (wc_gpu_decode_file(g, f, dst, &e)) bad = 1;
    for (size_t i = 0; i < n && !bad; i++) {
        uint8_t *ref = malloc(dst[i].out_size + 1);
        wc_decode_tensor(f, i, ref, dst[i].out_size, NULL, 0, &e);
        if (memcmp(ref, dst[i].out, dst[i].out_size)) bad = 1;
        free(ref);
    }
    for (size_t i = 0; i < n && !bad; i++) memset(dst[i].out, 0xa5, dst[i].out_size);
    if (!bad && wc_gpu_decode_file(g2, f, dst, &e)) bad = 1;
    for (size_t i = 0; i < n && !bad; i++) {
        uint8_t *ref = malloc(dst[i].out_size + 1);
        wc_decode_tensor(f, i, ref, dst[i].out_size, NULL, 0, &e);
        if (memcmp(ref, dst[i].out, dst[i].out_size)) bad = 1;
        free(ref);
    }
    for (size_t i = 0; i < n; i++) free(dst[i].out), free(dst[i].scales);
    free(dst);
    wc_file_close(f);
    wc_gpu_destroy(g);
    wc_gpu_destroy(g2);
    th_cleanup();
    fprintf(stderr, bad ? "FAIL: CPU fallback decode\n" : "CPU fallback: ok\n");
    return bad;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nodev")) return run_nodev();
        FILE *t = fopen(argv[i], "rb");
        g_weights = t ? argv[i] : NULL;
        if (t) fclose(t);
        if (!t) g_weights = "";
    }
    if (g_weights && !g_weights[0]) g_weights = NULL;
    else
    if (!g_weights) {
        static char p[1024];
        snprintf(p, sizeof p, "%s/slice_mixed.safetensors", WCT_WEIGHTS_DIR);
        FILE *t = fopen(p, "rb");
        if (t) fclose(t), g_weights = p;
        else printf("%s: %s; the real-weights test is skipped (meson option weights_dir)\n", p, strerror(errno));
    }
    g_quick = getenv("WCT_GPU_QUICK") && atoi(getenv("WCT_GPU_QUICK"));
    if (getenv("WCT_GPU_ONLY")) cmocka_set_test_filter(getenv("WCT_GPU_ONLY")); /* one test, by name */
    /* load every kernel up front: lazy loading takes device memory on first
     * launch, which the leak checks would count */
    setenv("CUDA_MODULE_LOADING", "EAGER", 0);
    int n = 0;
    cudaError_t ce = cudaGetDeviceCount(&n);
    if (ce != cudaSuccess || n == 0) {
        printf("no CUDA device (%s): GPU tests skipped\n", ce ? cudaGetErrorString(ce) : "none present");
        return 77;
    }
    g_free_at_start = dev_free();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_edges), cmocka_unit_test(test_modes),   cmocka_unit_test(test_small_ring),
        cmocka_unit_test(test_real),       cmocka_unit_test(test_corrupt_tile), cmocka_unit_test(test_oom),
        cmocka_unit_test(test_bad_args),   cmocka_unit_test(test_replaced), cmocka_unit_test(test_shared_io),
        cmocka_unit_test(test_leaks),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r ? 1 : 0;
}
