/* Interleaved rANS: 32 states per tile, one per lane of a GPU warp.
 *
 * State x is 32 bits and lives in [WC_RANS_L, 2^32); it is renormalised by
 * whole 16-bit words, so a decode step reads at most one word. The GPU
 * decoder relies on that bound: lanes that need a word take it from a
 * shared stream in lane order (a ballot and a prefix count). */
#ifndef WC_RANS_H
#define WC_RANS_H

#include <stddef.h>
#include <stdint.h>

#include "wc_internal.h"

#define WC_RANS_LANES 32
#define WC_RANS_L (1u << 16)
#define WC_RANS_MIN_PROB_BITS 8
#define WC_RANS_MAX_PROB_BITS 14
#define WC_RANS_HEADER_BYTES (4 * WC_RANS_LANES)

/* A normalised frequency table: freq sums to 1 << prob_bits. */
typedef struct wc_rans_table {
    uint32_t prob_bits;
    uint16_t freq[256];
    uint16_t cum[256];
    uint64_t rcp[256]; /* encoder: floor(2^64 / freq) + 1, for a division by multiply */
} wc_rans_table;

/* Decoding also needs the symbol of each slot (1 << prob_bits bytes). */
typedef struct wc_rans_dec_table {
    wc_rans_table t;
    uint8_t slot_sym[1u << WC_RANS_MAX_PROB_BITS];
    /* For SIMD decoders (codec/x86), one gather per lane and step: if
     * `packed` (every freq <= 4096), slot_dec holds (freq - 1) << 20 |
     * (slot - cum) << 8 | symbol; otherwise freq << 16 | (slot - cum), and
     * the symbol comes from slot_sym, which slot_dec follows so that a
     * 4-byte gather of slot_sym[slot] stays inside the struct. */
    uint32_t slot_dec[1u << WC_RANS_MAX_PROB_BITS];
    uint32_t packed;
} wc_rans_dec_table;

/* Builds a table for the histogram `hist` (n > 0 symbols in total). */
int wc_rans_normalize(const uint64_t hist[256], uint32_t prob_bits, wc_rans_table *t);
/* Bits needed to code `hist` with table t, streams' fixed cost excluded. */
double wc_rans_cost_bits(const uint64_t hist[256], const wc_rans_table *t);
/* Order-0 entropy of hist, in bits (total, not per symbol). */
double wc_entropy_bits(const uint64_t hist[256]);

/* Serialised table: first symbol, count and that many frequencies, each in
 * one byte (< 0x80) or two (0x80 | high, low). Returns the size written;
 * `out` needs at most WC_RANS_TABLE_MAX bytes. */
#define WC_RANS_TABLE_MAX (3 + 2 * 256)
size_t wc_rans_table_write(const wc_rans_table *t, uint8_t *out);
/* Parses and validates a serialised table (sum must be 1 << prob_bits). */
int wc_rans_table_read(const uint8_t *p, size_t avail, uint32_t prob_bits, wc_rans_table *t,
                       size_t *used);
void wc_rans_dec_table_init(wc_rans_dec_table *d, const wc_rans_table *t);

/* Encodes n symbols into one tile stream appended to `out`: 32 little-endian
 * u32 states, then the 16-bit words in the order the decoder reads them, then
 * one zero word if their count is odd. Symbol i uses
 * tables[row_table[i / w]] (row_table NULL: tables[0]) and must have a
 * non-zero frequency there. */
int wc_rans_encode_tile(const wc_rans_table *tables, const uint8_t *row_table, uint32_t w,
                        const uint8_t *sym, size_t n, wc_buf *out);

/* The reference decoder of one tile stream (codec/dsp_ref.c). Symbol i
 * belongs to lane i % 32 and to tile row i / w, whose table is
 * tables[row_table[i / w]] (row_table NULL: tables[0]). Returns WC_ECORRUPT
 * if the stream runs out, is not consumed exactly, or a lane does not end in
 * the encoder's initial state WC_RANS_L. */
int wc_rans_decode_ref(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                       const uint8_t *stream, size_t len, uint8_t *out, size_t n);

#endif
