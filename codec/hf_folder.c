/* wc_st_open_folder: a Hugging Face model folder read as one safetensors
 * input (issue 20). The folder's JSON files travel in the .wcodec's
 * metadata record (docs/FORMAT.md, "Metadata"); tokenizer files stay beside
 * the .wcodec and are not read. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "safetensors.h"

#define MAX_JSON_FILE (64u << 20)

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The whole of dir/name as a NUL-terminated string in *out; *out NULL and 0
 * when the file is absent and !required. */
static int read_text(const char *dir, const char *name, bool required, char **out, wc_err *err)
{
    *out = NULL;
    char *path = join(dir, name);
    if (!path) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno != ENOENT || required)
            r = wc_fail(err, WC_EIO, "%s: %s%s", path, strerror(errno),
                        errno == ENOENT ? " (a Hugging Face model folder has one)" : "");
        free(path);
        return r;
    }
    char *buf = malloc(MAX_JSON_FILE + 1);
    size_t n = buf ? fread(buf, 1, MAX_JSON_FILE + 1, fp) : 0;
    if (!buf) r = wc_fail(err, WC_ENOMEM, "out of memory");
    else if (ferror(fp)) r = wc_fail(err, WC_EIO, "%s: read error", path);
    else if (n > MAX_JSON_FILE) r = wc_fail(err, WC_EFORMAT, "%s: larger than %u bytes", path, MAX_JSON_FILE);
    fclose(fp);
    if (!r) {
        buf[n] = 0;
        *out = buf;
    } else {
        free(buf);
    }
    free(path);
    return r;
}

