/* Shared by the cmocka tests: temporary files, small safetensors models and
 * ways to damage a .wcodec file. */
#ifndef WCT_HELPERS_H
#define WCT_HELPERS_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

/* A tensor to put in a test safetensors file. */
typedef struct th_tensor {
    const char *name;
    wc_dtype dtype;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    const void *data; /* numel * dtype size bytes */
} th_tensor;

/* A fresh temporary folder (removed with its files by th_cleanup). */
const char *th_tmpdir(void);
/* th_tmpdir()/name, in a static rotating buffer. */
const char *th_path(const char *name);
void th_cleanup(void);

int th_write_safetensors(const char *path, const th_tensor *t, size_t n);
/* Whole file in memory (malloc'd); NULL if unreadable. */
uint8_t *th_read_file(const char *path, size_t *size);
int th_write_file(const char *path, const void *p, size_t n);

/* Recomputes the directory and header checksums of a .wcodec image, so a
 * test can forge fields that pass the checksums and reach later checks. */
void th_reseal(uint8_t *file, size_t size);
/* Offset of directory entry `i` in the image. */
size_t th_dir_entry(const uint8_t *file, size_t i);

/* A deterministic generator (xorshift64*). */
uint64_t th_rand(uint64_t *s);
/* Encodes at path a model of two tensors, "m.weight" (rows x 200 F32, coded
 * in several tiles, with scales) and "m.bias" (77 F32, kept raw), its values
 * drawn from seed: models of one layout whose offsets differ with rows.
 * 0, or -1 (the reason on stderr). */
int th_encode_model(const char *path, uint64_t rows, uint64_t seed);
/* Writes structured.safetensors in th_tmpdir and returns its path (NULL on
 * failure): rows repeating every 12 (for top prediction), smooth rows (left,
 * planar), noise, a tensor of three dimensions (a dim-1 shard is then
 * slices of shape[1]) and raw tensors of one and two dimensions. The
 * sharding tests' model, on the CPU and the GPU. */
const char *th_structured_model(void);



/* Recomputes the record checksum of tensor i (then call th_reseal). */
void th_rehash_record(uint8_t *file, size_t i);
/* True if the formatted message holds every one of the NULL-ended words. */
int th_msg_has(const char *msg, ...);
#endif
