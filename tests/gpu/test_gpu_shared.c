/* The GPU decoder as an application gets it: through the installed
 * libwcodec.so and wcodec_gpu.h only (nothing internal). Two builds:
 *  - without a device (CUDA_VISIBLE_DEVICES= in meson.build), or in a build
 *    without CUDA, the decoder must fall back to the CPU, say why, refuse
 *    require_gpu and the resident path, and decode every tensor of a file
 *    equal to wc_decode_tensor;
 *  - WCT_APP_CUDA: the application has a CUDA runtime of its own (a
 *    separate copy from the one hidden inside libwcodec), allocates the
 *    outputs with it, and the decoder must write them on the device, equal
 *    to wc_decode_tensor. Exits 77 where there is no device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wcodec/wcodec_gpu.h>
#ifdef WCT_APP_CUDA
#include <cuda_runtime_api.h>
#endif

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#ifdef WCT_APP_CUDA
static void *out_alloc(size_t n)
{
    void *p = NULL;
    return cudaMalloc(&p, n) == cudaSuccess ? p : NULL;
}
static void out_free(void *p) { cudaFree(p); }
static int out_fetch(void *host, const void *out, size_t n)
{
    return cudaMemcpy(host, out, n, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : -1;
}
#else
static void *out_alloc(size_t n) { return malloc(n); }
static void out_free(void *p) { free(p); }
static int out_fetch(void *host, const void *out, size_t n)
{
    memcpy(host, out, n);
    return 0;
}
#endif

/* Picks the backend this build tests; 77 = skip. */
static int make_decoder(wc_gpu **g)
{
    wc_err e = {0};
    wc_gpu_opts o;
    wc_gpu_opts_default(&o);
    o.require_gpu = true;
#ifdef WCT_APP_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    CHECK(!wc_gpu_create(g, &o, &e), "require_gpu with a device: %s", e.msg);
    CHECK(wc_gpu_backend(*g) == WC_BACKEND_CUDA && wc_gpu_device(*g) >= 0, "not the CUDA backend");
    CHECK(!wc_gpu_fallback_reason(*g)[0], "a fallback reason on the CUDA backend");
#else
    int r = wc_gpu_create(g, &o, &e);
    CHECK(r == WC_ENODEV && !*g, "require_gpu without a device gave %d (%s)", r, e.msg);
    o.require_gpu = false;
    CHECK(!wc_gpu_create(g, &o, &e), "%s", e.msg);
    CHECK(wc_gpu_backend(*g) == WC_BACKEND_CPU && wc_gpu_device(*g) == -1, "not the CPU backend");
    CHECK(wc_gpu_fallback_reason(*g)[0], "no fallback reason");
    printf("fallback: %s\n", wc_gpu_fallback_reason(*g));
#endif
    return 0;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: %s MODEL.wcodec", argv[0]);
    wc_err e = {0};
    wc_gpu *g = NULL;
    int r = make_decoder(&g);
    if (r) return r;

    wc_file *f;
    CHECK(!wc_file_open(&f, argv[1], &e), "%s", e.msg);
    const size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    CHECK(dst, "out of memory");
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        CHECK(!wc_file_tensor_info(f, i, &ti), "tensor %zu: no info", i);
        dst[i] = (wc_gpu_dst){out_alloc(ti.out_bytes + 1), ti.out_bytes, out_alloc(4 * ti.n_scales + 4), ti.n_scales};
        CHECK(dst[i].out && dst[i].scales, "out of memory");
    }
    CHECK(!wc_gpu_decode_file(g, f, dst, &e), "%s", e.msg);
#ifndef WCT_APP_CUDA
    /* the resident path needs a device: refused on the CPU backend (the
     * same in a build without CUDA) */
    wc_gpu_resident *res = NULL;
    r = wc_gpu_resident_create(g, f, dst, &res, &e);
    CHECK(r == WC_ENODEV && !res, "resident decode on the CPU backend gave %d (%s)", r, e.msg);
    wc_gpu_resident_destroy(res);
#endif
    size_t coded = 0;
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        uint8_t *ref = malloc(ti.out_bytes + 1), *got = malloc(ti.out_bytes + 1);
        float *rs = malloc(4 * ti.n_scales + 4), *gs = malloc(4 * ti.n_scales + 4);
        CHECK(ref && rs && got && gs, "out of memory");
        CHECK(!wc_decode_tensor(f, i, ref, ti.out_bytes, rs, ti.n_scales, &e), "%s", e.msg);
        CHECK(!out_fetch(got, dst[i].out, ti.out_bytes) && !out_fetch(gs, dst[i].scales, 4 * ti.n_scales),
              "reading back tensor '%s' failed", ti.name);
        CHECK(!memcmp(ref, got, ti.out_bytes), "tensor '%s' differs", ti.name);
        CHECK(!memcmp(rs, gs, 4 * ti.n_scales), "tensor '%s': scales differ", ti.name);
        coded += ti.coding == WC_CODING_RANS_I8;
        free(ref), free(rs), free(got), free(gs);
        out_free(dst[i].out), out_free(dst[i].scales);
    }
    printf("%zu tensors (%zu coded) equal to wc_decode_tensor\n", n, coded);
    free(dst);
    wc_file_close(f);
    wc_gpu_destroy(g);
    return 0;
}
