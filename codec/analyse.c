/* The encoder's choices for one tensor: the "top" row distance, each tile's
 * prediction and transform, and the frequency tables with the rows that use
 * each. Every choice is made by estimated coded size; the identity mode and a
 * single table are always candidates, so no stage can make a tensor bigger
 * by more than the noise of the estimate. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "analyse.h"

static inline int sx(uint8_t b) { return (int8_t)b; }

void wc_residual_row(enum wc_pred pred, const uint8_t *q, const uint8_t *up, size_t n, uint8_t left,
                     uint8_t upleft, uint8_t *res)
{
    for (size_t c = 0; c < n; c++) {
        uint8_t top = up ? up[c] : 0, p = 0;
        switch (pred) {
        case WC_PRED_NONE: p = 0; break;
        case WC_PRED_LEFT: p = left; break;
        case WC_PRED_TOP: p = top; break;
        case WC_PRED_AVG: p = (uint8_t)((sx(left) + sx(top)) >> 1); break;
        case WC_PRED_PLANAR: p = (uint8_t)(left + top - upleft); break;
        default: break;
        }
        res[c] = (uint8_t)(q[c] - p);
        left = q[c];
        upleft = top;
    }
}

/* c * log2(c) for the small counts that samples give, computed once. */
#define NLOGN_MAX 16384
static float nlogn[NLOGN_MAX];
static pthread_once_t nlogn_once = PTHREAD_ONCE_INIT;

static void nlogn_init(void)
{
    for (int c = 1; c < NLOGN_MAX; c++) nlogn[c] = (float)(c * log2(c));
}

static double c_log2_c(uint32_t c) { return c < NLOGN_MAX ? nlogn[c] : c * log2((double)c); }

/* Bits to code the n symbols counted in h with their own order-0 model. */
static double hist_bits(const uint32_t h[256], double n)
{
    pthread_once(&nlogn_once, nlogn_init);
    double bits = n * log2(n);
    for (int s = 0; s < 256; s++) bits -= c_log2_c(h[s]);
    return bits;
}

/* Residual row of matrix row r, columns [c0, c0 + n), under pred. */
static void row_residuals(const uint8_t *q, const wc_entry *e, uint32_t dist, uint64_t r, uint64_t c0,
                          size_t n, enum wc_pred pred, uint8_t *res)
{
    const uint8_t *row = q + r * e->cols + c0;
    const uint8_t *up = r >= dist ? row - (uint64_t)dist * e->cols : NULL;
    wc_residual_row(pred, row, up, n, c0 ? row[-1] : 0, c0 && up ? up[-1] : 0, res);
}

/* Bits per value of top prediction at distance d on the given rows and
 * their first n columns. */
static double distance_cost(const uint8_t *q, const wc_entry *e, uint64_t d, const uint64_t *rows,
                            size_t n_rows, size_t n)
{
    uint8_t res[256];
    uint32_t h[256] = {0};
    for (size_t k = 0; k < n_rows; k++) {
        row_residuals(q, e, (uint32_t)d, rows[k], 0, n, WC_PRED_TOP, res);
        for (size_t c = 0; c < n; c++) h[res[c]]++;
    }
    return hist_bits(h, (double)(n_rows * n)) / (double)(n_rows * n);
}

/* The distance D (1..min(4096, rows / 2)) whose top prediction costs least;
 * 1 unless another is clearly better. Finds structure such as a model's
 * rows repeating with a period. A coarse pass over every distance on a few
 * rows keeps the best few, which more rows then rank. Every distance is
 * measured on the same rows of the lower half, picked at random: rows at a
 * fixed stride can all fall on the same phase of the period (all unused
 * features, say) and fool the estimate. */
