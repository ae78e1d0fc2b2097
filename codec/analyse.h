/* The encoder's analysis of one tensor (codec/analyse.c): the "top" row
 * distance, each tile's mode and the frequency tables. It needs only the
 * entry's geometry (format.h), not the record writer that uses its plan. */
#ifndef WC_ANALYSE_H
#define WC_ANALYSE_H

#include "dsp.h"
#include "format.h"
#include "rans.h"

typedef struct wc_code_params {
    uint32_t tile_weights;
    uint32_t prob_bits;
    uint32_t max_tables;   /* 1..WC_MAX_TABLES */
    int force_pred;        /* enum wc_pred for every tile, or -1: chosen per tile */
    int force_tx;          /* enum wc_tx for every tile, or -1 */
    uint32_t top_distance; /* 0: searched */
} wc_code_params;

/* What the encoder decided for one tensor (codec/analyse.c). */
typedef struct wc_plan {
    uint32_t top_distance;
    uint8_t *modes;   /* per tile: WC_MODE(pred, tx) */
    uint8_t *sym;     /* rows x cols symbols to code: residuals, transformed */
    uint32_t n_tables;
    uint8_t *row_map; /* per row: its table (NULL when n_tables == 1) */
    wc_rans_table tables[WC_MAX_TABLES];
} wc_plan;

/* Chooses distance, modes and tables for the INT8 matrix q of e (rows, cols
 * and tiles set). */
int wc_plan_tensor(const uint8_t *q, const wc_entry *e, const wc_code_params *p, wc_plan *plan);
void wc_plan_free(wc_plan *plan);

/* Residuals of one row stretch under prediction `pred` (the inverse of the
 * wc_pred_fn of codec/dsp.h: same arguments, q holds values). */
void wc_residual_row(enum wc_pred pred, const uint8_t *q, const uint8_t *up, size_t n, uint8_t left,
                     uint8_t upleft, uint8_t *res);

#endif
