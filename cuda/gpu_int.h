/* What the files of the GPU decoder's host side share (not installed):
 *   gpu_api.c       the API calls shared with the build without CUDA (gpu_api.h)
 *   gpu_decoder.c   device selection and CPU fallback, the pipeline
 *   gpu_io.c        the pread threads and the record checksums
 *   gpu_desc.c      per-tensor checks, batches and the kernels' descriptors
 *   gpu_resident.c  the whole file on the device
 * Internal names carry the wcg_ prefix. */
#ifndef WC_CUDA_GPU_INT_H
#define WC_CUDA_GPU_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "gpu_api.h"
#include "gpu_bench.h"
#include "kernels.cuh"
#include "rans.h"
#include "reader.h"
#include "rec_reader.h"
#include "gpu_trace.h"
#include "hash_ref.h"

#define MiB (1024ull * 1024)
#define RING_MAX (512 * MiB)
#define IO_CHUNK (4 * MiB)
#define MAX_SLOTS 16
#define HASH_JOBS 1024            /* device-hashed pieces in a batch */

static inline uint64_t a16(uint64_t n) { return (n + 15) & ~(uint64_t)15; }

/* Reports a failed CUDA call into err and clears the runtime's error state;
 * WC_ENOMEM for an allocation, WC_ECUDA otherwise. */
int wcg_cuda_fail(wc_err *err, cudaError_t e, const char *what);

/* For functions with an `int r`, a `wc_err *err` and a `fail:` label. */
#define CK(call, what)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            r = wcg_cuda_fail(err, e_, what);                                                          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* ---- io thread pool (gpu_io.c) ---- */

typedef struct io_task {
    int kind;                /* 0: read into dst; 1: check the record hash, reading it;
                              * 2: check it from memory: head, then src, then the file's [off, off + len) */
    uint64_t off, len;       /* file range */
    uint8_t *dst;
    const uint8_t *head, *src; /* kind 2 */
    uint64_t head_len, src_len;
    unsigned *pending;       /* kind 2: decremented when done (the ring slot it reads) */
    uint64_t hash;
    size_t tensor;           /* the request it reads for (messages) */
    int result;              /* 0, or a WC_E* code: WC_ECHECKSUM, WC_EIO, WC_ENOMEM */
    int sys_errno;           /* errno of a failed read (0: the file ended early) */
} io_task;

/* Background tasks, claimed in order; each result is written back. */
typedef struct io_queue {
    io_task *v;
    size_t n, cap, next, done;
} io_queue;

/* A batch's reads: claimed in order, oldest job first. */
typedef struct io_job {
    io_task *tasks;
    size_t n, next, done;
} io_job;

#define IO_JOBS 2

/* The threads that run the tasks of one or more pools: a decoder's own,
 * or, shared, every GPU's decoder of a daemon (gpu_io.c). */
typedef struct io_threads io_threads;

/* One decoder's tasks, run on its io_threads (and by its caller's thread
 * while it waits). Every field is under th's mutex. */
typedef struct io_pool {
    io_threads *th;
    io_job jobs[IO_JOBS];    /* submitted, not yet waited for: seq waited .. submitted-1 */
    uint64_t submitted, waited;
    /* Background tasks (record hashes), results kept: hashes from memory
     * (kind 2) are taken before batch reads, since a ring slot waits for
     * them; hashes that re-read the file (kind 1) only when no read is left. */
    io_queue urgent, bg;
    int fd;                  /* the wc_file's descriptor (wc_file_fd), borrowed for a call */
} io_pool;

/* Hands the n tasks to the pool's threads and returns at once: a ticket
 * for wcg_io_wait. At most IO_JOBS batches are submitted and not waited
 * for; the threads take the older one's tasks first, so the next batch's
 * reads fill the time the last reads of this one leave threads idle.
 * Batch tasks go before background ones. */
uint64_t wcg_io_submit(io_pool *p, io_task *tasks, size_t n);
/* Helps with and waits for the tasks of ticket (each task's result in it). */
void wcg_io_wait(io_pool *p, uint64_t ticket);
/* Both: returns when the n tasks are done. */
void wcg_io_run(io_pool *p, io_task *tasks, size_t n);
/* Queues a background task (a record hash): the threads take it when no
 * batch task is left, so hashing spreads over the whole pipeline instead of
 * holding up the batch that reads the record's first bytes. WC_ENOMEM. */
int wcg_io_queue(io_pool *p, const io_task *t);
/* Whether a finished background task failed (the first such in queue
 * order is copied to *failed); with wait, the caller first helps with and
 * waits for all of them. */
