/* Host side of the GPU decoder: device selection and CPU fallback, the
 * pinned ring, the streams and the pipeline that drives them, and the calls
 * of include/wcodec/wcodec_gpu.h that need CUDA (gpu_api.c has the others).
 * The io threads, the descriptors and the resident path have files of their
 * own (gpu_int.h lists them).
 *
 * Pipeline, per batch k (ring slot k % slots):
 *   wait until the slot's last batch has finished on the device;
 *   plan which tensors (or tile ranges of a tensor) fit the slot;
 *   build the kernels' descriptors (tables expanded, tile list, row maps,
 *   scales) in the slot's pinned descriptor area;
 *   io threads pread the tile streams, through the wc_file's own descriptor
 *   (never by its label), into the slot's pinned data area;
 *   copy stream: descriptors + data H2D (raw tensors straight to the caller);
 *   compute stream waits for the copy, decodes, predicts finished tensors,
 *   copies the per-job error words back, records the slot's `done` event.
 * The host prepares batch k+1 while the device copies and decodes batch k. */
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
    if (wcg_io_start(&g->io, g->o.io_threads - 1)) {
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

static int retire_slot(wc_gpu *g, slot *sl, const wc_file *f, const treq *rq, wc_err *err)
{
    if (!sl->in_use) return 0;
    sl->in_use = 0;
    cudaError_t e = cudaEventSynchronize(sl->done);
    if (e != cudaSuccess) return wcg_cuda_fail(err, e, "decoding a batch");
    (void)g;
    return wcg_check_errs(f, rq, (const unsigned long long *)(sl->h_desc + sl->errs_off), sl->n_jobs,
                      sl->job_tensor, err);
}

int wcg_run_pipeline(wc_gpu *g, const wc_file *f, treq *rq, size_t n_rq, wc_err *err)
{
    int r = 0;
    piece *ps = NULL;
    size_t ps_cap = 0;
    io_task *tasks = NULL;
    size_t task_cap = 0;
    uint64_t *src_base = NULL;
    layout L = {0};
    cursor c = {0, 0};
    uint64_t batch = 0;
    io_pool *io = &g->io;
    wcg_io_attach(io, f);

    while (c.t < n_rq) {
        slot *sl = &g->slots[batch % (uint64_t)g->n_slots];
        if ((r = retire_slot(g, sl, f, rq, err))) goto out;
        long np = wcg_plan_batch(rq, n_rq, &c, g->data_cap, g->desc_cap, &ps, &ps_cap, f, err);
        if (np < 0) {
            r = (int)np;
            goto out;
        }
        if (np == 0) break;
        /* io tasks */
        size_t nt = 0;
        uint64_t data_used = 0;
        free(src_base);
        src_base = malloc((size_t)np * sizeof *src_base);
        if (!src_base) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        /* each record's checksum in the background, queued with its first
         * piece: it only has to pass before the call returns (a tensor
         * whose record fails is then reported, whatever was decoded) */
        for (long i = 0; i < np && g->o.verify_checksums; i++) {
            if (!ps[i].first || rq[ps[i].t].skip_hash) continue;
            const wc_entry *e = rq[ps[i].t].e;
            io_task h = {.kind = 1, .off = e->offset, .len = e->size, .hash = e->hash, .tensor = ps[i].t};
            if (wcg_io_queue(io, &h)) {
                r = wc_fail(err, WC_ENOMEM, "out of memory");
                goto out;
            }
        }
        for (long i = 0; i < np; i++) {
            const piece *p = &ps[i];
            const treq *t = &rq[p->t];
            uint64_t foff = t->coded ? t->e->offset + t->e->tiles_off + p->b0 : t->e->offset + p->b0;
            uint64_t len = p->b1 - p->b0;
            src_base[i] = p->data_off - p->b0;
            if (p->data_off + len > data_used) data_used = p->data_off + len;
            for (uint64_t a = 0; a < len; a += IO_CHUNK) {
                if (nt == task_cap) {
                    size_t ncap = task_cap ? 2 * task_cap : 256;
                    io_task *nt2 = realloc(tasks, ncap * sizeof *nt2);
                    if (!nt2) {
                        r = wc_fail(err, WC_ENOMEM, "out of memory");
                        goto out;
                    }
                    tasks = nt2, task_cap = ncap;
                }
                uint64_t l = len - a < IO_CHUNK ? len - a : IO_CHUNK;
                tasks[nt++] = (io_task){.kind = 0, .off = foff + a, .len = l, .dst = sl->h_data + p->data_off + a,
                                        .tensor = p->t};
            }
        }
        if ((r = wcg_build_desc(g, rq, ps, (size_t)np, src_base, sl->h_desc, g->desc_cap, &L, &sl->job_tensor,
                            &sl->job_cap, err)))
            goto out;
        wcg_io_run(io, tasks, nt);
        for (size_t k = 0; k < nt; k++)
            if (tasks[k].result) {
                r = wcg_io_fail(f, rq, &tasks[k], err);
                goto out;
            }
        io_task bad;
        if (wcg_io_bg_failed(io, false, &bad)) {
            r = wcg_io_fail(f, rq, &bad, err);
            goto out;
        }
        /* copies */
        if (L.end) CK(cudaMemcpyAsync(sl->d_desc, sl->h_desc, L.end, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (descriptors)");
        for (long i = 0; i < np; i++) {
            const piece *p = &ps[i];
            const treq *t = &rq[p->t];
            uint64_t len = p->b1 - p->b0;
            if (t->coded) continue;
            CK(cudaMemcpyAsync((uint8_t *)t->dst.out + p->b0, sl->h_data + p->data_off, len, cudaMemcpyHostToDevice,
                               sl->copy), "cudaMemcpyAsync (raw tensor)");
        }
        if (L.n_jobs && data_used)
            CK(cudaMemcpyAsync(sl->d_data, sl->h_data, data_used, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (tile streams)");
        CK(cudaEventRecord(sl->copied, sl->copy), "cudaEventRecord");
        CK(cudaStreamWaitEvent(g->compute, sl->copied, 0), "cudaStreamWaitEvent");
        if (L.n_jobs) {
            wc_gpu_launch l = wcg_make_launch(&L, sl->d_desc, sl->d_data);
            int ce = wc_gpu_launch_decode(&l, g->compute);
            if (ce) {
                r = wcg_cuda_fail(err, (cudaError_t)ce, "decode kernel launch");
                goto fail;
            }
            if ((r = wcg_launch_preds(g, &L, sl->d_desc, err))) goto fail;
            CK(cudaMemcpyAsync(sl->h_desc + L.errs, sl->d_desc + L.errs, 8ull * L.n_jobs, cudaMemcpyDeviceToHost,
                               g->compute), "cudaMemcpyAsync (error words)");
        }
        CK(cudaEventRecord(sl->done, g->compute), "cudaEventRecord");
        sl->in_use = 1;
        sl->errs_off = L.errs;
        sl->n_jobs = L.n_jobs;
        batch++;
    }
    for (int s = 0; s < g->n_slots; s++) {
        int r2 = retire_slot(g, &g->slots[s], f, rq, err);
        if (r2 && !r) r = r2;
    }
fail:
out:
    /* a record whose checksum fails is the cause of whatever its decode
     * found: that is reported first */
    if (r != WC_ECHECKSUM && r != WC_ENOMEM) {
        io_task bad;
        if (wcg_io_bg_failed(io, true, &bad) && (!r || bad.result == WC_ECHECKSUM)) r = wcg_io_fail(f, rq, &bad, err);
    }
    /* leave nothing in flight that uses the ring */
    for (int s = 0; s < g->n_slots; s++) {
        cudaStreamSynchronize(g->slots[s].copy);
        g->slots[s].in_use = 0;
    }
    cudaStreamSynchronize(g->compute);
    wcg_io_bg_clear(io); /* the hashes read through io->fd */
    io->fd = -1;
    free(ps);
    free(tasks);
    free(src_base);
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
