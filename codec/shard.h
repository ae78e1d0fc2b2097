/* Tensor-parallel shards (docs/SHARDING.md): which part of a tensor's
 * matrix a shard is, which tiles its values depend on, and its CPU decode.
 * The GPU decoder (cuda/gpu_shard.c) uses the first two. */
#ifndef WC_SHARD_H
#define WC_SHARD_H

#include <stdbool.h>

#include "dsp.h"
#include "format.h"
#include "rec_reader.h"

/* A shard as a rectangle of the tensor's matrix view (docs/FORMAT.md):
 * rows [r0, r1), columns [c0, c1), in elements. */
typedef struct wc_shard_rect {
    uint64_t r0, r1, c0, c1;
} wc_shard_rect;

/* torch.tensor_split's share of len indices among n: rank's first index
 * and count (the first len % n shards one more than the others). */
void wc_shard_split(uint64_t len, uint32_t rank, uint32_t n, uint64_t *start, uint64_t *count);

/* A part of a tensor along dim: the indices [start, start + len); a
 * shard's rank and count (n 1: the whole tensor, whatever dim), or n 0 for
 * a slice asked for as such. */
typedef struct wc_part {
    int dim;
    uint64_t start, len;
    uint32_t rank, n;
} wc_part;

/* Shard rank of n of entry e along dim (torch.tensor_split's sizes), or the
 * slice [start, start + len): checked (WC_EINVAL with a message naming
 * label, the tensor and the part). */
int wc_part_shard(const wc_entry *e, int dim, uint32_t rank, uint32_t n, const char *label, wc_part *p, wc_err *err);
int wc_part_slice(const wc_entry *e, int dim, uint64_t start, uint64_t len, const char *label, wc_part *p,
                  wc_err *err);
/* A checked part's shape, sizes and scales (info), and its rectangle. */
void wc_part_resolve(const wc_entry *e, const wc_part *p, wc_shard_info *info, wc_shard_rect *rect);
/* A part's full name for messages: "LABEL: tensor 'NAME': shard R of N
 * along dim D" (or "slice [A, B) along dim D"). */
void wc_part_what(char *buf, size_t size, const char *label, const wc_entry *e, const wc_part *p);

/* Marks need[t] = 1 for every tile whose decoded values the rectangle's
 * values depend on: the tiles it overlaps and, transitively, those their
 * predictions read (left: the tile to the left; top, avg, planar: the
 * tiles holding the rows top_distance up, planar's column to the left
 * included). Every such tile has a lower number than the one that reads
 * it, so one pass from the last tile down finds them all. need has
 * n_tiles bytes, zeroed by the caller. */
void wc_shard_tiles(const wc_rec *rec, const wc_shard_rect *s, uint8_t *need);

/* How a decoder of whole tensors (the GPU's) decodes a shard: as tensors of
 * their own made of tiles contiguous in the record (wc_shard_sub_tensor).
 * Normally one: the rows of tiles [tr0, tr1] from the first the needed
 * tiles (wc_shard_tiles) lie in to the last, every tile column. Where the
 * needed tiles leave columns out and none reads a row above (top, avg,
 * planar), one per row of tiles instead (per_row; at most
 * WC_SHARD_MAX_SUBS of them, as each is a GPU job with its own copy of the
 * tables), of the tile columns
 * [tc0, tc1]: a column shard of a tensor in tiles narrower than its rows
 * then decodes only its columns (and those left of them that its tiles'
 * left predictions reach). */
#define WC_SHARD_MAX_SUBS 256 /* rows of tiles of the per-row form at most */
typedef struct wc_shard_plan {
    uint64_t tr0, tr1, tc0, tc1;
    bool per_row;
    uint64_t n_subs;
} wc_shard_plan;
/* The plan of the rectangle s (not empty): 0 or WC_ENOMEM. */
int wc_shard_plan_subs(const wc_rec *rec, const wc_shard_rect *s, wc_shard_plan *p);
/* Sub-tensor k's rows of tiles (its columns: [p->tc0, p->tc1]). */
void wc_shard_plan_sub(const wc_shard_plan *p, uint64_t k, uint64_t *tr0, uint64_t *tr1);

/* The tiles [tr0, tr1] x [tc0, tc1] of the coded entry e (whose head `head`
 * rec parses) as a tensor of their own: *ve is e with their rows, columns,
 * tiles and sections, and an offset such that their streams are where e's
 * are in the file; *vhead (owned by the caller, ve->tiles_off bytes) holds
 * their rows' scales and row map, e's tables, and their index entries with
 * offsets from the first of their streams. Its rows and columns from the
 * first are e's from tr0 x tile_rows and tc0 x tile_cols. Values above it
 * and left of it read as 0, which only tiles a shard does not need read
 * (wc_shard_plan_subs). A top distance beyond its rows becomes its row
 * count (the same meaning: no row reads one of them). ve->name is `name`,
 * ve->hash 0: the record's checksum does not apply. The tiles must be
 * contiguous in the record (every tile column, or one row of tiles):
 * WC_EINVAL otherwise; WC_ENOMEM. */
int wc_shard_sub_tensor(const wc_entry *e, const wc_rec *rec, const uint8_t *head, uint64_t tr0, uint64_t tr1,
                        uint64_t tc0, uint64_t tc1, char *name, wc_entry *ve, uint8_t **vhead);

/* wc_decode_tensor_shard with the routines of dsp; *bytes_read (if not
 * NULL) receives the bytes it read from the file (tests check that a shard
 * reads less than its record). */
int wc_shard_decode(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n, void *out, size_t out_size,
                    float *scales, size_t n_scales, const wc_dsp *dsp, uint64_t *bytes_read, wc_err *err);
/* The same for a checked part of tensor i (< the file's count). */
int wc_part_decode(const wc_file *f, size_t i, const wc_part *p, void *out, size_t out_size, float *scales,
                   size_t n_scales, const wc_dsp *dsp, uint64_t *bytes_read, wc_err *err);

#endif
