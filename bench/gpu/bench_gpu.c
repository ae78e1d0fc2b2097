/* GPU decoder benchmarks (issue 5).
 *
 *   bench_gpu kernel FILE.wcodec [ITERS] [SETS]
 *       compressed bytes already on the GPU -> INT8 + scales in GPU memory
 *       (wc_gpu_resident_run), GB/s of INT8 output, beside a device-to-device
 *       cudaMemcpy of the same number of bytes timed in the same run. SETS > 1
 *       decodes the file's tensors SETS times in one launch (small files).
 *   bench_gpu e2e FILE.wcodec [RUNS] [RING_MiB] [IO_THREADS] [VERIFY]
 *       file (page cache) -> every tensor in GPU memory through the pipeline
 *       (wc_gpu_decode_file), wall clock, and the process's peak RSS.
 *   bench_gpu sizes FILE.wcodec
 *       per tensor: time of one wc_gpu_decode_tensor call (file -> GPU) and
 *       of the kernel alone (resident), against its size: the fixed cost.
 * One line of results per measurement, "key=value" pairs, for scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "gpu_bench.h"
#include "prog_check.h"

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return v[n / 2];
}

static long rss_kb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}

static long cur_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * 4;
}

static void die(int r, const wc_err *e)
{
    if (r) {
        fprintf(stderr, "error %d (%s): %s\n", r, wc_strerror(r), e->msg);
        exit(1);
    }
}

/* Device buffers for the tensors of f: coded ones only (coded_only) or all. */
static wc_gpu_dst *alloc_dst(const wc_file *f, int coded_only, uint64_t *out_bytes, uint64_t *stored)
{
    size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *d = calloc(n, sizeof *d);
    *out_bytes = 0;
    *stored = 0;
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (coded_only && ti.coding != WC_CODING_RANS_I8) continue;
        d[i].out_size = ti.out_bytes;
        CK(cudaMalloc(&d[i].out, ti.out_bytes ? ti.out_bytes : 1));
        if (ti.n_scales) {
            d[i].n_scales = ti.n_scales;
            CK(cudaMalloc((void **)&d[i].scales, 4 * ti.n_scales));
        }
        *out_bytes += ti.out_bytes;
        *stored += ti.stored_bytes;
    }
    return d;
}

static void free_dst(const wc_file *f, wc_gpu_dst *d)
{
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        if (d[i].out) CK(cudaFree(d[i].out));
        if (d[i].scales) CK(cudaFree(d[i].scales));
    }
    free(d);
}

/* Median time of `iters` runs of the resident decode, in seconds, with events. */
static double time_resident(wc_gpu *g, wc_gpu_resident *res, int iters)
{
    wc_err e = {0};
    cudaStream_t st = wcg_stream(g);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    die(wc_gpu_resident_run(res, true, &e), &e); /* warm-up, checked */
    double *t = malloc(sizeof *t * (size_t)iters);
    for (int k = 0; k < iters; k++) {
        CK(cudaEventRecord(a, st));
        die(wc_gpu_resident_run(res, false, &e), &e);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t[k] = ms * 1e-3;
    }
    die(wc_gpu_resident_run(res, true, &e), &e); /* and still right at the end */
    double m = median(t, iters);
    free(t);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return m;
}

static double time_d2d(uint64_t bytes, int iters)
{
    void *s, *d;
    CK(cudaMalloc(&s, bytes));
    CK(cudaMalloc(&d, bytes));
    CK(cudaMemset(s, 1, bytes));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMemcpy(d, s, bytes, cudaMemcpyDeviceToDevice));
    double *t = malloc(sizeof *t * (size_t)iters);
    for (int k = 0; k < iters; k++) {
        CK(cudaEventRecord(a, 0));
        CK(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t[k] = ms * 1e-3;
    }
    double m = median(t, iters);
    free(t);
    CK(cudaFree(s));
    CK(cudaFree(d));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return m;
}

static int bench_kernel(const char *path, int iters, int sets)
{
    wc_err e = {0};
    wc_file *f;
    die(wc_file_open(&f, path, &e), &e);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    wc_gpu *g;
    die(wc_gpu_create(&g, &go, &e), &e);
    uint64_t out_bytes = 0, stored = 0, ob, sb;
    size_t nt = wc_file_tensor_count(f);
    wc_gpu_dst *d = calloc(nt * (size_t)sets, sizeof *d), **ds = calloc((size_t)sets, sizeof *ds);
    for (int k = 0; k < sets; k++) {
        ds[k] = alloc_dst(f, 1, &ob, &sb);
        memcpy(d + (size_t)k * nt, ds[k], nt * sizeof *d);
        out_bytes += ob, stored += sb;
    }
    wc_gpu_resident *res;
    die(wcg_resident_create_sets(g, f, d, (size_t)sets, &res, &e), &e);
    double t = time_resident(g, res, iters);
    double tc = time_d2d(out_bytes, iters);
    struct cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, wc_gpu_device(g)));
    printf("kernel sets=%d file=%s device=\"%s\" int8_bytes=%llu stored_bytes=%llu bits_per_weight=%.3f time_ms=%.4f "
           "GBps=%.1f d2d_ms=%.4f d2d_GBps=%.1f ratio=%.3f\n",
           sets, path, p.name, (unsigned long long)out_bytes, (unsigned long long)stored, 8.0 * stored / out_bytes,
           t * 1e3, out_bytes / t / 1e9, tc * 1e3, out_bytes / tc / 1e9, tc / t);
    wc_gpu_resident_destroy(res);
    for (int k = 0; k < sets; k++) free_dst(f, ds[k]);
    free(ds);
    free(d);
    wc_gpu_destroy(g);
    wc_file_close(f);
    return 0;
}

