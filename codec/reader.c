/* wc_file: an open .wcodec file, its directory, and tensor decode.
 *
 * The file keeps its own descriptor and reads everything through it with
 * pread: the header and the directory once, at open, and each record when
 * it is decoded, into buffers of that call (decode_coded). Nothing is
 * mapped: a mapping of a file that shrinks kills the process with SIGBUS
 * on the next touch, while a read past the new end is an error; and the
 * descriptor, not the name, is what every later read goes through, so a
 * file replaced by rename or a relative path after a chdir still reads the
 * file that was opened. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "reader.h"
#include "record.h"
#include "dsp.h"

struct wc_file {
    char *label;
    int fd;       /* owned */
    uint64_t size;
    wc_header h;
    wc_entry *e;
    const wc_entry **by_name; /* sorted, for wc_file_find */
};

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const wc_entry *const *)a)->name, (*(const wc_entry *const *)b)->name);
}

int wc_read_fail(const char *label, const wc_entry *e, uint64_t off, uint64_t len, int sys_errno, wc_err *err)
{
    char what[WC_MAX_NAME + 32] = "";
    if (e) snprintf(what, sizeof what, ": tensor '%s'", e->name);
    if (sys_errno)
        return wc_fail(err, WC_EIO, "%s%s: read of %llu bytes at offset %llu: %s", label, what,
                       (unsigned long long)len, (unsigned long long)off, strerror(sys_errno));
    return wc_fail(err, WC_EIO,
                   "%s%s: read of %llu bytes at offset %llu: unexpected end of file (the file shrank "
                   "after it was opened)",
                   label, what, (unsigned long long)len, (unsigned long long)off);
}

static int pread_all(int fd, uint64_t off, uint64_t len, void *buf, int *sys_errno)
{
    for (uint64_t done = 0; done < len;) {
        const size_t want = len - done < (1u << 30) ? (size_t)(len - done) : (1u << 30);
        ssize_t k = pread(fd, (uint8_t *)buf + done, want, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            *sys_errno = k < 0 ? errno : 0;
            return -1;
        }
        done += (uint64_t)k;
    }
    return 0;
}

int wc_file_pread(const wc_file *f, const wc_entry *e, uint64_t off, uint64_t len, void *buf, wc_err *err)
{
    int sys_errno;
    return pread_all(f->fd, off, len, buf, &sys_errno) ? wc_read_fail(f->label, e, off, len, sys_errno, err) : 0;
}

/* The header, then the directory it points to (checked by format.c). */
static int read_directory(wc_file *f, wc_err *err)
{
    uint8_t hdr[WC_HEADER_SIZE];
    const uint64_t n = f->size < WC_HEADER_SIZE ? f->size : WC_HEADER_SIZE;
    int r = wc_file_pread(f, NULL, 0, n, hdr, err);
    if (!r) r = wc_header_parse(hdr, f->size, f->label, &f->h, err);
    if (r) return r;
    uint8_t *dir = malloc(f->h.dir_size ? f->h.dir_size : 1);
    if (!dir) return wc_fail(err, WC_ENOMEM, "out of memory");
    r = wc_file_pread(f, NULL, f->h.dir_offset, f->h.dir_size, dir, err);
    if (!r) r = wc_directory_parse(dir, &f->h, f->label, &f->e, err);
    free(dir);
    return r;
}

/* Takes ownership of fd. */
static int open_owned(wc_file **out, int fd, const char *label, wc_err *err)
{
    *out = NULL;
    wc_file *f = calloc(1, sizeof *f);
    if (!f || !(f->label = strdup(label))) {
        free(f);
        close(fd);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    f->fd = fd;
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
    if ((r = read_directory(f, err))) goto fail;
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

int wc_file_open_fd(wc_file **out, int fd, const char *label, wc_err *err)
{
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        *out = NULL;
        return wc_fail(err, WC_EIO, "%s: duplicating descriptor %d: %s", label, fd, strerror(errno));
    }
    return open_owned(out, own, label, err);
}

int wc_file_open(wc_file **out, const char *path, wc_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *out = NULL;
        return wc_fail(err, WC_EIO, "%s: %s", path, strerror(errno));
    }
    return open_owned(out, fd, path, err);
}

void wc_file_close(wc_file *f)
{
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    wc_entries_free(f->e, f->h.n_tensors);
    free(f->by_name);
    free(f->label);
    free(f);
}

size_t wc_file_tensor_count(const wc_file *f) { return f->h.n_tensors; }
uint64_t wc_file_size(const wc_file *f) { return f->size; }
uint32_t wc_file_version(const wc_file *f) { return f->h.version; }
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
int wc_file_fd(const wc_file *f) { return f->fd; }

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

/* Feeds the record's bytes [h->at, to) to its hash, a stretch at a time
 * through a buffer that stays in cache. */
