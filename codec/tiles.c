/* The encoder's default tile size: from the size of the model.
 *
 * A tile is one GPU warp's serial run, so a launch lasts at least as long
 * as its longest tile, and a model of few tiles leaves most of a GPU idle:
 * the real slice (10.3 M weights) coded in 256 K-weight tiles is 50 tiles,
 * and 100 copies of it in one launch still decode at 0.61x DietGPU's speed,
 * where 16 K-weight tiles reach 555-640 GB/s (bench/RESULTS.md#gpu-small-models,
 * #dietgpu). Each tile costs 136 bytes (states and index), so smaller tiles
 * cost size: 0.004 bit a weight at 256 K weights, 0.066 at 16 K (+0.9% on
 * the slice, +0.7% on PP-OCRv4). The rule spends that only where it buys
 * parallel work:
 *  - the largest power of two, at most 256 K, that still gives the model
 *    WC_AUTO_TILES (16,384) tiles: four waves of the 4,224 warps an H100 or
 *    H200 holds (132 SMs, 2 blocks of 16 warps), the tile count at which a
 *    model of uniform tiles decodes at 94% of its full speed (a 256 MB
 *    tensor in 16 K tiles: 820 GB/s against 874 for 1 GB,
 *    bench/RESULTS.md#gpu-size-curve);
 *  - never below 16 K weights: 4 K tiles decode the slice x100 no faster
 *    than 16 K ones and cost 3.7% in size, not 0.9%.
 * So every model of 4.3 G coded weights or more (Llama-2-7B shapes: 6.74 G)
 * keeps 256 K tiles and the files it had; below that the tile halves as
 * the model does: 128 K from 2.15 G weights, 64 K from 1.074 G, 32 K from
 * 537 M, 16 K below.
 *
 * One size for the whole model, not one per tensor: a launch decodes the
 * model's tiles side by side and lasts as long as its longest, so uniform
 * tiles give the most parallel work for a given number of tiles (their
 * cost). A tensor's own size enters through the tile geometry
 * (codec/record.c, choose_tiles): a tensor smaller than a tile is one tile
 * of its own size, and very wide rows are cut. */
#include "tiles.h"

uint32_t wc_auto_tile_weights(uint64_t model_weights)
{
    uint32_t t = WC_AUTO_TILE_MAX;
    while (t > WC_AUTO_TILE_MIN && model_weights / t < WC_AUTO_TILES) t >>= 1;
    return t;
}
