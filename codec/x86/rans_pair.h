/* Two tiles' steps in one loop, for the SIMD rANS decoders of codec/x86
 * (rans_decode2, codec/dsp.h). Included by dsp_avx2.c and dsp_avx512.c
 * after their own decoder, whose parts it uses: vstate, vconst, renorm,
 * decode_steps, decode_tile, and two hooks, pair_lt (the file's per-step
 * table facts) with pair_consts (a tile's constants for one packed table)
 * and pair_update (its update of vector j for such a tile). */
#ifndef WC_X86_RANS_PAIR_H
#define WC_X86_RANS_PAIR_H

/* A step of one tile waits on the step before it: each vector's update
 * (gather, multiply, compare) and then the word fetch of the next vector,
 * whose position counts the words the vectors before it took; ~61 cycles
 * a step with AVX-512 on the development machine of 2026-12-03, where the
 * loop's uops would fit in ~25. Two tiles' steps in one loop share that time. Each
 * tile's operations and their order are those of decode_steps; the paired
 * loop runs while both tiles have a whole step after the current one, and
 * stops at the first step either runs out of words in (the reference's
 * failure point). The rest of each tile, from its own state, goes through
 * decode_steps and the scalar tail, as a tile alone does. Only for tiles
 * of one packed table each (a step's table is then the gather's base);
 * other pairs are decoded one after the other. */

typedef struct pair_tile {
    const wc_rans_job *job;
    uint32_t st[WC_RANS_LANES];
    const uint8_t *words, *src;
    size_t nw, pos, base, src_k;
    int r;
    uint16_t tail[64];
} pair_tile;

/* Near the end of the stream, words come from a zero-padded copy of the
 * last ones (see decode_steps). */
static inline void pair_src(pair_tile *t)
{
    if (t->src == t->words && t->pos + WC_RANS_LANES > t->nw) {
        memset(t->tail, 0, sizeof t->tail);
        memcpy(t->tail, t->words + 2 * t->pos, 2 * (t->nw - t->pos));
        t->src = (const uint8_t *)t->tail;
        t->src_k = t->pos;
    }
}

/* Renormalises the step a tile has updated (no next update), stores its
 * symbols and checks its words. */
static inline __attribute__((always_inline)) void pair_drain(pair_tile *t, vstate *v)
{
    pair_src(t);
    __m256i done[4];
    size_t p = t->pos;
    UNROLL4
    for (int j = 0; j < 4; j++) {
        p += renorm(v, j, t->src + 2 * (p - t->src_k));
        done[j] = v->sym[j];
    }
    wc_rans_store_syms(done, t->job->out + t->base);
    t->pos = p;
    t->base += WC_RANS_LANES;
    if (t->pos > t->nw) t->r = WC_ECORRUPT;
}

static inline __attribute__((always_inline)) void pair_steps(pair_tile *a, pair_tile *b, const bool loads)
{
    vconst ka, kb;
    pair_lt la, lb;
    pair_consts(a->job->tables, &ka, &la);
    pair_consts(b->job->tables, &kb, &lb);
    vstate A, B;
    UNROLL4
    for (int j = 0; j < 4; j++) {
        A.x[j] = _mm256_loadu_si256((const __m256i *)(a->st + 8 * j));
        B.x[j] = _mm256_loadu_si256((const __m256i *)(b->st + 8 * j));
    }
    UNROLL4
    for (int j = 0; j < 4; j++) pair_update(&A, j, &ka, &la, loads);
    UNROLL4
    for (int j = 0; j < 4; j++) pair_update(&B, j, &kb, &lb, loads);
    for (;;) {
        pair_src(a), pair_src(b);
        const bool more = a->base + 2 * WC_RANS_LANES <= a->job->n && b->base + 2 * WC_RANS_LANES <= b->job->n;
        if (!more) {
            pair_drain(a, &A), pair_drain(b, &B);
            break;
        }
        __m256i da[4], db[4];
        size_t pa = a->pos, pb = b->pos;
        UNROLL4
        for (int j = 0; j < 4; j++) {
            pa += renorm(&A, j, a->src + 2 * (pa - a->src_k));
            da[j] = A.sym[j];
            pair_update(&A, j, &ka, &la, loads);
            pb += renorm(&B, j, b->src + 2 * (pb - b->src_k));
            db[j] = B.sym[j];
            pair_update(&B, j, &kb, &lb, loads);
        }
        wc_rans_store_syms(da, a->job->out + a->base);
        wc_rans_store_syms(db, b->job->out + b->base);
        a->pos = pa, b->pos = pb;
        a->base += WC_RANS_LANES, b->base += WC_RANS_LANES;
        if (a->pos > a->nw) a->r = WC_ECORRUPT;
        if (b->pos > b->nw) b->r = WC_ECORRUPT;
        if (a->r || b->r) {
            /* the other has updated its next step: renormalise it */
            if (!a->r) pair_drain(a, &A);
            if (!b->r) pair_drain(b, &B);
            break;
        }
    }
    UNROLL4
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_si256((__m256i *)(a->st + 8 * j), A.x[j]);
        _mm256_storeu_si256((__m256i *)(b->st + 8 * j), B.x[j]);
    }
}

/* The rest of a tile after the paired loop, as decode_tile finishes one. */
static inline __attribute__((always_inline)) int pair_finish(pair_tile *t, const bool loads)
{
    const wc_rans_job *j = t->job;
    int r = t->r;
    if (!r && t->base + WC_RANS_LANES <= j->n)
        r = decode_steps(j->tables, NULL, j->w, t->words, t->nw, &t->pos, t->st, &t->base, j->out, j->n, true, false,
                         loads);
    if (!r) r = wc_rans_decode_steps(j->tables, NULL, j->w, t->words, t->nw, &t->pos, t->st, t->base, j->out, j->n);
    return r ? r : wc_rans_decode_end(t->words, t->nw, t->pos, t->st);
}

static inline __attribute__((always_inline)) void decode_pair(const wc_rans_job *a, const wc_rans_job *b, int r[2],
                                                              const bool loads)
{
    const wc_rans_job *job[2] = {a, b};
    bool pairable = true;
    for (int i = 0; i < 2; i++)
        pairable &= !job[i]->row_table && job[i]->tables[0].packed && job[i]->n >= 2 * WC_RANS_LANES;
    pair_tile t[2];
    for (int i = 0; pairable && i < 2; i++) {
        t[i].job = job[i];
        t[i].pos = t[i].base = t[i].src_k = 0;
        t[i].r = wc_rans_decode_head(job[i]->stream, job[i]->len, t[i].st, &t[i].words, &t[i].nw);
        t[i].src = t[i].words;
        pairable &= !t[i].r;
    }
    if (!pairable) {
        r[0] = decode_tile(a->tables, a->row_table, a->w, a->stream, a->len, a->out, a->n, loads);
        r[1] = decode_tile(b->tables, b->row_table, b->w, b->stream, b->len, b->out, b->n, loads);
        return;
    }
    pair_steps(&t[0], &t[1], loads);
    r[0] = pair_finish(&t[0], loads);
    r[1] = pair_finish(&t[1], loads);
}

#endif
