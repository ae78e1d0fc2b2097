/* The floor of a whole-model load on this machine: what moving the file's
 * bytes costs, whatever the decoder does (issues 19 and 21).
 *
 *   bench_floor FILE [THREADS] [RUNS]
 *
 * Measures, in one process:
 *   - pread: THREADS threads read the whole file (page cache; one untimed
 *     pass first) in 8 MiB chunks into pinned host buffers, as the
 *     decoder's io threads do; GB/s of file bytes, and with 1 thread;
 *   - h2d: pinned host-to-device copies of the file's size in 64 MiB
 *     chunks on two streams; GB/s;
 *   - floor_s = file bytes / the slower of the two: no load that reads the
 *     file and copies it to the GPU can be faster (the two overlap at best).
 * One key=value line, for scripts. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#define CHUNK (8u << 20)
#define H2D_CHUNK (64u << 20)

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct reader {
    pthread_t th;
    int fd;
    uint64_t size, next_shared;
    uint64_t *next;          /* the chunk counter shared by the readers */
    pthread_mutex_t *mu;
    char *buf;               /* pinned, CHUNK bytes, this thread's own */
    int failed;
} reader;

static void *read_chunks(void *arg)
{
    reader *r = arg;
    for (;;) {
        pthread_mutex_lock(r->mu);
        uint64_t off = *r->next;
        *r->next += CHUNK;
        pthread_mutex_unlock(r->mu);
        if (off >= r->size) return NULL;
        size_t want = r->size - off < CHUNK ? (size_t)(r->size - off) : CHUNK;
        for (size_t got = 0; got < want;) {
            ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
            if (n <= 0) {
                r->failed = 1;
                return NULL;
            }
            got += (size_t)n;
        }
    }
}

static double pread_pass(int fd, uint64_t size, int threads, char **bufs)
{
    uint64_t next = 0;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    reader *rs = calloc((size_t)threads, sizeof *rs);
    double t0 = now();
    for (int i = 0; i < threads; i++) {
        rs[i] = (reader){.fd = fd, .size = size, .next = &next, .mu = &mu, .buf = bufs[i]};
        pthread_create(&rs[i].th, NULL, read_chunks, &rs[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(rs[i].th, NULL);
        failed |= rs[i].failed;
    }
    double t = now() - t0;
    free(rs);
    if (failed) {
        fprintf(stderr, "bench_floor: a read failed\n");
        exit(1);
    }
    return t;
}

static double h2d_pass(uint64_t size, const char *src, char *dst, cudaStream_t s[2])
{
    CK(cudaDeviceSynchronize());
    double t0 = now();
    int k = 0;
    for (uint64_t off = 0; off < size; off += H2D_CHUNK, k ^= 1) {
        size_t n = size - off < H2D_CHUNK ? (size_t)(size - off) : H2D_CHUNK;
        CK(cudaMemcpyAsync(dst + (off % (1ull << 30)) / H2D_CHUNK * H2D_CHUNK, src + (k ? H2D_CHUNK : 0), n,
                           cudaMemcpyHostToDevice, s[k]));
    }
    CK(cudaDeviceSynchronize());
    return now() - t0;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: bench_floor FILE [THREADS (default 14)] [RUNS (default 3)]\n"
                "The floor of a file-to-GPU load: pread GB/s (THREADS threads and 1, page cache) and pinned\n"
                "host-to-device GB/s, measured in this run; floor_s = file bytes / the slower.\n");
        return argc < 2 ? 2 : 0;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 14, runs = argc > 3 ? atoi(argv[3]) : 3;
    if (threads < 1 || threads > 64 || runs < 1) return 2;
    int fd = open(argv[1], O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        perror(argv[1]);
        return 1;
    }
    uint64_t size = (uint64_t)sb.st_size;
    CK(cudaFree(0));
    char **bufs = calloc((size_t)threads, sizeof *bufs);
    for (int i = 0; i < threads; i++) CK(cudaMallocHost((void **)&bufs[i], CHUNK));
    char *src, *dst;
    CK(cudaMallocHost((void **)&src, 2 * (size_t)H2D_CHUNK));
    memset(src, 1, 2 * (size_t)H2D_CHUNK);
    CK(cudaMalloc((void **)&dst, 1ull << 30));
    cudaStream_t s[2];
    CK(cudaStreamCreateWithFlags(&s[0], cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s[1], cudaStreamNonBlocking));
    pread_pass(fd, size, threads, bufs); /* the page cache warm */
    h2d_pass(size, src, dst, s);
    double *tp = malloc(sizeof(double) * (size_t)runs), *t1 = malloc(sizeof(double) * (size_t)runs),
           *th = malloc(sizeof(double) * (size_t)runs);
    for (int k = 0; k < runs; k++) {
        tp[k] = pread_pass(fd, size, threads, bufs);
        t1[k] = pread_pass(fd, size, 1, bufs);
        th[k] = h2d_pass(size, src, dst, s);
    }
    qsort(tp, (size_t)runs, sizeof *tp, cmpd);
    qsort(t1, (size_t)runs, sizeof *t1, cmpd);
    qsort(th, (size_t)runs, sizeof *th, cmpd);
    double gp = size / tp[runs / 2] / 1e9, g1 = size / t1[runs / 2] / 1e9, gh = size / th[runs / 2] / 1e9;
    double slower = gp < gh ? gp : gh;
    printf("floor file=%s bytes=%llu threads=%d runs=%d pread_GBps=%.1f pread1_GBps=%.1f h2d_GBps=%.1f "
           "floor_s=%.4f\n",
           argv[1], (unsigned long long)size, threads, runs, gp, g1, gh, size / slower / 1e9);
    close(fd);
    return 0;
}
