/* Requests: a frame is unpacked into a Request, validated field by field,
 * and answered. A frame that is not a Request at all closes the connection
 * (the stream can no longer be trusted); a well-formed request with bad
 * fields gets an error reply and the connection goes on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcd.h"

static void on_hello(wcd_conn *c, uint64_t id, const Wcodec__V1__Hello *h)
{
    if (c->hello_done) {
        wcd_conn_send_error(c, id, WC_EPROTO, "Hello sent twice");
        return;
    }
    if (h->protocol_version < 1 || (h->min_version > WC_PROTOCOL_VERSION)) {
        wcd_conn_send_error(c, id, WC_EVERSION,
                            "client speaks protocol versions %u..%u, this wcodecd speaks %d",
                            h->min_version, h->protocol_version, WC_PROTOCOL_VERSION);
        wcd_conn_close(c, "protocol version mismatch");
        return;
    }
    c->hello_done = true;
    if (h->client_name && h->client_name[0]) {
        char name[24];
        snprintf(name, sizeof name, "%s", h->client_name);
        for (char *p = name; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) *p = '?';
        snprintf(c->name, sizeof c->name, "conn %llu (%s pid %d uid %u)", (unsigned long long)c->id,
                 name, (int)c->pid, (unsigned)c->uid);
    }
    Wcodec__V1__HelloReply hr = WCODEC__V1__HELLO_REPLY__INIT;
    hr.protocol_version = WC_PROTOCOL_VERSION;
    hr.server_version = (char *)WCD_VERSION;
    /* The kind of the daemon's first GPU, else memfd. */
    const wcd_pool *gp = wcd_cache_gpu_pool(&c->ctx->cache, NULL, 0);
    hr.backend = gp ? gp->be->kind : WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD;
    hr.max_frame = c->ctx->cfg.max_frame;
    hr.max_tensors_per_frame = c->ctx->fds_per_frame;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_HELLO;
    r.hello = &hr;
    wcd_conn_send(c, &r, NULL, 0);
}

static void on_open(wcd_conn *c, uint64_t id, const Wcodec__V1__OpenModel *o)
{
    wcd_ctx *ctx = c->ctx;
    wc_err err = {0};
    int fd;
    const wcd_root *root;
    int r = wcd_open_beneath(ctx->roots, ctx->n_roots, o->path, &fd, &root, &err);
    if (r) {
        wcd_conn_send_error(c, id, r, "%s", err.msg);
        return;
    }
    struct stat sb;
    fstat(fd, &sb);
    /* A model whose file changed in place is not handed out again. */
    wcd_cache_sweep(&ctx->cache);
    wcd_model *m = wcd_cache_find_model(&ctx->cache, sb.st_dev, sb.st_ino);
    if (!m) {
        /* The model's label starts every message about it: a short one
         * leaves room for the reason. */
        char sbuf[WCD_SHORT_MAX + 8];
        const char *label = wcd_short(o->path, sbuf, sizeof sbuf);
        wc_file *f;
        r = wc_file_open_fd(&f, fd, label, &err);
        if (r) close(fd);
        /* The model keeps fd, to see its file change or go. */
        else r = wcd_cache_add_model(&ctx->cache, fd, o->path, label, f, ctx->cfg.max_models, &m, &err);
        if (r) {
            wcd_conn_send_error(c, id, r, "%s", err.msg);
            return;
        }
        m->root_dev = root->dev;
        m->root_ino = root->ino;
        wcd_log(WCD_LOG_INFO, "%s: opened model %llu: %s, %u tensors", c->name, (unsigned long long)m->id,
                label, m->n);
    } else {
        close(fd);
    }
    Wcodec__V1__OpenModelReply orp = WCODEC__V1__OPEN_MODEL_REPLY__INIT;
    orp.model_id = m->id;
    orp.tensor_count = m->n;
    orp.file_bytes = wc_file_size(m->f);
    Wcodec__V1__Reply rep = WCODEC__V1__REPLY__INIT;
    rep.id = id;
    rep.body_case = WCODEC__V1__REPLY__BODY_OPEN;
    rep.open = &orp;
    wcd_conn_send(c, &rep, NULL, 0);
}

