/* wc_tensor_stats_get: what each mode of a coded tensor saved. */
#include <math.h>
#include <stdlib.h>

#include "reader.h"
#include "record.h"

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

    const uint8_t *rec = wc_file_base(f) + e->offset;
    const uint64_t stream_bytes = e->size - e->tiles_off;
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint8_t *ent = rec + e->index_off + (uint64_t)WC_TILE_ENTRY * t;
        uint64_t begin = wc_rd32(ent), end = t + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : stream_bytes;
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        double plain = 0;
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) plain += cost[q[(r0 + y) * e->cols + c0 + x]];
        unsigned p = WC_MODE_PRED(ent[4]), tx = WC_MODE_TX(ent[4]);
        s->tiles[p][tx]++;
        s->saved_bits[p][tx] += plain - 8.0 * (double)(end - begin);
        s->stream_bits += 8.0 * (double)(end - begin);
    }
    s->overhead_bits = 8.0 * (double)(e->tiles_off - wc_entry_scales_size(e));
    free(q);
    return 0;
}