static int bench_e2e(const char *path, int runs, int ring_mib, int io_threads, int verify)
{
    wc_err e = {0};
    CK(cudaFree(0)); /* CUDA context first, so that the baseline RSS holds it */
    long base_rss = cur_rss_kb();
    wc_file *f;
    die(wc_file_open(&f, path, &e), &e);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    if (ring_mib > 0) go.ring_bytes = (size_t)ring_mib << 20;
    if (io_threads > 0) go.io_threads = io_threads;
    go.verify_checksums = verify != 0;
    double t0 = now();
    wc_gpu *g;
    die(wc_gpu_create(&g, &go, &e), &e);
    double t_create = now() - t0;
    double *t = malloc(sizeof *t * (size_t)runs), *ta = malloc(sizeof *ta * (size_t)runs);
    uint64_t out_bytes = 0, stored = 0;
    for (int k = 0; k < runs; k++) {
        double a = now();
        wc_gpu_dst *d = alloc_dst(f, 0, &out_bytes, &stored);
        CK(cudaDeviceSynchronize());
        double b = now();
        die(wc_gpu_decode_file(g, f, d, &e), &e);
        CK(cudaDeviceSynchronize());
        double c = now();
        t[k] = c - b;
        ta[k] = c - a;
        free_dst(f, d);
    }
    double tm = median(t, runs), tam = median(ta, runs);
    printf("e2e file=%s file_bytes=%llu out_bytes=%llu runs=%d ring_MiB=%zu io_threads=%d verify=%d "
           "decode_s=%.4f with_alloc_s=%.4f GBps_out=%.1f create_s=%.3f rss_base_MB=%.1f rss_peak_MB=%.1f "
           "pipeline_host_MB=%.1f\n",
           path, (unsigned long long)wc_file_size(f), (unsigned long long)out_bytes, runs, go.ring_bytes >> 20,
           go.io_threads, verify, tm, tam, out_bytes / tm / 1e9, t_create, base_rss / 1024.0, rss_kb() / 1024.0,
           (rss_kb() - base_rss) / 1024.0);
    free(t);
    free(ta);
    wc_gpu_destroy(g);
    wc_file_close(f);
    return 0;
}

static int bench_sizes(const char *path)
{
    wc_err e = {0};
    wc_file *f;
    die(wc_file_open(&f, path, &e), &e);
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    wc_gpu *g;
    die(wc_gpu_create(&g, &go, &e), &e);
    size_t n = wc_file_tensor_count(f);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding != WC_CODING_RANS_I8) continue;
        wc_gpu_dst *d = calloc(n, sizeof *d);
        d[i].out_size = ti.out_bytes;
        CK(cudaMalloc(&d[i].out, ti.out_bytes));
        d[i].n_scales = ti.n_scales;
        if (ti.n_scales) CK(cudaMalloc((void **)&d[i].scales, 4 * ti.n_scales));
        /* one call, file -> GPU */
        double tt[7];
        for (int k = 0; k < 7; k++) {
            double a = now();
            die(wc_gpu_decode_tensor(g, f, i, d[i].out, d[i].out_size, d[i].scales, d[i].n_scales, &e), &e);
            tt[k] = now() - a;
        }
        double call = median(tt, 7);
        wc_gpu_resident *res;
        die(wc_gpu_resident_create(g, f, d, &res, &e), &e);
        int iters = ti.out_bytes > (256u << 20) ? 5 : 21;
        double kt = time_resident(g, res, iters);
        wc_gpu_resident_destroy(res);
        double ct = time_d2d(ti.out_bytes, iters);
        printf("size name=%s int8_bytes=%llu stored_bytes=%llu tiles=%u call_ms=%.4f call_GBps=%.2f kernel_ms=%.4f "
               "kernel_GBps=%.1f d2d_ms=%.4f\n",
               ti.name, (unsigned long long)ti.out_bytes, (unsigned long long)ti.stored_bytes, ti.n_tiles, call * 1e3,
               ti.out_bytes / call / 1e9, kt * 1e3, ti.out_bytes / kt / 1e9, ct * 1e3);
        CK(cudaFree(d[i].out));
        if (d[i].scales) CK(cudaFree(d[i].scales));
        free(d);
    }
    wc_gpu_destroy(g);
    wc_file_close(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_gpu kernel|e2e|sizes FILE.wcodec [args]\n");
        return 2;
    }
    if (!strcmp(argv[1], "kernel")) return bench_kernel(argv[2], argc > 3 ? atoi(argv[3]) : 20, argc > 4 ? atoi(argv[4]) : 1);
    if (!strcmp(argv[1], "e2e"))
        return bench_e2e(argv[2], argc > 3 ? atoi(argv[3]) : 3, argc > 4 ? atoi(argv[4]) : 0,
                         argc > 5 ? atoi(argv[5]) : 0, argc > 6 ? atoi(argv[6]) : 1);
    if (!strcmp(argv[1], "sizes")) return bench_sizes(argv[2]);
    fprintf(stderr, "unknown benchmark %s\n", argv[1]);
    return 2;
}
