/* Host side of the GPU decoder: device selection and CPU fallback, the
 * pinned ring and its pread threads, streams, descriptors for the kernels,
 * and the checks of what the kernels report (include/wcodec/wcodec_gpu.h).
 *
 * Pipeline, per batch k (ring slot k % slots):
 *   wait until the slot's last batch has finished on the device;
 *   plan which tensors (or tile ranges of a tensor) fit the slot;
 *   build the kernels' descriptors (tables expanded, tile list, row maps,
 *   scales) in the slot's pinned descriptor area;
 *   io threads pread the tile streams into the slot's pinned data area;
 *   copy stream: descriptors + data H2D (raw tensors straight to the caller);
 *   compute stream waits for the copy, decodes, predicts finished tensors,
 *   copies the per-job error words back, records the slot's `done` event.
 * The host prepares batch k+1 while the device copies and decodes batch k. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cuda_runtime_api.h>
#include <xxhash.h>

#include "wcodec/wcodec_gpu.h"
#include "kernels.cuh"
#include "reader.h"
#include "rans.h"

#define MiB (1024ull * 1024)
#define RING_MAX (512 * MiB)
#define IO_CHUNK (4 * MiB)
#define MAX_SLOTS 16

static uint64_t a16(uint64_t n) { return (n + 15) & ~(uint64_t)15; }

static int cuda_fail(wc_err *err, cudaError_t e, const char *what)
{
    int code = e == cudaErrorMemoryAllocation ? WC_ENOMEM : WC_ECUDA;
    (void)cudaGetLastError(); /* reported here: not left for a later call to find */
    return wc_fail(err, code, "CUDA: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define CK(call, what)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            r = cuda_fail(err, e_, what);                                                          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- io thread pool ---- */

typedef struct io_task {
    int kind;                /* 0: read into dst, 1: check the record hash */
    uint64_t off, len;       /* file range */
    uint8_t *dst;
    uint64_t hash;
    size_t tensor;
    int result;              /* 0, or a WC_E* code */
    int sys_errno;
} io_task;

typedef struct io_pool {
    pthread_t *th;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned gen;
    int quit, active;
    io_task *tasks;
    size_t n_tasks;
    atomic_size_t next;
    int fd;                  /* -1: copy from the map instead */
    const uint8_t *map;
} io_pool;

/* XXH3 of a record read through the map, chunk by chunk, each chunk's pages
 * dropped from this process after use (the page cache keeps them), so that
 * the resident set stays bounded whatever the file size. */
static int hash_record(const uint8_t *map, uint64_t off, uint64_t len, uint64_t want)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) return WC_ENOMEM;
    XXH3_64bits_reset(st);
    for (uint64_t a = 0; a < len; a += IO_CHUNK) {
        uint64_t l = len - a < IO_CHUNK ? len - a : IO_CHUNK;
        XXH3_64bits_update(st, map + off + a, l);
        uintptr_t p0 = (uintptr_t)(map + off + a) & ~(uintptr_t)4095;
        uintptr_t p1 = (uintptr_t)(map + off + a + l) & ~(uintptr_t)4095;
        if (p1 > p0) madvise((void *)p0, p1 - p0, MADV_DONTNEED);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h != want ? WC_ECHECKSUM : 0;
}

static void io_do(io_pool *p, io_task *t)
{
    if (t->kind == 1) {
        t->result = hash_record(p->map, t->off, t->len, t->hash);
        return;
    }
    if (p->fd < 0) {
        memcpy(t->dst, p->map + t->off, t->len);
        return;
    }
    uint64_t done = 0;
    while (done < t->len) {
        ssize_t k = pread(p->fd, t->dst + done, t->len - done, (off_t)(t->off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            t->result = WC_EIO;
            t->sys_errno = k < 0 ? errno : 0;
            return;
        }
        done += (uint64_t)k;
    }
}

static void io_drain(io_pool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_tasks) return;
        io_do(p, &p->tasks[i]);
    }
}

static void *io_worker(void *arg)
{
    io_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        io_drain(p);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Runs the tasks on the workers and the calling thread; returns when all are done. */
static void io_run(io_pool *p, io_task *tasks, size_t n)
{
    p->tasks = tasks;
    p->n_tasks = n;
    atomic_store(&p->next, 0);
    pthread_mutex_lock(&p->mu);
    p->active = p->n;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    io_drain(p);
    pthread_mutex_lock(&p->mu);
    while (p->active) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void io_stop(io_pool *p)
{
    if (!p->th) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    p->th = NULL;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
}

static int io_start(io_pool *p, int n)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)(n > 0 ? n : 1), sizeof *p->th);
    if (!p->th) return WC_ENOMEM;
    for (p->n = 0; p->n < n; p->n++)
        if (pthread_create(&p->th[p->n], NULL, io_worker, p)) break;
    return 0;
}

/* ---- the decoder ---- */

typedef struct slot {
    uint8_t *h_data, *h_desc;     /* pinned */
    uint8_t *d_data, *d_desc;
    cudaStream_t copy;
    cudaEvent_t copied, done;
    int in_use;                   /* a batch was queued and not yet checked */
    /* what the batch's error words refer to */
    uint64_t errs_off;
    uint32_t n_jobs;
    size_t *job_tensor;
    size_t job_cap;
} slot;

struct wc_gpu {
    wc_gpu_opts o;
    wc_backend backend;
    int device;
    char reason[512];
    int max_smem;
    cudaStream_t compute;
    int n_slots;
    uint64_t data_cap, desc_cap;
    slot slots[MAX_SLOTS];
    io_pool io;
};

void wc_gpu_opts_default(wc_gpu_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = -1;
    o->ring_bytes = 256 * MiB;
    o->ring_slots = 4;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->io_threads = n < 1 ? 1 : n > 8 ? 8 : (int)n;
    o->verify_checksums = true;
}

