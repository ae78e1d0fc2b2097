/* Tensor-parallel shards on the GPU (docs/SHARDING.md, "On the GPU").
 *
 * The kernels decode and predict whole tensors: a coded shard is handed to
 * the pipeline as a tensor of its own, the rows of tiles from the first its
 * values depend on (codec/shard.c, wc_shard_tiles) to the last it overlaps.
 * Those tiles are contiguous in the record, so the pipeline reads them as it
 * reads any tensor's; the tensor's head is rewritten for them (their rows'
 * scales and row map, the same tables, their index entries with offsets from
 * the first of their streams). Rows above the first are zero to the kernels:
 * only tiles the shard does not need read them (every tile a needed one
 * depends on is needed, and lies in these rows). Where the rows are not
 * exactly the shard, they go to a device buffer from which the shard is
 * copied (cudaMemcpy2DAsync). Scales come from the head, on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"
#include "shard.h"

/* Device buffers of one batch's shards at most (one shard's at least). */
#define SHARD_TMP_CAP (1024 * MiB)

typedef struct sjob {
    size_t i;
    const wc_gpu_shard_dst *dst;
    wc_part part;
    wc_shard_info info;
    wc_shard_rect rect;
    char what[WC_MAX_NAME + 256];
    wc_entry ve;       /* coded shard: the rows of tiles it decodes, as a tensor (wc_shard_rows_tensor) */
    uint64_t R0;       /* their first row */
    uint64_t tmp_bytes;/* 0: decoded straight into dst->out */
    uint8_t *tmp;      /* device */
    treq rq;           /* the pipeline's request, moved into the batch */
    int in_pipeline;
} sjob;

/* Scales of the shard, from the record's head, checked as on the CPU. */
static int put_scales(const sjob *j, const wc_entry *e, const uint8_t *head, wc_err *err)
{
    for (uint64_t y = j->info.scale_row0; y < j->info.scale_row0 + j->info.n_scales; y++) {
        float v;
        memcpy(&v, head + 4 * y, 4);
        if (!isfinite(v))
            return wc_fail(err, WC_ECORRUPT, "%s: scale of row %llu (offset %llu) is %s", j->what,
                           (unsigned long long)y, (unsigned long long)(e->offset + 4 * y),
                           isnan(v) ? "NaN" : "infinite");
    }
    if (!j->dst->scales || !j->info.n_scales) return 0;
    cudaError_t ce = cudaMemcpy(j->dst->scales, head + 4 * j->info.scale_row0, 4 * j->info.n_scales,
                                cudaMemcpyHostToDevice);
    return ce == cudaSuccess ? 0 : wcg_cuda_fail(err, ce, "cudaMemcpy (shard scales)");
}

/* A coded shard of 2 or more: reads and checks the head, puts the scales,
 * finds the rows of tiles it needs and makes them its request. */
static int plan_coded(const wc_file *f, sjob *j, const wc_entry *e, wc_err *err)
{
    uint8_t *head = malloc(e->tiles_off), *vhead = NULL;
    wc_rec rec = {0};
    int r = head ? wc_file_pread(f, e, e->offset, e->tiles_off, head, err)
                 : wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
    if (!r) r = wc_rec_parse(&rec, e, head, wc_file_label(f), err);
    if (!r) r = put_scales(j, e, head, err);
    if (r || !j->info.out_bytes) goto out;
    uint64_t tr0, tr1;
    if ((r = wc_shard_tile_rows(&rec, &j->rect, &tr0, &tr1))) {
        r = wc_fail(err, r, "%s: out of memory", j->what);
        goto out;
    }
    /* messages about its tiles name the shard and count tiles and rows from its first */
    char *name = malloc(2 * strlen(e->name) + 200);
    if (!name) {
        r = wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
        goto out;
    }
    sprintf(name, "%s', shard %u of %u along dim %d, as its rows of tiles from %llu: '%s", e->name, j->part.rank,
            j->part.n, j->part.dim, (unsigned long long)tr0, e->name);
    if ((r = wc_shard_rows_tensor(e, &rec, head, tr0, tr1, name, &j->ve, &vhead))) {
        free(name);
        r = wc_fail(err, r, "%s: out of memory", j->what);
        goto out;
    }
    j->R0 = tr0 * e->tile_rows;
    j->rq = (treq){.idx = j->i, .e = &j->ve, .head = vhead, .skip_hash = 1};
    j->in_pipeline = 1;
    /* its head, as rewritten, passes the checks a record's head passes */
    if ((r = wcg_prep_tensor(f, &j->rq, false, err))) goto out;
    const wc_shard_rect *rc = &j->rect;
    const bool direct = j->R0 == rc->r0 && j->R0 + j->ve.rows == rc->r1 && rc->c0 == 0 && rc->c1 == e->cols;
    j->tmp_bytes = direct ? 0 : j->ve.rows * e->cols;
    j->rq.dst = (wc_gpu_dst){.out = j->dst->out, .out_size = (size_t)(j->ve.rows * e->cols)};
out:
    wc_rec_free(&rec);
    free(head);
    return r;
}