static wcd_model *model_or_error(wcd_conn *c, uint64_t id, uint64_t model_id)
{
    wcd_model *m = wcd_cache_model(&c->ctx->cache, model_id);
    if (!m) wcd_conn_send_error(c, id, WC_ENOTFOUND, "no open model with id %llu", (unsigned long long)model_id);
    else if (m->retired)
        wcd_conn_send_error(c, id, WC_ENOTFOUND, "model %llu (%s) was unloaded: %s; open it again",
                            (unsigned long long)model_id, m->label, m->retired);
    return m && !m->retired ? m : NULL;
}

static void on_list(wcd_conn *c, uint64_t id, const Wcodec__V1__ListTensors *l)
{
    wcd_model *m = model_or_error(c, id, l->model_id);
    if (!m) return;
    size_t plen = strlen(l->prefix);
    wc_tensor_info *in = malloc(WCD_INFOS_PER_FRAME * sizeof *in);
    Wcodec__V1__TensorInfo *ti = malloc(WCD_INFOS_PER_FRAME * sizeof *ti);
    Wcodec__V1__TensorInfo **tp = malloc(WCD_INFOS_PER_FRAME * sizeof *tp);
    if (!in || !ti || !tp) {
        wcd_conn_send_error(c, id, WC_ENOMEM, "listing %s: out of memory", m->label);
        goto out;
    }
    uint32_t i = 0;
    do {
        size_t n = 0;
        for (; i < m->n && n < WCD_INFOS_PER_FRAME; i++) {
            wc_file_tensor_info(m->f, i, &in[n]);
            if (strncmp(in[n].name, l->prefix, plen)) continue;
            wcd_fill_info(&ti[n], &in[n], m, i);
            tp[n] = &ti[n];
            n++;
        }
        Wcodec__V1__ListTensorsReply lr = WCODEC__V1__LIST_TENSORS_REPLY__INIT;
        lr.n_tensor = n;
        lr.tensor = tp;
        Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
        r.id = id;
        r.more = i < m->n;
        r.body_case = WCODEC__V1__REPLY__BODY_LIST;
        r.list = &lr;
        if (wcd_conn_send(c, &r, NULL, 0)) break;
    } while (i < m->n);
out:
    free(in);
    free(ti);
    free(tp);
}

static void get_free(wcd_get *g)
{
    if (g->conn) g->conn->pending_leases -= g->n - g->sent;
    free(g);
}

/* Answers a get whose slots have all been resolved: an error drops its
 * pins here; a reply turns them into leases frame by frame
 * (wcd_get_next_frame) as the connection's queue reaches it. */
static void get_finish(wcd_get *g)
{
    wcd_conn *c = g->conn;
    /* Unloaded while it decoded: nothing more is served from the model. */
    const wcd_model *m = g->n && g->slots[0].e ? g->slots[0].e->model : NULL;
    if (!g->status && m && m->retired) {
        g->status = WC_ENOTFOUND;
        snprintf(g->msg, sizeof g->msg, "model %llu (%s) was unloaded: %s; open it again",
                 (unsigned long long)m->id, m->label, m->retired);
    }
    if (!c || g->status) {
        for (uint32_t i = 0; i < g->n; i++) {
            wcd_claim *s = &g->slots[i];
            if (s->e) wcd_cache_unpin(s->e);
        }
        if (c) wcd_conn_send_error(c, g->req_id, g->status, "%s", g->msg);
        get_free(g);
        return;
    }
    /* The reply is cut into frames as the socket drains: what a client
     * has not read costs no memory and no descriptors here. */
    wcd_conn_queue_get(c, g);
}

void wcd_get_drop(wcd_get *g)
{
    for (uint32_t i = g->sent; i < g->n; i++)
        if (g->slots[i].e) wcd_cache_unpin(g->slots[i].e);
    get_free(g);
}

