/* Tensor-parallel shards on the CPU (docs/SHARDING.md): a shard's place in
 * the tensor's matrix, the tiles its values depend on, and its decode,
 * which reads the record's head and only those tiles' streams. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "reader.h"
#include "shard.h"

void wc_shard_split(uint64_t len, uint32_t rank, uint32_t n, uint64_t *start, uint64_t *count)
{
    const uint64_t q = len / n, extra = len % n;
    *count = q + (rank < extra);
    *start = (uint64_t)rank * q + (rank < extra ? rank : extra);
}

void wc_part_what(char *buf, size_t size, const char *label, const wc_entry *e, const wc_part *p)
{
    if (p->n)
        snprintf(buf, size, "%s: tensor '%s': shard %u of %u along dim %d", label, e->name, p->rank, p->n, p->dim);
    else
        snprintf(buf, size, "%s: tensor '%s': slice [%llu, %llu) along dim %d", label, e->name,
                 (unsigned long long)p->start, (unsigned long long)(p->start + p->len), p->dim);
}

/* The dimension rule of both kinds of part; the whole tensor (a shard of
 * one) takes any. */
static int check_dim(const wc_entry *e, const wc_part *p, const char *label, wc_err *err)
{
    if (p->n == 1 || (p->dim >= 0 && p->dim <= 1 && (uint32_t)p->dim < e->ndim)) return 0;
    char what[WC_MAX_NAME + 256];
    wc_part_what(what, sizeof what, label, e, p);
    return wc_fail(err, WC_EINVAL, "%s: a tensor of %u dimensions splits along dim 0%s only", what, e->ndim,
                   e->ndim >= 2 ? " or 1" : "");
}

int wc_part_shard(const wc_entry *e, int dim, uint32_t rank, uint32_t n, const char *label, wc_part *p, wc_err *err)
{
    *p = (wc_part){.dim = dim, .rank = rank, .n = n};
    if (n == 0 || rank >= n) /* not wc_part_what's: n 0 is a slice there */
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': shard %u of %u along dim %d: rank %u is not below the number "
                       "of shards %u", label, e->name, rank, n, dim, rank, n);
    int r = check_dim(e, p, label, err);
    if (r) return r;
    if (n == 1) p->len = e->ndim && dim >= 0 && (uint32_t)dim < e->ndim ? e->shape[dim] : 1;
    else wc_shard_split(e->shape[dim], rank, n, &p->start, &p->len);
    return 0;
}

int wc_part_slice(const wc_entry *e, int dim, uint64_t start, uint64_t len, const char *label, wc_part *p,
                  wc_err *err)
{
    *p = (wc_part){.dim = dim, .start = start, .len = len};
    int r = check_dim(e, p, label, err);
    if (r) return r;
    if (start > e->shape[dim] || len > e->shape[dim] - start) {
        char what[WC_MAX_NAME + 256];
        wc_part_what(what, sizeof what, label, e, p);
        return wc_fail(err, WC_EINVAL, "%s: beyond the %llu indices of the dimension", what,
                       (unsigned long long)e->shape[dim]);
    }
    return 0;
}

void wc_part_resolve(const wc_entry *e, const wc_part *p, wc_shard_info *info, wc_shard_rect *rect)
{
    const bool coded = e->coding == WC_CODING_RANS_I8;
    const uint64_t esz = coded ? 1 : (uint64_t)wc_dtype_size(e->dtype);
    const bool scales = coded && (e->flags & WC_ENTRY_HAS_SCALES);
    memset(info, 0, sizeof *info);
    info->dim = p->dim;
    info->ndim = e->ndim;
    memcpy(info->shape, e->shape, sizeof info->shape);
    info->start = p->start, info->len = p->len;
    info->n_scales = scales ? e->rows : 0;
    *rect = (wc_shard_rect){0, e->rows, 0, e->cols};
    if (p->n != 1) {
        info->shape[p->dim] = p->len;
        if (e->ndim == 1) { /* a vector is one row of the matrix view */
            rect->c0 = p->start, rect->c1 = p->start + p->len;
        } else if (p->dim == 0) {
            rect->r0 = p->start, rect->r1 = p->start + p->len;
            info->n_scales = scales ? p->len : 0;
            info->scale_row0 = p->start;
        } else { /* slices of shape[1], each with everything after it */
            uint64_t inner = 1;
            for (uint32_t k = 2; k < e->ndim; k++) inner *= e->shape[k];
            rect->c0 = p->start * inner, rect->c1 = (p->start + p->len) * inner;
        }
    }
    info->out_bytes = (rect->r1 - rect->r0) * (rect->c1 - rect->c0) * esz;
}

