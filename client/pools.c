/* libwcodec-client: the daemon's memory pools and device arenas, from its
 * StatsReply (wc_client_pools_get). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wcodec/wcodec_client.h>

#include "client_int.h"

static void pool_from(wc_client_pool *d, const Wcodec__V1__DeviceStats *s)
{
    if (s->uuid.len == 16) memcpy(d->uuid, s->uuid.data, 16);
    snprintf(d->name, sizeof d->name, "%s", s->name);
    d->kind = (wc_location_kind)s->kind;
    d->failed = s->failed;
    snprintf(d->status, sizeof d->status, "%s", s->status);
    d->budget_bytes = s->budget_bytes;
    d->used_bytes = s->used_bytes;
    d->tensor_bytes = s->tensor_bytes;
    d->leased_bytes = s->leased_bytes;
    d->cached_tensors = s->cached_tensors;
    d->leased_tensors = s->leased_tensors;
    d->arenas = s->arenas;
    d->decodes = s->decodes;
    d->evictions = s->evictions;
    d->total_bytes = s->total_bytes;
    d->free_bytes = s->free_bytes;
}

static void arena_from(wc_client_arena *d, const Wcodec__V1__ArenaStats *s)
{
    d->id = s->id;
    if (s->device_uuid.len == 16) memcpy(d->device_uuid, s->device_uuid.data, 16);
    d->model_id = s->model_id;
    d->size = s->size;
    d->used_bytes = s->used_bytes;
    d->tensors = s->tensors;
    d->leased_tensors = s->leased_tensors;
}

int wc_client_pools_get(wc_client *c, wc_client_pools **out, wc_err *err)
{
    *out = NULL;
    Wcodec__V1__Stats st = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &st;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "stats", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_STATS, "stats", err);
    if (r) return r;
    const Wcodec__V1__StatsReply *s = f[0].r->stats;
    wc_client_pools *p = calloc(1, sizeof *p);
    if (p) {
        p->pools = calloc(s->n_devices ? s->n_devices : 1, sizeof *p->pools);
        p->arenas = calloc(s->n_arenas ? s->n_arenas : 1, sizeof *p->arenas);
    }
    if (!p || !p->pools || !p->arenas) {
        wc_client_pools_free(p);
        wcc_frames_free(f, n);
        return wc_fail(err, WC_ENOMEM, "stats: out of memory");
    }
    snprintf(p->backend, sizeof p->backend, "%s", s->backend);
    for (size_t i = 0; i < s->n_devices; i++) pool_from(&p->pools[i], s->devices[i]);
    for (size_t i = 0; i < s->n_arenas; i++) arena_from(&p->arenas[i], s->arenas[i]);
    p->n_pools = s->n_devices;
    p->n_arenas = s->n_arenas;
    wcc_frames_free(f, n);
    *out = p;
    return 0;
}

void wc_client_pools_free(wc_client_pools *p)
{
    if (!p) return;
    free(p->pools);
    free(p->arenas);
    free(p);
}