/* A raw tensor's shard: read on the host (codec/shard.c) and copied. */
static int raw_shard(const wc_file *f, sjob *j, wc_err *err)
{
    if (!j->info.out_bytes) return 0;
    uint8_t *h = malloc(j->info.out_bytes);
    if (!h) return wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
    int r = wc_decode_tensor_shard(f, j->i, j->part.dim, j->part.rank, j->part.n, h, j->info.out_bytes, NULL, 0,
                                   err);
    cudaError_t ce = r ? cudaSuccess : cudaMemcpy(j->dst->out, h, j->info.out_bytes, cudaMemcpyHostToDevice);
    if (ce != cudaSuccess) r = wcg_cuda_fail(err, ce, "cudaMemcpy (raw shard)");
    free(h);
    return r;
}

/* The whole tensor (a shard of 1): a request like wc_gpu_decode_tensor's. */
static int plan_whole(const wc_file *f, sjob *j, const wc_entry *e, bool verify, wc_err *err)
{
    const wc_gpu_shard_dst *d = j->dst;
    j->rq = (treq){.idx = j->i, .e = e, .dst = {d->out, d->out_size, d->scales, d->n_scales}};
    j->in_pipeline = 1;
    if (e->coding == WC_CODING_RANS_I8) {
        if (!(j->rq.head = malloc(e->tiles_off))) return wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
        int r = wc_file_pread(f, e, e->offset, e->tiles_off, j->rq.head, err);
        if (r) return r;
    }
    return wcg_prep_tensor(f, &j->rq, verify, err);
}

/* Checks job k's request and its destination. */
static int check_job(const wc_file *f, sjob *j, wc_err *err)
{
    const wc_entry *e = wc_file_entry(f, j->i);
    const wc_gpu_shard_dst *d = j->dst;
    int r = wc_part_shard(e, d->dim, d->rank, d->n_shards, wc_file_label(f), &j->part, err);
    if (r) return r;
    wc_part_resolve(e, &j->part, &j->info, &j->rect);
    wc_part_what(j->what, sizeof j->what, wc_file_label(f), e, &j->part);
    if (d->out_size < j->info.out_bytes)
        return wc_fail(err, WC_EINVAL, "%s: output buffer of %zu bytes, needs %llu", j->what, d->out_size,
                       (unsigned long long)j->info.out_bytes);
    if (d->scales && d->n_scales < j->info.n_scales)
        return wc_fail(err, WC_EINVAL, "%s: room for %zu scales, needs %llu", j->what, d->n_scales,
                       (unsigned long long)j->info.n_scales);
    if (j->info.out_bytes && (r = wcg_check_device_ptr(d->out, "output", err))) return r;
    if (d->scales && j->info.n_scales && (r = wcg_check_device_ptr(d->scales, "scales", err))) return r;
    return 0;
}

/* Decodes jobs [a, b) through the pipeline: device buffers for those that
 * need one, then the shards copied out of them. */