wc_backend wc_gpu_backend(const wc_gpu *g) { return g->backend; }
const char *wc_gpu_fallback_reason(const wc_gpu *g) { return g->reason; }
int wc_gpu_device(const wc_gpu *g) { return g->backend == WC_BACKEND_CUDA ? g->device : -1; }
void *wc_gpu_stream(const wc_gpu *g) { return g->compute; }

static void free_device_side(wc_gpu *g)
{
    for (int s = 0; s < MAX_SLOTS; s++) {
        slot *sl = &g->slots[s];
        if (sl->copy) cudaStreamSynchronize(sl->copy);
        if (sl->h_data) cudaFreeHost(sl->h_data);
        if (sl->h_desc) cudaFreeHost(sl->h_desc);
        if (sl->d_data) cudaFree(sl->d_data);
        if (sl->d_desc) cudaFree(sl->d_desc);
        if (sl->copy) cudaStreamDestroy(sl->copy);
        if (sl->copied) cudaEventDestroy(sl->copied);
        if (sl->done) cudaEventDestroy(sl->done);
        free(sl->job_tensor);
        memset(sl, 0, sizeof *sl);
    }
    if (g->compute) {
        cudaStreamSynchronize(g->compute);
        cudaStreamDestroy(g->compute);
        g->compute = NULL;
    }
}

void wc_gpu_destroy(wc_gpu *g)
{
    if (!g) return;
    io_stop(&g->io);
    if (g->backend == WC_BACKEND_CUDA) free_device_side(g);
    free(g);
}

/* Chooses the device; on failure fills g->reason and returns WC_ENODEV. */
static int pick_device(wc_gpu *g)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(g->reason, sizeof g->reason, "no usable CUDA driver or device: %s (%s)",
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return WC_ENODEV;
    }
    if (n == 0) {
        snprintf(g->reason, sizeof g->reason, "no CUDA device");
        return WC_ENODEV;
    }
    int dev = g->o.device;
    if (dev >= n) {
        snprintf(g->reason, sizeof g->reason, "CUDA device %d asked for, %d present", dev, n);
        return WC_ENODEV;
    }
    if (dev < 0) {
        size_t best = 0;
        dev = 0;
        for (int d = 0; d < n && n > 1; d++) {
            size_t fr = 0, tot = 0;
            if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr > best)
                best = fr, dev = d;
            cudaGetLastError();
        }
    }
    struct cudaDeviceProp p;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess) {
        snprintf(g->reason, sizeof g->reason, "CUDA device %d: %s", dev, cudaGetErrorString(e));
        cudaGetLastError();
        return WC_ENODEV;
    }
    if (p.major < 9) {
        snprintf(g->reason, sizeof g->reason,
                 "CUDA device %d (%s) has compute capability %d.%d; this build has kernels for 9.0 and newer",
                 dev, p.name, p.major, p.minor);
        return WC_ENODEV;
    }
    g->device = dev;
    g->max_smem = (int)p.sharedMemPerBlockOptin;
    return 0;
}

int wc_gpu_create(wc_gpu **out, const wc_gpu_opts *opts, wc_err *err)
{
    *out = NULL;
    wc_gpu *g = calloc(1, sizeof *g);
    if (!g) return wc_fail(err, WC_ENOMEM, "out of memory");
    if (opts) g->o = *opts;
    else wc_gpu_opts_default(&g->o);
    g->device = -1;
    int r = 0;
    if (g->o.ring_slots < 2) g->o.ring_slots = 2;
    if (g->o.ring_slots > MAX_SLOTS) g->o.ring_slots = MAX_SLOTS;
    if (g->o.ring_bytes == 0) g->o.ring_bytes = 256 * MiB;
    if (g->o.ring_bytes > RING_MAX) g->o.ring_bytes = RING_MAX;
    if (g->o.io_threads < 1) g->o.io_threads = 1;
    if (g->o.io_threads > 64) g->o.io_threads = 64;

    if (g->o.force_cpu) {
        snprintf(g->reason, sizeof g->reason, "the CPU decoder was asked for (force_cpu)");
    } else if (pick_device(g) == 0) {
        g->backend = WC_BACKEND_CUDA;
    }
    if (g->backend != WC_BACKEND_CUDA) {
        if (g->o.require_gpu && !g->o.force_cpu) {
            r = wc_fail(err, WC_ENODEV, "GPU decoder: %s", g->reason);
            free(g);
            return r;
        }
        g->backend = WC_BACKEND_CPU;
        *out = g;
        return 0;
    }

    int ke = wc_gpu_decode_setup(g->max_smem);
    if (ke) {
        r = cuda_fail(err, (cudaError_t)ke, "setting up the decode kernels");
        goto fail;
    }
    g->n_slots = g->o.ring_slots;
    uint64_t per = g->o.ring_bytes / (uint64_t)g->n_slots;
    if (per < 8 * MiB) per = 8 * MiB;
    g->desc_cap = a16(per / 8);
    g->data_cap = (per - g->desc_cap) & ~(uint64_t)15;
    CK(cudaStreamCreateWithFlags(&g->compute, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int s = 0; s < g->n_slots; s++) {
        slot *sl = &g->slots[s];
        CK(cudaStreamCreateWithFlags(&sl->copy, cudaStreamNonBlocking), "cudaStreamCreate");
        CK(cudaEventCreateWithFlags(&sl->copied, cudaEventDisableTiming), "cudaEventCreate");
        CK(cudaEventCreateWithFlags(&sl->done, cudaEventDisableTiming), "cudaEventCreate");
        CK(cudaHostAlloc((void **)&sl->h_data, g->data_cap, cudaHostAllocDefault), "cudaHostAlloc (pinned ring)");
        CK(cudaHostAlloc((void **)&sl->h_desc, g->desc_cap, cudaHostAllocDefault), "cudaHostAlloc (pinned ring)");
        CK(cudaMalloc((void **)&sl->d_data, g->data_cap), "cudaMalloc (device staging)");
        CK(cudaMalloc((void **)&sl->d_desc, g->desc_cap), "cudaMalloc (device staging)");
    }
    if (io_start(&g->io, g->o.io_threads - 1)) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    *out = g;
    return 0;
fail:
    if (r == WC_ENOMEM && err)
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                 " (ring of %zu bytes in %d slots on device %d)", g->o.ring_bytes, g->n_slots, g->device);
    io_stop(&g->io);
    free_device_side(g);
    free(g);
    return r;
}

