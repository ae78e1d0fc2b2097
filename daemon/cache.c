/* The tensor cache: decoded tensors keyed by (model, tensor index), charged
 * to a byte budget. An entry is pinned while a request waits for it and
 * leased while a connection holds it; only entries with neither sit on the
 * LRU list, so eviction never touches a tensor somebody uses. A tensor that
 * several requests want is decoded once: later requests wait on the entry.
 *
 * A model is retired (unloaded) on request, when its file changes in place,
 * and, once nothing of it is in use, when its file was removed or replaced:
 * a retired model serves nothing more, and is freed, file closed, when its
 * last pinned or leased tensor goes idle. m->busy counts those tensors: an
 * entry is busy exactly while it is off the LRU list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcd.h"

void wcd_cache_init(wcd_cache *c, uv_loop_t *loop, const wcd_backend *b, uint64_t budget)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->backend = b;
    c->budget = budget;
    c->next_model_id = 1;
}

static void lru_remove(wcd_cache *c, wcd_entry *e)
{
    if (!e->in_lru) return;
    e->model->busy++;
    if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
    else c->lru_head = e->lru_next;
    if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
    else c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
    e->in_lru = false;
}

static void lru_push(wcd_cache *c, wcd_entry *e)
{
    e->lru_prev = c->lru_tail;
    e->lru_next = NULL;
    if (c->lru_tail) c->lru_tail->lru_next = e;
    else c->lru_head = e;
    c->lru_tail = e;
    e->in_lru = true;
    e->model->busy--;
}

/* The one release point of an entry and its allocation. */
static void entry_free(wcd_cache *c, wcd_entry *e)
{
    lru_remove(c, e);
    e->model->busy--;
    e->model->entries[e->index] = NULL;
    c->used -= e->bytes;
    c->n_entries--;
    c->backend->release(&e->alloc);
    free(e);
}

static void evict_lru(wcd_cache *c)
{
    wcd_entry *e = c->lru_head;
    wcd_log(WCD_LOG_DEBUG, "evict %s: tensor %u (%llu bytes)", e->model->label, e->index,
            (unsigned long long)e->bytes);
    c->evictions++;
    entry_free(c, e);
}

/* The one release point of a model: its entries, file and descriptor. */
static void model_free(wcd_cache *c, wcd_model *m)
{
    for (wcd_model **p = &c->models; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (!m->retired) c->n_models--;
    for (uint32_t i = 0; i < m->n; i++)
        if (m->entries[i]) entry_free(c, m->entries[i]);
    wc_file_close(m->f);
    if (m->fd >= 0) close(m->fd);
    free(m->entries);
    free(m->label);
    free(m->path);
    free(m);
}

void wcd_cache_fini(wcd_cache *c)
{
    while (c->lru_head) entry_free(c, c->lru_head);
    while (c->models) model_free(c, c->models);
}

wcd_model *wcd_cache_model(wcd_cache *c, uint64_t id)
{
    for (wcd_model *m = c->models; m; m = m->next)
        if (m->id == id) return m;
    return NULL;
}

wcd_model *wcd_cache_find_model(wcd_cache *c, dev_t dev, ino_t ino)
{
    for (wcd_model *m = c->models; m; m = m->next)
        if (!m->retired && m->dev == dev && m->ino == ino) return m;
    return NULL;
}

int wcd_cache_add_model(wcd_cache *c, int fd, const char *path, const char *label, wc_file *f,
                        unsigned max_models, wcd_model **out, wc_err *err)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        close(fd);
        wc_file_close(f);
        return wc_fail(err, WC_EIO, "%s: fstat: %s", label, strerror(errno));
    }
    /* The path names another file now (the caller swept the removed and
     * changed ones): unused models of the old one go first. */
    for (wcd_model *o = c->models, *next; o; o = next) {
        next = o->next;
        if (!o->retired && !strcmp(o->path, path) && (o->dev != sb.st_dev || o->ino != sb.st_ino)) {
            o->replaced = true;
            if (!o->busy) wcd_cache_retire(c, o, "its file was replaced");
        }
    }
    if (c->n_models >= max_models) {
        close(fd);
        wc_file_close(f);
        return wc_fail(err, WC_ELIMIT, "%s: %u models are open, the configured maximum", label, c->n_models);
    }
    size_t n = wc_file_tensor_count(f);
    wcd_model *m = calloc(1, sizeof *m);
    if (m) {
        m->label = strdup(label);
        m->path = strdup(path);
        m->entries = calloc(n ? n : 1, sizeof *m->entries);
    }
    if (!m || !m->label || !m->path || !m->entries || n > UINT32_MAX) {
        if (m) { free(m->label); free(m->path); free(m->entries); }
        free(m);
        close(fd);
        wc_file_close(f);
        return wc_fail(err, WC_ENOMEM, "%s: out of memory", label);
    }
    m->id = c->next_model_id++;
    m->dev = sb.st_dev;
    m->ino = sb.st_ino;
    m->fd = fd;
    m->size = (uint64_t)sb.st_size;
    m->mtime = sb.st_mtim;
    m->f = f;
    m->n = (uint32_t)n;
    m->next = c->models;
    c->models = m;
    c->n_models++;
    *out = m;
    return 0;
}

