/* The GPU tests' models (gpu_models.c). */
#ifndef WCT_GPU_MODELS_H
#define WCT_GPU_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* n float values (seed, scale; kind 0: sums of uniforms, 1: smooth along
 * rows and repeated every 7 rows, 2: heavy tails); the caller frees them. */
float *randf(size_t n, uint64_t seed, float scale, int kind);
/* The model of every test shape with values of kind 0-2 (randf's) or 3
 * (rows of seven kinds of tails): its path, written once. */
const char *make_model(int kind);
/* Encodes src into out (asserting success) with these options (pred, tx:
 * -1 for the encoder's choice; max_tables 0 for the default). */
void encode_ints(const char *src, const char *out, uint32_t tile_weights, uint32_t bits, int pred, int tx,
                 uint32_t max_tables, bool ints_as_float);
void encode(const char *src, const char *out, uint32_t tile_weights, uint32_t bits, int pred, int tx,
            uint32_t max_tables);

#endif
