/* wcodec GPU decoder: one call decodes a tensor or a whole .wcodec file into
 * caller-provided device memory on a CUDA device, or into host memory when
 * no device can be used (the CPU reference decoder then does the work and
 * wc_gpu_fallback_reason() says why).
 *
 * The file-to-GPU pipeline reads the file with several threads (pread) into
 * a fixed ring of pinned host buffers, copies batch k+1 while batch k
 * decodes, and the kernels write INT8 and scales straight into the caller's
 * buffers. Host memory stays bounded by the ring (opts.ring_bytes).
 *
 * With verify_checksums, each record's XXH3 is checked: a coded record
 * decoded whole on the GPU, from its copied tile streams; any other by the
 * io threads between their reads. Both run in the background: a record may
 * be decoded before its hash is done, and the call fails with WC_ECHECKSUM
 * if any record's hash is wrong (reported in preference to what the decode
 * of that record found; the output of a failed call is undefined). The GPU
 * also checks every tile's rANS end state, which refuses most damaged
 * streams without the hashes, but not all (docs/FORMAT.md, "Integrity").
 *
 * The decoder works on CUDA streams of its own, created non-blocking: it
 * does not wait for work the caller has queued on the output buffers in
 * other streams, the legacy default stream included (a cudaMemset there,
 * say). Synchronise such work before the call; every call returns with its
 * output in place.
 *
 * Every function returns 0 or a negative WC_E* code with a message in err:
 * WC_ENODEV (no usable device, with opts.require_gpu), WC_ECUDA (a CUDA call
 * failed), WC_ENOMEM (host or device memory), WC_ECORRUPT (a tile failed its
 * rANS end-state check on the GPU), WC_ECHECKSUM, WC_EFORMAT, WC_EINVAL.
 *
 * libwcodec exports these functions whether or not it was built with CUDA:
 * a build without CUDA behaves as the CUDA build on a machine without a
 * device (CPU backend, WC_ENODEV with require_gpu or a resident decode).
 *
 * Handles:
 *  - wc_gpu is not re-entrant: one call at a time on a decoder (its ring,
 *    streams and io threads serve one decode); use one wc_gpu per thread
 *    that decodes at the same time. It does not keep the wc_file of a call.
 *  - wc_gpu_resident keeps its wc_gpu, its wc_file and the dst pointers it
 *    was created with (and a copy of the file and descriptors in device
 *    memory): all three must outlive it, and it runs on its wc_gpu's
 *    stream, so the same one-call-at-a-time rule covers both. */
#ifndef WCODEC_GPU_H
#define WCODEC_GPU_H

#include "wcodec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum wc_backend {
    WC_BACKEND_CPU = 1,   /* host memory, CPU reference decoder */
    WC_BACKEND_CUDA = 2,  /* device memory, CUDA kernels */
} wc_backend;

typedef struct wc_gpu_opts {
    int device;             /* CUDA device index; -1 (default): the one with most free memory */
    bool require_gpu;       /* fail with WC_ENODEV instead of falling back to the CPU */
    bool force_cpu;         /* use the CPU decoder even with a device */
    size_t ring_bytes;      /* pinned host ring, in all (default 256 MiB; at most 512 MiB) */
    int ring_slots;         /* buffers in the ring (default 4, at least 2) */
    int io_threads;         /* pread threads, the caller's included (default: online CPUs - 2, 1 to 16) */
    bool verify_checksums;  /* check each record's XXH3 (default true); see below */
    uint64_t reserved[8];   /* zero (wc_gpu_opts_default) */
} wc_gpu_opts;

typedef struct wc_gpu wc_gpu;

WC_API void wc_gpu_opts_default(wc_gpu_opts *o);

/* Picks the device (or the CPU) and allocates the ring, streams and device
 * staging. A missing driver or device is not an error unless require_gpu:
 * the decoder then works on the CPU and wc_gpu_fallback_reason() says why. */
WC_API int wc_gpu_create(wc_gpu **out, const wc_gpu_opts *opts, wc_err *err);
/* As wc_gpu_create, but the new decoder's reads (and record hashes) run on
 * the io threads of `share`, a decoder of this process, instead of threads
 * of its own (opts->io_threads is then ignored): a process with a decoder
 * per GPU reads through one pool of threads, taken by the decoders in turn.
 * Either decoder may be destroyed first: the threads go with the last of
 * them. The decoders may be used from different threads at once. share
 * NULL, or on the CPU backend: as wc_gpu_create. (libwcodec >= 1.2.0) */
WC_API int wc_gpu_create_sharing(wc_gpu **out, const wc_gpu_opts *opts, wc_gpu *share, wc_err *err);
WC_API void wc_gpu_destroy(wc_gpu *g);

WC_API wc_backend wc_gpu_backend(const wc_gpu *g);
/* Why the CPU is used ("" on the CUDA backend). */
WC_API const char *wc_gpu_fallback_reason(const wc_gpu *g);
/* The CUDA device index in use, -1 on the CPU backend. */
WC_API int wc_gpu_device(const wc_gpu *g);

