/* What the SIMD rANS decoders (codec/x86, both built with -mavx2) share:
 * the parts that stay scalar (the stream's head, the last, partial step,
 * the end-of-stream checks; same results, writes and failure points as
 * wc_rans_decode_ref in codec/dsp_ref.c) and the store of a step's symbols. */
#ifndef WC_X86_RANS_TAIL_H
#define WC_X86_RANS_TAIL_H

#include <immintrin.h>
#include <stdbool.h>

#include "dsp.h"

/* The lanes' initial states from the stream's head; *words and *nw: the
 * renormalisation words that follow. */
static inline int wc_rans_decode_head(const uint8_t *stream, size_t len, uint32_t *st, const uint8_t **words,
                                      size_t *nw)
{
    if (len < WC_RANS_HEADER_BYTES || (len - WC_RANS_HEADER_BYTES) % 4) return WC_ECORRUPT;
    for (int l = 0; l < WC_RANS_LANES; l++) {
        st[l] = wc_rd32(stream + 4 * l);
        if (st[l] < WC_RANS_L) return WC_ECORRUPT;
    }
    *words = stream + WC_RANS_HEADER_BYTES;
    *nw = (len - WC_RANS_HEADER_BYTES) / 2;
    return 0;
}

/* Whether every table the tile's n symbols use has the packed (one-gather)
 * form. */
static inline bool wc_rans_tables_packed(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                         size_t n)
{
    bool packed = tables[0].packed;
    for (size_t y = 0; row_table && y <= (n - 1) / w; y++) packed &= tables[row_table[y]].packed != 0;
    return packed;
}

/* The reference's loop from step base/32 on, with lane states st and read
 * position *pos_io. Kept out of line: inlined, it cost the AVX2 loop about 2%. */
static __attribute__((noinline)) int wc_rans_decode_tail(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                      const uint8_t *words, size_t nw, size_t *pos_io, uint32_t *st,
                                      size_t base, uint8_t *out, size_t n)
{
    size_t pos = *pos_io;
    uint32_t bad = 0;
    const uint32_t bits = tables[0].t.prob_bits, mask = (1u << bits) - 1;
    for (; base < n; base += WC_RANS_LANES) {
        const int lanes = n - base < WC_RANS_LANES ? (int)(n - base) : WC_RANS_LANES;
        for (int l = 0; l < lanes; l++) {
            const size_t i = base + (size_t)l;
            const wc_rans_dec_table *d = &tables[row_table ? row_table[i / w] : 0];
            uint32_t x = st[l], slot = x & mask;
            uint8_t s = d->slot_sym[slot];
            x = d->t.freq[s] * (x >> bits) + slot - d->t.cum[s];
            uint32_t need = x < WC_RANS_L, have = pos < nw;
            uint32_t word = have ? wc_rd16(words + 2 * pos) : 0;
            bad |= need & !have;
            st[l] = need ? x << 16 | word : x;
            pos += need;
            out[i] = s;
        }
        if (bad) return WC_ECORRUPT;
    }
    *pos_io = pos;
    return 0;
}

/* Stores the 32 symbols of a step, lane l's from the low byte of element
 * l % 8 of sym[l / 8], at out[0..32). */
static inline void wc_rans_store_syms(const __m256i sym[4], uint8_t *out)
{
    const __m256i byte = _mm256_set1_epi32(0xff);
    const __m256i s01 = _mm256_packus_epi32(_mm256_and_si256(sym[0], byte), _mm256_and_si256(sym[1], byte));
    const __m256i s23 = _mm256_packus_epi32(_mm256_and_si256(sym[2], byte), _mm256_and_si256(sym[3], byte));
    _mm256_storeu_si256((__m256i *)out, _mm256_permutevar8x32_epi32(_mm256_packus_epi16(s01, s23),
                                                                    _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* Every lane back at the encoder's initial state, every word consumed
 * (but the zero pad word after an odd count). */
static inline int wc_rans_decode_end(const uint8_t *words, size_t nw, size_t pos, const uint32_t *st)
{
    for (int l = 0; l < WC_RANS_LANES; l++)
        if (st[l] != WC_RANS_L) return WC_ECORRUPT;
    if (pos == nw) return 0;
    if (pos + 1 == nw && (pos & 1) && wc_rd16(words + 2 * pos) == 0) return 0;
    return WC_ECORRUPT;
}

#endif
