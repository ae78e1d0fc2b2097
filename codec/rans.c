/* rANS tables, encoder and the reference decoder. */
#include <math.h>
#include <stdlib.h>

#include "rans.h"

double wc_entropy_bits(const uint64_t hist[256])
{
    uint64_t n = 0;
    for (int s = 0; s < 256; s++) n += hist[s];
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (hist[s]) bits -= (double)hist[s] * log2((double)hist[s] / (double)n);
    return bits;
}

double wc_rans_cost_bits(const uint64_t hist[256], const wc_rans_table *t)
{
    double bits = 0;
    for (int s = 0; s < 256; s++) {
        if (!hist[s]) continue;
        if (!t->freq[s]) return INFINITY;
        bits += (double)hist[s] * ((double)t->prob_bits - log2(t->freq[s]));
    }
    return bits;
}

static void fill_cum(wc_rans_table *t)
{
    uint32_t c = 0;
    for (int s = 0; s < 256; s++) {
        t->cum[s] = (uint16_t)c;
        c += t->freq[s];
        t->rcp[s] = t->freq[s] > 1 ? UINT64_MAX / t->freq[s] + 1 : 0;
    }
}

/* The value of moving a frequency f one step in direction dir (see
 * wc_rans_normalize); NaN where the step is not allowed. */
static double step_value(uint64_t count, uint32_t f, int dir)
{
    if (!count || (dir < 0 && f <= 1)) return NAN;
    return dir > 0 ? (double)count * log2((f + 1.0) / f) : (double)count * log2(f / (f - 1.0));
}

int wc_rans_normalize(const uint64_t hist[256], uint32_t prob_bits, wc_rans_table *t)
{
    if (prob_bits < WC_RANS_MIN_PROB_BITS || prob_bits > WC_RANS_MAX_PROB_BITS) return WC_EINVAL;
    uint64_t n = 0;
    for (int s = 0; s < 256; s++) n += hist[s];
    if (!n) return WC_EINVAL;
    const uint32_t m = 1u << prob_bits;
    int64_t sum = 0;
    t->prob_bits = prob_bits;
    for (int s = 0; s < 256; s++) {
        uint32_t f = 0;
        if (hist[s]) {
            double want = (double)hist[s] * m / (double)n;
            f = want < 1 ? 1 : (uint32_t)(want + 0.5);
        }
        t->freq[s] = (uint16_t)(f > m ? m : f);
        sum += t->freq[s];
    }
    /* Fix the total one step at a time, each time where it costs the fewest
     * bits: the gain of f -> f+1 is c*log2((f+1)/f), the loss of f -> f-1 is
     * c*log2(f/(f-1)). Each symbol's value is cached and recomputed only
     * when its frequency moves. */
    const int dir = sum < m ? 1 : -1;
    double v[256];
    for (int s = 0; s < 256; s++) v[s] = step_value(hist[s], t->freq[s], dir);
    while (sum != m) {
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (v[s] == v[s] && (best < 0 || (dir > 0 ? v[s] > v[best] : v[s] < v[best]))) best = s;
        if (best < 0) return WC_EINVAL; /* more than m distinct symbols */
        t->freq[best] = (uint16_t)(t->freq[best] + dir);
        sum += dir;
        v[best] = step_value(hist[best], t->freq[best], dir);
    }
    fill_cum(t);
    return 0;
}

size_t wc_rans_table_write(const wc_rans_table *t, uint8_t *out)
{
    /* The used symbols of INT8 weights sit around 0, i.e. they wrap from
     * 0x81.. to ..0x7f: code the shortest circular range holding them all. */
    int best_first = 0, best_len = 256;
    for (int first = 0; first < 256; first++) {
        if (!t->freq[first] || t->freq[(first + 255) & 255]) continue;
        int len = 256;
        while (len > 1 && !t->freq[(first + len - 1) & 255]) len--;
        if (len < best_len) best_first = first, best_len = len;
    }
    size_t o = 0;
    out[o++] = (uint8_t)best_first;
    wc_wr16(out + o, (uint16_t)best_len);
    o += 2;
    for (int i = 0; i < best_len; i++) {
        uint16_t f = t->freq[(best_first + i) & 255];
        if (f < 0x80) {
            out[o++] = (uint8_t)f;
        } else {
            out[o++] = (uint8_t)(0x80 | f >> 8);
            out[o++] = (uint8_t)f;
        }
    }
    return o;
}

