/* Serialising and parsing the header and the tensor directory. */
#include <stdlib.h>
#include <xxhash.h>

#include "format.h"

uint64_t wc_hash(const void *p, size_t n) { return XXH3_64bits(p, n); }

bool wc_hash_differs(uint64_t stored, const void *p, size_t n)
{
    return wc_hash_value_differs(stored, wc_hash(p, n));
}

bool wc_hash_value_differs(uint64_t stored, uint64_t computed)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)stored, (void)computed;
    return false;
#else
    return computed != stored;
#endif
}

void wc_shape_2d(const uint64_t *shape, uint32_t ndim, uint64_t *rows, uint64_t *cols)
{
    uint64_t r = ndim >= 2 ? shape[0] : 1, c = 1;
    for (uint32_t d = ndim >= 2 ? 1 : 0; d < ndim; d++) c *= shape[d];
    *rows = r;
    *cols = c;
}

void wc_tile_rect(const wc_entry *e, uint32_t t, uint64_t *r0, uint64_t *c0, uint32_t *h,
                  uint32_t *w)
{
    uint64_t tr = t / e->tiles_across, tc = t % e->tiles_across;
    *r0 = tr * e->tile_rows;
    *c0 = tc * e->tile_cols;
    *h = (uint32_t)(e->rows - *r0 < e->tile_rows ? e->rows - *r0 : e->tile_rows);
    *w = (uint32_t)(e->cols - *c0 < e->tile_cols ? e->cols - *c0 : e->tile_cols);
}

uint64_t wc_entry_scales_size(const wc_entry *e)
{
    return e->flags & WC_ENTRY_HAS_SCALES ? 4 * e->rows : 0;
}

uint64_t wc_entry_map_size(const wc_entry *e) { return e->n_tables > 1 ? e->rows : 0; }

uint64_t wc_entry_out_bytes(const wc_entry *e)
{
    return e->coding == WC_CODING_RANS_I8 ? e->numel : e->numel * (uint64_t)wc_dtype_size(e->dtype);
}

void wc_header_write(uint8_t out[WC_HEADER_SIZE], const wc_header *h, uint64_t dir_hash)
{
    memset(out, 0, WC_HEADER_SIZE);
    memcpy(out, WC_MAGIC, 8);
    wc_wr16(out + 8, (uint16_t)h->version);
    wc_wr16(out + 10, WC_HEADER_SIZE);
    wc_wr32(out + 12, h->flags);
    wc_wr32(out + 16, h->n_tensors);
    wc_wr64(out + 24, h->dir_offset);
    wc_wr64(out + 32, h->dir_size);
    wc_wr64(out + 40, h->file_size);
    wc_wr64(out + 48, dir_hash);
    wc_wr64(out + 56, wc_hash(out, 56));
}

static size_t entry_size(const wc_entry *e, size_t name_len)
{
    return WC_DIR_FIXED + 8 * e->ndim + (e->coding == WC_CODING_RANS_I8 ? WC_DIR_RANS : 0) + name_len;
}

int wc_entry_write(wc_buf *dir, const wc_entry *e)
{
    size_t nl = strlen(e->name), sz = entry_size(e, nl);
    if (nl == 0 || nl > WC_MAX_NAME) return WC_EINVAL;
    int r = wc_buf_reserve(dir, sz);
    if (r) return r;
    uint8_t *p = dir->data + dir->len;
    memset(p, 0, sz);
    wc_wr16(p, (uint16_t)sz);
    wc_wr16(p + 2, (uint16_t)nl);
    p[4] = (uint8_t)e->dtype;
    p[5] = (uint8_t)e->coding;
    p[6] = (uint8_t)e->ndim;
    p[7] = (uint8_t)e->flags;
    wc_wr64(p + 8, e->offset);
    wc_wr64(p + 16, e->size);
    wc_wr64(p + 24, e->hash);
    uint8_t *q = p + WC_DIR_FIXED;
    for (uint32_t d = 0; d < e->ndim; d++, q += 8) wc_wr64(q, e->shape[d]);
    if (e->coding == WC_CODING_RANS_I8) {
        wc_wr32(q, e->tile_rows);
        wc_wr32(q + 4, e->tile_cols);
        q[8] = (uint8_t)e->prob_bits;
        q[9] = (uint8_t)e->n_tables;
        wc_wr32(q + 12, e->top_distance);
        wc_wr64(q + 16, e->tables_off);
        wc_wr64(q + 24, e->index_off);
        wc_wr64(q + 32, e->tiles_off);
        q += WC_DIR_RANS;
    }
    memcpy(q, e->name, nl);
    dir->len += sz;
    return 0;
}

