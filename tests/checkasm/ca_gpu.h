/* The GPU decode kernel as a checkasm level (ca_gpu.c): one tile at a
 * time, with the signature of the CPU routines. */
#ifndef WC_CA_GPU_H
#define WC_CA_GPU_H

#include "dsp.h"

/* 0 when a CUDA device can be used (then ca_gpu_done() releases it). */
int ca_gpu_init(char *why, size_t why_len);
void ca_gpu_done(void);
/* A wc_rans_decode_fn: decodes the tile with wc_decode_kernel. Its output
 * is defined only when it returns 0. */
int ca_gpu_rans_decode(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                       const uint8_t *stream, size_t len, uint8_t *out, size_t n);

#endif
