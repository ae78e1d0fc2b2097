/* Chooses the versions of the hot routines for this CPU.
 *
 * The transforms and predictions take the highest level the CPU has. The
 * rANS decoder is chosen by speed, not by instruction set: its SIMD forms
 * rest on gathers, which are fast on some x86 cores (about 4 cycles per
 * ymm gather on the development machine of 2026-12-03) and several times
 * slower on others (Skylake to Ice Lake servers, worse again under the
 * Gather Data Sampling mitigation), where the plain-load forms win. Which
 * one a server has is not ours to choose, so the first decode times each
 * candidate on a synthetic tile (bench/RESULTS.md, issue 18). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp.h"

#if defined(__x86_64__) && defined(WC_HAVE_AVX2)
void wc_dsp_init_avx2(wc_dsp *d);
int wc_rans_decode_avx2(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                        const uint8_t *stream, size_t len, uint8_t *out, size_t n);
int wc_rans_decode_avx2_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                              const uint8_t *stream, size_t len, uint8_t *out, size_t n);
void wc_rans_decode2_avx2(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
void wc_rans_decode2_avx2_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
#endif
#if defined(__x86_64__) && defined(WC_HAVE_AVX512)
int wc_rans_decode_avx512(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                          const uint8_t *stream, size_t len, uint8_t *out, size_t n);
int wc_rans_decode_avx512_loads(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                                const uint8_t *stream, size_t len, uint8_t *out, size_t n);
void wc_rans_decode2_avx512(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
void wc_rans_decode2_avx512_loads(const wc_rans_job *a, const wc_rans_job *b, int r[2]);
#endif

static const wc_rans_level LEVELS[] = {
    {"ref", 0, wc_rans_decode_ref, wc_rans_decode2_ref},
#if defined(__x86_64__) && defined(WC_HAVE_AVX2)
    {"avx2-loads", WC_CPU_AVX2, wc_rans_decode_avx2_loads, wc_rans_decode2_avx2_loads},
    {"avx2", WC_CPU_AVX2, wc_rans_decode_avx2, wc_rans_decode2_avx2},
#endif
#if defined(__x86_64__) && defined(WC_HAVE_AVX512)
    {"avx512-loads", WC_CPU_AVX2 | WC_CPU_AVX512, wc_rans_decode_avx512_loads, wc_rans_decode2_avx512_loads},
    {"avx512", WC_CPU_AVX2 | WC_CPU_AVX512, wc_rans_decode_avx512, wc_rans_decode2_avx512},
#endif
};
#define N_LEVELS (sizeof LEVELS / sizeof *LEVELS)

unsigned wc_cpu_flags(void)
{
    unsigned f = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= WC_CPU_AVX2;
    /* gcc's check includes the OS's saving of the AVX-512 state (XCR0) */
    if ((f & WC_CPU_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        f |= WC_CPU_AVX512;
#endif
    return f;
}

void wc_cpu_describe(char *buf, size_t size)
{
    char name[256] = "unknown CPU", line[4096];
    long family = -1, model = -1;
    FILE *f = fopen("/proc/cpuinfo", "r");
    /* the first processor's entry ends at the first empty line */
    while (f && fgets(line, sizeof line, f) && line[0] != '\n') {
        const char *c = strchr(line, ':');
        if (!c) continue;
        if (!strncmp(line, "model name", 10)) {
            snprintf(name, sizeof name, "%s", c + 1 + strspn(c + 1, " "));
            name[strcspn(name, "\n")] = 0;
        } else if (!strncmp(line, "cpu family", 10)) {
            family = strtol(c + 1, NULL, 10);
        } else if (!strncmp(line, "model\t", 6)) {
            model = strtol(c + 1, NULL, 10);
        }
    }
    if (f) fclose(f);
    const unsigned cpu = wc_cpu_flags();
    snprintf(buf, size, "%s (family %ld model %ld, %s), rANS decoder %s", name, family, model,
             cpu & WC_CPU_AVX512 ? "AVX-512" : cpu & WC_CPU_AVX2 ? "AVX2" : "no AVX2", wc_rans_pick(cpu)->name);
}

size_t wc_rans_levels(const wc_rans_level **levels)
{
    *levels = LEVELS;
    return N_LEVELS;
}

/* ---- calibration ------------------------------------------------------- */

/* Seconds per decode of the synthetic tile, per level; 0 where not timed
 * (the CPU lacks it, or the calibration could not run). */
static double level_secs[N_LEVELS];
static pthread_once_t calib_once = PTHREAD_ONCE_INIT;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 64 K symbols of a two-sided geometric distribution like INT8 weights
 * (about 6.5 bits each), one 13-bit table (the encoder's default), 64 rows
 * of 1024: the shape of a default tile's steps, a quarter of its length.
 * Each level decodes it once to warm up, then five times; the best time
 * counts (other work on the machine only adds). About 2 ms in all. */
enum { CAL_W = 1024, CAL_H = 64, CAL_N = CAL_W * CAL_H };

static void calibrate(void)
{
    const unsigned cpu = wc_cpu_flags();
    wc_rans_dec_table *dec = malloc(sizeof *dec);
    uint8_t *sym = malloc(CAL_N), *out = malloc(CAL_N);
    wc_buf b = {0};
    uint64_t h[256] = {0};
    double p = 1e6;
    for (int v = 0; v < 128 && p >= 1; v++, p /= 1.08) h[v] = h[(256 - v) & 255] = (uint64_t)p;
    wc_rans_table t;
    if (!dec || !sym || !out || wc_rans_normalize(h, 13, &t)) goto done;
    wc_rans_dec_table_init(dec, &t);
    uint64_t rng = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < CAL_N; i++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        sym[i] = dec->slot_sym[(rng >> 40) & 8191];
    }
    if (wc_rans_encode_tile(&dec->t, NULL, CAL_W, sym, CAL_N, &b)) goto done;
    for (size_t k = 0; k < N_LEVELS; k++) {
        if ((LEVELS[k].flags & cpu) != LEVELS[k].flags) continue;
        double best = 1e9;
        for (int rep = 0; rep < 6; rep++) {
            const double t0 = mono_now();
            const int r = LEVELS[k].fn(dec, NULL, CAL_W, b.data, b.len, out, CAL_N);
            const double s = mono_now() - t0;
            if (r || memcmp(out, sym, CAL_N)) {
                best = 0; /* cannot happen (checkasm): never pick it */
                break;
            }
            if (rep && s < best) best = s;
        }
        level_secs[k] = best > 0 ? best : 0;
    }
done:
    wc_buf_free(&b);
    free(dec), free(sym), free(out);
}

const wc_rans_level *wc_rans_pick(unsigned flags)
{
    flags &= wc_cpu_flags();
    const char *force = getenv("WC_RANS_DECODER");
    for (size_t k = 0; force && k < N_LEVELS; k++)
        if (!strcmp(force, LEVELS[k].name) && (LEVELS[k].flags & flags) == LEVELS[k].flags) return &LEVELS[k];
    /* one level allowed: nothing to time */
    size_t allowed = 0, last = 0;
    for (size_t k = 0; k < N_LEVELS; k++)
        if ((LEVELS[k].flags & flags) == LEVELS[k].flags) allowed++, last = k;
    if (allowed == 1) return &LEVELS[last];
    pthread_once(&calib_once, calibrate);
    size_t best = last; /* the calibration failed: the highest level */
    for (size_t k = 0; k < N_LEVELS; k++)
        if ((LEVELS[k].flags & flags) == LEVELS[k].flags && level_secs[k] > 0 &&
            (level_secs[best] <= 0 || level_secs[k] < level_secs[best]))
            best = k;
    return &LEVELS[best];
}

void wc_dsp_init(wc_dsp *d, unsigned flags)
{
    wc_dsp_init_ref(d);
#if defined(__x86_64__) && defined(WC_HAVE_AVX2)
    if (flags & WC_CPU_AVX2) wc_dsp_init_avx2(d);
#endif
    const wc_rans_level *lv = wc_rans_pick(flags);
    d->rans_decode = lv->fn;
    d->rans_decode2 = lv->fn2;
}
