/* Configuration: an ini file read with libinih, then command-line flags,
 * which name the same settings and win over the file. */
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wcd.h"

void wcd_config_defaults(wcd_config *c)
{
    memset(c, 0, sizeof *c);
    c->socket_path = strdup(WC_CLIENT_DEFAULT_SOCKET);
    c->socket_mode = 0660;
    c->budget = 4ull << 30;
    c->threads = 0;
    c->max_frame = 1u << 20;
    c->max_models = 64;
    c->max_leases = 1u << 16;
    c->max_connections = 1024;
    c->max_inflight = 64;
    c->conn_out_bytes = 4u << 20;
    c->conn_fds = 1024;
    c->handshake_timeout_ms = 10000;
    c->idle_timeout_ms = 600000;
    c->send_timeout_ms = 60000;
    c->log_level = WCD_LOG_INFO;
    c->backend = WCD_BACKEND_AUTO;
    c->gpu_budget_pct = 50;
    c->gpu_ipc = WCD_IPC_VMM;
}

static void free_gpu_devices(wcd_config *c)
{
    for (size_t i = 0; i < c->n_gpu_devices; i++) free(c->gpu_devices[i]);
    free(c->gpu_devices);
    c->gpu_devices = NULL;
    c->n_gpu_devices = 0;
}

void wcd_config_free(wcd_config *c)
{
    free(c->config_path);
    free(c->socket_path);
    free(c->allow_uids);
    free(c->allow_gids);
    for (size_t i = 0; i < c->n_roots; i++) free(c->roots[i]);
    free(c->roots);
    free_gpu_devices(c);
    memset(c, 0, sizeof *c);
}

int wcd_parse_size(const char *s, uint64_t *out)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return WC_EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return WC_EINVAL;
    if (shift && v > (UINT64_MAX >> shift)) return WC_ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

/* A duration: a number of seconds, or with ms, s, m or h; 0 turns the
 * timeout off. */
static int parse_ms(const char *s, unsigned *out)
{
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-') return WC_EINVAL;
    unsigned long long mul = 1000;
    if (!strcmp(end, "ms")) mul = 1;
    else if (!strcmp(end, "m") || !strcmp(end, "min")) mul = 60000;
    else if (!strcmp(end, "h")) mul = 3600000;
    else if (*end && strcmp(end, "s")) return WC_EINVAL;
    if (v > UINT32_MAX / mul) return WC_ERANGE;
    *out = (unsigned)(v * mul);
    return 0;
}

static int parse_uint(const char *s, int base, unsigned long max, unsigned long *out)
{
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, base);
    if (end == s || *end || errno || *s == '-' || v > max) return WC_EINVAL;
    *out = v;
    return 0;
}

/* A list of ids: numbers or names, separated by commas or spaces. */
static int parse_ids(const char *value, bool groups, void **arr, size_t *n, bool *any, wc_err *err)
{
    char *copy = strdup(value);
    if (!copy) return WC_ENOMEM;
    int r = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        unsigned long id;
        if (!strcmp(tok, "*")) {
            if (any) *any = true;
            else r = wc_fail(err, WC_EINVAL, "allow_gids: '*' is only meaningful for allow_uids");
            if (r) break;
            continue;
        }
        if (parse_uint(tok, 10, UINT32_MAX - 1, &id)) {
            if (groups) {
                struct group *g = getgrnam(tok);
                if (!g) { r = wc_fail(err, WC_EINVAL, "allow_gids: no group '%s'", tok); break; }
                id = g->gr_gid;
            } else {
                struct passwd *p = getpwnam(tok);
                if (!p) { r = wc_fail(err, WC_EINVAL, "allow_uids: no user '%s'", tok); break; }
                id = p->pw_uid;
            }
        }
        uint32_t *a = realloc(*arr, (*n + 1) * sizeof *a);
        if (!a) { r = WC_ENOMEM; break; }
        a[(*n)++] = (uint32_t)id;
        *arr = a;
    }
    free(copy);
    return r;
}

