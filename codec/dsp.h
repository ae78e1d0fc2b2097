/* The decoder's hot routines, each with a plain C reference and faster
 * versions chosen at run time (dav1d's pattern): wc_dsp_init fills the table
 * with the best version the CPU supports; tests/checkasm runs every version
 * against the reference on random and real inputs.
 *
 * All routines work on bytes modulo 256 (docs/FORMAT.md, "Modes"). */
#ifndef WC_DSP_H
#define WC_DSP_H

#include <stddef.h>
#include <stdint.h>

#include "rans.h"

enum wc_pred { WC_PRED_NONE, WC_PRED_LEFT, WC_PRED_TOP, WC_PRED_AVG, WC_PRED_PLANAR, WC_PRED_COUNT };
enum wc_tx { WC_TX_NONE, WC_TX_HAAR, WC_TX_WHT4, WC_TX_COUNT };

#define WC_MODE(p, t) ((uint8_t)((p) | (t) << 4))
#define WC_MODE_PRED(m) ((m) & 15)
#define WC_MODE_TX(m) ((m) >> 4)

/* Decodes the n symbols of one tile stream. Symbol i is in tile row i / w
 * and uses table tables[row_table[i / w]] (row_table NULL: table 0).
 * Returns 0 or WC_ECORRUPT (docs/FORMAT.md, "Integrity"). */
typedef int (*wc_rans_decode_fn)(const wc_rans_dec_table *tables, const uint8_t *row_table,
                                 uint32_t w, const uint8_t *stream, size_t len, uint8_t *out,
                                 size_t n);

/* One tile to decode: wc_rans_decode_fn's arguments. */
typedef struct wc_rans_job {
    const wc_rans_dec_table *tables;
    const uint8_t *row_table;
    uint32_t w;
    const uint8_t *stream;
    size_t len;
    uint8_t *out;
    size_t n;
} wc_rans_job;

/* Decodes two tiles (into outputs that do not overlap); r[i] is what
 * wc_rans_decode_fn returns for job i, and the bytes written are the same. Within a tile every step waits on the
 * one before (each lane's word position depends on the lanes before it),
 * so a tile alone leaves a fast-gather CPU mostly idle; a second tile's
 * steps fill that time (bench/RESULTS.md, issue 18). */
typedef void (*wc_rans_decode2_fn)(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
/* The reference's: one tile, then the other. */
void wc_rans_decode2_ref(const wc_rans_job *a, const wc_rans_job *b, int r[2]);

/* The scalar parts of a tile decode (codec/dsp_ref.c), which the SIMD
 * decoders share with the reference: the head (the lanes' states, and the
 * renormalisation words that follow), the reference's steps from symbol
 * base (a multiple of 32) to n, with lane states st and read position *pos,
 * and the end checks (every lane back at L, every word consumed but the
 * zero pad word after an odd count). Same results, writes and failure
 * points as wc_rans_decode_ref, which is these three in a row. */
int wc_rans_decode_head(const uint8_t *stream, size_t len, uint32_t *st, const uint8_t **words, size_t *nw);
int wc_rans_decode_steps(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w, const uint8_t *words,
                         size_t nw, size_t *pos, uint32_t *st, size_t base, uint8_t *out, size_t n);
int wc_rans_decode_end(const uint8_t *words, size_t nw, size_t pos, const uint32_t *st);

/* Inverse transform tx of an h x w tile (row stride `stride`), in place. */
typedef void (*wc_itx_fn)(uint8_t *tile, size_t stride, uint32_t h, uint32_t w);

/* Prediction of one stretch of a row: q[c] for c in [0, n) of matrix row r
 * at column c0, where q holds residuals on entry and values on return.
 * `up` is row r - D at the same columns (NULL when r < D), and left/upleft
 * the values at column c0 - 1 of rows r and r - D (0 outside the matrix). */
typedef void (*wc_pred_fn)(uint8_t *q, const uint8_t *up, size_t n, uint8_t left, uint8_t upleft);

typedef struct wc_dsp {
    wc_rans_decode_fn rans_decode;
    wc_rans_decode2_fn rans_decode2; /* the same decoder's two-tile form */
    wc_itx_fn itx[WC_TX_COUNT];
    wc_pred_fn pred[WC_PRED_COUNT];
} wc_dsp;

/* CPU feature bits, for wc_dsp_init's mask (checkasm forces each level). */
#define WC_CPU_AVX2 1u
#define WC_CPU_AVX512 2u /* AVX-512 F + VL (with AVX2): the rANS decoder */

unsigned wc_cpu_flags(void);
/* wc_cpu_describe (wcodec.h) names the CPU and the decoder picked for it. */

/* The rANS tile decoders of this build: the reference first, then each
 * SIMD level in a gather form and a plain-load form ("-loads": the table
 * lookups as scalar loads, for CPUs whose gathers are slow). `flags`: the
 * CPU features it needs. */
typedef struct wc_rans_level {
    const char *name;
    unsigned flags;
    wc_rans_decode_fn fn;
    wc_rans_decode2_fn fn2; /* two tiles at once (interleaved where the level can) */
} wc_rans_level;
size_t wc_rans_levels(const wc_rans_level **levels);

/* The rANS decoder to use among those `flags` allows: by default the
 * fastest in a calibration on a synthetic tile, run once per process at
 * first use (a few milliseconds); the environment variable WC_RANS_DECODER
 * set to a level's name forces that level where `flags` allows it (so
 * that a test or a measurement can pin one); a name `flags` does not
 * allow, or that names no level, is ignored. */
const wc_rans_level *wc_rans_pick(unsigned flags);

/* Fills d with the reference routines, then the fastest of those allowed by
 * `flags` (a subset of wc_cpu_flags()): the transforms and predictions of
 * the highest level, the rANS decoder of wc_rans_pick(flags) (both forms). */
void wc_dsp_init(wc_dsp *d, unsigned flags);
/* The plain C references; never replaced. */
void wc_dsp_init_ref(wc_dsp *d);

/* Forward transforms (encoder side), in place. */
void wc_fwd_tx(enum wc_tx tx, uint8_t *tile, size_t stride, uint32_t h, uint32_t w);

#endif