/* Why the model's file no longer is what was opened, or NULL. in_place:
 * its bytes changed under us (not a rename), which ends the model at once;
 * the others end it only once unused. */
static const char *file_stale(const wcd_model *m, bool *in_place)
{
    struct stat sb;
    *in_place = false;
    if (fstat(m->fd, &sb) < 0) return "its file cannot be checked";
    if ((uint64_t)sb.st_size != m->size || sb.st_mtim.tv_sec != m->mtime.tv_sec ||
        sb.st_mtim.tv_nsec != m->mtime.tv_nsec) {
        *in_place = true;
        return "its file changed while it was served";
    }
    if (!sb.st_nlink) return "its file was removed or replaced";
    if (m->replaced) return "its file was replaced";
    return NULL;
}

/* A model nothing uses any more: freed if retired or if its file went. */
static void model_unused(wcd_cache *c, wcd_model *m)
{
    bool in_place;
    const char *why = m->retired ? NULL : file_stale(m, &in_place);
    if (why) wcd_cache_retire(c, m, why);
    else if (m->retired) model_free(c, m);
}

void wcd_cache_retire(wcd_cache *c, wcd_model *m, const char *why)
{
    if (!m->retired) {
        m->retired = why;
        c->n_models--;
        uint32_t leased = 0;
        for (uint32_t i = 0; i < m->n; i++)
            if (m->entries[i]) leased += m->entries[i]->leases > 0;
        wcd_log(WCD_LOG_NOTICE, "model %llu (%s) unloaded: %s; %u of its tensors still leased",
                (unsigned long long)m->id, m->label, why, leased);
    }
    if (m->busy) {
        /* Only the idle tensors go now; the rest as they go idle. */
        for (uint32_t i = 0; i < m->n; i++)
            if (m->entries[i] && m->entries[i]->in_lru) entry_free(c, m->entries[i]);
        return;
    }
    model_free(c, m);
}

void wcd_cache_sweep(wcd_cache *c)
{
    for (wcd_model *m = c->models, *next; m; m = next) {
        next = m->next;
        if (m->retired) continue;
        bool in_place;
        const char *why = file_stale(m, &in_place);
        if (why && (in_place || !m->busy)) wcd_cache_retire(c, m, why);
    }
}

static void after_decode(uv_work_t *w, int status);

static void work_decode(uv_work_t *w)
{
    wcd_entry *e = w->data;
    wc_tensor_info ti;
    e->work_status = wc_file_tensor_info(e->model->f, e->index, &ti);
    if (!e->work_status)
        e->work_status = e->cache->backend->decode(e->model->f, e->index, &ti, &e->alloc, &e->work_err);
}

int wcd_cache_acquire(wcd_cache *c, wcd_model *m, uint32_t index, wcd_slot *slot, wc_err *err)
{
    slot->e = NULL;
    wcd_entry *e = m->entries[index];
    if (e) {
        lru_remove(c, e);
        e->pins++;
        slot->e = e;
        if (e->state == WCD_READY) {
            c->hits++;
            return 0;
        }
        slot->next_waiter = e->waiters;
        e->waiters = slot;
        return 1;
    }
    wc_tensor_info ti;
    int r = wc_file_tensor_info(m->f, index, &ti);
    if (r) return wc_fail(err, r, "%s: tensor %u: no info", m->label, index);
    char nbuf[WCD_SHORT_MAX + 8];
    const char *name = wcd_short(ti.name, nbuf, sizeof nbuf);
    uint64_t need = c->backend->footprint(&ti);
    if (need > c->budget)
        return wc_fail(err, WC_EBUDGET, "%s: tensor %s needs %llu bytes, more than the whole budget of %llu",
                    m->label, name, (unsigned long long)need, (unsigned long long)c->budget);
    while (c->used + need > c->budget && c->lru_head) evict_lru(c);
    if (c->used + need > c->budget)
        return wc_fail(err, WC_EBUDGET,
                    "%s: tensor %s needs %llu bytes; budget %llu, of which %llu are leased or being decoded",
                    m->label, name, (unsigned long long)need, (unsigned long long)c->budget,
                    (unsigned long long)c->used);
    e = calloc(1, sizeof *e);
    if (!e) return wc_fail(err, WC_ENOMEM, "%s: tensor %s: out of memory", m->label, name);
    e->model = m;
    e->index = index;
    e->state = WCD_DECODING;
    e->bytes = need;
    e->alloc.fd = -1;
    e->cache = c;
    e->pins = 1;
    e->work.data = e;
    slot->e = e;
    slot->next_waiter = NULL;
    e->waiters = slot;
    m->entries[index] = e;
    m->busy++;
    c->used += need;
    c->n_entries++;
    c->in_flight++;
    r = uv_queue_work(c->loop, &e->work, work_decode, after_decode);
    if (r) {
        e->waiters = NULL;
        entry_free(c, e);
        c->in_flight--;
        slot->e = NULL;
        return wc_fail(err, WC_EIO, "%s: tensor %s: cannot queue the decode: %s", m->label, name, uv_strerror(r));
    }
    return 1;
}

