/* The encoder's default tile size (codec/tiles.c). */
#ifndef WC_TILES_H
#define WC_TILES_H

#include <stdint.h>

/* Bounds and target of the default: tiles of at most WC_AUTO_TILE_MAX
 * weights (the fixed default until 2026-12-03), at least WC_AUTO_TILE_MIN,
 * and at least WC_AUTO_TILES tiles in a model where that bound allows. */
#define WC_AUTO_TILE_MAX 262144u
#define WC_AUTO_TILE_MIN 16384u
#define WC_AUTO_TILES 16384u

/* Weights a tile for a model whose coded tensors hold model_weights in all
 * (wc_encode_opts.tile_weights = 0). */
uint32_t wc_auto_tile_weights(uint64_t model_weights);

#endif
