/* AVX-512 (F + VL) version of the rANS tile decoder (codec/dsp.h),
 * bit-exact with codec/dsp_ref.c; tests/checkasm compares it with the
 * reference at its own level. The other routines stay the AVX2 ones.
 *
 * Compiled with -mavx512f -mavx512vl; wc_dsp_init_avx512 is called only
 * after wc_cpu_flags() has seen both (and AVX2).
 *
 * Same layout as the AVX2 decoder (codec/x86/dsp_avx2.c): 32 lanes in four
 * vectors of eight, one ymm gather per vector and step (a zmm gather costs
 * twice two ymm ones on Zen 4; bench/RESULTS.md#cpu-gathers). What AVX-512 changes is
 * the chain a lane waits on from one step to the next:
 * - the lanes below L go straight into a mask register (vpcmpud), and the
 *   words they take are spread to them by vpexpandd under that mask, then
 *   or-ed in under it: no movemask, no table of permutations, no blend;
 * - when a step lies inside one tile row (every step when w is a multiple
 *   of 32), its table is the gather's scalar base: no per-lane offsets.
 * Two entry points: the gather form, and a plain-load form (wc_load8) for
 * CPUs whose gathers are slow; codec/dsp.c times both and picks. */
#include <immintrin.h>

#include "dsp.h"
#include "rans_simd.h"

int wc_rans_decode_avx512(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                          const uint8_t *stream, size_t len, uint8_t *out, size_t n);
int wc_rans_decode_avx512_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                const uint8_t *stream, size_t len, uint8_t *out, size_t n);
void wc_rans_decode2_avx512(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
void wc_rans_decode2_avx512_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2]);


#define UNROLL4 _Pragma("GCC unroll 4")

typedef struct vstate {
    __m256i x[4], sym[4];
    __mmask8 need[4];
} vstate;

/* The tables of one step. one: every lane in the same table, whose
 * slot_dec and slot_sym are dec and sb, packed or not as pk says;
 * otherwise dec and sb are tables[0]'s and off4 (uint32 units) and off1
 * (bytes) lead each lane to its own table, pk per lane. */
typedef struct step_tables {
    const int *dec, *sb;
    bool one;
    __m256i off4[4], off1[4];
    __mmask8 pk[4];
} step_tables;

static inline void step_tables_at(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                  size_t row, size_t col, bool packed, step_tables *lt)
{
    const int32_t sz = (int32_t)sizeof(wc_rans_dec_table);
    if (col + WC_RANS_LANES <= w) {
        const wc_rans_dec_table *t = &tables[row_table[row]];
        lt->one = true;
        lt->dec = (const int *)t->slot_dec;
        lt->sb = (const int *)(const void *)t->slot_sym;
        if (!packed) {
            UNROLL4
            for (int j = 0; j < 4; j++) lt->pk[j] = t->packed ? 0xff : 0;
        }
        return;
    }
    lt->one = false;
    lt->dec = (const int *)tables[0].slot_dec;
    lt->sb = (const int *)(const void *)tables[0].slot_sym;
    int32_t t[WC_RANS_LANES];
    unsigned pk = 0;
    for (int l = 0; l < WC_RANS_LANES; l++) {
        t[l] = row_table[row];
        pk |= (tables[t[l]].packed ? 1u : 0u) << l;
        if (++col == w) col = 0, row++;
    }
    UNROLL4
    for (int j = 0; j < 4; j++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(t + 8 * j));
        lt->off4[j] = _mm256_mullo_epi32(v, _mm256_set1_epi32(sz / 4));
        lt->off1[j] = _mm256_mullo_epi32(v, _mm256_set1_epi32(sz));
        lt->pk[j] = (__mmask8)(pk >> 8 * j);
    }
}

typedef struct vconst {
    __m256i mask, lo, lo12, L;
    __m128i shift;
} vconst;

/* First half of a step for vector j: each lane's table entry and the state
 * update, and the lanes that fall below L. `off`: the step's lanes are in
 * different tables. */
