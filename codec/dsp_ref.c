/* Reference versions of the decoder's hot routines (codec/dsp.h): plain C,
 * written to be read beside docs/FORMAT.md. */
#include <stdbool.h>
#include <string.h>

#include "dsp.h"

static inline int sx(uint8_t b) { return (int8_t)b; }

int wc_rans_decode_head(const uint8_t *stream, size_t len, uint32_t *st, const uint8_t **words, size_t *nw)
{
    if (len < WC_RANS_HEADER_BYTES || (len - WC_RANS_HEADER_BYTES) % 4) return WC_ECORRUPT;
    for (int l = 0; l < WC_RANS_LANES; l++) {
        st[l] = wc_rd32(stream + 4 * l);
        if (st[l] < WC_RANS_L) return WC_ECORRUPT;
    }
    *words = stream + WC_RANS_HEADER_BYTES;
    *nw = (len - WC_RANS_HEADER_BYTES) / 2;
    return 0;
}

int wc_rans_decode_steps(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *words,
                         size_t nw, size_t *pos_io, uint32_t *st_io, size_t base, uint8_t *out, size_t n)
{
    /* local copies: out may alias anything, these then stay in registers */
    uint32_t st[WC_RANS_LANES];
    memcpy(st, st_io, sizeof st);
    size_t pos = *pos_io;
    uint32_t bad = 0;

    /* Step k decodes symbols 32k .. 32k+31, lane l taking symbol 32k+l; the
     * lanes that need a word read them in lane order. Symbol i is in tile
     * row i / w, whose table it uses. */
    const uint32_t bits = tables[0].t.prob_bits, mask = (1u << bits) - 1;
    for (; base < n; base += WC_RANS_LANES) {
        const int lanes = n - base < WC_RANS_LANES ? (int)(n - base) : WC_RANS_LANES;
        /* the common case, a whole step inside one row, looks its table up once */
        const size_t row = base / w;
        const bool one_row = (base + (size_t)lanes - 1) / w == row;
        const wc_rans_dec_table *d = &tables[row_table ? row_table[row] : 0];
        for (int l = 0; l < lanes; l++) {
            if (!one_row) d = &tables[row_table ? row_table[(base + (size_t)l) / w] : 0];
            uint32_t x = st[l];
            uint32_t slot = x & mask;
            uint8_t s = d->slot_sym[slot];
            x = d->t.freq[s] * (x >> bits) + slot - d->t.cum[s];
            /* Written without a branch: whether a lane needs a word is a
             * coin toss that a branch predictor cannot learn. */
            uint32_t need = x < WC_RANS_L, have = pos < nw;
            uint32_t word = have ? wc_rd16(words + 2 * pos) : 0;
            bad |= need & !have;
            x = need ? x << 16 | word : x;
            pos += need;
            st[l] = x;
            out[base + (size_t)l] = s;
        }
        if (bad) return WC_ECORRUPT;
    }
    memcpy(st_io, st, sizeof st);
    *pos_io = pos;
    return 0;
}

int wc_rans_decode_end(const uint8_t *words, size_t nw, size_t pos, const uint32_t *st)
{
    for (int l = 0; l < WC_RANS_LANES; l++)
        if (st[l] != WC_RANS_L) return WC_ECORRUPT;
    if (pos == nw) return 0;
    if (pos + 1 == nw && (pos & 1) && wc_rd16(words + 2 * pos) == 0) return 0;
    return WC_ECORRUPT;
}

int wc_rans_decode_ref(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                       const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    uint32_t st[WC_RANS_LANES];
    const uint8_t *words;
    size_t nw, pos = 0;
    int r = wc_rans_decode_head(stream, len, st, &words, &nw);
    if (!r) r = wc_rans_decode_steps(tables, row_table, w, words, nw, &pos, st, 0, out, n);
    return r ? r : wc_rans_decode_end(words, nw, pos, st);
}

void wc_rans_decode2_ref(const wc_rans_job *a, const wc_rans_job *b, int r[2])
{
    r[0] = wc_rans_decode_ref(a->tables, a->row_table, a->w, a->stream, a->len, a->out, a->n);
    r[1] = wc_rans_decode_ref(b->tables, b->row_table, b->w, b->stream, b->len, b->out, b->n);
}

