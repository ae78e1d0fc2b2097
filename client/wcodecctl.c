/* wcodecctl: talk to wcodecd from the shell. Commands run in order on one
 * connection, separated by "--", so that a release can name the leases an
 * earlier get of the same invocation took (leases end with the
 * connection, that is, when wcodecctl exits). */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include <wcodec/wcodec_client.h>

#ifdef WCODECCTL_CUDA
#include "gpu_share.h"
#endif

static bool json;
static wc_client_tensor **held;
static size_t n_held;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: wcodecctl [--socket PATH] [--json] [--timeout MS] COMMAND [ARGS] [-- COMMAND [ARGS]]...\n"
        "\n"
        "commands (run in order on one connection):\n"
        "  status                      daemon version, backend and a summary; exit 1 if unreachable\n"
        "  open PATH                   open a .wcodec file beneath the daemon's roots\n"
        "  list MODEL [PREFIX]         tensors of a model (MODEL: id from open, or a path)\n"
        "  get [--device N] MODEL NAME...\n"
        "                              lease and map tensors; prints shape, bytes, xxh64 of the data,\n"
        "                              where they lie (memfd, cuda_vmm, cuda_ipc) and, on a GPU, the\n"
        "                              device pointer\n"
        "  get [--device N] MODEL --prefix P | --all\n"
        "      --device N              map them on CUDA device N of this process (its memory when the\n"
        "                              daemon's GPU backend serves that device, else memfds)\n"
        "  release LEASE... | all      end leases taken by an earlier get of this invocation\n"
        "  stats                       the daemon's counters, backend, and each memory pool (host, GPUs):\n"
        "                              budget, use, leases, arenas, and whether it failed and why\n"
        "  arenas                      the daemon's device arenas (id, device, model, size, use, tensors)\n"
        "  evict [MODEL]               drop unleased cached tensors (of one model, or all)\n"
        "  unload MODEL                stop serving a model (every client must open it again);\n"
        "                              the daemon closes its file when its last lease ends\n"
        "\n"
        "options:\n"
        "  -s, --socket PATH   daemon socket (default $WCODECD_SOCKET or " WC_CLIENT_DEFAULT_SOCKET ")\n"
        "  -j, --json          one JSON object per command on stdout\n"
        "  -t, --timeout MS    reply timeout (default 30000; 0: none)\n"
        "  -h, --help          this text\n"
        "\n"
        "example: wcodecctl open /var/lib/wcodec/models/m.wcodec -- get 1 --all -- stats\n"
        "         wcodecctl get --device 0 /var/lib/wcodec/models/m.wcodec --all -- arenas\n"
        "Exit status: 0 on success, 1 when a command fails, 2 on bad usage.\n");
}

static void emit(json_object *o, const char *text)
{
    if (json) puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    else fputs(text, stdout);
    json_object_put(o);
}

static int report(const char *cmd, int r, const wc_err *e)
{
    if (json) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "error", json_object_new_string(wc_client_strerror(r)));
        json_object_object_add(o, "code", json_object_new_int(r));
        json_object_object_add(o, "message", json_object_new_string(e->msg));
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
    }
    if (e->msg[0]) fprintf(stderr, "wcodecctl: %s\n", e->msg);
    else fprintf(stderr, "wcodecctl: %s: %s\n", cmd, wc_client_strerror(r));
    return 1;
}

static const char *location_name(wc_location_kind k)
{
    return k == WC_LOC_MEMFD ? "memfd" : k == WC_LOC_CUDA_VMM ? "cuda_vmm" : k == WC_LOC_CUDA_IPC ? "cuda_ipc" : "?";
}

/* A GPU's UUID as nvidia-smi writes it. */
static void uuid_text(const unsigned char u[16], char out[48])
{
    static const int dash[] = {4, 6, 8, 10};
    size_t n = (size_t)sprintf(out, "GPU-");
    for (int i = 0, d = 0; i < 16; i++) {
        if (d < 4 && i == dash[d]) out[n++] = '-', d++;
        n += (size_t)sprintf(out + n, "%02x", u[i]);
    }
}

