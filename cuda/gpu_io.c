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

/* XXH3 of a record read through the map, chunk by chunk, each chunk's pages
 * dropped from this process after use (the page cache keeps them), so that
 * the resident set stays bounded whatever the file size. */
static int hash_record(const uint8_t *map, uint64_t off, uint64_t len, uint64_t want)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) return WC_ENOMEM;
    XXH3_64bits_reset(st);
    for (uint64_t a = 0; a < len; a += IO_CHUNK) {
        uint64_t l = len - a < IO_CHUNK ? len - a : IO_CHUNK;
        XXH3_64bits_update(st, map + off + a, l);
        uintptr_t p0 = (uintptr_t)(map + off + a) & ~(uintptr_t)4095;
        uintptr_t p1 = (uintptr_t)(map + off + a + l) & ~(uintptr_t)4095;
        if (p1 > p0) madvise((void *)p0, p1 - p0, MADV_DONTNEED);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h != want ? WC_ECHECKSUM : 0;
}

static void io_do(io_pool *p, io_task *t)
{
    if (t->kind == 1) {
        t->result = hash_record(p->map, t->off, t->len, t->hash);
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
