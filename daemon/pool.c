/* Pools, blocks and entries: where decoded tensors live and for how long.
 *
 * An entry is pinned while a request waits for it and leased while a
 * connection holds it; only entries with neither sit on their pool's LRU
 * list, so eviction never touches a tensor somebody uses. A tensor that
 * several requests want is decoded once: later requests wait on the entry.
 * The tensors one request misses in a pool are placed and decoded as one
 * batch (a GPU decodes them in one pass of its pipeline).
 *
 * Memory is charged by block: a memfd per tensor on the host, an arena per
 * batch on a GPU (whole granules), into which later tensors of the same
 * model are placed where they fit (wcd_spans). A block is freed when its
 * last entry goes; evicting makes room only as blocks empty. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wcd.h"

static void lru_remove(wcd_entry *e)
{
    if (!e->in_lru) return;
    wcd_pool *p = e->pool;
    e->model->busy++;
    if (e->lru_prev) e->lru_prev->lru_next = e->lru_next;
    else p->lru_head = e->lru_next;
    if (e->lru_next) e->lru_next->lru_prev = e->lru_prev;
    else p->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
    e->in_lru = false;
}

static void lru_push(wcd_entry *e)
{
    wcd_pool *p = e->pool;
    e->lru_prev = p->lru_tail;
    e->lru_next = NULL;
    if (p->lru_tail) p->lru_tail->lru_next = e;
    else p->lru_head = e;
    p->lru_tail = e;
    e->in_lru = true;
    e->model->busy--;
}

static void block_free(wcd_pool *p, wcd_block *b)
{
    if (b->prev) b->prev->next = b->next;
    else p->blocks = b->next;
    if (b->next) b->next->prev = b->prev;
    p->used -= b->size;
    p->n_blocks--;
    p->be->block_free(p, b);
    if (b->shared) wcd_spans_deinit(&b->spans);
    free(b);
}

static int block_new(wcd_pool *p, wcd_model *m, uint64_t size, const wcd_entry *first, wcd_block **out,
                     wc_err *err)
{
    wcd_block *b = calloc(1, sizeof *b);
    if (!b) return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
    b->pool = p;
    b->model = m;
    b->fd = -1;
    b->shared = p->be->shared_blocks;
    int r = p->be->block_new(p, b, size, first, err);
    if (r) {
        free(b);
        return r;
    }
    /* Ranges are 256-byte aligned: where the decode kernels' stores want
     * every tensor to start. */
    if (b->shared && wcd_spans_init(&b->spans, b->size, 256)) {
        p->be->block_free(p, b);
        free(b);
        return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
    }
    b->id = ++p->cache->next_block_id;
    b->next = p->blocks;
    if (p->blocks) p->blocks->prev = b;
    p->blocks = b;
    p->used += b->size;
    p->n_blocks++;
    *out = b;
    return 0;
}

/* Takes e out of its block; the block goes with its last entry. */
static void unplace(wcd_entry *e)
{
    wcd_block *b = e->block;
    if (!b) return;
    e->block = NULL;
    if (b->shared) wcd_spans_free(&b->spans, e->at.offset, e->at.span);
    b->tensor_bytes -= e->at.span;
    e->pool->tensor_bytes -= e->at.span;
    if (!--b->entries) block_free(e->pool, b);
}

static void put(wcd_entry *e, wcd_block *b, uint64_t off)
{
    e->block = b;
    e->at.offset += off;
    e->at.scales_offset += off;
    b->entries++;
    b->tensor_bytes += e->at.span;
    e->pool->tensor_bytes += e->at.span;
}

/* The one release point of an entry. */
void wcd_entry_free(wcd_entry *e)
{
    wcd_pool *p = e->pool;
    lru_remove(e);
    e->model->busy--;
    e->view->entries[e->index] = NULL;
    p->n_entries--;
    unplace(e);
    free(e);
}

static void evict_lru(wcd_pool *p)
{
    wcd_entry *e = p->lru_head;
    wcd_log(WCD_LOG_DEBUG, "evict %s: tensor %u from %s (%llu bytes)", e->model->label, e->index, p->name,
            (unsigned long long)e->at.span);
    p->evictions++;
    wcd_entry_free(e);
}

