/* The GPU decoder's resident path: the whole compressed file copied to the
 * device once, decoded again from there (include/wcodec/wcodec_gpu.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"

/* ---- resident: the whole file on the device ---- */

struct wc_gpu_resident {
    wc_gpu *g;
    const wc_file *f;
    treq *rq;
    size_t n_rq;
    uint8_t *d_file, *d_desc, *h_desc;
    layout L;
    size_t *job_tensor;
    size_t job_cap;
};

void wc_gpu_resident_destroy(wc_gpu_resident *r)
{
    if (!r) return;
    if (r->g && r->g->compute) cudaStreamSynchronize(r->g->compute);
    if (r->d_file) cudaFree(r->d_file);
    if (r->d_desc) cudaFree(r->d_desc);
    free(r->h_desc);
    wcg_free_reqs(r->rq, r->n_rq);
    free(r->job_tensor);
    free(r);
}

int wc_gpu_resident_create(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_gpu_resident **out, wc_err *err)
{
    return wcg_resident_create_sets(g, f, dst, 1, out, err);
}

/* The whole file to d_file, read through its descriptor (never mapped) a
 * stretch at a time through a host buffer, so that host memory stays
 * bounded whatever the model's size; the first n_rq records' checksums
 * meanwhile, as background tasks of the io threads (gpu_io.c). */
#define COPY_CHUNK (64 * MiB)
static int copy_file(wc_gpu *g, const wc_file *f, const treq *rq, size_t n_rq, uint8_t *d_file, wc_err *err)
{
    io_pool *io = &g->io;
    wcg_io_attach(io, f);
    int r = 0;
    for (size_t k = 0; k < n_rq && g->o.verify_checksums && !r; k++) {
        const io_task h = {.kind = 1, .off = rq[k].e->offset, .len = rq[k].e->size, .hash = rq[k].e->hash, .tensor = k};
        if (wcg_io_queue(io, &h)) r = wc_fail(err, WC_ENOMEM, "out of memory");
    }
    const uint64_t size = wc_file_size(f);
    uint8_t *buf = r ? NULL : malloc(size < COPY_CHUNK ? size + 1 : COPY_CHUNK);
    if (!r && !buf) r = wc_fail(err, WC_ENOMEM, "out of memory");
    for (uint64_t at = 0; !r && at < size; at += COPY_CHUNK) {
        const uint64_t n = size - at < COPY_CHUNK ? size - at : COPY_CHUNK;
        if ((r = wc_file_pread(f, NULL, at, n, buf, err))) break;
        /* on the decoder's stream: a cudaMemcpy from pageable memory may
         * return before its DMA is done, and the decoder's streams do not
         * wait for the legacy stream (a run found its output untouched now
         * and then); and done before buf is filled again */
        cudaError_t e = cudaMemcpyAsync(d_file + at, buf, n, cudaMemcpyHostToDevice, g->compute);
        if (e == cudaSuccess) e = cudaStreamSynchronize(g->compute);
        if (e != cudaSuccess) r = wcg_cuda_fail(err, e, "copying the compressed file");
    }
    free(buf);
    /* a record whose checksum fails is reported first */
    io_task bad;
    if (wcg_io_bg_failed(io, true, &bad) && (!r || bad.result == WC_ECHECKSUM)) r = wcg_io_fail(f, rq, &bad, err);
    wcg_io_bg_clear(io);
    io->fd = -1;
    return r;
}