bool wcg_io_bg_failed(io_pool *p, bool wait, io_task *failed);
/* Helps with background tasks until *pending (counted by tasks queued with
 * it) is 0: a ring slot whose bytes hashes still read is not rewritten. */
void wcg_io_wait_pending(io_pool *p, const unsigned *pending);
/* Waits for the background tasks and forgets them. */
void wcg_io_bg_clear(io_pool *p);
/* Points the pool's reads at the file's own descriptor (wc_file_fd) for a
 * call: never at its label, which is only a name for messages. */
void wcg_io_attach(io_pool *p, const wc_file *f);
/* Starts n threads of p's own (0: the caller does all the work). */
int wcg_io_start(io_pool *p, int n);
/* p's tasks on the threads of `with` (started, or sharing in turn): one
 * pool of threads for several decoders. WC_ENOMEM. */
int wcg_io_share(io_pool *p, io_pool *with);
/* Waits for p's tasks and leaves its threads; the last pool to leave
 * stops them. */
void wcg_io_stop(io_pool *p);

/* The message of a failed io task (a read or a record hash) of request
 * rq[t->tensor]: the CPU decoder's for the same fault (gpu_io.c). */
struct treq;
int wcg_io_fail(const wc_file *f, const struct treq *rq, const io_task *t, wc_err *err);

/* ---- the decoder (gpu_decoder.c) ---- */

typedef struct slot {
    uint8_t *h_data, *h_desc;     /* pinned */
    uint8_t *d_data, *d_desc;
    cudaStream_t copy;
    cudaEvent_t copied, done;
    int in_use;                   /* a batch was queued and not yet checked */
    /* what the batch's error words refer to */
    uint64_t errs_off;
    uint32_t n_jobs;
    size_t *job_tensor;
    size_t job_cap;
    unsigned hashing;             /* record hashes that still read its pinned data */
    /* record hashes on the device (gpu_hash.c) */
    uint64_t *d_sums;             /* the batch's block sums */
    struct wcg_hash_job *h_jobs, *d_jobs; /* pinned, device: HASH_JOBS */
    uint32_t n_hjobs;
    uint64_t hsums;               /* block sums of the batch's jobs */
    size_t init[HASH_JOBS], fin[HASH_JOBS]; /* records whose state begins, ends, in the batch */
    uint32_t n_init, n_fin;
    cudaEvent_t hashed;
    int hash_pending;             /* the hash kernels of its batch were queued and not yet waited for */
} slot;

struct wc_gpu {
    wc_gpu_opts o;
    wc_backend backend;
    int device;
    char reason[512];
    int max_smem;                 /* shared memory: a block's most (opt-in), an SM's */
    int smem_sm;
    cudaStream_t compute;
    int n_slots;
    uint64_t data_cap, desc_cap;
    slot slots[MAX_SLOTS];
    io_pool io;
    wcg_trace trace;              /* WCODEC_GPU_TRACE: the pipeline's timeline */
    cudaStream_t hash;            /* the record-hash kernels (gpu_hash.c) */
    struct wcg_xxh3_stream *h_states, *d_states; /* one per request of a call: pinned, device */
    size_t states_cap;
};

/* ---- the pipeline (gpu_pipeline.c) ---- */
struct treq;
/* Decodes the n_rq requests through the ring; returns with nothing in
 * flight. */
int wcg_run_pipeline(wc_gpu *g, const wc_file *f, struct treq *rq, size_t n_rq, wc_err *err);

/* ---- record hashes on the device (gpu_hash.c) ---- */
struct piece;
/* The streams, events and per-slot buffers, at create; all of it freed. */
int wcg_hash_alloc(wc_gpu *g, wc_err *err);
void wcg_hash_free(wc_gpu *g);
/* A call's states (n_rq of them). */
int wcg_hash_begin(wc_gpu *g, size_t n_rq, wc_err *err);
/* The batch's jobs, from its pieces: marks the records hashed on the device. */
int wcg_hash_plan(wc_gpu *g, slot *sl, struct treq *rq, const struct piece *ps, long np, wc_err *err);
/* Queues the batch's state uploads and jobs (copy stream), its kernels and
 * the states that end (hash stream). */
int wcg_hash_issue(wc_gpu *g, slot *sl, wc_err *err);
/* Once the slot's hashes are done: the records that ended in it compared. */
int wcg_hash_finish(wc_gpu *g, slot *sl, const wc_file *f, struct treq *rq, wc_err *err);
/* r, or the checksum failure of a record still hashed on the device,
 * hashed on the CPU now (a decode error is reported second to it). */
int wcg_hash_prefer(wc_gpu *g, const wc_file *f, struct treq *rq, size_t n_rq, int r, wc_err *err);

/* ---- tensors, batches and descriptors (gpu_desc.c) ---- */

