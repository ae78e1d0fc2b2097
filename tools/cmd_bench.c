/* wcodec bench: the main job. Encodes a model, decodes and verifies it, and
 * prints sizes and speeds. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "progress.h"

static const char bench_help[] =
    "usage: wcodec bench [options] [MODEL.safetensors]\n"
    "\n"
    "Encodes MODEL (default: the example model shipped with wcodec), decodes it, checks\n"
    "every tensor against the quantized source, and prints tensors, sizes before and after,\n"
    "bits per weight and encode/decode speeds (decode: one core, the fastest CPU decoder of\n"
    "this machine, beside memcpy of the same bytes).\n"
    "\n"
    "  -j, --threads N   threads for the parallel encode and decode runs (default: one per\n"
    "                    CPU)\n"
    "  -k, --keep FILE   keep the .wcodec file here (default: a temporary file, removed)\n"
    "      --ints-as-float  quantize I16/I32 matrices like float ones (as encode does)\n"
    "  -h, --help        this text\n";

static const char *default_model(void)
{
    if (access(WCT_EXAMPLE_MODEL, R_OK) == 0) return WCT_EXAMPLE_MODEL;
    return WCT_INSTALLED_EXAMPLE;
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

typedef struct totals {
    size_t coded, raw;
    uint64_t weights, coded_bytes, scale_bytes, out_bytes;
    double h0_bits, decode_s, memcpy_s;
} totals;

/* Decodes every coded tensor `reps` times, its tiles on `threads` threads
 * (1: on this thread). */
static int decode_pass(const wc_file *f, totals *t, bool first, int reps, int threads, wc_err *e)
{
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding != WC_CODING_RANS_I8) {
            if (first) t->raw++;
            continue;
        }
        uint8_t *out = malloc(ti.out_bytes), *copy = malloc(ti.out_bytes);
        float *sc = malloc(4 * ti.n_scales + 4);
        if (!out || !copy || !sc) {
            free(out), free(copy), free(sc);
            e->code = WC_ENOMEM;
            return WC_ENOMEM;
        }
        int r = 0;
        const wc_decode_opts o = {.threads = threads};
        double t0 = wct_now();
        for (int k = 0; k < reps && !r; k++) r = wc_decode_tensor_ex(f, i, out, ti.out_bytes, sc, ti.n_scales, &o, e);
        double t1 = wct_now();
        for (int k = 0; k < reps; k++) {
            memcpy(copy, out, ti.out_bytes);
            __asm__ volatile("" ::"r"(copy) : "memory");
        }
        t->memcpy_s += wct_now() - t1;
        t->decode_s += t1 - t0;
        t->out_bytes += ti.out_bytes * (uint64_t)reps;
        if (first && !r) {
            t->coded++;
            t->weights += ti.out_bytes;
            t->coded_bytes += ti.stored_bytes - 4 * ti.n_scales;
            t->scale_bytes += 4 * ti.n_scales;
            t->h0_bits += entropy_bits(out, ti.out_bytes);
        }
        free(out), free(copy), free(sc);
        if (r) return r;
    }
    return 0;
}

static int encode_timed(const char *in, const char *out, int threads, bool ints, double *secs, wc_err *e)
{
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.threads = threads;
    o.ints_as_float = ints;
    wct_progress p;
    wct_progress_init(&p, "encode", false);
    o.progress = wct_progress_cb;
    o.progress_user = &p;
    double t0 = wct_now();
    int r = wc_encode_file(in, out, &o, e);
    *secs = wct_now() - t0;
    wct_progress_end(&p);
    return r;
}

