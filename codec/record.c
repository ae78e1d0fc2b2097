/* Writing one tensor's record from the encoder's plan, and decoding it. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <xxhash.h>

#include "record.h"

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

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
static void predict_rows(const wc_dsp *dsp, const wc_rec *rec, uint8_t *out, uint64_t r0, uint64_t r1)
{
    const wc_entry *e = rec->e;
    const uint64_t d = e->top_distance;
    for (uint64_t r = r0; r < r1; r++) {
        uint8_t *row = out + r * e->cols;
        const uint8_t *up = r >= d ? row - d * e->cols : NULL;
        const uint32_t t0 = (uint32_t)(r / e->tile_rows) * e->tiles_across;
        for (uint32_t tc = 0; tc < e->tiles_across; tc++) {
            uint64_t c0 = (uint64_t)tc * e->tile_cols;
            size_t n = e->cols - c0 < e->tile_cols ? e->cols - c0 : e->tile_cols;
            dsp->pred[WC_MODE_PRED(wc_rec_mode(rec, t0 + tc))](row + c0, up ? up + c0 : NULL, n, c0 ? row[c0 - 1] : 0,
                                                                c0 && up ? up[c0 - 1] : 0);
        }
    }
}

/* Decodes tiles [t : t += step] into out: the entropy and transform stages,
 * which tiles do on their own. */
typedef struct tile_job {
    const wc_dsp *dsp;
    const wc_rec *rec;
    const wc_rec_src *src;
    wc_rec_hash *hash;        /* NULL, or the record's XXH3, fed each stream in order */
    const wc_rans_dec_table *dec;
    uint8_t *out;
    uint64_t max_stream;      /* bytes of the longest tile stream */
    _Atomic uint32_t next;
    _Atomic bool stop;
    /* One thread takes the tiles in order, so each row of tiles can be
     * predicted as soon as it is decoded, while it is still in cache,
     * rather than in a second pass over the whole output. */
    bool predict;
    pthread_mutex_t mu;       /* guards the first failure: */
    int fail;                 /* 0, WC_ECORRUPT (of tile fail_tile), WC_ENOMEM, or a read's code */
    uint32_t fail_tile;
    wc_err fail_err;          /* a read's message */
} tile_job;

static void job_fail(tile_job *j, int code, uint32_t tile, const wc_err *e)
{
    pthread_mutex_lock(&j->mu);
    if (!j->fail) {
        j->fail = code, j->fail_tile = tile;
        if (e) j->fail_err = *e;
    }
    pthread_mutex_unlock(&j->mu);
    atomic_store(&j->stop, true);
}

/* Each thread reads a tile's stream into a buffer of its own, just before
 * decoding it (so that the stream is in cache), beside the tile's symbols
 * where the tile is narrower than the matrix. */
static void *decode_tiles(void *arg)
{
    tile_job *j = arg;
    const wc_rec *rec = j->rec;
    const wc_entry *e = rec->e;
    const size_t tile_bytes = (size_t)e->tile_rows * e->tile_cols;
    uint8_t *buf = malloc(j->max_stream + tile_bytes), *tile = buf + j->max_stream;
    if (!buf) job_fail(j, WC_ENOMEM, 0, NULL);
    for (uint32_t t; buf && (t = atomic_fetch_add(&j->next, 1)) < e->n_tiles && !atomic_load(&j->stop);) {
        const uint64_t begin = wc_rec_begin(rec, t), end = wc_rec_begin(rec, t + 1);
        wc_err re;
        int r = j->src->read(j->src->ctx, e->tiles_off + begin, end - begin, buf, &re);
        if (r) {
            job_fail(j, r, t, &re);
            break;
        }
        if (j->hash) {
            XXH3_64bits_update(j->hash->st, buf, end - begin);
            j->hash->at += end - begin;
        }
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        /* full-width tiles decode straight into place */
        uint8_t *dst = w == e->cols ? j->out + r0 * e->cols : tile;
        if (j->dsp->rans_decode(j->dec, rec->row_map ? rec->row_map + r0 : NULL, w, buf, end - begin, dst,
                                (size_t)h * w)) {
            job_fail(j, WC_ECORRUPT, t, NULL);
            break;
        }
        j->dsp->itx[WC_MODE_TX(wc_rec_mode(rec, t))](dst, w, h, w);
        if (dst == tile)
            for (uint32_t y = 0; y < h; y++)
                memcpy(j->out + (r0 + y) * e->cols + c0, tile + (size_t)y * w, w);
        if (j->predict && t % e->tiles_across == e->tiles_across - 1)
            predict_rows(j->dsp, rec, j->out, r0, r0 + h);
    }
    free(buf);
    return NULL;
}

