/* The record-hash kernels (cuda/hash.cu) alone (issue 21, part 2).
 *
 *   bench_hash [TOTAL_MiB] [RECORD_MiB] [ITERS]
 *
 * TOTAL_MiB (default 56: one ring slot's data) of random bytes in device
 * memory, cut into records of RECORD_MiB (default 16; 56 gives one record,
 * the longest scan a batch can hold), each hashed whole as one job:
 * wcg_hash_launch's time (median of ITERS, CUDA events), GB/s, beside a
 * device-to-device copy of the same bytes and XXH3_64bits on one CPU
 * thread. Bytes are checked once against XXH3_64bits (a benchmark of
 * wrong answers is worth nothing); tests/gpu/test_gpu_hash.c is the test.
 * One line of key=value pairs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <xxhash.h>

#include "hash_ref.h"
#include "prog_check.h"

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: bench_hash [TOTAL_MiB] [RECORD_MiB] [ITERS]\n"
               "Times the record-hash kernels on random device bytes (see the file's head).\n");
        return 0;
    }
    const uint64_t total = (argc > 1 ? strtoull(argv[1], NULL, 10) : 56) << 20;
    const uint64_t rec = (argc > 2 ? strtoull(argv[2], NULL, 10) : 16) << 20;
    const int iters = argc > 3 ? atoi(argv[3]) : 20;
    const uint32_t n = (uint32_t)(total / rec);
    if (!n || rec < WCG_XXH3_MIN_LONG || iters < 1) {
        fprintf(stderr, "bench_hash: TOTAL_MiB must hold one RECORD_MiB at least\n");
        return 2;
    }
    int devs = 0;
    if (cudaGetDeviceCount(&devs) != cudaSuccess || !devs) {
        printf("no usable CUDA device: skipped\n");
        return 77;
    }
    CK((cudaError_t)wcg_hash_setup());
    uint8_t *h = malloc(total), *d, *d2;
    uint64_t x = 88172645463325252ull;
    for (uint64_t i = 0; i < total; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(h + i, &x, total - i < 8 ? total - i : 8);
    }
    wcg_hash_job *jobs = calloc(n, sizeof *jobs), *d_jobs;
    wcg_xxh3_stream *st = calloc(n, sizeof *st), *d_st;
    uint64_t *d_sums, sums = 0;
    CK(cudaMalloc((void **)&d, total));
    CK(cudaMalloc((void **)&d2, total));
    CK(cudaMalloc((void **)&d_jobs, n * sizeof *jobs));
    CK(cudaMalloc((void **)&d_st, n * sizeof *st));
    CK(cudaMalloc((void **)&d_sums, (total / WCG_XXH3_BLOCK + 1) * 64));
    CK(cudaMemcpy(d, h, total, cudaMemcpyHostToDevice));
    for (uint32_t k = 0; k < n; k++) {
        wcg_xxh3_stream_init(&st[k], rec);
        wcg_xxh3_split sp = wcg_xxh3_split_of(0, rec, rec);
        jobs[k] = (wcg_hash_job){.src = d + k * rec, .n = rec, .head = sp.head, .blocks = sp.blocks, .sums = sums,
                                 .state = k};
        sums += sp.blocks;
    }
    CK(cudaMemcpy(d_jobs, jobs, n * sizeof *jobs, cudaMemcpyHostToDevice));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    float *ms = malloc(sizeof *ms * (size_t)iters), *cms = malloc(sizeof *cms * (size_t)iters);
    for (int i = -1; i < iters; i++) { /* the first: warm-up, and the check */
        CK(cudaMemcpy(d_st, st, n * sizeof *st, cudaMemcpyHostToDevice));
        CK(cudaEventRecord(a, 0));
        CK((cudaError_t)wcg_hash_launch(d_jobs, n, sums, d_sums, d_st, 0));
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        if (i >= 0) CK(cudaEventElapsedTime(&ms[i], a, b));
        if (i < 0) {
            wcg_xxh3_stream *got = malloc(n * sizeof *got);
            CK(cudaMemcpy(got, d_st, n * sizeof *got, cudaMemcpyDeviceToHost));
            for (uint32_t k = 0; k < n; k++)
                if (wcg_xxh3_stream_end(&got[k]) != XXH3_64bits(h + k * rec, rec)) {
                    fprintf(stderr, "bench_hash: record %u: the device's hash is wrong\n", k);
                    return 1;
                }
            free(got);
        }
    }
    for (int i = 0; i < iters; i++) {
        CK(cudaEventRecord(a, 0));
        CK(cudaMemcpy(d2, d, n * rec, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&cms[i], a, b));
    }
    double t = now();
    uint64_t sink = XXH3_64bits(h, n * rec);
    t = now() - t;
    qsort(ms, (size_t)iters, sizeof *ms, cmpf);
    qsort(cms, (size_t)iters, sizeof *cms, cmpf);
    const double bytes = (double)n * (double)rec, k = ms[iters / 2] / 1e3, c = cms[iters / 2] / 1e3;
    printf("hash bytes=%.0f records=%u record_MiB=%llu kernel_ms=%.4f GBps=%.1f d2d_ms=%.4f d2d_GBps=%.1f "
           "ratio_to_d2d=%.2f cpu_xxh3_GBps=%.1f (%016llx)\n",
           bytes, n, (unsigned long long)(rec >> 20), k * 1e3, bytes / k / 1e9, c * 1e3, bytes / c / 1e9, c / k,
           bytes / t / 1e9, (unsigned long long)sink);
    return 0;
}