static bool uses_left(uint8_t p) { return p == WC_PRED_LEFT || p == WC_PRED_AVG || p == WC_PRED_PLANAR; }
static bool uses_top(uint8_t p) { return p == WC_PRED_TOP || p == WC_PRED_AVG || p == WC_PRED_PLANAR; }

void wc_shard_tiles(const wc_rec *rec, const wc_shard_rect *s, uint8_t *need)
{
    const wc_entry *e = rec->e;
    if (s->r0 >= s->r1 || s->c0 >= s->c1) return;
    const uint64_t tr0 = s->r0 / e->tile_rows, tr1 = (s->r1 - 1) / e->tile_rows;
    const uint64_t tc0 = s->c0 / e->tile_cols, tc1 = (s->c1 - 1) / e->tile_cols;
    for (uint64_t tr = tr0; tr <= tr1; tr++)
        for (uint64_t tc = tc0; tc <= tc1; tc++) need[tr * e->tiles_across + tc] = 1;
    const uint64_t d = e->top_distance;
    for (uint32_t t = e->n_tiles; t-- > 0;) {
        if (!need[t]) continue;
        const uint8_t p = WC_MODE_PRED(wc_rec_mode(rec, t));
        const uint32_t tc = t % e->tiles_across;
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        if (uses_left(p) && tc > 0) need[t - 1] = 1;
        /* rows [r0 - d, r0 + h - d) of the columns [c0 - 1 (planar), c0 + w): the tiles above */
        if (!uses_top(p) || r0 + h <= d) continue;
        const uint64_t top0 = r0 >= d ? r0 - d : 0, top1 = r0 + h - 1 - d;
        for (uint64_t tr = top0 / e->tile_rows; tr <= top1 / e->tile_rows; tr++) {
            const uint64_t k = tr * e->tiles_across + tc;
            need[k] = 1;
            if (p == WC_PRED_PLANAR && tc > 0) need[k - 1] = 1;
        }
    }
}

int wc_shard_plan_subs(const wc_rec *rec, const wc_shard_rect *s, wc_shard_plan *p)
{
    const wc_entry *e = rec->e;
    uint8_t *need = calloc(e->n_tiles, 1);
    if (!need) return WC_ENOMEM;
    wc_shard_tiles(rec, s, need);
    uint64_t tr0 = UINT64_MAX, tr1 = 0, tc0 = UINT64_MAX, tc1 = 0;
    bool top = false;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        if (!need[t]) continue;
        const uint64_t tr = t / e->tiles_across, tc = t % e->tiles_across;
        if (tr < tr0) tr0 = tr;
        if (tr > tr1) tr1 = tr;
        if (tc < tc0) tc0 = tc;
        if (tc > tc1) tc1 = tc;
        top |= uses_top(WC_MODE_PRED(wc_rec_mode(rec, t)));
    }
    free(need);
    /* part of the columns, and nothing reads a row above: a tensor per row
     * of tiles, whose tiles are contiguous in the record; not too many of
     * them, as each costs a GPU job with its own copy of the tables */
    const bool per_row = (tc0 > 0 || tc1 + 1 < e->tiles_across) && !top && tr1 - tr0 < WC_SHARD_MAX_SUBS;
    if (!per_row) tc0 = 0, tc1 = e->tiles_across - 1;
    *p = (wc_shard_plan){.tr0 = tr0, .tr1 = tr1, .tc0 = tc0, .tc1 = tc1, .per_row = per_row,
                         .n_subs = per_row ? tr1 - tr0 + 1 : 1};
    return 0;
}

void wc_shard_plan_sub(const wc_shard_plan *p, uint64_t k, uint64_t *tr0, uint64_t *tr1)
{
    *tr0 = p->per_row ? p->tr0 + k : p->tr0;
    *tr1 = p->per_row ? p->tr0 + k : p->tr1;
}

