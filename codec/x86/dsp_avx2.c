/* AVX2 versions of the decoder's hot routines (codec/dsp.h), bit-exact with
 * codec/dsp_ref.c; tests/checkasm compares them on random and real inputs.
 *
 * This is the only file compiled with -mavx2: wc_dsp_init_avx2 is called
 * only after wc_cpu_flags() has seen AVX2. */
#include <immintrin.h>

#include "dsp.h"
#include "rans_simd.h"

void wc_dsp_init_avx2(wc_dsp *d);
int wc_rans_decode_avx2(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                        const uint8_t *stream, size_t len, uint8_t *out, size_t n);
int wc_rans_decode_avx2_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                              const uint8_t *stream, size_t len, uint8_t *out, size_t n);
void wc_rans_decode2_avx2(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
void wc_rans_decode2_avx2_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2]);

/* ---- rANS ---------------------------------------------------------------
 *
 * The 32 lanes are four vectors of eight states. One step of the reference
 * loop becomes, per vector: a gather of slot_dec (freq, slot - cum and, if
 * the table allows, the symbol; else a second gather of slot_sym), and the
 * renormalisation of ryg's SIMD rANS: the lanes below L form a movemask, and
 * the words they take in lane order are eight words loaded at the read
 * position and spread to those lanes by a permutation looked up by mask.
 * The lookups have a plain-load form too (wc_load8; codec/dsp.c chooses
 * between the two by speed). */

/* The four vectors must live in registers: gcc -O2 does not unroll these
 * loops by itself, and then keeps the vectors on the stack. */
#define UNROLL4 _Pragma("GCC unroll 4")

/* EXPAND[m][j]: for a lane j set in m, the index of its word among the
 * eight loaded (the number of set lanes below it); 0 for other lanes. */
#define PC8(m) (((m) & 1) + ((m) >> 1 & 1) + ((m) >> 2 & 1) + ((m) >> 3 & 1) + ((m) >> 4 & 1) + \
                ((m) >> 5 & 1) + ((m) >> 6 & 1) + ((m) >> 7 & 1))
#define EX(m, j) ((m) >> (j) & 1 ? PC8((m) & ((1 << (j)) - 1)) : 0)
#define ROW(m) {EX(m, 0), EX(m, 1), EX(m, 2), EX(m, 3), EX(m, 4), EX(m, 5), EX(m, 6), EX(m, 7)}
#define R4(m) ROW(m), ROW((m) + 1), ROW((m) + 2), ROW((m) + 3)
#define R16(m) R4(m), R4((m) + 4), R4((m) + 8), R4((m) + 12)
#define R64(m) R16(m), R16((m) + 16), R16((m) + 32), R16((m) + 48)
static const uint8_t EXPAND[256][8] = {R64(0), R64(64), R64(128), R64(192)};

/* Per-lane table facts of one step: lane l decodes symbol base + l, in tile
 * row row + (col + l) / w. off4 counts uint32 (slot_dec gathers) and off1
 * bytes (slot_sym gathers), both from tables[0]; pk is all ones where the
 * lane's table is packed. */
typedef struct lane_tables {
    __m256i off4[4], off1[4], pk[4];
} lane_tables;

