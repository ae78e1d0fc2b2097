/* wc_rec_parse: a coded record's head checked against docs/FORMAT.md
 * ("Records", "Tile index", "Row map and tables", "Modes"). */
#include <stdlib.h>

#include "rec_reader.h"

static int read_tables(wc_rec *r, const char *label, wc_err *err)
{
    const wc_entry *e = r->e;
    uint64_t pos = e->tables_off;
    for (uint32_t k = 0; k < e->n_tables; k++) {
        size_t used;
        if (wc_rans_table_read(r->head + pos, e->index_off - pos, e->prob_bits, &r->tables[k], &used))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': frequency table %u at offset %llu is invalid", label,
                           e->name, k, (unsigned long long)(e->offset + pos));
        pos += used;
    }
    return 0;
}

static int check_row_map(const wc_rec *r, const char *label, wc_err *err)
{
    const wc_entry *e = r->e;
    if (!r->row_map) return 0;
    for (uint64_t y = 0; y < e->rows; y++)
        if (r->row_map[y] >= e->n_tables)
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': row %llu names table %u of %u (offset %llu)",
                           label, e->name, (unsigned long long)y, r->row_map[y], e->n_tables,
                           (unsigned long long)(e->offset + wc_entry_scales_size(e) + y));
    return 0;
}

/* Every entry: a known mode (only the identity in version 1), reserved
 * bytes 0, a stream inside the record that starts at a multiple of 4. */
static int check_index(const wc_rec *r, const char *label, wc_err *err)
{
    const wc_entry *e = r->e;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint8_t *ent = r->head + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        const uint8_t m = ent[4];
        const unsigned long long at = e->offset + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        if (WC_MODE_PRED(m) >= WC_PRED_COUNT || WC_MODE_TX(m) >= WC_TX_COUNT || (e->version == 1 && m))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u (index entry at offset %llu): unknown mode 0x%02x%s",
                           label, e->name, t, at, m, e->version == 1 ? " for version 1" : "");
        if (ent[5] || wc_rd16(ent + 6))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u (index entry at offset %llu): reserved bytes "
                           "%02x %02x %02x are not 0",
                           label, e->name, t, at, ent[5], ent[6], ent[7]);
        const uint64_t begin = wc_rec_begin(r, t), end = wc_rec_begin(r, t + 1);
        if (end < begin || end > r->stream_bytes)
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u stream at offsets [%llu, %llu) is out of bounds",
                           label, e->name, t, (unsigned long long)(e->offset + e->tiles_off + begin),
                           (unsigned long long)(e->offset + e->tiles_off + end));
        if (begin % WC_STREAM_ALIGN)
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u stream at offset %llu does not start at a "
                           "multiple of %d from the tile streams (offset %llu)",
                           label, e->name, t, (unsigned long long)(e->offset + e->tiles_off + begin),
                           WC_STREAM_ALIGN, (unsigned long long)(e->offset + e->tiles_off));
    }
    return 0;
}

int wc_rec_parse(wc_rec *r, const wc_entry *e, const uint8_t *head, const char *label, wc_err *err)
{
    *r = (wc_rec){.e = e, .head = head, .stream_bytes = e->size - e->tiles_off};
    r->row_map = e->n_tables > 1 ? head + wc_entry_scales_size(e) : NULL;
    r->tables = malloc(sizeof *r->tables * e->n_tables);
    if (!r->tables) return wc_fail(err, WC_ENOMEM, "out of memory");
    int ret = read_tables(r, label, err);
    if (!ret) ret = check_row_map(r, label, err);
    if (!ret) ret = check_index(r, label, err);
    if (ret) wc_rec_free(r);
    return ret;
}

void wc_rec_free(wc_rec *r)
{
    free(r->tables);
    r->tables = NULL;
}
