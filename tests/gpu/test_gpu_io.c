/* The GPU decoder's io threads (cuda/gpu_io.c), which need no device: reads
 * into a buffer and record checksums, through pread,
 * against the bytes of the file and XXH3 computed here in one call; the
 * hashes run as background tasks beside a batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "gpu_int.h"

#define FILE_BYTES ((3u << 20) + 17) /* not a multiple of any buffer or chunk */

static uint8_t *data;
static char path[] = "/tmp/wcodec-io-XXXXXX";

static int setup(void **state)
{
    (void)state;
    data = malloc(FILE_BYTES);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < FILE_BYTES; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        data[i] = (uint8_t)(x >> 32);
    }
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, data, FILE_BYTES) != (ssize_t)FILE_BYTES) return -1;
    close(fd);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    free(data);
    return 0;
}

static io_task hash_task(uint64_t off, uint64_t len, uint64_t hash)
{
    return (io_task){.kind = 1, .off = off, .len = len, .hash = hash};
}

/* Reads and hashes through the file's descriptor (pread). */
static void test_pread(void **state)
{
    (void)state;
    io_pool p;
    assert_int_equal(wcg_io_start(&p, 2), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    p.fd = fd;
    uint8_t *got = calloc(1, 2u << 20);
    const uint64_t whole = XXH3_64bits(data, FILE_BYTES), part = XXH3_64bits(data + 5, (1u << 20) + 3);
    /* the hashes in the background, the read as a batch */
    const io_task h[5] = {
        hash_task(0, FILE_BYTES, whole),
        hash_task(5, (1u << 20) + 3, part),
        hash_task(0, FILE_BYTES, whole ^ 1),
        hash_task(0, 0, XXH3_64bits(data, 0)),
        hash_task(FILE_BYTES - 10, 100, XXH3_64bits(data + FILE_BYTES - 10, 10)),
    };
    for (int i = 0; i < 5; i++) assert_int_equal(wcg_io_queue(&p, &h[i]), 0);
    io_task rd = {.kind = 0, .off = 7, .len = 2u << 20, .dst = got};
    wcg_io_run(&p, &rd, 1);
    assert_int_equal(rd.result, 0);
    assert_memory_equal(got, data + 7, 2u << 20);
    io_task bad;
    assert_true(wcg_io_bg_failed(&p, true, &bad));
    /* the first failure in queue order */
    assert_int_equal(bad.result, WC_ECHECKSUM);
    assert_int_equal(bad.hash, whole ^ 1);
    assert_int_equal(p.bg.done, 5);
    assert_int_equal(p.bg.v[0].result, 0);
    assert_int_equal(p.bg.v[1].result, 0);
    assert_int_equal(p.bg.v[2].result, WC_ECHECKSUM);
    assert_int_equal(p.bg.v[3].result, 0);
    /* a record that runs past the end of the file */
    assert_int_equal(p.bg.v[4].result, WC_EIO);
    assert_int_equal(p.bg.v[4].sys_errno, 0);
    /* and a read that does (the file shrank after it was opened) */
    rd = (io_task){.kind = 0, .off = FILE_BYTES - 5, .len = 10, .dst = got};
    wcg_io_run(&p, &rd, 1);
    assert_int_equal(rd.result, WC_EIO);
    assert_int_equal(rd.sys_errno, 0);
    /* forgotten after a clear; a good hash then fails nothing */
    wcg_io_bg_clear(&p);
    assert_int_equal(wcg_io_queue(&p, &h[1]), 0);
    assert_false(wcg_io_bg_failed(&p, true, &bad));
    wcg_io_stop(&p);
    close(fd);
    free(got);
}

/* The pipeline's pattern many times over, on 4 threads: hashes queued
 * between batches of reads, some of them wrong, checked without waiting
 * between batches and with waiting at the end. Every read must land and
 * every hash must keep its own result, whichever thread ran it. */
static void test_interleaved(void **state)
{
    (void)state;
    io_pool p;
    assert_int_equal(wcg_io_start(&p, 3), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    p.fd = fd;
    enum { ROUNDS = 40, READS = 9, CHUNK = 96 * 1024 };
    uint8_t *got = malloc(READS * CHUNK);
    uint64_t rng = 7;
    size_t queued = 0, first_bad = SIZE_MAX;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < 3; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const uint64_t off = rng % (FILE_BYTES / 2), len = 1 + (rng >> 20) % (FILE_BYTES / 2);
            const bool bad = (rng >> 40) % 5 == 0;
            if (bad && first_bad == SIZE_MAX) first_bad = queued;
            io_task h = hash_task(off, len, XXH3_64bits(data + off, len) ^ bad);
            h.tensor = queued++;
            assert_int_equal(wcg_io_queue(&p, &h), 0);
        }
        io_task rd[READS];
        const uint64_t base = (uint64_t)round * 4099 % (FILE_BYTES - READS * CHUNK);
        for (int k = 0; k < READS; k++)
            rd[k] = (io_task){.kind = 0, .off = base + (uint64_t)k * CHUNK, .len = CHUNK, .dst = got + k * CHUNK};
        wcg_io_run(&p, rd, READS);
        for (int k = 0; k < READS; k++) assert_int_equal(rd[k].result, 0);
        assert_memory_equal(got, data + base, READS * CHUNK);
        io_task seen;
        if (wcg_io_bg_failed(&p, false, &seen)) assert_int_equal(seen.result, WC_ECHECKSUM);
    }
    io_task bad;
    assert_true(first_bad != SIZE_MAX);
    assert_true(wcg_io_bg_failed(&p, true, &bad));
    assert_int_equal(bad.tensor, first_bad);
    assert_int_equal(p.bg.done, queued);
    for (size_t i = 0; i < queued; i++) {
        const bool want_bad = (p.bg.v[i].hash != XXH3_64bits(data + p.bg.v[i].off, p.bg.v[i].len));
        assert_int_equal(p.bg.v[i].result, want_bad ? WC_ECHECKSUM : 0);
    }
    wcg_io_bg_clear(&p);
    wcg_io_stop(&p);
    close(fd);
    free(got);
}

