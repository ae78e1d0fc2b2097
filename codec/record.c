/* Writing one tensor's record from the encoder's plan, and decoding it. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Appends n zero bytes. */
static int pad_to(wc_buf *b, size_t len)
{
    if (len == b->len) return 0; /* an empty buffer may have no data yet */
    int r = wc_buf_reserve(b, len - b->len);
    if (r) return r;
    memset(b->data + b->len, 0, len - b->len);
    b->len = len;
    return 0;
}

static int write_streams(const wc_entry *e, const wc_plan *plan, wc_buf *rec)
{
    uint8_t *tile = malloc((size_t)e->tile_rows * e->tile_cols);
    if (!tile) return WC_ENOMEM;
    int r = 0;
    for (uint32_t t = 0; t < e->n_tiles && !r; t++) {
        uint64_t r0, c0, start = rec->len - e->tiles_off;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        if (start > UINT32_MAX) {
            r = WC_ERANGE;
            break;
        }
        for (uint32_t y = 0; y < h; y++)
            memcpy(tile + (size_t)y * w, plan->sym + (r0 + y) * e->cols + c0, w);
        uint8_t *ent = rec->data + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        wc_wr32(ent, (uint32_t)start);
        ent[4] = plan->modes[t];
        r = wc_rans_encode_tile(plan->tables, plan->row_map ? plan->row_map + r0 : NULL, w, tile,
                                (size_t)h * w, rec);
    }
    free(tile);
    return r;
}

int wc_record_encode(const int8_t *q, const void *scales, const wc_code_params *p, wc_entry *e,
                     wc_buf *rec)
{
    e->coding = WC_CODING_RANS_I8;
    e->flags = scales ? WC_ENTRY_HAS_SCALES : 0;
    e->prob_bits = p->prob_bits;
    choose_tiles(e, p->tile_weights);
    wc_plan plan;
    int r = wc_plan_tensor((const uint8_t *)q, e, p, &plan);
    if (r) return r;
    e->n_tables = plan.n_tables;
    e->top_distance = plan.top_distance;

    rec->len = 0;
    if (scales && (r = wc_buf_append(rec, scales, 4 * e->rows))) goto out;
    if (plan.row_map && (r = wc_buf_append(rec, plan.row_map, e->rows))) goto out;
    e->tables_off = align8(rec->len);
    if ((r = pad_to(rec, e->tables_off))) goto out;
    for (uint32_t k = 0; k < plan.n_tables; k++) {
        if ((r = wc_buf_reserve(rec, WC_RANS_TABLE_MAX))) goto out;
        rec->len += wc_rans_table_write(&plan.tables[k], rec->data + rec->len);
    }
    e->index_off = align8(rec->len);
    e->tiles_off = e->index_off + (uint64_t)WC_TILE_ENTRY * e->n_tiles;
    if ((r = pad_to(rec, e->tiles_off)) || (r = write_streams(e, &plan, rec))) goto out;
    e->size = rec->len;
    e->hash = wc_hash(rec->data, rec->len);
out:
    wc_plan_free(&plan);
    return r;
}

/* Stage 3 of FORMAT.md: predictions of rows [r0, r1), row by row, once
 * every row above is done. */
static void predict_rows(const wc_dsp *dsp, const wc_entry *e, const uint8_t *modes, uint8_t *out, uint64_t r0,
                         uint64_t r1)
{
    const uint64_t d = e->top_distance;
    for (uint64_t r = r0; r < r1; r++) {
        uint8_t *row = out + r * e->cols;
        const uint8_t *up = r >= d ? row - d * e->cols : NULL;
        const uint8_t *tmode = modes + (r / e->tile_rows) * e->tiles_across;
        for (uint32_t tc = 0; tc < e->tiles_across; tc++) {
            uint64_t c0 = (uint64_t)tc * e->tile_cols;
            size_t n = e->cols - c0 < e->tile_cols ? e->cols - c0 : e->tile_cols;
            dsp->pred[WC_MODE_PRED(tmode[tc])](row + c0, up ? up + c0 : NULL, n,
                                               c0 ? row[c0 - 1] : 0, c0 && up ? up[c0 - 1] : 0);
        }
    }
}

/* Reads and checks the tables and the tile index. */
static int read_tables(const wc_entry *e, const uint8_t *rec, wc_rans_dec_table *dec, uint8_t *modes,
                       const char *label, wc_err *err)
{
    uint64_t pos = e->tables_off;
    for (uint32_t k = 0; k < e->n_tables; k++) {
        wc_rans_table t;
        size_t used;
        if (wc_rans_table_read(rec + pos, e->index_off - pos, e->prob_bits, &t, &used))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': frequency table %u at offset %llu is invalid", label,
                           e->name, k, (unsigned long long)(e->offset + pos));
        wc_rans_dec_table_init(&dec[k], &t);
        pos += used;
    }
    const uint8_t *map = rec + wc_entry_scales_size(e);
    for (uint64_t y = 0; y < wc_entry_map_size(e); y++)
        if (map[y] >= e->n_tables)
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': row %llu names table %u of %u (offset %llu)",
                           label, e->name, (unsigned long long)y, map[y], e->n_tables,
                           (unsigned long long)(e->offset + wc_entry_scales_size(e) + y));
    const uint64_t stream_bytes = e->size - e->tiles_off;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint8_t *ent = rec + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        const uint64_t at = e->offset + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        uint8_t m = ent[4];
        bool bad = WC_MODE_PRED(m) >= WC_PRED_COUNT || WC_MODE_TX(m) >= WC_TX_COUNT ||
                   (e->version == 1 && m) || ent[5] || wc_rd16(ent + 6);
        if (bad)
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u (index entry at offset %llu): unknown mode "
                           "0x%02x or reserved bytes set",
                           label, e->name, t, (unsigned long long)at, m);
        uint64_t begin = wc_rd32(ent), end = t + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : stream_bytes;
        if (end < begin || end > stream_bytes)
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u stream at offsets [%llu, %llu) is out of bounds",
                           label, e->name, t, (unsigned long long)(e->offset + e->tiles_off + begin),
                           (unsigned long long)(e->offset + e->tiles_off + end));
        modes[t] = m;
    }
    return 0;
}