static inline void table_offsets(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                 size_t row, size_t col, lane_tables *lt)
{
    const int32_t sz = (int32_t)sizeof(wc_rans_dec_table);
    if (col + WC_RANS_LANES <= w) {
        const int32_t t = row_table[row];
        UNROLL4
        for (int j = 0; j < 4; j++) {
            lt->off4[j] = _mm256_set1_epi32(t * (sz / 4));
            lt->off1[j] = _mm256_set1_epi32(t * sz);
            lt->pk[j] = _mm256_set1_epi32(-(int32_t)tables[t].packed);
        }
    } else if (w >= WC_RANS_LANES) {
        /* two rows: lanes below w - col in the first */
        const int32_t t0 = row_table[row], t1 = row_table[row + 1];
        const __m256i split = _mm256_set1_epi32((int32_t)(w - col));
        const __m256i a4 = _mm256_set1_epi32(t0 * (sz / 4)), b4 = _mm256_set1_epi32(t1 * (sz / 4));
        const __m256i a1 = _mm256_set1_epi32(t0 * sz), b1 = _mm256_set1_epi32(t1 * sz);
        const __m256i ap = _mm256_set1_epi32(-(int32_t)tables[t0].packed);
        const __m256i bp = _mm256_set1_epi32(-(int32_t)tables[t1].packed);
        UNROLL4
        for (int j = 0; j < 4; j++) {
            const __m256i lane = _mm256_setr_epi32(8 * j, 8 * j + 1, 8 * j + 2, 8 * j + 3, 8 * j + 4,
                                                   8 * j + 5, 8 * j + 6, 8 * j + 7);
            const __m256i first = _mm256_cmpgt_epi32(split, lane);
            lt->off4[j] = _mm256_blendv_epi8(b4, a4, first);
            lt->off1[j] = _mm256_blendv_epi8(b1, a1, first);
            lt->pk[j] = _mm256_blendv_epi8(bp, ap, first);
        }
    } else {
        int32_t t[WC_RANS_LANES], pk[WC_RANS_LANES];
        for (int l = 0; l < WC_RANS_LANES; l++) {
            t[l] = row_table[row];
            pk[l] = -(int32_t)tables[t[l]].packed;
            if (++col == w) col = 0, row++;
        }
        UNROLL4
        for (int j = 0; j < 4; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(t + 8 * j));
            lt->off4[j] = _mm256_mullo_epi32(v, _mm256_set1_epi32(sz / 4));
            lt->off1[j] = _mm256_mullo_epi32(v, _mm256_set1_epi32(sz));
            lt->pk[j] = _mm256_loadu_si256((const __m256i *)(pk + 8 * j));
        }
    }
}

/* The vectors' state: lanes' states, and between the two halves of a step
 * (update, then renormalisation) the lanes below L and the symbols. */
typedef struct vstate {
    __m256i x[4], need[4], sym[4];
    unsigned m[4];
} vstate;

typedef struct vconst {
    __m256i mask, lo, lo12;
    __m128i shift;
    const int *dec, *sb;
} vconst;

/* First half of a step for vector j: the table entry of each lane's slot
 * and the state update. `packed`: every table's slot_dec holds the symbol
 * too, saving the second gather; otherwise each lane reads its entry in
 * its own table's form. */
static inline __attribute__((always_inline)) void
update(vstate *v, int j, const vconst *k, const lane_tables *lt, bool packed, bool rt, bool loads)
{
    const __m256i slot = _mm256_and_si256(v->x[j], k->mask), xs = _mm256_srl_epi32(v->x[j], k->shift);
    const __m256i e = WC_GATHER(loads, k->dec, rt ? _mm256_add_epi32(slot, lt->off4[j]) : slot, 4);
    __m256i x;
    if (packed) {
        /* freq * xs + bias = (freq - 1) * xs + (xs + bias) */
        v->sym[j] = e;
        x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(e, 20), xs),
                             _mm256_add_epi32(xs, _mm256_and_si256(_mm256_srli_epi32(e, 8), k->lo)));
    } else {
        const __m256i pk = lt->pk[j];
        const __m256i s = WC_GATHER(loads, k->sb, rt ? _mm256_add_epi32(slot, lt->off1[j]) : slot, 1);
        v->sym[j] = _mm256_blendv_epi8(s, e, pk);
        const __m256i f = _mm256_blendv_epi8(_mm256_srli_epi32(e, 16), _mm256_sub_epi32(_mm256_srli_epi32(e, 20), pk), pk);
        const __m256i b = _mm256_blendv_epi8(_mm256_and_si256(e, k->lo),
                                             _mm256_and_si256(_mm256_srli_epi32(e, 8), k->lo12), pk);
        x = _mm256_add_epi32(_mm256_mullo_epi32(f, xs), b);
    }
    v->x[j] = x;
    v->need[j] = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256());
    v->m[j] = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(v->need[j]));
}

/* Second half for vector j: its lanes below L take the words from word
 * `p` on, in lane order; returns how many. */
static inline __attribute__((always_inline)) unsigned renorm(vstate *v, int j, const uint8_t *w8p)
{
    const __m128i w8 = _mm_loadu_si128((const __m128i *)w8p);
    const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)EXPAND[v->m[j]]));
    const __m256i wv = _mm256_permutevar8x32_epi32(_mm256_cvtepu16_epi32(w8), idx);
    v->x[j] = _mm256_blendv_epi8(v->x[j], _mm256_or_si256(_mm256_slli_epi32(v->x[j], 16), wv), v->need[j]);
    return (unsigned)__builtin_popcount(v->m[j]);
}

