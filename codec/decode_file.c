/* wc_decode_file: .wcodec in, safetensors out (N as I8 beside N_scale). */
#include <stdio.h>
#include <stdlib.h>

#include "outfile.h"
#include "reader.h"
#include "safetensors.h"

int wc_decode_file(const char *in_path, const char *out_path, wc_progress_fn progress,
                   void *progress_user, wc_err *err)
{
    wc_file *f;
    int r = wc_file_open(&f, in_path, err);
    if (r) return r;
    size_t n = wc_file_tensor_count(f), no = 0;
    wc_st_out_tensor *ot = calloc(2 * n + 1, sizeof *ot);
    char **names = calloc(n + 1, sizeof *names);
    uint8_t *header = NULL, *buf = NULL;
    size_t header_size;
    uint64_t file_size, total = 0, done = 0;
    wc_outfile out = {.fd = -1};
    if (!ot || !names) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        ot[no] = (wc_st_out_tensor){.name = ti.name, .dtype = ti.out_dtype, .ndim = ti.ndim,
                                    .size = ti.out_bytes};
        memcpy(ot[no++].shape, ti.shape, sizeof ti.shape);
        total += ti.out_bytes;
        if (!ti.n_scales) continue;
        size_t len = strlen(ti.name) + sizeof "_scale";
        if (!(names[i] = malloc(len))) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(names[i], len, "%s_scale", ti.name);
        if (wc_file_find(f, names[i]) >= 0) {
            r = wc_fail(err, WC_EFORMAT, "%s: scales of '%s' would overwrite tensor '%s'", in_path,
                        ti.name, names[i]);
            goto out;
        }
        ot[no++] = (wc_st_out_tensor){.name = names[i], .dtype = WC_DT_F32, .ndim = 1,
                                      .shape = {ti.n_scales}, .size = 4 * ti.n_scales};
    }
    if ((r = wc_st_layout(ot, no, &header, &header_size, &file_size, err)) ||
        (r = wc_outfile_open(&out, out_path, err)) ||
        (r = wc_outfile_write(&out, header, header_size, err)))
        goto out;
    for (size_t i = 0, k = 0; i < n; i++, k++) {
        const wc_st_out_tensor *t = &ot[k], *s = names[i] ? &ot[k + 1] : NULL;
        size_t need = t->size + (s ? s->size : 0);
        uint8_t *b = realloc(buf, need ? need : 1);
        if (!b) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        buf = b;
        /* t's data and then its scales are adjacent in the output */
        float *scales = s ? (float *)(buf + t->size) : NULL;
        if (s && t->size % 4) {
            scales = malloc(s->size);
            if (!scales) {
                r = wc_fail(err, WC_ENOMEM, "out of memory");
                goto out;
            }
        }
        r = wc_decode_tensor(f, i, buf, t->size, scales, s ? s->size / 4 : 0, err);
        if (!r && scales && (uint8_t *)scales != buf + t->size) memcpy(buf + t->size, scales, s->size);
        if (scales && (uint8_t *)scales != buf + t->size) free(scales);
        if (!r) r = wc_outfile_pwrite(&out, buf, need, t->offset, err);
        if (r) goto out;
        if (s) k++;
        done += t->size;
        if (progress) progress(progress_user, done, total);
    }
    r = wc_outfile_commit(&out, err);
out:
    wc_outfile_abort(&out);
    for (size_t i = 0; i < n; i++) free(names ? names[i] : NULL);
    free(names);
    free(ot);
    free(header);
    free(buf);
    wc_file_close(f);
    return r;
}
