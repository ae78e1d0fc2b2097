/* The calls of wcodec_gpu.h that are the same with and without CUDA: the
 * default options, the checks and gathering of the decode calls, and the
 * CPU backend's decode. They build without nvcc (gpu_api.h). */
#include <stdlib.h>
#include <unistd.h>

#include "gpu_api.h"
#include "dequant.h"
#include "wc_internal.h"

void wc_gpu_opts_default(wc_gpu_opts *o)
{
    memset(o, 0, sizeof *o);
    o->device = -1;
    o->ring_bytes = WCG_RING_DEFAULT;
    o->ring_slots = 4;
    /* reading and hashing a model from the page cache is CPU-bound: all
     * but two CPUs, the calling thread counted */
    long n = sysconf(_SC_NPROCESSORS_ONLN) - 2;
    o->io_threads = n < 1 ? 1 : n > 16 ? 16 : (int)n;
    o->verify_checksums = true;
}

int wcg_decode_cpu(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, wc_err *err)
{
    int r;
    for (size_t k = 0; k < n; k++)
        if ((r = wc_decode_tensor(f, which[k], dst[k].out, dst[k].out_size, dst[k].scales, dst[k].n_scales, err)))
            return r;
    return 0;
}

int wc_gpu_decode_tensor(wc_gpu *g, const wc_file *f, size_t i, void *out, size_t out_size, float *scales,
                         size_t n_scales, wc_err *err)
{
    if (i >= wc_file_tensor_count(f)) return wc_fail(err, WC_EINVAL, "%s: no tensor %zu", wc_file_label(f), i);
    wc_gpu_dst d = {out, out_size, scales, n_scales};
    return wcg_decode(g, f, &d, &i, 1, err);
}

int wc_gpu_decode_file(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_err *err)
{
    size_t n = wc_file_tensor_count(f), m = 0;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    wc_gpu_dst *d = malloc((n ? n : 1) * sizeof *d);
    int r = 0;
    if (!which || !d) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (dst[i].out) which[m] = i, d[m++] = dst[i];
    r = wcg_decode(g, f, d, which, m, err);
out:
    free(which);
    free(d);
    return r;
}

int wcg_decode_shards_cpu(const wc_file *f, const wc_gpu_shard_dst *dst, const size_t *which, size_t n, wc_err *err)
{
    int r;
    for (size_t k = 0; k < n; k++) {
        const wc_gpu_shard_dst *d = &dst[k];
        if ((r = wc_decode_tensor_shard(f, which[k], d->dim, d->rank, d->n_shards, d->out, d->out_size, d->scales,
                                        d->n_scales, err)))
            return r;
    }
    return 0;
}

int wc_gpu_decode_shard(wc_gpu *g, const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards, void *out,
                        size_t out_size, float *scales, size_t n_scales, wc_err *err)
{
    if (i >= wc_file_tensor_count(f)) return wc_fail(err, WC_EINVAL, "%s: no tensor %zu", wc_file_label(f), i);
    const wc_gpu_shard_dst d = {.out = out, .out_size = out_size, .scales = scales, .n_scales = n_scales,
                                .dim = dim, .rank = rank, .n_shards = n_shards};
    return wcg_decode_shards(g, f, &d, &i, 1, err);
}

int wc_gpu_decode_file_shards(wc_gpu *g, const wc_file *f, const wc_gpu_shard_dst *dst, wc_err *err)
{
    size_t n = wc_file_tensor_count(f), m = 0;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    wc_gpu_shard_dst *d = malloc((n ? n : 1) * sizeof *d);
    int r = 0;
    if (!which || !d) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (dst[i].out) which[m] = i, d[m++] = dst[i];
    r = wcg_decode_shards(g, f, d, which, m, err);
out:
    free(which);
    free(d);
    return r;
}

int wc_gpu_dequant(wc_gpu *g, const void *q, const float *scales, uint64_t rows, uint64_t cols, wc_dtype dtype,
                   void *out, wc_err *err)
{
    if (dtype != WC_DT_BF16 && dtype != WC_DT_F16 && dtype != WC_DT_F32)
        return wc_fail(err, WC_EINVAL, "dequantize: %s is not an output dtype (BF16, F16 or F32)",
                       wc_dtype_name(dtype) ? wc_dtype_name(dtype) : "unknown dtype");
    if (rows && cols > UINT64_MAX / 4 / rows)
        return wc_fail(err, WC_ERANGE, "dequantize: %llu x %llu values", (unsigned long long)rows,
                       (unsigned long long)cols);
    if (rows && cols && (!q || !out)) return wc_fail(err, WC_EINVAL, "dequantize: NULL input or output");
    return wcg_dequant(g, q, scales, rows, cols, dtype, out, err);
}