/* ---- per-tensor preparation (host checks of the record's head) ---- */

typedef struct treq {
    size_t idx;
    const wc_entry *e;
    const uint8_t *rec;       /* mapped */
    wc_gpu_dst dst;
    int coded, has_pred, any_tx, general;
    int packed;               /* one table, packed layout (kernels.cuh) */
    uint64_t stream_bytes;
    uint64_t scales_size;
} treq;

static int check_dst(const wc_file *f, const wc_entry *e, const wc_gpu_dst *d, wc_err *err)
{
    const uint64_t need = wc_entry_out_bytes(e);
    if (d->out_size < need)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': output buffer of %zu bytes, needs %llu",
                       wc_file_label(f), e->name, d->out_size, (unsigned long long)need);
    if (d->scales && (e->flags & WC_ENTRY_HAS_SCALES) && d->n_scales < e->rows)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': room for %zu scales, needs %llu",
                       wc_file_label(f), e->name, d->n_scales, (unsigned long long)e->rows);
    return 0;
}

/* Checks the index, row map and tables of a coded tensor (the kernels trust them). */
static int prep_tensor(const wc_file *f, treq *t, wc_err *err)
{
    const wc_entry *e = t->e;
    const char *label = wc_file_label(f);
    t->coded = e->coding == WC_CODING_RANS_I8;
    if (!t->coded) return 0;
    const uint8_t *rec = t->rec;
    t->stream_bytes = e->size - e->tiles_off;
    t->scales_size = e->flags & WC_ENTRY_HAS_SCALES ? 4 * e->rows : 0;
    t->general = e->tile_rows > 1 && e->tile_cols < e->cols;
    if ((e->offset + e->tiles_off) & 3)
        return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': tile streams at offset %llu are not 4-byte aligned",
                       label, e->name, (unsigned long long)(e->offset + e->tiles_off));
    if (e->n_tables > 1) {
        const uint8_t *map = rec + t->scales_size;
        for (uint64_t r = 0; r < e->rows; r++)
            if (map[r] >= e->n_tables)
                return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': row %llu maps to table %u of %u (offset %llu)",
                               label, e->name, (unsigned long long)r, map[r], e->n_tables,
                               (unsigned long long)(e->offset + t->scales_size + r));
    }
    if (e->n_tables == 1) {
        wc_rans_table tab;
        size_t used;
        if (wc_rans_table_read(rec + e->tables_off, e->index_off - e->tables_off, e->prob_bits, &tab, &used))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': frequency table 0 at offset %llu is invalid", label,
                           e->name, (unsigned long long)(e->offset + e->tables_off));
        t->packed = 1;
        for (int s = 0; s < 256; s++) t->packed &= tab.freq[s] <= 4096;
    }
    for (uint32_t k = 0; k < e->n_tiles; k++) {
        const uint8_t *ent = rec + e->index_off + (uint64_t)WC_TILE_ENTRY * k;
        uint64_t begin = wc_rd32(ent);
        uint64_t end = k + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : t->stream_bytes;
        uint32_t mode = ent[4];
        if ((mode & 15) > 4 || (mode >> 4) > 2 || ent[5] || ent[6] || ent[7] || (e->version < 2 && mode))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u (index entry at offset %llu): unknown mode %u or "
                           "reserved bytes set",
                           label, e->name, k, (unsigned long long)(e->offset + e->index_off + 8ull * k), mode);
        if (end < begin || end > t->stream_bytes || (begin & 3))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': tile %u stream at offsets [%llu, %llu) is out of bounds",
                           label, e->name, k, (unsigned long long)(e->offset + e->tiles_off + begin),
                           (unsigned long long)(e->offset + e->tiles_off + end));
        if (mode & 15) t->has_pred = 1;
        if (mode >> 4) t->any_tx = 1;
    }
    return 0;
}

/* Bytes of the tensor's expanded tables (kernels.cuh). */
static uint64_t tables_bytes(const treq *t)
{
    const wc_entry *e = t->e;
    return t->packed ? WC_GPU_PACKED_BYTES(e->prob_bits) : (uint64_t)e->n_tables * WC_GPU_TABLE_BYTES(e->prob_bits);
}

/* Expands the tensor's tables into dst (tables_bytes(t) bytes). */
static int expand_tables(const wc_file *f, const treq *t, uint8_t *dst, wc_err *err)
{
    const wc_entry *e = t->e;
    uint64_t pos = e->tables_off;
    const uint32_t tb = WC_GPU_TABLE_BYTES(e->prob_bits);
    for (uint32_t k = 0; k < e->n_tables; k++) {
        wc_rans_table tab;
        size_t used;
        if (wc_rans_table_read(t->rec + pos, e->index_off - pos, e->prob_bits, &tab, &used))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': frequency table %u at offset %llu is invalid",
                           wc_file_label(f), e->name, k, (unsigned long long)(e->offset + pos));
        if (t->packed) {
            wc_rans_dec_table *dt = malloc(sizeof *dt);
            if (!dt) return wc_fail(err, WC_ENOMEM, "out of memory");
            wc_rans_dec_table_init(dt, &tab);
            memcpy(dst, dt->slot_dec, WC_GPU_PACKED_BYTES(e->prob_bits));
            free(dt);
            return 0;
        }
        uint8_t *d = dst + (uint64_t)k * tb;
        uint32_t fc[256];
        for (int s = 0; s < 256; s++) {
            fc[s] = tab.freq[s] | (uint32_t)tab.cum[s] << 16;
            memset(d + 1024 + tab.cum[s], s, tab.freq[s]);
        }
        memcpy(d, fc, sizeof fc);
        pos += used;
    }
    return 0;
}