int wct_bench(int argc, char **argv)
{
    static const struct option lo[] = {{"threads", 1, 0, 'j'}, {"keep", 1, 0, 'k'}, {"ints-as-float", 0, 0, 'I'},
                                       {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), c;
    const char *keep = NULL;
    bool ints = false;
    while ((c = getopt_long(argc, argv, "j:k:h", lo, NULL)) != -1) {
        if (c == 'j') threads = (int)wct_parse_long("-j", optarg, 1, 1024);
        else if (c == 'k') keep = optarg;
        else if (c == 'I') ints = true;
        else if (c == 'h') return fputs(bench_help, stdout), 0;
        else return fputs(bench_help, stderr), 2;
    }
    if (optind < argc - 1) return fputs(bench_help, stderr), 2;
    const char *model = optind < argc ? argv[optind] : default_model();
    char tmp[] = "/tmp/wcodec-bench-XXXXXX";
    char path[sizeof tmp + 16];
    if (!keep && !mkdtemp(tmp)) return perror("wcodec: mkdtemp"), 1;
    snprintf(path, sizeof path, "%s/model.wcodec", tmp);
    const char *out = keep ? keep : path;

    wc_err e = {0};
    wc_file *f = NULL;
    totals t = {0};
    double enc1 = 0, encn = 0;
    int r = encode_timed(model, out, 1, ints, &enc1, &e);
    if (!r && threads > 1) r = encode_timed(model, out, threads, ints, &encn, &e);
    if (!r) r = wc_file_open(&f, out, &e);
    if (!r) r = decode_pass(f, &t, true, 1, 1, &e);
    /* repeat until the timing is long enough to trust */
    int reps = t.decode_s > 0 ? (int)(0.5 / t.decode_s) : 1;
    if (!r && reps > 1) {
        totals again = {0};
        r = decode_pass(f, &again, false, reps, 1, &e);
        t.decode_s = again.decode_s, t.memcpy_s = again.memcpy_s, t.out_bytes = again.out_bytes;
    }
    totals par = {0};
    if (!r && threads > 1) r = decode_pass(f, &par, false, reps > 1 ? reps : 1, threads, &e);
    if (!r) r = wc_file_compare_source(f, model, &e);
    if (r) {
        wct_report(&e, r);
    } else {
        FILE *in = fopen(model, "rb");
        long in_size = 0;
        if (in && !fseek(in, 0, SEEK_END)) in_size = ftell(in);
        if (in) fclose(in);
        double wcs = (double)wc_file_size(f);
        printf("wcodec bench: %s\n", model);
        char cpu[512];
        wc_cpu_describe(cpu, sizeof cpu); /* the decode figure depends on it */
        printf("  %-22s %s, %ld online\n", "CPU", cpu, sysconf(_SC_NPROCESSORS_ONLN));
        printf("  %-22s %zu (%zu coded, %zu kept raw)\n", "tensors", t.coded + t.raw, t.coded, t.raw);
        printf("  %-22s %.2f MB\n", "safetensors", in_size / 1e6);
        printf("  %-22s %.2f MB (%.2fx smaller)\n", ".wcodec", wcs / 1e6, in_size / wcs);
        if (t.weights) {
            printf("  %-22s %.3f M weights at %.3f bits/weight (order-0 entropy %.3f); scales %.2f MB\n",
                   "coded INT8", t.weights / 1e6, 8.0 * t.coded_bytes / t.weights,
                   t.h0_bits / t.weights, t.scale_bytes / 1e6);
            printf("  %-22s %.3f GB/s of INT8 output on one core (memcpy of the same bytes: %.2f GB/s)\n",
                   "decode", t.out_bytes / t.decode_s / 1e9, t.out_bytes / t.memcpy_s / 1e9);
            if (threads > 1)
                printf("  %-22s %.3f GB/s on %d threads (a tensor's tiles split between them)\n", "",
                       par.out_bytes / par.decode_s / 1e9, threads);
        }
        printf("  %-22s %.1f MB/s of input on 1 thread", "encode", in_size / enc1 / 1e6);
        if (threads > 1) printf(", %.1f MB/s on %d threads", in_size / encn / 1e6, threads);
        printf("\n  %-22s ok: every tensor equals the quantized source\n", "verify");
    }
    wc_file_close(f);
    if (!keep) {
        unlink(path);
        rmdir(tmp);
    }
    return r ? 1 : 0;
}
