/* The GPU decoder's io threads: pread of tile streams into the pinned ring,
 * and the XXH3 of each record (include/wcodec/wcodec_gpu.h), through the
 * wc_file's own descriptor. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "gpu_int.h"
#include "rans.h"

/* ---- io thread pool ---- */

struct io_threads {
    pthread_t *th;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    int quit;
    io_pool **pools;          /* the pools whose tasks the threads take */
    size_t n_pools, cap;
    size_t turn;              /* the pool a thread looks at first: they take turns */
};

/* XXH3 of a record (task kind 1), read with pread through a small buffer
 * of this thread: 10.4 GB/s against 6.6 through a map on a 2 GB record in
 * the page cache (one thread, this project's CPU machine, 2026-11-29), and
 * the resident set stays the buffer. */
#define HASH_BUF (256u << 10)
static void hash_record(io_pool *p, io_task *t)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = malloc(HASH_BUF);
    if (!st || !buf) {
        t->result = WC_ENOMEM;
        t->sys_errno = ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(st);
    for (uint64_t a = 0; a < t->len;) {
        const size_t want = t->len - a < HASH_BUF ? (size_t)(t->len - a) : HASH_BUF;
        ssize_t k = pread(p->fd, buf, want, (off_t)(t->off + a));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            t->result = WC_EIO;
            t->sys_errno = k < 0 ? errno : 0;
            goto out;
        }
        XXH3_64bits_update(st, buf, (size_t)k);
        a += (uint64_t)k;
    }
    t->result = XXH3_64bits_digest(st) != t->hash ? WC_ECHECKSUM : 0;
out:
    free(buf);
    XXH3_freeState(st);
}

/* XXH3 of a record whose bytes are in memory already (task kind 2): its
 * head, its tile streams in the pinned ring, and what follows them in the
 * file, if anything. No second read of the record from the page cache. */
static void hash_in_memory(io_pool *p, io_task *t)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = t->len ? malloc(t->len) : NULL;
    if (!st || (t->len && !buf)) {
        t->result = WC_ENOMEM;
        t->sys_errno = ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(st);
    if (t->head_len) XXH3_64bits_update(st, t->head, (size_t)t->head_len);
    if (t->src_len) XXH3_64bits_update(st, t->src, (size_t)t->src_len);
    for (uint64_t a = 0; a < t->len;) {
        ssize_t k = pread(p->fd, buf + a, t->len - a, (off_t)(t->off + a));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            t->result = WC_EIO;
            t->sys_errno = k < 0 ? errno : 0;
            goto out;
        }
        a += (uint64_t)k;
    }
    if (t->len) XXH3_64bits_update(st, buf, (size_t)t->len);
    t->result = XXH3_64bits_digest(st) != t->hash ? WC_ECHECKSUM : 0;
out:
    free(buf);
    XXH3_freeState(st);
}

/* A read (task kind 0) into the pinned ring: a short one (the file shrank
 * after it was opened) is WC_EIO with errno 0. */