static inline __attribute__((always_inline)) void
update(vstate *v, int j, const vconst *k, const step_tables *lt, bool packed, bool off, bool loads)
{
    const __m256i slot = _mm256_and_si256(v->x[j], k->mask), xs = _mm256_srl_epi32(v->x[j], k->shift);
    const __m256i e = WC_GATHER(loads, lt->dec, off ? _mm256_add_epi32(slot, lt->off4[j]) : slot, 4);
    __m256i x;
    if (packed) {
        /* freq * xs + bias = (freq - 1) * xs + (xs + bias) */
        v->sym[j] = e;
        x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(e, 20), xs),
                             _mm256_add_epi32(xs, _mm256_and_si256(_mm256_srli_epi32(e, 8), k->lo12)));
    } else {
        const __mmask8 pk = lt->pk[j];
        const __m256i s = WC_GATHER(loads, lt->sb, off ? _mm256_add_epi32(slot, lt->off1[j]) : slot, 1);
        v->sym[j] = _mm256_mask_mov_epi32(s, pk, e);
        const __m256i f = _mm256_mask_add_epi32(_mm256_srli_epi32(e, 16), pk, _mm256_srli_epi32(e, 20),
                                                _mm256_set1_epi32(1));
        const __m256i b = _mm256_mask_and_epi32(_mm256_and_si256(e, k->lo), pk, _mm256_srli_epi32(e, 8), k->lo12);
        x = _mm256_add_epi32(_mm256_mullo_epi32(f, xs), b);
    }
    v->x[j] = x;
    v->need[j] = _mm256_cmplt_epu32_mask(x, k->L);
}

/* Second half for vector j: its lanes below L take the words from w8p on,
 * in lane order; returns how many. */
static inline __attribute__((always_inline)) unsigned renorm(vstate *v, int j, const uint8_t *w8p)
{
    const __m256i wv = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w8p));
    const __mmask8 m = v->need[j];
    v->x[j] = _mm256_mask_or_epi32(v->x[j], m, _mm256_slli_epi32(v->x[j], 16), _mm256_maskz_expand_epi32(m, wv));
    return (unsigned)__builtin_popcount((unsigned)m);
}

/* Whole steps of 32 symbols from *base_io on, the loop rotated as in the
 * AVX2 decoder: vector j of one step is renormalised, then at once updated
 * for the next step. */
static inline __attribute__((always_inline)) int
decode_steps(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *words,
             size_t nw, size_t *pos_io, uint32_t *st, size_t *base_io, uint8_t *out, size_t n, const bool packed,
             const bool rt, const bool loads)
{
    const uint32_t bits = tables[0].t.prob_bits;
    const vconst k = {
        .mask = _mm256_set1_epi32((int32_t)((1u << bits) - 1)),
        .lo12 = _mm256_set1_epi32(0xfff),
        .lo = _mm256_set1_epi32(0xffff),
        .L = _mm256_set1_epi32((int32_t)WC_RANS_L),
        .shift = _mm_cvtsi32_si128((int)bits),
    };
    vstate v;
    UNROLL4
    for (int j = 0; j < 4; j++) v.x[j] = _mm256_loadu_si256((const __m256i *)(st + 8 * j));
    step_tables lt;
    lt.one = true;
    lt.dec = (const int *)tables[0].slot_dec;
    lt.sb = (const int *)(const void *)tables[0].slot_sym;
    UNROLL4
    for (int j = 0; j < 4; j++) lt.off4[j] = lt.off1[j] = _mm256_setzero_si256(), lt.pk[j] = tables[0].packed ? 0xff : 0;
    size_t row = 0, col = 0, pos = *pos_io, base = *base_io;

    /* Words are read eight at a time from `src`, where word k sits at byte
     * 2 * (k - src_k); near the end of the stream from a zero-padded copy
     * of the last words, so that loads never leave the stream. */
    uint16_t tail[64];
    const uint8_t *src = words;
    size_t src_k = 0;
    int r = 0;

#define NEXT_TABLES()                                                    \
    do {                                                                 \
        if (rt) {                                                        \
            step_tables_at(tables, row_table, w, row, col, packed, &lt); \
            col += WC_RANS_LANES;                                        \
            if (col >= w) row += col / w, col %= w;                      \
        }                                                                \
    } while (0)

    NEXT_TABLES();
    if (!rt || lt.one) {
        UNROLL4
        for (int j = 0; j < 4; j++) update(&v, j, &k, &lt, packed, false, loads);
    } else {
        UNROLL4
        for (int j = 0; j < 4; j++) update(&v, j, &k, &lt, packed, true, loads);
    }
    for (;;) {
        if (src == words && pos + WC_RANS_LANES > nw) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, words + 2 * pos, 2 * (nw - pos));
            src = (const uint8_t *)tail;
            src_k = pos;
        }
        const bool more = base + 2 * WC_RANS_LANES <= n;
        __m256i done[4];
        size_t p = pos;
        if (more) {
            NEXT_TABLES();
            if (!rt || lt.one) {
                UNROLL4
                for (int j = 0; j < 4; j++) {
                    p += renorm(&v, j, src + 2 * (p - src_k));
                    done[j] = v.sym[j];
                    update(&v, j, &k, &lt, packed, false, loads);
                }
            } else {
                UNROLL4
                for (int j = 0; j < 4; j++) {
                    p += renorm(&v, j, src + 2 * (p - src_k));
                    done[j] = v.sym[j];
                    update(&v, j, &k, &lt, packed, true, loads);
                }
            }
        } else {
            UNROLL4
            for (int j = 0; j < 4; j++) {
                p += renorm(&v, j, src + 2 * (p - src_k));
                done[j] = v.sym[j];
            }
        }
        wc_rans_store_syms(done, out + base);
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

