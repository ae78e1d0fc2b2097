/* safetensors: an 8-byte little-endian header length, a JSON object of
 * {name: {dtype, shape, data_offsets: [begin, end)}} (offsets relative to the
 * end of the header) and an optional "__metadata__", then the data. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define ST_MAX_HEADER (100u << 20)

static int parse_u64(json_object *v, uint64_t *out)
{
    if (!json_object_is_type(v, json_type_int)) return -1;
    errno = 0;
    uint64_t u = json_object_get_uint64(v);
    if (errno || json_object_get_int64(v) < 0) return -1;
    *out = u;
    return 0;
}

static int parse_tensor(wc_st_file *f, const char *name, json_object *o, uint64_t data_size,
                        wc_st_tensor *t, wc_err *err)
{
    json_object *jd, *js, *jo;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "dtype", &jd) ||
        !json_object_object_get_ex(o, "shape", &js) ||
        !json_object_object_get_ex(o, "data_offsets", &jo) ||
        !json_object_is_type(jd, json_type_string) || !json_object_is_type(js, json_type_array) ||
        !json_object_is_type(jo, json_type_array) || json_object_array_length(jo) != 2)
        return wc_fail(err, WC_EFORMAT,
                       "%s: tensor '%s': header entry needs dtype, shape and data_offsets[2]",
                       f->path, name);
    int dt = wc_dtype_from_name(json_object_get_string(jd));
    if (dt < 0)
        return wc_fail(err, WC_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", f->path, name,
                       json_object_get_string(jd));
    size_t nd = json_object_array_length(js);
    if (nd > WC_MAX_DIMS)
        return wc_fail(err, WC_EUNSUPPORTED, "%s: tensor '%s': %zu dimensions (at most %d)",
                       f->path, name, nd, WC_MAX_DIMS);
    t->dtype = (wc_dtype)dt;
    t->ndim = (uint32_t)nd;
    t->numel = 1;
    for (size_t i = 0; i < nd; i++) {
        if (parse_u64(json_object_array_get_idx(js, i), &t->shape[i]) ||
            wc_mul_u64(t->numel, t->shape[i], &t->numel))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': dimension %zu is not a valid size",
                           f->path, name, i);
    }
    uint64_t b, e, want;
    if (parse_u64(json_object_array_get_idx(jo, 0), &b) ||
        parse_u64(json_object_array_get_idx(jo, 1), &e))
        return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': data_offsets are not integers", f->path,
                       name);
    if (e < b || e > data_size)
        return wc_fail(err, WC_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu) outside the %llu bytes of data",
                       f->path, name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)data_size);
    if (wc_mul_u64(t->numel, (uint64_t)wc_dtype_size(t->dtype), &want) || want != e - b)
        return wc_fail(err, WC_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu) hold %llu bytes, shape and "
                       "dtype need %llu",
                       f->path, name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)(e - b), (unsigned long long)want);
    t->size = want;
    t->data = f->map + (f->map_size - data_size) + b;
    t->path = f->path;
    t->map = f->map;
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const wc_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

int wc_st_open(wc_st_file *f, const char *path, wc_err *err)
{
    memset(f, 0, sizeof *f);
    int r = 0;
    json_object *root = NULL;
    if (!(f->path = strdup(path))) return wc_fail(err, WC_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        r = wc_fail(err, WC_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (sb.st_size < 8) {
        r = wc_fail(err, WC_EFORMAT, "%s: %lld bytes, too short for a safetensors file", path,
                    (long long)sb.st_size);
        goto out;
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        r = wc_fail(err, WC_EIO, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    uint64_t hlen = wc_rd64(f->map);
    if (hlen > ST_MAX_HEADER || hlen > f->map_size - 8) {
        r = wc_fail(err, WC_EFORMAT, "%s: header length %llu at offset 0 exceeds the file (%zu bytes)",
                    path, (unsigned long long)hlen, f->map_size);
        goto out;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    root = json_tokener_parse_ex(tok, (const char *)f->map + 8, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t jend = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success || !json_object_is_type(root, json_type_object)) {
        r = wc_fail(err, WC_EFORMAT, "%s: header is not a JSON object (%s near offset %zu)", path,
                    json_tokener_error_desc(jerr), 8 + jend);
        goto out;
    }
    size_t n = (size_t)json_object_object_length(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    uint64_t data_size = f->map_size - 8 - hlen;
    json_object_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) continue;
        wc_st_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = strdup(key))) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto out;
        }
        f->n_tensors++;
        if ((r = parse_tensor(f, key, val, data_size, t, err))) goto out;
    }
    /* Keep file order: it is the order writers chose, and reading in it is
     * sequential. */
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, by_offset);
    for (size_t i = 1; i < f->n_tensors; i++) {
        const wc_st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if (a->data + a->size > b->data) {
            r = wc_fail(err, WC_EFORMAT, "%s: tensors '%s' and '%s' overlap at offset %lld", path,
                        a->name, b->name, (long long)(b->data - f->map));
            goto out;
        }
    }