static void io_do(io_pool *p, io_task *t)
{
    if (t->kind == 1) {
        hash_record(p, t);
        return;
    }
    if (t->kind == 2) {
        hash_in_memory(p, t);
        return;
    }
    uint64_t done = 0;
    while (done < t->len) {
        ssize_t k = pread(p->fd, t->dst + done, t->len - done, (off_t)(t->off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            t->result = WC_EIO;
            t->sys_errno = k < 0 ? errno : 0;
            return;
        }
        done += (uint64_t)k;
    }
}

/* Runs the next task of q, if any (under p->mu, the task unlocked). */
static bool take(io_pool *p, io_queue *q)
{
    if (q->next == q->n) return false;
    const size_t i = q->next++;
    io_task t = q->v[i]; /* q->v may move while the task runs */
    pthread_mutex_unlock(&p->th->mu);
    io_do(p, &t);
    pthread_mutex_lock(&p->th->mu);
    q->v[i] = t;
    if (t.pending && !--*t.pending) pthread_cond_broadcast(&p->th->done);
    if (++q->done == q->n) pthread_cond_broadcast(&p->th->done);
    return true;
}

/* Claims the next task under p->mu and runs it unlocked: hashes from memory
 * first (a ring slot waits for them), then batch reads (the oldest batch's
 * first: a batch waits on its reads), then hashes that read the file (they
 * only have to finish before the call returns). False when there is none
 * (bg: whether the caller takes background tasks too; only: a ticket whose
 * tasks alone the caller takes, or UINT64_MAX for any). */
static bool io_work_one(io_pool *p, bool bg, uint64_t only)
{
    if (bg && take(p, &p->urgent)) return true;
    for (uint64_t s = p->waited; s < p->submitted; s++) {
        io_job *j = &p->jobs[s % IO_JOBS];
        if ((only != UINT64_MAX && s != only) || j->next == j->n) continue;
        io_task *t = &j->tasks[j->next++];
        pthread_mutex_unlock(&p->th->mu);
        io_do(p, t);
        pthread_mutex_lock(&p->th->mu);
        if (++j->done == j->n) pthread_cond_broadcast(&p->th->done);
        return true;
    }
    return bg && take(p, &p->bg);
}

/* A task of any pool: each pool's own order (io_work_one), the pools in
 * turn, so that one decoder's long batch does not starve another's. */
static bool any_work(io_threads *t)
{
    for (size_t k = 0; k < t->n_pools; k++)
        if (io_work_one(t->pools[(t->turn++ + k) % t->n_pools], true, UINT64_MAX)) return true;
    return false;
}

static void *io_worker(void *arg)
{
    io_threads *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->quit)
        if (!any_work(t)) pthread_cond_wait(&t->go, &t->mu);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

uint64_t wcg_io_submit(io_pool *p, io_task *tasks, size_t n)
{
    pthread_mutex_lock(&p->th->mu);
    /* The caller keeps at most IO_JOBS in flight (the pipeline: two). */
    while (p->submitted - p->waited >= IO_JOBS) pthread_cond_wait(&p->th->done, &p->th->mu);
    uint64_t ticket = p->submitted++;
    p->jobs[ticket % IO_JOBS] = (io_job){tasks, n, 0, 0};
    pthread_cond_broadcast(&p->th->go);
    pthread_mutex_unlock(&p->th->mu);
    return ticket;
}

void wcg_io_wait(io_pool *p, uint64_t ticket)
{
    pthread_mutex_lock(&p->th->mu);
    io_job *j = &p->jobs[ticket % IO_JOBS];
    while (io_work_one(p, false, ticket)) {}
    while (j->done < j->n) pthread_cond_wait(&p->th->done, &p->th->mu);
    /* Tickets are waited for in the order they were submitted. */
    if (ticket + 1 > p->waited) p->waited = ticket + 1;
    pthread_cond_broadcast(&p->th->done);
    pthread_mutex_unlock(&p->th->mu);
}

/* Runs the n tasks on the workers and the calling thread; returns when all are
 * done (background tasks may still be running). */
void wcg_io_run(io_pool *p, io_task *tasks, size_t n)
{
    wcg_io_wait(p, wcg_io_submit(p, tasks, n));
}

int wcg_io_queue(io_pool *p, const io_task *t)
{
    int r = 0;
    pthread_mutex_lock(&p->th->mu);
    io_queue *q = t->kind == 2 ? &p->urgent : &p->bg;
    if (q->n == q->cap) {
        const size_t cap = q->cap ? 2 * q->cap : 64;
        io_task *nv = realloc(q->v, cap * sizeof *nv);
        if (!nv) {
            r = WC_ENOMEM;
            goto out;
        }
        q->v = nv, q->cap = cap;
    }
    q->v[q->n++] = *t;
    if (t->pending) ++*t->pending;
    pthread_cond_signal(&p->th->go);
out:
    pthread_mutex_unlock(&p->th->mu);
    return r;
}

/* The first finished task of q that failed (a result is written back when
 * its task is done: 0 until then). */
static bool first_failed(const io_queue *q, io_task *failed)
{
    for (size_t i = 0; i < q->next; i++)
        if (q->v[i].result) {
            *failed = q->v[i];
            return true;
        }
    return false;
}

bool wcg_io_bg_failed(io_pool *p, bool wait, io_task *failed)
{
    pthread_mutex_lock(&p->th->mu);
    if (wait) {
        while (io_work_one(p, true, UINT64_MAX)) {}
        while (p->bg.done < p->bg.n || p->urgent.done < p->urgent.n) pthread_cond_wait(&p->th->done, &p->th->mu);
    }
    bool found = first_failed(&p->urgent, failed) || first_failed(&p->bg, failed);
    pthread_mutex_unlock(&p->th->mu);
    return found;
}

void wcg_io_wait_pending(io_pool *p, const unsigned *pending)
{
    pthread_mutex_lock(&p->th->mu);
    while (*pending && io_work_one(p, true, UINT64_MAX)) {}
    while (*pending) pthread_cond_wait(&p->th->done, &p->th->mu);
    pthread_mutex_unlock(&p->th->mu);
}

void wcg_io_bg_clear(io_pool *p)
{
    io_task t;
    wcg_io_bg_failed(p, true, &t);
    pthread_mutex_lock(&p->th->mu);
    p->bg.n = p->bg.next = p->bg.done = 0;
    p->urgent.n = p->urgent.next = p->urgent.done = 0;
    pthread_mutex_unlock(&p->th->mu);
}

int wcg_io_fail(const wc_file *f, const treq *rq, const io_task *t, wc_err *err)
{
    if (t->result == WC_ECHECKSUM) return wc_record_hash_fail(f, rq[t->tensor].e, err);
    if (t->result == WC_EIO) return wc_read_fail(wc_file_label(f), rq[t->tensor].e, t->off, t->len, t->sys_errno, err);
    return wc_fail(err, t->result, "out of memory");
}

static int join(io_threads *t, io_pool *p)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_pools == t->cap) {
        const size_t cap = t->cap ? 2 * t->cap : 4;
        io_pool **v = realloc(t->pools, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&t->mu);
            return WC_ENOMEM;
        }
        t->pools = v, t->cap = cap;
    }
    t->pools[t->n_pools++] = p;
    p->th = t;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int wcg_io_start(io_pool *p, int n)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    io_threads *t = calloc(1, sizeof *t);
    if (!t) return WC_ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->go, NULL);
    pthread_cond_init(&t->done, NULL);
    t->th = calloc((size_t)(n > 0 ? n : 1), sizeof *t->th);
    if (!t->th || join(t, p)) {
        free(t->th);
        free(t);
        p->th = NULL;
        return WC_ENOMEM;
    }
    for (t->n = 0; t->n < n; t->n++)
        if (pthread_create(&t->th[t->n], NULL, io_worker, t)) break;
    return 0;
}

