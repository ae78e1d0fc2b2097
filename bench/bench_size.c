/* Size and CPU speed of the coding, per 2-D tensor and in total, beside the
 * order-0 entropy of the same INT8 values and zstd -19 of the same bytes.
 *
 * usage: bench_size [-j N] [--ints-as-float] [--prob-bits B] [--tile-weights N]
 *                   [--pred P] [--tx T] [--max-tables K] [--no-timing] MODEL.safetensors...
 * Prints one table per model; everything it prints is measured in this run. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <wcodec/wcodec.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double entropy_bits(const uint8_t *p, uint64_t n)
{
    uint64_t h[256] = {0};
    for (uint64_t i = 0; i < n; i++) h[p[i]]++;
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (h[s]) bits -= (double)h[s] * log2((double)h[s] / (double)n);
    return bits;
}

typedef struct sums {
    uint64_t w, coded, zstd;
    double h0, dec_s, memcpy_s, zstd_s, out;
} sums;

/* Runs f over the tensor until 0.2 s have passed; seconds per run. */
#define TIME_LOOP(secs, body)                                   \
    do {                                                        \
        int reps_ = 0;                                          \
        double t0_ = now(), t_;                                 \
        do {                                                    \
            body;                                               \
            reps_++;                                            \
        } while ((t_ = now() - t0_) < 0.2);                     \
        secs = t_ / reps_;                                      \
    } while (0)

static bool timing = true;

static int bench_model(const char *path, int threads, bool ints, const wc_encode_opts *base)
{
    char out[] = "/tmp/bench-size-XXXXXX.wcodec";
    int fd = mkstemps(out, 7);
    if (fd < 0) return perror("mkstemps"), 1;
    close(fd);
    wc_encode_opts o = *base;
    o.ints_as_float = ints;
    wc_err e = {0};
    double enc[2] = {0, 0};
    int thr[2] = {1, threads};
    for (int k = 0; k < 2; k++) {
        o.threads = thr[k];
        double t0 = now();
        if (wc_encode_file(path, out, &o, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        enc[k] = now() - t0;
    }
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    double in_size = (double)ftell(fp);
    fclose(fp);
    wc_file *f;
    if (wc_file_open(&f, out, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
    printf("\n### %s%s\n\n", path, ints ? " (integer matrices quantized as float)" : "");
    printf("| tensor | shape | weights | H0 bits/w | zstd -19 bits/w | wcodec bits/w | wcodec - H0 |"
           " decode GB/s | memcpy GB/s | zstd -d GB/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
    sums all = {0}, big = {0};
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        wc_file_tensor_info(f, i, &t);
        if (t.coding != WC_CODING_RANS_I8) continue;
        uint64_t n = t.out_bytes;
        uint8_t *q = malloc(n), *c = malloc(n), *z = malloc(ZSTD_compressBound(n));
        float *s = malloc(4 * t.n_scales + 4);
        if (wc_decode_tensor(f, i, q, n, s, t.n_scales, &e)) return fprintf(stderr, "%s\n", e.msg), 1;
        size_t zn = ZSTD_compress(z, ZSTD_compressBound(n), q, n, 19);
        double dec = NAN, cpy = NAN, zd = NAN;
        if (timing) {
            TIME_LOOP(dec, wc_decode_tensor(f, i, q, n, s, t.n_scales, &e));
            TIME_LOOP(cpy, memcpy(c, q, n); __asm__ volatile("" ::"r"(c) : "memory"));
            TIME_LOOP(zd, ZSTD_decompress(c, n, z, zn));
        }
        double h0 = entropy_bits(q, n), coded = 8.0 * (double)(t.stored_bytes - 4 * t.n_scales);
        printf("| %s | %llux%llu | %llu | %.3f | %.3f | %.3f | %+.3f | %.3f | %.1f | %.2f |\n", t.name,
               (unsigned long long)t.rows, (unsigned long long)t.cols, (unsigned long long)n, h0 / n,
               8.0 * zn / n, coded / n, (coded - h0) / n, n / dec / 1e9, n / cpy / 1e9, n / zd / 1e9);
        for (int k = 0; k < 2; k++) {
            sums *m = k ? &big : &all;
            if (k && n < 256 * 1024) continue;
            m->w += n, m->coded += t.stored_bytes - 4 * t.n_scales, m->zstd += zn, m->h0 += h0;
            m->dec_s += dec, m->memcpy_s += cpy, m->zstd_s += zd, m->out += (double)n;
        }
        free(q), free(c), free(z), free(s);
    }
    for (int k = 0; k < 2; k++) {
        sums *m = k ? &big : &all;
        if (!m->w) continue;
        printf("| **%s** | | %llu | %.3f | %.3f | %.3f | %+.3f | %.3f | %.1f | %.2f |\n",
               k ? "tensors >= 256K weights" : "all coded tensors", (unsigned long long)m->w,
               m->h0 / m->w, 8.0 * m->zstd / m->w, 8.0 * m->coded / m->w,
               (8.0 * m->coded - m->h0) / m->w, m->out / m->dec_s / 1e9, m->out / m->memcpy_s / 1e9,
               m->out / m->zstd_s / 1e9);
    }
    printf("\nencode: %.1f MB/s of safetensors input on 1 thread, %.1f MB/s on %d threads; "
           ".wcodec %.2f MB from %.2f MB\n",
           in_size / enc[0] / 1e6, in_size / enc[1] / 1e6, threads, wc_file_size(f) / 1e6, in_size / 1e6);
    wc_file_close(f);
    unlink(out);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {{"threads", 1, 0, 'j'}, {"ints-as-float", 0, 0, 'I'},
                                       {"prob-bits", 1, 0, 'P'}, {"tile-weights", 1, 0, 'T'},
                                       {"pred", 1, 0, 'R'}, {"tx", 1, 0, 'X'},
                                       {"max-tables", 1, 0, 'K'}, {"no-timing", 0, 0, 'N'},
                                       {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
    bool ints = false;
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    while ((c = getopt_long(argc, argv, "j:h", lo, NULL)) != -1) {
        if (c == 'j') threads = atoi(optarg);
        else if (c == 'I') ints = true;
        else if (c == 'P') o.prob_bits = (uint32_t)atoi(optarg);
        else if (c == 'T') o.tile_weights = (uint32_t)atoi(optarg);
        else if (c == 'R') o.force_pred = atoi(optarg);
        else if (c == 'X') o.force_tx = atoi(optarg);
        else if (c == 'K') o.max_tables = (uint32_t)atoi(optarg);
        else if (c == 'N') timing = false;
        else {
            printf("usage: bench_size [-j N] [--ints-as-float] [--prob-bits B] [--tile-weights N]\n"
                   "                  [--pred P] [--tx T] [--max-tables K] [--no-timing] MODEL.safetensors...\n"
                   "Per coded tensor: order-0 entropy, zstd -19 and wcodec in bits per weight;\n"
                   "decode speed through wc_decode_tensor (one core, fastest CPU path) beside memcpy and zstd -d.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) return fputs("bench_size: no model given (--help)\n", stderr), 2;
    for (int i = optind; i < argc; i++)
        if (bench_model(argv[i], threads, ints, &o)) return 1;
    return 0;
}
