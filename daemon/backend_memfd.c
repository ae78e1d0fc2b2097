/* CPU backend: each tensor decodes into its own memfd, which is then sealed
 * so that no peer that receives the fd can write, shrink or grow it; the
 * daemon keeps no mapping, so the pages are charged once and shared by
 * every client that maps them. Layout: data at 0, the scales at the next
 * 64-byte boundary, the whole rounded to a page. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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

static void layout(const wc_tensor_info *ti, wcd_alloc *a)
{
    a->offset = 0;
    a->length = ti->out_bytes;
    a->scales_offset = ALIGN_UP(ti->out_bytes, 64);
    a->n_scales = ti->n_scales;
    uint64_t end = a->scales_offset + ti->n_scales * sizeof(float);
    a->map_length = ALIGN_UP(end ? end : 1, page_size());
}

static uint64_t memfd_footprint(const wc_tensor_info *ti)
{
    wcd_alloc a;
    layout(ti, &a);
    return a.map_length;
}

static int memfd_decode(const wc_file *f, size_t index, const wc_tensor_info *ti, wcd_alloc *a,
                        wc_err *err)
{
    layout(ti, a);
    a->fd = -1;
    char name[64];
    snprintf(name, sizeof name, "wcodec:%.56s", ti->name);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) goto sys;
    if (ftruncate(fd, (off_t)a->map_length) < 0) goto sys;
    void *p = mmap(NULL, a->map_length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) goto sys;
    int r = wc_decode_tensor(f, index, p, ti->out_bytes,
                             ti->n_scales ? (float *)((char *)p + a->scales_offset) : NULL,
                             ti->n_scales, err);
    /* The write seal needs every writable mapping gone. */
    munmap(p, a->map_length);
    if (r) {
        close(fd);
        return r;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) goto sys;
    a->fd = fd;
    return 0;
sys:;
    int e = errno;
    if (fd >= 0) close(fd);
    if (err) {
        snprintf(err->msg, sizeof err->msg, "%s: tensor %s: memfd of %llu bytes: %s", wc_file_label(f),
                 ti->name, (unsigned long long)a->map_length, strerror(e));
        err->code = e == ENOMEM || e == ENOSPC ? WC_ENOMEM : WC_EIO;
    }
    return e == ENOMEM || e == ENOSPC ? WC_ENOMEM : WC_EIO;
}

static void memfd_release(wcd_alloc *a)
{
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
}

const wcd_backend wcd_backend_memfd = {
    .name = "memfd",
    .kind = WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD,
    .footprint = memfd_footprint,
    .decode = memfd_decode,
    .release = memfd_release,
};
