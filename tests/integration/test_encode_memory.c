/* The encoder's memory does not grow with the model (issue 21, part 3): it
 * maps its input whole, and before the fix every page it read stayed in its
 * RSS, so encoding a 6.7 GB file peaked at 7.5 GB. Here a model many times
 * the encoder's window is encoded in-process and the growth of the process's
 * peak RSS (VmHWM: heap and mapped file pages alike) must stay under a bound
 * that a resident input would exceed; then the file must decode to its
 * source (the CPU reference). The bound is a count of bytes, not a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "helpers.h"
#include "wcodec/wcodec.h"

enum { ROWS = 512, COLS = 4096, N_CODED = 40, N_RAW = 40 };
#define TENSOR_BYTES ((long)ROWS * COLS)
#define INPUT_KB ((N_CODED + N_RAW) * TENSOR_BYTES / 1024) /* 160 MiB */
/* two threads, a window of four tensors: each in flight holds its input
 * pages, a symbol plane and its record (about three tensor sizes), so about
 * 12 tensor sizes, doubled for the allocator's slack and thread stacks; a
 * resident input would add INPUT_KB, 3.3 times the bound */
#define BOUND_KB (24 * TENSOR_BYTES / 1024) /* 48 MiB */

#ifdef __SANITIZE_ADDRESS__
/* ASan's quarantine keeps freed blocks resident (256 MB by default): its
 * memory, not the encoder's. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=0"; }
#endif

/* A field of /proc/self/status in kB, or -1. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* Sets VmHWM to the current RSS (Linux 4.0+), so that the growth measured is
 * the encoder's alone; where that is refused, VmHWM stays the process's peak
 * so far (a few MB here: the model was written from small buffers). */
static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* Every tensor points at the same buffers, so writing the model costs the
 * test no memory of its size. */
static void write_model(const char *path, const int8_t *q, const float *s)
{
    static char names[2 * N_CODED + N_RAW][16];
    th_tensor t[2 * N_CODED + N_RAW];
    size_t n = 0;
    for (int i = 0; i < N_CODED; i++) {
        snprintf(names[n], sizeof names[n], "c%02d", i);
        t[n] = (th_tensor){names[n], WC_DT_I8, 2, {ROWS, COLS}, q};
        n++;
        snprintf(names[n], sizeof names[n], "c%02d_scale", i);
        t[n] = (th_tensor){names[n], WC_DT_F32, 1, {ROWS}, s};
        n++;
    }
    for (int i = 0; i < N_RAW; i++) { /* U8 matrices are stored raw */
        snprintf(names[n], sizeof names[n], "r%02d", i);
        t[n] = (th_tensor){names[n], WC_DT_U8, 2, {ROWS, COLS}, q};
        n++;
    }
    assert_int_equal(th_write_safetensors(path, t, n), 0);
}

static void test_peak_rss_bounded(void **state)
{
    (void)state;
    int8_t *q = malloc(TENSOR_BYTES);
    float *s = malloc(ROWS * sizeof *s);
    assert_non_null(q);
    assert_non_null(s);
    uint64_t seed = 21;
    for (long i = 0; i < TENSOR_BYTES; i++) q[i] = (int8_t)((int)(th_rand(&seed) % 31) - 15);
    for (int r = 0; r < ROWS; r++) s[r] = 0.01f * (float)(r + 1);
    static char src[4096], out[4096]; /* no leak when an assert jumps out */
    snprintf(src, sizeof src, "%s", th_path("big.safetensors"));
    snprintf(out, sizeof out, "%s", th_path("big.wcodec"));
    write_model(src, q, s);
    free(q);
    free(s);

    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.threads = 2;
    wc_err e = {0};
    reset_peak();
    long before = status_kb("VmHWM");
    assert_true(before > 0);
    if (wc_encode_file(src, out, &o, &e)) fail_msg("%s", e.msg);
    long growth = status_kb("VmHWM") - before;
    print_message("input %ld kB, peak RSS growth %ld kB, bound %ld kB\n", (long)INPUT_KB, growth,
                  (long)BOUND_KB);
    assert_true(growth < BOUND_KB);

    wc_file *f;
    if (wc_file_open(&f, out, &e)) fail_msg("%s", e.msg);
    assert_int_equal(wc_file_tensor_count(f), N_CODED + N_RAW);
    if (wc_file_compare_source(f, src, &e)) fail_msg("%s", e.msg);
    wc_file_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_peak_rss_bounded)};
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r;
}