static uint64_t align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

int wc_shard_sub_tensor(const wc_entry *e, const wc_rec *rec, const uint8_t *head, uint64_t tr0, uint64_t tr1,
                        uint64_t tc0, uint64_t tc1, char *name, wc_entry *ve, uint8_t **vhead)
{
    const uint64_t R0 = tr0 * e->tile_rows, R1 = (tr1 + 1) * e->tile_rows < e->rows ? (tr1 + 1) * e->tile_rows : e->rows;
    const uint64_t C0 = tc0 * e->tile_cols, C1 = (tc1 + 1) * e->tile_cols < e->cols ? (tc1 + 1) * e->tile_cols : e->cols;
    const uint64_t vrows = R1 - R0, across = tc1 + 1 - tc0;
    const uint32_t nt = (uint32_t)((tr1 + 1 - tr0) * across);
    const uint32_t T0 = (uint32_t)(tr0 * e->tiles_across + tc0), Tend = (uint32_t)(tr1 * e->tiles_across + tc1 + 1);
    const uint64_t ss = e->flags & WC_ENTRY_HAS_SCALES ? 4 * vrows : 0, ms = e->n_tables > 1 ? vrows : 0;
    const uint64_t tlen = e->index_off - e->tables_off, tables_off = align8(ss + ms);
    const uint64_t index_off = tables_off + tlen, tiles_off = index_off + (uint64_t)WC_TILE_ENTRY * nt;
    const uint64_t b0 = wc_rec_begin(rec, T0), b1 = wc_rec_begin(rec, Tend);
    if (Tend - T0 != nt) return WC_EINVAL; /* tiles not contiguous in the record */
    uint8_t *h = calloc(tiles_off, 1);
    if (!h) return WC_ENOMEM;
    memcpy(h, head + 4 * R0, ss);
    if (ms) memcpy(h + ss, head + wc_entry_scales_size(e) + R0, ms);
    memcpy(h + tables_off, head + e->tables_off, tlen);
    for (uint32_t k = 0; k < nt; k++) {
        uint8_t *ent = h + index_off + (uint64_t)WC_TILE_ENTRY * k;
        memcpy(ent, head + e->index_off + (uint64_t)WC_TILE_ENTRY * (T0 + k), WC_TILE_ENTRY);
        wc_wr32(ent, (uint32_t)(wc_rd32(ent) - b0));
    }
    *ve = *e;
    ve->name = name;
    ve->ndim = 2;
    memset(ve->shape, 0, sizeof ve->shape);
    ve->shape[0] = ve->rows = vrows, ve->shape[1] = ve->cols = C1 - C0;
    ve->numel = vrows * ve->cols;
    ve->tiles_down = (uint32_t)(tr1 + 1 - tr0), ve->tiles_across = (uint32_t)across, ve->n_tiles = nt;
    ve->tables_off = tables_off, ve->index_off = index_off, ve->tiles_off = tiles_off;
    ve->size = tiles_off + (b1 - b0);
    /* e's head is at least as long as this one (more rows, more tiles, the same tables) */
    ve->offset = e->offset + e->tiles_off + b0 - tiles_off;
    ve->hash = 0;
    if (ve->top_distance > vrows) ve->top_distance = (uint32_t)vrows;
    *vhead = h;
    return 0;
}

/* What a coded shard's decode works with: the tiles it needs are decoded
 * into a bounding box of them (rows [R0, R1), columns [C0, C1), row stride
 * W), which is the caller's output itself where it is exactly the shard. */
typedef struct shard_dec {
    const wc_file *f;
    const wc_entry *e;
    const wc_rec *rec;
    const wc_dsp *dsp;
    const wc_rans_dec_table *dec;
    uint8_t *box;
    uint64_t R0, R1, C0, C1, W;
    uint8_t *stream, *tile; /* buffers of the longest needed stream and of a tile */
    uint64_t *nread;
    const char *what;
} shard_dec;

/* Prediction of tile t, whose residuals are in the box, row by row: every
 * value it reads (left, the rows top_distance up) lies in the box and is
 * done by then (wc_shard_tiles, tiles in increasing order). */