out:
    if (root) json_object_put(root);
    if (fd >= 0) close(fd);
    if (r) wc_st_close(f);
    return r;
}

void wc_st_close(wc_st_file *f)
{
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    if (f->map) munmap(f->map, f->map_size);
    for (size_t i = 0; i < f->n_shards; i++) wc_st_close(&f->shards[i]);
    free(f->shards);
    free(f->metadata);
    free(f->path);
    memset(f, 0, sizeof *f);
}

long wc_st_find(const wc_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return (long)i;
    return -1;
}

int wc_st_layout(wc_st_out_tensor *t, size_t n, uint8_t **header, size_t *header_size,
                 uint64_t *file_size, wc_err *err)
{
    return wc_st_layout_meta(t, n, NULL, header, header_size, file_size, err);
}

int wc_st_layout_meta(wc_st_out_tensor *t, size_t n, const char *metadata, uint8_t **header,
                      size_t *header_size, uint64_t *file_size, wc_err *err)
{
    json_object *root = json_object_new_object();
    if (!root) return wc_fail(err, WC_ENOMEM, "out of memory");
    uint64_t off = 0;
    int r = WC_ENOMEM;
    if (metadata) {
        json_object *m = json_tokener_parse(metadata);
        if (!json_object_is_type(m, json_type_object)) {
            json_object_put(m);
            json_object_put(root);
            return wc_fail(err, WC_EFORMAT, "metadata is not a JSON object");
        }
        json_object_object_foreach(m, k, v) {
            if (!json_object_is_type(v, json_type_string)) {
                json_object_put(m);
                json_object_put(root);
                return wc_fail(err, WC_EFORMAT, "metadata entry '%s' is not a string", k);
            }
        }
        if (json_object_object_add(root, "__metadata__", m)) {
            json_object_put(m);
            goto fail_root;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object(), *shape = json_object_new_array(),
                    *offs = json_object_new_array();
        if (!o || !shape || !offs) goto fail_obj;
        for (uint32_t d = 0; d < t[i].ndim; d++)
            if (json_object_array_add(shape, json_object_new_uint64(t[i].shape[d]))) goto fail_obj;
        if (json_object_array_add(offs, json_object_new_uint64(off)) ||
            json_object_array_add(offs, json_object_new_uint64(off + t[i].size)))
            goto fail_obj;
        json_object_object_add(o, "dtype", json_object_new_string(wc_dtype_name(t[i].dtype)));
        json_object_object_add(o, "shape", shape);
        json_object_object_add(o, "data_offsets", offs);
        if (json_object_object_add(root, t[i].name, o)) goto fail_root;
        t[i].offset = off;
        off += t[i].size;
        continue;
    fail_obj:
        json_object_put(o);
        json_object_put(shape);
        json_object_put(offs);
        goto fail_root;
    }
    size_t jlen;
    const char *js = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN, &jlen);
    if (!js) goto fail_root;
    size_t padded = (jlen + 7) & ~(size_t)7;
    uint8_t *h = malloc(8 + padded);
    if (!h) goto fail_root;
    wc_wr64(h, padded);
    memcpy(h + 8, js, jlen);
    memset(h + 8 + jlen, ' ', padded - jlen);
    for (size_t i = 0; i < n; i++) t[i].offset += 8 + padded;
    *header = h;
    *header_size = 8 + padded;
    *file_size = 8 + padded + off;
    r = 0;
fail_root:
    json_object_put(root);
    return r ? wc_fail(err, r, "out of memory building a safetensors header") : 0;
}
