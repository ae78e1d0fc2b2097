/* libwcodec-client, the requests: open, list, get (and the mapping of what
 * arrives), release, stats, evict and unload, each one round trip of conn.c. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <wcodec/wcodec_client.h>
#include "client_int.h"
#include "device.h"

int wc_client_open(wc_client *c, const char *path, wc_client_model *out, wc_err *err)
{
    Wcodec__V1__OpenModel o = WCODEC__V1__OPEN_MODEL__INIT;
    o.path = (char *)path;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &o;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "open", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_OPEN, "open", err);
    if (r) return r;
    *out = (wc_client_model){.id = f[0].r->open->model_id, .tensor_count = f[0].r->open->tensor_count,
                             .file_bytes = f[0].r->open->file_bytes};
    wcc_frames_free(f, n);
    return 0;
}

static void info_from(wc_client_tensor_info *d, const Wcodec__V1__TensorInfo *s)
{
    d->dtype = (wc_dtype)s->dtype;
    d->out_dtype = (wc_dtype)s->out_dtype;
    d->coding = (wc_coding)s->coding;
    d->ndim = (uint32_t)(s->n_shape > WC_MAX_DIMS ? WC_MAX_DIMS : s->n_shape);
    for (uint32_t i = 0; i < d->ndim; i++) d->shape[i] = s->shape[i];
    d->out_bytes = s->out_bytes;
    d->n_scales = s->n_scales;
    d->stored_bytes = s->stored_bytes;
    d->cached = s->cached;
}

int wc_client_list(wc_client *c, uint64_t model_id, const char *prefix, wc_client_tensor_info **out,
                   size_t *n_out, wc_err *err)
{
    *out = NULL;
    *n_out = 0;
    Wcodec__V1__ListTensors l = WCODEC__V1__LIST_TENSORS__INIT;
    l.model_id = model_id;
    l.prefix = (char *)(prefix ? prefix : "");
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_LIST;
    q.list = &l;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "list", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_LIST, "list", err);
    if (r) return r;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += f[i].r->list->n_tensor;
    wc_client_tensor_info *a = calloc(total ? total : 1, sizeof *a);
    if (!a) {
        wcc_frames_free(f, n);
        return wc_fail(err, WC_ENOMEM, "list: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < f[i].r->list->n_tensor; j++, k++) {
            info_from(&a[k], f[i].r->list->tensor[j]);
            if (!(a[k].name = strdup(f[i].r->list->tensor[j]->name))) {
                wcc_frames_free(f, n);
                wc_client_list_free(a, k);
                return wc_fail(err, WC_ENOMEM, "list: out of memory");
            }
        }
    wcc_frames_free(f, n);
    *out = a;
    *n_out = total;
    return 0;
}

void wc_client_list_free(wc_client_tensor_info *infos, size_t n)
{
    for (size_t i = 0; infos && i < n; i++) free(infos[i].name);
    free(infos);
}

/* Ends leases ids[0..n); arenas[0..n_arenas) are the allocations of those
 * the arena table counts, one per lease. */
static int release_ids(wc_client *c, const uint64_t *ids, size_t n, const uint64_t *arenas, size_t n_arenas,
                       wc_err *err)
{
    Wcodec__V1__Release rl = WCODEC__V1__RELEASE__INIT;
    rl.n_lease_id = n;
    rl.lease_id = (uint64_t *)ids;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_RELEASE;
    q.release = &rl;
    frame *f;
    size_t nf;
    wcc_call_arenas ca = {.released = arenas, .n_released = n_arenas};
    int r = wcc_call_ex(c, &q, "release", &ca, &f, &nf, err);
    if (!r) r = wcc_expect_body(f, nf, WCODEC__V1__REPLY__BODY_RELEASE, "release", err);
    if (!r) wcc_frames_free(f, nf);
    return r;
}

