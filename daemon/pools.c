/* The daemon's memory pools, as [daemon] backend and [gpu] say: the host
 * pool (memfds) always, for clients that map host memory and for what no
 * GPU serves; then one pool per usable GPU (backend_gpu.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wcd.h"

/* "GPU-8d3e1c2a-...": how nvidia-smi and CUDA_VISIBLE_DEVICES name a GPU. */
static void uuid_string(const unsigned char u[16], char out[41])
{
    snprintf(out, 41, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

/* Whether [gpu] devices names this device (all when the list is empty). */
static bool wanted(const wcd_config *cfg, int ordinal, const unsigned char uuid[16])
{
    if (!cfg->n_gpu_devices) return true;
    char us[41];
    uuid_string(uuid, us);
    for (size_t i = 0; i < cfg->n_gpu_devices; i++) {
        const char *w = cfg->gpu_devices[i];
        char *end;
        long v = strtol(w, &end, 10);
        if (end != w && !*end && v == ordinal) return true;
        /* A prefix of the UUID is enough, as for CUDA_VISIBLE_DEVICES. */
        if (!strncasecmp(w, "GPU-", 4) && strlen(w) > 4 && !strncasecmp(us, w, strlen(w))) return true;
    }
    return false;
}

static int open_gpus(wcd_cache *c, const wcd_config *cfg, wc_err *err)
{
    int n;
    int r = wcd_gpu_count(&n, err);
    if (r) return r;
    char why[400] = "";
    unsigned opened = 0;
    for (int i = 0; i < n; i++) {
        wcd_pool *p;
        wc_err e = {0};
        unsigned char uuid[16];
        /* Only the devices [gpu] devices names get a decoder (its context,
         * pinned ring and io threads). */
        if (!(r = wcd_gpu_uuid(i, uuid, &e)) && !wanted(cfg, i, uuid)) continue;
        if (r || (r = wcd_gpu_pool_open(c, i, cfg, &p, &e))) {
            wcd_log(WCD_LOG_WARN, "GPU %d not used: %s", i, e.msg);
            snprintf(why, sizeof why, "GPU %d: %.380s", i, e.msg);
            continue;
        }
        if ((r = wcd_cache_add_pool(c, p, err))) {
            p->be->close(p);
            return r;
        }
        char us[41];
        uuid_string(p->uuid, us);
        wcd_log(WCD_LOG_NOTICE, "%s: %s, budget %llu MiB, %s hand-off; decoder warm", p->name, us,
                (unsigned long long)(p->budget >> 20), p->be->name);
        opened++;
    }
    if (!opened)
        return wc_fail(err, WC_ENODEV, "no usable GPU%s%s", why[0] ? ": " : (cfg->n_gpu_devices ? " among [gpu] devices" : ""),
                       why);
    return 0;
}

int wcd_pools_open(wcd_cache *c, const wcd_config *cfg, wc_err *err)
{
    wcd_pool *host = calloc(1, sizeof *host);
    if (!host) return wc_fail(err, WC_ENOMEM, "out of memory");
    host->be = &wcd_backend_memfd;
    host->ordinal = -1;
    host->budget = cfg->budget;
    snprintf(host->name, sizeof host->name, "host");
    int r = wcd_cache_add_pool(c, host, err);
    if (r) {
        free(host);
        return r;
    }
    if (cfg->backend == WCD_BACKEND_CPU) return 0;
    wc_err e = {0};
    r = open_gpus(c, cfg, &e);
    if (!r) return 0;
    if (cfg->backend == WCD_BACKEND_GPU) return wc_fail(err, r, "[daemon] backend = gpu: %s", e.msg);
    wcd_log(WCD_LOG_NOTICE, "backend auto: serving from the CPU: %s", e.msg);
    return 0;
}

const char *wcd_pools_backend(const wcd_cache *c)
{
    for (unsigned i = 0; i < c->n_pools; i++)
        if (c->pools[i]->is_gpu) return "gpu";
    return "cpu";
}

static bool same_devices(const wcd_config *a, const wcd_config *b)
{
    if (a->n_gpu_devices != b->n_gpu_devices) return false;
    for (size_t i = 0; i < a->n_gpu_devices; i++)
        if (strcmp(a->gpu_devices[i], b->gpu_devices[i])) return false;
    return true;
}

void wcd_pools_reload(wcd_cache *c, const wcd_config *old, const wcd_config *next)
{
    /* Devices and their decoders are made once: changing them would drop
     * every device tensor that clients map. */
    if (old->backend != next->backend || old->gpu_ipc != next->gpu_ipc || !same_devices(old, next))
        wcd_log(WCD_LOG_WARN, "reload: [daemon] backend, [gpu] devices and [gpu] ipc take effect at restart");
    wcd_pool_set_budget(c->pools[0], next->budget);
    for (unsigned i = 1; i < c->n_pools; i++) {
        wcd_pool *p = c->pools[i];
        uint64_t total, free_b;
        wcd_gpu_pool_meminfo(p, &total, &free_b);
        if (next->gpu_budget) wcd_pool_set_budget(p, next->gpu_budget);
        else if (total) wcd_pool_set_budget(p, total / 100 * next->gpu_budget_pct);
    }
}