static int parse_roots(wcd_config *c, const char *value, wc_err *err)
{
    char *copy = strdup(value);
    if (!copy) return WC_ENOMEM;
    int r = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ":, \t", &save); tok; tok = strtok_r(NULL, ":, \t", &save)) {
        if (tok[0] != '/') { r = wc_fail(err, WC_EINVAL, "roots: '%s' is not an absolute path", tok); break; }
        char **a = realloc(c->roots, (c->n_roots + 1) * sizeof *a);
        if (!a) { r = WC_ENOMEM; break; }
        c->roots = a;
        if (!(a[c->n_roots] = strdup(tok))) { r = WC_ENOMEM; break; }
        c->n_roots++;
    }
    free(copy);
    return r;
}

#define KEY(s, k) (!strcasecmp(section, s) && !strcasecmp(key, k))

/* [gpu] devices: "all", or ordinals and UUIDs separated by commas. */
static int parse_gpu_devices(wcd_config *c, const char *value, wc_err *err)
{
    free_gpu_devices(c);
    if (!strcasecmp(value, "all") || !value[0]) return 0;
    char *copy = strdup(value), *save = NULL;
    if (!copy) return WC_ENOMEM;
    int r = 0;
    for (char *tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (!(end != tok && !*end && v >= 0) && strncasecmp(tok, "GPU-", 4)) {
            r = wc_fail(err, WC_EINVAL, "devices: '%s' is neither an ordinal nor a UUID such as GPU-8d3e1c2a", tok);
            break;
        }
        char **a = realloc(c->gpu_devices, (c->n_gpu_devices + 1) * sizeof *a);
        if (!a || !(a[c->n_gpu_devices] = strdup(tok))) {
            if (a) c->gpu_devices = a;
            r = WC_ENOMEM;
            break;
        }
        c->gpu_devices = a;
        c->n_gpu_devices++;
    }
    free(copy);
    return r;
}

/* The GPU backend's keys (docs/OPERATIONS.md, "GPU backend"). */
static int set_gpu(wcd_config *c, const char *section, const char *key, const char *value, wc_err *err)
{
    if (KEY("daemon", "backend")) {
        int b = !strcasecmp(value, "auto") ? WCD_BACKEND_AUTO : !strcasecmp(value, "cpu") ? WCD_BACKEND_CPU
              : !strcasecmp(value, "gpu") ? WCD_BACKEND_GPU : -1;
        if (b < 0) return wc_fail(err, WC_EINVAL, "backend: '%s' is not auto, gpu or cpu", value);
        c->backend = b;
        return 0;
    }
    if (KEY("gpu", "devices")) return parse_gpu_devices(c, value, err);
    if (KEY("gpu", "budget")) {
        size_t n = strlen(value);
        unsigned long v;
        if (n > 1 && value[n - 1] == '%') {
            char num[16];
            if (n - 1 >= sizeof num) return wc_fail(err, WC_EINVAL, "budget: '%s'", value);
            memcpy(num, value, n - 1);
            num[n - 1] = 0;
            if (parse_uint(num, 10, 100, &v) || !v)
                return wc_fail(err, WC_EINVAL, "budget: '%s' is not a percentage from 1%% to 100%%", value);
            c->gpu_budget = 0;
            c->gpu_budget_pct = (unsigned)v;
            return 0;
        }
        uint64_t sz;
        if (wcd_parse_size(value, &sz) || !sz)
            return wc_fail(err, WC_EINVAL, "budget: '%s' is not a size such as 40G or a percentage such as 50%%", value);
        c->gpu_budget = sz;
        return 0;
    }
    if (KEY("gpu", "ipc")) {
        int m = !strcasecmp(value, "vmm") ? WCD_IPC_VMM : !strcasecmp(value, "legacy") ? WCD_IPC_LEGACY : -1;
        if (m < 0) return wc_fail(err, WC_EINVAL, "ipc: '%s' is not vmm or legacy", value);
        c->gpu_ipc = m;
        return 0;
    }
    return 1;
}

