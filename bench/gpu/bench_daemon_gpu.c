/* wcodecd on the GPU, from a client's side (issue 19).
 *
 *   bench_daemon_gpu cold|warm [-t RANK/SIZE] SOCKET MODEL.wcodec... [DEVICE]
 *   bench_daemon_gpu single SOCKET MODEL.wcodec ITERS [DEVICE]
 *
 * cold: connect, open, one get of every tensor on DEVICE (default 0), until
 *   every tensor's device pointer is in hand: what a first inference process
 *   waits for when the daemon has to decode the model. Several files (a
 *   model kept as one .wcodec per shard): each in turn on one connection,
 *   all held until the last is mapped, and a line for the whole. -t: each
 *   get asks for tensor-parallel rank RANK of SIZE (the llama layout), as
 *   an inference engine's rank does (issue 22).
 * warm: the same against a resident model, split: connect + Hello, open, the
 *   first get (round trip, the arenas' import and map, the client's own
 *   work), and a second get of the same tensors on the same connection (no
 *   import: the connection maps the arenas already); imports = first -
 *   second.
 * single: ITERS gets of one cached tensor (the model's largest), each
 *   followed by its release: p50 and p99 of the get; first while the
 *   connection holds the whole model (its arenas stay imported: an inference
 *   process asking for one more tensor), then holding nothing (each get
 *   imports the arena again, each release unmaps it).
 * The process's CUDA context is made before any clock starts, as an
 * inference process (PyTorch) has it before it asks for weights.
 * One key=value line each, for scripts. Timings only: bytes are checked by
 * the gpu suite (tests/gpu/test_daemon_gpu.c). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include <wcodec/wcodec_client.h>

#include "prog_check.h"

static void die(int r, const wc_err *e, const char *what)
{
    if (!r) return;
    fprintf(stderr, "bench_daemon_gpu: %s: %s (%s)\n", what, e->msg, wc_client_strerror(r));
    exit(1);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* -t RANK/SIZE: every get asks for that rank's tensor-parallel shards (the llama layout) */
static uint32_t tp_rank, tp_size;

static int get_all(wc_client *c, uint64_t model, int device, wc_client_tensor ***ts, size_t *n, wc_err *e)
{
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.device = device;
    if (tp_size > 1) o.tp_rank = tp_rank, o.tp_size = tp_size, o.tp_layout = "llama";
    return wc_client_get2(c, model, WC_SELECT_ALL, NULL, 0, &o, ts, n, e);
}

static const char *kind_name(wc_location_kind k)
{
    return k == WC_LOC_MEMFD ? "memfd" : k == WC_LOC_CUDA_VMM ? "cuda_vmm" : "cuda_ipc";
}

typedef struct loaded {
    wc_client_tensor **ts, **ts2;
    size_t n, n2;
} loaded;

/* open + get of every tensor of one file on c, then the same get again;
 * prints its line and returns the first get's bytes, *ms the open + get */
static uint64_t load_one(wc_client *c, const char *mode, const char *path, int device, double connect_s,
                         loaded *l, double *ms)
{
    wc_err e = {0};
    double t1 = now();
    wc_client_model m;
    die(wc_client_open(c, path, &m, &e), &e, "open");
    double t2 = now();
    die(get_all(c, m.id, device, &l->ts, &l->n, &e), &e, "get");
    double t3 = now();
    die(get_all(c, m.id, device, &l->ts2, &l->n2, &e), &e, "second get");
    double t4 = now();
    uint64_t bytes = 0;
    for (size_t i = 0; i < l->n; i++) bytes += l->ts[i]->size + l->ts[i]->n_scales * 4;
    double total = connect_s + (t3 - t1);
    printf("daemon_%s model=%s tp=%u/%u tensors=%zu bytes=%llu kind=%s total_ms=%.3f connect_ms=%.3f open_ms=%.3f "
           "get_ms=%.3f get_again_ms=%.3f imports_ms=%.3f GBps=%.1f\n",
           mode, path, tp_size > 1 ? tp_rank : 0, tp_size > 1 ? tp_size : 1, l->n, (unsigned long long)bytes, l->n ? kind_name(l->ts[0]->location) : "none",
           total * 1e3, connect_s * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (t4 - t3) * 1e3,
           ((t3 - t2) - (t4 - t3)) * 1e3, bytes / total / 1e9);
    *ms = (t3 - t1) * 1e3;
    return bytes;
}

/* Every file in turn on one connection, each file's tensors held until all
 * are mapped (a model of several .wcodec files, loaded whole); with more
 * than one file, a last line for the whole model. */
