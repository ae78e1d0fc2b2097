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

static int release_ids(wc_client *c, const uint64_t *ids, size_t n, wc_err *err)
{
    Wcodec__V1__Release rl = WCODEC__V1__RELEASE__INIT;
    rl.n_lease_id = n;
    rl.lease_id = (uint64_t *)ids;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_RELEASE;
    q.release = &rl;
    frame *f;
    size_t nf;
    int r = wcc_call(c, &q, "release", &f, &nf, err);
    if (!r) r = wcc_expect_body(f, nf, WCODEC__V1__REPLY__BODY_RELEASE, "release", err);
    if (!r) wcc_frames_free(f, nf);
    return r;
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
    size_t nl = strlen(name);
    wcc_tensor *w = calloc(1, sizeof *w + nl + 1);
    if (!w) return wc_fail(err, WC_ENOMEM, "get: out of memory");
    void *p = mmap(NULL, (size_t)l->map_length, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        free(w);
        return wc_fail(err, WC_EIO, "get: tensor %s: mmap of %llu bytes: %s", name,
                    (unsigned long long)l->map_length, strerror(errno));
    }
    wc_client_tensor *ct = &w->pub;
    memcpy((char *)(w + 1), name, nl + 1);
    ct->name = (const char *)(w + 1);
    ct->model_id = model_id;
    ct->lease_id = t->lease_id;
    ct->dtype = (wc_dtype)t->info->dtype;
    ct->out_dtype = (wc_dtype)t->info->out_dtype;
    ct->ndim = (uint32_t)(t->info->n_shape > WC_MAX_DIMS ? WC_MAX_DIMS : t->info->n_shape);
    for (uint32_t i = 0; i < ct->ndim; i++) ct->shape[i] = t->info->shape[i];
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

void wcc_tensor_free(wcc_tensor *t)
{
    munmap(t->map_base, t->map_len);
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

int wc_client_get(wc_client *c, uint64_t model_id, wc_client_select sel, const char *const *names,
                  size_t n_names, wc_client_tensor ***out, size_t *n_out, wc_err *err)
{
    *out = NULL;
    *n_out = 0;
    Wcodec__V1__GetTensors g = WCODEC__V1__GET_TENSORS__INIT;
    Wcodec__V1__GetTensors__Names nm = WCODEC__V1__GET_TENSORS__NAMES__INIT;
    g.model_id = model_id;
    switch (sel) {
    case WC_SELECT_NAMES:
        if (!n_names) return wc_fail(err, WC_EINVAL, "get: no names");
        nm.n_name = n_names;
        nm.name = (char **)names;
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_NAMES;
        g.names = &nm;
        break;
    case WC_SELECT_PREFIX:
        if (!names || !names[0]) return wc_fail(err, WC_EINVAL, "get: no prefix");
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_PREFIX;
        g.prefix = (char *)names[0];
        break;
    case WC_SELECT_ALL:
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_ALL;
        g.all = 1;
        break;
    default:
        return wc_fail(err, WC_EINVAL, "get: unknown selection %d", (int)sel);
    }
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_GET;
    q.get = &g;
    frame *f;
    size_t nf;
    int r = wcc_call(c, &q, "get", &f, &nf, err);
    if (!r) r = wcc_expect_body(f, nf, WCODEC__V1__REPLY__BODY_GET, "get", err);
    if (r) return r;
    size_t total = 0;
    for (size_t i = 0; i < nf; i++) total += f[i].r->get->n_tensor;
    wc_client_tensor **ts = calloc(total ? total : 1, sizeof *ts);
    uint64_t *ids = calloc(total ? total : 1, sizeof *ids);
    size_t k = 0;
    if (!ts || !ids) r = wc_fail(err, WC_ENOMEM, "get: out of memory");
    for (size_t i = 0; !r && i < nf; i++)
        for (size_t j = 0; !r && j < f[i].r->get->n_tensor; j++) {
            ids[k] = f[i].r->get->tensor[j]->lease_id;
            r = map_tensor(f[i].r->get->tensor[j], &f[i], model_id, &ts[k], err);
            if (!r) k++;
        }
    wcc_frames_free(f, nf);
    if (r) {
        /* All or none: hand back what the daemon leased us. */
        for (size_t i = 0; i < k; i++) wcc_tensor_free(wcc_tensor_of(ts[i]));
        if (ids && total) release_ids(c, ids, total, NULL);
        free(ts);
        free(ids);
        return r;
    }
    free(ids);
    track(c, ts, total);
    *out = ts;
    *n_out = total;
    return 0;
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
    uint64_t stackids[64];
    uint64_t *ids = n <= 64 ? stackids : malloc(n * sizeof *ids);
    if (!ids) return wc_fail(err, WC_ENOMEM, "release: out of memory");
    for (size_t i = 0; i < n; i++) ids[i] = tensors[i]->lease_id;
    /* The mappings are ours: drop them whatever the daemon answers. */
    untrack_unmap(c, tensors, n);
    int r = release_ids(c, ids, n, err);
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