void wc_entries_free(wc_entry *e, size_t n)
{
    if (!e) return;
    for (size_t i = 0; i < n; i++) free(e[i].name);
    free(e);
}

#define FAIL(code, ...) return wc_fail(err, code, __VA_ARGS__)

/* Checks the fields of a RANS_I8 entry against each other and the record. */
static int check_rans(const wc_entry *e, const char *label, uint64_t at, wc_err *err)
{
    const char *n = e->name;
    if (e->numel == 0)
        FAIL(WC_EFORMAT, "%s: tensor '%s' (directory offset %llu): coded tensor with no elements",
             label, n, (unsigned long long)at);
    const uint32_t max_tables = e->version == 1 ? 1 : WC_MAX_TABLES;
    if (e->prob_bits < 8 || e->prob_bits > 14 || e->n_tables < 1 || e->n_tables > max_tables)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): prob_bits %u or table count %u out of range",
             label, n, (unsigned long long)at, e->prob_bits, e->n_tables);
    if (e->top_distance < 1 || e->top_distance > (e->rows > 1 ? e->rows : 1) ||
        (e->version == 1 && e->top_distance != 1))
        FAIL(WC_EFORMAT, "%s: tensor '%s' (directory offset %llu): top distance %u out of range",
             label, n, (unsigned long long)at, e->top_distance);
    if (e->tile_rows < 1 || e->tile_cols < 1 || e->tile_rows > e->rows || e->tile_cols > e->cols ||
        (uint64_t)e->tile_rows * e->tile_cols > WC_MAX_TILE_WEIGHTS)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): tile %ux%u does not fit a %llux%llu "
             "matrix or exceeds %u weights",
             label, n, (unsigned long long)at, e->tile_rows, e->tile_cols,
             (unsigned long long)e->rows, (unsigned long long)e->cols, WC_MAX_TILE_WEIGHTS);
    uint64_t down = (e->rows + e->tile_rows - 1) / e->tile_rows;
    uint64_t across = (e->cols + e->tile_cols - 1) / e->tile_cols;
    uint64_t tiles = down * across, scales = wc_entry_scales_size(e) + wc_entry_map_size(e);
    if (tiles > UINT32_MAX || e->tables_off < scales || e->index_off < e->tables_off ||
        e->index_off > e->size || (e->size - e->index_off) / WC_TILE_ENTRY < tiles ||
        e->tiles_off != e->index_off + WC_TILE_ENTRY * tiles || e->tiles_off > e->size)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): sections (scales and row map %llu, tables %llu, "
             "index %llu, tiles %llu) do not fit its %llu-byte record",
             label, n, (unsigned long long)at, (unsigned long long)scales,
             (unsigned long long)e->tables_off, (unsigned long long)e->index_off,
             (unsigned long long)e->tiles_off, (unsigned long long)e->size);
    if (e->tiles_off % WC_STREAM_ALIGN)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): tile streams at record offset %llu do not "
             "start at a multiple of %d",
             label, n, (unsigned long long)at, (unsigned long long)e->tiles_off, WC_STREAM_ALIGN);
    return 0;
}

