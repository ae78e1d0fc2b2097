/* Host side of the GPU decoder: device selection and CPU fallback, the
 * pinned ring, the streams and the pipeline that drives them, and the calls
 * of include/wcodec/wcodec_gpu.h that need CUDA (gpu_api.c has the others).
 * The io threads, the descriptors and the resident path have files of their
 * own (gpu_int.h lists them).
 *
 * The pipeline itself is in gpu_pipeline.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "dequant.h"
#include "gpu_int.h"
#include "rans.h"

int wcg_cuda_fail(wc_err *err, cudaError_t e, const char *what)
{
    int code = e == cudaErrorMemoryAllocation ? WC_ENOMEM : WC_ECUDA;
    (void)cudaGetLastError(); /* reported here: not left for a later call to find */
    return wc_fail(err, code, "CUDA: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* ---- the decoder ---- */

wc_backend wc_gpu_backend(const wc_gpu *g) { return g->backend; }
const char *wc_gpu_fallback_reason(const wc_gpu *g) { return g->reason; }
int wc_gpu_device(const wc_gpu *g) { return g->backend == WC_BACKEND_CUDA ? g->device : -1; }
void *wcg_stream(const wc_gpu *g) { return g->compute; }

static void free_device_side(wc_gpu *g)
{
    wcg_hash_free(g);
    for (int s = 0; s < MAX_SLOTS; s++) {
        slot *sl = &g->slots[s];
        if (sl->copy) cudaStreamSynchronize(sl->copy);
        if (sl->h_data) cudaFreeHost(sl->h_data);
        if (sl->h_desc) cudaFreeHost(sl->h_desc);
        if (sl->d_data) cudaFree(sl->d_data);
        if (sl->d_desc) cudaFree(sl->d_desc);
        if (sl->copy) cudaStreamDestroy(sl->copy);
        if (sl->copied) cudaEventDestroy(sl->copied);
        if (sl->done) cudaEventDestroy(sl->done);
        free(sl->job_tensor);
        memset(sl, 0, sizeof *sl);
    }
    if (g->compute) {
        cudaStreamSynchronize(g->compute);
        cudaStreamDestroy(g->compute);
        g->compute = NULL;
    }
}

void wc_gpu_destroy(wc_gpu *g)
{
    if (!g) return;
    wcg_io_stop(&g->io);
    if (g->backend == WC_BACKEND_CUDA) free_device_side(g);
    free(g);
}

/* Chooses the device; on failure fills g->reason and returns WC_ENODEV. */
static int pick_device(wc_gpu *g)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(g->reason, sizeof g->reason, "no usable CUDA driver or device: %s (%s)",
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return WC_ENODEV;
    }
    if (n == 0) {
        snprintf(g->reason, sizeof g->reason, "no CUDA device");
        return WC_ENODEV;
    }
    int dev = g->o.device;
    if (dev >= n) {
        snprintf(g->reason, sizeof g->reason, "CUDA device %d asked for, %d present", dev, n);
        return WC_ENODEV;
    }
    if (dev < 0) {
        size_t best = 0;
        dev = 0;
        for (int d = 0; d < n && n > 1; d++) {
            size_t fr = 0, tot = 0;
            if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess && fr > best)
                best = fr, dev = d;
            cudaGetLastError();
        }
    }
    struct cudaDeviceProp p;
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, dev)) != cudaSuccess) {
        snprintf(g->reason, sizeof g->reason, "CUDA device %d: %s", dev, cudaGetErrorString(e));
        cudaGetLastError();
        return WC_ENODEV;
    }
    if (p.major < 9) {
        snprintf(g->reason, sizeof g->reason,
                 "CUDA device %d (%s) has compute capability %d.%d; this build has kernels for 9.0 and newer",
                 dev, p.name, p.major, p.minor);
        return WC_ENODEV;
    }
    g->device = dev;
    g->max_smem = (int)p.sharedMemPerBlockOptin;
    g->smem_sm = (int)p.sharedMemPerMultiprocessor;
    return 0;
}

int wc_gpu_create(wc_gpu **out, const wc_gpu_opts *opts, wc_err *err)
{
    return wc_gpu_create_sharing(out, opts, NULL, err);
}