/* The pipeline's overlap: batch k+1's reads are submitted before batch
 * k's are waited for, two jobs always in flight, waited for in order; every
 * read of both must land in its own buffer, whichever thread ran it. */
static void test_two_jobs_in_flight(void **state)
{
    (void)state;
    io_pool p;
    assert_int_equal(wcg_io_start(&p, 3), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    p.fd = fd;
    enum { ROUNDS = 60, READS = 7, CHUNK = 64 * 1024 };
    uint8_t *got[2] = {malloc(READS * CHUNK), malloc(READS * CHUNK)};
    io_task rd[2][READS];
    uint64_t base[2], ticket[2];
    for (int round = 0; round <= ROUNDS; round++) {
        const int cur = round & 1, prev = cur ^ 1;
        if (round < ROUNDS) {
            base[cur] = (uint64_t)round * 7919 % (FILE_BYTES - READS * CHUNK);
            for (int k = 0; k < READS; k++)
                rd[cur][k] = (io_task){.kind = 0, .off = base[cur] + (uint64_t)k * CHUNK, .len = CHUNK,
                                       .dst = got[cur] + k * CHUNK};
            memset(got[cur], 0, READS * CHUNK);
            ticket[cur] = wcg_io_submit(&p, rd[cur], READS);
        }
        if (round) {
            wcg_io_wait(&p, ticket[prev]);
            for (int k = 0; k < READS; k++) assert_int_equal(rd[prev][k].result, 0);
            assert_memory_equal(got[prev], data + base[prev], READS * CHUNK);
        }
    }
    wcg_io_stop(&p);
    close(fd);
    free(got[0]);
    free(got[1]);
}

/* A record hashed from memory (kind 2): its head and its streams already
 * in buffers, the rest read from the file; each task counts down the ring
 * slot it reads, and a wrong hash is WC_ECHECKSUM. */
static void test_hash_in_memory(void **state)
{
    (void)state;
    io_pool p;
    assert_int_equal(wcg_io_start(&p, 2), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    p.fd = fd;
    unsigned pending = 0;
    enum { N = 12 };
    for (int k = 0; k < N; k++) {
        /* a "record" at off of len bytes: head, streams (a copy, as in the ring), tail from the file */
        const uint64_t off = (uint64_t)k * 200003 % (FILE_BYTES / 2), len = 65536 + (uint64_t)k * 40009;
        const uint64_t head = 100 + k, tail = k % 3 ? 0 : 777;
        uint8_t *copy = malloc(len);
        memcpy(copy, data + off + head, len - head - tail);
        io_task h = {.kind = 2, .head = data + off, .head_len = head, .src = copy, .src_len = len - head - tail,
                     .off = off + len - tail, .len = tail, .hash = XXH3_64bits(data + off, len) ^ (k == 5),
                     .tensor = (size_t)k, .pending = &pending};
        assert_int_equal(wcg_io_queue(&p, &h), 0);
        wcg_io_wait_pending(&p, &pending);
        assert_int_equal(pending, 0);
        free(copy); /* nothing reads it once the count is down */
    }
    io_task bad;
    assert_true(wcg_io_bg_failed(&p, true, &bad));
    assert_int_equal(bad.tensor, 5);
    assert_int_equal(bad.result, WC_ECHECKSUM);
    wcg_io_stop(&p);
    close(fd);
}

/* One decoder's pattern on pool p, reading its own file (bytes: what the
 * file holds): rounds of background hashes (some wrong) and two batches of
 * reads in flight; every read lands, the first wrong hash is the one found.
 * Run by two threads at once on two pools that share threads. */
typedef struct drive {
    io_pool *p;
    const uint8_t *bytes;
    uint64_t seed;
    int rounds;
    int failures;             /* assertions that did not hold (cmocka's are not for other threads) */
} drive;

static void *drive_pool(void *arg)
{
    drive *d = arg;
    enum { READS = 5, CHUNK = 48 * 1024 };
    uint8_t *got[2] = {malloc(READS * CHUNK), malloc(READS * CHUNK)};
    io_task rd[2][READS];
    uint64_t base[2], ticket[2], rng = d->seed;
    size_t queued = 0, first_bad = SIZE_MAX;
    for (int round = 0; round <= d->rounds; round++) {
        const int cur = round & 1, prev = cur ^ 1;
        if (round < d->rounds) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const uint64_t off = rng % (FILE_BYTES / 2), len = 1 + (rng >> 20) % (FILE_BYTES / 4);
            const bool bad = (rng >> 40) % 4 == 0;
            if (bad && first_bad == SIZE_MAX) first_bad = queued;
            io_task h = hash_task(off, len, XXH3_64bits(d->bytes + off, len) ^ bad);
            h.tensor = queued++;
            if (wcg_io_queue(d->p, &h)) d->failures++;
            base[cur] = rng % (FILE_BYTES - READS * CHUNK);
            for (int k = 0; k < READS; k++)
                rd[cur][k] = (io_task){.kind = 0, .off = base[cur] + (uint64_t)k * CHUNK, .len = CHUNK,
                                       .dst = got[cur] + k * CHUNK};
            ticket[cur] = wcg_io_submit(d->p, rd[cur], READS);
        }
        if (round > 0) {
            wcg_io_wait(d->p, ticket[prev]);
            for (int k = 0; k < READS; k++) d->failures += rd[prev][k].result != 0;
            d->failures += memcmp(got[prev], d->bytes + base[prev], READS * CHUNK) != 0;
        }
    }
    io_task bad;
    d->failures += !wcg_io_bg_failed(d->p, true, &bad) || bad.tensor != first_bad;
    wcg_io_bg_clear(d->p);
    free(got[0]);
    free(got[1]);
    return NULL;
}

/* Two pools on one set of threads (a daemon's decoders, one per GPU), each
 * driven by a thread of its own, on files of different bytes: each gets
 * its own reads and hashes. The pool that started the threads leaves
 * first; the other still runs on them, and its leaving stops them. */
static void test_shared_threads(void **state)
{
    (void)state;
    uint8_t *other = malloc(FILE_BYTES);
    for (size_t i = 0; i < FILE_BYTES; i++) other[i] = data[i] ^ 0x5a;
    char path2[] = "/tmp/wcodec-io2-XXXXXX";
    int fd2 = mkstemp(path2);
    assert_true(fd2 >= 0);
    assert_int_equal(write(fd2, other, FILE_BYTES), (ssize_t)FILE_BYTES);
    io_pool a, b;
    assert_int_equal(wcg_io_start(&a, 3), 0);
    assert_int_equal(wcg_io_share(&b, &a), 0);
    assert_ptr_equal(a.th, b.th);
    a.fd = open(path, O_RDONLY);
    b.fd = fd2;
    drive da = {&a, data, 11, 60, 0}, db = {&b, other, 29, 60, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, drive_pool, &da), 0);
    assert_int_equal(pthread_create(&tb, NULL, drive_pool, &db), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(da.failures, 0);
    assert_int_equal(db.failures, 0);
    close(a.fd);
    wcg_io_stop(&a);
    db.rounds = 10;
    drive_pool(&db); /* on the threads a started */
    assert_int_equal(db.failures, 0);
    wcg_io_stop(&b);
    close(fd2);
    unlink(path2);
    free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pread),
                                       cmocka_unit_test(test_interleaved),
                                       cmocka_unit_test(test_two_jobs_in_flight),
                                       cmocka_unit_test(test_hash_in_memory),
                                       cmocka_unit_test(test_shared_threads)};
    return cmocka_run_group_tests(tests, setup, teardown) ? 1 : 0;
}