/* Puts the n new entries in blocks: shared blocks of the model that have
 * room first, then one new block for the rest, after evicting what must go
 * for it to fit the budget. On error nothing is placed. */
static int place(wcd_pool *p, wcd_model *m, wcd_entry **es, uint32_t n, wc_err *err)
{
    uint64_t rest = 0;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off;
        wcd_block *b = NULL;
        if (p->be->shared_blocks)
            for (b = p->blocks; b; b = b->next)
                if (b->model == m && !wcd_spans_alloc(&b->spans, es[i]->at.span, &off)) break;
        if (b) put(es[i], b, off);
        else rest += es[i]->at.span, k++;
    }
    if (!k) return 0;
    int r;
    /* What the message names: the tensor, when one is missing. */
    char what[WCD_SHORT_MAX + 40] = "1 tensor needs";
    if (k == 1) {
        wc_tensor_info ti;
        char nbuf[WCD_SHORT_MAX + 8];
        for (uint32_t i = 0; i < n; i++)
            if (!es[i]->block && !wc_file_tensor_info(m->f, es[i]->index, &ti))
                snprintf(what, sizeof what, "tensor %s needs", wcd_short(ti.name, nbuf, sizeof nbuf));
    } else {
        snprintf(what, sizeof what, "%u tensors need", k);
    }
    if (rest > p->budget) {
        r = wc_fail(err, WC_EBUDGET, "%s: %s %llu bytes of %s, more than the whole budget of %llu", m->label, what,
                    (unsigned long long)rest, p->name, (unsigned long long)p->budget);
        goto undo;
    }
    while (p->used + rest > p->budget && p->lru_head) evict_lru(p);
    if (p->used + rest > p->budget) {
        r = wc_fail(err, WC_EBUDGET, "%s: %s %llu bytes of %s; budget %llu, of which %llu are leased or being decoded",
                    m->label, what, (unsigned long long)rest, p->name, (unsigned long long)p->budget,
                    (unsigned long long)p->used);
        goto undo;
    }
    wcd_block *b = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (es[i]->block) continue;
        uint64_t off = 0;
        if (!p->be->shared_blocks || !b) {
            if ((r = block_new(p, m, p->be->shared_blocks ? rest : es[i]->at.span, es[i], &b, err))) goto undo;
        }
        /* Fits: the block was sized for the rest. */
        if (b->shared) wcd_spans_alloc(&b->spans, es[i]->at.span, &off);
        put(es[i], b, off);
    }
    return 0;
undo:
    for (uint32_t i = 0; i < n; i++) unplace(es[i]);
    return r;
}

/* ti, the tensor's info, made the entry's: its shard's shape, bytes and
 * scales (si->dim -1 for a whole tensor). */
static int apply_shard(const wcd_entry *e, wc_tensor_info *ti, wc_shard_info *si)
{
    int r;
    memset(si, 0, sizeof *si);
    si->dim = -1;
    if (e->count <= 1) return 0;
    if ((r = wc_shard_info_get(e->model->f, e->index, e->dim, e->rank, e->count, si, NULL))) return r;
    /* what the entry holds is the shard */
    ti->ndim = si->ndim;
    memcpy(ti->shape, si->shape, sizeof ti->shape);
    ti->out_bytes = si->out_bytes;
    ti->n_scales = si->n_scales;
    return 0;
}

int wcd_entry_info(const wcd_entry *e, wc_tensor_info *ti, wc_shard_info *si)
{
    int r = wc_file_tensor_info(e->model->f, e->index, ti);
    return r ? r : apply_shard(e, ti, si);
}

/* The shard of tensor index a view asks for: the layout's dimension for
 * it, or the whole tensor where the layout replicates it. */
static int entry_shard(const wcd_view *v, wcd_entry *e, const char *name, wc_err *err)
{
    e->dim = -1, e->rank = 0, e->count = 1;
    if (v->count <= 1) return 0;
    int dim;
    int r = wc_shard_layout_dim(v->layout, name, &dim);
    if (r) return wc_fail(err, r, "%s: tensor %s: layout '%s' unknown", e->model->label, name, v->layout);
    if (dim >= 0) e->dim = dim, e->rank = v->rank, e->count = v->count;
    return 0;
}

