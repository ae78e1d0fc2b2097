/* GPU backend: one pool per CUDA device, its tensors in device arenas that
 * clients import (docs/PROTOCOL.md, "Device memory").
 *
 * Each device has one warm decoder (wc_gpu: context, streams, pinned ring,
 * io threads), made at start, before READY=1. A decoder serves one call at a
 * time, so the device's batches queue here and run one after another on a
 * libuv pool thread, each through the whole file-to-GPU pipeline: the
 * tensors a request misses are read, copied and decoded together, straight
 * into their ranges of the arena.
 *
 * An arena is one physical allocation: cuMemCreate with a POSIX-fd
 * shareable handle (exported once, kept, and passed to each connection
 * once), or with [gpu] ipc = legacy cuMemAlloc and a CUDA IPC handle. A
 * device whose context meets a sticky error is marked failed; requests
 * then go to the other devices or the host. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wcodec/wcodec_gpu.h>

#include "gpu_share.h"
#include "wcd.h"

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

typedef struct gpu_batch gpu_batch;

/* A legacy arena whose last tensor went: freed a while later (see
 * gpu_block_free). */
typedef struct late_free {
    wcg_arena *a;
    uint64_t due_ms;
    struct late_free *next;
} late_free;

#define LEGACY_FREE_DELAY_MS 2000

typedef struct gpu_dev {
    wc_gpu *dec;
    bool legacy;
    gpu_batch *head, *tail;  /* queued; head runs when running */
    bool running;
    late_free *late;         /* legacy arenas waiting to be freed, oldest first */
    late_free **late_tail;
    uv_timer_t late_timer;
    bool timer_on;
} gpu_dev;

struct gpu_batch {
    uv_work_t w;
    wcd_pool *p;
    wcd_model *m;
    wcd_entry **es;
    uint32_t n;
    int status;
    bool device_failed;
    wc_err err;
    gpu_batch *next;
};

static void gpu_layout(const wcd_pool *p, const wc_tensor_info *ti, wcd_place *pl)
{
    (void)p;
    pl->offset = 0;
    pl->length = ti->out_bytes;
    pl->scales_offset = ALIGN_UP(ti->out_bytes, 256);
    pl->n_scales = ti->n_scales;
    uint64_t end = pl->scales_offset + ti->n_scales * sizeof(float);
    pl->span = ALIGN_UP(end ? end : 1, 256);
}

static int gpu_block_new(wcd_pool *p, wcd_block *b, uint64_t size, const wcd_entry *first, wc_err *err)
{
    (void)first;
    gpu_dev *d = p->priv;
    wcg_arena *a = calloc(1, sizeof *a);
    if (!a) return wc_fail(err, WC_ENOMEM, "%s: out of memory", b->model->label);
    int r = d->legacy ? wcg_arena_create_legacy(a, p->ordinal, size, b->ipc_handle, err)
                      : wcg_arena_create(a, p->ordinal, size, err);
    if (!r && !d->legacy && (r = wcg_arena_export(a, &b->fd, err))) wcg_arena_destroy(a);
    if (r) {
        free(a);
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err->msg);
        return wc_fail(err, r, "%s: an arena of %llu bytes on %s: %s", b->model->label, (unsigned long long)size,
                       p->name, m);
    }
    b->size = a->size;
    b->priv = a;
    wcd_log(WCD_LOG_DEBUG, "%s: arena of %llu MiB for %s", p->name, (unsigned long long)(a->size >> 20),
            b->model->label);
    return 0;
}

static void free_due(uv_timer_t *t)
{
    gpu_dev *d = t->data;
    uint64_t now = uv_now(t->loop);
    while (d->late && d->late->due_ms <= now) {
        late_free *l = d->late;
        d->late = l->next;
        wcg_arena_destroy(l->a);
        free(l->a);
        free(l);
    }
    if (!d->late) {
        d->late_tail = &d->late;
        uv_timer_stop(t);
    }
}

static void gpu_block_free(wcd_pool *p, wcd_block *b)
{
    gpu_dev *d = p->priv;
    if (b->fd >= 0) close(b->fd);
    b->fd = -1;
    wcg_arena *a = b->priv;
    b->priv = NULL;
    late_free *l = d->legacy && d->timer_on ? malloc(sizeof *l) : NULL;
    if (!l) {
        wcg_arena_destroy(a);
        free(a);
        return;
    }
    /* A client closes a legacy handle when the reply to its last release
     * arrives, after the daemon has handled that release; freeing memory
     * whose IPC handle another process still has open is undefined in
     * CUDA. So the arena goes a while later (VMM memory lives while any
     * process holds it: no wait there). */
    *l = (late_free){a, uv_now(p->cache->loop) + LEGACY_FREE_DELAY_MS, NULL};
    *d->late_tail = l;
    d->late_tail = &l->next;
    uv_timer_start(&d->late_timer, free_due, LEGACY_FREE_DELAY_MS, LEGACY_FREE_DELAY_MS / 4);
}

