/* wc_gpu_dequant against the CPU's rule, bit for bit: a synthetic matrix
 * whose rows hold every int8 value and whose scales reach F16's subnormals
 * and overflow and BF16's ties, against wc_dequant_rows (codec/dequant.c,
 * itself checked against hand-worked values and PyTorch); and every coded
 * tensor of a file decoded on the device then dequantized there, against
 * wc_decode_tensor_dequant on the CPU. On the CUDA backend the buffers are
 * device memory; with --nodev (no device visible) the CPU backend runs the
 * same cases in host memory. Exit 77 when a device is wanted and absent.
 * Usage: test_gpu_dequant [--nodev] FILE.wcodec */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include <wcodec/wcodec_gpu.h>

#include "dequant.h"

#define FAIL(...) (fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__), fprintf(stderr, __VA_ARGS__), \
                   fputc('\n', stderr), 1)

static bool on_dev;

static void *buf_alloc(size_t n)
{
    void *p = NULL;
    if (!on_dev) return malloc(n ? n : 1);
    return cudaMalloc(&p, n ? n : 1) == cudaSuccess ? p : NULL;
}
static void buf_free(void *p)
{
    if (on_dev) cudaFree(p);
    else free(p);
}
static int to_buf(void *dst, const void *src, size_t n)
{
    if (!on_dev) return memcpy(dst, src, n), 0;
    return cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : -1;
}
static int from_buf(void *dst, const void *src, size_t n)
{
    if (!on_dev) return memcpy(dst, src, n), 0;
    return cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : -1;
}

static const wc_dtype DTYPES[] = {WC_DT_BF16, WC_DT_F16, WC_DT_F32};

/* GPU (or CPU backend) against wc_dequant_rows on q and scales given in host memory. */
static int check_matrix(wc_gpu *g, const int8_t *q, const float *sc, uint64_t rows, uint64_t cols, const char *what)
{
    const size_t n = rows * cols;
    int8_t *dq = buf_alloc(n);
    float *ds = sc ? buf_alloc(rows * 4) : NULL;
    void *dout = buf_alloc(n * 4);
    uint8_t *want = malloc(n * 4 + 1), *got = malloc(n * 4 + 1);
    int rc = 0;
    if (!dq || (sc && !ds) || !dout || !want || !got) rc = FAIL("out of memory");
    if (!rc && (to_buf(dq, q, n) || (sc && to_buf(ds, sc, rows * 4)))) rc = FAIL("copy in");
    for (size_t k = 0; k < 3 && !rc; k++) {
        const size_t bytes = n * (size_t)wc_dtype_size(DTYPES[k]);
        wc_err e = {0};
        wc_dequant_rows(q, sc, rows, cols, DTYPES[k], want);
        if (wc_gpu_dequant(g, dq, ds, rows, cols, DTYPES[k], dout, &e)) rc = FAIL("%s: %s", what, e.msg);
        else if (from_buf(got, dout, bytes)) rc = FAIL("copy out");
        else if (memcmp(want, got, bytes)) {
            size_t at = 0;
            while (at < bytes && want[at] == got[at]) at++;
            rc = FAIL("%s as %s: byte %zu differs (element %zu)", what, wc_dtype_name(DTYPES[k]), at,
                      at / (size_t)wc_dtype_size(DTYPES[k]));
        }
    }
    buf_free(dq), buf_free(ds), buf_free(dout);
    free(want), free(got);
    return rc;
}

