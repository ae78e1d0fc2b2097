/* The file-to-GPU pipeline: batches through the ring of pinned slots.
 *
 * Per batch k (ring slot k % slots):
 *   wait until the slot's last batch has finished on the device;
 *   plan which tensors (or tile ranges of a tensor) fit the slot;
 *   build the kernels' descriptors (tables expanded, tile list, row maps,
 *   scales) in the slot's pinned descriptor area;
 *   hand the io threads its reads (pread of the tile streams, through the
 *   wc_file's own descriptor, into the slot's pinned data area);
 * then, for batch k-1, wait for its reads and issue it:
 *   copy stream: descriptors + data H2D (raw tensors straight to the caller);
 *   compute stream waits for the copy, decodes, predicts finished tensors,
 *   copies the per-job error words back, records the slot's `done` event.
 * So the host prepares batch k while the device copies and decodes batch
 * k-1, and batch k's reads start before batch k-1's last reads end: threads
 * that finish early take the next batch's reads instead of idling (a batch
 * is a few 4 MiB reads per thread; issue 21 measured the load at 1.4-1.6x
 * the floor of pread and copy bandwidth with a barrier per batch). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"

/* What a batch needs from its planning to its issue. */
typedef struct stage {
    slot *sl;
    piece *ps;
    size_t ps_cap;
    long np;
    io_task *tasks;
    size_t nt, task_cap;
    uint64_t *src_base;
    size_t src_cap;
    layout L;
    uint64_t data_used;
    uint64_t ticket;
    bool reading;            /* its reads submitted and not yet waited for */
    wcg_trace_batch tb;
} stage;

static int retire_slot(wc_gpu *g, slot *sl, const wc_file *f, treq *rq, size_t n_rq, wc_err *err)
{
    if (!sl->in_use) return 0;
    sl->in_use = 0;
    cudaError_t e = cudaEventSynchronize(sl->done);
    if (e != cudaSuccess) return wcg_cuda_fail(err, e, "decoding a batch");
    wcg_trace_retired(&g->trace, (int)(sl - g->slots));
    /* the hashes of records that ended here first: a damaged record is
     * reported as such rather than by what its decode found */
    int r = wcg_hash_finish(g, sl, f, rq, err);
    if (!r) r = wcg_check_errs(f, rq, (const unsigned long long *)(sl->h_desc + sl->errs_off), sl->n_jobs,
                               sl->job_tensor, err);
    return r && r != WC_ECHECKSUM ? wcg_hash_prefer(g, f, rq, n_rq, r, err) : r;
}

static int add_task(stage *st, const io_task *t, wc_err *err)
{
    if (st->nt == st->task_cap) {
        size_t ncap = st->task_cap ? 2 * st->task_cap : 256;
        io_task *n = realloc(st->tasks, ncap * sizeof *n);
        if (!n) return wc_fail(err, WC_ENOMEM, "out of memory");
        st->tasks = n, st->task_cap = ncap;
    }
    st->tasks[st->nt++] = *t;
    return 0;
}

/* A record read whole in one batch, from its first stream byte: its hash is
 * taken from the ring. */
static bool ring_hashed(const piece *p, const treq *t)
{
    return p->first && p->last && (!t->coded || p->b0 == 0) && !t->gpu_hash;
}

/* Each record's checksum in the background: it only has to pass before the
 * call returns (a tensor whose record fails is then reported, whatever was
 * decoded). A record read whole in one batch is hashed from the ring once
 * its reads are done (hash_from_ring); one spread over several batches is
 * read again to be hashed, queued with its first piece. */
