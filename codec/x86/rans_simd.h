/* What the SIMD rANS decoders (codec/x86, both built with -mavx2) share
 * beyond the reference's scalar parts (codec/dsp.h: the stream's head, the
 * last, partial step, the end checks): whether a tile's tables all have
 * the packed form, and the store of a step's symbols. */
#ifndef WC_X86_RANS_SIMD_H
#define WC_X86_RANS_SIMD_H

#include <immintrin.h>
#include <stdbool.h>

#include "dsp.h"

/* Whether every table the tile's n symbols use has the packed (one-gather)
 * form. */
static inline bool wc_rans_tables_packed(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                         size_t n)
{
    bool packed = tables[0].packed;
    for (size_t y = 0; row_table && y <= (n - 1) / w; y++) packed &= tables[row_table[y]].packed != 0;
    return packed;
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

#endif
