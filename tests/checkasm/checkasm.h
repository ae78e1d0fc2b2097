/* checkasm's rANS checks of the two-tile decoders and of the forced level
 * (tests/checkasm/ca_rans2.c), and what they share with checkasm.c. */
#ifndef CA_CHECKASM_H
#define CA_CHECKASM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsp.h"
#include "inputs.h"

/* One routine at one level: counts its cases and reports the first
 * mismatch in full. */
typedef struct check {
    const char *name, *level;
    long cases, bad;
    bool loose; /* output undefined when the routine fails (the GPU's): compare return codes only */
} check;

void ca_mismatch(check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
size_t ca_first_diff(const uint8_t *a, const uint8_t *b, size_t n);
/* A random table of one of the shapes that matter (checkasm.c). */
void ca_random_table(uint64_t *rng, uint32_t bits, wc_rans_table *t);
/* Tile shapes (h, w) of the random checks. */
extern const uint32_t CA_SHAPES[][2];
extern const size_t CA_N_SHAPES;

/* fn2 against the reference on each tile alone: random pairs (a third
 * damaged, each also beside itself) and the real set's consecutive tiles. */
void ca_check_rans_pairs(check *c, wc_rans_decode2_fn fn2, uint64_t seed, const ca_set *set);
/* WC_RANS_DECODER forces the level it names where the flags allow it. */
void ca_check_rans_force(check *c, unsigned cpu);

#endif
