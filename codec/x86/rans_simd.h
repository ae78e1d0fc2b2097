/* What the SIMD rANS decoders (codec/x86, both built with -mavx2) share
 * beyond the reference's scalar parts (codec/dsp.h: the stream's head, the
 * last, partial step, the end checks): whether a tile's tables all have
 * the packed form, and the store of a step's symbols. */
#ifndef WC_X86_RANS_SIMD_H
#define WC_X86_RANS_SIMD_H

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

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

/* What _mm256_i32gather_epi32(base, idx, scale) returns, by eight plain
 * loads: the indices go through memory (one store, eight loads that the
 * store forwards to) and the values into two xmm halves (vmovd, vpinsrd).
 * Gathers are slow on many server CPUs (Skylake to Ice Lake, several
 * times slower again under the microcode mitigation of Gather Data
 * Sampling); plain loads are not. Same reads as the gather, so the same
 * bounds (4 bytes at each base + scale * idx). */
static inline __attribute__((always_inline)) __m256i wc_load8(const void *base, __m256i idx, int scale)
{
    int32_t i[8], v[8];
    _mm256_storeu_si256((__m256i *)i, idx);
    /* else gcc takes the indices out of the register (vpextrd, valignd:
     * two uops each on the shuffle port, which the pinsrds need) */
    __asm__("" : "+m"(i));
    const uint8_t *b = (const uint8_t *)base;
    for (int l = 0; l < 8; l++) memcpy(&v[l], b + (ptrdiff_t)scale * i[l], 4);
    const __m128i lo = _mm_insert_epi32(_mm_insert_epi32(_mm_insert_epi32(_mm_cvtsi32_si128(v[0]), v[1], 1), v[2], 2), v[3], 3);
    const __m128i hi = _mm_insert_epi32(_mm_insert_epi32(_mm_insert_epi32(_mm_cvtsi32_si128(v[4]), v[5], 1), v[6], 2), v[7], 3);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* A decoder's table lookup: the gather, or its plain-load form. */
#define WC_GATHER(loads, base, idx, scale) \
    ((loads) ? wc_load8((base), (idx), (scale)) : _mm256_i32gather_epi32((base), (idx), (scale)))

#endif