#define HASH_CHUNK (256u << 10)
static int hash_range(const wc_file *f, const wc_entry *e, wc_rec_hash *h, uint64_t to, wc_err *err)
{
    if (h->at >= to) return 0;
    uint8_t *buf = malloc(to - h->at < HASH_CHUNK ? to - h->at : HASH_CHUNK);
    if (!buf) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    while (!r && h->at < to) {
        const uint64_t n = to - h->at < HASH_CHUNK ? to - h->at : HASH_CHUNK;
        if (!(r = wc_file_pread(f, e, e->offset + h->at, n, buf, err))) XXH3_64bits_update(h->st, buf, n), h->at += n;
    }
    free(buf);
    return r;
}

int wc_record_verify(const wc_file *f, const wc_entry *e, wc_err *err)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) return wc_fail(err, WC_ENOMEM, "out of memory");
    XXH3_64bits_reset(st);
    wc_rec_hash h = {st, 0};
    int r = hash_range(f, e, &h, e->size, err);
    if (!r && wc_hash_value_differs(e->hash, XXH3_64bits_digest(st))) r = wc_record_hash_fail(f, e, err);
    XXH3_freeState(st);
    return r;
}

typedef struct rec_ctx {
    const wc_file *f;
    const wc_entry *e;
} rec_ctx;

static int read_rec(void *ctx, uint64_t off, uint64_t len, uint8_t *dst, wc_err *err)
{
    const rec_ctx *c = ctx;
    return wc_file_pread(c->f, c->e, c->e->offset + off, len, dst, err);
}

/* Parses the head (head_r: its read's result) and decodes; *h has seen the
 * record up to where this read it. A read error or WC_ENOMEM comes back as
 * WC_EIO / WC_ENOMEM; a format or stream error is for the checksum to judge. */
static int parse_and_decode(const wc_file *f, const wc_entry *e, const uint8_t *head, wc_rec_hash *h,
                            uint8_t *out, float *scales, const wc_decode_opts *o, wc_err *err)
{
    wc_rec rec;
    int r = wc_rec_parse(&rec, e, head, f->label, err);
    if (r) return r;
    const int threads = o && o->threads > 1 ? o->threads : 1;
    /* one decoding thread reads the streams in order and feeds the hash
     * (any bytes before the first stream go first); several leave the
     * whole rest of the record to it afterwards */
    if (threads == 1) r = hash_range(f, e, h, e->tiles_off + wc_rec_begin(&rec, 0), err);
    if (!r) {
        rec_ctx ctx = {f, e};
        const wc_rec_src src = {read_rec, &ctx};
        r = wc_record_decode(wc_dsp_get(o && o->reference), &rec, &src, h, out, scales, threads, f->label, err);
    }
    wc_rec_free(&rec);
    return r;
}

/* Reads the coded record of e once, through the file's descriptor: its head
 * into a buffer of this call, each tile's stream by the thread that decodes
 * it into a buffer of that thread (record.c). The record's checksum is
 * judged at the end, over every byte that was read, and comes before what
 * the decode found: a record that fails it is the cause of any format or
 * stream error (out then holds whatever was decoded). */
static int decode_coded(const wc_file *f, const wc_entry *e, uint8_t *out, float *scales, const wc_decode_opts *o,
                        wc_err *err)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t *head = malloc(e->tiles_off);
    int r = st && head ? 0 : wc_fail(err, WC_ENOMEM, "out of memory");
    wc_rec_hash h = {st, 0};
    if (!r) XXH3_64bits_reset(st);
    if (!r && !(r = wc_file_pread(f, e, e->offset, e->tiles_off, head, err))) {
        XXH3_64bits_update(st, head, e->tiles_off);
        h.at = e->tiles_off;
        r = parse_and_decode(f, e, head, &h, out, scales, o, err);
    }
    if (!r || r == WC_EFORMAT || r == WC_ECORRUPT) {
        wc_err herr;
        const int hr = hash_range(f, e, &h, e->size, &herr);
        if (hr && err) *err = herr;
        if (hr) r = hr;
        else if (wc_hash_value_differs(e->hash, XXH3_64bits_digest(st))) r = wc_record_hash_fail(f, e, err);
    }
    free(head);
    XXH3_freeState(st);
    return r;
}

int wc_decode_tensor_ex(const wc_file *f, size_t i, void *out, size_t out_size, float *scales,
                        size_t n_scales, const wc_decode_opts *o, wc_err *err)
{
    if (i >= f->h.n_tensors) return wc_fail(err, WC_EINVAL, "%s: no tensor %zu", f->label, i);
    const wc_entry *e = &f->e[i];
    int r = wc_entry_check_dst(f, e, out_size, scales, n_scales, err);
    if (r) return r;
    if (e->coding == WC_CODING_RANS_I8) return decode_coded(f, e, out, scales, o, err);
    /* a raw record is its tensor: read straight into place */
    if (!(r = wc_file_pread(f, e, e->offset, e->size, out, err))) r = wc_record_check_hash(f, e, out, err);
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
