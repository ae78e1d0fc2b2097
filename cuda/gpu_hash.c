/* Record hashes on the device (issue 21, part 2): the pipeline's host side
 * of cuda/hash.cu. Without it the io threads hash every record on the CPU,
 * which bounds a checksummed load (bench/RESULTS.md#load-trace).
 *
 * A coded record decoded whole is hashed on the device when its first
 * piece finds room in its slot's job list: the host adds the record's head
 * (read at prep) to a state at that piece and uploads it; each of the
 * record's pieces is a job of its batch, whose tile streams are in the
 * slot's device staging; after the last one the state comes back, and when
 * the slot retires the host adds what follows the last tile stream (read
 * from the file; usually nothing) and compares. Every other record (raw
 * tensors, shards, records beyond the job list) keeps the io threads' CPU
 * hash. The kernels run on a stream of their own, beside the decode; a
 * slot is reused only once both are done.
 *
 * A decode error while a device-hashed record is unfinished: its hash is
 * then taken on the CPU (wcg_hash_prefer), so that a damaged record is
 * reported as such, as the CPU decoder reports it. */
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"
#include "hash_ref.h"

int wcg_hash_alloc(wc_gpu *g, wc_err *err)
{
    int r = 0;
    int ke = wcg_hash_setup();
    if (ke) return wcg_cuda_fail(err, (cudaError_t)ke, "setting up the hash kernels");
    CK(cudaStreamCreateWithFlags(&g->hash, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int s = 0; s < g->n_slots; s++) {
        slot *sl = &g->slots[s];
        CK(cudaEventCreateWithFlags(&sl->hashed, cudaEventDisableTiming), "cudaEventCreate");
        CK(cudaMalloc((void **)&sl->d_sums, (g->data_cap / WCG_XXH3_BLOCK + 1) * 8 * sizeof(uint64_t)),
           "cudaMalloc (hash sums)");
        CK(cudaHostAlloc((void **)&sl->h_jobs, HASH_JOBS * sizeof *sl->h_jobs, cudaHostAllocDefault),
           "cudaHostAlloc (hash jobs)");
        CK(cudaMalloc((void **)&sl->d_jobs, HASH_JOBS * sizeof *sl->d_jobs), "cudaMalloc (hash jobs)");
    }
fail:
    return r;
}

void wcg_hash_free(wc_gpu *g)
{
    for (int s = 0; s < MAX_SLOTS; s++) {
        slot *sl = &g->slots[s];
        if (sl->hashed) cudaEventDestroy(sl->hashed);
        if (sl->d_sums) cudaFree(sl->d_sums);
        if (sl->h_jobs) cudaFreeHost(sl->h_jobs);
        if (sl->d_jobs) cudaFree(sl->d_jobs);
        sl->hashed = NULL, sl->d_sums = NULL, sl->h_jobs = NULL, sl->d_jobs = NULL;
    }
    if (g->hash) {
        cudaStreamSynchronize(g->hash);
        cudaStreamDestroy(g->hash);
        g->hash = NULL;
    }
    if (g->h_states) cudaFreeHost(g->h_states);
    if (g->d_states) cudaFree(g->d_states);
    g->h_states = g->d_states = NULL;
    g->states_cap = 0;
}

int wcg_hash_begin(wc_gpu *g, size_t n_rq, wc_err *err)
{
    int r = 0;
    if (!g->o.verify_checksums || !g->hash || n_rq <= g->states_cap) return 0;
    if (g->h_states) cudaFreeHost(g->h_states);
    if (g->d_states) cudaFree(g->d_states);
    g->h_states = g->d_states = NULL;
    g->states_cap = 0;
    CK(cudaHostAlloc((void **)&g->h_states, n_rq * sizeof *g->h_states, cudaHostAllocDefault),
       "cudaHostAlloc (hash states)");
    CK(cudaMalloc((void **)&g->d_states, n_rq * sizeof *g->d_states), "cudaMalloc (hash states)");
    g->states_cap = n_rq;
fail:
    return r;
}

/* Whether piece p begins a record the device can hash: coded, whole, long
 * enough for XXH3's long path, and two job entries left (one for a later
 * record's continuation, which always needs one). */
static bool takes(const wc_gpu *g, const slot *sl, const piece *p, const treq *t)
{
    return g->o.verify_checksums && g->hash && t->coded && !t->skip_hash && p->first && p->b0 == 0 &&
           t->e->size >= WCG_XXH3_MIN_LONG && sl->n_hjobs + 2 <= HASH_JOBS;
}

int wcg_hash_plan(wc_gpu *g, slot *sl, treq *rq, const piece *ps, long np, wc_err *err)
{
    sl->n_hjobs = sl->n_init = sl->n_fin = 0;
    sl->hsums = 0;
    for (long i = 0; i < np; i++) {
        const piece *p = &ps[i];
        treq *t = &rq[p->t];
        if (p->first) t->gpu_hash = takes(g, sl, p, t);
        if (!t->gpu_hash) continue;
        if (sl->n_hjobs == HASH_JOBS) {
            /* never, by takes()'s reserve; were it to happen, the record is
             * hashed again from the file on the CPU */
            t->gpu_hash = 0;
            io_task h = {.kind = 1, .off = t->e->offset, .len = t->e->size, .hash = t->e->hash, .tensor = p->t};
            if (wcg_io_queue(&g->io, &h)) return wc_fail(err, WC_ENOMEM, "out of memory");
            continue;
        }
        wcg_xxh3_stream *st = &g->h_states[p->t];
        if (p->first) {
            wcg_xxh3_stream_init(st, t->e->size);
            wcg_xxh3_stream_add(st, t->head, (size_t)t->e->tiles_off);
            sl->init[sl->n_init++] = p->t;
        }
        /* the host's copy of `at` is the device's once this job ran: both
         * follow the same split */
        const uint64_t at = t->e->tiles_off + p->b0, n = p->b1 - p->b0;
        const wcg_xxh3_split x = wcg_xxh3_split_of(at, n, t->e->size);
        sl->h_jobs[sl->n_hjobs++] = (wcg_hash_job){.src = sl->d_data + p->data_off, .n = n, .head = x.head,
                                                   .blocks = x.blocks, .sums = sl->hsums, .state = (uint32_t)p->t};
        sl->hsums += x.blocks;
        if (p->last) sl->fin[sl->n_fin++] = p->t;
    }
    return 0;
}

int wcg_hash_issue(wc_gpu *g, slot *sl, wc_err *err)
{
    int r = 0;
    sl->hash_pending = 0;
    if (!sl->n_hjobs) return 0;
    /* on the copy stream, after the batch's tile streams: the states begun
     * here, and the jobs */
    for (uint32_t k = 0; k < sl->n_init; k++)
        CK(cudaMemcpyAsync(g->d_states + sl->init[k], g->h_states + sl->init[k], sizeof *g->h_states,
                           cudaMemcpyHostToDevice, sl->copy), "cudaMemcpyAsync (hash state)");
    CK(cudaMemcpyAsync(sl->d_jobs, sl->h_jobs, sl->n_hjobs * sizeof *sl->h_jobs, cudaMemcpyHostToDevice, sl->copy),
       "cudaMemcpyAsync (hash jobs)");
    CK(cudaEventRecord(sl->copied, sl->copy), "cudaEventRecord");
    CK(cudaStreamWaitEvent(g->hash, sl->copied, 0), "cudaStreamWaitEvent");
    int ke = wcg_hash_launch(sl->d_jobs, sl->n_hjobs, sl->hsums, sl->d_sums, g->d_states, g->hash);
    if (ke) return wcg_cuda_fail(err, (cudaError_t)ke, "hash kernel launch");
    for (uint32_t k = 0; k < sl->n_fin; k++)
        CK(cudaMemcpyAsync(g->h_states + sl->fin[k], g->d_states + sl->fin[k], sizeof *g->h_states,
                           cudaMemcpyDeviceToHost, g->hash), "cudaMemcpyAsync (hash state)");
    CK(cudaEventRecord(sl->hashed, g->hash), "cudaEventRecord");
    sl->hash_pending = 1;
fail:
    return r;
}

/* The hash of record t, whose state came back: what follows its last tile
 * stream added (from the file), then compared. */
static int finish_one(wc_gpu *g, const wc_file *f, const treq *rq, size_t t, wc_err *err)
{
    wcg_xxh3_stream *st = &g->h_states[t];
    const wc_entry *e = rq[t].e;
    int r = 0;
    uint8_t buf[4096];
    for (uint64_t at = st->at; at < e->size && !r;) {
        const size_t n = e->size - at < sizeof buf ? (size_t)(e->size - at) : sizeof buf;
        if (!(r = wc_file_pread(f, e, e->offset + at, n, buf, err))) wcg_xxh3_stream_add(st, buf, n), at += n;
    }
    if (r) return r;
    if (wc_hash_value_differs(e->hash, wcg_xxh3_stream_end(st))) return wc_record_hash_fail(f, e, err);
    return 0;
}

int wcg_hash_finish(wc_gpu *g, slot *sl, const wc_file *f, treq *rq, wc_err *err)
{
    if (sl->hash_pending) {
        sl->hash_pending = 0;
        cudaError_t ce = cudaEventSynchronize(sl->hashed);
        if (ce != cudaSuccess) return wcg_cuda_fail(err, ce, "hashing a batch");
    }
    int r = 0;
    for (uint32_t k = 0; k < sl->n_fin && !r; k++) {
        r = finish_one(g, f, rq, sl->fin[k], err);
        rq[sl->fin[k]].gpu_hash = 0; /* done: nothing left for wcg_hash_prefer */
    }
    sl->n_fin = 0;
    return r;
}

int wcg_hash_prefer(wc_gpu *g, const wc_file *f, treq *rq, size_t n_rq, int r, wc_err *err)
{
    if (r == WC_ECHECKSUM || r == WC_ENOMEM) return r;
    for (size_t t = 0; t < n_rq; t++) {
        if (!rq[t].gpu_hash) continue;
        rq[t].gpu_hash = 0;
        io_task h = {.kind = 1, .off = rq[t].e->offset, .len = rq[t].e->size, .hash = rq[t].e->hash, .tensor = t};
        wcg_io_run(&g->io, &h, 1);
        if (h.result == WC_ECHECKSUM) return wcg_io_fail(f, rq, &h, err);
    }
    return r;
}