/* Parses the entry at dir[*pos] into e. */
static int parse_entry(const uint8_t *dir, uint64_t dir_size, uint64_t dir_offset, uint64_t *pos,
                       const wc_header *h, const char *label, size_t index, wc_entry *e,
                       wc_err *err)
{
    uint64_t at = dir_offset + *pos, left = dir_size - *pos;
    const uint8_t *p = dir + *pos;
    if (left < WC_DIR_FIXED)
        FAIL(WC_EFORMAT, "%s: directory entry %zu at offset %llu is truncated", label, index,
             (unsigned long long)at);
    size_t sz = wc_rd16(p), nl = wc_rd16(p + 2);
    e->dtype = p[4];
    e->coding = p[5];
    e->version = h->version;
    e->ndim = p[6];
    e->flags = p[7];
    e->offset = wc_rd64(p + 8);
    e->size = wc_rd64(p + 16);
    e->hash = wc_rd64(p + 24);
    if (e->coding > WC_CODING_RANS_I8)
        FAIL(WC_EFORMAT, "%s: directory entry %zu at offset %llu: unknown coding %u", label, index,
             (unsigned long long)at, (unsigned)e->coding);
    if (e->ndim > WC_MAX_DIMS || nl == 0 || nl > WC_MAX_NAME || sz > left ||
        sz != entry_size(e, nl))
        FAIL(WC_EFORMAT,
             "%s: directory entry %zu at offset %llu: inconsistent sizes (entry %zu, name %zu, "
             "%u dims, %llu bytes left)",
             label, index, (unsigned long long)at, sz, nl, e->ndim, (unsigned long long)left);
    const uint8_t *q = p + WC_DIR_FIXED;
    for (uint32_t d = 0; d < e->ndim; d++, q += 8) e->shape[d] = wc_rd64(q);
    if (e->coding == WC_CODING_RANS_I8) {
        e->tile_rows = wc_rd32(q);
        e->tile_cols = wc_rd32(q + 4);
        e->prob_bits = q[8];
        e->n_tables = q[9];
        e->top_distance = wc_rd32(q + 12);
        if (h->version == 1 && e->top_distance == 0) e->top_distance = 1;
        e->tables_off = wc_rd64(q + 16);
        e->index_off = wc_rd64(q + 24);
        e->tiles_off = wc_rd64(q + 32);
        q += WC_DIR_RANS;
    }
    if (memchr(q, 0, nl))
        FAIL(WC_EFORMAT, "%s: directory entry %zu at offset %llu: name holds a NUL byte", label,
             index, (unsigned long long)at);
    if (!(e->name = strndup((const char *)q, nl))) FAIL(WC_ENOMEM, "out of memory");
    *pos += sz;

    const char *n = e->name;
    if (!wc_dtype_size(e->dtype))
        FAIL(WC_EFORMAT, "%s: tensor '%s' (directory offset %llu): unknown dtype %u", label, n,
             (unsigned long long)at, (unsigned)e->dtype);
    e->numel = 1;
    for (uint32_t d = 0; d < e->ndim; d++)
        if (wc_mul_u64(e->numel, e->shape[d], &e->numel) || e->numel > (1ull << 48))
            FAIL(WC_EFORMAT, "%s: tensor '%s' (directory offset %llu): absurd shape", label, n,
                 (unsigned long long)at);
    wc_shape_2d(e->shape, e->ndim, &e->rows, &e->cols);
    if (e->offset < WC_HEADER_SIZE || e->offset > h->dir_offset ||
        e->size > h->dir_offset - e->offset)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): record [%llu, +%llu) is outside the data "
             "area [64, %llu)",
             label, n, (unsigned long long)at, (unsigned long long)e->offset,
             (unsigned long long)e->size, (unsigned long long)h->dir_offset);
    if (e->offset % WC_RECORD_ALIGN)
        FAIL(WC_EFORMAT,
             "%s: tensor '%s' (directory offset %llu): record at offset %llu does not start at a "
             "multiple of %d",
             label, n, (unsigned long long)at, (unsigned long long)e->offset, WC_RECORD_ALIGN);
    if (e->flags & ~WC_ENTRY_HAS_SCALES ||
        (e->flags && e->coding != WC_CODING_RANS_I8))
        FAIL(WC_EFORMAT, "%s: tensor '%s' (directory offset %llu): unknown flags 0x%x", label, n,
             (unsigned long long)at, e->flags);
    if (e->coding == WC_CODING_RAW) {
        if (e->size != e->numel * (uint64_t)wc_dtype_size(e->dtype))
            FAIL(WC_EFORMAT,
                 "%s: tensor '%s' (directory offset %llu): raw record of %llu bytes, shape needs "
                 "%llu",
                 label, n, (unsigned long long)at, (unsigned long long)e->size,
                 (unsigned long long)(e->numel * (uint64_t)wc_dtype_size(e->dtype)));
        return 0;
    }
    int r = check_rans(e, label, at, err);
    if (r) return r;
    e->tiles_down = (uint32_t)((e->rows + e->tile_rows - 1) / e->tile_rows);
    e->tiles_across = (uint32_t)((e->cols + e->tile_cols - 1) / e->tile_cols);
    e->n_tiles = e->tiles_down * e->tiles_across;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(wc_entry *const *)a)->name, (*(wc_entry *const *)b)->name);
}

