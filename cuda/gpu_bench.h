/* What the GPU benchmark (bench/gpu) reaches beyond wcodec_gpu.h: internal,
 * neither installed nor exported from libwcodec; defined by the CUDA build. */
#ifndef WC_CUDA_GPU_BENCH_H
#define WC_CUDA_GPU_BENCH_H

#include "wcodec/wcodec_gpu.h"

/* The CUDA stream (a cudaStream_t) the decoder launches on: the benchmark
 * times its launches on it. */
void *wcg_stream(const wc_gpu *g);
/* wc_gpu_resident_create for n_sets copies of the outputs (dst: n_sets x
 * tensor count entries, set-major): one launch decodes the file n_sets
 * times, into different buffers (throughput on small files). gpu_resident.c */
int wcg_resident_create_sets(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, size_t n_sets,
                             wc_gpu_resident **out, wc_err *err);

#endif
