/* wc_file_compare_source: does a .wcodec file hold exactly what encoding
 * its source safetensors file should give? */
#include <stdio.h>
#include <stdlib.h>

#include "quant.h"
#include "reader.h"
#include "safetensors.h"

/* The INT8 values and scales the quantizer gives for source tensor t. */
static int expected_quant(const wc_st_tensor *t, const wc_entry *e, int8_t *q, float *s,
                          const char *path, wc_err *err)
{
    const int es = wc_dtype_size(t->dtype);
    for (uint64_t y = 0; y < e->rows; y++) {
        size_t bad;
        if (wc_quantize_row(t->data + y * e->cols * es, t->dtype, e->cols, q + y * e->cols, &s[y],
                            &bad))
            return wc_fail(err, WC_ERANGE, "%s: tensor '%s': row %llu holds NaN or Inf", path,
                           t->name, (unsigned long long)y);
    }
    return 0;
}

static int compare_one(const wc_file *f, size_t i, const wc_st_file *src, wc_err *err)
{
    const wc_entry *e = wc_file_entry(f, i);
    long si = wc_st_find(src, e->name);
    if (si < 0)
        return wc_fail(err, WC_ENOTFOUND, "%s: tensor '%s' is not in %s", wc_file_label(f), e->name,
                       src->path);
    const wc_st_tensor *t = &src->tensors[si];
    if (t->ndim != e->ndim || memcmp(t->shape, e->shape, 8 * e->ndim) || t->dtype != e->dtype)
        return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': dtype or shape differ from %s",
                       wc_file_label(f), e->name, src->path);
    uint64_t n = wc_entry_out_bytes(e), rows = e->flags & WC_ENTRY_HAS_SCALES ? e->rows : 0;
    uint8_t *got = malloc(n + 1), *want = malloc(n + 1);
    float *gs = malloc(4 * rows + 4), *ws = malloc(4 * rows + 4);
    int r = 0;
    if (!got || !want || !gs || !ws) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    if ((r = wc_decode_tensor(f, i, got, n, gs, rows, err))) goto out;
    if (e->coding == WC_CODING_RANS_I8 && e->dtype != WC_DT_I8) {
        if ((r = expected_quant(t, e, (int8_t *)want, ws, src->path, err))) goto out;
    } else {
        memcpy(want, t->data, n);
        if (rows) {
            char name[WC_MAX_NAME + 16];
            snprintf(name, sizeof name, "%s_scale", e->name);
            long k = wc_st_find(src, name);
            if (k < 0) {
                r = wc_fail(err, WC_ENOTFOUND, "%s: scales '%s' not in %s", wc_file_label(f), name,
                            src->path);
                goto out;
            }
            memcpy(ws, src->tensors[k].data, 4 * rows);
        }
    }
    for (uint64_t k = 0; k < n; k++)
        if (got[k] != want[k]) {
            r = wc_fail(err, WC_ECORRUPT,
                        "%s: tensor '%s': byte %llu decodes to %d, the source gives %d",
                        wc_file_label(f), e->name, (unsigned long long)k, got[k], want[k]);
            goto out;
        }
    if (memcmp(gs, ws, 4 * rows))
        r = wc_fail(err, WC_ECORRUPT, "%s: tensor '%s': scales differ from the source",
                    wc_file_label(f), e->name);
out:
    free(got);
    free(want);
    free(gs);
    free(ws);
    return r;
}

int wc_file_compare_source(const wc_file *f, const char *safetensors_path, wc_err *err)
{
    wc_st_file src;
    int r = wc_st_open(&src, safetensors_path, err);
    if (r) return r;
    for (size_t i = 0; i < wc_file_tensor_count(f) && !r; i++) r = compare_one(f, i, &src, err);
    wc_st_close(&src);
    return r;
}
