/* Requests: a frame is unpacked into a Request, validated field by field,
 * and answered. A frame that is not a Request at all closes the connection
 * (the stream can no longer be trusted); a well-formed request with bad
 * fields gets an error reply and the connection goes on. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcd.h"

static void fill_info(Wcodec__V1__TensorInfo *ti, const wc_tensor_info *in, const wcd_model *m,
                      uint32_t index)
{
    wcodec__v1__tensor_info__init(ti);
    ti->name = (char *)in->name;
    ti->dtype = (uint32_t)in->dtype;
    ti->out_dtype = (uint32_t)in->out_dtype;
    ti->n_shape = in->ndim;
    ti->shape = (uint64_t *)in->shape;
    ti->out_bytes = in->out_bytes;
    ti->n_scales = in->n_scales;
    ti->coding = (uint32_t)in->coding;
    ti->stored_bytes = in->stored_bytes;
    ti->cached = m->entries[index] && m->entries[index]->state == WCD_READY;
}

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
    hr.backend = c->ctx->cache.backend->kind;
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
            fill_info(&ti[n], &in[n], m, i);
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
            wcd_slot *s = &g->slots[i];
            if (!s->e) continue;
            /* The cache is reached through the entry: the connection may be gone. */
            wcd_cache_unpin(s->e->cache, s->e);
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
        if (g->slots[i].e) wcd_cache_unpin(g->slots[i].e->cache, g->slots[i].e);
    get_free(g);
}

int wcd_get_next_frame(wcd_get *g, unsigned max_fds, uint8_t **data, size_t *len, int *fds, int *nfds)
{
    wcd_conn *c = g->conn;
    wcd_cache *cache = &c->ctx->cache;
    Wcodec__V1__Tensor t[WCD_FDS_PER_FRAME];
    Wcodec__V1__Tensor *tp[WCD_FDS_PER_FRAME];
    Wcodec__V1__TensorInfo ti[WCD_FDS_PER_FRAME];
    Wcodec__V1__Location loc[WCD_FDS_PER_FRAME];
    wc_tensor_info in[WCD_FDS_PER_FRAME];
    if (max_fds > WCD_FDS_PER_FRAME) max_fds = WCD_FDS_PER_FRAME;
    size_t n = 0;
    for (uint32_t i = g->sent; i < g->n && n < max_fds; i++, n++) {
        wcd_entry *e = g->slots[i].e;
        wc_file_tensor_info(e->model->f, e->index, &in[n]);
        wcodec__v1__tensor__init(&t[n]);
        fill_info(&ti[n], &in[n], e->model, e->index);
        wcodec__v1__location__init(&loc[n]);
        loc[n].kind = cache->backend->kind;
        loc[n].fd_index = (uint32_t)n;
        loc[n].map_length = e->alloc.map_length;
        loc[n].offset = e->alloc.offset;
        loc[n].length = e->alloc.length;
        loc[n].scales_offset = e->alloc.scales_offset;
        loc[n].n_scales = e->alloc.n_scales;
        t[n].info = &ti[n];
        t[n].location = &loc[n];
        fds[n] = e->alloc.fd;
        tp[n] = &t[n];
    }
    Wcodec__V1__GetTensorsReply gr = WCODEC__V1__GET_TENSORS_REPLY__INIT;
    gr.n_tensor = n;
    gr.tensor = tp;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = g->req_id;
    r.more = g->sent + n < g->n;
    r.fd_count = (uint32_t)n;
    r.body_case = WCODEC__V1__REPLY__BODY_GET;
    r.get = &gr;
    /* Lease ids go in the frame, so the leases are taken first; only
     * memory can fail, and then the connection is closed, which ends them. */
    for (size_t k = 0; k < n; k++) {
        wcd_slot *s = &g->slots[g->sent];
        t[k].lease_id = wcd_conn_lease_add(c, s->e);
        if (!t[k].lease_id) return WC_ENOMEM;
        s->e = NULL;
        g->sent++;
        c->pending_leases--;
    }
    if (wcd_frame_pack_reply(&r, data, len)) return WC_ENOMEM;
    *nfds = (int)n;
    return r.more ? 1 : 0;
}

void wcd_get_slot_done(wcd_slot *s, int status, const char *msg)
{
    wcd_get *g = s->get;
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
    wcd_get *g = calloc(1, sizeof *g + n * sizeof(wcd_slot));
    if (!g) {
        wcd_conn_send_error(c, id, WC_ENOMEM, "get on %s: out of memory", m->label);
        return;
    }
    g->conn = c;
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
        g->slots[k].get = g;
        g->slots[k].index = (uint32_t)idx;
        k++;
    }
    /* pending counts the acquisitions still to come back, plus one for this
     * loop, so that a slot finishing early cannot complete the request. */
    g->pending = 1;
    wc_err err = {0};
    for (uint32_t i = 0; i < n; i++) {
        int r = wcd_cache_acquire(&c->ctx->cache, m, g->slots[i].index, &g->slots[i], &err);
        if (r < 0) {
            g->status = r;
            snprintf(g->msg, sizeof g->msg, "%s", err.msg);
            break;
        }
        if (r == 1) g->pending++;
    }
    if (g->pending > 1) {
        c->inflight++;
        g->next = c->gets;
        if (c->gets) c->gets->prev = g;
        c->gets = g;
        if (--g->pending == 0) get_finish(g);  /* not reached: the waits are asynchronous */
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
        wcd_cache_lease_end(&c->ctx->cache, e);
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

static void on_stats(wcd_conn *c, uint64_t id)
{
    wcd_ctx *ctx = c->ctx;
    wcd_cache *k = &ctx->cache;
    Wcodec__V1__StatsReply s = WCODEC__V1__STATS_REPLY__INIT;
    s.uptime_ms = uv_now(ctx->loop) - ctx->start_ms;
    s.connections = ctx->n_conns;
    s.models = k->n_models;
    s.budget_bytes = k->budget;
    s.cached_bytes = k->used;
    s.cached_tensors = k->n_entries;
    s.leased_bytes = k->leased_bytes;
    s.leased_tensors = k->n_leased;
    s.leases = ctx->total_leases;
    s.decodes = k->decodes;
    s.hits = k->hits;
    s.evictions = k->evictions;
    s.requests = ctx->requests;
    s.errors = ctx->errors;
    s.decodes_in_flight = k->in_flight;
    s.conn_leases = c->live_leases;
    s.queued_bytes = ctx->out_bytes;
    for (wcd_conn *o = ctx->conns; o; o = o->next) s.fds_in_flight += o->fds_unread;
    for (unsigned i = 0; i < ctx->n_linger; i++) s.fds_in_flight += ctx->linger[i].unread;
    s.lingering = ctx->n_linger;
    self_usage(&s.rss_bytes, &s.open_fds);
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_STATS;
    r.stats = &s;
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
    for (uint32_t i = 0; i < m->n; i++)
        if (m->entries[i]) ur.leased_tensors += m->entries[i]->leases > 0;
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
        case WCODEC__V1__REQUEST__BODY_STATS: on_stats(c, q->id); break;
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
