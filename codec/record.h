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

/* Where a decode reads the tile streams: len bytes at offset off of the
 * record (from its start) into dst, or a WC_E* code with its message in err
 * (reader.c: pread through the file's descriptor). Called from the decoding
 * threads at once. */
typedef struct wc_rec_src {
    int (*read)(void *ctx, uint64_t off, uint64_t len, uint8_t *dst, wc_err *err);
    void *ctx;
} wc_rec_src;

/* The record's XXH3 (an XXH3_state_t) fed with its bytes [0, at) so far. */
typedef struct wc_rec_hash {
    void *st;
    uint64_t at;
} wc_rec_hash;

/* Decode of a RANS_I8 record whose head rec holds (wc_rec_parse) into out
 * (rows*cols bytes) and scales (rows floats, or NULL), with the routines of
 * dsp, each tile's stream read from src just before it is decoded; tiles are
 * shared among `threads` threads (the caller's among them). With one thread
 * the streams are read in order, and each is fed to hash (which must then
 * stand at the first stream): the record is read once, and its checksum is
 * the caller's to finish and judge, even where this returns WC_ECORRUPT. A
 * scale that is NaN or infinite is refused (WC_ECORRUPT), scales wanted or
 * not. */
int wc_record_decode(const wc_dsp *dsp, const wc_rec *rec, const wc_rec_src *src, wc_rec_hash *hash, uint8_t *out,
                     float *scales, int threads, const char *label, wc_err *err);

#endif
