/* The models the daemon serves and their lifetime; the tensors and memory
 * of each are in pool.c.
 *
 * A model is retired (unloaded) on request, when its file changes in place,
 * and, once nothing of it is in use, when its file was removed or replaced:
 * a retired model serves nothing more, and is freed, file closed, when its
 * last pinned or leased tensor goes idle. m->busy counts those tensors: an
 * entry is busy exactly while it is off its pool's LRU list. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wcd.h"

void wcd_cache_init(wcd_cache *c, uv_loop_t *loop)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->next_model_id = 1;
}

int wcd_cache_add_pool(wcd_cache *c, wcd_pool *p, wc_err *err)
{
    if (c->n_pools == WCD_MAX_POOLS) return wc_fail(err, WC_ELIMIT, "more than %d memory pools", WCD_MAX_POOLS);
    p->cache = c;
    p->ix = c->n_pools;
    c->pools[c->n_pools++] = p;
    return 0;
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
    for (unsigned k = 0; k < m->n_views; k++) {
        wcd_view *v = &m->views[k];
        for (uint32_t i = 0; v->entries && i < m->n; i++)
            if (v->entries[i]) wcd_entry_free(v->entries[i]);
        free(v->entries);
    }
    wc_file_close(m->f);
    if (m->fd >= 0) close(m->fd);
    free(m->label);
    free(m->path);
    free(m);
}

void wcd_cache_fini(wcd_cache *c)
{
    while (c->models) model_free(c, c->models);
    for (unsigned i = 0; i < c->n_pools; i++) {
        wcd_pool *p = c->pools[i];
        p->be->close(p);
    }
    c->n_pools = 0;
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
    }
    if (!m || !m->label || !m->path || n > UINT32_MAX) {
        if (m) { free(m->label); free(m->path); }
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

void wcd_model_unused(wcd_cache *c, wcd_model *m)
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
        for (unsigned k = 0; k < m->n_views; k++)
            for (uint32_t i = 0; m->views[k].entries && i < m->n; i++)
                if (m->views[k].entries[i]) leased += m->views[k].entries[i]->leases > 0;
        wcd_log(WCD_LOG_NOTICE, "model %llu (%s) unloaded: %s; %u of its tensors still leased",
                (unsigned long long)m->id, m->label, why, leased);
    }
    if (m->busy) {
        /* Only the idle tensors go now; the rest as they go idle. */
        for (unsigned k = 0; k < m->n_views; k++)
            for (uint32_t i = 0; m->views[k].entries && i < m->n; i++)
                if (m->views[k].entries[i] && m->views[k].entries[i]->in_lru) wcd_entry_free(m->views[k].entries[i]);
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

int wcd_model_view(wcd_model *m, wcd_pool *p, uint32_t rank, uint32_t count, const char *layout, wcd_view **out,
                   wc_err *err)
{
    if (count <= 1) count = 1, rank = 0, layout = "";
    for (unsigned k = 0; k < m->n_views; k++) {
        wcd_view *v = &m->views[k];
        if (v->pool == p && v->rank == rank && v->count == count && !strcmp(v->layout, layout)) {
            *out = v;
            return 0;
        }
    }
    int dim;
    if (count > 1 && (strlen(layout) >= sizeof m->views[0].layout || wc_shard_layout_dim(layout, "", &dim)))
        return wc_fail(err, WC_EINVAL, "%s: layout '%.64s' is not one libwcodec knows (docs/SHARDING.md)", m->label,
                       layout);
    if (m->n_views == WCD_MAX_VIEWS)
        return wc_fail(err, WC_ELIMIT, "%s: served in %d ways (pools and shards) already, the most", m->label,
                       WCD_MAX_VIEWS);
    wcd_view *v = &m->views[m->n_views];
    if (!(v->entries = calloc(m->n ? m->n : 1, sizeof *v->entries)))
        return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
    v->pool = p;
    v->rank = rank;
    v->count = count;
    snprintf(v->layout, sizeof v->layout, "%s", layout);
    m->n_views++;
    *out = v;
    return 0;
}

void wcd_model_decode_failed(wcd_cache *c, wcd_model *m)
{
    /* A file that changed under a decode ends its model (the waiters hold
     * nothing else of it when it is unused). */
    bool in_place;
    const char *why = m->retired ? NULL : file_stale(m, &in_place);
    if (why && in_place) wcd_cache_retire(c, m, why);
    else if (!m->busy) wcd_model_unused(c, m);
}
