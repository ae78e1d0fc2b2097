/* A coded tensor's record: scales, row map, frequency tables, tile index,
 * tile streams. */
#ifndef WC_RECORD_H
#define WC_RECORD_H

#include "analyse.h"
#include "dsp.h"
#include "format.h"
#include "rans.h"
#include "rec_reader.h"

/* Codes the rows x cols INT8 matrix q (and scales, NULL for none) into rec.
 * Fills the coding fields of e (coding, tile shape, tables, section offsets,
 * size, hash); e->rows/cols must be set. */
int wc_record_encode(const int8_t *q, const void *scales, const wc_code_params *p, wc_entry *e,
                     wc_buf *rec);

/* Decode of a RANS_I8 record (already checksummed and parsed by
 * wc_rec_parse, with rec->head holding the whole record) into out
 * (rows*cols bytes) and scales (rows floats, or NULL), with the routines of
 * dsp; tiles are shared among `threads` threads (the caller's among them). */
int wc_record_decode(const wc_dsp *dsp, const wc_rec *rec, uint8_t *out, float *scales, int threads,
                     const char *label, wc_err *err);

#endif
