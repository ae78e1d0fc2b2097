/* Tensor-parallel shards on the GPU (docs/SHARDING.md, "On the GPU").
 *
 * The kernels decode and predict whole tensors: a coded shard is handed to
 * the pipeline as tensors of its own (codec/shard.c, wc_shard_plan_subs):
 * the rows of tiles from the first its needed tiles lie in to the last, or,
 * where those leave columns out and none reads a row above, a tensor per
 * row of tiles of the needed columns. Either way their tiles are contiguous
 * in the record, so the pipeline reads them as it reads any tensor's; their
 * heads are rewritten for them (wc_shard_sub_tensor). Values above and left
 * of them are zero to the kernels: only tiles the shard does not need read
 * them. A sub-tensor whose columns are the shard's and whose rows lie in it
 * decodes straight into the shard; any other into a device buffer, from
 * which its part of the shard is copied (cudaMemcpy2DAsync). Scales come
 * from the head, on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"
#include "shard.h"

/* Device buffers of one batch's shards at most (one shard's at least). */
#define SHARD_TMP_CAP (1024 * MiB)

/* One tensor the pipeline decodes for a coded shard. */
typedef struct sub {
    wc_entry ve;       /* wc_shard_sub_tensor's; its name owned */
    uint64_t R0, C0;   /* its first row and column in the tensor */
    uint64_t tmp_bytes;/* 0: decoded straight into the shard */
    uint8_t *tmp;      /* device */
    treq rq;           /* the pipeline's request, moved into the batch */
    int in_pipeline;
} sub;

