/* wcodec info / verify */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "cmds.h"

static const char info_help[] =
    "usage: wcodec info [--json] FILE.wcodec\n"
    "\n"
    "Lists every tensor: dtype, shape, how it is stored, its size and, for coded tensors,\n"
    "bits per weight of the INT8 values (tables, tile index and rANS states included; the\n"
    "fp32 scales counted apart) and the tile layout.\n"
    "\n"
    "For each coded tensor it also decodes the values and shows how many tiles each\n"
    "prediction and transform coded, and what they saved against coding the values one by\n"
    "one with the tensor's order-0 distribution.\n"
    "\n"
    "  -j, --json      one JSON object on stdout, for scripts\n"
    "  -n, --no-stats  skip the per-mode statistics (no decoding)\n"
    "  -h, --help      this text\n";

static const char verify_help[] =
    "usage: wcodec verify [--source MODEL.safetensors] FILE.wcodec\n"
    "\n"
    "Checks the header, directory and every tensor's checksum, and decodes every tile\n"
    "(each must end in its initial rANS state). With --source, also checks that every\n"
    "tensor equals what encoding MODEL gives.\n"
    "\n"
    "  -s, --source FILE  the safetensors file the .wcodec was made from\n"
    "  -h, --help         this text\n";

static void shape_str(const wc_tensor_info *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, d ? ", %llu" : "%llu", (unsigned long long)t->shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static double bits_per_weight(const wc_tensor_info *t)
{
    uint64_t n = t->rows * t->cols;
    return n ? 8.0 * (double)(t->stored_bytes - 4 * t->n_scales) / (double)n : 0;
}

static json_object *modes_json(const wc_tensor_stats *st, double weights)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    for (int p = 0; p < WC_N_PRED; p++)
        for (int t = 0; t < WC_N_TX; t++) {
            if (!st->tiles[p][t]) continue;
            json_object *m = json_object_new_object();
            json_object_object_add(m, "pred", json_object_new_string(wct_pred_names[p]));
            json_object_object_add(m, "tx", json_object_new_string(wct_tx_names[t]));
            json_object_object_add(m, "tiles", json_object_new_uint64(st->tiles[p][t]));
            json_object_object_add(m, "saved_bits", json_object_new_double(st->saved_bits[p][t]));
            json_object_array_add(arr, m);
        }
    json_object_object_add(o, "modes", arr);
    json_object_object_add(o, "order0_bits_per_weight", json_object_new_double(st->h0_bits / weights));
    json_object_object_add(o, "overhead_bits_per_weight", json_object_new_double(st->overhead_bits / weights));
    return o;
}

/* "top+haar 12 tiles -0.41 KB, none 3 tiles ..." */
static void print_modes(const wc_tensor_stats *st, double weights)
{
    printf("%44s", "modes:");
    for (int p = 0; p < WC_N_PRED; p++)
        for (int t = 0; t < WC_N_TX; t++)
            if (st->tiles[p][t])
                printf(" %s%s%s %u tiles (saved %.1f KB)", wct_pred_names[p], t ? "+" : "",
                       t ? wct_tx_names[t] : "", st->tiles[p][t], st->saved_bits[p][t] / 8192.0);
    printf("; order-0 entropy %.3f bits/w\n", st->h0_bits / weights);
}

static json_object *info_json(const wc_file *f, bool stats, wc_err *e)
{
    json_object *root = json_object_new_object(), *arr = json_object_new_array();
    json_object_object_add(root, "file", json_object_new_string(wc_file_label(f)));
    json_object_object_add(root, "format_version", json_object_new_int((int)wc_file_version(f)));
    json_object_object_add(root, "file_bytes", json_object_new_uint64(wc_file_size(f)));
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        wc_file_tensor_info(f, i, &t);
        json_object *o = json_object_new_object(), *shape = json_object_new_array();
        for (uint32_t d = 0; d < t.ndim; d++)
            json_object_array_add(shape, json_object_new_uint64(t.shape[d]));
        json_object_object_add(o, "name", json_object_new_string(t.name));
        json_object_object_add(o, "dtype", json_object_new_string(wc_dtype_name(t.dtype)));
        json_object_object_add(o, "decoded_dtype", json_object_new_string(wc_dtype_name(t.out_dtype)));
        json_object_object_add(o, "shape", shape);
        json_object_object_add(o, "coding",
                               json_object_new_string(t.coding == WC_CODING_RAW ? "raw" : "rans_i8"));
        json_object_object_add(o, "stored_bytes", json_object_new_uint64(t.stored_bytes));
        json_object_object_add(o, "decoded_bytes", json_object_new_uint64(t.out_bytes));
        json_object_object_add(o, "offset", json_object_new_uint64(t.file_offset));
        if (t.coding == WC_CODING_RANS_I8) {
            json_object_object_add(o, "scales", json_object_new_uint64(t.n_scales));
            json_object_object_add(o, "bits_per_weight", json_object_new_double(bits_per_weight(&t)));
            json_object_object_add(o, "tile_rows", json_object_new_uint64(t.tile_rows));
            json_object_object_add(o, "tile_cols", json_object_new_uint64(t.tile_cols));
            json_object_object_add(o, "tiles", json_object_new_uint64(t.n_tiles));
            json_object_object_add(o, "tables", json_object_new_uint64(t.n_tables));
            json_object_object_add(o, "prob_bits", json_object_new_uint64(t.prob_bits));
            json_object_object_add(o, "top_distance", json_object_new_uint64(t.top_distance));
            wc_tensor_stats st;
            if (stats && !wc_tensor_stats_get(f, i, &st, e))
                json_object_object_add(o, "stats", modes_json(&st, (double)(t.rows * t.cols)));
            else if (stats) return json_object_put(root), json_object_put(arr), json_object_put(o), NULL;
        }
        json_object_array_add(arr, o);
    }
    json_object_object_add(root, "tensors", arr);
    return root;
}