static int predict_tile(const shard_dec *s, uint32_t t, wc_err *err)
{
    const wc_entry *e = s->e;
    const uint8_t p = WC_MODE_PRED(wc_rec_mode(s->rec, t));
    const uint64_t d = e->top_distance;
    uint64_t r0, c0;
    uint32_t h, w;
    wc_tile_rect(e, t, &r0, &c0, &h, &w);
    for (uint64_t r = r0; r < r0 + h; r++) {
        uint8_t *row = s->box + (r - s->R0) * s->W + (c0 - s->C0);
        const uint8_t *up = NULL;
        if (r >= d && r - d >= s->R0) up = row - d * s->W;
        else if (r >= d && uses_top(p))
            return wc_fail(err, WC_EFORMAT, "%s: internal error: tile %u reads row %llu, outside the tiles decoded",
                           s->what, t, (unsigned long long)(r - d));
        const uint8_t left = uses_left(p) && c0 > s->C0 ? row[-1] : 0;
        const uint8_t upleft = p == WC_PRED_PLANAR && c0 > s->C0 && up ? up[-1] : 0;
        s->dsp->pred[p](row, up, w, left, upleft);
    }
    return 0;
}

/* Reads tile t's stream, decodes it (rANS, inverse transform) into the box
 * and predicts it. */
static int decode_tile(const shard_dec *s, uint32_t t, wc_err *err)
{
    const wc_entry *e = s->e;
    const uint64_t begin = wc_rec_begin(s->rec, t), len = wc_rec_begin(s->rec, t + 1) - begin;
    int r = wc_file_pread(s->f, e, e->offset + e->tiles_off + begin, len, s->stream, err);
    if (r) return r;
    *s->nread += len;
    uint64_t r0, c0;
    uint32_t h, w;
    wc_tile_rect(e, t, &r0, &c0, &h, &w);
    if (s->dsp->rans_decode(s->dec, s->rec->row_map ? s->rec->row_map + r0 : NULL, w, s->stream, len, s->tile,
                            (size_t)h * w)) {
        return wc_fail(err, WC_ECORRUPT,
                       "%s: tile %u (rows %llu.., cols %llu..) at offset %llu fails its rANS end-state check",
                       s->what, t, (unsigned long long)r0, (unsigned long long)c0,
                       (unsigned long long)wc_rec_stream_at(s->rec, t));
    }
    s->dsp->itx[WC_MODE_TX(wc_rec_mode(s->rec, t))](s->tile, w, h, w);
    for (uint32_t y = 0; y < h; y++)
        memcpy(s->box + (r0 + y - s->R0) * s->W + (c0 - s->C0), s->tile + (size_t)y * w, w);
    return predict_tile(s, t, err);
}

/* The tiles of need, in increasing order, into the box; then the shard out
 * of it. */
static int decode_needed(shard_dec *s, const uint8_t *need, const wc_shard_rect *rc, uint8_t *out, wc_err *err)
{
    const wc_entry *e = s->e;
    uint64_t max_stream = 0;
    s->R0 = s->C0 = UINT64_MAX, s->R1 = s->C1 = 0;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        if (!need[t]) continue;
        uint64_t r0, c0, len = wc_rec_begin(s->rec, t + 1) - wc_rec_begin(s->rec, t);
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        if (r0 < s->R0) s->R0 = r0;
        if (c0 < s->C0) s->C0 = c0;
        if (r0 + h > s->R1) s->R1 = r0 + h;
        if (c0 + w > s->C1) s->C1 = c0 + w;
        if (len > max_stream) max_stream = len;
    }
    s->W = s->C1 - s->C0;
    const bool in_place = s->R0 == rc->r0 && s->R1 == rc->r1 && s->C0 == rc->c0 && s->C1 == rc->c1;
    s->box = in_place ? out : malloc((s->R1 - s->R0) * s->W);
    s->stream = malloc(max_stream + (size_t)e->tile_rows * e->tile_cols);
    int r = s->box && s->stream ? 0 : wc_fail(err, WC_ENOMEM, "%s: out of memory", s->what);
    s->tile = s->stream + max_stream;
    for (uint32_t t = 0; t < e->n_tiles && !r; t++)
        if (need[t]) r = decode_tile(s, t, err);
    if (!r && !in_place)
        for (uint64_t y = rc->r0; y < rc->r1; y++)
            memcpy(out + (y - rc->r0) * (rc->c1 - rc->c0), s->box + (y - s->R0) * s->W + (rc->c0 - s->C0),
                   rc->c1 - rc->c0);
    if (!in_place) free(s->box);
    free(s->stream);
    return r;
}