/* A tensor's public part from its info, its name after it; no location. */
static wcc_tensor *new_tensor(const Wcodec__V1__Tensor *t, uint64_t model_id)
{
    size_t nl = strlen(t->info->name);
    wcc_tensor *w = calloc(1, sizeof *w + nl + 1);
    if (!w) return NULL;
    wc_client_tensor *ct = &w->pub;
    memcpy((char *)(w + 1), t->info->name, nl + 1);
    ct->name = (const char *)(w + 1);
    ct->model_id = model_id;
    ct->lease_id = t->lease_id;
    ct->dtype = (wc_dtype)t->info->dtype;
    ct->out_dtype = (wc_dtype)t->info->out_dtype;
    ct->ndim = (uint32_t)(t->info->n_shape > WC_MAX_DIMS ? WC_MAX_DIMS : t->info->n_shape);
    for (uint32_t i = 0; i < ct->ndim; i++) ct->shape[i] = ct->full_shape[i] = t->info->shape[i];
    ct->device = -1;
    ct->tp_size = 1;
    ct->shard_dim = -1;
    const Wcodec__V1__ShardOf *sh = t->shard;
    if (sh && sh->count > 1 && sh->dim >= 0 && (uint32_t)sh->dim < ct->ndim && sh->n_full_shape == ct->ndim) {
        ct->tp_rank = sh->rank;
        ct->tp_size = sh->count;
        ct->shard_dim = sh->dim;
        ct->shard_start = sh->start;
        for (uint32_t i = 0; i < ct->ndim; i++) ct->full_shape[i] = sh->full_shape[i];
    }
    return w;
}

/* Maps one tensor of a get reply; checks the daemon's numbers first so that
 * a bad reply cannot make the caller read past the mapping. */
static int map_tensor(const Wcodec__V1__Tensor *t, const frame *f, uint64_t model_id, wc_client_tensor **out,
                      wc_err *err)
{
    const Wcodec__V1__Location *l = t->location;
    const char *name = t->info && t->info->name ? t->info->name : "?";
    if (!t->info || !l) return wc_fail(err, WC_EPROTO, "get: tensor %s: reply without info or location", name);
    if (l->kind != WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD)
        return wc_fail(err, WC_EUNSUPPORTED, "get: tensor %s: location kind %d is not supported by this client",
                    name, (int)l->kind);
    if (l->fd_index >= f->nfds || f->fds[l->fd_index] < 0)
        return wc_fail(err, WC_EPROTO, "get: tensor %s: descriptor %u missing", name, l->fd_index);
    if (!l->map_length || l->offset > l->map_length || l->length > l->map_length - l->offset ||
        l->scales_offset > l->map_length || l->n_scales > (l->map_length - l->scales_offset) / sizeof(float) ||
        l->length != t->info->out_bytes || l->scales_offset % sizeof(float) || l->map_length > SIZE_MAX)
        return wc_fail(err, WC_EPROTO, "get: tensor %s: location out of bounds", name);
    int fd = f->fds[l->fd_index];
    struct stat sb;
    if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size < l->map_length)
        return wc_fail(err, WC_EPROTO, "get: tensor %s: the shared memory is smaller than announced", name);
    wcc_tensor *w = new_tensor(t, model_id);
    if (!w) return wc_fail(err, WC_ENOMEM, "get: out of memory");
    void *p = mmap(NULL, (size_t)l->map_length, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        free(w);
        return wc_fail(err, WC_EIO, "get: tensor %s: mmap of %llu bytes: %s", name,
                    (unsigned long long)l->map_length, strerror(errno));
    }
    wc_client_tensor *ct = &w->pub;
    ct->data = (const char *)p + l->offset;
    ct->size = l->length;
    ct->scales = l->n_scales ? (const float *)((const char *)p + l->scales_offset) : NULL;
    ct->n_scales = l->n_scales;
    ct->location = WC_LOC_MEMFD;
    w->map_base = p;
    w->map_len = (size_t)l->map_length;
    *out = ct;
    return 0;
}

/* A device tensor of a get reply: its allocation was imported when its
 * frame was read (arenas.h); checks the location against it. `device` is
 * the ordinal the caller asked for (-1: host memory, so a device tensor is
 * the daemon's mistake). */
