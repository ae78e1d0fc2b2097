/* libwcodec-client: the connection's device allocations; see arenas.h. */
#include "arenas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wc_fail.h"

void wcc_arenas_init(wcc_arenas *t, const wcc_import_ops *ops)
{
    memset(t, 0, sizeof *t);
    t->ops = ops;
}

static void drop(wcc_arenas *t, size_t i)
{
    wcc_arena *a = t->v[i];
    if (!a->why.code && t->ops) {
        t->ops->unmap(t->ops->ctx, a);
        t->unmaps++;
    }
    free(a);
    t->v[i] = t->v[--t->n];
}

void wcc_arenas_fini(wcc_arenas *t)
{
    while (t->n) drop(t, t->n - 1);
    free(t->v);
    t->v = NULL;
    t->cap = 0;
}

static wcc_arena *find(const wcc_arenas *t, uint64_t id, size_t *at)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i]->id == id) {
            if (at) *at = i;
            return t->v[i];
        }
    return NULL;
}

const wcc_arena *wcc_arenas_find(const wcc_arenas *t, uint64_t id) { return find(t, id, NULL); }

bool wcc_loc_counts(const Wcodec__V1__Location *l, uint64_t *arena_id)
{
    if (!l || (l->kind != WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM &&
               l->kind != WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC))
        return false;
    *arena_id = l->allocation_id;
    return true;
}

static void set_failed(wcc_arena *a, int code, const char *why)
{
    wc_fail(&a->why, code, "allocation %llu: %s", (unsigned long long)a->id, why);
}

/* What is wrong with an allocation as the daemon sent it, or NULL. */
static const char *bad_allocation(const Wcodec__V1__Allocation *m, const int *fds, uint32_t nfds)
{
    bool vmm = m->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
    if (!vmm && m->kind != WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC) return "its kind is not a device allocation";
    if (m->device_uuid.len != 16) return "its device UUID is not 16 bytes";
    if (!m->size || m->size > SIZE_MAX) return "its size is 0 or too large";
    if (vmm && (m->fd_index >= nfds || fds[m->fd_index] < 0)) return "its descriptor is missing from the frame";
    if (!vmm && m->ipc_handle.len != WCC_IPC_HANDLE_BYTES) return "its legacy handle is not 64 bytes";
    return NULL;
}

/* Checks what the daemon says of the allocation, then imports it. */
static void import(wcc_arenas *t, wcc_arena *a, const Wcodec__V1__Allocation *m, const int *fds, uint32_t nfds,
                   bool may_import)
{
    bool vmm = m->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
    a->kind = vmm ? WC_LOC_CUDA_VMM : WC_LOC_CUDA_IPC;
    a->size = m->size;
    if (m->device_uuid.len == 16) memcpy(a->uuid, m->device_uuid.data, 16);
    const char *bad = bad_allocation(m, fds, nfds);
    if (bad) {
        set_failed(a, WC_EPROTO, bad);
    } else if (!t->ops) {
        set_failed(a, WC_EUNSUPPORTED, "device memory, and this libwcodec-client was built without CUDA");
    } else if (!may_import) {
        set_failed(a, WC_EPROTO, "wcodecd sent device memory to a request for host memory");
    } else {
        wc_err e = {0};
        int rc = t->ops->map(t->ops->ctx, a, vmm ? fds[m->fd_index] : -1, vmm ? NULL : m->ipc_handle.data, &e);
        if (rc) {
            wc_fail(&a->why, rc, "allocation %llu (%llu bytes): import: %s", (unsigned long long)a->id,
                    (unsigned long long)a->size, e.msg);
        } else {
            t->imports++;
        }
    }
}

/* The entry for id, made (not yet imported) when missing; NULL when out
 * of memory. */