/* Several tables, rows of at least RUN_MIN_W symbols: the whole steps
 * inside a stretch of tile rows of one table are a run, decoded by the
 * one-table loop with that table as its only one (in its own packed form
 * or not). A choice of table per step inside the rotated loop halved its
 * speed (gcc then issues the four renormalisations, the table choice and
 * the four gathers apart). A step across two rows of different tables, at
 * most one per row, goes through the scalar tail. Each run costs a drain
 * of the loop, hence the minimum width. Same results, writes and failure
 * point as the reference: both parts fail at the end of the step that ran
 * out. */
#define RUN_MIN_W 256

static inline __attribute__((always_inline)) int
decode_runs(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *words, size_t nw,
            size_t *pos, uint32_t *st, size_t *base_io, uint8_t *out, size_t n, const bool loads)
{
    size_t base = *base_io;
    int r = 0;
    while (!r && base + WC_RANS_LANES <= n) {
        /* rows row .. y - 1 share row's table */
        const size_t row = base / w;
        size_t y = row + 1;
        while (y * w < n && row_table[y] == row_table[row]) y++;
        const size_t steps = ((y * w < n ? y * w : n) - base) / WC_RANS_LANES;
        if (steps) {
            const wc_rans_dec_table *t = &tables[row_table[row]];
            const size_t end = base + steps * WC_RANS_LANES;
            r = t->packed ? decode_steps(t, NULL, w, words, nw, pos, st, &base, out, end, true, false, loads)
                          : decode_steps(t, NULL, w, words, nw, pos, st, &base, out, end, false, false, loads);
        } else {
            r = wc_rans_decode_steps(tables, row_table, w, words, nw, pos, st, base, out, base + WC_RANS_LANES);
            base += WC_RANS_LANES;
        }
    }
    *base_io = base;
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

    if (n >= WC_RANS_LANES && row_table && w >= RUN_MIN_W) {
        r = decode_runs(tables, row_table, w, words, nw, &pos, st, &base, out, n, loads);
    } else if (n >= WC_RANS_LANES) {
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

int wc_rans_decode_avx512(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                          const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    return decode_tile(tables, row_table, w, stream, len, out, n, false);
}

/* The same with plain loads for the table lookups (wc_load8). */
int wc_rans_decode_avx512_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    return decode_tile(tables, row_table, w, stream, len, out, n, true);
}

/* ---- two tiles at once (codec/x86/rans_pair.h) ---------------------------- */

typedef step_tables pair_lt;

static inline void pair_consts(const wc_rans_dec_table *d, vconst *k, step_tables *lt)
{
    const uint32_t bits = d->t.prob_bits;
    k->mask = _mm256_set1_epi32((int32_t)((1u << bits) - 1));
    k->lo12 = _mm256_set1_epi32(0xfff);
    k->lo = _mm256_set1_epi32(0xffff);
    k->L = _mm256_set1_epi32((int32_t)WC_RANS_L);
    k->shift = _mm_cvtsi32_si128((int)bits);
    lt->one = true;
    lt->dec = (const int *)d->slot_dec;
    lt->sb = (const int *)(const void *)d->slot_sym;
}

static inline __attribute__((always_inline)) void pair_update(vstate *v, int j, const vconst *k, const pair_lt *lt,
                                                              bool loads)
{
    update(v, j, k, lt, true, false, loads);
}

#include "rans_pair.h"

void wc_rans_decode2_avx512(const wc_rans_job *a, const wc_rans_job *b, int r[2]) { decode_pair(a, b, r, false); }

void wc_rans_decode2_avx512_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2])
{
    decode_pair(a, b, r, true);
}
