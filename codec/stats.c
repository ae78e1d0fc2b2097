/* wc_tensor_stats_get: what each mode of a coded tensor saved. */
#include <math.h>
#include <stdlib.h>

#include "reader.h"
#include "rec_reader.h"

/* Per tile of the parsed record: the bits its values would take with the
 * tensor's order-0 model (cost, from the decoded values q), against its
 * stream. */
static void tile_stats(const wc_rec *rec, const uint8_t *q, const double cost[256], wc_tensor_stats *s)
{
    const wc_entry *e = rec->e;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint64_t bytes = wc_rec_begin(rec, t + 1) - wc_rec_begin(rec, t);
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        double plain = 0;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) plain += cost[q[(r0 + y) * e->cols + c0 + x]];
        const uint8_t m = wc_rec_mode(rec, t);
        const unsigned p = WC_MODE_PRED(m), tx = WC_MODE_TX(m);
        s->tiles[p][tx]++;
        s->saved_bits[p][tx] += plain - 8.0 * (double)bytes;
        s->stream_bits += 8.0 * (double)bytes;
    }
    s->overhead_bits = 8.0 * (double)(e->tiles_off - wc_entry_scales_size(e));
}

int wc_tensor_stats_get(const wc_file *f, size_t i, wc_tensor_stats *s, wc_err *err)
{
    memset(s, 0, sizeof *s);
    if (i >= wc_file_tensor_count(f)) return wc_fail(err, WC_EINVAL, "no tensor %zu", i);
    const wc_entry *e = wc_file_entry(f, i);
    if (e->coding != WC_CODING_RANS_I8) return 0;
    uint8_t *q = malloc(e->numel);
    if (!q) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = wc_decode_tensor(f, i, q, e->numel, NULL, 0, err);
    if (r) {
        free(q);
        return r;
    }
    uint64_t hist[256] = {0};
    for (uint64_t k = 0; k < e->numel; k++) hist[q[k]]++;
    double cost[256];
    for (int v = 0; v < 256; v++) cost[v] = hist[v] ? -log2((double)hist[v] / (double)e->numel) : 0;
    s->h0_bits = wc_entropy_bits(hist);
    uint8_t *head = malloc(e->tiles_off);
    wc_rec rec;
    if (!head) r = wc_fail(err, WC_ENOMEM, "out of memory");
    else r = wc_file_pread(f, e, e->offset, e->tiles_off, head, err);
    if (!r && !(r = wc_rec_parse(&rec, e, head, wc_file_label(f), err))) {
        tile_stats(&rec, q, cost, s);
        wc_rec_free(&rec);
    }
    free(head);
    free(q);
    return r;
}