static void maybe_idle(wcd_cache *c, wcd_entry *e)
{
    if (e->pins || e->leases || e->state != WCD_READY) return;
    wcd_model *m = e->model;
    if (m->retired) {
        /* Nothing more is served from it: no use caching. */
        entry_free(c, e);
        if (!m->busy) model_free(c, m);
        return;
    }
    lru_push(c, e);
    /* May free m and e. */
    if (!m->busy) model_unused(c, m);
    while (c->used > c->budget && c->lru_head) evict_lru(c);
}

static void after_decode(uv_work_t *w, int status)
{
    wcd_entry *e = w->data;
    wcd_cache *c = e->cache;
    c->in_flight--;
    int r = status == UV_ECANCELED ? WC_ECANCELED : e->work_status;
    wcd_slot *waiters = e->waiters;
    e->waiters = NULL;
    if (r) {
        wcd_log(WCD_LOG_ERR, "decode %s tensor %u failed: %s", e->model->label, e->index,
                e->work_err.msg[0] ? e->work_err.msg : wc_strerror(r));
        char msg[sizeof e->work_err.msg];
        snprintf(msg, sizeof msg, "%s", e->work_err.msg[0] ? e->work_err.msg : wc_strerror(r));
        /* The waiters' pins die with the entry: detach them first. */
        for (wcd_slot *s = waiters; s; s = s->next_waiter) s->e = NULL;
        wcd_model *m = e->model;
        entry_free(c, e);
        /* A file that changed under a decode ends its model (the waiters
         * hold nothing else of it when it is unused). */
        bool in_place;
        const char *why = m->retired ? NULL : file_stale(m, &in_place);
        if (why && in_place) wcd_cache_retire(c, m, why);
        else if (!m->busy) model_unused(c, m);
        for (wcd_slot *s = waiters, *next; s; s = next) {
            next = s->next_waiter;
            wcd_get_slot_done(s, r, msg);
        }
        return;
    }
    e->state = WCD_READY;
    c->decodes++;
    /* A waiter may finish its request and unpin the entry: walk a copy. */
    for (wcd_slot *s = waiters, *next; s; s = next) {
        next = s->next_waiter;
        wcd_get_slot_done(s, 0, NULL);
    }
}

void wcd_cache_unpin(wcd_cache *c, wcd_entry *e)
{
    e->pins--;
    maybe_idle(c, e);
}

void wcd_cache_pin_to_lease(wcd_cache *c, wcd_entry *e)
{
    e->pins--;
    if (!e->leases++) {
        c->n_leased++;
        c->leased_bytes += e->bytes;
    }
}

void wcd_cache_lease_end(wcd_cache *c, wcd_entry *e)
{
    if (!--e->leases) {
        c->n_leased--;
        c->leased_bytes -= e->bytes;
    }
    maybe_idle(c, e);
}

void wcd_cache_evict(wcd_cache *c, wcd_model *m, uint32_t *n, uint64_t *bytes)
{
    *n = 0;
    *bytes = 0;
    for (wcd_entry *e = c->lru_head, *next; e; e = next) {
        next = e->lru_next;
        if (m && e->model != m) continue;
        (*n)++;
        *bytes += e->bytes;
        c->evictions++;
        entry_free(c, e);
    }
}

void wcd_cache_set_budget(wcd_cache *c, uint64_t budget)
{
    c->budget = budget;
    while (c->used > c->budget && c->lru_head) evict_lru(c);
}