static uint32_t choose_distance(const uint8_t *q, const wc_entry *e)
{
    enum { KEEP = 8, COARSE = 8, FINE = 64 };
    const uint64_t max_d = e->rows / 2 < 4096 ? e->rows / 2 : 4096, half = e->rows - e->rows / 2;
    const size_t n = e->cols < 256 ? (size_t)e->cols : 256;
    uint64_t rows[FINE], seed = 0x9e3779b97f4a7c15ull;
    for (size_t k = 0; k < FINE; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        rows[k] = e->rows / 2 + (seed >> 33) % half;
    }
    uint64_t cand[KEEP];
    double cost[KEEP];
    int kept = 0;
    for (uint64_t d = 1; d <= max_d; d++) {
        double c = distance_cost(q, e, d, rows, COARSE, n < 128 ? n : 128);
        if (kept == KEEP && c >= cost[KEEP - 1]) continue;
        int at = kept < KEEP ? kept++ : KEEP - 1;
        for (; at > 0 && cost[at - 1] > c; at--) cand[at] = cand[at - 1], cost[at] = cost[at - 1];
        cand[at] = d, cost[at] = c;
    }
    double one = distance_cost(q, e, 1, rows, FINE, n), best = one;
    uint32_t best_d = 1;
    for (int k = 0; k < kept; k++) {
        double c = cand[k] == 1 ? one : distance_cost(q, e, cand[k], rows, FINE, n);
        if (c < best) best = c, best_d = (uint32_t)cand[k];
    }
    return best < one - 0.02 ? best_d : 1;
}

/* Chooses the mode of one tile from a sample of its rows (at most ~16K
 * values), by the order-0 cost of the transformed residuals. */
static uint8_t choose_mode(const uint8_t *q, const wc_entry *e, const wc_code_params *p, uint32_t dist,
                           uint32_t t, uint8_t *buf)
{
    uint64_t r0, c0;
    uint32_t h, w;
    wc_tile_rect(e, t, &r0, &c0, &h, &w);
    const uint32_t sw = w < 8192 ? w : 8192;
    uint32_t sh = 16384 / sw;
    if (sh < 1) sh = 1;
    if (sh > h) sh = h;
    const int p_lo = p->force_pred >= 0 ? p->force_pred : 0;
    const int p_hi = p->force_pred >= 0 ? p->force_pred : WC_PRED_COUNT - 1;
    const int t_lo = p->force_tx >= 0 ? p->force_tx : 0;
    const int t_hi = p->force_tx >= 0 ? p->force_tx : WC_TX_COUNT - 1;
    if (p_lo == p_hi && t_lo == t_hi) return WC_MODE(p_lo, t_lo);
    uint8_t best = WC_MODE(0, 0);
    double best_bits = INFINITY;
    for (int pr = p_lo; pr <= p_hi; pr++) {
        for (uint32_t y = 0; y < sh; y++)
            row_residuals(q, e, dist, r0 + (uint64_t)y * h / sh, c0, sw, (enum wc_pred)pr, buf + (size_t)y * sw);
        for (int tx = t_lo; tx <= t_hi; tx++) {
            uint8_t *s = buf + (size_t)sh * sw;
            memcpy(s, buf, (size_t)sh * sw);
            wc_fwd_tx((enum wc_tx)tx, s, sw, sh, sw);
            uint32_t hist[256] = {0};
            for (size_t i = 0; i < (size_t)sh * sw; i++) hist[s[i]]++;
            double bits = hist_bits(hist, (double)sh * sw);
            /* the identity wins ties: it is the cheapest to decode */
            if (bits < best_bits - 1e-9) best_bits = bits, best = WC_MODE(pr, tx);
        }
    }
    return best;
}

static int by_spread(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Per-row histograms, stored sparsely: rows of weights use far fewer than
 * 256 values, and the clustering below walks them many times. */
typedef struct sparse_bin {
    uint8_t sym;
    float count;
} sparse_bin;

typedef struct row_hists {
    sparse_bin *bins;
    uint64_t *start; /* rows + 1 */
} row_hists;

static void add_rows(const row_hists *rh, uint64_t rows, const uint8_t *labels, uint64_t (*hist)[256])
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t i = rh->start[r]; i < rh->start[r + 1]; i++)
            hist[labels[r]][rh->bins[i].sym] += (uint64_t)rh->bins[i].count;
}

/* Gives each row the group that codes it in the fewest bits: the costs
 * under all k groups are summed at once, k independent chains. */
