/* CPU backend: each tensor decodes into its own memfd, which is then sealed
 * so that no peer that receives the fd can write, shrink or grow it; the
 * daemon keeps no mapping, so the pages are charged once and shared by
 * every client that maps them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wcd.h"

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

static uint64_t page_size(void)
{
    static uint64_t p;
    if (!p) p = (uint64_t)sysconf(_SC_PAGESIZE);
    return p;
}

/* Data at 0, the scales at the next 64-byte boundary, the whole rounded
 * to a page: the block is the memfd. */
static void memfd_layout(const wcd_pool *p, const wc_tensor_info *ti, wcd_place *pl)
{
    (void)p;
    pl->offset = 0;
    pl->length = ti->out_bytes;
    pl->scales_offset = ALIGN_UP(ti->out_bytes, 64);
    pl->n_scales = ti->n_scales;
    uint64_t end = pl->scales_offset + ti->n_scales * sizeof(float);
    pl->span = ALIGN_UP(end ? end : 1, page_size());
}

static int memfd_block_new(wcd_pool *p, wcd_block *b, uint64_t size, const wcd_entry *first, wc_err *err)
{
    (void)p;
    /* Named by its tensor: what a client's /proc/PID/maps shows. */
    wc_tensor_info ti;
    char name[64] = "wcodec";
    if (!wc_file_tensor_info(b->model->f, first->index, &ti)) snprintf(name, sizeof name, "wcodec:%.56s", ti.name);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return wc_fail(err, e == ENOMEM || e == ENOSPC ? WC_ENOMEM : WC_EIO, "%s: memfd of %llu bytes: %s",
                       b->model->label, (unsigned long long)size, strerror(e));
    }
    b->fd = fd;
    b->size = size;
    return 0;
}

static void memfd_block_free(wcd_pool *p, wcd_block *b)
{
    (void)p;
    if (b->fd >= 0) close(b->fd);
    b->fd = -1;
}

/* One tensor's decode on a libuv pool thread: the tensors of a batch decode
 * in parallel, as many at once as the pool has threads. */
typedef struct memfd_work {
    uv_work_t w;
    wcd_entry *e;
    int status;
    wc_err err;
} memfd_work;

static void work_decode(uv_work_t *w)
{
    memfd_work *mw = w->data;
    wcd_entry *e = mw->e;
    const wcd_place *pl = &e->at;
    int fd = e->block->fd;
    wc_tensor_info ti;
    wc_shard_info si;
    if ((mw->status = wcd_entry_info(e, &ti, &si))) return;
    void *p = mmap(NULL, pl->span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int en = errno;
        mw->status = wc_fail(&mw->err, en == ENOMEM ? WC_ENOMEM : WC_EIO, "%s: tensor %s: map of its memfd (%llu bytes): %s",
                             wc_file_label(e->model->f), ti.name, (unsigned long long)pl->span, strerror(en));
        return;
    }
    float *scales = ti.n_scales ? (float *)((char *)p + pl->scales_offset) : NULL;
    mw->status = e->count > 1 ? wc_decode_tensor_shard(e->model->f, e->index, e->dim, e->rank, e->count, p,
                                                       ti.out_bytes, scales, ti.n_scales, &mw->err)
                              : wc_decode_tensor(e->model->f, e->index, p, ti.out_bytes, scales, ti.n_scales, &mw->err);
    /* The write seal needs every writable mapping gone. */
    munmap(p, pl->span);
    if (mw->status) return;
    /* No peer that receives the fd can write, shrink or grow it. */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
        mw->status = wc_fail(&mw->err, WC_EIO, "%s: tensor %s: sealing its memfd: %s", wc_file_label(e->model->f),
                             ti.name, strerror(errno));
}

static void after_decode(uv_work_t *w, int status)
{
    memfd_work *mw = w->data;
    int r = status == UV_ECANCELED ? WC_ECANCELED : mw->status;
    wcd_entry *e = mw->e;
    char msg[sizeof mw->err.msg];
    snprintf(msg, sizeof msg, "%s", mw->err.msg);
    free(mw);
    wcd_cache_decoded(e, r, msg);
}

static int memfd_submit(wcd_pool *p, wcd_model *m, wcd_entry **es, uint32_t n, wc_err *err)
{
    for (uint32_t i = 0; i < n; i++)
        if (!(es[i]->work = calloc(1, sizeof(memfd_work)))) {
            for (uint32_t k = 0; k <= i; k++) free(es[k]->work), es[k]->work = NULL;
            return wc_fail(err, WC_ENOMEM, "%s: out of memory", m->label);
        }
    for (uint32_t i = 0; i < n; i++) {
        memfd_work *mw = es[i]->work;
        mw->e = es[i];
        mw->w.data = mw;
        /* Fails only without a work callback. */
        uv_queue_work(p->cache->loop, &mw->w, work_decode, after_decode);
    }
    return 0;
}

static void memfd_close(wcd_pool *p)
{
    free(p);
}

const wcd_backend wcd_backend_memfd = {
    .name = "memfd",
    .kind = WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD,
    .shared_blocks = false,
    .layout = memfd_layout,
    .block_new = memfd_block_new,
    .block_free = memfd_block_free,
    .submit = memfd_submit,
    .close = memfd_close,
};