int wc_rans_table_read(const uint8_t *p, size_t avail, uint32_t prob_bits, wc_rans_table *t,
                       size_t *used)
{
    if (prob_bits < WC_RANS_MIN_PROB_BITS || prob_bits > WC_RANS_MAX_PROB_BITS) return WC_EFORMAT;
    if (avail < 3) return WC_EFORMAT;
    unsigned first = p[0], len = wc_rd16(p + 1);
    if (len < 1 || len > 256) return WC_EFORMAT;
    size_t o = 3;
    uint32_t sum = 0;
    memset(t, 0, sizeof *t);
    t->prob_bits = prob_bits;
    for (unsigned i = 0; i < len; i++) {
        if (o >= avail) return WC_EFORMAT;
        uint32_t f = p[o++];
        if (f & 0x80) {
            if (o >= avail) return WC_EFORMAT;
            f = (f & 0x7f) << 8 | p[o++];
        }
        sum += f;
        if (sum > 1u << prob_bits) return WC_EFORMAT;
        t->freq[(first + i) & 255] = (uint16_t)f;
    }
    if (sum != 1u << prob_bits) return WC_EFORMAT;
    fill_cum(t);
    *used = o;
    return 0;
}

void wc_rans_dec_table_init(wc_rans_dec_table *d, const wc_rans_table *t)
{
    d->t = *t;
    d->packed = 1;
    for (int s = 0; s < 256; s++) d->packed &= t->freq[s] <= 4096;
    /* Symbol by symbol, each run of slots an arithmetic sequence written
     * four at a time (one vector store): the decode of a small tensor
     * with eight tables spent a third of its time building them. */
    const uint32_t sh = d->packed ? 8 : 0;
    for (uint32_t s = 0; s < 256; s++) {
        const uint32_t f = t->freq[s], c = t->cum[s];
        memset(d->slot_sym + c, (int)s, f);
        uint32_t *dec = d->slot_dec + c;
        const uint32_t e = d->packed ? (f - 1) << 20 | s : f << 16;
        uint32_t b = 0;
        for (; b + 4 <= f; b += 4) {
            dec[b] = e | b << sh;
            dec[b + 1] = e | (b + 1) << sh;
            dec[b + 2] = e | (b + 2) << sh;
            dec[b + 3] = e | (b + 3) << sh;
        }
        for (; b < f; b++) dec[b] = e | b << sh;
    }
}

int wc_rans_encode_tile(const wc_rans_table *tables, const uint8_t *row_table, uint32_t w,
                        const uint8_t *sym, size_t n, wc_buf *out)
{
    /* Words are produced last-read-first: fill a scratch array backwards.
     * Each symbol emits at most one word. */
    uint16_t *words = malloc((n + 1) * sizeof *words);
    if (!words) return WC_ENOMEM;
    uint16_t *wp = words + n + 1;
    uint32_t st[WC_RANS_LANES];
    for (int l = 0; l < WC_RANS_LANES; l++) st[l] = WC_RANS_L;

    for (size_t i = n; i-- > 0;) {
        const wc_rans_table *t = &tables[row_table ? row_table[i / w] : 0];
        const uint32_t bits = t->prob_bits;
        uint32_t *x = &st[i % WC_RANS_LANES];
        uint32_t f = t->freq[sym[i]];
        if (!f) {
            free(words);
            return WC_EINVAL;
        }
        if ((uint64_t)*x >= (uint64_t)f << (32 - bits)) {
            *--wp = (uint16_t)*x;
            *x >>= 16;
        }
        /* x / f by a multiply: with m = floor(2^64 / f) + 1 the quotient is
         * exact for every 32-bit x (f = 1 would need m = 2^64 + 1). */
        uint32_t q = f == 1 ? *x : (uint32_t)(((unsigned __int128)*x * t->rcp[sym[i]]) >> 64);
        *x = (q << bits) + (*x - q * f) + t->cum[sym[i]];
    }
    size_t nw = (size_t)(words + n + 1 - wp);
    int r = wc_buf_reserve(out, WC_RANS_HEADER_BYTES + 2 * (nw + 1));
    if (r) {
        free(words);
        return r;
    }
    uint8_t *p = out->data + out->len;
    for (int l = 0; l < WC_RANS_LANES; l++, p += 4) wc_wr32(p, st[l]);
    for (size_t k = 0; k < nw; k++, p += 2) wc_wr16(p, wp[k]);
    if (nw & 1) wc_wr16(p, 0), p += 2;
    out->len = (size_t)(p - out->data);
    free(words);
    return 0;
}