static inline __attribute__((always_inline)) void assign_rows(const row_hists *rh, uint64_t rows,
                                                              const uint32_t k, const float *logp,
                                                              uint8_t *labels)
{
    for (uint64_t r = 0; r < rows; r++) {
        float c[WC_MAX_TABLES] = {0}, best = INFINITY;
        for (uint64_t i = rh->start[r]; i < rh->start[r + 1]; i++) {
            const float *lp = logp + (size_t)rh->bins[i].sym * k;
            for (uint32_t g = 0; g < k; g++) c[g] += rh->bins[i].count * lp[g];
        }
        for (uint32_t g = 0; g < k; g++)
            if (c[g] < best) best = c[g], labels[r] = (uint8_t)g;
    }
}

/* Groups rows into k tables by k-means on the cost of coding each row with
 * each group's distribution; returns the total bits (tables and row map
 * included) and fills labels and tables. */
static double cluster_rows(const row_hists *rh, uint64_t rows, uint32_t k,
                           uint32_t prob_bits, uint8_t *labels, wc_rans_table *tables)
{
    float *logp = malloc(sizeof *logp * 256 * k); /* [symbol][group] */
    uint64_t (*hist)[256] = malloc(sizeof *hist * k);
    double total = INFINITY;
    if (!logp || !hist) goto out;
    /* start from rows ranked by how widely their values spread */
    struct ranked { float spread; uint64_t row; } *order = malloc(rows * sizeof *order);
    if (!order) goto out;
    for (uint64_t r = 0; r < rows; r++) {
        double s = 0, n = 0;
        for (uint32_t i = rh->start[r]; i < rh->start[r + 1]; i++)
            s += rh->bins[i].count * abs(sx(rh->bins[i].sym)), n += rh->bins[i].count;
        order[r] = (struct ranked){n ? (float)(s / n) : 0, r};
    }
    qsort(order, rows, sizeof *order, by_spread);
    for (uint64_t i = 0; i < rows; i++) labels[order[i].row] = (uint8_t)(i * k / rows);
    free(order);

    for (int iter = 0; iter < (k > 1 ? 4 : 0); iter++) {
        memset(hist, 0, sizeof *hist * k);
        add_rows(rh, rows, labels, hist);
        for (uint32_t g = 0; g < k; g++) {
            double n = 0;
            for (int v = 0; v < 256; v++) n += hist[g][v] + 0.02;
            for (int v = 0; v < 256; v++) logp[v * k + g] = (float)-log2((hist[g][v] + 0.02) / n);
        }
        switch (k) { /* constant k lets the compiler keep the k sums in registers */
        case 2: assign_rows(rh, rows, 2, logp, labels); break;
        case 4: assign_rows(rh, rows, 4, logp, labels); break;
        case 8: assign_rows(rh, rows, 8, logp, labels); break;
        default: assign_rows(rh, rows, k, logp, labels); break;
        }
    }
    memset(hist, 0, sizeof *hist * k);
    add_rows(rh, rows, labels, hist);
    /* an empty group gives its number to the last one */
    uint32_t used = 0, remap[WC_MAX_TABLES];
    for (uint32_t g = 0; g < k; g++) {
        uint64_t n = 0;
        for (int v = 0; v < 256; v++) n += hist[g][v];
        remap[g] = n ? used++ : UINT32_MAX;
        if (n) memmove(hist[remap[g]], hist[g], sizeof hist[g]);
    }
    for (uint64_t r = 0; r < rows; r++) labels[r] = (uint8_t)remap[labels[r]];
    total = used > 1 ? 8.0 * (double)rows : 0;
    for (uint32_t g = 0; g < used; g++) {
        uint8_t ser[WC_RANS_TABLE_MAX];
        if (wc_rans_normalize(hist[g], prob_bits, &tables[g])) {
            total = INFINITY;
            break;
        }
        total += wc_rans_cost_bits(hist[g], &tables[g]) + 8.0 * wc_rans_table_write(&tables[g], ser);
    }
    for (uint32_t g = used; g < k; g++) tables[g].prob_bits = 0; /* marks unused */
out:
    free(logp);
    free(hist);
    return total;
}