int wcd_config_set(wcd_config *c, const char *section, const char *key, const char *value,
                   wc_err *err)
{
    unsigned long v;
    uint64_t sz;
    int g = set_gpu(c, section, key, value, err);
    if (g <= 0) return g;
    if (KEY("daemon", "socket")) {
        if (value[0] != '/' || strlen(value) >= 108)
            return wc_fail(err, WC_EINVAL, "socket: '%s' must be an absolute path under 108 bytes", value);
        free(c->socket_path);
        return (c->socket_path = strdup(value)) ? 0 : WC_ENOMEM;
    }
    if (KEY("daemon", "socket_mode")) {
        if (parse_uint(value, 8, 0777, &v)) return wc_fail(err, WC_EINVAL, "socket_mode: '%s' is not an octal mode", value);
        c->socket_mode = (unsigned)v;
        return 0;
    }
    if (KEY("daemon", "threads")) {
        if (parse_uint(value, 10, 1024, &v)) return wc_fail(err, WC_EINVAL, "threads: '%s' is not 0..1024", value);
        c->threads = (unsigned)v;
        return 0;
    }
    if (KEY("daemon", "log_level")) {
        int l = wcd_log_level_parse(value);
        if (l < 0) return wc_fail(err, WC_EINVAL, "log_level: '%s' is not error, warning, notice, info or debug", value);
        c->log_level = l;
        return 0;
    }
    if (KEY("security", "allow_uids"))
        return parse_ids(value, false, (void **)&c->allow_uids, &c->n_allow_uids, &c->allow_any, err);
    if (KEY("security", "allow_gids"))
        return parse_ids(value, true, (void **)&c->allow_gids, &c->n_allow_gids, NULL, err);
    if (KEY("security", "roots")) return parse_roots(c, value, err);
    if (KEY("cache", "budget")) {
        if (wcd_parse_size(value, &sz) || !sz) return wc_fail(err, WC_EINVAL, "budget: '%s' is not a size such as 8G", value);
        c->budget = sz;
        return 0;
    }
    if (KEY("cache", "max_models")) {
        if (parse_uint(value, 10, 1u << 20, &v) || !v) return wc_fail(err, WC_EINVAL, "max_models: '%s'", value);
        c->max_models = (unsigned)v;
        return 0;
    }
    if (KEY("limits", "max_frame")) {
        if (wcd_parse_size(value, &sz) || sz < 1024 || sz > (64u << 20))
            return wc_fail(err, WC_EINVAL, "max_frame: '%s' is not a size from 1K to 64M", value);
        c->max_frame = (uint32_t)sz;
        return 0;
    }
    if (KEY("limits", "max_leases")) {
        if (parse_uint(value, 10, 1u << 24, &v) || !v) return wc_fail(err, WC_EINVAL, "max_leases: '%s'", value);
        c->max_leases = (unsigned)v;
        return 0;
    }
    if (KEY("limits", "max_connections")) {
        if (parse_uint(value, 10, 1u << 20, &v) || !v) return wc_fail(err, WC_EINVAL, "max_connections: '%s'", value);
        c->max_connections = (unsigned)v;
        return 0;
    }
    if (KEY("limits", "max_inflight")) {
        if (parse_uint(value, 10, 1u << 16, &v) || !v) return wc_fail(err, WC_EINVAL, "max_inflight: '%s'", value);
        c->max_inflight = (unsigned)v;
        return 0;
    }
    if (KEY("limits", "conn_out_bytes")) {
        if (wcd_parse_size(value, &sz) || sz < 65536 || sz > (1ull << 32))
            return wc_fail(err, WC_EINVAL, "conn_out_bytes: '%s' is not a size from 64K to 4G", value);
        c->conn_out_bytes = sz;
        return 0;
    }
    if (KEY("limits", "conn_fds")) {
        if (parse_uint(value, 10, 1u << 20, &v) || !v) return wc_fail(err, WC_EINVAL, "conn_fds: '%s'", value);
        c->conn_fds = (unsigned)v;
        return 0;
    }
    unsigned *ms = KEY("limits", "handshake_timeout") ? &c->handshake_timeout_ms
                   : KEY("limits", "idle_timeout")    ? &c->idle_timeout_ms
                   : KEY("limits", "send_timeout")    ? &c->send_timeout_ms
                                                      : NULL;
    if (ms) {
        if (parse_ms(value, ms))
            return wc_fail(err, WC_EINVAL, "%s: '%s' is not a duration such as 10s or 500ms", key, value);
        return 0;
    }
    return wc_fail(err, WC_EINVAL, "unknown setting [%s] %s", section, key);
}

