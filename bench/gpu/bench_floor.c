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
 * One key=value line, for scripts. With --both, a second line measures the
 * two at once, as a load must do them (issue 21, part 2):
 *   - both: THREADS threads read 4 MiB chunks into a 256 MiB pinned ring
 *     (BENCH_CHUNK_KIB, BENCH_RING_MIB) and
 *     each copies its chunk to the device on a stream of its own as soon as
 *     it is read (a ring chunk is rewritten only after its copy is done):
 *     reads and copies overlapped with nothing else in the way;
 *   - reg: the file mapped and its pages registered with CUDA
 *     (cudaHostRegister, read-only) in 64 MiB pieces on THREADS threads,
 *     each piece copied from the page cache itself, then unregistered: the
 *     same bytes moved without the pread copy. */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "prog_check.h"

#define CHUNK (8u << 20)
#define H2D_CHUNK (64u << 20)

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

#define REG_CHUNK (64u << 20)
/* --both's ring and chunk, the pipeline's defaults unless BENCH_RING_MIB and
 * BENCH_CHUNK_KIB say otherwise */
static size_t ring_bytes = 256u << 20, chunk_bytes = 4u << 20;

/* The state the --both passes' threads share. */
typedef struct pipe_ring {
    int fd;
    uint64_t size, next;
    pthread_mutex_t mu;
    char *ring, *dst;        /* pinned ring; device buffer (the ring's size, 128 MiB at least) */
    const char *map;         /* the file mapped (reg) */
    cudaEvent_t *ev;         /* per ring chunk: its last copy */
    int *ev_used;
    int failed;
} pipe_ring;

static uint64_t take_chunk(pipe_ring *p, uint64_t chunk)
{
    pthread_mutex_lock(&p->mu);
    uint64_t off = p->next;
    p->next += chunk;
    pthread_mutex_unlock(&p->mu);
    return off;
}

static void *pipe_worker(void *arg)
{
    pipe_ring *p = arg;
    cudaStream_t s;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) return p->failed = 1, NULL;
    for (uint64_t off; (off = take_chunk(p, chunk_bytes)) < p->size;) {
        size_t want = p->size - off < chunk_bytes ? (size_t)(p->size - off) : chunk_bytes;
        size_t pos = (size_t)(off % ring_bytes), k = pos / chunk_bytes;
        /* the copy of this ring chunk's last bytes went out before these
         * land (only a thread a whole ring behind the others could write a
         * chunk another is reading into: the bytes, never the timing, would
         * be wrong) */
        if (p->ev_used[k] && cudaEventSynchronize(p->ev[k]) != cudaSuccess) p->failed = 1;
        for (size_t got = 0; got < want;) {
            ssize_t n = pread(p->fd, p->ring + pos + got, want - got, (off_t)(off + got));
            if (n <= 0) return p->failed = 1, NULL;
            got += (size_t)n;
        }
        if (cudaMemcpyAsync(p->dst + pos, p->ring + pos, want, cudaMemcpyHostToDevice, s) != cudaSuccess ||
            cudaEventRecord(p->ev[k], s) != cudaSuccess)
            p->failed = 1;
        p->ev_used[k] = 1;
    }
    if (cudaStreamSynchronize(s) != cudaSuccess) p->failed = 1;
    cudaStreamDestroy(s);
    return NULL;
}

static void *reg_worker(void *arg)
{
    pipe_ring *p = arg;
    cudaStream_t s;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) return p->failed = 1, NULL;
    for (uint64_t off; (off = take_chunk(p, REG_CHUNK)) < p->size;) {
        size_t n = p->size - off < REG_CHUNK ? (size_t)(p->size - off) : REG_CHUNK;
        void *h = (void *)(p->map + off);
        cudaError_t e = cudaHostRegister(h, n, cudaHostRegisterReadOnly);
        if (e != cudaSuccess) {
            fprintf(stderr, "bench_floor: cudaHostRegister of the mapped file: %s\n", cudaGetErrorString(e));
            return p->failed = 1, NULL;
        }
        /* into one device buffer: every thread's copy lands somewhere in it */
        if (cudaMemcpyAsync(p->dst + off % (REG_CHUNK + 1) / 4096 * 4096, h, n, cudaMemcpyHostToDevice, s) !=
                cudaSuccess ||
            cudaStreamSynchronize(s) != cudaSuccess || cudaHostUnregister(h) != cudaSuccess)
            p->failed = 1;
    }
    cudaStreamDestroy(s);
    return NULL;
}