/* ---- batches: pieces of tensors and their descriptors ---- */

typedef struct piece {
    size_t t;                 /* index into the request array */
    uint32_t t0, t1;          /* coded: tiles [t0, t1) */
    uint64_t b0, b1;          /* coded: stream bytes [b0, b1) rel. tiles_off; raw: record bytes */
    uint64_t data_off;        /* in the data area */
    int first, last;
} piece;

static uint64_t tile_begin(const treq *t, uint32_t k)
{
    if (k >= t->e->n_tiles) return t->stream_bytes;
    return wc_rd32(t->rec + t->e->index_off + (uint64_t)WC_TILE_ENTRY * k);
}

/* Fixed descriptor bytes of a coded piece of n tiles. */
static uint64_t piece_desc(const treq *t, uint32_t n, int first, int last)
{
    const wc_entry *e = t->e;
    uint64_t np = (n + WC_GPU_WARPS - 1) / WC_GPU_WARPS * WC_GPU_WARPS;
    uint64_t d = sizeof(wc_gpu_job) + 8 + 4 * (np / WC_GPU_WARPS) + (sizeof(wc_gpu_tile) + 1) * np + 112; /* a16 slack of the 7 shared regions */
    d += a16(tables_bytes(t));
    if (e->n_tables > 1) d += a16(e->rows);
    if (first && t->scales_size) d += a16(t->scales_size);
    if (last && t->has_pred) d += a16(e->n_tiles) + sizeof(wc_gpu_pred_job);
    return d;
}

typedef struct cursor {
    size_t t;                 /* request */
    uint64_t at;              /* coded: next tile; raw: next byte */
} cursor;

/* Fills pieces for one batch from the cursor within the data and descriptor
 * budgets. Returns the number of pieces, or a negative WC_E* code. */
static long plan_batch(const treq *rq, size_t n_rq, cursor *c, uint64_t data_cap, uint64_t desc_cap,
                       piece **pp, size_t *cap, const wc_file *f, wc_err *err)
{
    uint64_t data = 0, desc = 0;
    long n = 0;
    while (c->t < n_rq) {
        const treq *t = &rq[c->t];
        const wc_entry *e = t->e;
        piece p = {.t = c->t, .first = c->at == 0};
        p.data_off = a16(data);
        if (!t->coded) {
            uint64_t total = e->size;
            if (total == 0) {
                c->t++, c->at = 0;
                continue;
            }
            if (p.data_off + 16 > data_cap) break;
            uint64_t take = total - c->at;
            if (take > data_cap - p.data_off) take = (data_cap - p.data_off) & ~(uint64_t)15;
            if (!take) break;
            p.b0 = c->at;
            p.b1 = c->at + take;
            data = p.data_off + take;
            c->at += take;
            p.last = c->at == total;
            if (p.last) c->t++, c->at = 0;
        } else {
            uint32_t t0 = (uint32_t)c->at, t1 = t0;
            uint64_t b0 = tile_begin(t, t0);
            while (t1 < e->n_tiles) {
                uint64_t b1 = tile_begin(t, t1 + 1);
                int last = t1 + 1 == e->n_tiles;
                if (p.data_off + (b1 - b0) > data_cap ||
                    desc + piece_desc(t, t1 + 1 - t0, p.first, last) > desc_cap)
                    break;
                t1++;
            }
            if (t1 == t0) {
                if (n == 0)
                    return wc_fail(err, WC_EINVAL,
                                   "%s: tensor '%s': tile %u does not fit the GPU decoder's ring (%llu data "
                                   "bytes, %llu descriptor bytes per slot); give it a larger ring_bytes",
                                   wc_file_label(f), e->name, t0, (unsigned long long)data_cap,
                                   (unsigned long long)desc_cap);
                break;
            }
            p.t0 = t0, p.t1 = t1;
            p.b0 = b0, p.b1 = tile_begin(t, t1);
            p.last = t1 == e->n_tiles;
            data = p.data_off + (p.b1 - p.b0);
            desc += piece_desc(t, t1 - t0, p.first, p.last);
            c->at = t1;
            if (p.last) c->t++, c->at = 0;
        }
        if ((size_t)n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            piece *np = realloc(*pp, nc * sizeof *np);
            if (!np) return wc_fail(err, WC_ENOMEM, "out of memory");
            *pp = np, *cap = nc;
        }
        (*pp)[n++] = p;
    }
    return n;
}

/* Where things went in a descriptor area. */
typedef struct layout {
    uint64_t jobs, errs, block_job, tiles, modes, end;
    uint32_t n_jobs, n_blocks, smem, multi, general;
    /* the prediction jobs (pieces that end a tensor with prediction): one launch */
    uint64_t preds, max_chains;
    uint32_t n_preds;
} layout;

/* Writes the descriptors of the coded pieces into desc (cap bytes). `src_base`
 * gives each piece's stream offset: the stream of tile k lies at
 * src_base[piece] + begin(k) in the data area. */
