/* wc_file: a mapped .wcodec file, its directory, and tensor decode. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reader.h"
#include "record.h"
#include "dsp.h"

struct wc_file {
    char *label;
    const uint8_t *map;
    uint64_t size;
    wc_header h;
    wc_entry *e;
    const wc_entry **by_name; /* sorted, for wc_file_find */
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const wc_entry *const *)a)->name, (*(const wc_entry *const *)b)->name);
}

int wc_file_open_fd(wc_file **out, int fd, const char *label, wc_err *err)
{
    *out = NULL;
    wc_file *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(label))) {
        free(f);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    int r;
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        r = wc_fail(err, WC_EIO, "%s: %s", label, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        r = wc_fail(err, WC_EINVAL, "%s: not a regular file", label);
        goto fail;
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            r = wc_fail(err, WC_EIO, "%s: mmap: %s", label, strerror(errno));
            goto fail;
        }
        f->map = m;
    }
    if ((r = wc_container_parse(f->map, f->size, label, &f->h, &f->e, err))) goto fail;
    f->by_name = malloc(sizeof *f->by_name * (f->h.n_tensors ? f->h.n_tensors : 1));
    if (!f->by_name) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < f->h.n_tensors; i++) f->by_name[i] = &f->e[i];
    qsort(f->by_name, f->h.n_tensors, sizeof *f->by_name, cmp_name);
    *out = f;
    return 0;
fail:
    wc_file_close(f);
    return r;
}

int wc_file_open(wc_file **out, const char *path, wc_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *out = NULL;
        return wc_fail(err, WC_EIO, "%s: %s", path, strerror(errno));
    }
    int r = wc_file_open_fd(out, fd, path, err);
    close(fd);
    return r;
}

void wc_file_close(wc_file *f)
{
    if (!f) return;
    if (f->map) munmap((void *)f->map, f->size);
    wc_entries_free(f->e, f->h.n_tensors);
    free(f->by_name);
    free(f->label);
    free(f);
}

size_t wc_file_tensor_count(const wc_file *f) { return f->h.n_tensors; }
uint64_t wc_file_size(const wc_file *f) { return f->size; }
const char *wc_file_label(const wc_file *f) { return f->label; }

int wc_file_tensor_info(const wc_file *f, size_t i, wc_tensor_info *o)
{
    if (i >= f->h.n_tensors) return WC_EINVAL;
    const wc_entry *e = &f->e[i];
    memset(o, 0, sizeof *o);
    o->name = e->name;
    o->dtype = e->dtype;
    o->coding = e->coding;
    o->out_dtype = e->coding == WC_CODING_RANS_I8 ? WC_DT_I8 : e->dtype;
    o->ndim = e->ndim;
    memcpy(o->shape, e->shape, sizeof o->shape);
    o->rows = e->rows;
    o->cols = e->cols;
    o->out_bytes = wc_entry_out_bytes(e);
    o->n_scales = e->flags & WC_ENTRY_HAS_SCALES ? e->rows : 0;
    o->stored_bytes = e->size;
    o->file_offset = e->offset;
    o->tile_rows = e->tile_rows;
    o->tile_cols = e->tile_cols;
    o->n_tiles = e->n_tiles;
    o->n_tables = e->n_tables;
    o->prob_bits = e->prob_bits;
    o->top_distance = e->top_distance;
    return 0;
}

int wc_file_find(const wc_file *f, const char *name)
{
    size_t lo = 0, hi = f->h.n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (!c) return (int)(f->by_name[mid] - f->e);
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return WC_ENOTFOUND;
}

const wc_entry *wc_file_entry(const wc_file *f, size_t i) { return &f->e[i]; }
const uint8_t *wc_file_base(const wc_file *f) { return f->map; }

static wc_dsp dsp_ref, dsp_best;
static pthread_once_t dsp_once = PTHREAD_ONCE_INIT;

static void dsp_init(void)
{
    wc_dsp_init_ref(&dsp_ref);
    wc_dsp_init(&dsp_best, wc_cpu_flags());
}

const wc_dsp *wc_dsp_get(bool reference)
{
    pthread_once(&dsp_once, dsp_init);
    return reference ? &dsp_ref : &dsp_best;
}

int wc_decode_tensor(const wc_file *f, size_t i, void *out, size_t out_size, float *scales,
                     size_t n_scales, wc_err *err)
{
    return wc_decode_tensor_ex(f, i, out, out_size, scales, n_scales, NULL, err);
}

int wc_entry_check_dst(const wc_file *f, const wc_entry *e, size_t out_size, const float *scales,
                       size_t n_scales, wc_err *err)
{
    if (out_size < wc_entry_out_bytes(e))
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': output buffer of %zu bytes, needs %llu",
                       f->label, e->name, out_size, (unsigned long long)wc_entry_out_bytes(e));
    if (scales && (e->flags & WC_ENTRY_HAS_SCALES) && n_scales < e->rows)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': room for %zu scales, needs %llu",
                       f->label, e->name, n_scales, (unsigned long long)e->rows);
    return 0;
}

int wc_record_hash_fail(const wc_file *f, const wc_entry *e, wc_err *err)
{
    return wc_fail(err, WC_ECHECKSUM, "%s: tensor '%s': checksum mismatch over its record [%llu, %llu)", f->label,
                   e->name, (unsigned long long)e->offset, (unsigned long long)(e->offset + e->size));
}

int wc_record_check_hash(const wc_file *f, const wc_entry *e, const uint8_t *rec, wc_err *err)
{
    return wc_hash_differs(e->hash, rec, e->size) ? wc_record_hash_fail(f, e, err) : 0;
}

int wc_decode_tensor_ex(const wc_file *f, size_t i, void *out, size_t out_size, float *scales,
                        size_t n_scales, const wc_decode_opts *o, wc_err *err)
{
    if (i >= f->h.n_tensors) return wc_fail(err, WC_EINVAL, "%s: no tensor %zu", f->label, i);
    const wc_entry *e = &f->e[i];
    const uint8_t *rec = f->map + e->offset;
    int r = wc_entry_check_dst(f, e, out_size, scales, n_scales, err);
    if (!r) r = wc_record_check_hash(f, e, rec, err);
    if (r) return r;
    if (e->coding == WC_CODING_RAW) {
        memcpy(out, rec, e->size);
        return 0;
    }
    wc_rec head;
    if ((r = wc_rec_parse(&head, e, rec, f->label, err))) return r;
    r = wc_record_decode(wc_dsp_get(o && o->reference), &head, out, scales, o && o->threads > 1 ? o->threads : 1,
                         f->label, err);
    wc_rec_free(&head);
    return r;
}

int wc_file_verify(const wc_file *f, wc_err *err)
{
    for (size_t i = 0; i < f->h.n_tensors; i++) {
        const wc_entry *e = &f->e[i];
        size_t n = wc_entry_out_bytes(e);
        void *buf = malloc(n ? n : 1);
        if (!buf) return wc_fail(err, WC_ENOMEM, "out of memory");
        int r = wc_decode_tensor(f, i, buf, n, NULL, 0, err);
        free(buf);
        if (r) return r;
    }
    return 0;
}
