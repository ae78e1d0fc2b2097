/* CPU decode speed of the rANS tile decoder, reference against the best
 * version this CPU runs, beside memcpy and zstd -d of the same INT8 bytes,
 * on one core, per model file (every 2-D tensor quantized as the encoder
 * does, coded in 256 K-weight tiles with one table per tensor).
 *
 * Prints the CPU model first: figures are per CPU (bench/RESULTS.md).
 * Every rANS decoder the CPU runs has a column (the gather and plain-load
 * forms of each SIMD level), and the last column is the decoder
 * wc_dsp_init chooses (its calibration, or WC_RANS_DECODER) against zstd;
 * "2 tiles" is that decoder's two-tile form (rans_decode2) over
 * consecutive tiles, which the record reader does not use yet.
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

static const char usage[] =
    "usage: bench_dsp [--prob-bits B] MODEL.safetensors...\n"
    "       bench_dsp --wcodec FILE.wcodec...\n"
    "\n"
    "The first form codes every 2-D tensor of each model (13-bit tables unless -B,\n"
    "one table per tensor, 256 K-weight tiles) and prints one row per model: decode\n"
    "speed of each rANS decoder this CPU runs, zstd -d (level 19) and memcpy of the\n"
    "same INT8 bytes, on one core. The second form times wc_decode_tensor (checksum,\n"
    "rANS, inverse transforms, predictions: the public API on one thread) per coded\n"
    "tensor of an encoded file. WC_RANS_DECODER=NAME forces the decoder the library\n"
    "(and the last column) uses.\n";

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

/* The same, two consecutive tiles (of a tensor or across tensors) at a
 * time through rans_decode2. */
static int decode_all2(const wc_dsp *d, const ca_set *set, const ca_coded *cd, uint8_t *out)
{
    uint8_t *o = out;
    wc_rans_job pend = {0};
    bool have = false;
    for (size_t i = 0; i < set->n; i++) {
        for (size_t t = 0; t < cd[i].n_tiles; t++) {
            uint64_t r0, c0;
            uint32_t h, w;
            ca_tile(&cd[i], &set->m[i], t, &r0, &c0, &h, &w);
            const wc_rans_job j = {cd[i].dec, cd[i].row_map ? cd[i].row_map + r0 : NULL, w,
                                   cd[i].streams + cd[i].off[t], cd[i].off[t + 1] - cd[i].off[t], o, (size_t)h * w};
            o += (size_t)h * w;
            if (!have) {
                pend = j, have = true;
                continue;
            }
            int r[2];
            d->rans_decode2(&pend, &j, r);
            if (r[0] || r[1]) return -1;
            have = false;
        }
    }
    if (have && d->rans_decode(pend.tables, pend.row_table, pend.w, pend.stream, pend.len, pend.out, pend.n)) return -1;
    return 0;
}