int wct_info(int argc, char **argv)
{
    static const struct option lo[] = {{"json", 0, 0, 'j'}, {"no-stats", 0, 0, 'n'},
                                       {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    bool json = false, stats = true;
    int c;
    while ((c = getopt_long(argc, argv, "jnh", lo, NULL)) != -1) {
        if (c == 'j') json = true;
        else if (c == 'n') stats = false;
        else if (c == 'h') return fputs(info_help, stdout), 0;
        else return fputs(info_help, stderr), 2;
    }
    if (optind != argc - 1) return fputs(info_help, stderr), 2;
    wc_file *f;
    wc_err e = {0};
    int r = wc_file_open(&f, argv[optind], &e);
    if (r) return wct_report(&e, r);
    if (json) {
        json_object *root = info_json(f, stats, &e);
        if (!root) {
            wc_file_close(f);
            return wct_report(&e, e.code);
        }
        puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        wc_file_close(f);
        return 0;
    }
    printf("%s: .wcodec version %u, %zu tensors, %llu bytes\n\n", wc_file_label(f),
           wc_file_version(f), wc_file_tensor_count(f), (unsigned long long)wc_file_size(f));
    printf("%-40s %-5s %-20s %-8s %12s %8s %s\n", "tensor", "dtype", "shape", "coding", "bytes",
           "bits/w", "tiles");
    uint64_t coded_w = 0, coded_b = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        char shape[128];
        wc_file_tensor_info(f, i, &t);
        shape_str(&t, shape, sizeof shape);
        printf("%-40s %-5s %-20s %-8s %12llu", t.name, wc_dtype_name(t.dtype), shape,
               t.coding == WC_CODING_RAW ? "raw" : "rans_i8", (unsigned long long)t.stored_bytes);
        if (t.coding == WC_CODING_RANS_I8) {
            printf(" %8.3f %u x (%ux%u), %u table%s, top distance %u%s", bits_per_weight(&t),
                   t.n_tiles, t.tile_rows, t.tile_cols, t.n_tables, t.n_tables > 1 ? "s" : "",
                   t.top_distance, t.n_scales ? "" : ", no scales");
            coded_w += t.rows * t.cols;
            coded_b += t.stored_bytes - 4 * t.n_scales;
        }
        putchar('\n');
        wc_tensor_stats st;
        if (stats && t.coding == WC_CODING_RANS_I8) {
            if ((r = wc_tensor_stats_get(f, i, &st, &e))) {
                wc_file_close(f);
                return wct_report(&e, r);
            }
            print_modes(&st, (double)(t.rows * t.cols));
        }
    }
    if (coded_w)
        printf("\ncoded: %llu weights in %llu bytes, %.3f bits/weight (scales apart)\n",
               (unsigned long long)coded_w, (unsigned long long)coded_b, 8.0 * coded_b / coded_w);
    wc_file_close(f);
    return 0;
}

int wct_verify(int argc, char **argv)
{
    static const struct option lo[] = {{"source", 1, 0, 's'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *source = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "s:h", lo, NULL)) != -1) {
        if (c == 's') source = optarg;
        else if (c == 'h') return fputs(verify_help, stdout), 0;
        else return fputs(verify_help, stderr), 2;
    }
    if (optind != argc - 1) return fputs(verify_help, stderr), 2;
    wc_file *f;
    wc_err e = {0};
    int r = wc_file_open(&f, argv[optind], &e);
    if (!r) r = wc_file_verify(f, &e);
    if (!r && source) r = wc_file_compare_source(f, source, &e);
    if (!r)
        printf("%s: ok, %zu tensors%s\n", argv[optind], wc_file_tensor_count(f),
               source ? ", equal to the encoded source" : "");
    wc_file_close(f);
    return r ? wct_report(&e, r) : 0;
}
