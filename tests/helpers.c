#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "helpers.h"

static char tmpdir[64];

const char *th_tmpdir(void)
{
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/wcodec-test-XXXXXX");
        if (!mkdtemp(tmpdir)) abort();
    }
    return tmpdir;
}

const char *th_path(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, sizeof bufs[0], "%s/%s", th_tmpdir(), name);
    return b;
}

void th_cleanup(void)
{
    if (!tmpdir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    tmpdir[0] = 0;
}

int th_write_safetensors(const char *path, const th_tensor *t, size_t n)
{
    wc_st_out_tensor *o = calloc(n + 1, sizeof *o);
    uint8_t *h;
    size_t hs;
    uint64_t fs;
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
        o[i] = (wc_st_out_tensor){.name = t[i].name, .dtype = t[i].dtype, .ndim = t[i].ndim,
                                  .size = numel * wc_dtype_size(t[i].dtype)};
        memcpy(o[i].shape, t[i].shape, sizeof o[i].shape);
    }
    int r = wc_st_layout(o, n, &h, &hs, &fs, NULL);
    if (r) return r;
    FILE *f = fopen(path, "wb");
    r = f ? 0 : -1;
    if (f) {
        fwrite(h, 1, hs, f);
        for (size_t i = 0; i < n; i++) fwrite(t[i].data, 1, o[i].size, f);
        r = fclose(f) ? -1 : 0;
    }
    free(h);
    free(o);
    return r;
}

uint8_t *th_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return p;
}

int th_write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

void th_reseal(uint8_t *file, size_t size)
{
    uint64_t dir_off = wc_rd64(file + 24), dir_size = wc_rd64(file + 32);
    if (dir_off <= size && dir_size <= size - dir_off)
        wc_wr64(file + 48, wc_hash(file + dir_off, dir_size));
    wc_wr64(file + 56, wc_hash(file, 56));
}

size_t th_dir_entry(const uint8_t *file, size_t i)
{
    size_t pos = wc_rd64(file + 24);
    while (i--) pos += wc_rd16(file + pos);
    return pos;
}

uint64_t th_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

void th_rehash_record(uint8_t *file, size_t i)
{
    size_t e = th_dir_entry(file, i);
    uint64_t off = wc_rd64(file + e + 8), size = wc_rd64(file + e + 16);
    wc_wr64(file + e + 24, wc_hash(file + off, size));
}

int th_msg_has(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    const char *w;
    int ok = 1;
    while ((w = va_arg(ap, const char *)))
        if (!strstr(msg, w)) {
            fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, w);
            ok = 0;
        }
    va_end(ap);
    return ok;
}

int th_encode_model(const char *path, uint64_t rows, uint64_t seed)
{
    float *w = malloc(sizeof *w * rows * 200), b[77];
    if (!w) return -1;
    for (uint64_t i = 0; i < rows * 200; i++) w[i] = (float)((int64_t)(th_rand(&seed) % 2001) - 1000) / 333.0f;
    for (size_t i = 0; i < 77; i++) b[i] = (float)(th_rand(&seed) % 1000);
    const th_tensor t[] = {{"m.weight", WC_DT_F32, 2, {rows, 200}, w}, {"m.bias", WC_DT_F32, 1, {77}, b}};
    const char *src = th_path("src.safetensors");
    int r = th_write_safetensors(src, t, 2);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.tile_weights = 2000, o.threads = 1;
    wc_err e = {0};
    if (!r && (r = wc_encode_file(src, path, &o, &e))) fprintf(stderr, "th_encode_model %s: %s\n", path, e.msg);
    free(w);
    return r ? -1 : 0;
}

/* Sums of four uniforms in [-0.5, 0.5), times scale: bell-shaped weights. */
static float *randf(size_t n, uint64_t seed, float scale)
{
    float *p = malloc(4 * n + 4);
    for (size_t i = 0; p && i < n; i++) {
        double v = 0;
        for (int k = 0; k < 4; k++) v += (double)(th_rand(&seed) >> 11) / 9007199254740992.0 - 0.5;
        p[i] = (float)(v * scale);
    }
    return p;
}

const char *th_structured_model(void)
{
    static float per[96 * 200], smooth[50 * 300], noise[40 * 123], cube[16 * 10 * 20];
    static uint16_t rawm[9 * 7];
    static float vec[77];
    uint64_t seed = 99;
    float *base = randf(12 * 200, 77, 80.0f), *n = randf(40 * 123, 5, 1.0f), *c3 = randf(16 * 10 * 20, 6, 3.0f);
    if (!base || !n || !c3) {
        free(base), free(n), free(c3);
        return NULL;
    }
    for (size_t r = 0; r < 96; r++)
        for (size_t c = 0; c < 200; c++)
            per[r * 200 + c] = base[(r % 12) * 200 + c] + (float)(th_rand(&seed) % 3);
    for (size_t r = 0; r < 50; r++)
        for (size_t c = 0; c < 300; c++) smooth[r * 300 + c] = (float)(c + r) * 0.25f - 50.0f;
    memcpy(noise, n, sizeof noise);
    memcpy(cube, c3, sizeof cube);
    free(base), free(n), free(c3);
    for (size_t k = 0; k < 9 * 7; k++) rawm[k] = (uint16_t)(k * 977);
    for (size_t k = 0; k < 77; k++) vec[k] = (float)k * 0.5f;
    const th_tensor t[] = {{"periodic.weight", WC_DT_F32, 2, {96, 200}, per},
                           {"smooth.weight", WC_DT_F32, 2, {50, 300}, smooth},
                           {"noise.weight", WC_DT_F32, 2, {40, 123}, noise},
                           {"cube.weight", WC_DT_F32, 3, {16, 10, 20}, cube},
                           {"raw.weight", WC_DT_U16, 2, {9, 7}, rawm},
                           {"vec.bias", WC_DT_F32, 1, {77}, vec}};
    static char src[512];
    snprintf(src, sizeof src, "%s", th_path("structured.safetensors"));
    return th_write_safetensors(src, t, 6) ? NULL : src;
}