static double both_pass(pipe_ring *p, int threads, void *(*fn)(void *))
{
    pthread_t th[64];
    p->next = 0;
    p->failed = 0;
    double t0 = now();
    for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, fn, p);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    CK(cudaDeviceSynchronize());
    double t = now() - t0;
    if (p->failed) return -1;
    return t;
}

/* --both: reads and copies at once, through a ring and from the mapped file */
static void run_both(int fd, uint64_t size, int threads, int runs)
{
    pipe_ring p = {.fd = fd, .size = size, .mu = PTHREAD_MUTEX_INITIALIZER};
    const char *rm = getenv("BENCH_RING_MIB"), *ck = getenv("BENCH_CHUNK_KIB");
    if (rm && atoi(rm) >= 8) ring_bytes = (size_t)atoi(rm) << 20;
    if (ck && atoi(ck) >= 64) chunk_bytes = (size_t)atoi(ck) << 10;
    /* at least two ring chunks a thread */
    if (ring_bytes < 2 * (size_t)threads * chunk_bytes) ring_bytes = 2 * (size_t)threads * chunk_bytes;
    ring_bytes = ring_bytes / chunk_bytes * chunk_bytes;
    p.ev = calloc(ring_bytes / chunk_bytes, sizeof *p.ev);
    p.ev_used = calloc(ring_bytes / chunk_bytes, sizeof *p.ev_used);
    CK(cudaMallocHost((void **)&p.ring, ring_bytes));
    CK(cudaMalloc((void **)&p.dst, ring_bytes > 2 * REG_CHUNK ? ring_bytes : 2 * REG_CHUNK));
    for (size_t k = 0; k < ring_bytes / chunk_bytes; k++) CK(cudaEventCreateWithFlags(&p.ev[k], cudaEventDisableTiming));
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    p.map = m == MAP_FAILED ? NULL : m;
    double best_both = 1e30, best_reg = 1e30;
    for (int k = 0; k < runs; k++) {
        double t = both_pass(&p, threads, pipe_worker);
        if (t > 0 && t < best_both) best_both = t;
        if (p.map && (t = both_pass(&p, threads, reg_worker)) > 0 && t < best_reg) best_reg = t;
    }
    printf("floor_both bytes=%llu ring_MiB=%zu chunk_KiB=%zu threads=%d runs=%d both_GBps=%.1f both_s=%.4f reg_GBps=%.1f reg_s=%.4f\n",
           (unsigned long long)size, ring_bytes >> 20, chunk_bytes >> 10, threads, runs, best_both < 1e30 ? size / best_both / 1e9 : 0.0,
           best_both < 1e30 ? best_both : 0.0, best_reg < 1e30 ? size / best_reg / 1e9 : 0.0,
           best_reg < 1e30 ? best_reg : 0.0);
    if (p.map) munmap(m, size);
    for (size_t k = 0; k < ring_bytes / chunk_bytes; k++) cudaEventDestroy(p.ev[k]);
    free(p.ev);
    free(p.ev_used);
    cudaFreeHost(p.ring);
    cudaFree(p.dst);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: bench_floor FILE [THREADS (default 14)] [RUNS (default 3)] [--both]\n"
                "The floor of a file-to-GPU load: pread GB/s (THREADS threads and 1, page cache) and pinned\n"
                "host-to-device GB/s, measured in this run; floor_s = file bytes / the slower.\n"
                "--both: a second line, reads and copies at once (a pinned ring; the mapped file registered);\n"
                "        BENCH_RING_MIB (256) and BENCH_CHUNK_KIB (4096) set its ring and chunk.\n");
        return argc < 2 ? 2 : 0;
    }
    int both = argc > 2 && !strcmp(argv[argc - 1], "--both");
    argc -= both;
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
    if (both) run_both(fd, size, threads, runs);
    close(fd);
    return 0;
}