static int device_tensor(wc_client *c, const Wcodec__V1__Tensor *t, uint64_t model_id, int device,
                         wc_client_tensor **out, wc_err *err)
{
    const char *name = t->info && t->info->name ? t->info->name : "?";
    if (!t->info || !t->location) return wc_fail(err, WC_EPROTO, "get: tensor %s: reply without info or location", name);
    wcc_place pl;
    pthread_mutex_lock(&c->mu);
    int r = wcc_arenas_locate(&c->arenas, t, &pl, err);
    pthread_mutex_unlock(&c->mu);
    if (r) return r;
    if (pl.device != device)
        return wc_fail(err, WC_EPROTO, "get: tensor %s: wcodecd placed it on CUDA device %d of this process, not %d",
                       name, pl.device, device);
    wcc_tensor *w = new_tensor(t, model_id);
    if (!w) return wc_fail(err, WC_ENOMEM, "get: out of memory");
    wc_client_tensor *ct = &w->pub;
    ct->data = (const void *)(uintptr_t)pl.data;
    ct->size = t->location->length;
    ct->scales = (const float *)(uintptr_t)pl.scales;
    ct->n_scales = t->location->n_scales;
    ct->location = t->location->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM ? WC_LOC_CUDA_VMM : WC_LOC_CUDA_IPC;
    ct->device = pl.device;
    memcpy(ct->device_uuid, pl.uuid, 16);
    w->counted = wcc_loc_counts(t->location, &w->arena_id);
    *out = ct;
    return 0;
}

void wcc_tensor_free(wcc_tensor *t)
{
    if (t->map_base) munmap(t->map_base, t->map_len);
    free(t);
}

static void track(wc_client *c, wc_client_tensor **ts, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        wcc_tensor *t = wcc_tensor_of(ts[i]);
        t->prev = NULL;
        t->next = c->tensors;
        if (c->tensors) c->tensors->prev = t;
        c->tensors = t;
    }
    pthread_mutex_unlock(&c->mu);
}

static void untrack_unmap(wc_client *c, wc_client_tensor *const *ts, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        wcc_tensor *t = wcc_tensor_of(ts[i]);
        if (t->prev) t->prev->next = t->next;
        else if (c->tensors == t) c->tensors = t->next;
        if (t->next) t->next->prev = t->prev;
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) wcc_tensor_free(wcc_tensor_of(ts[i]));
}

void wc_client_get_opts_default(wc_client_get_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = -1;
}

/* The selection of a get request; names must outlive the request. */
static int select_tensors(Wcodec__V1__GetTensors *g, Wcodec__V1__GetTensors__Names *nm, wc_client_select sel,
                          const char *const *names, size_t n_names, wc_err *err)
{
    switch (sel) {
    case WC_SELECT_NAMES:
        if (!n_names) return wc_fail(err, WC_EINVAL, "get: no names");
        nm->n_name = n_names;
        nm->name = (char **)names;
        g->select_case = WCODEC__V1__GET_TENSORS__SELECT_NAMES;
        g->names = nm;
        return 0;
    case WC_SELECT_PREFIX:
        if (!names || !names[0]) return wc_fail(err, WC_EINVAL, "get: no prefix");
        g->select_case = WCODEC__V1__GET_TENSORS__SELECT_PREFIX;
        g->prefix = (char *)names[0];
        return 0;
    case WC_SELECT_ALL:
        g->select_case = WCODEC__V1__GET_TENSORS__SELECT_ALL;
        g->all = 1;
        return 0;
    default:
        return wc_fail(err, WC_EINVAL, "get: unknown selection %d", (int)sel);
    }
}

/* Every tensor of a get reply, in order, as the caller receives them: memfd
 * ones mapped here, device ones placed in their imported allocation. All
 * or none: on error the daemon's leases are handed back (and the arena
 * table follows that release like any other). */
