/* The GPU decoder's io threads: pread of tile streams into the pinned ring,
 * and the XXH3 of each record (include/wcodec/wcodec_gpu.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "gpu_int.h"
#include "rans.h"

/* ---- io thread pool ---- */

/* XXH3 of a record (task kind 1). With the file open it is read with pread
 * through a small buffer of this thread: 10.4 GB/s against 6.6 through the
 * map on a 2 GB record in the page cache (one thread, this project's CPU
 * machine, 2026-11-29), and the resident set stays the buffer. Without the
 * file, through the map, chunk by chunk, each chunk's pages dropped from this
 * process after use (the page cache keeps them). */
#define HASH_BUF (256u << 10)
static void hash_record(io_pool *p, io_task *t)
{
    XXH3_state_t *st = XXH3_createState();
    uint8_t *buf = p->fd >= 0 ? malloc(HASH_BUF) : NULL;
    if (!st || (p->fd >= 0 && !buf)) {
        t->result = WC_ENOMEM;
        t->sys_errno = ENOMEM;
        goto out;
    }
    XXH3_64bits_reset(st);
    for (uint64_t a = 0; a < t->len;) {
        if (p->fd < 0) {
            const uint64_t l = t->len - a < IO_CHUNK ? t->len - a : IO_CHUNK;
            const uint8_t *q = p->map + t->off + a;
            XXH3_64bits_update(st, q, l);
            uintptr_t p0 = (uintptr_t)q & ~(uintptr_t)4095, p1 = (uintptr_t)(q + l) & ~(uintptr_t)4095;
            if (p1 > p0) madvise((void *)p0, p1 - p0, MADV_DONTNEED);
            a += l;
            continue;
        }
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

static void io_do(io_pool *p, io_task *t)
{
    if (t->kind == 1) {
        hash_record(p, t);
        return;
    }
    if (p->fd < 0) {
        memcpy(t->dst, p->map + t->off, t->len);
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

static void io_drain(io_pool *p)
{
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_tasks) return;
        io_do(p, &p->tasks[i]);
    }
}

static void *io_worker(void *arg)
{
    io_pool *p = arg;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        io_drain(p);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Runs the tasks on the workers and the calling thread; returns when all are done. */
void wcg_io_run(io_pool *p, io_task *tasks, size_t n)
{
    p->tasks = tasks;
    p->n_tasks = n;
    atomic_store(&p->next, 0);
    pthread_mutex_lock(&p->mu);
    p->active = p->n;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    io_drain(p);
    pthread_mutex_lock(&p->mu);
    while (p->active) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void wcg_io_stop(io_pool *p)
{
    if (!p->th) return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    p->th = NULL;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
}

int wcg_io_start(io_pool *p, int n)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)(n > 0 ? n : 1), sizeof *p->th);
    if (!p->th) return WC_ENOMEM;
    for (p->n = 0; p->n < n; p->n++)
        if (pthread_create(&p->th[p->n], NULL, io_worker, p)) break;
    return 0;
}