int wcg_io_share(io_pool *p, io_pool *with)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    return join(with->th, p);
}

static bool idle(const io_pool *p)
{
    return p->waited == p->submitted && p->bg.done == p->bg.n && p->urgent.done == p->urgent.n;
}

void wcg_io_stop(io_pool *p)
{
    io_threads *t = p->th;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    /* a thread may still run one of p's tasks: p stays until it is done */
    while (!idle(p)) pthread_cond_wait(&t->done, &t->mu);
    for (size_t k = 0; k < t->n_pools; k++)
        if (t->pools[k] == p) t->pools[k] = t->pools[--t->n_pools];
    const bool last = t->n_pools == 0;
    if (last) {
        t->quit = 1;
        pthread_cond_broadcast(&t->go);
    }
    pthread_mutex_unlock(&t->mu);
    if (last) {
        for (int i = 0; i < t->n; i++) pthread_join(t->th[i], NULL);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->go);
        pthread_cond_destroy(&t->done);
        free(t->th);
        free(t->pools);
        free(t);
    }
    free(p->bg.v);
    free(p->urgent.v);
    p->bg.v = p->urgent.v = NULL;
    p->th = NULL;
}

void wcg_io_attach(io_pool *p, const wc_file *f) { p->fd = wc_file_fd(f); }