static bool uuid_zero(const unsigned char u[16])
{
    for (int i = 0; i < 16; i++)
        if (u[i]) return false;
    return true;
}

/* The xxh64 of a tensor's bytes: device tensors are copied to the host
 * first (through the driver, found at run time), so that the hash is the
 * one a memfd tensor of the same bytes gets. "-" when they cannot be read. */
static void tensor_hash(const wc_client_tensor *t, char hash[20])
{
    if (t->location == WC_LOC_MEMFD) {
        snprintf(hash, 20, "%016llx", (unsigned long long)XXH64(t->data, t->size, 0));
        return;
    }
    snprintf(hash, 20, "-");
#ifdef WCODECCTL_CUDA
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    void *buf = malloc(t->size ? t->size : 1);
    if (buf && !wcg_share_enter(t->device, &dev, &d, NULL) &&
        d->MemcpyDtoH(buf, (CUdeviceptr)(uintptr_t)t->data, t->size) == CUDA_SUCCESS)
        snprintf(hash, 20, "%016llx", (unsigned long long)XXH64(buf, t->size, 0));
    free(buf);
#endif
}

static json_object *shape_json(const uint64_t *shape, uint32_t ndim, char *text, size_t sz)
{
    json_object *a = json_object_new_array();
    size_t n = (size_t)snprintf(text, sz, "[");
    for (uint32_t i = 0; i < ndim; i++) {
        json_object_array_add(a, json_object_new_int64((int64_t)shape[i]));
        if (n < sz) n += (size_t)snprintf(text + n, sz - n, "%s%" PRIu64, i ? "," : "", shape[i]);
    }
    if (n < sz) snprintf(text + n, sz - n, "]");
    return a;
}

/* MODEL is a number (an id from open) or a path to open now. */
static int model_arg(wc_client *c, const char *s, uint64_t *id, wc_err *e)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s && !*end) {
        *id = v;
        return 0;
    }
    wc_client_model m;
    int r = wc_client_open(c, s, &m, e);
    if (!r) *id = m.id;
    return r;
}

static void pools_out(json_object *o, const wc_client_pools *p);

static int stats_cmd(wc_client *c, bool summary)
{
    wc_err e = {0};
    wc_client_stats s;
    int r = wc_client_stats_get(c, &s, &e);
    if (r) return report(summary ? "status" : "stats", r, &e);
    wc_client_server_info si;
    wc_client_server_info_get(c, &si);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "command", json_object_new_string(summary ? "status" : "stats"));
    if (summary) {
        json_object_object_add(o, "server_version", json_object_new_string(si.server_version));
        json_object_object_add(o, "protocol_version", json_object_new_int((int)si.protocol_version));
        json_object_object_add(o, "backend", json_object_new_string(location_name(si.backend)));
    }
#define F(k) json_object_object_add(o, #k, json_object_new_int64((int64_t)s.k))
    F(uptime_ms); F(connections); F(models); F(budget_bytes); F(cached_bytes); F(cached_tensors);
    F(leased_bytes); F(leased_tensors); F(leases);
    if (!summary) { F(decodes); F(hits); F(evictions); F(requests); F(errors); F(rss_bytes); F(open_fds); F(decodes_in_flight); }