/* Whole steps of 32 symbols from *base_io on. The loop is rotated: an
 * iteration renormalises vector j of one step and at once updates vector j
 * of the next, so that each vector's gather is issued as soon as its own
 * words are in, rather than after the whole step (the gathers, about 10
 * cycles each here, then stay busy). */
static inline __attribute__((always_inline)) int
decode_steps(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *words,
             size_t nw, size_t *pos_io, uint32_t *st, size_t *base_io, uint8_t *out, size_t n, const bool packed,
             const bool rt, const bool loads)
{
    const uint32_t bits = tables[0].t.prob_bits;
    const vconst k = {
        .mask = _mm256_set1_epi32((int32_t)((1u << bits) - 1)),
        .lo12 = _mm256_set1_epi32(0xfff),
        .lo = _mm256_set1_epi32(packed ? 0xfff : 0xffff),
        .shift = _mm_cvtsi32_si128((int)bits),
        .dec = (const int *)tables[0].slot_dec,
        .sb = (const int *)(const void *)tables[0].slot_sym,
    };
    vstate v;
    UNROLL4
    for (int j = 0; j < 4; j++) v.x[j] = _mm256_loadu_si256((const __m256i *)(st + 8 * j));
    lane_tables lt;
    UNROLL4
    for (int j = 0; j < 4; j++) lt.off4[j] = lt.off1[j] = lt.pk[j] = _mm256_setzero_si256();
    size_t row = 0, col = 0, pos = *pos_io, base = *base_io;

    /* Words are read eight at a time from `src`, where word k sits at byte
     * 2 * (k - src_k). Near the end of the stream that is a zero-padded
     * copy of the last words, so the vector loads never leave the stream
     * and a missing word reads as 0, as in the reference. */
    uint16_t tail[64];
    const uint8_t *src = words;
    size_t src_k = 0;
    int r = 0;

#define NEXT_TABLES()                                                   \
    do {                                                                \
        if (rt) {                                                       \
            table_offsets(tables, row_table, w, row, col, &lt);         \
            col += WC_RANS_LANES;                                       \
            if (col >= w) row += col / w, col %= w;                     \
        }                                                               \
    } while (0)

    NEXT_TABLES();
    UNROLL4
    for (int j = 0; j < 4; j++) update(&v, j, &k, &lt, packed, rt, loads);
    for (;;) {
        /* renormalise the step at base; update the one after it, if whole */
        if (src == words && pos + WC_RANS_LANES > nw) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, words + 2 * pos, 2 * (nw - pos));
            src = (const uint8_t *)tail;
            src_k = pos;
        }
        const bool more = base + 2 * WC_RANS_LANES <= n;
        vstate done;
        size_t p = pos;
        if (more) {
            NEXT_TABLES();
            UNROLL4
            for (int j = 0; j < 4; j++) {
                p += renorm(&v, j, src + 2 * (p - src_k));
                done.sym[j] = v.sym[j];
                update(&v, j, &k, &lt, packed, rt, loads);
            }
        } else {
            UNROLL4
            for (int j = 0; j < 4; j++) p += renorm(&v, j, src + 2 * (p - src_k));
            done = v;
        }
        wc_rans_store_syms(done.sym, out + base);
        pos = p;
        base += WC_RANS_LANES;
        /* the reference fails at the end of the step that ran out */
        if (pos > nw) {
            r = WC_ECORRUPT;
            break;
        }
        if (!more) break;
    }
#undef NEXT_TABLES
    UNROLL4
    for (int j = 0; j < 4; j++) _mm256_storeu_si256((__m256i *)(st + 8 * j), v.x[j]);
    *pos_io = pos, *base_io = base;
    return r;
}

static inline __attribute__((always_inline)) int
decode_tile(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *stream, size_t len,
            uint8_t *out, size_t n, const bool loads)
{
    uint32_t st[WC_RANS_LANES];
    const uint8_t *words;
    size_t nw, pos = 0, base = 0;
    int r = wc_rans_decode_head(stream, len, st, &words, &nw);
    if (r) return r;

    if (n >= WC_RANS_LANES) {
        /* the one-gather form needs it in every table the tile's rows use */
        const bool packed = wc_rans_tables_packed(tables, row_table, w, n);
        if (row_table)
            r = packed ? decode_steps(tables, row_table, w, words, nw, &pos, st, &base, out, n, true, true, loads)
                       : decode_steps(tables, row_table, w, words, nw, &pos, st, &base, out, n, false, true, loads);
        else
            r = packed ? decode_steps(tables, NULL, w, words, nw, &pos, st, &base, out, n, true, false, loads)
                       : decode_steps(tables, NULL, w, words, nw, &pos, st, &base, out, n, false, false, loads);
    }
    if (!r) r = wc_rans_decode_steps(tables, row_table, w, words, nw, &pos, st, base, out, n);
    if (r) return r;
    return wc_rans_decode_end(words, nw, pos, st);
}

