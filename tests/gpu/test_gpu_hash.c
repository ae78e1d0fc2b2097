/* The record-hash kernels (cuda/hash.cu) against libxxhash's XXH3_64bits:
 * records of every length class, each split into segments of random sizes
 * that arrive in batches (one segment per record a batch, at random,
 * unaligned places of a device buffer, as a pipeline's ring slot holds
 * them). As the pipeline is to do it, the host adds each record's first
 * bytes (its head) to the state before the device takes over, and its
 * last bytes after; it plans each segment's split with wcg_xxh3_split_of.
 * Exit 77 without a device. --host: the same batches through
 * wcg_xxh3_stream_add on the host instead of the kernels (this test's own
 * planning checked without a device). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <xxhash.h>

#include "hash_ref.h"
#include "prog_check.h"

#define N_REC 24
#define BUF (8u << 20)

static uint64_t rng = 0x2545f4914f6cdd1dull;
static bool host; /* --host */
static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

typedef struct rec {
    uint8_t *bytes;
    uint64_t len, head, tail, at; /* host-hashed first and last bytes; device position */
} rec;

/* One round: N_REC records hashed through batches; returns the failures. */
static int round_(int r, uint64_t max_seg, uint64_t *segments)
{
    static const uint64_t classes[] = {241, 1024, 1025, 1088, 2049, 4096 + 63, 65536, 1 << 20, (3 << 20) + 77};
    rec rc[N_REC];
    wcg_xxh3_stream *hs = calloc(N_REC, sizeof *hs), *ds;
    uint8_t *h_buf = malloc(BUF), *d_buf;
    wcg_hash_job *jobs = calloc(N_REC, sizeof *jobs), *d_jobs;
    uint64_t *d_sums;
    if (!host) {
        CK(cudaMalloc((void **)&ds, N_REC * sizeof *ds));
        CK(cudaMalloc((void **)&d_buf, BUF));
        CK(cudaMalloc((void **)&d_jobs, N_REC * sizeof *jobs));
        CK(cudaMalloc((void **)&d_sums, (BUF / WCG_XXH3_BLOCK + 1) * 64));
    } else {
        ds = NULL, d_buf = h_buf, d_jobs = NULL, d_sums = NULL; /* jobs point into h_buf */
    }
    for (int i = 0; i < N_REC; i++) {
        rec *x = &rc[i];
        x->len = i < 9 ? classes[i] : WCG_XXH3_MIN_LONG + next() % 200000;
        x->bytes = malloc(x->len);
        for (uint64_t k = 0; k < x->len; k++) x->bytes[k] = (uint8_t)(next() >> 29);
        x->head = next() % 3 ? next() % (x->len / 4 + 1) : 0;
        x->tail = next() % 3 ? next() % (x->len / 8 + 1) : 0;
        wcg_xxh3_stream_init(&hs[i], x->len);
        wcg_xxh3_stream_add(&hs[i], x->bytes, (size_t)x->head); /* the head: on the host */
        x->at = x->head;
    }
    if (!host) CK(cudaMemcpy(ds, hs, N_REC * sizeof *ds, cudaMemcpyHostToDevice));
    for (bool left = true; left;) { /* a batch: the next segment of each record, packed */
        left = false;
        uint64_t used = 0, total = 0;
        uint32_t n = 0;
        for (int i = 0; i < N_REC; i++) {
            rec *x = &rc[i];
            uint64_t end = x->len - x->tail, seg = 1 + next() % max_seg;
            if (x->at >= end) continue;
            if (seg > end - x->at) seg = end - x->at;
            used += next() % 13; /* anywhere: not aligned */
            if (used + seg + 8 > BUF) continue;
            memcpy(h_buf + used, x->bytes + x->at, seg);
            wcg_xxh3_split sp = wcg_xxh3_split_of(x->at, seg, x->len);
            jobs[n] = (wcg_hash_job){.src = d_buf + used, .n = seg, .head = sp.head, .blocks = sp.blocks,
                                     .sums = total, .state = (uint32_t)i};
            total += sp.blocks;
            used += seg;
            x->at += seg;
            n++;
            left = left || x->at < end;
        }
        if (!n) break;
        if (host) {
            for (uint32_t k = 0; k < n; k++) wcg_xxh3_stream_add(&hs[jobs[k].state], jobs[k].src, (size_t)jobs[k].n);
        } else {
            CK(cudaMemcpy(d_buf, h_buf, used, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(d_jobs, jobs, n * sizeof *jobs, cudaMemcpyHostToDevice));
            CK((cudaError_t)wcg_hash_launch(d_jobs, n, total, d_sums, ds, NULL));
            CK(cudaDeviceSynchronize());
        }
        *segments += n;
        for (int i = 0; i < N_REC && !left; i++) left = rc[i].at < rc[i].len - rc[i].tail;
    }
    if (!host) CK(cudaMemcpy(hs, ds, N_REC * sizeof *ds, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < N_REC; i++) {
        rec *x = &rc[i];
        wcg_xxh3_stream_add(&hs[i], x->bytes + x->len - x->tail, (size_t)x->tail); /* the tail: on the host */
        uint64_t got = wcg_xxh3_stream_end(&hs[i]), want = XXH3_64bits(x->bytes, x->len);
        if (got != want) {
            fprintf(stderr, "round %d record %d: len %llu head %llu tail %llu: %016llx, XXH3 %016llx\n", r, i,
                    (unsigned long long)x->len, (unsigned long long)x->head, (unsigned long long)x->tail,
                    (unsigned long long)got, (unsigned long long)want);
            bad++;
        }
        free(x->bytes);
    }
    if (!host) cudaFree(ds), cudaFree(d_buf), cudaFree(d_jobs), cudaFree(d_sums);
    free(hs), free(h_buf), free(jobs);
    return bad;
}

int main(int argc, char **argv)
{
    host = argc > 1 && !strcmp(argv[1], "--host");
    int n = 0;
    if (!host && (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)) {
        printf("no usable CUDA device: skipped\n");
        return 77;
    }
    if (!host) CK((cudaError_t)wcg_hash_setup());
    /* segments up to 1.5 KB (most blocks straddle), up to 64 KB, up to 4 MB */
    static const uint64_t max_seg[] = {1536, 65536, 4u << 20};
    int bad = 0;
    uint64_t segments = 0;
    for (int r = 0; r < 6; r++) bad += round_(r, max_seg[r % 3], &segments);
    printf("%d of %d records wrong over %llu segments\n", bad, 6 * N_REC, (unsigned long long)segments);
    return bad ? 1 : 0;
}