#undef F
    char text[1024];
    if (summary)
        snprintf(text, sizeof text,
                 "wcodecd %s (protocol %u, backend %s): up %" PRIu64 " s, %u connections, %u models,\n"
                 "  %u tensors cached (%" PRIu64 " of %" PRIu64 " bytes), %" PRIu64 " leases on %u tensors\n",
                 si.server_version, si.protocol_version, location_name(si.backend), s.uptime_ms / 1000,
                 s.connections, s.models, s.cached_tensors, s.cached_bytes, s.budget_bytes, s.leases,
                 s.leased_tensors);
    else
        snprintf(text, sizeof text,
                 "uptime_ms %" PRIu64 "\nconnections %u\nmodels %u\nbudget_bytes %" PRIu64 "\ncached_bytes %" PRIu64
                 "\ncached_tensors %u\nleased_bytes %" PRIu64 "\nleased_tensors %u\nleases %" PRIu64
                 "\ndecodes %" PRIu64 "\nhits %" PRIu64 "\nevictions %" PRIu64 "\nrequests %" PRIu64
                 "\nerrors %" PRIu64 "\nrss_bytes %" PRIu64 "\nopen_fds %u\ndecodes_in_flight %u\n",
                 s.uptime_ms, s.connections, s.models, s.budget_bytes, s.cached_bytes, s.cached_tensors,
                 s.leased_bytes, s.leased_tensors, s.leases, s.decodes, s.hits, s.evictions, s.requests, s.errors,
                 s.rss_bytes, s.open_fds, s.decodes_in_flight);
    if (summary) {
        emit(o, text);
        return 0;
    }
    wc_client_pools *p;
    if ((r = wc_client_pools_get(c, &p, &e))) {
        json_object_put(o);
        return report("stats", r, &e);
    }
    if (!json) fputs(text, stdout);
    pools_out(o, p);
    wc_client_pools_free(p);
    emit(o, "");
    return 0;
}

/* The backend and one line (or object) per pool, into o and stdout. */
static void pools_out(json_object *o, const wc_client_pools *p)
{
    json_object_object_add(o, "backend", json_object_new_string(p->backend));
    json_object *a = json_object_new_array();
    if (!json) printf("backend %s\n", p->backend[0] ? p->backend : "(not reported: an older wcodecd)");
    for (size_t i = 0; i < p->n_pools; i++) {
        const wc_client_pool *d = &p->pools[i];
        char uuid[48] = "";
        if (!uuid_zero(d->uuid)) uuid_text(d->uuid, uuid);
        json_object *j = json_object_new_object();
        json_object_object_add(j, "name", json_object_new_string(d->name));
        json_object_object_add(j, "uuid", json_object_new_string(uuid));
        json_object_object_add(j, "kind", json_object_new_string(location_name(d->kind)));
        json_object_object_add(j, "failed", json_object_new_boolean(d->failed));
        json_object_object_add(j, "status", json_object_new_string(d->status));
#define F(k) json_object_object_add(j, #k, json_object_new_int64((int64_t)d->k))
        F(budget_bytes); F(used_bytes); F(tensor_bytes); F(cached_tensors); F(leased_bytes); F(leased_tensors);
        F(arenas); F(decodes); F(evictions); F(total_bytes); F(free_bytes);
#undef F
        json_object_array_add(a, j);
        if (json) continue;
        printf("pool %s%s%s (%s)%s\n"
               "  budget %" PRIu64 ", used %" PRIu64 " (tensors %" PRIu64 " in %u cached), leased %" PRIu64
               " bytes in %u tensors\n  arenas %u, decodes %" PRIu64 ", evictions %" PRIu64,
               d->name, uuid[0] ? " " : "", uuid, location_name(d->kind), d->failed ? " FAILED" : "", d->budget_bytes, d->used_bytes, d->tensor_bytes,
               d->cached_tensors, d->leased_bytes, d->leased_tensors, d->arenas, d->decodes, d->evictions);
        if (d->total_bytes) printf(", device memory %" PRIu64 " free of %" PRIu64, d->free_bytes, d->total_bytes);
        printf("\n");
        if (d->status[0]) printf("  status: %s\n", d->status);
    }
    json_object_object_add(o, "devices", a);
}

