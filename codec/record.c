/* Coding one tensor into its record and decoding it back (the reference). */
#include <stdlib.h>

#include "record.h"

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

void wc_tile_rect(const wc_entry *e, uint32_t t, uint64_t *r0, uint64_t *c0, uint32_t *h,
                  uint32_t *w)
{
    uint64_t tr = t / e->tiles_across, tc = t % e->tiles_across;
    *r0 = tr * e->tile_rows;
    *c0 = tc * e->tile_cols;
    *h = (uint32_t)(e->rows - *r0 < e->tile_rows ? e->rows - *r0 : e->tile_rows);
    *w = (uint32_t)(e->cols - *c0 < e->tile_cols ? e->cols - *c0 : e->tile_cols);
}

/* Full-width tiles keep a tile's symbols contiguous in the output; very
 * wide rows are cut into tiles of tile_weights columns. */
static void choose_tiles(wc_entry *e, uint32_t tile_weights)
{
    if (e->cols >= tile_weights) {
        e->tile_cols = tile_weights;
        e->tile_rows = 1;
    } else {
        e->tile_cols = (uint32_t)e->cols;
        uint64_t tr = tile_weights / e->cols;
        e->tile_rows = (uint32_t)(tr < e->rows ? tr : e->rows);
    }
    e->tiles_down = (uint32_t)((e->rows + e->tile_rows - 1) / e->tile_rows);
    e->tiles_across = (uint32_t)((e->cols + e->tile_cols - 1) / e->tile_cols);
    e->n_tiles = e->tiles_down * e->tiles_across;
}

/* Copies tile t of the matrix m (cols wide) into dst, row by row. */
static void gather_tile(const wc_entry *e, uint32_t t, const uint8_t *m, uint8_t *dst)
{
    uint64_t r0, c0;
    uint32_t h, w;
    wc_tile_rect(e, t, &r0, &c0, &h, &w);
    for (uint32_t y = 0; y < h; y++) memcpy(dst + (size_t)y * w, m + (r0 + y) * e->cols + c0, w);
}

int wc_record_encode(const int8_t *q, const void *scales, const wc_code_params *p, wc_entry *e,
                     wc_buf *rec)
{
    const uint8_t *m = (const uint8_t *)q;
    const uint64_t n = e->rows * e->cols;
    uint64_t hist[256] = {0};
    for (uint64_t i = 0; i < n; i++) hist[m[i]]++;
    wc_rans_table table;
    int r = wc_rans_normalize(hist, p->prob_bits, &table);
    if (r) return r;

    e->coding = WC_CODING_RANS_I8;
    e->flags = scales ? WC_ENTRY_HAS_SCALES : 0;
    e->prob_bits = p->prob_bits;
    e->n_tables = 1;
    choose_tiles(e, p->tile_weights);

    rec->len = 0;
    if (scales && (r = wc_buf_append(rec, scales, 4 * e->rows))) return r;
    e->tables_off = align8(rec->len);
    if ((r = wc_buf_reserve(rec, e->tables_off - rec->len + WC_RANS_TABLE_MAX + 8))) return r;
    memset(rec->data + rec->len, 0, e->tables_off - rec->len);
    rec->len = e->tables_off;
    rec->len += wc_rans_table_write(&table, rec->data + rec->len);
    e->index_off = align8(rec->len);
    e->tiles_off = e->index_off + (uint64_t)WC_TILE_ENTRY * e->n_tiles;
    if ((r = wc_buf_reserve(rec, e->tiles_off - rec->len))) return r;
    memset(rec->data + rec->len, 0, e->tiles_off - rec->len);
    rec->len = e->tiles_off;

    uint8_t *tile = malloc((size_t)e->tile_rows * e->tile_cols);
    if (!tile) return WC_ENOMEM;
    for (uint32_t t = 0; t < e->n_tiles && !r; t++) {
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        gather_tile(e, t, m, tile);
        uint64_t start = rec->len - e->tiles_off;
        if (start > UINT32_MAX) {
            r = WC_ERANGE;
            break;
        }
        /* index entry: stream offset, mode, table, reserved */
        uint8_t *ent = rec->data + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        wc_wr32(ent, (uint32_t)start);
        ent[4] = WC_MODE_IDENTITY;
        ent[5] = 0;
        r = wc_rans_encode_tile(&table, tile, (size_t)h * w, rec);
    }
    free(tile);
    if (r) return r;
    e->size = rec->len;
    e->hash = wc_hash(rec->data, rec->len);
    return 0;
}

int wc_record_decode_ref(const wc_entry *e, const uint8_t *rec, uint8_t *out, float *scales,
                         const char *label, wc_err *err)
{
    if (scales && (e->flags & WC_ENTRY_HAS_SCALES)) memcpy(scales, rec, 4 * e->rows);

    wc_rans_dec_table *dec = malloc(sizeof *dec * e->n_tables);
    uint8_t *tile = malloc((size_t)e->tile_rows * e->tile_cols);
    int r = 0;
    if (!dec || !tile) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t pos = e->tables_off;
    for (uint32_t k = 0; k < e->n_tables; k++) {
        wc_rans_table t;
        size_t used;
        if (wc_rans_table_read(rec + pos, e->index_off - pos, e->prob_bits, &t, &used)) {
            r = wc_fail(err, WC_EFORMAT, "%s: tensor '%s': frequency table %u at offset %llu is invalid",
                        label, e->name, k, (unsigned long long)(e->offset + pos));
            goto out;
        }
        wc_rans_dec_table_init(&dec[k], &t);
        pos += used;
    }
    const uint64_t stream_bytes = e->size - e->tiles_off;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint8_t *ent = rec + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        uint64_t begin = wc_rd32(ent);
        uint64_t end = t + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : stream_bytes;
        uint64_t at = e->offset + e->tiles_off + begin;
        if (ent[4] >= WC_MODE_COUNT || ent[5] >= e->n_tables || wc_rd16(ent + 6)) {
            r = wc_fail(err, WC_EFORMAT,
                        "%s: tensor '%s': tile %u (index entry at offset %llu): unknown mode %u "
                        "or table %u",
                        label, e->name, t, (unsigned long long)(e->offset + e->index_off + 8ull * t),
                        ent[4], ent[5]);
            goto out;
        }
        if (end < begin || end > stream_bytes) {
            r = wc_fail(err, WC_EFORMAT, "%s: tensor '%s': tile %u stream at offsets [%llu, %llu) is out of bounds",
                        label, e->name, t, (unsigned long long)at,
                        (unsigned long long)(e->offset + e->tiles_off + end));
            goto out;
        }
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        if (wc_rans_decode_tile_ref(&dec[ent[5]], rec + e->tiles_off + begin, end - begin, tile,
                                    (size_t)h * w)) {
            r = wc_fail(err, WC_ECORRUPT,
                        "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails "
                        "its rANS end-state check",
                        label, e->name, t, (unsigned long long)r0, (unsigned long long)c0,
                        (unsigned long long)at);
            goto out;
        }
        for (uint32_t y = 0; y < h; y++)
            memcpy(out + (r0 + y) * e->cols + c0, tile + (size_t)y * w, w);
    }
out:
    free(dec);
    free(tile);
    return r;
}