int wcg_resident_create_sets(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, size_t n_sets,
                             wc_gpu_resident **out, wc_err *err)
{
    *out = NULL;
    if (g->backend != WC_BACKEND_CUDA)
        return wc_fail(err, WC_ENODEV, "GPU decoder: resident decode needs a CUDA device (%s)", g->reason);
    int r = 0;
    size_t n = wc_file_tensor_count(f) * n_sets, m = 0;
    piece *ps = NULL;
    uint64_t *src_base = NULL;
    size_t *which = malloc((n ? n : 1) * sizeof *which);
    wc_gpu_dst *d = malloc((n ? n : 1) * sizeof *d);
    wc_gpu_resident *R = calloc(1, sizeof *R);
    if (!which || !d || !R) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    R->g = g, R->f = f;
    for (size_t i = 0; i < n; i++)
        if (dst[i].out) which[m] = i % wc_file_tensor_count(f), d[m++] = dst[i];
    CK(cudaSetDevice(g->device), "cudaSetDevice");
    if ((r = wcg_prep_all(f, d, which, m, g->o.verify_checksums, &R->rq, err))) goto fail;
    R->n_rq = m;
    ps = calloc(m ? m : 1, sizeof *ps);
    src_base = calloc(m ? m : 1, sizeof *src_base);
    if (!ps || !src_base) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    uint64_t cap = 4096;
    for (size_t k = 0; k < m; k++) {
        const treq *t = &R->rq[k];
        ps[k] = (piece){.t = k, .first = 1, .last = 1};
        if (t->coded) {
            ps[k].t0 = 0, ps[k].t1 = t->e->n_tiles;
            src_base[k] = t->e->offset + t->e->tiles_off;
            cap += wcg_piece_desc(t, t->e->n_tiles, 1, 1);
        }
    }
    R->h_desc = malloc(cap);
    if (!R->h_desc) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto fail;
    }
    if ((r = wcg_build_desc(g, R->rq, ps, m, src_base, R->h_desc, cap, &R->L, &R->job_tensor, &R->job_cap, err)))
        goto fail;
    CK(cudaMalloc((void **)&R->d_file, wc_file_size(f) ? wc_file_size(f) : 1), "cudaMalloc (compressed file)");
    CK(cudaMalloc((void **)&R->d_desc, R->L.end ? R->L.end : 16), "cudaMalloc (descriptors)");
    if ((r = copy_file(g, f, R->rq, m < wc_file_tensor_count(f) ? m : wc_file_tensor_count(f), R->d_file, err)))
        goto fail;
    CK(cudaMemcpyAsync(R->d_desc, R->h_desc, R->L.end, cudaMemcpyHostToDevice, g->compute),
       "cudaMemcpyAsync (descriptors)");
    CK(cudaStreamSynchronize(g->compute), "copying the descriptors");
    free(which);
    free(d);
    free(ps);
    free(src_base);
    *out = R;
    return 0;
fail:
    free(which);
    free(d);
    free(ps);
    free(src_base);
    wc_gpu_resident_destroy(R);
    return r;
}

int wc_gpu_resident_run(wc_gpu_resident *R, bool sync, wc_err *err)
{
    wc_gpu *g = R->g;
    int r = 0;
    const layout *L = &R->L;
    CK(cudaMemsetAsync(R->d_desc + L->errs, 0xff, 8ull * L->n_jobs, g->compute), "cudaMemsetAsync");
    for (size_t k = 0; k < R->n_rq; k++) {
        const treq *t = &R->rq[k];
        if (t->coded || !t->e->size) continue;
        CK(cudaMemcpyAsync(t->dst.out, R->d_file + t->e->offset, t->e->size, cudaMemcpyDeviceToDevice, g->compute),
           "cudaMemcpyAsync (raw tensor)");
    }
    wc_gpu_launch l = wcg_make_launch(L, R->d_desc, R->d_file);
    int ce = wc_gpu_launch_decode(&l, g->compute);
    if (ce) return wcg_cuda_fail(err, (cudaError_t)ce, "decode kernel launch");
    if ((r = wcg_launch_preds(g, L, R->d_desc, err))) return r;
    if (!sync) return 0;
    CK(cudaStreamSynchronize(g->compute), "decoding");
    unsigned long long *errs = malloc(8ull * L->n_jobs + 8);
    if (!errs) return wc_fail(err, WC_ENOMEM, "out of memory");
    cudaError_t e = cudaMemcpyAsync(errs, R->d_desc + L->errs, 8ull * L->n_jobs, cudaMemcpyDeviceToHost, g->compute);
    if (e == cudaSuccess) e = cudaStreamSynchronize(g->compute);
    if (e != cudaSuccess) r = wcg_cuda_fail(err, e, "cudaMemcpy (error words)");
    else r = wcg_check_errs(R->f, R->rq, errs, L->n_jobs, R->job_tensor, err);
    free(errs);
    return r;
fail:
    return r;
}
