/* wcodec decode --folder: a .wcodec encoded from a Hugging Face folder back
 * into one: model.safetensors plus the JSON files of its metadata.
 * wcodec encode --shards: a sharded folder to a .wcodec per shard and an
 * index (docs/OPERATIONS.md, "Models larger than the disk"). */
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

/* ---- encode --shards ---- */

#define MAX_JSON_FILE (64u << 20)

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shard names of the index's weight_map, sorted and unique, each a plain
 * file name ending in .safetensors; NULL with a message. */
static const char **shard_names(const char *index, json_object *wmap, size_t *n)
{
    size_t k = 0, cap = (size_t)json_object_object_length(wmap);
    const char **v = calloc(cap + 1, sizeof *v);
    if (!v) return NULL;
    json_object_object_foreach(wmap, tensor, jf) {
        const char *s = json_object_is_type(jf, json_type_string) ? json_object_get_string(jf) : "";
        size_t len = strlen(s);
        if (strchr(s, '/') || len <= 12 || strcmp(s + len - 12, ".safetensors")) {
            fprintf(stderr, "wcodec: %s: tensor '%s': '%s' is not a .safetensors file name in "
                            "the folder\n", index, tensor, s);
            free(v);
            return NULL;
        }
        v[k++] = s;
    }
    qsort(v, k, sizeof *v, cmp_name);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || strcmp(v[u - 1], v[i])) v[u++] = v[i];
    *n = u;
    return v;
}

/* Copies dir/name to outdir/name; an absent optional file is skipped. */
static int copy_text(const char *dir, const char *outdir, const char *name, bool required,
                     bool force)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno == ENOENT && !required) return 0;
        fprintf(stderr, "wcodec: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *buf = malloc(MAX_JSON_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_JSON_FILE + 1, fp) : 0;
    int bad = !buf || ferror(fp) || n > MAX_JSON_FILE;
    fclose(fp);
    if (bad) {
        fprintf(stderr, "wcodec: %s: unreadable or larger than %u bytes\n", path, MAX_JSON_FILE);
        free(buf);
        return 1;
    }
    buf[n] = 0;
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    int ret = write_text(path, buf, force);
    free(buf);
    return ret;
}

/* Adds every tensor of the .wcodec `path` to wmap as in `file`; its size. */
static int index_shard(const char *path, const char *file, json_object *wmap, uint64_t *size)
{
    wc_file *f;
    wc_err e = {0};
    int r = wc_file_open(&f, path, &e);
    if (r) return wct_report(&e, r);
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        json_object *prev;
        if (!wc_file_tensor_info(f, i, &ti) && json_object_object_get_ex(wmap, ti.name, &prev)) {
            fprintf(stderr, "wcodec: tensor '%s' is in both %s and %s\n", ti.name,
                    json_object_get_string(prev), file);
            wc_file_close(f);
            return 1;
        }
        if (wc_file_tensor_info(f, i, &ti) ||
            json_object_object_add(wmap, ti.name, json_object_new_string(file))) {
            fprintf(stderr, "wcodec: %s: tensor %zu: out of memory\n", path, i);
            wc_file_close(f);
            return 1;
        }
    }
    *size += wc_file_size(f);
    wc_file_close(f);
    return 0;
}

/* outdir/<shard k>.wcodec for every shard; each checked before any is made. */
static char **output_names(const char *outdir, const char **names, size_t n, bool force)
{
    char **out = calloc(n + 1, sizeof *out);
    for (size_t k = 0; out && k < n; k++) {
        size_t len = strlen(outdir) + strlen(names[k]) + 16;
        if (!(out[k] = malloc(len))) break;
        snprintf(out[k], len, "%s/%.*s.wcodec", outdir, (int)(strlen(names[k]) - 12), names[k]);
        if (wct_check_output(out[k], force)) {
            for (size_t i = 0; i <= k; i++) free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

/* model.wcodec.index.json, last: once it is there, every shard is. */
static int write_index(const char *path, json_object *wmap, uint64_t total)
{
    json_object *root = json_object_new_object(), *meta = json_object_new_object();
    int ret = !root || !meta ||
              json_object_object_add(meta, "total_size", json_object_new_uint64(total)) ||
              json_object_object_add(root, "metadata", meta);
    if (ret) json_object_put(meta);
    else if (json_object_object_add(root, "weight_map", json_object_get(wmap)))
        ret = 1, json_object_put(wmap);
    if (ret) fprintf(stderr, "wcodec: %s: out of memory\n", path);
    else if (json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY)) {
        fprintf(stderr, "wcodec: %s: %s\n", path, json_util_get_last_err());
        ret = 1;
    }
    json_object_put(root);
    return ret;
}

int wct_encode_shards(const char *dir, const char *outdir, wc_encode_opts *o, bool force,
                      bool quiet, bool verbose)
{
    char index[4096], path[4096], label[64];
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    json_object *idx = json_object_from_file(index), *wmap, *omap = json_object_new_object();
    const char **names = NULL;
    char **outs = NULL;
    size_t n = 0;
    uint64_t total = 0;
    int ret = 1;
    if (!idx || !json_object_object_get_ex(idx, "weight_map", &wmap) ||
        !json_object_is_type(wmap, json_type_object)) {
        fprintf(stderr, "wcodec: %s: unreadable, or no weight_map object (--shards needs a "
                        "sharded Hugging Face folder)\n", index);
    } else if (!omap || !(names = shard_names(index, wmap, &n))) {
        if (!omap) fprintf(stderr, "wcodec: out of memory\n");
    } else if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wcodec: %s: %s\n", outdir, strerror(errno));
    } else if ((outs = output_names(outdir, names, n, force))) {
        snprintf(path, sizeof path, "%s/model.wcodec.index.json", outdir);
        ret = wct_check_output(path, force);
        for (size_t k = 0; k < n && !ret; k++) {
            char src[4096];
            snprintf(src, sizeof src, "%s/%s", dir, names[k]);
            snprintf(label, sizeof label, "%zu/%zu", k + 1, n);
            ret = wct_encode_one(src, outs[k], false, o, label, quiet, verbose);
            if (!ret) ret = index_shard(outs[k], strrchr(outs[k], '/') + 1, omap, &total);
        }
        struct stat a, b; /* the JSON files, unless outdir is dir */
        bool same = stat(dir, &a) == 0 && stat(outdir, &b) == 0 && a.st_dev == b.st_dev &&
                    a.st_ino == b.st_ino;
        if (!ret && !same) ret = copy_text(dir, outdir, "config.json", true, force);
        if (!ret && !same) ret = copy_text(dir, outdir, "generation_config.json", false, force);
        if (!ret) ret = write_index(path, omap, total);
    }
    for (size_t k = 0; outs && k < n; k++) free(outs[k]);
    free(outs);
    free(names);
    json_object_put(omap);
    json_object_put(idx);
    return ret;
}