static int arenas_cmd(wc_client *c)
{
    wc_err e = {0};
    wc_client_pools *p;
    int r = wc_client_pools_get(c, &p, &e);
    if (r) return report("arenas", r, &e);
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    json_object_object_add(o, "command", json_object_new_string("arenas"));
    if (!json)
        printf("%-8s %-40s %-6s %14s %14s %8s %8s\n", "arena", "device", "model", "size", "used", "tensors", "leased");
    for (size_t i = 0; i < p->n_arenas; i++) {
        const wc_client_arena *x = &p->arenas[i];
        char uuid[48];
        uuid_text(x->device_uuid, uuid);
        json_object *j = json_object_new_object();
        json_object_object_add(j, "id", json_object_new_int64((int64_t)x->id));
        json_object_object_add(j, "device_uuid", json_object_new_string(uuid));
        json_object_object_add(j, "model_id", json_object_new_int64((int64_t)x->model_id));
        json_object_object_add(j, "size", json_object_new_int64((int64_t)x->size));
        json_object_object_add(j, "used_bytes", json_object_new_int64((int64_t)x->used_bytes));
        json_object_object_add(j, "tensors", json_object_new_int64(x->tensors));
        json_object_object_add(j, "leased_tensors", json_object_new_int64(x->leased_tensors));
        json_object_array_add(a, j);
        if (!json)
            printf("%-8" PRIu64 " %-40s %-6" PRIu64 " %14" PRIu64 " %14" PRIu64 " %8u %8u\n", x->id, uuid, x->model_id,
                   x->size, x->used_bytes, x->tensors, x->leased_tensors);
    }
    if (!json) printf("%zu arenas\n", p->n_arenas);
    json_object_object_add(o, "arenas", a);
    wc_client_pools_free(p);
    emit(o, "");
    return 0;
}