int wc_gpu_create_sharing(wc_gpu **out, const wc_gpu_opts *opts, wc_gpu *share, wc_err *err)
{
    *out = NULL;
    wc_gpu *g = calloc(1, sizeof *g);
    if (!g) return wc_fail(err, WC_ENOMEM, "out of memory");
    if (opts) g->o = *opts;
    else wc_gpu_opts_default(&g->o);
    g->device = -1;
    int r = 0;
    if (g->o.ring_slots < 2) g->o.ring_slots = 2;
    if (g->o.ring_slots > MAX_SLOTS) g->o.ring_slots = MAX_SLOTS;
    if (g->o.ring_bytes == 0) g->o.ring_bytes = WCG_RING_DEFAULT;
    if (g->o.ring_bytes > RING_MAX) g->o.ring_bytes = RING_MAX;
    if (g->o.io_threads < 1) g->o.io_threads = 1;
    if (g->o.io_threads > 64) g->o.io_threads = 64;

    if (g->o.force_cpu) {
        snprintf(g->reason, sizeof g->reason, "the CPU decoder was asked for (force_cpu)");
    } else if (pick_device(g) == 0) {
        g->backend = WC_BACKEND_CUDA;
    }
    if (g->backend != WC_BACKEND_CUDA) {
        if (g->o.require_gpu && !g->o.force_cpu) {
            r = wc_fail(err, WC_ENODEV, "GPU decoder: %s", g->reason);
            free(g);
            return r;
        }
        g->backend = WC_BACKEND_CPU;
        *out = g;
        return 0;
    }

    int ke = wc_gpu_decode_setup(g->max_smem);
    if (ke) {
        r = wcg_cuda_fail(err, (cudaError_t)ke, "setting up the decode kernels");
        goto fail;
    }
    g->n_slots = g->o.ring_slots;
    uint64_t per = g->o.ring_bytes / (uint64_t)g->n_slots;
    if (per < 8 * MiB) per = 8 * MiB;
    g->desc_cap = a16(per / 8);
    g->data_cap = (per - g->desc_cap) & ~(uint64_t)15;
    CK(cudaStreamCreateWithFlags(&g->compute, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int s = 0; s < g->n_slots; s++) {
        slot *sl = &g->slots[s];
        CK(cudaStreamCreateWithFlags(&sl->copy, cudaStreamNonBlocking), "cudaStreamCreate");
        CK(cudaEventCreateWithFlags(&sl->copied, cudaEventDisableTiming), "cudaEventCreate");
        CK(cudaEventCreateWithFlags(&sl->done, cudaEventDisableTiming), "cudaEventCreate");
        CK(cudaHostAlloc((void **)&sl->h_data, g->data_cap, cudaHostAllocDefault), "cudaHostAlloc (pinned ring)");
        CK(cudaHostAlloc((void **)&sl->h_desc, g->desc_cap, cudaHostAllocDefault), "cudaHostAlloc (pinned ring)");
        CK(cudaMalloc((void **)&sl->d_data, g->data_cap), "cudaMalloc (device staging)");
        CK(cudaMalloc((void **)&sl->d_desc, g->desc_cap), "cudaMalloc (device staging)");
    }
    if ((r = wcg_hash_alloc(g, err))) goto fail;
    if (share && share->backend == WC_BACKEND_CUDA ? wcg_io_share(&g->io, &share->io)
                                                   : wcg_io_start(&g->io, g->o.io_threads - 1)) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    *out = g;
    return 0;
fail:
    if (r == WC_ENOMEM && err)
        snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                 " (ring of %zu bytes in %d slots on device %d)", g->o.ring_bytes, g->n_slots, g->device);
    wcg_io_stop(&g->io);
    free_device_side(g);
    free(g);
    return r;
}

int wcg_check_device_ptr(const void *p, const char *what, wc_err *err)
{
    struct cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, p);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return wc_fail(err, WC_EINVAL, "GPU decoder: %s %p is not CUDA memory (%s)", what, p, cudaGetErrorString(e));
    }
    if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
        return wc_fail(err, WC_EINVAL, "GPU decoder: %s %p is not device memory", what, p);
    return 0;
}

int wcg_decode(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, wc_err *err)
{
    int r;
    if (g->backend == WC_BACKEND_CPU) return wcg_decode_cpu(f, dst, which, n, err);
    cudaError_t e = cudaSetDevice(g->device);
    if (e != cudaSuccess) return wcg_cuda_fail(err, e, "cudaSetDevice");
    for (size_t k = 0; k < n; k++) {
        if (dst[k].out_size && (r = wcg_check_device_ptr(dst[k].out, "output", err))) return r;
        if (dst[k].scales && (r = wcg_check_device_ptr(dst[k].scales, "scales", err))) return r;
    }
    treq *rq;
    if ((r = wcg_prep_all(f, dst, which, n, g->o.verify_checksums, &rq, err))) return r;
    r = wcg_run_pipeline(g, f, rq, n, err);
    wcg_free_reqs(rq, n);
    return r;
}

int wcg_dequant(wc_gpu *g, const int8_t *q, const float *scales, uint64_t rows, uint64_t cols, wc_dtype dtype,
                void *out, wc_err *err)
{
    if (g->backend == WC_BACKEND_CPU) {
        wc_dequant_rows(q, scales, rows, cols, dtype, out);
        return 0;
    }
    if (!rows || !cols) return 0;
    int r;
    cudaError_t e = cudaSetDevice(g->device);
    if (e != cudaSuccess) return wcg_cuda_fail(err, e, "cudaSetDevice");
    if ((r = wcg_check_device_ptr(q, "input", err)) || (r = wcg_check_device_ptr(out, "output", err)) ||
        (scales && (r = wcg_check_device_ptr(scales, "scales", err))))
        return r;
    const int kind = dtype == WC_DT_BF16 ? 0 : dtype == WC_DT_F16 ? 1 : 2;
    e = (cudaError_t)wcg_dequant_launch(q, scales, rows, cols, kind, out, g->compute);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->compute);
    return e == cudaSuccess ? 0 : wcg_cuda_fail(err, e, "dequantize");
}
