/* libFuzzer target: every rANS tile decoder this CPU runs (codec/dsp.c's
 * levels: the gather and plain-load forms of each SIMD level) against the
 * reference on the same stream, tables and tile shape. Any difference in
 * return code or in a byte written aborts; the sanitizers catch reads and
 * writes outside the exact-size buffers.
 *
 * Input: byte 0 the table precision (8 + b % 7 bits), bytes 1-2 the row
 * width w (1 + v % 1100), byte 3 the mode (bit 0: raw stream, else a valid
 * stream of the symbols; bits 1-2: tables - 1; bit 3: damage the valid
 * stream at the offset in bytes 4-5 with the mask in byte 6), then the
 * symbols (valid mode, at most MAX_N) or the stream itself (raw mode, its
 * symbol count from bytes 4-5). A table is the histogram of the symbols of
 * the rows that use it (row y uses table y % tables), so that every symbol
 * it codes has a frequency. Each level's two-tile form (rans_decode2) runs
 * too, on that stream paired with a valid stream of the same symbols, both
 * ways round. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsp.h"

#define MAX_N 6000

static int run_level(wc_rans_decode_fn fn, const wc_rans_dec_table *dec, const uint8_t *rt, uint32_t w,
                     const uint8_t *stream, size_t len, size_t n, uint8_t **out)
{
    /* an exact-size copy of the stream, so that a read past it is seen */
    uint8_t *s = malloc(len ? len : 1);
    *out = malloc(n ? n : 1);
    if (!s || !*out) abort();
    memcpy(s, stream, len);
    memset(*out, 0xa5, n);
    const int r = fn(dec, rt, w, s, len, *out, n);
    free(s);
    return r;
}

/* Each level's two-tile form on (a, b) and (b, a) against the reference
 * on each alone. */
static void compare_pairs(const wc_rans_job *a, const wc_rans_job *b)
{
    const unsigned cpu = wc_cpu_flags();
    const wc_rans_level *lv;
    const size_t n_lv = wc_rans_levels(&lv);
    const wc_rans_job *in[2] = {a, b};
    uint8_t *ref[2];
    int rr[2];
    for (int i = 0; i < 2; i++)
        rr[i] = run_level(wc_rans_decode_ref, in[i]->tables, in[i]->row_table, in[i]->w, in[i]->stream, in[i]->len,
                          in[i]->n, &ref[i]);
    for (size_t k = 0; k < n_lv; k++) {
        if ((lv[k].flags & cpu) != lv[k].flags) continue;
        for (int swap = 0; swap < 2; swap++) {
            wc_rans_job job[2] = {*in[swap], *in[!swap]};
            uint8_t *s[2];
            for (int i = 0; i < 2; i++) {
                s[i] = malloc(job[i].len ? job[i].len : 1);
                job[i].out = malloc(job[i].n ? job[i].n : 1);
                if (!s[i] || !job[i].out) abort();
                /* filled as run_level fills the reference's: a failed
                 * decode leaves the bytes after its failure point */
                memset(job[i].out, 0xa5, job[i].n);
                memcpy(s[i], job[i].stream, job[i].len);
                job[i].stream = s[i];
            }
            int r[2];
            lv[k].fn2(&job[0], &job[1], r);
            for (int i = 0; i < 2; i++) {
                const int o = i ^ swap;
                if (r[i] != rr[o] || memcmp(job[i].out, ref[o], job[i].n)) abort();
                free(s[i]), free(job[i].out);
            }
        }
    }
    free(ref[0]), free(ref[1]);
}

static void compare_levels(const wc_rans_dec_table *dec, const uint8_t *rt, uint32_t w, const uint8_t *stream,
                           size_t len, size_t n)
{
    const unsigned cpu = wc_cpu_flags();
    const wc_rans_level *lv;
    const size_t n_lv = wc_rans_levels(&lv);
    uint8_t *ref_out;
    const int ref_r = run_level(wc_rans_decode_ref, dec, rt, w, stream, len, n, &ref_out);
    for (size_t k = 0; k < n_lv; k++) {
        if (lv[k].fn == wc_rans_decode_ref || (lv[k].flags & cpu) != lv[k].flags) continue;
        uint8_t *out;
        const int r = run_level(lv[k].fn, dec, rt, w, stream, len, n, &out);
        if (r != ref_r || memcmp(out, ref_out, n)) abort();
        free(out);
    }
    free(ref_out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    const uint32_t bits = WC_RANS_MIN_PROB_BITS + data[0] % (WC_RANS_MAX_PROB_BITS - WC_RANS_MIN_PROB_BITS + 1);
    const uint32_t w = 1 + (uint32_t)(data[1] | data[2] << 8) % 1100;
    const bool raw = data[3] & 1, dmg = data[3] & 8;
    const uint32_t n_tables = 1 + (data[3] >> 1 & 3);
    const size_t at = (size_t)(data[4] | data[5] << 8);
    const uint8_t mask = data[6];
    data += 8, size -= 8;

    /* the symbols whose histograms make the tables: the input itself (in
     * raw mode only for the tables) */
    const size_t n = raw ? at % MAX_N : (size < MAX_N ? size : MAX_N);
    const size_t n_sym = size < MAX_N ? size : MAX_N;
    uint64_t hist[4][256] = {{0}};
    for (size_t i = 0; i < n_sym; i++) hist[(i / w) % n_tables][data[i]]++;
    wc_rans_table tab[4];
    static wc_rans_dec_table dec[4];
    for (uint32_t t = 0; t < n_tables; t++) {
        if (!n_sym || !hist[t][data[0]]) hist[t][n_sym ? data[0] : 0]++;
        if (wc_rans_normalize(hist[t], bits, &tab[t])) return 0; /* more symbols than slots */
        wc_rans_dec_table_init(&dec[t], &tab[t]);
    }
    const size_t most = n > n_sym ? n : n_sym, rows = most ? (most - 1) / w + 1 : 1;
    uint8_t *rt = NULL;
    if (n_tables > 1) {
        rt = malloc(rows);
        if (!rt) abort();
        for (size_t y = 0; y < rows; y++) rt[y] = (uint8_t)(y % n_tables);
    }
    /* a valid stream of the symbols, the pairs' second tile */
    wc_buf v = {0};
    if (wc_rans_encode_tile(tab, rt, w, data, n_sym, &v)) abort();
    const wc_rans_job valid = {dec, rt, w, v.data, v.len, NULL, n_sym};
    if (raw) {
        compare_levels(dec, rt, w, data, size, n);
        const wc_rans_job job = {dec, rt, w, data, size, NULL, n};
        compare_pairs(&job, &valid);
    } else {
        wc_buf b = {0};
        if (wc_rans_encode_tile(tab, rt, w, data, n, &b)) abort();
        if (dmg && b.len) b.data[at % b.len] ^= mask;
        compare_levels(dec, rt, w, b.data, b.len, n);
        const wc_rans_job job = {dec, rt, w, b.data, b.len, NULL, n};
        compare_pairs(&job, &valid);
        wc_buf_free(&b);
    }
    wc_buf_free(&v);
    free(rt);
    return 0;
}