static void get_claim_done(wcd_claim *s, int status, const char *msg)
{
    wcd_get *g = s->owner;
    if (status && !g->status) {
        g->status = status;
        snprintf(g->msg, sizeof g->msg, "%s", msg);
    }
    if (--g->pending) return;
    wcd_conn *c = g->conn;
    if (c) {
        if (g->prev) g->prev->next = g->next;
        else c->gets = g->next;
        if (g->next) g->next->prev = g->prev;
    }
    get_finish(g);
    if (c) wcd_conn_request_done(c);
}

void wcd_get_orphan_all(wcd_conn *c)
{
    for (wcd_get *g = c->gets, *next; g; g = next) {
        next = g->next;
        g->conn = NULL;
        g->prev = g->next = NULL;
    }
    c->gets = NULL;
}

static int name_index(const wcd_model *m, const char *name)
{
    return wc_file_find(m->f, name);
}

/* The pool a get is served from: a GPU when the client can map device
 * memory and one serves (the one it names, else the first), else the host.
 * A named GPU the daemon does not have is an error; a failed one falls
 * back to the host, which the reply's location kinds show. */
static int pick_pool(wcd_conn *c, uint64_t id, const wcd_model *m, const Wcodec__V1__GetTensors *q, wcd_pool **out)
{
    wcd_cache *cache = &c->ctx->cache;
    *out = cache->pools[0];
    bool cuda = false;
    for (size_t i = 0; i < q->n_accept; i++)
        cuda |= q->accept[i] == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM ||
                q->accept[i] == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC;
    if (!cuda) return 0;
    if (q->device_uuid.len && q->device_uuid.len != 16) {
        wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: a device UUID has 16 bytes, not %zu", m->label,
                            q->device_uuid.len);
        return WC_EINVAL;
    }
    wcd_pool *p = wcd_cache_gpu_pool(cache, q->device_uuid.data, q->device_uuid.len);
    if (p) {
        for (size_t i = 0; i < q->n_accept; i++)
            if (q->accept[i] == p->be->kind) {
                *out = p;
                return 0;
            }
        return 0;
    }
    if (!q->device_uuid.len) return 0;
    for (unsigned i = 0; i < cache->n_pools; i++)
        if (cache->pools[i]->is_gpu && !memcmp(cache->pools[i]->uuid, q->device_uuid.data, 16))
            return 0;   /* failed: served from the host */
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", q->device_uuid.data[i]);
    wcd_conn_send_error(c, id, WC_ENODEV, "get on %s: this daemon serves no GPU with UUID %s", m->label, hex);
    return WC_ENODEV;
}

/* Whole tensors, or the shards GetTensors.shard asks for, from pool. */
static int pick_view(wcd_conn *c, uint64_t id, wcd_model *m, wcd_pool *pool, const Wcodec__V1__GetTensors *q,
                     wcd_view **out)
{
    const Wcodec__V1__Shard *sh = q->shard;
    uint32_t rank = sh ? sh->rank : 0, count = sh ? sh->count : 0;
    if (count > 1 && rank >= count) {
        wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: shard rank %u of %u", m->label, rank, count);
        return WC_EINVAL;
    }
    if (count > 1 && (!sh->layout || !sh->layout[0])) {
        wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: shards of %u without a layout (\"llama\")", m->label, count);
        return WC_EINVAL;
    }
    wc_err err = {0};
    int r = wcd_model_view(m, pool, rank, count, count > 1 ? sh->layout : "", out, &err);
    if (r) wcd_conn_send_error(c, id, r, "get on %s", err.msg);
    return r;
}