/* A scale that is NaN or infinite is corruption (record.c, check_scales):
 * refused among the scales the shard returns, wanted or not. */
static int shard_scales(const wc_entry *e, const uint8_t *head, const wc_shard_info *info, float *scales,
                        const char *what, wc_err *err)
{
    for (uint64_t y = info->scale_row0; y < info->scale_row0 + info->n_scales; y++) {
        float v;
        memcpy(&v, head + 4 * y, 4);
        if (!isfinite(v))
            return wc_fail(err, WC_ECORRUPT, "%s: scale of row %llu (offset %llu) is %s", what,
                           (unsigned long long)y, (unsigned long long)(e->offset + 4 * y),
                           isnan(v) ? "NaN" : "infinite");
        if (scales) scales[y - info->scale_row0] = v;
    }
    return 0;
}

static int decode_coded(const wc_file *f, const wc_entry *e, const wc_shard_info *info, const wc_shard_rect *rc,
                        uint8_t *out, float *scales, const wc_dsp *dsp, uint64_t *nread, const char *what,
                        wc_err *err)
{
    uint8_t *head = malloc(e->tiles_off), *need = NULL;
    wc_rans_dec_table *dec = NULL;
    wc_rec rec = {0};
    int r = head ? wc_file_pread(f, e, e->offset, e->tiles_off, head, err)
                 : wc_fail(err, WC_ENOMEM, "%s: out of memory", what);
    if (r) goto out;
    *nread += e->tiles_off;
    if ((r = wc_rec_parse(&rec, e, head, wc_file_label(f), err))) goto out;
    if ((r = shard_scales(e, head, info, scales, what, err)) || !info->out_bytes) goto out;
    need = calloc(e->n_tiles, 1);
    dec = malloc(sizeof *dec * e->n_tables);
    if (!need || !dec) {
        r = wc_fail(err, WC_ENOMEM, "%s: out of memory", what);
        goto out;
    }
    for (uint32_t k = 0; k < e->n_tables; k++) wc_rans_dec_table_init(&dec[k], &rec.tables[k]);
    wc_shard_tiles(&rec, rc, need);
    shard_dec s = {.f = f, .e = e, .rec = &rec, .dsp = dsp, .dec = dec, .nread = nread, .what = what};
    r = decode_needed(&s, need, rc, out, err);
out:
    wc_rec_free(&rec);
    free(dec);
    free(need);
    free(head);
    return r;
}

/* A raw tensor's shard: its rows in one read where they are whole, else a
 * read per row. */
static int decode_raw(const wc_file *f, const wc_entry *e, const wc_shard_rect *rc, uint8_t *out, uint64_t *nread,
                      wc_err *err)
{
    const uint64_t esz = (uint64_t)wc_dtype_size(e->dtype), w = (rc->c1 - rc->c0) * esz;
    if (!w || rc->r0 == rc->r1) return 0;
    if (rc->c0 == 0 && rc->c1 == e->cols) {
        *nread += (rc->r1 - rc->r0) * w;
        return wc_file_pread(f, e, e->offset + rc->r0 * w, (rc->r1 - rc->r0) * w, out, err);
    }
    for (uint64_t y = rc->r0; y < rc->r1; y++) {
        int r = wc_file_pread(f, e, e->offset + (y * e->cols + rc->c0) * esz, w, out + (y - rc->r0) * w, err);
        if (r) return r;
        *nread += w;
    }
    return 0;
}