static int choose_tables(const wc_entry *e, const wc_code_params *p, wc_plan *plan)
{
    const uint64_t rows = e->rows, cols = e->cols;
    row_hists rh = {malloc(rows * (cols < 256 ? cols : 256) * sizeof *rh.bins),
                    malloc((rows + 1) * sizeof *rh.start)};
    uint8_t *labels = malloc(rows), *best_labels = malloc(rows);
    int r = WC_ENOMEM;
    if (!rh.bins || !rh.start || !labels || !best_labels) goto out;
    uint64_t nb = 0;
    for (uint64_t y = 0; y < rows; y++) {
        uint32_t h[256] = {0};
        const uint8_t *s = plan->sym + y * cols;
        for (uint64_t c = 0; c < cols; c++) h[s[c]]++;
        rh.start[y] = nb;
        for (int v = 0; v < 256; v++)
            if (h[v]) rh.bins[nb++] = (sparse_bin){(uint8_t)v, (float)h[v]};
    }
    rh.start[rows] = nb;
    double best = INFINITY;
    wc_rans_table tables[WC_MAX_TABLES];
    /* a table costs a few hundred bytes: one that covers fewer than 8K
     * weights rarely pays for itself, so those are not tried */
    for (uint32_t k = 1; k <= p->max_tables && k <= rows && (k == 1 || rows * cols / k >= 8192); k *= 2) {
        double bits = cluster_rows(&rh, rows, k, p->prob_bits, labels, tables);
        if (bits < best) {
            best = bits;
            uint32_t used = 0;
            while (used < k && tables[used].prob_bits) used++;
            plan->n_tables = used;
            memcpy(plan->tables, tables, sizeof tables[0] * used);
            memcpy(best_labels, labels, rows);
        }
    }
    r = best < INFINITY ? 0 : WC_EINVAL;
    if (!r && plan->n_tables > 1) {
        plan->row_map = best_labels;
        best_labels = NULL;
    }
out:
    free(rh.bins), free(rh.start), free(labels), free(best_labels);
    return r;
}

int wc_plan_tensor(const uint8_t *q, const wc_entry *e, const wc_code_params *p, wc_plan *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->top_distance = p->top_distance ? p->top_distance
                         : e->rows > 1 && p->force_pred < 0 ? choose_distance(q, e) : 1;
    if (plan->top_distance > (e->rows > 1 ? e->rows : 1)) return WC_EINVAL;
    plan->modes = malloc(e->n_tiles);
    plan->sym = malloc(e->rows * e->cols);
    uint8_t *buf = malloc(2 * (size_t)e->tile_rows * e->tile_cols + 2 * 16384);
    int r = 0;
    if (!plan->modes || !plan->sym || !buf) {
        r = WC_ENOMEM;
        goto out;
    }
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, t, &r0, &c0, &h, &w);
        uint8_t m = choose_mode(q, e, p, plan->top_distance, t, buf);
        plan->modes[t] = m;
        /* residuals straight into the symbol matrix, then the transform there */
        for (uint32_t y = 0; y < h; y++)
            row_residuals(q, e, plan->top_distance, r0 + y, c0, w, (enum wc_pred)WC_MODE_PRED(m),
                          plan->sym + (r0 + y) * e->cols + c0);
        wc_fwd_tx((enum wc_tx)WC_MODE_TX(m), plan->sym + r0 * e->cols + c0, e->cols, h, w);
    }
    /* a distance no tile looks up would only confuse readers of `info` */
    bool up = false;
    for (uint32_t t = 0; t < e->n_tiles; t++) up |= WC_MODE_PRED(plan->modes[t]) >= WC_PRED_TOP;
    if (!up && !p->top_distance) plan->top_distance = 1;
    r = choose_tables(e, p, plan);
out:
    free(buf);
    if (r) wc_plan_free(plan);
    return r;
}

void wc_plan_free(wc_plan *plan)
{
    free(plan->modes);
    free(plan->sym);
    free(plan->row_map);
    memset(plan, 0, sizeof *plan);
}