static void on_get(wcd_conn *c, uint64_t id, const Wcodec__V1__GetTensors *q)
{
    wcd_model *m = model_or_error(c, id, q->model_id);
    if (!m) return;
    size_t n = 0;
    const char *prefix = NULL;
    switch (q->select_case) {
    case WCODEC__V1__GET_TENSORS__SELECT_NAMES:
        n = q->names ? q->names->n_name : 0;
        if (!n) {
            wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: empty list of names", m->label);
            return;
        }
        break;
    case WCODEC__V1__GET_TENSORS__SELECT_PREFIX:
        prefix = q->prefix;
        for (uint32_t i = 0; i < m->n; i++) {
            wc_tensor_info ti;
            wc_file_tensor_info(m->f, i, &ti);
            n += !strncmp(ti.name, prefix, strlen(prefix));
        }
        if (!n) {
            wcd_conn_send_error(c, id, WC_ENOTFOUND, "%s: no tensor name starts with '%s'", m->label, prefix);
            return;
        }
        break;
    case WCODEC__V1__GET_TENSORS__SELECT_ALL:
        if (!q->all) {
            wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: all = false selects nothing", m->label);
            return;
        }
        n = m->n;
        break;
    default:
        wcd_conn_send_error(c, id, WC_EINVAL, "get on %s: no selection (names, prefix or all)", m->label);
        return;
    }
    if (n > WCD_MAX_TENSORS_PER_REQUEST) {
        wcd_conn_send_error(c, id, WC_ELIMIT, "get on %s: %zu tensors, more than %d in one request", m->label,
                            n, WCD_MAX_TENSORS_PER_REQUEST);
        return;
    }
    /* Leases that requests under way will take count too: they bound what
     * one connection's gets hold while their replies wait to be read. */
    if (c->live_leases + c->pending_leases + n > c->ctx->cfg.max_leases) {
        wcd_conn_send_error(c, id, WC_ELIMIT, "get on %s: %zu more leases would pass this connection's limit of %u",
                            m->label, n, c->ctx->cfg.max_leases);
        return;
    }
    wcd_pool *pool;
    int r = pick_pool(c, id, m, q, &pool);
    if (r) return;
    wcd_view *view;
    if ((r = pick_view(c, id, m, pool, q, &view))) return;
    wcd_get *g = calloc(1, sizeof *g + n * sizeof(wcd_claim));
    if (!g) {
        wcd_conn_send_error(c, id, WC_ENOMEM, "get on %s: out of memory", m->label);
        return;
    }
    g->conn = c;
    g->pool = pool;
    g->req_id = id;
    g->n = (uint32_t)n;
    c->pending_leases += (uint32_t)n;
    /* Resolve every name before taking anything, so a bad name costs nothing. */
    uint32_t k = 0;
    for (uint32_t i = 0; k < n; i++) {
        int idx;
        if (q->select_case == WCODEC__V1__GET_TENSORS__SELECT_NAMES) {
            const char *name = q->names->name[i];
            idx = strlen(name) < WCD_MAX_NAME ? name_index(m, name) : WC_ENOTFOUND;
            if (idx < 0) {
                wcd_conn_send_error(c, id, WC_ENOTFOUND, "%s: no tensor named '%.256s'", m->label, name);
                get_free(g);
                return;
            }
        } else {
            idx = (int)i;
            if (prefix) {
                wc_tensor_info ti;
                wc_file_tensor_info(m->f, i, &ti);
                if (strncmp(ti.name, prefix, strlen(prefix))) continue;
            }
        }
        g->slots[k].done = get_claim_done;
        g->slots[k].owner = g;
        g->slots[k].index = (uint32_t)idx;
        k++;
    }
    /* The tensors missing from the pool decode as one batch. */
    wc_err err = {0};
    r = wcd_cache_acquire(&c->ctx->cache, view, m, g->slots, g->n, &err);
    if (r < 0) {
        g->status = r;
        snprintf(g->msg, sizeof g->msg, "%s", err.msg);
    } else if (r > 0) {
        g->pending = (uint32_t)r;
        c->inflight++;
        g->next = c->gets;
        if (c->gets) c->gets->prev = g;
        c->gets = g;
        return;
    }
    get_finish(g);
}