static int take_tensors(wc_client *c, frame *f, size_t nf, uint64_t model_id, int device, wc_client_tensor ***out,
                        size_t *n_out, wc_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < nf; i++) total += f[i].r->get->n_tensor;
    wc_client_tensor **ts = calloc(total ? total : 1, sizeof *ts);
    uint64_t *ids = calloc(total ? total : 1, sizeof *ids);
    uint64_t *arenas = calloc(total ? total : 1, sizeof *arenas);
    size_t k = 0, n_arenas = 0;
    int r = 0;
    if (!ts || !ids || !arenas) r = wc_fail(err, WC_ENOMEM, "get: out of memory");
    for (size_t i = 0; !r && i < nf; i++)
        for (size_t j = 0; !r && j < f[i].r->get->n_tensor; j++) {
            const Wcodec__V1__Tensor *t = f[i].r->get->tensor[j];
            if (!t->location || t->location->kind == WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD)
                r = map_tensor(t, &f[i], model_id, &ts[k], err);
            else if (wcc_loc_counts(t->location, &(uint64_t){0}))
                r = device_tensor(c, t, model_id, device, &ts[k], err);
            else
                r = wc_fail(err, WC_EUNSUPPORTED, "get: tensor %s: location kind %d is not supported by this client",
                            t->info ? t->info->name : "?", (int)t->location->kind);
            if (!r) k++;
        }
    if (r) {
        /* the leases of every tensor of the reply, mapped here or not, and
         * the allocation of each the arena table counted */
        for (size_t i = 0, m = 0; ids && arenas && i < nf; i++)
            for (size_t j = 0; j < f[i].r->get->n_tensor; j++, m++) {
                ids[m] = f[i].r->get->tensor[j]->lease_id;
                if (wcc_loc_counts(f[i].r->get->tensor[j]->location, &arenas[n_arenas])) n_arenas++;
            }
        for (size_t i = 0; i < k; i++) wcc_tensor_free(wcc_tensor_of(ts[i]));
        if (ids && arenas && total) release_ids(c, ids, total, arenas, n_arenas, NULL);
        free(ts);
        ts = NULL;
        total = 0;
    }
    free(ids);
    free(arenas);
    *out = ts;
    *n_out = total;
    return r;
}

int wc_client_get2(wc_client *c, uint64_t model_id, wc_client_select sel, const char *const *names,
                   size_t n_names, const wc_client_get_opts *opts, wc_client_tensor ***out, size_t *n_out,
                   wc_err *err)
{
    *out = NULL;
    *n_out = 0;
    wc_client_get_opts dflt;
    if (!opts) {
        wc_client_get_opts_default(&dflt);
        opts = &dflt;
    }
    Wcodec__V1__GetTensors g = WCODEC__V1__GET_TENSORS__INIT;
    Wcodec__V1__GetTensors__Names nm = WCODEC__V1__GET_TENSORS__NAMES__INIT;
    g.model_id = model_id;
    int r = select_tensors(&g, &nm, sel, names, n_names, err);
    if (r) return r;
    /* Device memory: the kinds this library maps, on the device named by
     * its UUID (the daemon's ordinals are not ours). */
    Wcodec__V1__LocationKind accept[2] = {WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM,
                                          WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC};
    unsigned char uuid[16];
    if (opts->device < -1) return wc_fail(err, WC_EINVAL, "get: device %d", opts->device);
    if (opts->device >= 0) {
        if ((r = wcc_device_uuid(opts->device, uuid, err))) return r;
        g.n_accept = 2;
        g.accept = accept;
        g.device_uuid = (ProtobufCBinaryData){16, uuid};
    }
    Wcodec__V1__Shard shard = WCODEC__V1__SHARD__INIT;
    if (opts->tp_size > 1) {
        if (opts->tp_rank >= opts->tp_size || !opts->tp_layout || !opts->tp_layout[0])
            return wc_fail(err, WC_EINVAL, "get: shard %u of %u with layout %s", opts->tp_rank, opts->tp_size,
                           opts->tp_layout ? opts->tp_layout : "(none)");
        shard.rank = opts->tp_rank;
        shard.count = opts->tp_size;
        shard.layout = (char *)opts->tp_layout;
        g.shard = &shard;
    }
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_GET;
    q.get = &g;
    frame *f;
    size_t nf;
    wcc_call_arenas ca = {.device_ok = opts->device >= 0};
    r = wcc_call_ex(c, &q, "get", &ca, &f, &nf, err);
    if (!r) r = wcc_expect_body(f, nf, WCODEC__V1__REPLY__BODY_GET, "get", err);
    if (r) return r;
    wc_client_tensor **ts;
    size_t total;
    r = take_tensors(c, f, nf, model_id, opts->device, &ts, &total, err);
    wcc_frames_free(f, nf);
    if (r) return r;
    track(c, ts, total);
    *out = ts;
    *n_out = total;
    return 0;
}

