/* CPU decode speed of the rANS tile decoder, reference against the best
 * version this CPU runs, beside memcpy and zstd -d of the same INT8 bytes,
 * on one core, per model file (every 2-D tensor quantized as the encoder
 * does, coded in 256 K-weight tiles with one table per tensor).
 *
 * usage: bench_dsp [--prob-bits B] MODEL.safetensors...
 *        bench_dsp --wcodec FILE.wcodec...
 * The second form times wc_decode_tensor (checksum, rANS, inverse
 * transforms, predictions: the public API on one thread) per coded tensor
 * of an encoded file.
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of 7
 * passes, so that other work on the machine does not count; everything
 * printed is measured in this run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#include <wcodec/wcodec.h>

#include "dsp.h"
#include "inputs.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define BEST_OF_7(secs, ...)                          \
    do {                                              \
        secs = 1e9;                                   \
        for (int rep_ = 0; rep_ < 7; rep_++) {        \
            double t0_ = cpu_now();                   \
            __VA_ARGS__;                              \
            double t_ = cpu_now() - t0_;              \
            if (t_ < secs) secs = t_;                 \
        }                                             \
    } while (0)

static int decode_all(const wc_dsp *d, const ca_set *set, const ca_coded *cd, uint8_t *out)
{
    uint8_t *o = out;
    for (size_t i = 0; i < set->n; i++) {
        for (size_t t = 0; t < cd[i].n_tiles; t++) {
            uint64_t r0, c0;
            uint32_t h, w;
            ca_tile(&cd[i], &set->m[i], t, &r0, &c0, &h, &w);
            if (d->rans_decode(cd[i].dec, cd[i].row_map ? cd[i].row_map + r0 : NULL, w, cd[i].streams + cd[i].off[t],
                               cd[i].off[t + 1] - cd[i].off[t], o, (size_t)h * w))
                return -1;
            o += (size_t)h * w;
        }
    }
    return 0;
}

/* GB/s of INT8 output of wc_decode_tensor per coded tensor of each file. */
static int bench_files(int argc, char **argv)
{
    for (int a = 0; a < argc; a++) {
        wc_file *f;
        wc_err e = {0};
        if (wc_file_open(&f, argv[a], &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        printf("\n%s\n\n| tensor | weights | tables | decode GB/s |\n|---|---|---|---|\n", argv[a]);
        double big_b = 0, big_s = 0;
        for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
            wc_tensor_info t;
            wc_file_tensor_info(f, i, &t);
            if (t.coding != WC_CODING_RANS_I8) continue;
            uint8_t *q = malloc(t.out_bytes);
            float *s = malloc(4 * t.n_scales + 4);
            double secs;
            int bad = 0;
            BEST_OF_7(secs, bad |= wc_decode_tensor(f, i, q, t.out_bytes, s, t.n_scales, &e));
            if (bad) return fprintf(stderr, "%s\n", e.msg), 1;
            printf("| %s | %llu | %u | %.3f |\n", t.name, (unsigned long long)t.out_bytes, t.n_tables,
                   t.out_bytes / secs / 1e9);
            if (t.out_bytes >= 256 * 1024) big_b += (double)t.out_bytes, big_s += secs;
            free(q), free(s);
        }
        if (big_s > 0) printf("| **tensors >= 256K weights** | %.0f | | %.3f |\n", big_b, big_b / big_s / 1e9);
        wc_file_close(f);
    }
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t bits = 13;
    int first = 1;
    if (argc > 1 && !strcmp(argv[1], "--wcodec")) return bench_files(argc - 2, argv + 2);
    if (argc > 2 && !strcmp(argv[1], "--prob-bits")) bits = (uint32_t)atoi(argv[2]), first = 3;
    if (first >= argc) return fprintf(stderr, "usage: %s [--prob-bits B] MODEL.safetensors...\n", argv[0]), 2;
    wc_dsp ref, best;
    wc_dsp_init_ref(&ref);
    wc_dsp_init(&best, wc_cpu_flags());
    const unsigned cpu = wc_cpu_flags();
    const char *level = best.rans_decode == ref.rans_decode ? "(none)" : cpu & WC_CPU_AVX512 ? "avx512" : "avx2";

    printf("| model | INT8 MB | coded MB | reference GB/s | %s GB/s | speed-up | memcpy GB/s | zstd -d GB/s |\n"
           "|---|---|---|---|---|---|---|---|\n", level);
    double tot_bytes = 0, tot_ref = 0, tot_best = 0;
    for (int a = first; a < argc; a++) {
        ca_set set = {0};
        if (ca_load_real(argv[a], 4096, UINT64_MAX, &set)) return 1;
        ca_coded *cd = calloc(set.n, sizeof *cd);
        uint8_t *src = malloc(set.bytes), *out = malloc(set.bytes), *back = malloc(set.bytes);
        size_t coded = 0, o = 0;
        for (size_t i = 0; i < set.n; i++) {
            if (ca_code(&set.m[i], bits, 1, 262144, &cd[i])) return fprintf(stderr, "coding failed\n"), 1;
            coded += cd[i].off[cd[i].n_tiles];
            /* the INT8 bytes in the order the tiles decode them */
            for (size_t t = 0; t < cd[i].n_tiles; t++) {
                uint64_t r0, c0;
                uint32_t h, w;
                ca_tile(&cd[i], &set.m[i], t, &r0, &c0, &h, &w);
                for (uint32_t y = 0; y < h; y++, o += w) memcpy(src + o, set.m[i].q + (r0 + y) * set.m[i].cols + c0, w);
            }
        }
        const size_t zcap = ZSTD_compressBound(set.bytes);
        uint8_t *z = malloc(zcap);
        const size_t zn = ZSTD_compress(z, zcap, src, set.bytes, 19);
        if (ZSTD_isError(zn)) return fprintf(stderr, "zstd failed\n"), 1;

        double t_ref, t_best, t_cpy, t_z;
        int bad = 0;
        BEST_OF_7(t_ref, bad |= decode_all(&ref, &set, cd, out));
        BEST_OF_7(t_best, bad |= decode_all(&best, &set, cd, back));
        BEST_OF_7(t_cpy, memcpy(out, src, set.bytes); __asm__ volatile("" : : "r"(out) : "memory"));
        BEST_OF_7(t_z, bad |= ZSTD_isError(ZSTD_decompress(out, set.bytes, z, zn)));
        if (bad || memcmp(back, src, set.bytes)) return fprintf(stderr, "%s: decode failed\n", argv[a]), 1;
        const double b = (double)set.bytes;
        const char *name = strrchr(argv[a], '/');
        printf("| %s | %.1f | %.1f | %.2f | %.2f | %.1fx | %.1f | %.2f |\n", name ? name + 1 : argv[a], b / 1e6,
               coded / 1e6, b / t_ref / 1e9, b / t_best / 1e9, t_ref / t_best, b / t_cpy / 1e9, b / t_z / 1e9);
        tot_bytes += b, tot_ref += t_ref, tot_best += t_best;
        for (size_t i = 0; i < set.n; i++) ca_coded_free(&cd[i]);
        free(cd), free(src), free(out), free(back), free(z);
        ca_set_free(&set);
    }
    printf("| all | %.1f | | %.2f | %.2f | %.1fx | | |\n", tot_bytes / 1e6, tot_bytes / tot_ref / 1e9,
           tot_bytes / tot_best / 1e9, tot_ref / tot_best);
    return 0;
}
