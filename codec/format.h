/* The .wcodec container: header, tensor directory, tensor records.
 * docs/FORMAT.md is the specification; this file follows it field by field. */
#ifndef WC_FORMAT_H
#define WC_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "wc_internal.h"

#define WC_MAGIC "\x89WCODEC\n"
#define WC_HEADER_SIZE 64
#define WC_DIR_FIXED 32          /* directory entry bytes before the shape */
#define WC_DIR_RANS 40           /* extra bytes of a RANS_I8 entry */
#define WC_TILE_ENTRY 8          /* bytes per tile index entry */
#define WC_MAX_NAME 4096
#define WC_MAX_TILE_WEIGHTS (1u << 24)
#define WC_RECORD_ALIGN 64       /* every record starts at a multiple of this */
#define WC_STREAM_ALIGN 4        /* tiles_off and every tile stream's offset */
#define WC_ENTRY_HAS_SCALES 1u

#define WC_MAX_TABLES 16

/* One parsed directory entry. */
typedef struct wc_entry {
    char *name;
    wc_dtype dtype;
    wc_coding coding;
    uint32_t ndim, flags;
    uint64_t shape[WC_MAX_DIMS];
    uint64_t numel, rows, cols;
    uint64_t offset, size, hash;  /* the record */
    /* RANS_I8 only */
    uint32_t tile_rows, tile_cols, prob_bits, n_tables, top_distance;
    uint32_t tiles_down, tiles_across, n_tiles;
    uint32_t version; /* of the file: version 1 allows only identity tiles */
    uint64_t tables_off, index_off, tiles_off; /* relative to the record */
} wc_entry;

/* Header fields. */
typedef struct wc_header {
    uint32_t version, flags, n_tensors;
    uint64_t dir_offset, dir_size, file_size, dir_hash;
} wc_header;

/* rows x cols view of a shape: dim 0 by the product of the others. */
void wc_shape_2d(const uint64_t *shape, uint32_t ndim, uint64_t *rows, uint64_t *cols);
/* Tile t of a RANS_I8 entry (its tile fields set): its first row and column
 * and its size (docs/FORMAT.md, "Tiles"). */
void wc_tile_rect(const wc_entry *e, uint32_t t, uint64_t *r0, uint64_t *c0, uint32_t *h,
                  uint32_t *w);

void wc_header_write(uint8_t out[WC_HEADER_SIZE], const wc_header *h, uint64_t dir_hash);
/* Appends e's directory entry to dir. */
int wc_entry_write(wc_buf *dir, const wc_entry *e);

/* Parses and checks the header (its first min(file_size, 64) bytes at
 * base) of a file of file_size bytes. `label` names it in messages. */
int wc_header_parse(const uint8_t *base, uint64_t file_size, const char *label, wc_header *h, wc_err *err);
/* Parses and checks the directory (h->dir_size bytes at dir) of the file
 * whose header is h. On success *entries holds h->n_tensors entries (free
 * with wc_entries_free). */
int wc_directory_parse(const uint8_t *dir, const wc_header *h, const char *label, wc_entry **entries,
                       wc_err *err);
void wc_entries_free(wc_entry *e, size_t n);

/* Bytes of the scales and of the row map at the start of a coded record. */
uint64_t wc_entry_scales_size(const wc_entry *e);
uint64_t wc_entry_map_size(const wc_entry *e);

/* Bytes of the record of e that decode writes (INT8 or raw). */
uint64_t wc_entry_out_bytes(const wc_entry *e);

uint64_t wc_hash(const void *p, size_t n);
/* Whether the bytes fail their stored checksum; always false in a fuzzing
 * build, so that mutations reach the checks behind the checksums. */
bool wc_hash_differs(uint64_t stored, const void *p, size_t n);
/* The same for a hash computed by the caller (XXH3_64bits_digest). */
bool wc_hash_value_differs(uint64_t stored, uint64_t computed);

#endif