static int queue_hashes(wc_gpu *g, const treq *rq, const stage *st, wc_err *err)
{
    for (long i = 0; i < st->np && g->o.verify_checksums; i++) {
        const treq *t = &rq[st->ps[i].t];
        if (!st->ps[i].first || ring_hashed(&st->ps[i], t) || t->skip_hash || t->gpu_hash) continue;
        const wc_entry *e = rq[st->ps[i].t].e;
        io_task h = {.kind = 1, .off = e->offset, .len = e->size, .hash = e->hash, .tensor = st->ps[i].t};
        if (wcg_io_queue(&g->io, &h)) return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    return 0;
}

/* Plans batch st->tb.batch into its slot, builds its descriptors and
 * submits its reads. Returns the number of pieces (0: nothing left). */
static long prepare(wc_gpu *g, const wc_file *f, treq *rq, size_t n_rq, cursor *c, stage *st, wc_err *err)
{
    wcg_trace *tr = &g->trace;
    int r;
    if ((r = retire_slot(g, st->sl, f, rq, n_rq, err))) return r;
    wcg_io_wait_pending(&g->io, &st->sl->hashing);
    st->tb.t_slot = wcg_trace_now(tr);
    st->np = wcg_plan_batch(rq, n_rq, c, g->data_cap, g->desc_cap, &st->ps, &st->ps_cap, f, err);
    if (st->np <= 0) return st->np;
    if ((size_t)st->np > st->src_cap) {
        uint64_t *n = realloc(st->src_base, (size_t)st->np * sizeof *n);
        if (!n) return wc_fail(err, WC_ENOMEM, "out of memory");
        st->src_base = n, st->src_cap = (size_t)st->np;
    }
    if ((r = wcg_hash_plan(g, st->sl, rq, st->ps, st->np, err))) return r;
    if ((r = queue_hashes(g, rq, st, err))) return r;
    st->nt = 0;
    st->data_used = 0;
    for (long i = 0; i < st->np; i++) {
        const piece *p = &st->ps[i];
        const treq *t = &rq[p->t];
        uint64_t foff = t->coded ? t->e->offset + t->e->tiles_off + p->b0 : t->e->offset + p->b0;
        uint64_t len = p->b1 - p->b0;
        st->src_base[i] = p->data_off - p->b0;
        if (p->data_off + len > st->data_used) st->data_used = p->data_off + len;
        for (uint64_t a = 0; a < len; a += IO_CHUNK) {
            uint64_t l = len - a < IO_CHUNK ? len - a : IO_CHUNK;
            io_task rd = {.kind = 0, .off = foff + a, .len = l, .dst = st->sl->h_data + p->data_off + a, .tensor = p->t};
            if ((r = add_task(st, &rd, err))) return r;
        }
    }
    st->tb.t_planned = wcg_trace_now(tr);
    if ((r = wcg_build_desc(g, rq, st->ps, (size_t)st->np, st->src_base, st->sl->h_desc, g->desc_cap, &st->L,
                            &st->sl->job_tensor, &st->sl->job_cap, err)))
        return r;
    st->tb.t_desc = wcg_trace_now(tr);
    st->ticket = wcg_io_submit(&g->io, st->tasks, st->nt);
    st->reading = true;
    return st->np;
}

/* The hashes of the records the batch read whole, from the slot's pinned
 * data: the slot is not rewritten before they are done (prepare). */
static int hash_from_ring(wc_gpu *g, const treq *rq, stage *st, wc_err *err)
{
    for (long i = 0; i < st->np && g->o.verify_checksums; i++) {
        const piece *p = &st->ps[i];
        const treq *t = &rq[p->t];
        if (!ring_hashed(p, t) || t->skip_hash) continue;
        const wc_entry *e = t->e;
        io_task h = {.kind = 2, .hash = e->hash, .tensor = p->t, .src = st->sl->h_data + p->data_off,
                     .src_len = p->b1 - p->b0, .pending = &st->sl->hashing};
        if (t->coded) {
            /* the head was read at prep; what follows the last tile stream, if anything, from the file */
            h.head = t->head;
            h.head_len = e->tiles_off;
            h.off = e->offset + e->tiles_off + p->b1;
            h.len = e->size - e->tiles_off - p->b1;
        }
        if (wcg_io_queue(&g->io, &h)) return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    return 0;
}

/* Waits for the batch's reads, then queues its copies and kernels. */
static int issue(wc_gpu *g, const wc_file *f, treq *rq, stage *st, wc_err *err)
{
    int r = 0;
    wcg_trace *tr = &g->trace;
    slot *sl = st->sl;
    const layout *L = &st->L;
    wcg_io_wait(&g->io, st->ticket);
    st->reading = false;
    for (size_t k = 0; k < st->nt; k++)
        if (st->tasks[k].result) return wcg_io_fail(f, rq, &st->tasks[k], err);
    if ((r = hash_from_ring(g, rq, st, err))) return r;
    io_task bad;
    if (wcg_io_bg_failed(&g->io, false, &bad)) return wcg_io_fail(f, rq, &bad, err);
    st->tb.t_read = wcg_trace_now(tr);
    st->tb.bytes = st->data_used;
    wcg_trace_copy_begin(tr, (int)(sl - g->slots), sl->copy);
    if (L->end) CK(cudaMemcpyAsync(sl->d_desc, sl->h_desc, L->end, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (descriptors)");
    for (long i = 0; i < st->np; i++) {
        const piece *p = &st->ps[i];
        const treq *t = &rq[p->t];
        if (t->coded) continue;
        CK(cudaMemcpyAsync((uint8_t *)t->dst.out + p->b0, sl->h_data + p->data_off, p->b1 - p->b0,
                           cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (raw tensor)");
    }
    if (L->n_jobs && st->data_used)
        CK(cudaMemcpyAsync(sl->d_data, sl->h_data, st->data_used, cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (tile streams)");
    CK(cudaEventRecord(sl->copied, sl->copy), "cudaEventRecord");
    CK(cudaStreamWaitEvent(g->compute, sl->copied, 0), "cudaStreamWaitEvent");
    if (L->n_jobs) {
        wc_gpu_launch l = wcg_make_launch(L, sl->d_desc, sl->d_data);
        int ce = wc_gpu_launch_decode(&l, g->compute);
        if (ce) return wcg_cuda_fail(err, (cudaError_t)ce, "decode kernel launch");
        if ((r = wcg_launch_preds(g, L, sl->d_desc, err))) return r;
        CK(cudaMemcpyAsync(sl->h_desc + L->errs, sl->d_desc + L->errs, 8ull * L->n_jobs, cudaMemcpyDeviceToHost,
                           g->compute), "cudaMemcpyAsync (error words)");
    }
    CK(cudaEventRecord(sl->done, g->compute), "cudaEventRecord");
    if ((r = wcg_hash_issue(g, sl, err))) return r;
    st->tb.t_issued = wcg_trace_now(tr);
    wcg_trace_issued(tr, (int)(sl - g->slots), sl->copy, g->compute, &st->tb);
    sl->in_use = 1;
    sl->errs_off = L->errs;
    sl->n_jobs = L->n_jobs;
fail:
    return r;
}

int wcg_run_pipeline(wc_gpu *g, const wc_file *f, treq *rq, size_t n_rq, wc_err *err)
{
    int r = 0;
    stage st[2];
    memset(st, 0, sizeof st);
    stage *prev = NULL;
    cursor c = {0, 0};
    io_pool *io = &g->io;
    wcg_trace *tr = &g->trace;
    if ((r = wcg_hash_begin(g, n_rq, err))) return r;
    wcg_io_attach(io, f);
    wcg_trace_begin(tr, g->compute);
    for (uint64_t batch = 0; c.t < n_rq; batch++) {
        stage *cur = &st[batch & 1];
        cur->sl = &g->slots[batch % (uint64_t)g->n_slots];
        cur->tb = (wcg_trace_batch){.batch = batch, .t_begin = wcg_trace_now(tr)};
        long np = prepare(g, f, rq, n_rq, &c, cur, err);
        if (np < 0) {
            r = (int)np;
            break;
        }
        if (prev && (r = issue(g, f, rq, prev, err))) break;
        prev = np ? cur : NULL;
        if (!np) break;
    }
    if (!r && prev) r = issue(g, f, rq, prev, err);
    /* Reads submitted and not waited for still write into the ring: waited
     * for, in the order they were submitted. */
    int first = st[0].reading && st[1].reading && st[1].ticket < st[0].ticket;
    for (int k = 0; k < 2; k++) {
        stage *w = &st[first ^ k];
        if (w->reading) wcg_io_wait(io, w->ticket), w->reading = false;
    }
    for (int s = 0; s < g->n_slots; s++) {
        int r2 = retire_slot(g, &g->slots[s], f, rq, n_rq, err);
        if (r2 && !r) r = r2;
    }
    /* a record whose checksum fails is the cause of whatever its decode
     * found: that is reported first */
    double t_hash = wcg_trace_now(tr);
    if (r != WC_ECHECKSUM && r != WC_ENOMEM) {
        io_task bad;
        if (wcg_io_bg_failed(io, true, &bad) && (!r || bad.result == WC_ECHECKSUM)) r = wcg_io_fail(f, rq, &bad, err);
    }
    if (r && r != WC_ECHECKSUM) r = wcg_hash_prefer(g, f, rq, n_rq, r, err); /* records left on the device */
    t_hash = wcg_trace_now(tr) - t_hash;
    /* leave nothing in flight that uses the ring */
    for (int s = 0; s < g->n_slots; s++) {
        cudaStreamSynchronize(g->slots[s].copy);
        g->slots[s].in_use = 0;
        g->slots[s].hash_pending = 0;
    }
    cudaStreamSynchronize(g->compute);
    if (g->hash) cudaStreamSynchronize(g->hash);
    for (size_t t = 0; t < n_rq; t++) rq[t].gpu_hash = 0;
    wcg_io_bg_clear(io); /* the hashes read through io->fd */
    io->fd = -1;
    wcg_trace_end(tr, t_hash, r);
    for (int k = 0; k < 2; k++) {
        free(st[k].ps);
        free(st[k].tasks);
        free(st[k].src_base);
    }
    return r;
}