/* Parses text as a JSON object; the message names dir/name. */
static int parse_object(const char *dir, const char *name, const char *text, json_object **out,
                        wc_err *err)
{
    *out = json_tokener_parse(text);
    if (json_object_is_type(*out, json_type_object)) return 0;
    json_object_put(*out);
    *out = NULL;
    return wc_fail(err, WC_EFORMAT, "%s/%s: not a JSON object", dir, name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The shard file names the index's weight_map holds, sorted, unique, each
 * checked to be a plain file name in the folder that exists. */
static int list_shards(const char *dir, json_object *wmap, const char ***names, size_t *n, wc_err *err)
{
    size_t cap = (size_t)json_object_object_length(wmap), k = 0;
    const char **v = calloc(cap + 1, sizeof *v);
    if (!v) return wc_fail(err, WC_ENOMEM, "out of memory");
    json_object_object_foreach(wmap, tensor, jf) {
        const char *s = json_object_get_string(jf);
        if (!json_object_is_type(jf, json_type_string) || !*s || strchr(s, '/') ||
            !strcmp(s, ".") || !strcmp(s, "..")) {
            free(v);
            return wc_fail(err, WC_EFORMAT, "%s/model.safetensors.index.json: tensor '%s': '%s' is "
                           "not a file name in the folder", dir, tensor, s ? s : "(not a string)");
        }
        v[k++] = s;
    }
    qsort(v, k, sizeof *v, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || strcmp(v[u - 1], v[i])) v[u++] = v[i];
    for (size_t i = 0; i < u; i++) {
        char *p = join(dir, v[i]);
        struct stat sb;
        int miss = p && stat(p, &sb) != 0;
        free(p);
        if (!p || miss) {
            int r = p ? wc_fail(err, WC_EIO, "%s: shard '%s' named by model.safetensors.index.json "
                                "is missing", dir, v[i])
                      : wc_fail(err, WC_ENOMEM, "out of memory");
            free(v);
            return r;
        }
    }
    *names = v;
    *n = u;
    return 0;
}

/* Opens the shards (one model.safetensors without an index). */
static int open_shards(wc_st_file *f, const char *dir, wc_err *err)
{
    char *text;
    int r = read_text(dir, "model.safetensors.index.json", false, &text, err);
    if (r) return r;
    json_object *idx = NULL, *wmap = NULL;
    const char **names = NULL, *single = "model.safetensors";
    size_t n = 1;
    if (text) {
        r = parse_object(dir, "model.safetensors.index.json", text, &idx, err);
        if (!r && (!json_object_object_get_ex(idx, "weight_map", &wmap) ||
                   !json_object_is_type(wmap, json_type_object)))
            r = wc_fail(err, WC_EFORMAT, "%s/model.safetensors.index.json: no weight_map object", dir);
        if (!r) r = list_shards(dir, wmap, &names, &n, err);
    } else {
        char *p = join(dir, single);
        struct stat sb;
        if (!p) r = wc_fail(err, WC_ENOMEM, "out of memory");
        else if (stat(p, &sb) != 0)
            r = wc_fail(err, WC_EIO, "%s: neither model.safetensors nor "
                        "model.safetensors.index.json is there", dir);
        free(p);
        names = &single;
    }
    if (!r && !(f->shards = calloc(n, sizeof *f->shards))) r = wc_fail(err, WC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n && !r; i++) {
        char *p = join(dir, names[i]);
        r = p ? wc_st_open(&f->shards[i], p, err) : wc_fail(err, WC_ENOMEM, "out of memory");
        if (!r) f->n_shards++;
        free(p);
    }
    /* every tensor the index names is in the shard it names */
    if (!r && idx) {
        json_object_object_foreach(wmap, tensor, jf) {
            const char *s = json_object_get_string(jf);
            size_t k = 0;
            while (k < f->n_shards && strcmp(strrchr(f->shards[k].path, '/') + 1, s)) k++;
            if (k == f->n_shards || wc_st_find(&f->shards[k], tensor) < 0) {
                r = wc_fail(err, WC_EFORMAT, "%s: tensor '%s' is not in %s, where "
                            "model.safetensors.index.json puts it", dir, tensor, s);
                break;
            }
        }
    }
    if (names != &single) free(names);
    json_object_put(idx);
    free(text);
    return r;
}

/* The metadata record: {"format": "pt", "config.json": ..., "generation_config.json": ...}. */
static int build_metadata(wc_st_file *f, const char *dir, wc_err *err)
{
    static const char *const files[] = {"config.json", "generation_config.json"};
    json_object *meta = json_object_new_object();
    if (!meta || json_object_object_add(meta, "format", json_object_new_string("pt"))) {
        json_object_put(meta);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    int r = 0;
    for (size_t i = 0; i < 2 && !r; i++) {
        char *text;
        json_object *o = NULL;
        if ((r = read_text(dir, files[i], i == 0, &text, err)) || !text) continue;
        if (!(r = parse_object(dir, files[i], text, &o, err)) &&
            json_object_object_add(meta, files[i], json_object_new_string(text)))
            r = wc_fail(err, WC_ENOMEM, "out of memory");
        json_object_put(o);
        free(text);
    }
    const char *js = r ? NULL : json_object_to_json_string_ext(meta, JSON_C_TO_STRING_PLAIN);
    if (!r && !(f->metadata = js ? strdup(js) : NULL)) r = wc_fail(err, WC_ENOMEM, "out of memory");
    json_object_put(meta);
    return r;
}

/* f->tensors: the metadata record, then every shard's tensors; names unique. */
static int merge(wc_st_file *f, wc_err *err)
{
    size_t n = 1;
    for (size_t i = 0; i < f->n_shards; i++) n += f->shards[i].n_tensors;
    if (!(f->tensors = calloc(n, sizeof *f->tensors))) return wc_fail(err, WC_ENOMEM, "out of memory");
    size_t len = strlen(f->metadata);
    f->tensors[0] = (wc_st_tensor){.dtype = WC_DT_U8, .ndim = 1, .shape = {len}, .numel = len,
                                   .data = (const uint8_t *)f->metadata, .size = len, .path = f->path};
    if (!(f->tensors[0].name = strdup(WC_METADATA_NAME))) return wc_fail(err, WC_ENOMEM, "out of memory");
    f->n_tensors = 1;
    for (size_t i = 0; i < f->n_shards; i++)
        for (size_t j = 0; j < f->shards[i].n_tensors; j++) {
            const wc_st_tensor *t = &f->shards[i].tensors[j];
            long dup = wc_st_find(f, t->name);
            if (dup >= 0)
                return wc_fail(err, WC_EFORMAT, "%s: tensor '%s' is in both %s and %s", f->path,
                               t->name, f->tensors[dup].path, t->path);
            wc_st_tensor *o = &f->tensors[f->n_tensors];
            *o = *t;
            if (!(o->name = strdup(t->name))) return wc_fail(err, WC_ENOMEM, "out of memory");
            f->n_tensors++;
        }
    return 0;
}

int wc_st_open_folder(wc_st_file *f, const char *dir, wc_err *err)
{
    memset(f, 0, sizeof *f);
    struct stat sb;
    if (stat(dir, &sb) != 0) return wc_fail(err, WC_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return wc_fail(err, WC_EINVAL, "%s: not a folder", dir);
    if (!(f->path = strdup(dir))) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = build_metadata(f, dir, err);
    if (!r) r = open_shards(f, dir, err);
    if (!r) r = merge(f, err);
    if (r) wc_st_close(f);
    return r;
}