/* The Haar (S-transform) lifting pair, modulo 256. */
static void haar_fwd(uint8_t *a, uint8_t *b)
{
    uint8_t d = (uint8_t)(*b - *a);
    *a = (uint8_t)(*a + (sx(d) >> 1));
    *b = d;
}

static void haar_inv(uint8_t *s, uint8_t *d)
{
    uint8_t a = (uint8_t)(*s - (sx(*d) >> 1));
    *d = (uint8_t)(a + *d);
    *s = a;
}

/* One row of the 4-point lifting WHT; see FORMAT.md for the order. */
static void wht4_fwd(uint8_t *p)
{
    haar_fwd(&p[0], &p[1]); /* (s0, d0) */
    haar_fwd(&p[2], &p[3]); /* (s1, d1) */
    uint8_t s0 = p[0], d0 = p[1], s1 = p[2], d1 = p[3];
    haar_fwd(&s0, &s1);     /* (ss, ds) */
    haar_fwd(&d0, &d1);     /* (sd, dd) */
    p[0] = s0, p[1] = s1, p[2] = d0, p[3] = d1;
}

static void wht4_inv(uint8_t *p)
{
    uint8_t s0 = p[0], s1 = p[1], d0 = p[2], d1 = p[3];
    haar_inv(&s0, &s1);
    haar_inv(&d0, &d1);
    p[0] = s0, p[1] = d0, p[2] = s1, p[3] = d1;
    haar_inv(&p[0], &p[1]);
    haar_inv(&p[2], &p[3]);
}

static void itx_none(uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    (void)tile, (void)stride, (void)h, (void)w;
}

static void itx_haar(uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x + 1 < w; x += 2) haar_inv(&tile[y * stride + x], &tile[y * stride + x + 1]);
}

static void itx_wht4(uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = tile + y * stride;
        uint32_t x = 0;
        for (; x + 4 <= w; x += 4) wht4_inv(row + x);
        if (x + 2 <= w) haar_inv(&row[x], &row[x + 1]);
    }
}

void wc_fwd_tx(enum wc_tx tx, uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    for (uint32_t y = 0; y < h && tx != WC_TX_NONE; y++) {
        uint8_t *row = tile + y * stride;
        uint32_t x = 0;
        if (tx == WC_TX_WHT4)
            for (; x + 4 <= w; x += 4) wht4_fwd(row + x);
        for (; x + 2 <= w; x += 2) {
            haar_fwd(&row[x], &row[x + 1]);
            if (tx == WC_TX_WHT4) break; /* at most one trailing pair */
        }
    }
}

/* Predictions: q holds residuals on entry, values on return. */
static void pred_none(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)q, (void)up, (void)n, (void)left, (void)upleft;
}

static void pred_left(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)up, (void)upleft;
    for (size_t c = 0; c < n; c++) left = q[c] = (uint8_t)(q[c] + left);
}

static void pred_top(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)left, (void)upleft;
    if (!up) return;
    for (size_t c = 0; c < n; c++) q[c] = (uint8_t)(q[c] + up[c]);
}

static void pred_avg(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)upleft;
    for (size_t c = 0; c < n; c++) {
        int top = up ? sx(up[c]) : 0;
        left = q[c] = (uint8_t)(q[c] + ((sx(left) + top) >> 1));
    }
}

static void pred_planar(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    for (size_t c = 0; c < n; c++) {
        uint8_t top = up ? up[c] : 0;
        left = q[c] = (uint8_t)(q[c] + left + top - upleft);
        upleft = top;
    }
}

void wc_dsp_init_ref(wc_dsp *d)
{
    d->rans_decode = wc_rans_decode_ref;
    d->rans_decode2 = wc_rans_decode2_ref;
    d->itx[WC_TX_NONE] = itx_none;
    d->itx[WC_TX_HAAR] = itx_haar;
    d->itx[WC_TX_WHT4] = itx_wht4;
    d->pred[WC_PRED_NONE] = pred_none;
    d->pred[WC_PRED_LEFT] = pred_left;
    d->pred[WC_PRED_TOP] = pred_top;
    d->pred[WC_PRED_AVG] = pred_avg;
    d->pred[WC_PRED_PLANAR] = pred_planar;
}