int wc_part_decode(const wc_file *f, size_t i, const wc_part *p, void *out, size_t out_size, float *scales,
                   size_t n_scales, const wc_dsp *dsp, uint64_t *bytes_read, wc_err *err)
{
    uint64_t nread = 0;
    if (bytes_read) *bytes_read = 0;
    const wc_entry *e = wc_file_entry(f, i);
    wc_shard_info info;
    wc_shard_rect rc;
    wc_part_resolve(e, p, &info, &rc);
    char what[WC_MAX_NAME + 256];
    wc_part_what(what, sizeof what, wc_file_label(f), e, p);
    if (out_size < info.out_bytes)
        return wc_fail(err, WC_EINVAL, "%s: output buffer of %zu bytes, needs %llu", what, out_size,
                       (unsigned long long)info.out_bytes);
    if (scales && n_scales < info.n_scales)
        return wc_fail(err, WC_EINVAL, "%s: room for %zu scales, needs %llu", what, n_scales,
                       (unsigned long long)info.n_scales);
    int r;
    if (p->n == 1) { /* the whole tensor, checksum included */
        const wc_decode_opts o = {.reference = dsp == wc_dsp_get(true)};
        r = wc_decode_tensor_ex(f, i, out, out_size, scales, n_scales, &o, err);
        nread = e->size;
    } else if (e->coding == WC_CODING_RANS_I8) {
        r = decode_coded(f, e, &info, &rc, out, scales, dsp, &nread, what, err);
    } else {
        r = decode_raw(f, e, &rc, out, &nread, err);
    }
    if (bytes_read) *bytes_read = nread;
    return r;
}

static int no_tensor(const wc_file *f, size_t i, wc_err *err)
{
    return i < wc_file_tensor_count(f) ? 0 : wc_fail(err, WC_EINVAL, "%s: no tensor %zu", wc_file_label(f), i);
}

int wc_shard_decode(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n, void *out, size_t out_size,
                    float *scales, size_t n_scales, const wc_dsp *dsp, uint64_t *bytes_read, wc_err *err)
{
    wc_part p;
    int r = no_tensor(f, i, err);
    if (!r) r = wc_part_shard(wc_file_entry(f, i), dim, rank, n, wc_file_label(f), &p, err);
    return r ? r : wc_part_decode(f, i, &p, out, out_size, scales, n_scales, dsp, bytes_read, err);
}

int wc_shard_info_get(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards, wc_shard_info *out,
                      wc_err *err)
{
    wc_part p;
    wc_shard_rect rc;
    int r = no_tensor(f, i, err);
    if (!r) r = wc_part_shard(wc_file_entry(f, i), dim, rank, n_shards, wc_file_label(f), &p, err);
    if (!r) wc_part_resolve(wc_file_entry(f, i), &p, out, &rc);
    return r;
}

int wc_decode_tensor_shard(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards, void *out,
                           size_t out_size, float *scales, size_t n_scales, wc_err *err)
{
    return wc_shard_decode(f, i, dim, rank, n_shards, out, out_size, scales, n_scales, wc_dsp_get(false), NULL,
                           err);
}

/* Whether name is `suffix` or ends in "." suffix. */
static bool named(const char *name, const char *suffix)
{
    const size_t n = strlen(name), k = strlen(suffix);
    return n >= k && !strcmp(name + n - k, suffix) && (n == k || name[n - k - 1] == '.');
}

int wc_shard_layout_dim(const char *layout, const char *name, int *dim)
{
    static const char *const rows[] = {"q_proj.weight",    "k_proj.weight",  "v_proj.weight",
                                       "q_proj.bias",      "k_proj.bias",    "v_proj.bias",
                                       "gate_proj.weight", "up_proj.weight", "embed_tokens.weight",
                                       "lm_head.weight"};
    static const char *const cols[] = {"o_proj.weight", "down_proj.weight"};
    if (!layout || strcmp(layout, "llama")) return WC_EINVAL;
    *dim = -1;
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++)
        if (named(name, rows[k])) *dim = 0;
    for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++)
        if (named(name, cols[k])) *dim = 1;
    return 0;
}

int wc_decode_tensor_slice(const wc_file *f, size_t i, int dim, uint64_t start, uint64_t len, void *out,
                           size_t out_size, float *scales, size_t n_scales, wc_err *err)
{
    wc_part p;
    int r = no_tensor(f, i, err);
    if (!r) r = wc_part_slice(wc_file_entry(f, i), dim, start, len, wc_file_label(f), &p, err);
    return r ? r : wc_part_decode(f, i, &p, out, out_size, scales, n_scales, wc_dsp_get(false), NULL, err);
}
