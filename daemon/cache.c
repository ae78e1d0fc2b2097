/* The tensor cache: decoded tensors keyed by (model, tensor index), charged
 * to a byte budget. An entry is pinned while a request waits for it and
 * leased while a connection holds it; only entries with neither sit on the
 * LRU list, so eviction never touches a tensor somebody uses. A tensor that
 * several requests want is decoded once: later requests wait on the entry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
}

/* The one release point of an entry and its allocation. */
static void entry_free(wcd_cache *c, wcd_entry *e)
{
    lru_remove(c, e);
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

void wcd_cache_fini(wcd_cache *c)
{
    while (c->lru_head) entry_free(c, c->lru_head);
    wcd_model *m = c->models;
    while (m) {
        wcd_model *next = m->next;
        for (uint32_t i = 0; i < m->n; i++)
            if (m->entries[i]) entry_free(c, m->entries[i]);
        wc_file_close(m->f);
        free(m->entries);
        free(m->label);
        free(m);
        m = next;
    }
    c->models = NULL;
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
        if (m->dev == dev && m->ino == ino) return m;
    return NULL;
}

int wcd_cache_add_model(wcd_cache *c, dev_t dev, ino_t ino, const char *label, wc_file *f,
                        unsigned max_models, wcd_model **out, wc_err *err)
{
    if (c->n_models >= max_models) {
        wc_file_close(f);
        return wc_fail(err, WC_ELIMIT, "%s: %u models are open, the configured maximum", label, c->n_models);
    }
    size_t n = wc_file_tensor_count(f);
    wcd_model *m = calloc(1, sizeof *m);
    if (m) {
        m->label = strdup(label);
        m->entries = calloc(n ? n : 1, sizeof *m->entries);
    }
    if (!m || !m->label || !m->entries || n > UINT32_MAX) {
        if (m) { free(m->label); free(m->entries); }
        free(m);
        wc_file_close(f);
        return wc_fail(err, WC_ENOMEM, "%s: out of memory", label);
    }
    m->id = c->next_model_id++;
    m->dev = dev;
    m->ino = ino;
    m->f = f;
    m->n = (uint32_t)n;
    m->next = c->models;
    c->models = m;
    c->n_models++;
    *out = m;
    return 0;
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
    lru_push(c, e);
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
        entry_free(c, e);
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
