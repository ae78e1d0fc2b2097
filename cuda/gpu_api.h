/* The part of the GPU decoder's host side that builds with and without
 * CUDA (gpu_api.c), and what each build supplies to it (not installed).
 * With CUDA, gpu_decoder.c is the decoder; without, gpu_nocuda.c is a
 * decoder whose backend is always the CPU, as on a machine without a device:
 * libwcodec exports the same wc_gpu_* symbols either way. */
#ifndef WC_CUDA_GPU_API_H
#define WC_CUDA_GPU_API_H

#include "wcodec/wcodec_gpu.h"

/* wc_gpu_opts.ring_bytes when 0 or left at its default */
#define WCG_RING_DEFAULT (256ull * 1024 * 1024)

/* Decodes the n tensors which[k] of f into dst[k] (gpu_decoder.c with CUDA,
 * gpu_nocuda.c without); the arguments are checked by the caller. */
int wcg_decode(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, wc_err *err);
/* The CPU backend's wcg_decode: wc_decode_tensor on each, in host memory. */
int wcg_decode_cpu(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, wc_err *err);

/* Decodes the shards dst[k] of the n tensors which[k] (gpu_shard.c with
 * CUDA, gpu_nocuda.c without); the tensor indices are checked by the
 * caller, the rest by the callee. */
int wcg_decode_shards(wc_gpu *g, const wc_file *f, const wc_gpu_shard_dst *dst, const size_t *which, size_t n,
                      wc_err *err);
/* The CPU backend's: wc_decode_tensor_shard on each, in host memory. */
int wcg_decode_shards_cpu(const wc_file *f, const wc_gpu_shard_dst *dst, const size_t *which, size_t n, wc_err *err);

/* Dequantizes (wc_gpu_dequant; arguments checked by the caller):
 * gpu_decoder.c with CUDA, gpu_nocuda.c without. */
int wcg_dequant(wc_gpu *g, const int8_t *q, const float *scales, uint64_t rows, uint64_t cols, wc_dtype dtype,
                void *out, wc_err *err);

#endif
