/* The models the GPU tests decode (tests/gpu/test_gpu.c): synthetic
 * safetensors files of every shape edge and kind of values, and how they
 * are encoded. Written next to the test's other files (th_path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "format.h"
#include "gpu_models.h"
#include "helpers.h"

float *randf(size_t n, uint64_t seed, float scale, int kind)
{
    float *p = malloc(4 * n + 4);
    for (size_t i = 0; i < n; i++) {
        double v = 0;
        if (kind == 0) {
            for (int k = 0; k < 4; k++) v += (double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
        } else if (kind == 1) {
            /* smooth along rows and repeated every 7 rows: prediction pays */
            size_t c = i % 97;
            v = 0.3 * ((double)((c * 13 + (i / 97) % 7 * 5) % 41) / 41.0 - 0.5) +
                0.01 * ((double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5);
        } else {
            /* heavy tails: a few outliers */
            v = (double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
            if (th_rand(&seed) % 64 == 0) v *= 40;
        }
        p[i] = (float)(v * scale);
    }
    return p;
}

void encode_ints(const char *src, const char *out, uint32_t tile_weights, uint32_t bits, int pred, int tx,
                 uint32_t max_tables, bool ints_as_float)
{
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.ints_as_float = ints_as_float;
    o.tile_weights = tile_weights;
    o.prob_bits = bits;
    o.min_weights = 1;
    o.force_pred = pred;
    o.force_tx = tx;
    if (max_tables) o.max_tables = max_tables;
    wc_err e = {0};
    int r = wc_encode_file(src, out, &o, &e);
    if (r) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(r, 0);
}

void encode(const char *src, const char *out, uint32_t tile_weights, uint32_t bits, int pred, int tx,
            uint32_t max_tables)
{
    encode_ints(src, out, tile_weights, bits, pred, tx, max_tables, false);
}

static const struct { uint32_t nd; uint64_t s[4]; } shapes[] = {
    {2, {1, 1}}, {2, {1, 33}}, {2, {33, 1}}, {2, {3, 5}}, {2, {17, 31}}, {2, {64, 64}}, {2, {5, 1000}},
    {2, {1000, 3}}, {3, {7, 13, 3}}, {4, {6, 5, 3, 3}}, {2, {129, 257}}, {2, {300, 700}}, {1, {77}},
    {2, {96, 512}}, {2, {3, 5000}}, /* rows wider than the GPU's avg chunk (4096) */
};
#define N_SHAPES (sizeof shapes / sizeof *shapes)

/* rows x cols values whose tails get heavier from row to row (seven kinds
 * of rows): the encoder then gives rows tables of their own. */
static float *rand_rows(uint64_t rows, uint64_t cols, uint64_t seed)
{
    float *p = malloc(4 * rows * cols + 4);
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) {
            double v = (double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
            if (th_rand(&seed) % (2 + r % 7 * 20) == 0) v *= 40;
            p[r * cols + c] = (float)v;
        }
    return p;
}

/* kind 0-2: randf's kinds; 3: rand_rows */
const char *make_model(int kind)
{
    static char path[4][512];
    if (path[kind][0]) return path[kind];
    th_tensor t[N_SHAPES];
    float *data[N_SHAPES];
    char names[N_SHAPES][32];
    for (size_t i = 0; i < N_SHAPES; i++) {
        uint64_t numel = 1;
        for (uint32_t d = 0; d < shapes[i].nd; d++) numel *= shapes[i].s[d];
        data[i] = kind == 3 ? rand_rows(shapes[i].s[0], numel / shapes[i].s[0], 300 + i)
                            : randf(numel, 100 * kind + i, 0.1f * (float)(i + 1), kind);
        snprintf(names[i], sizeof names[i], "layer%zu.weight", i);
        t[i] = (th_tensor){names[i], WC_DT_F32, shapes[i].nd, {0}, data[i]};
        memcpy(t[i].shape, shapes[i].s, sizeof shapes[i].s);
    }
    char name[64];
    snprintf(name, sizeof name, "model%d.safetensors", kind);
    snprintf(path[kind], sizeof path[kind], "%s", th_path(name));
    assert_int_equal(th_write_safetensors(path[kind], t, N_SHAPES), 0);
    for (size_t i = 0; i < N_SHAPES; i++) free(data[i]);
    return path[kind];
}