static wcc_arena *entry(wcc_arenas *t, uint64_t id, bool *made)
{
    wcc_arena *a = find(t, id, NULL);
    *made = false;
    if (a) return a;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        wcc_arena **v = realloc(t->v, cap * sizeof *v);
        if (!v) return NULL;
        t->v = v;
        t->cap = cap;
    }
    if (!(a = calloc(1, sizeof *a))) return NULL;
    a->id = id;
    a->device = -1;
    t->v[t->n++] = a;
    *made = true;
    return a;
}

void wcc_arenas_get_frame(wcc_arenas *t, const Wcodec__V1__GetTensorsReply *g, const int *fds, uint32_t nfds,
                          bool may_import)
{
    /* Listed again while still held (the daemon should not): the mapping
     * we have stays, the frame's descriptor is closed with the frame. */
    for (size_t i = 0; i < g->n_allocation; i++) {
        bool made;
        wcc_arena *a = entry(t, g->allocation[i]->id, &made);
        if (a && made) import(t, a, g->allocation[i], fds, nfds, may_import);
    }
    for (size_t i = 0; i < g->n_tensor; i++) {
        uint64_t id;
        if (!wcc_loc_counts(g->tensor[i]->location, &id)) continue;
        bool made;
        wcc_arena *a = entry(t, id, &made);
        /* Out of memory here loses the count: the tensor then fails at
         * locate (no entry), and its release finds nothing to decrement. */
        if (!a) continue;
        if (made) set_failed(a, WC_EPROTO, "a tensor lies in it but wcodecd never sent it");
        a->leases++;
    }
}

void wcc_arenas_released(wcc_arenas *t, const uint64_t *arena_ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t at;
        wcc_arena *a = find(t, arena_ids[i], &at);
        if (!a || !a->leases) continue;
        if (--a->leases == 0) drop(t, at);
    }
}

int wcc_arenas_locate(const wcc_arenas *t, const Wcodec__V1__Tensor *tensor, wcc_place *out, wc_err *err)
{
    const Wcodec__V1__Location *l = tensor->location;
    const char *name = tensor->info && tensor->info->name ? tensor->info->name : "?";
    uint64_t id;
    if (!tensor->info || !wcc_loc_counts(l, &id))
        return wc_fail(err, WC_EPROTO, "get: tensor %s: not a device tensor", name);
    const wcc_arena *a = find(t, id, NULL);
    if (!a) return wc_fail(err, WC_ENOMEM, "get: tensor %s: out of memory tracking allocation %llu", name,
                           (unsigned long long)id);
    if (a->why.code) return wc_fail(err, a->why.code, "get: tensor %s: %s", name, a->why.msg);
    uint64_t sz = a->size;
    bool kind_ok = (l->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM) == (a->kind == WC_LOC_CUDA_VMM);
    if (!kind_ok || l->device_uuid.len != 16 || memcmp(l->device_uuid.data, a->uuid, 16))
        return wc_fail(err, WC_EPROTO, "get: tensor %s: its kind or device differs from allocation %llu's", name,
                       (unsigned long long)id);
    if (l->offset > sz || l->length > sz - l->offset || l->length != tensor->info->out_bytes ||
        l->n_scales != tensor->info->n_scales ||
        (l->n_scales && (l->scales_offset % sizeof(float) || l->scales_offset > sz ||
                         l->n_scales > (sz - l->scales_offset) / sizeof(float))))
        return wc_fail(err, WC_EPROTO,
                       "get: tensor %s: location (offset %llu, %llu bytes, scales at %llu, %llu) out of bounds "
                       "of allocation %llu (%llu bytes) or unlike its info",
                       name, (unsigned long long)l->offset, (unsigned long long)l->length,
                       (unsigned long long)l->scales_offset, (unsigned long long)l->n_scales,
                       (unsigned long long)id, (unsigned long long)sz);
    out->data = a->base + l->offset;
    out->scales = l->n_scales ? a->base + l->scales_offset : 0;
    out->device = a->device;
    memcpy(out->uuid, a->uuid, 16);
    return 0;
}