/* GB/s of INT8 output of wc_decode_tensor per coded tensor of each file. */
static int bench_files(int argc, char **argv)
{
    char desc[512];
    wc_cpu_describe(desc, sizeof desc);
    printf("CPU: %s; decoder chosen: %s\n", desc, wc_rans_pick(wc_cpu_flags())->name);
    for (int a = 0; a < argc; a++) {
        wc_file *f;
        wc_err e = {0};
        if (wc_file_open(&f, argv[a], &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        printf("\n%s\n\n| tensor | weights | tables | decode GB/s |\n|---|---|---|---|\n", argv[a]);
        double big_b = 0, big_s = 0, all_b = 0, all_s = 0;
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
            all_b += (double)t.out_bytes, all_s += secs;
            free(q), free(s);
        }
        if (big_s > 0) printf("| **tensors >= 256K weights** | %.0f | | %.3f |\n", big_b, big_b / big_s / 1e9);
        /* what `wcodec bench` times (there by wall clock) */
        if (all_s > 0) printf("| **all coded tensors** | %.0f | | %.3f |\n", all_b, all_b / all_s / 1e9);
        wc_file_close(f);
    }
    return 0;
}

/* The INT8 bytes of a model in the order its tiles decode them, and its
 * coding (13-bit tables, one per tensor, 256 K-weight tiles). */
static int load_model(const char *path, uint32_t bits, ca_set *set, ca_coded **cd_out, uint8_t **src_out,
                      size_t *coded)
{
    if (ca_load_real(path, 4096, UINT64_MAX, set)) return -1;
    ca_coded *cd = calloc(set->n, sizeof *cd);
    uint8_t *src = malloc(set->bytes ? set->bytes : 1);
    if (!cd || !src) return free(cd), free(src), -1;
    size_t o = 0;
    *coded = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (ca_code(&set->m[i], bits, 1, 262144, &cd[i])) return fprintf(stderr, "coding failed\n"), -1;
        *coded += cd[i].off[cd[i].n_tiles];
        for (size_t t = 0; t < cd[i].n_tiles; t++) {
            uint64_t r0, c0;
            uint32_t h, w;
            ca_tile(&cd[i], &set->m[i], t, &r0, &c0, &h, &w);
            for (uint32_t y = 0; y < h; y++, o += w) memcpy(src + o, set->m[i].q + (r0 + y) * set->m[i].cols + c0, w);
        }
    }
    *cd_out = cd, *src_out = src;
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t bits = 13;
    int first = 1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) return fputs(usage, stdout), 0;
    if (argc > 1 && !strcmp(argv[1], "--wcodec")) return bench_files(argc - 2, argv + 2);
    if (argc > 2 && !strcmp(argv[1], "--prob-bits")) bits = (uint32_t)atoi(argv[2]), first = 3;
    if (first >= argc) return fputs(usage, stderr), 2;

    /* every rANS decoder this CPU runs, and the one wc_dsp_init chooses */
    const unsigned cpu = wc_cpu_flags();
    const wc_rans_level *lv, *pick = wc_rans_pick(cpu);
    const size_t n_lv = wc_rans_levels(&lv);
    size_t use[16], n_use = 0;
    for (size_t k = 0; k < n_lv && n_use < 16; k++)
        if ((lv[k].flags & cpu) == lv[k].flags) use[n_use++] = k;
    char desc[512];
    wc_cpu_describe(desc, sizeof desc);
    printf("CPU: %s; decoder chosen: %s%s\n\nINT8 output GB/s on one core, best of 7\n\n", desc, pick->name,
           getenv("WC_RANS_DECODER") ? " (WC_RANS_DECODER)" : " (calibration)");
    printf("| model | INT8 MB | coded MB |");
    for (size_t u = 0; u < n_use; u++) printf(" %s |", lv[use[u]].name);
    printf(" %s, 2 tiles | zstd -d | memcpy | %s / zstd |\n|---|---|---|", pick->name, pick->name);
    for (size_t u = 0; u < n_use; u++) printf("---|");
    printf("---|---|---|---|\n");

    double tot_bytes = 0, tot_t[16] = {0}, tot_z = 0, tot_2 = 0;
    for (int a = first; a < argc; a++) {
        ca_set set = {0};
        ca_coded *cd = NULL;
        uint8_t *src = NULL;
        size_t coded = 0;
        if (load_model(argv[a], bits, &set, &cd, &src, &coded)) return 1;
        uint8_t *out = malloc(set.bytes + 1);
        const size_t zcap = ZSTD_compressBound(set.bytes);
        uint8_t *z = malloc(zcap);
        const size_t zn = ZSTD_compress(z, zcap, src, set.bytes, 19);
        if (!out || !z || ZSTD_isError(zn)) return fprintf(stderr, "zstd failed\n"), 1;

        const double b = (double)set.bytes;
        double t[16], t_cpy, t_z, t_pick = 0;
        const char *name = strrchr(argv[a], '/');
        printf("| %s | %.1f | %.1f |", name ? name + 1 : argv[a], b / 1e6, coded / 1e6);
        for (size_t u = 0; u < n_use; u++) {
            wc_dsp d;
            wc_dsp_init_ref(&d);
            d.rans_decode = lv[use[u]].fn;
            int bad = 0;
            memset(out, 0, set.bytes);
            BEST_OF_7(t[u], bad |= decode_all(&d, &set, cd, out));
            if (bad || memcmp(out, src, set.bytes))
                return fprintf(stderr, "%s: %s: decode failed\n", argv[a], lv[use[u]].name), 1;
            printf(" %.2f |", b / t[u] / 1e9);
            tot_t[u] += t[u];
            if (&lv[use[u]] == pick) t_pick = t[u];
        }
        int bad = 0;
        double t_2;
        wc_dsp best;
        wc_dsp_init(&best, cpu);
        memset(out, 0, set.bytes);
        BEST_OF_7(t_2, bad |= decode_all2(&best, &set, cd, out));
        if (bad || memcmp(out, src, set.bytes)) return fprintf(stderr, "%s: two-tile decode failed\n", argv[a]), 1;
        printf(" %.2f |", b / t_2 / 1e9);
        tot_2 += t_2;
        BEST_OF_7(t_cpy, memcpy(out, src, set.bytes); __asm__ volatile("" : : "r"(out) : "memory"));
        BEST_OF_7(t_z, bad |= ZSTD_isError(ZSTD_decompress(out, set.bytes, z, zn)));
        if (bad || memcmp(out, src, set.bytes)) return fprintf(stderr, "%s: zstd -d failed\n", argv[a]), 1;
        printf(" %.2f | %.1f | %.2fx |\n", b / t_z / 1e9, b / t_cpy / 1e9, t_z / t_pick);
        tot_bytes += b, tot_z += t_z;
        for (size_t i = 0; i < set.n; i++) ca_coded_free(&cd[i]);
        free(cd), free(src), free(out), free(z);
        ca_set_free(&set);
    }
    printf("| all | %.1f | |", tot_bytes / 1e6);
    double t_pick = 0;
    for (size_t u = 0; u < n_use; u++) {
        printf(" %.2f |", tot_bytes / tot_t[u] / 1e9);
        if (&lv[use[u]] == pick) t_pick = tot_t[u];
    }
    printf(" %.2f | %.2f | | %.2fx |\n", tot_bytes / tot_2 / 1e9, tot_bytes / tot_z / 1e9, tot_z / t_pick);
    return 0;
}