typedef struct sjob {
    size_t i;
    const wc_gpu_shard_dst *dst;
    wc_part part;
    wc_shard_info info;
    wc_shard_rect rect;
    char what[WC_MAX_NAME + 256];
    treq rq;           /* a whole tensor's request (n_shards 1) */
    int in_pipeline;
    sub *subs;         /* a coded shard's */
    uint64_t n_subs, tmp_bytes;
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

/* Sub-tensor k of plan pl for job j: its entry, head and request. */
static int plan_sub(const wc_file *f, sjob *j, const wc_entry *e, const wc_rec *rec, const uint8_t *head,
                    const wc_shard_plan *pl, uint64_t k, wc_err *err)
{
    sub *sb = &j->subs[k];
    uint64_t tr0, tr1;
    wc_shard_plan_sub(pl, k, &tr0, &tr1);
    /* messages about its tiles name the shard and count tiles, rows and columns from its first */
    char *name = malloc(2 * strlen(e->name) + 200);
    if (!name) return wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
    sprintf(name, "%s', shard %u of %u along dim %d, as its tiles from row %llu, column %llu: '%s", e->name,
            j->part.rank, j->part.n, j->part.dim, (unsigned long long)tr0, (unsigned long long)pl->tc0, e->name);
    uint8_t *vhead;
    int r = wc_shard_sub_tensor(e, rec, head, tr0, tr1, pl->tc0, pl->tc1, name, &sb->ve, &vhead);
    if (r) {
        free(name);
        return r == WC_ENOMEM ? wc_fail(err, r, "%s: out of memory", j->what)
                              : wc_fail(err, r, "%s: internal error: its tiles are not contiguous", j->what);
    }
    sb->R0 = tr0 * e->tile_rows, sb->C0 = pl->tc0 * e->tile_cols;
    sb->rq = (treq){.idx = j->i, .e = &sb->ve, .head = vhead, .skip_hash = 1};
    sb->in_pipeline = 1;
    /* its head, as rewritten, passes the checks a record's head passes */
    if ((r = wcg_prep_tensor(f, &sb->rq, false, err))) return r;
    const wc_shard_rect *rc = &j->rect;
    const uint64_t w = rc->c1 - rc->c0;
    const bool direct = rc->r0 <= sb->R0 && sb->R0 + sb->ve.rows <= rc->r1 && sb->C0 == rc->c0 && sb->ve.cols == w;
    sb->tmp_bytes = direct ? 0 : sb->ve.rows * sb->ve.cols;
    uint8_t *at = direct ? (uint8_t *)j->dst->out + (sb->R0 - rc->r0) * w : NULL;
    sb->rq.dst = (wc_gpu_dst){.out = at, .out_size = (size_t)(sb->ve.rows * sb->ve.cols)};
    j->tmp_bytes += sb->tmp_bytes;
    return 0;
}

/* A coded shard of 2 or more: reads and checks the head, puts the scales,
 * plans the tensors that decode it. */
static int plan_coded(const wc_file *f, sjob *j, const wc_entry *e, wc_err *err)
{
    uint8_t *head = malloc(e->tiles_off);
    wc_rec rec = {0};
    wc_shard_plan pl;
    int r = head ? wc_file_pread(f, e, e->offset, e->tiles_off, head, err)
                 : wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
    if (!r) r = wc_rec_parse(&rec, e, head, wc_file_label(f), err);
    if (!r) r = put_scales(j, e, head, err);
    if (r || !j->info.out_bytes) goto out;
    if (wc_shard_plan_subs(&rec, &j->rect, &pl) || !(j->subs = calloc(pl.n_subs, sizeof *j->subs))) {
        r = wc_fail(err, WC_ENOMEM, "%s: out of memory", j->what);
        goto out;
    }
    j->n_subs = pl.n_subs;
    for (uint64_t k = 0; k < pl.n_subs && !r; k++) r = plan_sub(f, j, e, &rec, head, &pl, k, err);
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

/* Moves request q into the batch rq (which owns its head and parse from
 * then on). */
static void take(treq *rq, size_t *m, treq *q, int *in_pipeline)
{
    rq[(*m)++] = *q;
    *q = (treq){0};
    *in_pipeline = 0;
}

/* Sub-tensor sb's part of the shard: the rows and columns both cover,
 * out of its device buffer. */
static int crop(wc_gpu *g, const sjob *j, const sub *sb, wc_err *err)
{
    const wc_shard_rect *rc = &j->rect;
    const uint64_t w = rc->c1 - rc->c0, R1 = sb->R0 + sb->ve.rows, C1 = sb->C0 + sb->ve.cols;
    const uint64_t ra = sb->R0 > rc->r0 ? sb->R0 : rc->r0, rb = R1 < rc->r1 ? R1 : rc->r1;
    const uint64_t ca = sb->C0 > rc->c0 ? sb->C0 : rc->c0, cb = C1 < rc->c1 ? C1 : rc->c1;
    if (ra >= rb || ca >= cb) return 0;
    cudaError_t ce = cudaMemcpy2DAsync((uint8_t *)j->dst->out + (ra - rc->r0) * w + (ca - rc->c0), w,
                                       sb->tmp + (ra - sb->R0) * sb->ve.cols + (ca - sb->C0), sb->ve.cols, cb - ca,
                                       rb - ra, cudaMemcpyDeviceToDevice, g->compute);
    return ce == cudaSuccess ? 0 : wcg_cuda_fail(err, ce, "cudaMemcpy2DAsync (a shard out of its tiles)");
}

/* Decodes jobs [a, b) through the pipeline: device buffers for the
 * sub-tensors that need one, then the shards copied out of them. */
static int run_batch(wc_gpu *g, const wc_file *f, sjob *jobs, size_t a, size_t b, wc_err *err)
{
    int r = 0;
    size_t m = 0, cap = 1;
    for (size_t k = a; k < b; k++) cap += jobs[k].n_subs + 1;
    treq *rq = calloc(cap, sizeof *rq);
    if (!rq) return wc_fail(err, WC_ENOMEM, "out of memory");
    for (size_t k = a; k < b && !r; k++) {
        sjob *j = &jobs[k];
        if (j->in_pipeline) take(rq, &m, &j->rq, &j->in_pipeline);
        for (uint64_t s = 0; s < j->n_subs && !r; s++) {
            sub *sb = &j->subs[s];
            if (!sb->in_pipeline) continue;
            if (sb->tmp_bytes) {
                cudaError_t ce = cudaMalloc((void **)&sb->tmp, sb->tmp_bytes);
                if (ce != cudaSuccess) {
                    r = wcg_cuda_fail(err, ce, "cudaMalloc (tiles of a shard)");
                    if (err) snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " for %s", j->what);
                    break;
                }
                sb->rq.dst.out = sb->tmp;
            }
            take(rq, &m, &sb->rq, &sb->in_pipeline);
        }
    }
    if (!r && m) r = wcg_run_pipeline(g, f, rq, m, err);
    for (size_t k = a; k < b && !r; k++)
        for (uint64_t s = 0; s < jobs[k].n_subs && !r; s++)
            if (jobs[k].subs[s].tmp) r = crop(g, &jobs[k], &jobs[k].subs[s], err);
    cudaError_t ce = cudaStreamSynchronize(g->compute);
    if (ce != cudaSuccess && !r) r = wcg_cuda_fail(err, ce, "cropping shards");
    for (size_t k = a; k < b; k++)
        for (uint64_t s = 0; s < jobs[k].n_subs; s++) {
            if (jobs[k].subs[s].tmp) cudaFree(jobs[k].subs[s].tmp);
            jobs[k].subs[s].tmp = NULL;
        }
    wcg_free_reqs(rq, m);
    return r;
}

static void free_job(sjob *j)
{
    if (j->in_pipeline) wc_rec_free(&j->rq.rec), free(j->rq.head);
    for (uint64_t s = 0; s < j->n_subs; s++) {
        if (j->subs[s].in_pipeline) wc_rec_free(&j->subs[s].rq.rec), free(j->subs[s].rq.head);
        free(j->subs[s].ve.name); /* plan_sub's, or NULL */
    }
    free(j->subs);
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
    for (size_t k = 0; k < n; k++) free_job(&jobs[k]);
    free(jobs);
    return r;
}
