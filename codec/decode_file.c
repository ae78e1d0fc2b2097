/* wc_decode_file(_as): .wcodec in, safetensors out: N as I8 beside N_scale,
 * or N dequantized to a float dtype; the metadata record becomes the
 * header's "__metadata__". */
#include <stdio.h>
#include <stdlib.h>

#include "outfile.h"
#include "reader.h"
#include "safetensors.h"

static bool is_float(wc_dtype dt) { return dt == WC_DT_F32 || dt == WC_DT_F16 || dt == WC_DT_BF16; }

/* The metadata record's JSON as a string (malloc'd), or NULL without one. */
static int read_metadata(const wc_file *f, char **out, wc_err *err)
{
    *out = NULL;
    int i = wc_file_find(f, WC_METADATA_NAME);
    if (i < 0) return 0;
    wc_tensor_info ti;
    wc_file_tensor_info(f, (size_t)i, &ti);
    if (ti.out_dtype != WC_DT_U8 || ti.ndim != 1)
        return wc_fail(err, WC_EFORMAT, "%s: metadata record '%s' is not a U8 vector",
                       wc_file_label(f), WC_METADATA_NAME);
    char *m = malloc(ti.out_bytes + 1);
    if (!m) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = wc_decode_tensor(f, (size_t)i, m, ti.out_bytes, NULL, 0, err);
    m[ti.out_bytes] = 0;
    if (!r && strlen(m) != ti.out_bytes)
        r = wc_fail(err, WC_EFORMAT, "%s: metadata record holds a NUL byte", wc_file_label(f));
    if (r) free(m);
    else *out = m;
    return r;
}

/* Output tensors: ot[k] for tensor i, then its scales (names[i]) when
 * written INT8; dq[i]: written dequantized. */
static int describe(const wc_file *f, const char *in_path, wc_dtype dtype, wc_st_out_tensor *ot,
                    size_t *no, char **names, bool *dq, uint64_t *total, wc_err *err)
{
    size_t n = wc_file_tensor_count(f);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (!strcmp(ti.name, WC_METADATA_NAME)) continue;
        dq[i] = dtype && (ti.coding == WC_CODING_RANS_I8 || is_float(ti.dtype));
        uint64_t size = dq[i] ? ti.rows * ti.cols * (uint64_t)wc_dtype_size(dtype) : ti.out_bytes;
        ot[*no] = (wc_st_out_tensor){.name = ti.name, .dtype = dq[i] ? dtype : ti.out_dtype,
                                     .ndim = ti.ndim, .size = size};
        memcpy(ot[(*no)++].shape, ti.shape, sizeof ti.shape);
        *total += size;
        if (!ti.n_scales || dq[i]) continue;
        size_t len = strlen(ti.name) + sizeof "_scale";
        if (!(names[i] = malloc(len))) return wc_fail(err, WC_ENOMEM, "out of memory");
        snprintf(names[i], len, "%s_scale", ti.name);
        if (wc_file_find(f, names[i]) >= 0)
            return wc_fail(err, WC_EFORMAT, "%s: scales of '%s' would overwrite tensor '%s'", in_path,
                           ti.name, names[i]);
        ot[(*no)++] = (wc_st_out_tensor){.name = names[i], .dtype = WC_DT_F32, .ndim = 1,
                                         .shape = {ti.n_scales}, .size = 4 * ti.n_scales};
    }
    return 0;
}

/* Decodes tensor i into buf: t's data, then its scales s (if any) adjacent. */
static int decode_one(const wc_file *f, size_t i, bool dq, wc_dtype dtype, const wc_st_out_tensor *t,
                      const wc_st_out_tensor *s, uint8_t *buf, wc_err *err)
{
    if (dq) return wc_decode_tensor_dequant(f, i, dtype, buf, t->size, err);
    float *scales = s ? (float *)(buf + t->size) : NULL;
    if (s && t->size % 4 && !(scales = malloc(s->size))) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = wc_decode_tensor(f, i, buf, t->size, scales, s ? s->size / 4 : 0, err);
    if (scales && (uint8_t *)scales != buf + t->size) {
        if (!r) memcpy(buf + t->size, scales, s->size);
        free(scales);
    }
    return r;
}

int wc_decode_file_as(const char *in_path, const char *out_path, wc_dtype dtype,
                      wc_progress_fn progress, void *progress_user, wc_err *err)
{
    if (dtype && !is_float(dtype))
        return wc_fail(err, WC_EINVAL, "%s: decoded weights can be BF16, F16 or F32, not %s",
                       in_path, wc_dtype_name(dtype) ? wc_dtype_name(dtype) : "an unknown dtype");
    wc_file *f;
    int r = wc_file_open(&f, in_path, err);
    if (r) return r;
    size_t n = wc_file_tensor_count(f), no = 0;
    wc_st_out_tensor *ot = calloc(2 * n + 1, sizeof *ot);
    char **names = calloc(n + 1, sizeof *names);
    bool *dq = calloc(n + 1, sizeof *dq);
    char *meta = NULL;
    uint8_t *header = NULL, *buf = NULL;
    size_t header_size;
    uint64_t file_size, total = 0, done = 0;
    wc_outfile out = {.fd = -1};
    if (!ot || !names || !dq) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    if ((r = read_metadata(f, &meta, err)) ||
        (r = describe(f, in_path, dtype, ot, &no, names, dq, &total, err)) ||
        (r = wc_st_layout_meta(ot, no, meta, &header, &header_size, &file_size, err)) ||
        (r = wc_outfile_open(&out, out_path, err)) ||
        (r = wc_outfile_write(&out, header, header_size, err)))
        goto out;
    for (size_t i = 0, k = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (!strcmp(ti.name, WC_METADATA_NAME)) continue;
        const wc_st_out_tensor *t = &ot[k], *s = names[i] ? &ot[k + 1] : NULL;
        k += s ? 2 : 1;
        size_t need = t->size + (s ? s->size : 0);
        uint8_t *b = realloc(buf, need ? need : 1);
        if (!b) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        buf = b;
        if ((r = decode_one(f, i, dq[i], dtype, t, s, buf, err)) ||
            (r = wc_outfile_pwrite(&out, buf, need, t->offset, err)))
            goto out;
        done += t->size;
        if (progress) progress(progress_user, done, total);
    }
    r = wc_outfile_commit(&out, err);
out:
    wc_outfile_abort(&out);
    for (size_t i = 0; i < n; i++) free(names ? names[i] : NULL);
    free(names);
    free(dq);
    free(ot);
    free(meta);
    free(header);
    free(buf);
    wc_file_close(f);
    return r;
}

int wc_decode_file(const char *in_path, const char *out_path, wc_progress_fn progress,
                   void *progress_user, wc_err *err)
{
    return wc_decode_file_as(in_path, out_path, 0, progress, progress_user, err);
}