typedef struct treq {
    size_t idx;
    const wc_entry *e;
    uint8_t *head;            /* coded: the record's head (scales .. tile index), read at prep, owned */
    wc_rec rec;               /* coded: the head parsed (codec/rec_reader.h) */
    wc_gpu_dst dst;
    int coded, has_pred, any_tx, general;
    int packed;               /* its tables may take the packed layout (kernels.cuh) */
    uint64_t scales_size;
    int skip_hash;            /* a shard's rows of tiles (gpu_shard.c): e is not a whole record */
    int gpu_hash;             /* its hash taken on the device, and not yet compared (gpu_hash.c) */
} treq;

typedef struct piece {
    size_t t;                 /* index into the request array */
    uint32_t t0, t1;          /* coded: tiles [t0, t1) */
    uint64_t b0, b1;          /* coded: stream bytes [b0, b1) rel. tiles_off; raw: record bytes */
    uint64_t data_off;        /* in the data area */
    int first, last;
} piece;

typedef struct cursor {
    size_t t;                 /* request */
    uint64_t at;              /* coded: next tile; raw: next byte */
} cursor;

/* Where things went in a descriptor area. */
typedef struct layout {
    uint64_t jobs, errs, tiles, modes, end;
    uint32_t n_jobs, n_blocks, smem, multi, general;
    /* the prediction jobs (pieces that end a tensor with prediction): a launch of
     * each prediction kernel they need, for the jobs listed at pred_idx, of the
     * sizes in pred */
    uint64_t preds, pred_idx;
    wc_gpu_pred_sizes pred;
    uint32_t n_preds;
} layout;

/* Writes one table in the expanded layout of kernels.cuh (fc[] and the
 * slot -> symbol bytes, WC_GPU_TABLE_BYTES(prob_bits) bytes). */
void wcg_expand_table(const wc_rans_table *tab, uint8_t *dst);
/* Checks the destinations and the record heads of the n tensors `which`
 * (with the CPU decoder's reader, wc_rec_parse; with verify, a head that
 * breaks the format is reported as its record's checksum failure where the
 * checksum fails, as the CPU decoder does); *out: their requests (the caller
 * frees them with wcg_free_reqs). */
int wcg_prep_all(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, bool verify, treq **out,
                 wc_err *err);
void wcg_free_reqs(treq *rq, size_t n);
/* Checks t's head (read into t->head) with wc_rec_parse and notes what its
 * tiles and tables need (wcg_prep_all does this for each request). */
int wcg_prep_tensor(const wc_file *f, treq *t, bool verify, wc_err *err);
/* gpu_decoder.c: 0, or WC_EINVAL unless p is device (or managed) memory. */
int wcg_check_device_ptr(const void *p, const char *what, wc_err *err);
/* Fixed descriptor bytes of a coded piece of n tiles. */
uint64_t wcg_piece_desc(const treq *t, uint32_t n, int first, int last);
/* Fills pieces for one batch from the cursor within the data and descriptor
 * budgets. Returns the number of pieces, or a negative WC_E* code. */
long wcg_plan_batch(const treq *rq, size_t n_rq, cursor *c, uint64_t data_cap, uint64_t desc_cap, piece **pp,
                    size_t *cap, const wc_file *f, wc_err *err);
/* Writes the descriptors of the coded pieces into desc (cap bytes); the
 * stream of tile k of piece i lies at src_base[i] + begin(k) in the data area. */
int wcg_build_desc(wc_gpu *g, const treq *rq, const piece *ps, size_t np,
                   const uint64_t *src_base, uint8_t *desc, uint64_t cap, layout *L, size_t **job_tensor,
                   size_t *job_cap, wc_err *err);
wc_gpu_launch wcg_make_launch(const layout *L, const uint8_t *d_desc, const uint8_t *d_data);
/* gpu_pred.c. Writes the modes of t (its last piece is in the batch) at
 * desc + o (a16(n_tiles) bytes, room checked by the caller) and its
 * prediction job after L's others. */
void wcg_add_pred(layout *L, uint8_t *desc, uint64_t o, const treq *t);
/* Lists each prediction kernel's jobs at L->pred_idx and sizes its launch
 * (L->pred), once every job of the batch is written. */
void wcg_list_preds(layout *L, uint8_t *desc);
/* Launches the predictions of the jobs whose tensor ends in this launch. */
int wcg_launch_preds(wc_gpu *g, const layout *L, const uint8_t *d_desc, wc_err *err);
/* Turns the error words of a finished launch into the first error. */
int wcg_check_errs(const wc_file *f, const treq *rq, const unsigned long long *errs, uint32_t n_jobs,
                   const size_t *job_tensor, wc_err *err);

#endif
