/* checkasm: the two-tile rANS decoders (rans_decode2) against the
 * reference on each tile alone, and the forcing of a decoder level by
 * WC_RANS_DECODER. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkasm.h"

/* A random tile for the pair checks: a shape of CA_SHAPES, one table (now and
 * then several, which a decoder may not pair), its stream, and sometimes
 * damaged. */
typedef struct pair_case {
    wc_rans_table tab[3];
    wc_rans_dec_table *dec;
    uint8_t row_table[1024];
    bool rt;
    uint32_t w;
    size_t n;
    wc_buf b;
} pair_case;

static void pair_case_make(uint64_t *rng, pair_case *pc)
{
    const uint32_t bits = WC_RANS_MIN_PROB_BITS + (uint32_t)(ca_rand(rng) % 7);
    size_t k;
    do k = ca_rand(rng) % CA_N_SHAPES;
    while (CA_SHAPES[k][0] > 1024 || (size_t)CA_SHAPES[k][0] * CA_SHAPES[k][1] > 300000);
    const uint32_t h = CA_SHAPES[k][0], n_tables = ca_rand(rng) % 5 ? 1 : 3;
    pc->w = CA_SHAPES[k][1], pc->n = (size_t)h * pc->w, pc->rt = n_tables > 1;
    for (uint32_t t = 0; t < n_tables; t++) {
        ca_random_table(rng, bits, &pc->tab[t]);
        wc_rans_dec_table_init(&pc->dec[t], &pc->tab[t]);
    }
    for (uint32_t y = 0; y < h; y++) pc->row_table[y] = (uint8_t)(ca_rand(rng) % n_tables);
    uint8_t *sym = malloc(pc->n);
    for (size_t i = 0; i < pc->n; i++) {
        const wc_rans_dec_table *d = &pc->dec[pc->rt ? pc->row_table[i / pc->w] : 0];
        sym[i] = d->slot_sym[ca_rand(rng) & ((1u << d->t.prob_bits) - 1)];
    }
    memset(&pc->b, 0, sizeof pc->b);
    if (wc_rans_encode_tile(pc->tab, pc->rt ? pc->row_table : NULL, pc->w, sym, pc->n, &pc->b)) abort();
    free(sym);
    /* a third damaged: a flipped bit anywhere, or the stream cut short */
    const uint64_t d = ca_rand(rng) % 6;
    if (d == 0) pc->b.data[ca_rand(rng) % pc->b.len] ^= (uint8_t)(1u << ca_rand(rng) % 8);
    if (d == 1 && pc->b.len >= WC_RANS_HEADER_BYTES + 8) pc->b.len -= 4 * (1 + ca_rand(rng) % ((pc->b.len - WC_RANS_HEADER_BYTES) / 4));
}

/* fn2 on a pair against the reference on each tile alone: return codes and
 * every byte of exact-size outputs. */
static void compare_pair(check *c, const wc_rans_job *ja, const wc_rans_job *jb, wc_rans_decode2_fn fn2,
                         const char *what)
{
    const wc_rans_job *in[2] = {ja, jb};
    wc_rans_job job[2];
    uint8_t *s[2], *o[2], *ref[2];
    int rr[2], r[2];
    for (int i = 0; i < 2; i++) {
        job[i] = *in[i];
        s[i] = malloc(job[i].len ? job[i].len : 1), o[i] = malloc(job[i].n + !job[i].n), ref[i] = malloc(job[i].n + !job[i].n);
        memcpy(s[i], in[i]->stream, job[i].len);
        memset(o[i], 0xa5, job[i].n), memset(ref[i], 0xa5, job[i].n);
        job[i].stream = s[i];
        rr[i] = wc_rans_decode_ref(job[i].tables, job[i].row_table, job[i].w, s[i], job[i].len, ref[i], job[i].n);
        job[i].out = o[i];
    }
    fn2(&job[0], &job[1], r);
    c->cases++;
    for (int i = 0; i < 2; i++) {
        if (r[i] != rr[i])
            ca_mismatch(c, "%s, tile %d of the pair (n %zu, w %u): returns %d, reference %d", what, i, job[i].n, job[i].w,
                     r[i], rr[i]);
        else if (memcmp(o[i], ref[i], job[i].n))
            ca_mismatch(c, "%s, tile %d of the pair (n %zu, w %u): byte %zu differs", what, i, job[i].n, job[i].w,
                     ca_first_diff(o[i], ref[i], job[i].n));
        free(s[i]), free(o[i]), free(ref[i]);
    }
}