/* The record hash only says the bytes are those written: a forged record
 * could still carry NaN or infinite scales, which would turn every weight
 * of their rows into NaN downstream. The encoder never writes one, so one
 * here is corruption, refused whether or not the caller wants the scales. */
static int check_scales(const wc_entry *e, const uint8_t *head, const char *label, wc_err *err)
{
    if (!(e->flags & WC_ENTRY_HAS_SCALES)) return 0;
    for (uint64_t y = 0; y < e->rows; y++) {
        float s;
        memcpy(&s, head + 4 * y, 4);
        if (!isfinite(s))
            return wc_fail(err, WC_ECORRUPT, "%s: tensor '%s': scale of row %llu (offset %llu) is %s", label,
                           e->name, (unsigned long long)y, (unsigned long long)(e->offset + 4 * y),
                           isnan(s) ? "NaN" : "infinite");
    }
    return 0;
}

/* The message of the job's first failure. */
static int job_error(const tile_job *j, const char *label, wc_err *err)
{
    const wc_entry *e = j->rec->e;
    if (j->fail == WC_ENOMEM) return wc_fail(err, WC_ENOMEM, "out of memory");
    if (j->fail != WC_ECORRUPT) {
        if (err) *err = j->fail_err;
        return j->fail;
    }
    uint64_t r0, c0;
    uint32_t h, w;
    wc_tile_rect(e, j->fail_tile, &r0, &c0, &h, &w);
    return wc_fail(err, WC_ECORRUPT,
                   "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails its "
                   "rANS end-state check",
                   label, e->name, j->fail_tile, (unsigned long long)r0, (unsigned long long)c0,
                   (unsigned long long)wc_rec_stream_at(j->rec, j->fail_tile));
}

int wc_record_decode(const wc_dsp *dsp, const wc_rec *rec, const wc_rec_src *src, wc_rec_hash *hash, uint8_t *out,
                     float *scales, int threads, const char *label, wc_err *err)
{
    const wc_entry *e = rec->e;
    int cr = check_scales(e, rec->head, label, err);
    if (cr) return cr;
    if (scales && (e->flags & WC_ENTRY_HAS_SCALES)) memcpy(scales, rec->head, 4 * e->rows);
    wc_rans_dec_table *dec = malloc(sizeof *dec * e->n_tables);
    if (!dec) return wc_fail(err, WC_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < e->n_tables; k++) wc_rans_dec_table_init(&dec[k], &rec->tables[k]);
    if (threads > (int)e->n_tiles) threads = (int)e->n_tiles;
    /* one thread takes the tiles in order: it can feed the hash */
    tile_job job = {.dsp = dsp, .rec = rec, .src = src, .hash = threads <= 1 ? hash : NULL, .dec = dec, .out = out,
                    .predict = threads <= 1};
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint64_t len = wc_rec_begin(rec, t + 1) - wc_rec_begin(rec, t);
        if (len > job.max_stream) job.max_stream = len;
    }
    pthread_mutex_init(&job.mu, NULL);
    pthread_t th[64];
    int started = 0;
    for (; started < threads - 1 && started < 64; started++)
        if (pthread_create(&th[started], NULL, decode_tiles, &job)) break;
    decode_tiles(&job);
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    pthread_mutex_destroy(&job.mu);
    int r = 0;
    if (job.fail) r = job_error(&job, label, err);
    else if (!job.predict) predict_rows(dsp, rec, out, 0, e->rows);
    free(dec);
    return r;
}