/* Where an entry goes in its arena. */
static void entry_dst(const wcd_entry *e, void **out, float **scales)
{
    const wcg_arena *a = e->block->priv;
    char *base = (char *)(uintptr_t)a->base;
    /* A tensor of no bytes is decoded by nothing: its out stays NULL. */
    *out = e->at.length ? base + e->at.offset : NULL;
    *scales = e->at.n_scales ? (float *)(base + e->at.scales_offset) : NULL;
}

/* The batch's tensors whole: the file-to-GPU pipeline. */
static int decode_whole(gpu_dev *d, gpu_batch *bt, size_t n)
{
    wc_gpu_dst *dst = calloc(n ? n : 1, sizeof *dst);
    if (!dst) return wc_fail(&bt->err, WC_ENOMEM, "%s: out of memory", bt->m->label);
    for (uint32_t i = 0; i < bt->n; i++) {
        const wcd_entry *e = bt->es[i];
        wc_gpu_dst *t = &dst[e->index];
        entry_dst(e, &t->out, &t->scales);
        t->out_size = e->at.length;
        t->n_scales = e->at.n_scales;
    }
    int r = wc_gpu_decode_file(d->dec, bt->m->f, dst, &bt->err);
    free(dst);
    return r;
}

/* The batch's shards (those the layout replicates whole among them): the
 * same pipeline, reading only the tiles each shard needs. */
static int decode_shards(gpu_dev *d, gpu_batch *bt, size_t n)
{
    wc_gpu_shard_dst *dst = calloc(n ? n : 1, sizeof *dst);
    if (!dst) return wc_fail(&bt->err, WC_ENOMEM, "%s: out of memory", bt->m->label);
    for (uint32_t i = 0; i < bt->n; i++) {
        const wcd_entry *e = bt->es[i];
        wc_gpu_shard_dst *t = &dst[e->index];
        entry_dst(e, &t->out, &t->scales);
        t->out_size = e->at.length;
        t->n_scales = e->at.n_scales;
        t->dim = e->count > 1 ? e->dim : 0;
        t->rank = e->rank;
        t->n_shards = e->count;
    }
    int r = wc_gpu_decode_file_shards(d->dec, bt->m->f, dst, &bt->err);
    free(dst);
    return r;
}

/* On a pool thread: the batch through the device's pipeline. */
static void work_decode(uv_work_t *w)
{
    gpu_batch *bt = w->data;
    wcd_pool *p = bt->p;
    gpu_dev *d = p->priv;
    size_t n = wc_file_tensor_count(bt->m->f);
    bt->status = bt->es[0]->view->count > 1 ? decode_shards(d, bt, n) : decode_whole(d, bt, n);
    /* A decode allocates the records' heads (scales, tables, tile index:
     * 13 MB for a 7B model) on this pool thread, whose malloc arena keeps
     * them once freed: the daemon grew by that much for each pool thread a
     * cold load ran on (H200, 2026-12-03: 390 -> 455 MB over six). */
    malloc_trim(0);
    /* A sticky error ends the device for this process: told by its context. */
    wc_err e2;
    if (bt->status == WC_ECUDA && wcg_device_check(p->ordinal, &e2)) bt->device_failed = true;
}

static void run_next(gpu_dev *d);

static void after_decode(uv_work_t *w, int status)
{
    gpu_batch *bt = w->data;
    wcd_pool *p = bt->p;
    gpu_dev *d = p->priv;
    int r = status == UV_ECANCELED ? WC_ECANCELED : bt->status;
    d->head = bt->next;
    if (!d->head) d->tail = NULL;
    d->running = false;
    if (bt->device_failed) wcd_pool_fail(p, "%s", bt->err.msg);
    char msg[sizeof bt->err.msg + sizeof p->name + 8];
    if (r) snprintf(msg, sizeof msg, "%s (on %s)", bt->err.msg, p->name);
    for (uint32_t i = 0; i < bt->n; i++) wcd_cache_decoded(bt->es[i], r, r ? msg : NULL);
    free(bt->es);
    free(bt);
    run_next(d);
}

static void run_next(gpu_dev *d)
{
    if (d->running || !d->head) return;
    d->running = true;
    /* Fails only without a work callback. */
    uv_queue_work(d->head->p->cache->loop, &d->head->w, work_decode, after_decode);
}

