/* The Stats request: daemon-wide counters, then one DeviceStats per pool
 * (the host, each GPU) and one ArenaStats per device arena. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "wcd.h"

static void self_usage(uint64_t *rss, uint32_t *fds)
{
    *rss = 0;
    *fds = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size, res;
        if (fscanf(f, "%lu %lu", &size, &res) == 2) *rss = (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (de->d_name[0] != '.') (*fds)++;
        closedir(d);
        (*fds)--;  /* the directory's own */
    }
}

static void fill_device(Wcodec__V1__DeviceStats *d, wcd_pool *p)
{
    wcodec__v1__device_stats__init(d);
    if (p->is_gpu) {
        d->uuid.data = p->uuid;
        d->uuid.len = 16;
        wcd_gpu_pool_meminfo(p, &d->total_bytes, &d->free_bytes);
    }
    d->name = p->name;
    d->kind = p->be->kind;
    d->budget_bytes = p->budget;
    d->used_bytes = p->used;
    d->tensor_bytes = p->tensor_bytes;
    d->cached_tensors = p->n_entries;
    d->leased_bytes = p->leased_bytes;
    d->leased_tensors = p->n_leased;
    d->arenas = p->be->shared_blocks ? p->n_blocks : 0;
    d->decodes = p->decodes;
    d->evictions = p->evictions;
    d->failed = p->failed != NULL;
    d->status = (char *)(p->failed ? p->failed : "");
}

static void fill_arena(Wcodec__V1__ArenaStats *a, const wcd_block *b)
{
    wcodec__v1__arena_stats__init(a);
    a->id = b->id;
    a->device_uuid.data = (uint8_t *)b->pool->uuid;
    a->device_uuid.len = 16;
    a->model_id = b->model->id;
    a->size = b->size;
    a->used_bytes = b->tensor_bytes;
    a->tensors = b->entries;
    a->leased_tensors = b->leased;
}

void wcd_on_stats(wcd_conn *c, uint64_t id)
{
    wcd_ctx *ctx = c->ctx;
    wcd_cache *k = &ctx->cache;
    wcd_cache_totals t;
    wcd_cache_totals_get(k, &t);
    Wcodec__V1__StatsReply s = WCODEC__V1__STATS_REPLY__INIT;
    s.uptime_ms = uv_now(ctx->loop) - ctx->start_ms;
    s.connections = ctx->n_conns;
    s.models = k->n_models;
    s.budget_bytes = t.budget;
    s.cached_bytes = t.used;
    s.cached_tensors = t.n_entries;
    s.leased_bytes = t.leased_bytes;
    s.leased_tensors = t.n_leased;
    s.leases = ctx->total_leases;
    s.decodes = t.decodes;
    s.hits = t.hits;
    s.evictions = t.evictions;
    s.requests = ctx->requests;
    s.errors = ctx->errors;
    s.decodes_in_flight = t.in_flight;
    s.conn_leases = c->live_leases;
    s.queued_bytes = ctx->out_bytes;
    for (wcd_conn *o = ctx->conns; o; o = o->next) s.fds_in_flight += o->fds_unread;
    for (unsigned i = 0; i < ctx->n_linger; i++) s.fds_in_flight += ctx->linger[i].unread;
    s.lingering = ctx->n_linger;
    self_usage(&s.rss_bytes, &s.open_fds);
    s.backend = (char *)wcd_pools_backend(k);

    Wcodec__V1__DeviceStats dev[WCD_MAX_POOLS], *devp[WCD_MAX_POOLS];
    size_t n_arenas = 0;
    for (unsigned i = 0; i < k->n_pools; i++) {
        fill_device(&dev[i], k->pools[i]);
        devp[i] = &dev[i];
        if (k->pools[i]->be->shared_blocks) n_arenas += k->pools[i]->n_blocks;
    }
    s.n_devices = k->n_pools;
    s.devices = devp;
    /* A stats reply stays well under the client's frame cap: list at most
     * 4096 arenas (a model has one or a few per device). */
    if (n_arenas > 4096) n_arenas = 4096;
    Wcodec__V1__ArenaStats *ar = calloc(n_arenas ? n_arenas : 1, sizeof *ar);
    Wcodec__V1__ArenaStats **arp = calloc(n_arenas ? n_arenas : 1, sizeof *arp);
    if (ar && arp) {
        size_t j = 0;
        for (unsigned i = 0; i < k->n_pools; i++)
            for (const wcd_block *b = k->pools[i]->blocks; b && j < n_arenas && b->shared; b = b->next) {
                fill_arena(&ar[j], b);
                arp[j] = &ar[j];
                j++;
            }
        s.n_arenas = j;
        s.arenas = arp;
    }
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_STATS;
    r.stats = &s;
    wcd_conn_send(c, &r, NULL, 0);
    free(ar);
    free(arp);
}