static wc_rans_job pair_job(const pair_case *pc)
{
    return (wc_rans_job){pc->dec, pc->rt ? pc->row_table : NULL, pc->w, pc->b.data, pc->b.len, NULL, pc->n};
}

void ca_check_rans_pairs(check *c, wc_rans_decode2_fn fn2, uint64_t seed, const ca_set *set)
{
    uint64_t rng = seed ^ 0x7061;
    static wc_rans_dec_table dec[2][3];
    pair_case pc[2];
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < 2; i++) pc[i].dec = dec[i], pair_case_make(&rng, &pc[i]);
        const wc_rans_job a = pair_job(&pc[0]), b = pair_job(&pc[1]);
        compare_pair(c, &a, &b, fn2, "random pair");
        /* a tile beside itself: both run out, or not, at the same step */
        compare_pair(c, &a, &a, fn2, "a tile twice");
        for (int i = 0; i < 2; i++) wc_buf_free(&pc[i].b);
    }
    /* the real set, consecutive tiles paired, coded as the encoder does */
    for (size_t i = 0; i < set->n; i++) {
        ca_coded cd;
        if (ca_code(&set->m[i], 13, 1, 65536, &cd)) abort();
        wc_rans_job prev = {0};
        for (size_t t = 0; t < cd.n_tiles; t++) {
            uint64_t r0, c0;
            uint32_t h, w;
            ca_tile(&cd, &set->m[i], t, &r0, &c0, &h, &w);
            const wc_rans_job j = {cd.dec, NULL, w, cd.streams + cd.off[t], cd.off[t + 1] - cd.off[t], NULL,
                                   (size_t)h * w};
            compare_pair(c, t ? &prev : &j, &j, fn2, set->m[i].name);
            prev = j;
        }
        ca_coded_free(&cd);
    }
}

/* WC_RANS_DECODER forces the level it names wherever the flags allow it;
 * a name the flags do not allow, or no level's name, leaves the choice to
 * the calibration. */
void ca_check_rans_force(check *c, unsigned cpu)
{
    const wc_rans_level *lv;
    const size_t n = wc_rans_levels(&lv);
    const char *given = getenv("WC_RANS_DECODER");
    char *saved = given ? strdup(given) : NULL;
    unsetenv("WC_RANS_DECODER");
    const wc_rans_level *calibrated = wc_rans_pick(cpu);
    for (size_t k = 0; k < n; k++) {
        if ((lv[k].flags & cpu) != lv[k].flags) continue;
        setenv("WC_RANS_DECODER", lv[k].name, 1);
        c->cases++;
        if (wc_rans_pick(cpu) != &lv[k]) ca_mismatch(c, "WC_RANS_DECODER=%s picks %s", lv[k].name, wc_rans_pick(cpu)->name);
        /* no SIMD allowed: the reference, whatever the variable says */
        c->cases++;
        if (wc_rans_pick(0) != &lv[0] || lv[0].fn != wc_rans_decode_ref)
            ca_mismatch(c, "WC_RANS_DECODER=%s with no CPU flags picks %s", lv[k].name, wc_rans_pick(0)->name);
    }
    setenv("WC_RANS_DECODER", "no-such-level", 1);
    c->cases++;
    if (wc_rans_pick(cpu) != calibrated) ca_mismatch(c, "an unknown name picks %s", wc_rans_pick(cpu)->name);
    if (saved) setenv("WC_RANS_DECODER", saved, 1);
    else unsetenv("WC_RANS_DECODER");
    free(saved);
}

