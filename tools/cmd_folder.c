/* wcodec decode --folder: a .wcodec encoded from a Hugging Face folder back
 * into one: model.safetensors plus the JSON files of its metadata. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "progress.h"

/* The files of the metadata written back (what wc_encode_hf_folder stores). */
static const char *const folder_files[] = {"config.json", "generation_config.json", NULL};

/* The metadata record of `in` parsed, or NULL with a message. */
static json_object *read_metadata(const char *in)
{
    wc_file *f;
    wc_err e = {0};
    int r = wc_file_open(&f, in, &e);
    if (r) {
        wct_report(&e, r);
        return NULL;
    }
    json_object *meta = NULL;
    int i = wc_file_find(f, WC_METADATA_NAME);
    wc_tensor_info ti;
    char *text = NULL;
    if (i < 0 || wc_file_tensor_info(f, (size_t)i, &ti) || !(text = calloc(ti.out_bytes + 1, 1))) {
        fprintf(stderr, "wcodec: %s: no metadata record (encoded from a file, not a Hugging Face "
                        "folder?)\n", in);
    } else if ((r = wc_decode_tensor(f, (size_t)i, text, ti.out_bytes, NULL, 0, &e))) {
        wct_report(&e, r);
    } else if (!json_object_is_type(meta = json_tokener_parse(text), json_type_object)) {
        fprintf(stderr, "wcodec: %s: the metadata record is not a JSON object\n", in);
        json_object_put(meta);
        meta = NULL;
    }
    free(text);
    wc_file_close(f);
    return meta;
}

static int write_text(const char *path, const char *text, bool force)
{
    if (!force && access(path, F_OK) == 0) {
        fprintf(stderr, "wcodec: %s exists; use -f to replace it\n", path);
        return 1;
    }
    FILE *fp = fopen(path, "wb");
    size_t n = strlen(text);
    if (!fp || fwrite(text, 1, n, fp) != n || fclose(fp) != 0) {
        fprintf(stderr, "wcodec: %s: %s\n", path, strerror(errno));
        if (fp) fclose(fp);
        return 1;
    }
    return 0;
}

int wct_decode_folder(const char *in, const char *dir, wc_dtype dtype, bool force, bool quiet)
{
    json_object *meta = read_metadata(in), *cfg;
    if (!meta) return 1;
    int ret = 0;
    if (!json_object_object_get_ex(meta, "config.json", &cfg)) {
        fprintf(stderr, "wcodec: %s: no config.json in its metadata\n", in);
        ret = 1;
    } else if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wcodec: %s: %s\n", dir, strerror(errno));
        ret = 1;
    }
    char path[4096];
    for (int k = 0; !ret && folder_files[k]; k++) {
        json_object *v;
        if (!json_object_object_get_ex(meta, folder_files[k], &v)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, folder_files[k]);
        ret = write_text(path, json_object_get_string(v), force);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!ret && !force && access(path, F_OK) == 0) {
        fprintf(stderr, "wcodec: %s exists; use -f to replace it\n", path);
        ret = 1;
    }
    if (!ret) {
        wct_progress p;
        wct_progress_init(&p, "decode", quiet);
        wc_err e = {0};
        int r = wc_decode_file_as(in, path, dtype, wct_progress_cb, &p, &e);
        wct_progress_end(&p);
        ret = r ? wct_report(&e, r) : 0;
    }
    json_object_put(meta);
    return ret;
}