static int run_cmd(wc_client *c, int argc, char **argv)
{
    const char *cmd = argv[0];
    wc_err e = {0};
    int r;
    if (!strcmp(cmd, "status") && argc == 1) return stats_cmd(c, true);
    if (!strcmp(cmd, "stats") && argc == 1) return stats_cmd(c, false);
    if (!strcmp(cmd, "arenas") && argc == 1) return arenas_cmd(c);
    if (!strcmp(cmd, "open") && argc == 2) {
        wc_client_model m;
        if ((r = wc_client_open(c, argv[1], &m, &e))) return report(cmd, r, &e);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "path", json_object_new_string(argv[1]));
        json_object_object_add(o, "model_id", json_object_new_int64((int64_t)m.id));
        json_object_object_add(o, "tensors", json_object_new_int64(m.tensor_count));
        json_object_object_add(o, "file_bytes", json_object_new_int64((int64_t)m.file_bytes));
        char text[512];
        snprintf(text, sizeof text, "model %" PRIu64 ": %s, %u tensors, %" PRIu64 " bytes\n", m.id, argv[1],
                 m.tensor_count, m.file_bytes);
        emit(o, text);
        return 0;
    }
    if (!strcmp(cmd, "list") && (argc == 2 || argc == 3)) {
        uint64_t id;
        if ((r = model_arg(c, argv[1], &id, &e))) return report(cmd, r, &e);
        wc_client_tensor_info *ti;
        size_t n;
        if ((r = wc_client_list(c, id, argc == 3 ? argv[2] : NULL, &ti, &n, &e))) return report(cmd, r, &e);
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "model_id", json_object_new_int64((int64_t)id));
        for (size_t i = 0; i < n; i++) {
            char shape[160];
            json_object *t = json_object_new_object();
            json_object_object_add(t, "name", json_object_new_string(ti[i].name));
            json_object_object_add(t, "dtype", json_object_new_string(wc_dtype_name(ti[i].dtype) ? wc_dtype_name(ti[i].dtype) : "?"));
            json_object_object_add(t, "out_dtype", json_object_new_string(wc_dtype_name(ti[i].out_dtype) ? wc_dtype_name(ti[i].out_dtype) : "?"));
            json_object_object_add(t, "shape", shape_json(ti[i].shape, ti[i].ndim, shape, sizeof shape));
            json_object_object_add(t, "out_bytes", json_object_new_int64((int64_t)ti[i].out_bytes));
            json_object_object_add(t, "n_scales", json_object_new_int64((int64_t)ti[i].n_scales));
            json_object_object_add(t, "cached", json_object_new_boolean(ti[i].cached));
            json_object_array_add(a, t);
            if (!json)
                printf("%-40s %-5s %-18s %12" PRIu64 " %s\n", ti[i].name,
                       wc_dtype_name(ti[i].out_dtype) ? wc_dtype_name(ti[i].out_dtype) : "?", shape, ti[i].out_bytes,
                       ti[i].cached ? "cached" : "");
        }
        json_object_object_add(o, "tensors", a);
        wc_client_list_free(ti, n);
        emit(o, "");
        return 0;
    }
    if (!strcmp(cmd, "get") && argc >= 3) {
        wc_client_get_opts go;
        wc_client_get_opts_default(&go);
        if (!strcmp(argv[1], "--device")) {
            char *end;
            long dv = strtol(argv[2], &end, 10);
            if (!*argv[2] || *end || dv < 0 || dv > 1024 || argc < 5) {
                fprintf(stderr, "wcodecctl: get --device N MODEL ...: N is a CUDA device ordinal (see --help)\n");
                return 2;
            }
            go.device = (int)dv;
            argc -= 2;
            argv += 2;
        }
        uint64_t id;
        if ((r = model_arg(c, argv[1], &id, &e))) return report(cmd, r, &e);
        wc_client_tensor **ts;
        size_t n;
        if (!strcmp(argv[2], "--all") && argc == 3)
            r = wc_client_get2(c, id, WC_SELECT_ALL, NULL, 0, &go, &ts, &n, &e);
        else if (!strcmp(argv[2], "--prefix") && argc == 4)
            r = wc_client_get2(c, id, WC_SELECT_PREFIX, (const char *const *)&argv[3], 1, &go, &ts, &n, &e);
        else
            r = wc_client_get2(c, id, WC_SELECT_NAMES, (const char *const *)&argv[2], (size_t)argc - 2, &go, &ts,
                               &n, &e);
        if (r) return report(cmd, r, &e);
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        for (size_t i = 0; i < n; i++) {
            char shape[160], hash[20], where[96] = "";
            tensor_hash(ts[i], hash);
            if (ts[i]->location != WC_LOC_MEMFD)
                snprintf(where, sizeof where, " %s device %d ptr %p", location_name(ts[i]->location), ts[i]->device,
                         ts[i]->data);
            json_object *t = json_object_new_object();
            json_object_object_add(t, "name", json_object_new_string(ts[i]->name));
            json_object_object_add(t, "lease", json_object_new_int64((int64_t)ts[i]->lease_id));
            json_object_object_add(t, "dtype", json_object_new_string(wc_dtype_name(ts[i]->out_dtype) ? wc_dtype_name(ts[i]->out_dtype) : "?"));
            json_object_object_add(t, "shape", shape_json(ts[i]->shape, ts[i]->ndim, shape, sizeof shape));
            json_object_object_add(t, "bytes", json_object_new_int64((int64_t)ts[i]->size));
            json_object_object_add(t, "n_scales", json_object_new_int64((int64_t)ts[i]->n_scales));
            json_object_object_add(t, "xxh64", json_object_new_string(hash));
            json_object_object_add(t, "location", json_object_new_string(location_name(ts[i]->location)));
            if (ts[i]->location != WC_LOC_MEMFD) {
                char uuid[48], ptr[24];
                uuid_text(ts[i]->device_uuid, uuid);
                snprintf(ptr, sizeof ptr, "%p", ts[i]->data);
                json_object_object_add(t, "device", json_object_new_int(ts[i]->device));
                json_object_object_add(t, "device_uuid", json_object_new_string(uuid));
                json_object_object_add(t, "device_ptr", json_object_new_string(ptr));
            }
            json_object_array_add(a, t);
            if (!json)
                printf("lease %-6" PRIu64 " %-40s %-5s %-18s %12" PRIu64 " xxh64 %s%s\n", ts[i]->lease_id,
                       ts[i]->name, wc_dtype_name(ts[i]->out_dtype) ? wc_dtype_name(ts[i]->out_dtype) : "?", shape,
                       ts[i]->size, hash, where);
        }
        json_object_object_add(o, "tensors", a);
        emit(o, "");
        wc_client_tensor **h = realloc(held, (n_held + n) * sizeof *h);
        if (!h) return report(cmd, WC_ENOMEM, &e);
        held = h;
        memcpy(held + n_held, ts, n * sizeof *ts);
        n_held += n;
        wc_client_tensors_free(ts);
        return 0;
    }
    if (!strcmp(cmd, "release") && argc >= 2) {
        bool all = argc == 2 && !strcmp(argv[1], "all");
        for (int j = 1; !all && j < argc; j++) {
            bool found = false;
            for (size_t i = 0; i < n_held && !found; i++) found = strtoull(argv[j], NULL, 10) == held[i]->lease_id;
            if (!found) {
                snprintf(e.msg, sizeof e.msg, "lease %s was not taken by a get of this invocation", argv[j]);
                return report(cmd, WC_ENOTFOUND, &e);
            }
        }
        wc_client_tensor **sel = calloc(n_held ? n_held : 1, sizeof *sel);
        size_t k = 0;
        if (!sel) return report(cmd, WC_ENOMEM, &e);
        for (size_t i = 0; i < n_held; i++) {
            bool want = all;
            for (int j = 1; !want && j < argc; j++) want = strtoull(argv[j], NULL, 10) == held[i]->lease_id;
            if (want) sel[k++] = held[i];
            else held[i - k] = held[i];
        }
        n_held -= k;
        r = wc_client_release(c, sel, k, &e);
        free(sel);
        if (r) return report(cmd, r, &e);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "released", json_object_new_int64((int64_t)k));
        char text[64];
        snprintf(text, sizeof text, "released %zu leases\n", k);
        emit(o, text);
        return 0;
    }
    if (!strcmp(cmd, "evict") && argc <= 2) {
        uint64_t id = 0;
        if (argc == 2 && (r = model_arg(c, argv[1], &id, &e))) return report(cmd, r, &e);
        uint32_t nt;
        uint64_t nb;
        if ((r = wc_client_evict(c, id, &nt, &nb, &e))) return report(cmd, r, &e);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "evicted_tensors", json_object_new_int64(nt));
        json_object_object_add(o, "evicted_bytes", json_object_new_int64((int64_t)nb));
        char text[96];
        snprintf(text, sizeof text, "evicted %u tensors, %" PRIu64 " bytes\n", nt, nb);
        emit(o, text);
        return 0;
    }
    if (!strcmp(cmd, "unload") && argc == 2) {
        uint64_t id = 0;
        if ((r = model_arg(c, argv[1], &id, &e))) return report(cmd, r, &e);
        uint32_t leased;
        if ((r = wc_client_unload(c, id, &leased, &e))) return report(cmd, r, &e);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "command", json_object_new_string(cmd));
        json_object_object_add(o, "model_id", json_object_new_int64((int64_t)id));
        json_object_object_add(o, "leased_tensors", json_object_new_int64(leased));
        char text[96];
        snprintf(text, sizeof text, "unloaded model %" PRIu64 "; %u tensors still leased\n", id, leased);
        emit(o, text);
        return 0;
    }
    fprintf(stderr, "wcodecctl: bad command or arguments: %s (see --help)\n", cmd);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, 0, 's'}, {"json", no_argument, 0, 'j'},
        {"timeout", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *sock = NULL;
    int timeout = 30000, o;
    while ((o = getopt_long(argc, argv, "+s:jt:h", opts, NULL)) != -1) {
        switch (o) {
        case 's': sock = optarg; break;
        case 'j': json = true; break;
        case 't': timeout = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    wc_client *c;
    wc_err e = {0};
    int r = wc_client_connect(&c, sock, &e);
    if (r) return report("connect", r, &e);
    wc_client_set_timeout(c, timeout);
    int status = 0;
    for (int i = optind; i < argc && !status;) {
        int j = i;
        while (j < argc && strcmp(argv[j], "--")) j++;
        if (j == i) {
            fprintf(stderr, "wcodecctl: empty command\n");
            status = 2;
            break;
        }
        status = run_cmd(c, j - i, argv + i);
        i = j + 1;
    }
    free(held);
    wc_client_close(c);
    return status;
}