int wc_header_parse(const uint8_t *base, uint64_t file_size, const char *label, wc_header *h, wc_err *err)
{
    if (file_size < WC_HEADER_SIZE)
        FAIL(WC_EFORMAT, "%s: %llu bytes, shorter than the %d-byte header (truncated?)", label,
             (unsigned long long)file_size, WC_HEADER_SIZE);
    if (memcmp(base, WC_MAGIC, 8))
        FAIL(WC_EFORMAT, "%s: not a .wcodec file (wrong magic at offset 0)", label);
    if (wc_hash_differs(wc_rd64(base + 56), base, 56))
        FAIL(WC_ECHECKSUM, "%s: header checksum mismatch (bytes 0..55)", label);
    h->version = wc_rd16(base + 8);
    if (h->version < 1 || h->version > WC_FORMAT_VERSION)
        FAIL(WC_EVERSION, "%s: format version %u at offset 8; this build reads versions 1 to %d",
             label, h->version, WC_FORMAT_VERSION);
    h->flags = wc_rd32(base + 12);
    h->n_tensors = wc_rd32(base + 16);
    h->dir_offset = wc_rd64(base + 24);
    h->dir_size = wc_rd64(base + 32);
    h->file_size = wc_rd64(base + 40);
    h->dir_hash = wc_rd64(base + 48);
    if (wc_rd16(base + 10) != WC_HEADER_SIZE || h->flags)
        FAIL(WC_EFORMAT, "%s: unknown header size %u or flags 0x%x at offset 10", label,
             wc_rd16(base + 10), h->flags);
    if (h->file_size != file_size)
        FAIL(WC_EFORMAT, "%s: file is %llu bytes, its header says %llu (truncated or extended?)",
             label, (unsigned long long)file_size, (unsigned long long)h->file_size);
    if (h->dir_offset < WC_HEADER_SIZE || h->dir_offset > file_size ||
        h->dir_size != file_size - h->dir_offset)
        FAIL(WC_EFORMAT, "%s: directory [%llu, +%llu) does not end the %llu-byte file", label,
             (unsigned long long)h->dir_offset, (unsigned long long)h->dir_size,
             (unsigned long long)file_size);
    if ((uint64_t)h->n_tensors * WC_DIR_FIXED > h->dir_size)
        FAIL(WC_EFORMAT, "%s: %u tensors cannot fit a %llu-byte directory", label, h->n_tensors,
             (unsigned long long)h->dir_size);
    return 0;
}

int wc_directory_parse(const uint8_t *dir, const wc_header *h, const char *label, wc_entry **entries,
                       wc_err *err)
{
    *entries = NULL;
    if (wc_hash_differs(h->dir_hash, dir, h->dir_size))
        FAIL(WC_ECHECKSUM, "%s: directory checksum mismatch (bytes %llu..%llu)", label,
             (unsigned long long)h->dir_offset, (unsigned long long)h->file_size - 1);

    wc_entry *e = calloc(h->n_tensors ? h->n_tensors : 1, sizeof *e);
    wc_entry **sorted = calloc(h->n_tensors ? h->n_tensors : 1, sizeof *sorted);
    int r = 0;
    if (!e || !sorted) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < h->n_tensors; i++) {
        if ((r = parse_entry(dir, h->dir_size, h->dir_offset, &pos, h, label, i, &e[i], err)))
            goto out;
        sorted[i] = &e[i];
    }
    if (pos != h->dir_size) {
        r = wc_fail(err, WC_EFORMAT, "%s: %llu bytes after the last directory entry", label,
                    (unsigned long long)(h->dir_size - pos));
        goto out;
    }
    qsort(sorted, h->n_tensors, sizeof *sorted, by_name);
    for (size_t i = 1; i < h->n_tensors; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            r = wc_fail(err, WC_EFORMAT, "%s: tensor name '%s' appears twice", label,
                        sorted[i]->name);
            goto out;
        }
out:
    free(sorted);
    if (r) wc_entries_free(e, h->n_tensors);
    else *entries = e;
    return r;
}