static int run_batch(wc_gpu *g, const wc_file *f, sjob *jobs, size_t a, size_t b, wc_err *err)
{
    int r = 0;
    size_t m = 0;
    treq *rq = calloc(b - a + 1, sizeof *rq);
    if (!rq) return wc_fail(err, WC_ENOMEM, "out of memory");
    for (size_t k = a; k < b && !r; k++) {
        sjob *j = &jobs[k];
        if (!j->in_pipeline) continue;
        if (j->tmp_bytes) {
            cudaError_t ce = cudaMalloc((void **)&j->tmp, j->tmp_bytes);
            if (ce != cudaSuccess) {
                r = wcg_cuda_fail(err, ce, "cudaMalloc (rows of tiles of a shard)");
                if (err) snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " for %s", j->what);
                break;
            }
            j->rq.dst.out = j->tmp;
        }
        rq[m++] = j->rq; /* the batch owns its head and parse from here */
        j->rq = (treq){0};
        j->in_pipeline = 0;
    }
    if (!r && m) r = wcg_run_pipeline(g, f, rq, m, err);
    for (size_t k = a; k < b && !r; k++) {
        const sjob *j = &jobs[k];
        if (!j->tmp) continue;
        const wc_shard_rect *rc = &j->rect;
        const uint64_t w = rc->c1 - rc->c0, cols = j->ve.cols;
        cudaError_t ce = cudaMemcpy2DAsync(j->dst->out, w, j->tmp + (rc->r0 - j->R0) * cols + rc->c0, cols, w,
                                           rc->r1 - rc->r0, cudaMemcpyDeviceToDevice, g->compute);
        if (ce != cudaSuccess) r = wcg_cuda_fail(err, ce, "cudaMemcpy2DAsync (shard out of its rows of tiles)");
    }
    cudaError_t ce = cudaStreamSynchronize(g->compute);
    if (ce != cudaSuccess && !r) r = wcg_cuda_fail(err, ce, "cropping shards");
    for (size_t k = a; k < b; k++) {
        if (jobs[k].tmp) cudaFree(jobs[k].tmp);
        jobs[k].tmp = NULL;
    }
    wcg_free_reqs(rq, m);
    return r;
}

int wcg_decode_shards(wc_gpu *g, const wc_file *f, const wc_gpu_shard_dst *dst, const size_t *which, size_t n,
                      wc_err *err)
{
    if (g->backend == WC_BACKEND_CPU) return wcg_decode_shards_cpu(f, dst, which, n, err);
    cudaError_t ce = cudaSetDevice(g->device);
    if (ce != cudaSuccess) return wcg_cuda_fail(err, ce, "cudaSetDevice");
    sjob *jobs = calloc(n ? n : 1, sizeof *jobs);
    if (!jobs) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    for (size_t k = 0; k < n && !r; k++) {
        jobs[k].i = which[k], jobs[k].dst = &dst[k];
        r = check_job(f, &jobs[k], err);
    }
    /* batches of tensors whose shards' device buffers stay within the cap */
    size_t a = 0;
    uint64_t tmp = 0;
    for (size_t k = 0; k < n && !r; k++) {
        sjob *j = &jobs[k];
        const wc_entry *e = wc_file_entry(f, j->i);
        if (j->part.n == 1) r = plan_whole(f, j, e, g->o.verify_checksums, err);
        else if (e->coding == WC_CODING_RANS_I8) r = plan_coded(f, j, e, err);
        else r = raw_shard(f, j, err);
        if (!r && k > a && tmp + j->tmp_bytes > SHARD_TMP_CAP) {
            r = run_batch(g, f, jobs, a, k, err);
            a = k, tmp = 0;
        }
        tmp += j->tmp_bytes;
    }
    if (!r) r = run_batch(g, f, jobs, a, n, err);
    for (size_t k = 0; k < n; k++) {
        if (jobs[k].in_pipeline) wc_rec_free(&jobs[k].rq.rec), free(jobs[k].rq.head);
        free(jobs[k].ve.name); /* plan_coded's, or NULL */
    }
    free(jobs);
    return r;
}