int wc_rans_decode_avx2(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                        const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    return decode_tile(tables, row_table, w, stream, len, out, n, false);
}

/* The same with plain loads for the table lookups (wc_load8). */
int wc_rans_decode_avx2_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                              const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    return decode_tile(tables, row_table, w, stream, len, out, n, true);
}

/* ---- two tiles at once (codec/x86/rans_pair.h) ---------------------------- */

typedef lane_tables pair_lt;

static inline void pair_consts(const wc_rans_dec_table *d, vconst *k, lane_tables *lt)
{
    const uint32_t bits = d->t.prob_bits;
    k->mask = _mm256_set1_epi32((int32_t)((1u << bits) - 1));
    k->lo12 = _mm256_set1_epi32(0xfff);
    k->lo = _mm256_set1_epi32(0xfff); /* packed */
    k->shift = _mm_cvtsi32_si128((int)bits);
    k->dec = (const int *)d->slot_dec;
    k->sb = (const int *)(const void *)d->slot_sym;
    UNROLL4
    for (int j = 0; j < 4; j++) lt->off4[j] = lt->off1[j] = lt->pk[j] = _mm256_setzero_si256();
}

static inline __attribute__((always_inline)) void pair_update(vstate *v, int j, const vconst *k, const pair_lt *lt,
                                                              bool loads)
{
    update(v, j, k, lt, true, false, loads);
}

#include "rans_pair.h"

void wc_rans_decode2_avx2(const wc_rans_job *a, const wc_rans_job *b, int r[2]) { decode_pair(a, b, r, false); }

/* The plain-load form pairs no tiles: with AVX2's sixteen vector registers
 * two tiles' state spills, and its loop is bound by the shuffle port
 * rather than by the chain (2026-12-03: 1.48 GB/s paired against 1.55
 * one tile at a time; the gather form 1.83-1.85 against 1.69-1.73). */
void wc_rans_decode2_avx2_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2])
{
    r[0] = decode_tile(a->tables, a->row_table, a->w, a->stream, a->len, a->out, a->n, true);
    r[1] = decode_tile(b->tables, b->row_table, b->w, b->stream, b->len, b->out, b->n, true);
}

/* ---- inverse transforms -------------------------------------------------- */

/* The Haar step on the 16 byte pairs (s, d) of v: a = s - (sx(d) >> 1),
 * b = a + d. As a 16-bit lane d:s, sx(d) >> 1 is the lane shifted right by
 * 9 (arithmetic), and the low bytes of the differences are exact. */
static inline __m256i haar_inv_v(__m256i v)
{
    const __m256i a = _mm256_and_si256(_mm256_sub_epi8(v, _mm256_srai_epi16(v, 9)), _mm256_set1_epi16(0xff));
    return _mm256_add_epi8(_mm256_or_si256(a, _mm256_slli_epi16(a, 8)),
                           _mm256_and_si256(v, _mm256_set1_epi16((short)0xff00)));
}

static inline void haar_inv(uint8_t *s, uint8_t *d)
{
    uint8_t a = (uint8_t)(*s - ((int8_t)*d >> 1));
    *d = (uint8_t)(a + *d);
    *s = a;
}

static void itx_haar_avx2(uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = tile + y * stride;
        uint32_t x = 0;
        for (; x + 32 <= w; x += 32)
            _mm256_storeu_si256((__m256i *)(row + x), haar_inv_v(_mm256_loadu_si256((const __m256i *)(row + x))));
        for (; x + 1 < w; x += 2) haar_inv(&row[x], &row[x + 1]);
    }
}

/* A WHT4 block (ss, ds, sd, dd) is a Haar step on its two pairs, giving
 * (s0, s1, d0, d1), a swap of the middle bytes, and a Haar step on
 * (s0, d0) and (s1, d1). */
