/* A coded tensor's record: scales, frequency tables, tile index, tile streams. */
#ifndef WC_RECORD_H
#define WC_RECORD_H

#include "format.h"
#include "rans.h"

typedef struct wc_code_params {
    uint32_t tile_weights;
    uint32_t prob_bits;
} wc_code_params;

/* Codes the rows x cols INT8 matrix q (and scales, NULL for none) into rec.
 * Fills the coding fields of e (coding, tile shape, tables, section offsets,
 * size, hash); e->rows/cols must be set. */
int wc_record_encode(const int8_t *q, const void *scales, const wc_code_params *p, wc_entry *e,
                     wc_buf *rec);

/* The tile (tr, tc) of e: its first row and column and its size. */
void wc_tile_rect(const wc_entry *e, uint32_t t, uint64_t *r0, uint64_t *c0, uint32_t *h,
                  uint32_t *w);

/* Reference decode of a RANS_I8 record (already checksummed) into out
 * (rows*cols bytes) and scales (rows floats, or NULL). */
int wc_record_decode_ref(const wc_entry *e, const uint8_t *rec, uint8_t *out, float *scales,
                         const char *label, wc_err *err);

#endif