static void on_release(wcd_conn *c, uint64_t id, const Wcodec__V1__Release *rl)
{
    uint32_t released = 0;
    uint64_t unknown = 0;
    size_t n_unknown = 0;
    for (size_t i = 0; i < rl->n_lease_id; i++) {
        wcd_entry *e = wcd_conn_lease_take(c, rl->lease_id[i]);
        if (!e) {
            if (!n_unknown++) unknown = rl->lease_id[i];
            continue;
        }
        wcd_cache_lease_end(e);
        released++;
    }
    if (n_unknown) {
        wcd_conn_send_error(c, id, WC_ENOTFOUND, "%zu of %zu leases not held by this connection (first: %llu); %u released",
                            n_unknown, rl->n_lease_id, (unsigned long long)unknown, released);
        return;
    }
    Wcodec__V1__ReleaseReply rr = WCODEC__V1__RELEASE_REPLY__INIT;
    rr.released = released;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_RELEASE;
    r.release = &rr;
    wcd_conn_send(c, &r, NULL, 0);
}

static void on_evict(wcd_conn *c, uint64_t id, const Wcodec__V1__Evict *ev)
{
    wcd_model *m = NULL;
    if (ev->model_id && !(m = model_or_error(c, id, ev->model_id))) return;
    Wcodec__V1__EvictReply er = WCODEC__V1__EVICT_REPLY__INIT;
    wcd_cache_evict(&c->ctx->cache, m, &er.evicted_tensors, &er.evicted_bytes);
    wcd_log(WCD_LOG_INFO, "%s: evicted %u tensors, %llu bytes", c->name, er.evicted_tensors,
            (unsigned long long)er.evicted_bytes);
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_EVICT;
    r.evict = &er;
    wcd_conn_send(c, &r, NULL, 0);
}

static void on_unload(wcd_conn *c, uint64_t id, const Wcodec__V1__Unload *u)
{
    wcd_model *m = model_or_error(c, id, u->model_id);
    if (!m) return;
    Wcodec__V1__UnloadReply ur = WCODEC__V1__UNLOAD_REPLY__INIT;
    for (unsigned k = 0; k < m->n_views; k++)
        for (uint32_t i = 0; i < m->n; i++)
            if (m->views[k].entries[i]) ur.leased_tensors += m->views[k].entries[i]->leases > 0;
    wcd_log(WCD_LOG_INFO, "%s: unload of model %llu", c->name, (unsigned long long)m->id);
    wcd_cache_retire(&c->ctx->cache, m, "unloaded by a client");
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_UNLOAD;
    r.unload = &ur;
    wcd_conn_send(c, &r, NULL, 0);
}

void wcd_handle_frame(wcd_conn *c, const uint8_t *p, size_t n)
{
    c->ctx->requests++;
    Wcodec__V1__Request *q = wcodec__v1__request__unpack(NULL, n, p);
    if (!q) {
        wcd_conn_send_error(c, 0, WC_EPROTO, "a frame of %zu bytes is not a valid Request", n);
        wcd_conn_close(c, "unparseable frame");
        return;
    }
    if (!c->hello_done && q->body_case != WCODEC__V1__REQUEST__BODY_HELLO) {
        wcd_conn_send_error(c, q->id, WC_EPROTO, "the first request must be Hello");
        wcd_conn_close(c, "no Hello");
    } else {
        switch (q->body_case) {
        case WCODEC__V1__REQUEST__BODY_HELLO: on_hello(c, q->id, q->hello); break;
        case WCODEC__V1__REQUEST__BODY_OPEN: on_open(c, q->id, q->open); break;
        case WCODEC__V1__REQUEST__BODY_LIST: on_list(c, q->id, q->list); break;
        case WCODEC__V1__REQUEST__BODY_GET: on_get(c, q->id, q->get); break;
        case WCODEC__V1__REQUEST__BODY_RELEASE: on_release(c, q->id, q->release); break;
        case WCODEC__V1__REQUEST__BODY_STATS: wcd_on_stats(c, q->id); break;
        case WCODEC__V1__REQUEST__BODY_EVICT: on_evict(c, q->id, q->evict); break;
        case WCODEC__V1__REQUEST__BODY_UNLOAD: on_unload(c, q->id, q->unload); break;
        default:
            /* A newer client's request type: refuse it, keep the connection. */
            wcd_conn_send_error(c, q->id, WC_EUNSUPPORTED, "unknown request type");
            break;
        }
    }
    wcodec__v1__request__free_unpacked(q, NULL);
}
