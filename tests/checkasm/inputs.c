/* Real inputs for checkasm and bench_dsp (inputs.h). */
#include <stdio.h>
#include <stdlib.h>

#include "inputs.h"
#include "quant.h"
#include "safetensors.h"

int ca_load_real(const char *path, uint64_t min_weights, uint64_t max_bytes, ca_set *set)
{
    wc_st_file f;
    wc_err err = {0};
    if (wc_st_open(&f, path, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    int r = 0;
    for (size_t i = 0; i < f.n_tensors && set->bytes < max_bytes && !r; i++) {
        const wc_st_tensor *t = &f.tensors[i];
        bool quant = wc_dtype_quantizable(t->dtype, true);
        if (t->ndim < 2 || t->numel < min_weights || t->numel == 0 || (!quant && t->dtype != WC_DT_I8))
            continue;
        ca_matrix m = {.rows = t->shape[0], .cols = t->numel / t->shape[0]};
        snprintf(m.name, sizeof m.name, "%s", t->name);
        m.q = malloc(t->numel);
        ca_matrix *grown = realloc(set->m, (set->n + 1) * sizeof *grown);
        if (!m.q || !grown) {
            free(m.q);
            r = -1;
            break;
        }
        set->m = grown;
        const size_t esz = t->size / t->numel;
        for (uint64_t y = 0; y < m.rows && quant; y++) {
            float s;
            size_t bad;
            if (wc_quantize_row(t->data + y * m.cols * esz, t->dtype, m.cols, (int8_t *)m.q + y * m.cols, &s,
                                &bad))
                memset(m.q + y * m.cols, 0, m.cols); /* a NaN row: any bytes will do */
        }
        if (!quant) memcpy(m.q, t->data, t->numel);
        set->m[set->n++] = m;
        set->bytes += t->numel;
    }
    wc_st_close(&f);
    if (r) fprintf(stderr, "%s: out of memory\n", path);
    return r;
}

void ca_set_free(ca_set *set)
{
    for (size_t i = 0; i < set->n; i++) free(set->m[i].q);
    free(set->m);
    *set = (ca_set){0};
}

void ca_tile(const ca_coded *c, const ca_matrix *m, size_t t, uint64_t *r0, uint64_t *c0,
             uint32_t *h, uint32_t *w)
{
    *r0 = t / c->across * c->tile_rows;
    *c0 = t % c->across * c->tile_cols;
    *h = (uint32_t)(m->rows - *r0 < c->tile_rows ? m->rows - *r0 : c->tile_rows);
    *w = (uint32_t)(m->cols - *c0 < c->tile_cols ? m->cols - *c0 : c->tile_cols);
}

/* Rows are grouped by their share of zero bytes (rows of mostly zeros, as
 * next to an outlier, want a peakier table): n_tables quantiles of it. */
static void group_rows(const ca_matrix *m, uint32_t n_tables, uint8_t *map)
{
    uint32_t *zeros = malloc(m->rows * sizeof *zeros);
    uint64_t hist[1025] = {0};
    for (uint64_t y = 0; y < m->rows; y++) {
        uint64_t z = 0;
        for (uint64_t x = 0; x < m->cols; x++) z += m->q[y * m->cols + x] == 0;
        zeros[y] = (uint32_t)(z * 1024 / m->cols);
        hist[zeros[y]]++;
    }
    uint8_t of[1025];
    uint64_t acc = 0;
    for (int v = 0; v <= 1024; v++) {
        of[v] = (uint8_t)(acc * n_tables / m->rows);
        acc += hist[v];
    }
    for (uint64_t y = 0; y < m->rows; y++) map[y] = of[zeros[y]];
    free(zeros);
}

int ca_code(const ca_matrix *m, uint32_t prob_bits, uint32_t n_tables, uint64_t tile_weights,
            ca_coded *c)
{
    *c = (ca_coded){.n_tables = n_tables};
    if (m->cols > tile_weights) c->tile_rows = 1, c->tile_cols = (uint32_t)tile_weights;
    else c->tile_rows = (uint32_t)(tile_weights / m->cols), c->tile_cols = (uint32_t)m->cols;
    c->across = (uint32_t)((m->cols + c->tile_cols - 1) / c->tile_cols);
    c->n_tiles = (size_t)((m->rows + c->tile_rows - 1) / c->tile_rows) * c->across;
    c->dec = malloc(n_tables * sizeof *c->dec);
    c->off = malloc((c->n_tiles + 1) * sizeof *c->off);
    wc_rans_table *tab = calloc(n_tables, sizeof *tab);
    uint64_t (*hist)[256] = calloc(n_tables, sizeof *hist);
    uint8_t *tile = malloc((size_t)c->tile_rows * c->tile_cols);
    if (n_tables > 1) c->row_map = malloc(m->rows);
    int r = -1;
    if (!c->dec || !c->off || !tab || !hist || !tile || (n_tables > 1 && !c->row_map)) goto out;
    if (c->row_map) group_rows(m, n_tables, c->row_map);
    for (uint64_t y = 0; y < m->rows; y++)
        for (uint64_t x = 0; x < m->cols; x++) hist[c->row_map ? c->row_map[y] : 0][m->q[y * m->cols + x]]++;
    for (uint32_t k = 0; k < n_tables; k++) {
        if (!hist[k][0]) hist[k][0] = 1; /* an empty group still needs a valid table */
        if (wc_rans_normalize(hist[k], prob_bits, &tab[k])) goto out;
        wc_rans_dec_table_init(&c->dec[k], &tab[k]);
    }
    wc_buf b = {0};
    for (size_t t = 0; t < c->n_tiles; t++) {
        uint64_t r0, c0;
        uint32_t h, w;
        ca_tile(c, m, t, &r0, &c0, &h, &w);
        for (uint32_t y = 0; y < h; y++) memcpy(tile + (size_t)y * w, m->q + (r0 + y) * m->cols + c0, w);
        c->off[t] = b.len;
        if (wc_rans_encode_tile(tab, c->row_map ? c->row_map + r0 : NULL, w, tile, (size_t)h * w, &b)) {
            wc_buf_free(&b);
            goto out;
        }
    }
    c->off[c->n_tiles] = b.len;
    c->streams = b.data;
    r = 0;
out:
    free(tab);
    free(hist);
    free(tile);
    if (r) ca_coded_free(c);
    return r;
}

void ca_coded_free(ca_coded *c)
{
    free(c->dec);
    free(c->row_map);
    free(c->off);
    free(c->streams);
    *c = (ca_coded){0};
}
