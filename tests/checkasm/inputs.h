/* Inputs shared by checkasm and bench/bench_dsp.c: real weight matrices
 * quantized with the codec's own rule, and their tiles coded with the
 * encoder's rANS, one or several tables per tensor. */
#ifndef CA_INPUTS_H
#define CA_INPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "rans.h"

/* A quantized 2-D tensor, row-major INT8 bytes. */
typedef struct ca_matrix {
    char name[96];
    uint64_t rows, cols;
    uint8_t *q;
} ca_matrix;

typedef struct ca_set {
    ca_matrix *m;
    size_t n;
    uint64_t bytes;
} ca_set;

/* Appends the tensors of a safetensors file of at least 2 dimensions and
 * min_weights weights (float ones quantized, integer ones quantized as
 * float, I8 taken as is) until the set holds max_bytes. Returns 0, or -1
 * with a message on stderr. */
int ca_load_real(const char *path, uint64_t min_weights, uint64_t max_bytes, ca_set *set);
void ca_set_free(ca_set *set);

/* A matrix coded as the encoder lays it out: tiles of whole rows of about
 * tile_weights (one row cut into pieces if longer), n_tables tables at
 * prob_bits, each row given the table of its group of rows. */
typedef struct ca_coded {
    uint32_t n_tables, tile_rows, tile_cols, across;
    size_t n_tiles;
    wc_rans_dec_table *dec;
    uint8_t *row_map; /* NULL with one table */
    size_t *off;      /* n_tiles + 1 stream offsets */
    uint8_t *streams;
} ca_coded;

int ca_code(const ca_matrix *m, uint32_t prob_bits, uint32_t n_tables, uint64_t tile_weights,
            ca_coded *c);
void ca_coded_free(ca_coded *c);
/* Position and size of tile t. */
void ca_tile(const ca_coded *c, const ca_matrix *m, size_t t, uint64_t *r0, uint64_t *c0,
             uint32_t *h, uint32_t *w);

/* xorshift64*: deterministic, seedable. */
static inline uint64_t ca_rand(uint64_t *s)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

#endif