static wcd_entry *entry_new(wcd_view *v, wcd_model *m, uint32_t index, wcd_claim *cl, int *r, wc_err *err)
{
    wcd_pool *p = v->pool;
    wc_tensor_info ti;
    wc_shard_info si;
    wcd_entry *e = calloc(1, sizeof *e);
    if (!e) {
        *r = wc_fail(err, WC_ENOMEM, "%s: tensor %u: out of memory", m->label, index);
        return NULL;
    }
    e->model = m;
    e->pool = p;
    e->view = v;
    e->index = index;
    if ((*r = wc_file_tensor_info(m->f, index, &ti)) || (*r = entry_shard(v, e, ti.name, err)) ||
        (*r = apply_shard(e, &ti, &si))) {
        if (!err || !err->msg[0]) wc_fail(err, *r, "%s: tensor %u: no info", m->label, index);
        free(e);
        return NULL;
    }
    e->state = WCD_DECODING;
    e->pins = 1;
    p->be->layout(p, &ti, &e->at);
    cl->e = e;
    cl->next_waiter = NULL;
    e->waiters = cl;
    v->entries[index] = e;
    m->busy++;
    p->n_entries++;
    return e;
}

int wcd_cache_acquire(wcd_cache *c, wcd_view *v, wcd_model *m, wcd_claim *claims, uint32_t n, wc_err *err)
{
    (void)c;
    wcd_pool *p = v->pool;
    wcd_entry **fresh = malloc((n ? n : 1) * sizeof *fresh);
    if (!fresh) return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
    uint32_t n_fresh = 0;
    int waiting = 0, r = 0;
    for (uint32_t i = 0; i < n; i++) {
        wcd_claim *cl = &claims[i];
        cl->e = NULL;
        wcd_entry *e = v->entries[cl->index];
        if (!e) {
            if (!(e = entry_new(v, m, cl->index, cl, &r, err))) break;
            fresh[n_fresh++] = e;
            waiting++;
            continue;
        }
        lru_remove(e);
        e->pins++;
        cl->e = e;
        if (e->state == WCD_READY) {
            p->hits++;
            continue;
        }
        cl->next_waiter = e->waiters;
        e->waiters = cl;
        waiting++;
    }
    if (!r && n_fresh) {
        if (!(r = place(p, m, fresh, n_fresh, err))) {
            p->in_flight += n_fresh;
            if ((r = p->be->submit(p, m, fresh, n_fresh, err))) p->in_flight -= n_fresh;
        }
    }
    if (r) {
        /* Nobody else can wait on an entry made here: the loop has not run. */
        for (uint32_t i = 0; i < n_fresh; i++) {
            wcd_entry *e = fresh[i];
            for (wcd_claim *w = e->waiters; w; w = w->next_waiter) w->e = NULL;
            wcd_entry_free(e);
        }
        /* Claims on entries decoding for others stay pinned; they are no
         * longer waiters of this call. */
        for (uint32_t i = 0; i < n; i++) {
            wcd_entry *e = claims[i].e;
            if (!e || e->state == WCD_READY) continue;
            for (wcd_claim **w = &e->waiters; *w; w = &(*w)->next_waiter)
                if (*w == &claims[i]) { *w = claims[i].next_waiter; break; }
        }
    }
    free(fresh);
    return r ? r : waiting;
}

static void maybe_idle(wcd_entry *e)
{
    if (e->pins || e->leases || e->state != WCD_READY) return;
    wcd_model *m = e->model;
    wcd_pool *p = e->pool;
    if (m->retired || p->failed) {
        /* Nothing more is served from it: no use caching. */
        wcd_entry_free(e);
        if (!m->busy) wcd_model_unused(p->cache, m);
        return;
    }
    lru_push(e);
    /* May free m and e. */
    if (!m->busy) wcd_model_unused(p->cache, m);
    while (p->used > p->budget && p->lru_head) evict_lru(p);
}