int wc_client_get(wc_client *c, uint64_t model_id, wc_client_select sel, const char *const *names,
                  size_t n_names, wc_client_tensor ***out, size_t *n_out, wc_err *err)
{
    return wc_client_get2(c, model_id, sel, names, n_names, NULL, out, n_out, err);
}

int wc_client_get_one(wc_client *c, uint64_t model_id, const char *name, wc_client_tensor **out, wc_err *err)
{
    wc_client_tensor **ts;
    size_t n;
    *out = NULL;
    int r = wc_client_get(c, model_id, WC_SELECT_NAMES, &name, 1, &ts, &n, err);
    if (r) return r;
    *out = ts[0];
    wc_client_tensors_free(ts);
    return 0;
}

void wc_client_tensors_free(wc_client_tensor **tensors) { free(tensors); }

int wc_client_release(wc_client *c, wc_client_tensor *const *tensors, size_t n, wc_err *err)
{
    if (!n) return 0;
    uint64_t stackids[128];
    uint64_t *ids = n <= 64 ? stackids : malloc(2 * n * sizeof *ids);
    if (!ids) return wc_fail(err, WC_ENOMEM, "release: out of memory");
    uint64_t *arenas = ids + n;
    size_t n_arenas = 0;
    for (size_t i = 0; i < n; i++) {
        ids[i] = tensors[i]->lease_id;
        const wcc_tensor *t = wcc_tensor_of(tensors[i]);
        if (t->counted) arenas[n_arenas++] = t->arena_id;
    }
    /* The host mappings are ours: drop them whatever the daemon answers.
     * Device allocations stay mapped until the reply (arenas.h). */
    untrack_unmap(c, tensors, n);
    int r = release_ids(c, ids, n, arenas, n_arenas, err);
    if (ids != stackids) free(ids);
    return r;
}

int wc_client_stats_get(wc_client *c, wc_client_stats *out, wc_err *err)
{
    Wcodec__V1__Stats s = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &s;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "stats", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_STATS, "stats", err);
    if (r) return r;
    const Wcodec__V1__StatsReply *s2 = f[0].r->stats;
    *out = (wc_client_stats){
        .uptime_ms = s2->uptime_ms, .connections = s2->connections, .models = s2->models,
        .budget_bytes = s2->budget_bytes, .cached_bytes = s2->cached_bytes, .cached_tensors = s2->cached_tensors,
        .leased_bytes = s2->leased_bytes, .leased_tensors = s2->leased_tensors, .leases = s2->leases,
        .conn_leases = s2->conn_leases, .decodes = s2->decodes, .hits = s2->hits, .evictions = s2->evictions,
        .requests = s2->requests, .errors = s2->errors, .rss_bytes = s2->rss_bytes, .open_fds = s2->open_fds,
        .decodes_in_flight = s2->decodes_in_flight,
    };
    wcc_frames_free(f, n);
    return 0;
}

int wc_client_evict(wc_client *c, uint64_t model_id, uint32_t *evicted_tensors, uint64_t *evicted_bytes,
                    wc_err *err)
{
    Wcodec__V1__Evict e = WCODEC__V1__EVICT__INIT;
    e.model_id = model_id;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_EVICT;
    q.evict = &e;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "evict", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_EVICT, "evict", err);
    if (r) return r;
    if (evicted_tensors) *evicted_tensors = f[0].r->evict->evicted_tensors;
    if (evicted_bytes) *evicted_bytes = f[0].r->evict->evicted_bytes;
    wcc_frames_free(f, n);
    return 0;
}

int wc_client_unload(wc_client *c, uint64_t model_id, uint32_t *leased_tensors, wc_err *err)
{
    Wcodec__V1__Unload u = WCODEC__V1__UNLOAD__INIT;
    u.model_id = model_id;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_UNLOAD;
    q.unload = &u;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "unload", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_UNLOAD, "unload", err);
    if (r) return r;
    if (leased_tensors) *leased_tensors = f[0].r->unload->leased_tensors;
    wcc_frames_free(f, n);
    return 0;
}