static int bench_load(const char *mode, const char *sock, char **paths, int n_paths, int device)
{
    wc_err e = {0};
    double t0 = now();
    wc_client *c;
    die(wc_client_connect(&c, sock, &e), &e, "connect");
    double connect_s = now() - t0, ms = 0, all_ms = 0;
    uint64_t bytes = 0;
    size_t tensors = 0;
    loaded *l = calloc((size_t)n_paths, sizeof *l);
    if (!l) die(WC_ENOMEM, &e, "calloc");
    for (int i = 0; i < n_paths; i++) {
        bytes += load_one(c, mode, paths[i], device, i ? 0 : connect_s, &l[i], &ms);
        all_ms += ms;
        tensors += l[i].n;
    }
    /* the whole model mapped: connect, and each file's open and first get
     * (the second gets, this program's split of the imports, not counted) */
    double total_s = connect_s + all_ms / 1e3;
    if (n_paths > 1)
        printf("daemon_%s_all files=%d tensors=%zu bytes=%llu total_ms=%.1f with_second_gets_ms=%.1f GBps=%.1f\n",
               mode, n_paths, tensors, (unsigned long long)bytes, total_s * 1e3, (now() - t0) * 1e3,
               bytes / total_s / 1e9);
    for (int i = 0; i < n_paths; i++) {
        die(wc_client_release(c, l[i].ts2, l[i].n2, &e), &e, "release");
        die(wc_client_release(c, l[i].ts, l[i].n, &e), &e, "release");
        wc_client_tensors_free(l[i].ts);
        wc_client_tensors_free(l[i].ts2);
    }
    free(l);
    wc_client_stats s;
    die(wc_client_stats_get(c, &s, &e), &e, "stats");
    printf("daemon_stats rss_MB=%.1f cached_MB=%.1f decodes=%llu hits=%llu\n", s.rss_bytes / 1048576.0,
           s.cached_bytes / 1048576.0, (unsigned long long)s.decodes, (unsigned long long)s.hits);
    wc_client_close(c);
    return 0;
}

static void single_loop(wc_client *c, uint64_t model, const char *name, int iters, int device, const char *mode,
                        uint64_t bytes)
{
    wc_err e = {0};
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.device = device;
    double *t = malloc(sizeof *t * (size_t)iters);
    wc_location_kind kind = 0;
    for (int k = -1; k < iters; k++) {
        wc_client_tensor **ts;
        size_t nt;
        double a = now();
        die(wc_client_get2(c, model, WC_SELECT_NAMES, &name, 1, &o, &ts, &nt, &e), &e, "get");
        double b = now();
        if (k >= 0) t[k] = b - a; /* the first decodes it, if needed */
        kind = ts[0]->location;
        die(wc_client_release(c, ts, nt, &e), &e, "release");
        wc_client_tensors_free(ts);
    }
    qsort(t, (size_t)iters, sizeof *t, cmpd);
    printf("daemon_single mode=%s tensor=%s bytes=%llu kind=%s iters=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n", mode,
           name, (unsigned long long)bytes, kind_name(kind), iters, t[iters / 2] * 1e6, t[(int)(iters * 0.99)] * 1e6,
           t[iters - 1] * 1e6);
    free(t);
}

static int bench_single(const char *sock, const char *path, int iters, int device)
{
    wc_err e = {0};
    wc_client *c;
    die(wc_client_connect(&c, sock, &e), &e, "connect");
    wc_client_model m;
    die(wc_client_open(c, path, &m, &e), &e, "open");
    wc_client_tensor_info *in;
    size_t n;
    die(wc_client_list(c, m.id, NULL, &in, &n, &e), &e, "list");
    size_t big = 0;
    for (size_t i = 1; i < n; i++)
        if (in[i].out_bytes > in[big].out_bytes) big = i;
    wc_client_tensor **all;
    size_t n_all;
    die(get_all(c, m.id, device, &all, &n_all, &e), &e, "get all");
    single_loop(c, m.id, in[big].name, iters, device, "model_held", in[big].out_bytes);
    die(wc_client_release(c, all, n_all, &e), &e, "release");
    wc_client_tensors_free(all);
    single_loop(c, m.id, in[big].name, iters / 4 > 0 ? iters / 4 : 1, device, "nothing_held", in[big].out_bytes);
    wc_client_list_free(in, n);
    wc_client_close(c);
    return 0;
}

static bool is_number(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: bench_daemon_gpu cold|warm [-t RANK/SIZE] SOCKET MODEL.wcodec... [DEVICE]\n"
               "       bench_daemon_gpu single SOCKET MODEL.wcodec ITERS [DEVICE]\n"
               "Times a whole model (one or several files) or one tensor mapped from wcodecd's GPU backend\n"
               "(see the file's head).\n");
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: bench_daemon_gpu cold|warm|single SOCKET MODEL.wcodec... [ITERS] [DEVICE]\n");
        return 2;
    }
    /* -t RANK/SIZE after the mode: shards */
    if (argc > 3 && !strcmp(argv[2], "-t")) {
        if (sscanf(argv[3], "%u/%u", &tp_rank, &tp_size) != 2 || tp_rank >= tp_size) {
            fprintf(stderr, "bench_daemon_gpu: -t RANK/SIZE, RANK < SIZE\n");
            return 2;
        }
        argv[3] = argv[1], argv += 2, argc -= 2;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: bench_daemon_gpu cold|warm [-t RANK/SIZE] SOCKET MODEL.wcodec... [DEVICE]\n");
        return 2;
    }
    bool single = !strcmp(argv[1], "single");
    int n_files = argc - 3, dev = 0;
    if (single) {
        dev = argc > 5 ? atoi(argv[5]) : 0;
    } else if (n_files > 1 && is_number(argv[argc - 1])) {
        dev = atoi(argv[argc - 1]);
        n_files--;
    }
    if (cudaSetDevice(dev) != cudaSuccess || cudaFree(0) != cudaSuccess) {
        fprintf(stderr, "bench_daemon_gpu: no CUDA context on device %d\n", dev);
        return 1;
    }
    if (!strcmp(argv[1], "cold") || !strcmp(argv[1], "warm"))
        return bench_load(argv[1], argv[2], argv + 3, n_files, dev);
    if (single && argc > 4)
        return bench_single(argv[2], argv[3], atoi(argv[4]), dev);
    fprintf(stderr, "bench_daemon_gpu: unknown mode %s\n", argv[1]);
    return 2;
}