/* Decodes tensor i of f into out (out_size bytes, at least info.out_bytes)
 * and, for coded tensors with scales, scales (n_scales floats; may be NULL).
 * Pointers are device memory on WC_BACKEND_CUDA and host memory on
 * WC_BACKEND_CPU. Returns when the data is in place. */
WC_API int wc_gpu_decode_tensor(wc_gpu *g, const wc_file *f, size_t i, void *out, size_t out_size,
                                float *scales, size_t n_scales, wc_err *err);

/* Where one tensor of a whole-file decode goes; out == NULL skips it. */
typedef struct wc_gpu_dst {
    void *out;
    size_t out_size;
    float *scales;      /* may be NULL */
    size_t n_scales;
} wc_gpu_dst;

/* Decodes every tensor i with dst[i].out != NULL (dst has
 * wc_file_tensor_count(f) entries) through the pipeline. */
WC_API int wc_gpu_decode_file(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_err *err);

/* ---- tensor-parallel shards (docs/SHARDING.md) ----
 * What wc_decode_tensor_shard gives on the CPU, into device memory on
 * WC_BACKEND_CUDA (host memory on WC_BACKEND_CPU, through the CPU
 * decoder): shard rank of n_shards along dim, n_shards 1 the whole tensor.
 * On the device a coded tensor's shard reads and decodes the rows of tiles
 * from the first its values depend on to the last it overlaps (every tile
 * of those rows; only the columns it needs where its tiles read no row
 * above), into out directly where they are the shard's columns, else into
 * a device buffer of the call from which the shard is copied. Like
 * the CPU's, a shard (n_shards >= 2) is not checked against its record's
 * checksum; a whole tensor is where opts.verify_checksums says so. A raw
 * tensor's shard is read on the host and copied. */
WC_API int wc_gpu_decode_shard(wc_gpu *g, const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards,
                               void *out, size_t out_size, float *scales, size_t n_scales, wc_err *err);

/* One tensor of a whole-file sharded decode; out == NULL skips it. */
typedef struct wc_gpu_shard_dst {
    void *out;
    size_t out_size;      /* at least wc_shard_info's out_bytes */
    float *scales;        /* may be NULL */
    size_t n_scales;
    int dim;              /* 0 or 1; any with n_shards 1 */
    uint32_t rank, n_shards;
    uint64_t reserved[4]; /* zero */
} wc_gpu_shard_dst;

/* Decodes, for every tensor i with dst[i].out != NULL (dst has
 * wc_file_tensor_count(f) entries), its shard dst[i].rank of
 * dst[i].n_shards along dst[i].dim: a rank's whole model in one call, the
 * tensors batched through the pipeline as wc_gpu_decode_file batches them
 * (with the device buffers of the shards that need one bounded: a batch
 * holds at most 1 GiB of them, or one tensor's). */
WC_API int wc_gpu_decode_file_shards(wc_gpu *g, const wc_file *f, const wc_gpu_shard_dst *dst, wc_err *err);

/* Dequantizes decoded INT8 values where they are: out[r][c] = q[r][c] x
 * scales[r], the product in float32 rounded to dtype (WC_DT_BF16, WC_DT_F16
 * or WC_DT_F32) to nearest, ties to even: wc_decode_tensor_dequant's rule,
 * bit for bit. q (rows x cols int8), scales (rows floats; NULL: a scale of
 * 1) and out (rows x cols of dtype) are device memory on WC_BACKEND_CUDA and
 * host memory on WC_BACKEND_CPU; out must not overlap q or scales. Returns
 * when out is in place. The step after wc_gpu_decode_file for callers that
 * want float weights: the INT8 buffer can then be freed. */
WC_API int wc_gpu_dequant(wc_gpu *g, const void *q, const float *scales, uint64_t rows, uint64_t cols,
                          wc_dtype dtype, void *out, wc_err *err);

/* ---- compressed bytes already on the device (CUDA backend only) ----
 * wc_gpu_resident_create copies the whole file to device memory once and
 * builds the kernels' descriptors for the tensors of dst; each
 * wc_gpu_resident_run then decodes them again from device memory (what a
 * daemon does with a cached compressed model, and what the kernel benchmark
 * times). On the CPU backend it returns WC_ENODEV. */
typedef struct wc_gpu_resident wc_gpu_resident;
WC_API int wc_gpu_resident_create(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst,
                                  wc_gpu_resident **out, wc_err *err);
/* Launches the decode on the decoder's stream without waiting (sync=false)
 * or waits and checks the tiles' integrity (sync=true). */
WC_API int wc_gpu_resident_run(wc_gpu_resident *r, bool sync, wc_err *err);
/* Waits for its decode and frees its device memory; NULL: nothing. */
WC_API void wc_gpu_resident_destroy(wc_gpu_resident *r);

#ifdef __cplusplus
}
#endif
#endif
