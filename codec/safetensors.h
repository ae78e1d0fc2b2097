/* safetensors reading (json-c) and writing. */
#ifndef WC_SAFETENSORS_H
#define WC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "wc_internal.h"

typedef struct wc_st_tensor {
    char *name;
    wc_dtype dtype;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    uint64_t numel;
    const uint8_t *data; /* inside the mapping */
    uint64_t size;
    /* the file that holds it, for messages: its path and mapping (a shard's
     * in a folder; map NULL for the folder's metadata record) */
    const char *path;
    const uint8_t *map;
} wc_st_tensor;

/* A safetensors file mapped read-only; tensors in file order. */
typedef struct wc_st_file {
    char *path;
    uint8_t *map;
    size_t map_size;
    wc_st_tensor *tensors;
    size_t n_tensors;
    /* a folder (wc_st_open_folder): the shards own the mappings its tensors
     * point into; `metadata` holds the bytes of its metadata record */
    struct wc_st_file *shards;
    size_t n_shards;
    char *metadata;
} wc_st_file;

int wc_st_open(wc_st_file *f, const char *path, wc_err *err);
/* A Hugging Face model folder as one wc_st_file: config.json (required) and
 * generation_config.json go into a first tensor WC_METADATA_NAME (U8, the
 * JSON object of docs/FORMAT.md, "Metadata"), followed by the tensors of
 * model.safetensors, or of the shards model.safetensors.index.json names,
 * shard by shard in file order. (hf_folder.c) */
int wc_st_open_folder(wc_st_file *f, const char *dir, wc_err *err);
void wc_st_close(wc_st_file *f);
/* Index of tensor `name`, or -1. */
long wc_st_find(const wc_st_file *f, const char *name);

/* Writing: describe every tensor first, then fill the data in place. */
typedef struct wc_st_out_tensor {
    const char *name;
    wc_dtype dtype;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    uint64_t size;
    uint64_t offset; /* set by wc_st_layout: absolute file offset of the data */
} wc_st_out_tensor;

/* Builds the header for tensors t[0..n) in that order and sets their
 * offsets; *header (malloc'd, owned by the caller) holds the 8-byte length
 * and the JSON, padded with spaces to a multiple of 8. */
int wc_st_layout(wc_st_out_tensor *t, size_t n, uint8_t **header, size_t *header_size,
                 uint64_t *file_size, wc_err *err);
/* The same with `metadata` (a JSON object of strings, or NULL) as the
 * header's "__metadata__". */
int wc_st_layout_meta(wc_st_out_tensor *t, size_t n, const char *metadata, uint8_t **header,
                      size_t *header_size, uint64_t *file_size, wc_err *err);

#endif