static int gpu_submit(wcd_pool *p, wcd_model *m, wcd_entry **es, uint32_t n, wc_err *err)
{
    gpu_dev *d = p->priv;
    gpu_batch *bt = calloc(1, sizeof *bt);
    if (bt) bt->es = malloc(n * sizeof *es);
    if (!bt || !bt->es) {
        free(bt);
        return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
    }
    memcpy(bt->es, es, n * sizeof *es);
    bt->n = n;
    bt->p = p;
    bt->m = m;
    bt->w.data = bt;
    for (uint32_t i = 0; i < n; i++) es[i]->work = bt;
    if (d->tail) d->tail->next = bt;
    else d->head = bt;
    d->tail = bt;
    run_next(d);
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void gpu_close(wcd_pool *p)
{
    gpu_dev *d = p->priv;
    free(p);
    if (!d) return;
    wc_gpu_destroy(d->dec);
    /* At the daemon's end: the clients' handles go with it. */
    for (late_free *l = d->late, *next; l; l = next) {
        next = l->next;
        wcg_arena_destroy(l->a);
        free(l->a);
        free(l);
    }
    if (!d->timer_on) {
        free(d);
        return;
    }
    d->late_timer.data = d;
    uv_close((uv_handle_t *)&d->late_timer, timer_closed);
}

static const wcd_backend backend_vmm = {
    .name = "cuda-vmm",
    .kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM,
    .shared_blocks = true,
    .layout = gpu_layout,
    .block_new = gpu_block_new,
    .block_free = gpu_block_free,
    .submit = gpu_submit,
    .close = gpu_close,
};

static const wcd_backend backend_legacy = {
    .name = "cuda-ipc",
    .kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC,
    .shared_blocks = true,
    .layout = gpu_layout,
    .block_new = gpu_block_new,
    .block_free = gpu_block_free,
    .submit = gpu_submit,
    .close = gpu_close,
};

int wcd_gpu_count(int *n, wc_err *err)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d) return wc_fail(err, WC_ENODEV, "%s", wcg_cudrv_reason());
    CUresult r = d->DeviceGetCount(n);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetCount");
    if (!*n) return wc_fail(err, WC_ENODEV, "the CUDA driver sees no device");
    return 0;
}

int wcd_gpu_uuid(int ordinal, unsigned char uuid[16], wc_err *err)
{
    char name[64];
    size_t total;
    return wcg_device_describe(ordinal, uuid, name, sizeof name, &total, err);
}

/* The decoder of a GPU pool already open: a new one reads through its io
 * threads (one pool of read threads for every GPU, issue 22), or NULL. */
static wc_gpu *io_donor(const wcd_cache *c)
{
    for (unsigned i = 0; i < c->n_pools; i++) {
        const wcd_pool *p = c->pools[i];
        if (p->be == &backend_vmm || p->be == &backend_legacy) return ((const gpu_dev *)p->priv)->dec;
    }
    return NULL;
}

int wcd_gpu_pool_open(wcd_cache *c, int ordinal, const wcd_config *cfg, wcd_pool **out, wc_err *err)
{
    wcd_pool *p = calloc(1, sizeof *p);
    gpu_dev *d = calloc(1, sizeof *d);
    if (!p || !d) {
        free(p);
        free(d);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    char name[64] = "";
    size_t total = 0;
    int r = wcg_device_describe(ordinal, p->uuid, name, sizeof name, &total, err);
    /* The warm state: context, streams, pinned ring and io threads now,
     * not at the first request; the io threads are the first GPU's, shared
     * by every GPU after it. */
    wc_gpu_opts o;
    wc_gpu_opts_default(&o);
    o.device = ordinal;
    o.require_gpu = true;
    if (!r) r = wc_gpu_create_sharing(&d->dec, &o, io_donor(c), err);
    if (r) {
        free(p);
        free(d);
        return r;
    }
    d->legacy = cfg->gpu_ipc == WCD_IPC_LEGACY;
    d->late_tail = &d->late;
    if (d->legacy && !uv_timer_init(c->loop, &d->late_timer)) {
        d->late_timer.data = d;
        d->timer_on = true;
    }
    p->be = d->legacy ? &backend_legacy : &backend_vmm;
    p->priv = d;
    p->is_gpu = true;
    p->ordinal = ordinal;
    p->budget = cfg->gpu_budget ? cfg->gpu_budget : (uint64_t)total / 100 * cfg->gpu_budget_pct;
    snprintf(p->name, sizeof p->name, "GPU %d (%.50s, GPU-%02x%02x%02x%02x-%02x%02x)", ordinal, name, p->uuid[0],
             p->uuid[1], p->uuid[2], p->uuid[3], p->uuid[4], p->uuid[5]);
    *out = p;
    return 0;
}

void wcd_gpu_pool_meminfo(wcd_pool *p, uint64_t *total, uint64_t *free_b)
{
    size_t f = 0, t = 0;
    wc_err e;
    *total = *free_b = 0;
    if (p->failed || wcg_device_meminfo(p->ordinal, &f, &t, &e)) return;
    *total = t;
    *free_b = f;
}