static int build_desc(wc_gpu *g, const wc_file *f, const treq *rq, const piece *ps, size_t np,
                      const uint64_t *src_base, uint8_t *desc, uint64_t cap, layout *L,
                      size_t **job_tensor, size_t *job_cap, wc_err *err)
{
    uint32_t nj = 0, nb = 0, npred = 0;
    for (size_t i = 0; i < np; i++) {
        if (!rq[ps[i].t].coded) continue;
        nj++;
        nb += (ps[i].t1 - ps[i].t0 + WC_GPU_WARPS - 1) / WC_GPU_WARPS;
        npred += ps[i].last && rq[ps[i].t].has_pred;
    }
    memset(L, 0, sizeof *L);
    L->n_jobs = nj, L->n_blocks = nb;
    if (*job_cap < nj + 1) {
        size_t *nt = realloc(*job_tensor, (nj + 1) * sizeof *nt);
        if (!nt) return wc_fail(err, WC_ENOMEM, "out of memory");
        *job_tensor = nt;
        *job_cap = nj + 1;
    }
    uint64_t o = 0;
    L->jobs = o, o = a16(o + (uint64_t)nj * sizeof(wc_gpu_job));
    L->errs = o, o = a16(o + 8ull * nj);
    L->block_job = o, o = a16(o + 4ull * nb);
    L->tiles = o, o = a16(o + sizeof(wc_gpu_tile) * (uint64_t)nb * WC_GPU_WARPS);
    L->modes = o, o = a16(o + (uint64_t)nb * WC_GPU_WARPS);
    L->preds = o, o = a16(o + (uint64_t)npred * sizeof(wc_gpu_pred_job));
    if (o > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
    wc_gpu_job *jobs = (wc_gpu_job *)(desc + L->jobs);
    uint32_t *bj = (uint32_t *)(desc + L->block_job);
    wc_gpu_tile *tiles = (wc_gpu_tile *)(desc + L->tiles);
    uint8_t *modes = desc + L->modes;
    memset(desc + L->errs, 0xff, 8ull * nj);
    uint32_t j = 0, b = 0;
    int r;
    for (size_t i = 0; i < np; i++) {
        const piece *p = &ps[i];
        const treq *t = &rq[p->t];
        if (!t->coded) continue;
        const wc_entry *e = t->e;
        wc_gpu_job *jb = &jobs[j];
        memset(jb, 0, sizeof *jb);
        jb->out = t->dst.out;
        jb->rows = e->rows, jb->cols = e->cols;
        jb->tile_rows = e->tile_rows, jb->tile_cols = e->tile_cols, jb->tiles_across = e->tiles_across;
        jb->prob_bits = e->prob_bits, jb->n_tables = e->n_tables, jb->any_tx = (uint32_t)t->any_tx;
        jb->packed = (uint32_t)t->packed;
        const uint64_t tsz = tables_bytes(t);
        if (o + a16(tsz) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
        jb->tables_off = o;
        if ((r = expand_tables(f, t, desc + o, err))) return r;
        o = a16(o + tsz);
        if (tsz > L->smem) L->smem = (uint32_t)tsz;
        jb->rowmap_off = WC_GPU_NO_ROWMAP;
        if (e->n_tables > 1) {
            if (o + a16(e->rows) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            memcpy(desc + o, t->rec + t->scales_size, e->rows);
            jb->rowmap_off = o;
            o = a16(o + e->rows);
            L->multi = 1;
        }
        jb->scales_src = WC_GPU_NO_SCALES;
        if (p->first && t->scales_size && t->dst.scales) {
            if (o + a16(t->scales_size) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            memcpy(desc + o, t->rec, t->scales_size);
            jb->scales_src = o;
            jb->scales_dst = t->dst.scales;
            o = a16(o + t->scales_size);
        }
        if (p->last && t->has_pred) {
            if (o + a16(e->n_tiles) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            for (uint32_t k = 0; k < e->n_tiles; k++)
                desc[o + k] = t->rec[e->index_off + (uint64_t)WC_TILE_ENTRY * k + 4];
            const uint64_t D = e->top_distance ? e->top_distance : 1;
            ((wc_gpu_pred_job *)(desc + L->preds))[L->n_preds++] = (wc_gpu_pred_job){
                .q = t->dst.out,
                .modes_off = o,
                .rows = e->rows,
                .cols = e->cols,
                .tile_rows = e->tile_rows,
                .tile_cols = e->tile_cols,
                .tiles_across = e->tiles_across,
                .top_distance = (uint32_t)D,
            };
            const uint64_t chains = D < e->rows ? D : e->rows;
            if (chains > L->max_chains) L->max_chains = chains;
            o = a16(o + e->n_tiles);
        }
        if (t->general) L->general = 1;
        (*job_tensor)[j] = p->t;
        const uint32_t cnt = p->t1 - p->t0;
        const uint32_t blocks = (cnt + WC_GPU_WARPS - 1) / WC_GPU_WARPS;
        for (uint32_t k = 0; k < blocks; k++) bj[b + k] = j | (k == 0 ? 1u << 31 : 0);
        for (uint32_t k = 0; k < blocks * WC_GPU_WARPS; k++) {
            wc_gpu_tile *tl = &tiles[(uint64_t)b * WC_GPU_WARPS + k];
            uint8_t *md = &modes[(uint64_t)b * WC_GPU_WARPS + k];
            if (k < cnt) {
                const uint32_t tn = p->t0 + k;
                const uint64_t beg = tile_begin(t, tn), end = tile_begin(t, tn + 1);
                tl->src = src_base[i] + beg;
                tl->len = (uint32_t)(end - beg > UINT32_MAX ? UINT32_MAX : end - beg);
                tl->tile = tn;
                *md = t->rec[e->index_off + (uint64_t)WC_TILE_ENTRY * tn + 4];
            } else {
                tl->src = 0, tl->len = 0, tl->tile = WC_GPU_TILE_PAD;
                *md = 0;
            }
        }
        b += blocks;
        j++;
    }
    L->end = o;
    if (L->smem > (uint32_t)g->max_smem - WC_GPU_STATIC_SMEM - 1024) L->smem = 0; /* tables from global memory */
    return 0;
}

static wc_gpu_launch make_launch(const layout *L, const uint8_t *d_desc, const uint8_t *d_data)
{
    wc_gpu_launch l;
    memset(&l, 0, sizeof l);
    l.jobs = (const wc_gpu_job *)(d_desc + L->jobs);
    l.tiles = (const wc_gpu_tile *)(d_desc + L->tiles);
    l.modes = d_desc + L->modes;
    l.block_job = (const uint32_t *)(d_desc + L->block_job);
    l.data = d_data;
    l.desc = d_desc;
    l.errs = (unsigned long long *)(d_desc + L->errs);
    l.n_blocks = L->n_blocks;
    l.smem_bytes = L->smem;
    l.multi_table = (int)L->multi;
    l.general_tiles = (int)L->general;
    return l;
}

/* Launches the predictions of the jobs whose tensor ends in this launch. */
static int launch_preds(wc_gpu *g, const layout *L, const uint8_t *d_desc, wc_err *err)
{
    if (!L->n_preds) return 0;
    int ce = wc_gpu_launch_predict((const wc_gpu_pred_job *)(d_desc + L->preds), L->n_preds, L->max_chains, d_desc,
                                   g->compute);
    return ce ? cuda_fail(err, (cudaError_t)ce, "prediction kernel launch") : 0;
}

/* Turns the error words of a finished launch into the first error. */
static int check_errs(const wc_file *f, const treq *rq, const unsigned long long *errs, uint32_t n_jobs,
                      const size_t *job_tensor, wc_err *err)
{
    for (uint32_t j = 0; j < n_jobs; j++) {
        if (errs[j] == ~0ull) continue;
        const treq *t = &rq[job_tensor[j]];
        const wc_entry *e = t->e;
        uint32_t tile = (uint32_t)(errs[j] >> 8);
        uint64_t tr = tile / e->tiles_across, tc = tile % e->tiles_across;
        return wc_fail(err, WC_ECORRUPT,
                       "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails its rANS "
                       "end-state check (found on the GPU)",
                       wc_file_label(f), e->name, tile, (unsigned long long)(tr * e->tile_rows),
                       (unsigned long long)(tc * e->tile_cols),
                       (unsigned long long)(e->offset + e->tiles_off + tile_begin(t, tile)));
    }
    return 0;
}

/* Prepares the requests: dst checks and record head checks. */
static int prep_all(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, treq **out,
                    wc_err *err)
{
    treq *rq = calloc(n ? n : 1, sizeof *rq);
    if (!rq) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    for (size_t k = 0; k < n && !r; k++) {
        rq[k].idx = which[k];
        rq[k].e = wc_file_entry(f, which[k]);
        rq[k].rec = wc_file_base(f) + rq[k].e->offset;
        rq[k].dst = dst[k];
        if (!(r = check_dst(f, rq[k].e, &dst[k], err))) r = prep_tensor(f, &rq[k], err);
    }
    if (r) {
        free(rq);
        return r;
    }
    *out = rq;
    return 0;
}

static int retire_slot(wc_gpu *g, slot *sl, const wc_file *f, const treq *rq, wc_err *err)
{
    if (!sl->in_use) return 0;
    sl->in_use = 0;
    cudaError_t e = cudaEventSynchronize(sl->done);
    if (e != cudaSuccess) return cuda_fail(err, e, "decoding a batch");
    (void)g;
    return check_errs(f, rq, (const unsigned long long *)(sl->h_desc + sl->errs_off), sl->n_jobs,
                      sl->job_tensor, err);
}

static int run_pipeline(wc_gpu *g, const wc_file *f, treq *rq, size_t n_rq, wc_err *err)
{
    int r = 0;
    piece *ps = NULL;
    size_t ps_cap = 0;
    io_task *tasks = NULL;
    size_t task_cap = 0;
    uint64_t *src_base = NULL;
    layout L = {0};
    cursor c = {0, 0};
    uint64_t batch = 0;
    io_pool *io = &g->io;
    io->map = wc_file_base(f);
    io->fd = open(wc_file_label(f), O_RDONLY | O_CLOEXEC);  /* else: copy from the map */

    while (c.t < n_rq) {
        slot *sl = &g->slots[batch % (uint64_t)g->n_slots];
        if ((r = retire_slot(g, sl, f, rq, err))) goto out;
        long np = plan_batch(rq, n_rq, &c, g->data_cap, g->desc_cap, &ps, &ps_cap, f, err);
        if (np < 0) {
            r = (int)np;
            goto out;
        }
        if (np == 0) break;
        /* io tasks */
        size_t nt = 0;
        uint64_t data_used = 0;
        free(src_base);
        src_base = malloc((size_t)np * sizeof *src_base);
        if (!src_base) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        /* each record's checksum, on the io threads beside the reads of the
         * batch that holds its first piece: checked before it is decoded */
        for (long i = 0; i < np && g->o.verify_checksums; i++) {
            if (!ps[i].first) continue;
            if (nt == task_cap) {
                size_t ncap = task_cap ? 2 * task_cap : 256;
                io_task *nt2 = realloc(tasks, ncap * sizeof *nt2);
                if (!nt2) {
                    r = wc_fail(err, WC_ENOMEM, "out of memory");
                    goto out;
                }
                tasks = nt2, task_cap = ncap;
            }
            const wc_entry *e = rq[ps[i].t].e;
            tasks[nt++] = (io_task){.kind = 1, .off = e->offset, .len = e->size, .hash = e->hash, .tensor = ps[i].t};
        }
        for (long i = 0; i < np; i++) {
            const piece *p = &ps[i];
            const treq *t = &rq[p->t];
            uint64_t foff = t->coded ? t->e->offset + t->e->tiles_off + p->b0 : t->e->offset + p->b0;
            uint64_t len = p->b1 - p->b0;
            src_base[i] = p->data_off - p->b0;
            if (p->data_off + len > data_used) data_used = p->data_off + len;
            for (uint64_t a = 0; a < len; a += IO_CHUNK) {
                if (nt == task_cap) {
                    size_t ncap = task_cap ? 2 * task_cap : 256;
                    io_task *nt2 = realloc(tasks, ncap * sizeof *nt2);
                    if (!nt2) {
                        r = wc_fail(err, WC_ENOMEM, "out of memory");
                        goto out;
                    }
                    tasks = nt2, task_cap = ncap;
                }
                uint64_t l = len - a < IO_CHUNK ? len - a : IO_CHUNK;
                tasks[nt++] = (io_task){.kind = 0, .off = foff + a, .len = l, .dst = sl->h_data + p->data_off + a};
            }
        }
        if ((r = build_desc(g, f, rq, ps, (size_t)np, src_base, sl->h_desc, g->desc_cap, &L, &sl->job_tensor,
                            &sl->job_cap, err)))
            goto out;
        io_run(io, tasks, nt);
        for (size_t k = 0; k < nt; k++)
            if (tasks[k].result && tasks[k].kind == 1) {
                const wc_entry *e = rq[tasks[k].tensor].e;
                r = wc_fail(err, tasks[k].result, "%s: tensor '%s': checksum mismatch over its record [%llu, %llu)",
                            wc_file_label(f), e->name, (unsigned long long)e->offset,
                            (unsigned long long)(e->offset + e->size));
                goto out;
            } else if (tasks[k].result) {
                r = wc_fail(err, WC_EIO, "%s: read of %llu bytes at offset %llu failed: %s", wc_file_label(f),
                            (unsigned long long)tasks[k].len, (unsigned long long)tasks[k].off,
                            tasks[k].sys_errno ? strerror(tasks[k].sys_errno) : "unexpected end of file");
                goto out;
            }
        /* copies */
        if (L.end) CK(cudaMemcpyAsync(sl->d_desc, sl->h_desc, L.end, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (descriptors)");
        for (long i = 0; i < np; i++) {
            const piece *p = &ps[i];
            const treq *t = &rq[p->t];
            uint64_t len = p->b1 - p->b0;
            if (t->coded) continue;
            CK(cudaMemcpyAsync((uint8_t *)t->dst.out + p->b0, sl->h_data + p->data_off, len, cudaMemcpyHostToDevice,
                               sl->copy), "cudaMemcpyAsync (raw tensor)");
        }
        if (L.n_jobs && data_used)
            CK(cudaMemcpyAsync(sl->d_data, sl->h_data, data_used, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (tile streams)");
        CK(cudaEventRecord(sl->copied, sl->copy), "cudaEventRecord");
        CK(cudaStreamWaitEvent(g->compute, sl->copied, 0), "cudaStreamWaitEvent");
        if (L.n_jobs) {
            wc_gpu_launch l = make_launch(&L, sl->d_desc, sl->d_data);
            int ce = wc_gpu_launch_decode(&l, g->compute);
            if (ce) {
                r = cuda_fail(err, (cudaError_t)ce, "decode kernel launch");
                goto fail;
            }
            if ((r = launch_preds(g, &L, sl->d_desc, err))) goto fail;
            CK(cudaMemcpyAsync(sl->h_desc + L.errs, sl->d_desc + L.errs, 8ull * L.n_jobs, cudaMemcpyDeviceToHost,
                               g->compute), "cudaMemcpyAsync (error words)");
        }
        CK(cudaEventRecord(sl->done, g->compute), "cudaEventRecord");
        sl->in_use = 1;
        sl->errs_off = L.errs;
        sl->n_jobs = L.n_jobs;
        batch++;
    }
    for (int s = 0; s < g->n_slots; s++) {
        int r2 = retire_slot(g, &g->slots[s], f, rq, err);
        if (r2 && !r) r = r2;
    }
    goto out;
fail:
out:
    /* leave nothing in flight that uses the ring */
    for (int s = 0; s < g->n_slots; s++) {
        cudaStreamSynchronize(g->slots[s].copy);
        g->slots[s].in_use = 0;
    }
    cudaStreamSynchronize(g->compute);
    if (io->fd >= 0) close(io->fd);
    io->fd = -1;
    free(ps);
    free(tasks);
    free(src_base);
    return r;
}

static int check_device_ptr(const void *p, const char *what, wc_err *err)
{
    struct cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return wc_fail(err, WC_EINVAL, "GPU decoder: %s %p is not CUDA memory (%s)", what, p, cudaGetErrorString(e));
    }
    if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
        return wc_fail(err, WC_EINVAL, "GPU decoder: %s %p is not device memory", what, p);
    return 0;
}

static int decode_some(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n,
                       wc_err *err)
{
    int r;
    if (g->backend == WC_BACKEND_CPU) {
        for (size_t k = 0; k < n; k++)
            if ((r = wc_decode_tensor(f, which[k], dst[k].out, dst[k].out_size, dst[k].scales, dst[k].n_scales, err)))
                return r;
        return 0;
    }
    cudaError_t e = cudaSetDevice(g->device);
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaSetDevice");
    for (size_t k = 0; k < n; k++) {
        if (dst[k].out_size && (r = check_device_ptr(dst[k].out, "output", err))) return r;
        if (dst[k].scales && (r = check_device_ptr(dst[k].scales, "scales", err))) return r;
    }
    treq *rq;
    if ((r = prep_all(f, dst, which, n, &rq, err))) return r;
    r = run_pipeline(g, f, rq, n, err);
    free(rq);
    return r;
}

int wc_gpu_decode_tensor(wc_gpu *g, const wc_file *f, size_t i, void *out, size_t out_size, float *scales,
                         size_t n_scales, wc_err *err)
{
    if (i >= wc_file_tensor_count(f)) return wc_fail(err, WC_EINVAL, "%s: no tensor %zu", wc_file_label(f), i);
    wc_gpu_dst d = {out, out_size, scales, n_scales};
    return decode_some(g, f, &d, &i, 1, err);
}

int wc_gpu_decode_file(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_err *err)
{
    size_t n = wc_file_tensor_count(f), m = 0;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    wc_gpu_dst *d = malloc((n ? n : 1) * sizeof *d);
    int r = 0;
    if (!which || !d) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (dst[i].out) which[m] = i, d[m++] = dst[i];
    r = decode_some(g, f, d, which, m, err);
out:
    free(which);
    free(d);
    return r;
}

/* ---- resident: the whole file on the device ---- */

struct wc_gpu_resident {
    wc_gpu *g;
    const wc_file *f;
    treq *rq;
    size_t n_rq;
    uint8_t *d_file, *d_desc, *h_desc;
    layout L;
    size_t *job_tensor;
    size_t job_cap;
};

void wc_gpu_resident_destroy(wc_gpu_resident *r)
{
    if (!r) return;
    if (r->g && r->g->compute) cudaStreamSynchronize(r->g->compute);
    if (r->d_file) cudaFree(r->d_file);
    if (r->d_desc) cudaFree(r->d_desc);
    free(r->h_desc);
    free(r->rq);
    free(r->job_tensor);
    free(r);
}

int wc_gpu_resident_create(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_gpu_resident **out, wc_err *err)
{
    return wc_gpu_resident_create_sets(g, f, dst, 1, out, err);
}

int wc_gpu_resident_create_sets(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, size_t n_sets,
                                wc_gpu_resident **out, wc_err *err)
{
    *out = NULL;
    if (g->backend != WC_BACKEND_CUDA)
        return wc_fail(err, WC_ENODEV, "GPU decoder: resident decode needs a CUDA device (%s)", g->reason);
    int r = 0;
    size_t n = wc_file_tensor_count(f) * n_sets, m = 0;
    piece *ps = NULL;
    uint64_t *src_base = NULL;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    wc_gpu_dst *d = malloc((n ? n : 1) * sizeof *d);
    wc_gpu_resident *R = calloc(1, sizeof *R);
    if (!which || !d || !R) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    R->g = g, R->f = f;
    for (size_t i = 0; i < n; i++)
        if (dst[i].out) which[m] = i % wc_file_tensor_count(f), d[m++] = dst[i];
    CK(cudaSetDevice(g->device), "cudaSetDevice");
    if ((r = prep_all(f, d, which, m, &R->rq, err))) goto fail;
    R->n_rq = m;
    if (g->o.verify_checksums)
        for (size_t k = 0; k < m && k < wc_file_tensor_count(f); k++) {
            const wc_entry *e = R->rq[k].e;
            if (wc_hash_differs(e->hash, R->rq[k].rec, e->size)) {
                r = wc_fail(err, WC_ECHECKSUM, "%s: tensor '%s': checksum mismatch over its record [%llu, %llu)",
                            wc_file_label(f), e->name, (unsigned long long)e->offset,
                            (unsigned long long)(e->offset + e->size));
                goto fail;
            }
        }
    ps = calloc(m ? m : 1, sizeof *ps);
    src_base = calloc(m ? m : 1, sizeof *src_base);
    if (!ps || !src_base) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    uint64_t cap = 4096;
    for (size_t k = 0; k < m; k++) {
        const treq *t = &R->rq[k];
        ps[k] = (piece){.t = k, .first = 1, .last = 1};
        if (t->coded) {
            ps[k].t0 = 0, ps[k].t1 = t->e->n_tiles;
            src_base[k] = t->e->offset + t->e->tiles_off;
            cap += piece_desc(t, t->e->n_tiles, 1, 1);
        }
    }
    R->h_desc = malloc(cap);
    if (!R->h_desc) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    if ((r = build_desc(g, f, R->rq, ps, m, src_base, R->h_desc, cap, &R->L, &R->job_tensor, &R->job_cap, err)))
        goto fail;
    CK(cudaMalloc((void **)&R->d_file, wc_file_size(f) ? wc_file_size(f) : 1), "cudaMalloc (compressed file)");
    CK(cudaMalloc((void **)&R->d_desc, R->L.end ? R->L.end : 16), "cudaMalloc (descriptors)");
    CK(cudaMemcpy(R->d_file, wc_file_base(f), wc_file_size(f), cudaMemcpyHostToDevice), "cudaMemcpy (compressed file)");
    CK(cudaMemcpy(R->d_desc, R->h_desc, R->L.end, cudaMemcpyHostToDevice), "cudaMemcpy (descriptors)");
    free(which);
    free(d);
    free(ps);
    free(src_base);
    *out = R;
    return 0;
fail:
    free(which);
    free(d);
    free(ps);
    free(src_base);
    wc_gpu_resident_destroy(R);
    return r;
}

int wc_gpu_resident_run(wc_gpu_resident *R, bool sync, wc_err *err)
{
    wc_gpu *g = R->g;
    int r = 0;
    const layout *L = &R->L;
    CK(cudaMemsetAsync(R->d_desc + L->errs, 0xff, 8ull * L->n_jobs, g->compute), "cudaMemsetAsync");
    for (size_t k = 0; k < R->n_rq; k++) {
        const treq *t = &R->rq[k];
        if (t->coded || !t->e->size) continue;
        CK(cudaMemcpyAsync(t->dst.out, R->d_file + t->e->offset, t->e->size, cudaMemcpyDeviceToDevice, g->compute),
           "cudaMemcpyAsync (raw tensor)");
    }
    wc_gpu_launch l = make_launch(L, R->d_desc, R->d_file);
    int ce = wc_gpu_launch_decode(&l, g->compute);
    if (ce) return cuda_fail(err, (cudaError_t)ce, "decode kernel launch");
    if ((r = launch_preds(g, L, R->d_desc, err))) return r;
    if (!sync) return 0;
    CK(cudaStreamSynchronize(g->compute), "decoding");
    unsigned long long *errs = malloc(8ull * L->n_jobs + 8);
    if (!errs) return wc_fail(err, WC_ENOMEM, "out of memory");
    cudaError_t e = cudaMemcpy(errs, R->d_desc + L->errs, 8ull * L->n_jobs, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) r = cuda_fail(err, e, "cudaMemcpy (error words)");
    else r = check_errs(R->f, R->rq, errs, L->n_jobs, R->job_tensor, err);
    free(errs);
    return r;
fail:
    return r;
}