void wcd_cache_decoded(wcd_entry *e, int status, const char *msg)
{
    wcd_pool *p = e->pool;
    p->in_flight--;
    wcd_claim *waiters = e->waiters;
    e->waiters = NULL;
    e->work = NULL;
    if (status) {
        wcd_log(WCD_LOG_ERR, "decode %s tensor %u on %s failed: %s", e->model->label, e->index, p->name,
                msg && msg[0] ? msg : wc_strerror(status));
        char m_[sizeof(((wc_err *)0)->msg)];
        snprintf(m_, sizeof m_, "%s", msg && msg[0] ? msg : wc_strerror(status));
        /* The waiters' pins die with the entry: detach them first. */
        for (wcd_claim *s = waiters; s; s = s->next_waiter) s->e = NULL;
        wcd_model *m = e->model;
        wcd_entry_free(e);
        wcd_model_decode_failed(p->cache, m);
        for (wcd_claim *s = waiters, *next; s; s = next) {
            next = s->next_waiter;
            s->done(s, status, m_);
        }
        return;
    }
    e->state = WCD_READY;
    p->decodes++;
    /* A waiter may finish its request and unpin the entry: walk a copy. */
    for (wcd_claim *s = waiters, *next; s; s = next) {
        next = s->next_waiter;
        s->done(s, 0, NULL);
    }
}

void wcd_cache_unpin(wcd_entry *e)
{
    e->pins--;
    maybe_idle(e);
}

void wcd_cache_pin_to_lease(wcd_entry *e)
{
    e->pins--;
    if (!e->leases++) {
        e->pool->n_leased++;
        e->pool->leased_bytes += e->at.span;
        e->block->leased++;
    }
}

void wcd_cache_lease_end(wcd_entry *e)
{
    if (!--e->leases) {
        e->pool->n_leased--;
        e->pool->leased_bytes -= e->at.span;
        e->block->leased--;
    }
    maybe_idle(e);
}

void wcd_cache_evict(wcd_cache *c, wcd_model *m, uint32_t *n, uint64_t *bytes)
{
    *n = 0;
    *bytes = 0;
    for (unsigned i = 0; i < c->n_pools; i++) {
        wcd_pool *p = c->pools[i];
        for (wcd_entry *e = p->lru_head, *next; e; e = next) {
            next = e->lru_next;
            if (m && e->model != m) continue;
            (*n)++;
            *bytes += e->at.span;
            p->evictions++;
            wcd_entry_free(e);
        }
    }
}

void wcd_pool_set_budget(wcd_pool *p, uint64_t budget)
{
    p->budget = budget;
    while (p->used > p->budget && p->lru_head) evict_lru(p);
}

void wcd_pool_fail(wcd_pool *p, const char *fmt, ...)
{
    if (p->failed) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->failed_msg, sizeof p->failed_msg, fmt, ap);
    va_end(ap);
    p->failed = p->failed_msg;
    wcd_log(WCD_LOG_ERR, "%s failed: %s; requests go to the other devices or the CPU", p->name, p->failed);
    /* Its idle tensors go now, the rest as they go idle. */
    while (p->lru_head) wcd_entry_free(p->lru_head);
}

wcd_pool *wcd_cache_gpu_pool(wcd_cache *c, const unsigned char *uuid, size_t uuid_len)
{
    for (unsigned i = 0; i < c->n_pools; i++) {
        wcd_pool *p = c->pools[i];
        if (!p->is_gpu || p->failed) continue;
        if (!uuid_len || (uuid_len == 16 && !memcmp(uuid, p->uuid, 16))) return p;
    }
    return NULL;
}

void wcd_cache_totals_get(const wcd_cache *c, wcd_cache_totals *t)
{
    memset(t, 0, sizeof *t);
    for (unsigned i = 0; i < c->n_pools; i++) {
        const wcd_pool *p = c->pools[i];
        t->budget += p->budget;
        t->used += p->used;
        t->leased_bytes += p->leased_bytes;
        t->decodes += p->decodes;
        t->hits += p->hits;
        t->evictions += p->evictions;
        t->n_entries += p->n_entries;
        t->n_leased += p->n_leased;
        t->in_flight += p->in_flight;
    }
}