struct load_state {
    wcd_config *c;
    wc_err *err;
    int status;
    const char *path;
};

static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    struct load_state *st = user;
    if (st->status) return 0;
    wc_err e = {0};
    int r = wcd_config_set(st->c, section, key, value, &e);
    if (r) {
        st->status = r;
        wc_fail(st->err, r, "%s: %s", st->path, e.msg[0] ? e.msg : wc_client_strerror(r));
        return 0;
    }
    return 1;
}

int wcd_config_load(wcd_config *c, const char *path, wc_err *err)
{
    struct load_state st = {c, err, 0, path};
    int line = ini_parse(path, on_ini, &st);
    if (line == -1) return wc_fail(err, WC_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (line == -2) return wc_fail(err, WC_ENOMEM, "%s: out of memory", path);
    if (st.status) {
        /* Point at the line: inih stops at the first failing one. */
        if (line > 0 && err) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%.700s (line %d)", err->msg, line);
            memcpy(err->msg, m, sizeof m);
        }
        return st.status;
    }
    if (line > 0) return wc_fail(err, WC_EINVAL, "%s: line %d: syntax error", path, line);
    return 0;
}

int wcd_config_check(const wcd_config *c, wc_err *err)
{
    if (!c->n_roots) return wc_fail(err, WC_EINVAL, "no model roots configured (security.roots, --root)");
    return 0;
}

static bool is_list_key(const char *key)
{
    return !strcasecmp(key, "roots") || !strcasecmp(key, "allow_uids") || !strcasecmp(key, "allow_gids");
}

int wcd_config_build(wcd_config *c, const char *path, const wcd_setting *cli, size_t n_cli,
                     wc_err *err)
{
    wcd_config_defaults(c);
    if (!c->socket_path) return WC_ENOMEM;
    int r = 0;
    if (path) {
        if (!(c->config_path = strdup(path))) r = WC_ENOMEM;
        if (!r) r = wcd_config_load(c, path, err);
    }
    /* A list given on the command line replaces the file's list. */
    bool cleared[3] = {false, false, false};
    for (size_t i = 0; !r && i < n_cli; i++) {
        const wcd_setting *s = &cli[i];
        if (is_list_key(s->key)) {
            int k = !strcasecmp(s->key, "roots") ? 0 : !strcasecmp(s->key, "allow_uids") ? 1 : 2;
            if (!cleared[k]) {
                cleared[k] = true;
                if (k == 0) {
                    for (size_t j = 0; j < c->n_roots; j++) free(c->roots[j]);
                    c->n_roots = 0;
                } else if (k == 1) {
                    c->n_allow_uids = 0;
                    c->allow_any = false;
                } else {
                    c->n_allow_gids = 0;
                }
            }
        }
        r = wcd_config_set(c, s->section, s->key, s->value, err);
    }
    if (!r) r = wcd_config_check(c, err);
    if (r) wcd_config_free(c);
    return r;
}