static int synthetic(wc_gpu *g)
{
    const uint64_t rows = 300, cols = 1031; /* cols: no multiple of the kernel's 4 per thread */
    int8_t *q = malloc(rows * cols);
    float *sc = malloc(rows * 4);
    /* F16: 6e-8 and 1e-7 put products among its subnormals, 3e-9 below
     * them, 600 past 65504 for |q| > 109; 1/3 and the random ones give
     * BF16 and F16 ties and near-ties */
    const float fixed[] = {1.0f, 0.5f, 6e-8f, 1e-7f, 3e-9f, 600.0f, 1.0f / 3.0f, 65504.0f / 127.0f, -2.5f};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint64_t r = 0; r < rows; r++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        sc[r] = r < 9 ? fixed[r] : ldexpf((float)(x >> 40) / (float)(1 << 24) + 0.5f, (int)(x % 40) - 20);
        for (uint64_t c = 0; c < cols; c++) q[r * cols + c] = (int8_t)(uint8_t)(c + r * 7);
    }
    int rc = check_matrix(g, q, sc, rows, cols, "synthetic");
    if (!rc) rc = check_matrix(g, q, NULL, rows, cols, "synthetic, no scales");
    if (!rc) rc = check_matrix(g, q, sc, 1, 1, "one value");
    wc_err e = {0};
    if (!rc && wc_gpu_dequant(g, q, sc, rows, cols, WC_DT_I8, q, &e) != WC_EINVAL) rc = FAIL("I8 output accepted");
    free(q), free(sc);
    if (!rc) printf("synthetic: %llu x %llu, every int8 value, as BF16, F16 and F32: equal to the CPU's rule\n",
                    (unsigned long long)rows, (unsigned long long)cols);
    return rc;
}

/* Every coded tensor of the file: decoded and dequantized by g, against
 * wc_decode_tensor_dequant. */
static int real(wc_gpu *g, const char *path)
{
    wc_err e = {0};
    wc_file *f;
    if (wc_file_open(&f, path, &e)) return FAIL("%s", e.msg);
    int rc = 0;
    size_t done = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f) && !rc; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding != WC_CODING_RANS_I8) continue;
        const size_t n = ti.rows * ti.cols;
        int8_t *dq = buf_alloc(n);
        float *ds = ti.n_scales ? buf_alloc(ti.n_scales * 4) : NULL;
        void *dout = buf_alloc(n * 2);
        uint8_t *want = malloc(n * 2 + 1), *got = malloc(n * 2 + 1);
        if (!dq || (ti.n_scales && !ds) || !dout || !want || !got) rc = FAIL("out of memory");
        else if (wc_gpu_decode_tensor(g, f, i, dq, n, ds, ti.n_scales, &e) ||
                 wc_gpu_dequant(g, dq, ds, ti.rows, ti.cols, WC_DT_BF16, dout, &e))
            rc = FAIL("%s: %s", ti.name, e.msg);
        else if (wc_decode_tensor_dequant(f, i, WC_DT_BF16, want, n * 2, &e)) rc = FAIL("%s: %s", ti.name, e.msg);
        else if (from_buf(got, dout, n * 2)) rc = FAIL("copy out");
        else if (memcmp(want, got, n * 2)) rc = FAIL("%s: BF16 differs from wc_decode_tensor_dequant", ti.name);
        done++;
        buf_free(dq), buf_free(ds), buf_free(dout);
        free(want), free(got);
    }
    wc_file_close(f);
    if (!rc) printf("%s: %zu coded tensors decoded and dequantized to BF16, equal to the CPU's\n", path, done);
    return rc;
}

int main(int argc, char **argv)
{
    const bool nodev = argc > 1 && !strcmp(argv[1], "--nodev");
    if (argc != 2 + nodev) return fprintf(stderr, "usage: %s [--nodev] FILE.wcodec\n", argv[0]), 2;
    wc_gpu_opts o;
    wc_gpu_opts_default(&o);
    o.force_cpu = nodev;
    o.require_gpu = !nodev;
    wc_gpu *g;
    wc_err e = {0};
    if (wc_gpu_create(&g, &o, &e)) {
        if (nodev) return FAIL("%s", e.msg);
        printf("no usable CUDA device (%s): skipped\n", e.msg);
        return 77;
    }
    on_dev = wc_gpu_backend(g) == WC_BACKEND_CUDA;
    printf("backend: %s\n", on_dev ? "CUDA" : "CPU");
    int rc = synthetic(g);
    if (!rc) rc = real(g, argv[1 + nodev]);
    wc_gpu_destroy(g);
    if (!rc) printf("ok\n");
    return rc;
}