static void itx_wht4_avx2(uint8_t *tile, size_t stride, uint32_t h, uint32_t w)
{
    const __m256i swap = _mm256_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15, 0, 2, 1, 3, 4,
                                          6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = tile + y * stride;
        uint32_t x = 0;
        for (; x + 32 <= w; x += 32) {
            __m256i v = haar_inv_v(_mm256_loadu_si256((const __m256i *)(row + x)));
            _mm256_storeu_si256((__m256i *)(row + x), haar_inv_v(_mm256_shuffle_epi8(v, swap)));
        }
        for (; x + 4 <= w; x += 4) {
            uint8_t *p = row + x;
            haar_inv(&p[0], &p[1]);
            haar_inv(&p[2], &p[3]);
            uint8_t t = p[1];
            p[1] = p[2], p[2] = t;
            haar_inv(&p[0], &p[1]);
            haar_inv(&p[2], &p[3]);
        }
        if (x + 2 <= w) haar_inv(&row[x], &row[x + 1]);
    }
}

/* ---- predictions ---------------------------------------------------------- */

/* Prefix sums modulo 256 of the 32 bytes of v, plus carry (a byte in
 * every lane). */
static inline __m256i prefix_v(__m256i v, __m256i carry)
{
    v = _mm256_add_epi8(v, _mm256_slli_si256(v, 1));
    v = _mm256_add_epi8(v, _mm256_slli_si256(v, 2));
    v = _mm256_add_epi8(v, _mm256_slli_si256(v, 4));
    v = _mm256_add_epi8(v, _mm256_slli_si256(v, 8));
    /* the low half's total, into every byte of the high half */
    const __m256i last = _mm256_shuffle_epi8(v, _mm256_set1_epi8(15));
    v = _mm256_add_epi8(v, _mm256_permute2x128_si256(last, last, 0x08));
    return _mm256_add_epi8(v, carry);
}

/* The last byte of v in every lane. */
static inline __m256i last_byte(__m256i v)
{
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, _mm256_set1_epi8(15)), 0xff);
}

static void pred_left_avx2(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)up, (void)upleft;
    size_t c = 0;
    if (n >= 32) {
        __m256i carry = _mm256_set1_epi8((char)left);
        for (; c + 32 <= n; c += 32) {
            const __m256i v = prefix_v(_mm256_loadu_si256((const __m256i *)(q + c)), carry);
            _mm256_storeu_si256((__m256i *)(q + c), v);
            carry = last_byte(v);
        }
        left = q[c - 1];
    }
    for (; c < n; c++) left = q[c] = (uint8_t)(q[c] + left);
}

static void pred_top_avx2(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    (void)left, (void)upleft;
    if (!up) return;
    size_t c = 0;
    for (; c + 32 <= n; c += 32)
        _mm256_storeu_si256((__m256i *)(q + c), _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(q + c)),
                                                                _mm256_loadu_si256((const __m256i *)(up + c))));
    for (; c < n; c++) q[c] = (uint8_t)(q[c] + up[c]);
}

/* q[c] = res[c] + q[c-1] + up[c] - up[c-1] telescopes to
 * q[c] = (res[0] + ... + res[c]) + up[c] + left - upleft: a prefix sum of
 * the residuals plus the row above (0 when there is none). */
static void pred_planar_avx2(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft)
{
    const uint8_t k = (uint8_t)(left - upleft);
    uint8_t sum = 0;
    size_t c = 0;
    if (n >= 32) {
        __m256i carry = _mm256_setzero_si256();
        const __m256i kv = _mm256_set1_epi8((char)k);
        for (; c + 32 <= n; c += 32) {
            const __m256i p = prefix_v(_mm256_loadu_si256((const __m256i *)(q + c)), carry);
            carry = last_byte(p);
            __m256i v = _mm256_add_epi8(p, kv);
            if (up) v = _mm256_add_epi8(v, _mm256_loadu_si256((const __m256i *)(up + c)));
            _mm256_storeu_si256((__m256i *)(q + c), v);
        }
        sum = (uint8_t)_mm256_extract_epi8(carry, 0);
    }
    for (; c < n; c++) {
        sum = (uint8_t)(sum + q[c]);
        q[c] = (uint8_t)(sum + k + (up ? up[c] : 0));
    }
}

void wc_dsp_init_avx2(wc_dsp *d)
{
    d->itx[WC_TX_HAAR] = itx_haar_avx2;
    d->itx[WC_TX_WHT4] = itx_wht4_avx2;
    d->pred[WC_PRED_LEFT] = pred_left_avx2;
    d->pred[WC_PRED_TOP] = pred_top_avx2;
    d->pred[WC_PRED_PLANAR] = pred_planar_avx2;
}