/* Decodes tiles [t : t += step] into out: the entropy and transform stages,
 * which tiles do on their own. */
typedef struct tile_job {
    const wc_dsp *dsp;
    const wc_entry *e;
    const uint8_t *rec, *map, *modes;
    const wc_rans_dec_table *dec;
    uint8_t *out;
    _Atomic uint32_t *next;
    _Atomic uint32_t *failed; /* first failing tile + 1, or 0 */
    /* One thread takes the tiles in order, so each row of tiles can be
     * predicted as soon as it is decoded, while it is still in cache,
     * rather than in a second pass over the whole output. */
    bool predict;
} tile_job;

static void *decode_tiles(void *arg)
{
    const tile_job *j = arg;
    const wc_entry *e = j->e;
    uint8_t *tile = malloc((size_t)e->tile_rows * e->tile_cols);
    const uint64_t stream_bytes = e->size - e->tiles_off;
    for (uint32_t t; tile && (t = atomic_fetch_add(j->next, 1)) < e->n_tiles && !*j->failed;) {
        const uint8_t *ent = j->rec + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        uint64_t begin = wc_rd32(ent), end = t + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : stream_bytes;
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        /* full-width tiles decode straight into place */
        uint8_t *dst = w == e->cols ? j->out + r0 * e->cols : tile;
        if (j->dsp->rans_decode(j->dec, j->map ? j->map + r0 : NULL, w, j->rec + e->tiles_off + begin,
                                end - begin, dst, (size_t)h * w)) {
            uint32_t none = 0;
            atomic_compare_exchange_strong(j->failed, &none, t + 1);
            break;
        }
        j->dsp->itx[WC_MODE_TX(j->modes[t])](dst, w, h, w);
        if (dst == tile)
            for (uint32_t y = 0; y < h; y++)
                memcpy(j->out + (r0 + y) * e->cols + c0, tile + (size_t)y * w, w);
        if (j->predict && t % e->tiles_across == e->tiles_across - 1)
            predict_rows(j->dsp, e, j->modes, j->out, r0, r0 + h);
    }
    if (!tile) {
        uint32_t none = 0;
        atomic_compare_exchange_strong(j->failed, &none, UINT32_MAX);
    }
    free(tile);
    return NULL;
}

/* The record hash only says the bytes are those written: a forged record
 * could still carry NaN or infinite scales, which would turn every weight
 * of their rows into NaN downstream. The encoder never writes one, so one
 * here is corruption, refused whether or not the caller wants the scales. */
static int check_scales(const wc_entry *e, const uint8_t *rec, const char *label, wc_err *err)
{
    if (!(e->flags & WC_ENTRY_HAS_SCALES)) return 0;
    for (uint64_t y = 0; y < e->rows; y++) {
        float s;
        memcpy(&s, rec + 4 * y, 4);
        if (!isfinite(s))
            return wc_fail(err, WC_ECORRUPT, "%s: tensor '%s': scale of row %llu (offset %llu) is %s", label,
                           e->name, (unsigned long long)y, (unsigned long long)(e->offset + 4 * y),
                           isnan(s) ? "NaN" : "infinite");
    }
    return 0;
}

int wc_record_decode(const wc_dsp *dsp, const wc_entry *e, const uint8_t *rec, uint8_t *out,
                     float *scales, int threads, const char *label, wc_err *err)
{
    int cr = check_scales(e, rec, label, err);
    if (cr) return cr;
    if (scales && (e->flags & WC_ENTRY_HAS_SCALES)) memcpy(scales, rec, 4 * e->rows);
    wc_rans_dec_table *dec = malloc(sizeof *dec * e->n_tables);
    uint8_t *modes = malloc(e->n_tiles);
    int r = 0;
    if (!dec || !modes) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    if ((r = read_tables(e, rec, dec, modes, label, err))) goto out;
    _Atomic uint32_t next = 0, failed = 0;
    if (threads > (int)e->n_tiles) threads = (int)e->n_tiles;
    tile_job job = {dsp, e, rec, e->n_tables > 1 ? rec + wc_entry_scales_size(e) : NULL, modes,
                    dec, out, &next, &failed, threads <= 1};
    pthread_t th[64];
    int started = 0;
    for (; started < threads - 1 && started < 64; started++)
        if (pthread_create(&th[started], NULL, decode_tiles, &job)) break;
    decode_tiles(&job);
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    if (failed == UINT32_MAX) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
    } else if (failed) {
        uint32_t t = failed - 1;
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        r = wc_fail(err, WC_ECORRUPT,
                    "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails its "
                    "rANS end-state check",
                    label, e->name, t, (unsigned long long)r0, (unsigned long long)c0,
                    (unsigned long long)(e->offset + e->tiles_off +
                                         wc_rd32(rec + e->index_off + (uint64_t)WC_TILE_ENTRY * t)));
    } else if (!job.predict) {
        predict_rows(dsp, e, modes, out, 0, e->rows);
    }
out:
    free(dec);
    free(modes);
    return r;
}
