/* The one reader of a coded (RANS_I8) record's head: scales, row map,
 * frequency tables and tile index, parsed and checked against
 * docs/FORMAT.md once, in one place, for every decoder: the CPU decoder
 * (record.c), the GPU decoder's host side (cuda/gpu_desc.c, gpu_pred.c)
 * and the statistics (stats.c). After wc_rec_parse has accepted a head,
 * the accessors below read it without further checks: every tile's mode
 * is known and its stream lies inside the record, starting at a multiple
 * of 4. The directory-level rules (section offsets, tile shape) are
 * wc_container_parse's (format.c). */
#ifndef WC_REC_READER_H
#define WC_REC_READER_H

#include "dsp.h"
#include "format.h"
#include "rans.h"

typedef struct wc_rec {
    const wc_entry *e;
    /* The record's first e->tiles_off bytes (the head), borrowed: the
     * caller keeps them while the wc_rec is in use. */
    const uint8_t *head;
    const uint8_t *row_map; /* rows bytes, each < n_tables; NULL when n_tables == 1 */
    wc_rans_table *tables;  /* n_tables, owned */
    uint64_t stream_bytes;  /* of all tile streams: record size - tiles_off */
} wc_rec;

/* Checks the head of e's record (at head, e->tiles_off bytes) and fills
 * r: WC_EFORMAT with a message naming label, the tensor and the offset of
 * the first broken rule; WC_ENOMEM. On failure nothing needs freeing. */
int wc_rec_parse(wc_rec *r, const wc_entry *e, const uint8_t *head, const char *label, wc_err *err);
void wc_rec_free(wc_rec *r);

/* Where tile t's stream starts, relative to tiles_off; for t = n_tiles, the
 * end of the last stream (stream_bytes). Tile t's stream is
 * [wc_rec_begin(t), wc_rec_begin(t + 1)). */
static inline uint64_t wc_rec_begin(const wc_rec *r, uint32_t t)
{
    if (t >= r->e->n_tiles) return r->stream_bytes;
    return wc_rd32(r->head + r->e->index_off + (uint64_t)WC_TILE_ENTRY * t);
}

/* Tile t's mode: WC_MODE(prediction, transform), both known. */
static inline uint8_t wc_rec_mode(const wc_rec *r, uint32_t t)
{
    return r->head[r->e->index_off + (uint64_t)WC_TILE_ENTRY * t + 4];
}

/* Absolute file offset of tile t's stream (for messages). */
static inline uint64_t wc_rec_stream_at(const wc_rec *r, uint32_t t)
{
    return r->e->offset + r->e->tiles_off + wc_rec_begin(r, t);
}

#endif
