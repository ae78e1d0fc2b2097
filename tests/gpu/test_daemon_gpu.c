/* wcodecd's GPU backend end to end (issue 19): daemons started from the build
 * tree with `[daemon] backend = gpu`, clients in other processes (this
 * program again, --child ROLE) mapping tensors on device 0 through
 * libwcodec-client, every byte and scale copied back with the driver and
 * compared with the CPU reference decoder (wc_decode_tensor_ex, reference).
 *   (a) a second process maps one tensor: [gpu] ipc = vmm and legacy;
 *   (b) a second process maps a whole model, releases it and maps it again
 *       (the allocations are imported anew after the Release reply); in
 *       (a) and (b) a second connection of the process maps the same
 *       tensors meanwhile and closes, and the first's stay readable;
 *   (c) a client SIGKILLed holding device leases: the daemon's pool shows
 *       no lease, an Evict brings its used bytes back, and the device's free
 *       memory (cuMemGetInfo) comes back within 8 MiB; both modes;
 *   (d) eviction under a 12 MiB budget while a leased tensor stays valid
 *       and unchanged (other tensors are decoded into the space freed
 *       beside it);
 *   (e) 32 client processes mapping the same tensors at once, cold cache;
 *   (f) the daemon SIGKILLed while a client holds mappings: its next calls
 *       return WC_EDISCONNECTED (a hang would give WC_ETIMEDOUT after the
 *       20 s client timeout) and its mappings stay readable.
 * Models: the example model (tests/daemon/harness.c) and a synthetic one
 * of 48 tensors of 1000 x 1000 (two to a 2 MiB granule once decoded).
 * Exit 77 without a CUDA driver or device; every wait is bounded. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wcodec/wcodec_client.h>

#include "gpu_share.h"
#include "harness.h"
#include "helpers.h"

#define FAIL(...) (fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__), fprintf(stderr, __VA_ARGS__), \
                   fputc('\n', stderr), 1)
#define BIG_TENSORS 48
#define BIG_ROWS 1000
#define BIG_COLS 1000
#define N_CLIENTS 32

/* ---- reading device memory back, and the reference ---- */

static int dev_read(int device, const void *dptr, void *host, size_t n)
{
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    wc_err e = {0};
    if (!n) return 0;
    if (wcg_share_enter(device, &dev, &d, &e)) return FAIL("device %d: %s", device, e.msg);
    CUresult r = d->MemcpyDtoH(host, (CUdeviceptr)(uintptr_t)dptr, n);
    if (r != CUDA_SUCCESS) return FAIL("cuMemcpyDtoH of %zu bytes from %p: error %d", n, dptr, (int)r);
    return 0;
}

static const char *kind_name(wc_location_kind k)
{
    return k == WC_LOC_MEMFD ? "memfd" : k == WC_LOC_CUDA_VMM ? "cuda_vmm" : k == WC_LOC_CUDA_IPC ? "cuda_ipc" : "?";
}

/* A mapped device tensor against the CPU reference decode of the file. */
static int check_tensor(const wc_file *f, const wc_client_tensor *t, wc_location_kind kind)
{
    if (t->location != kind) return FAIL("%s: came back as %s, not %s", t->name, kind_name(t->location), kind_name(kind));
    if (t->device != 0) return FAIL("%s: on device %d, not 0", t->name, t->device);
    int i = wc_file_find(f, t->name);
    if (i < 0) return FAIL("%s: not in the file", t->name);
    wc_tensor_info ti;
    wc_file_tensor_info(f, (size_t)i, &ti);
    if (t->size != ti.out_bytes || t->n_scales != ti.n_scales || (ti.n_scales && !t->scales))
        return FAIL("%s: %" PRIu64 " bytes, %" PRIu64 " scales; the file says %" PRIu64 ", %" PRIu64, t->name, t->size,
                    t->n_scales, ti.out_bytes, ti.n_scales);
    uint8_t *want = malloc(ti.out_bytes + 1), *got = malloc(ti.out_bytes + 1);
    float *wsc = calloc(ti.n_scales + 1, 4), *gsc = calloc(ti.n_scales + 1, 4);
    wc_decode_opts o = {.reference = true};
    wc_err e = {0};
    int rc = 0;
    if (!want || !got || !wsc || !gsc) rc = FAIL("out of memory");
    else if (wc_decode_tensor_ex(f, (size_t)i, want, ti.out_bytes, wsc, ti.n_scales, &o, &e))
        rc = FAIL("reference decode of %s: %s", t->name, e.msg);
    else if (dev_read(t->device, t->data, got, ti.out_bytes) ||
             dev_read(t->device, t->scales, gsc, ti.n_scales * sizeof(float)))
        rc = FAIL("%s: reading it back", t->name);
    else if (memcmp(want, got, ti.out_bytes)) rc = FAIL("%s: bytes differ from the CPU reference", t->name);
    else if (memcmp(wsc, gsc, ti.n_scales * sizeof(float))) rc = FAIL("%s: scales differ from the CPU reference", t->name);
    free(want), free(got), free(wsc), free(gsc);
    return rc;
}

static int check_all(const wc_file *f, wc_client_tensor **ts, size_t n, wc_location_kind kind)
{
    for (size_t i = 0; i < n; i++)
        if (check_tensor(f, ts[i], kind)) return 1;
    return 0;
}

static int get_dev(wc_client *c, uint64_t model, const char *name, wc_client_tensor ***ts, size_t *n, wc_err *e)
{
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.device = 0;
    if (!name || !strcmp(name, "--all")) return wc_client_get2(c, model, WC_SELECT_ALL, NULL, 0, &o, ts, n, e);
    return wc_client_get2(c, model, WC_SELECT_NAMES, &name, 1, &o, ts, n, e);
}

static int pipe_byte(int fd, bool out, int timeout_ms)
{
    char b = 'x';
    if (out) return write(fd, &b, 1) == 1 ? 0 : -1;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return -1;
    return read(fd, &b, 1) == 1 ? 0 : -1;
}

/* ---- the clients (--child ROLE SOCK MODEL KIND [SEL] [FDS]) ---- */

typedef struct child_args {
    const char *role, *sock, *model, *sel;
    wc_location_kind kind;
    int ready_fd, go_fd;
} child_args;

/* Opens the file here (for the reference), connects and opens the model. */
static int child_connect(const child_args *a, wc_client **c, uint64_t *model, wc_file **f)
{
    wc_err e = {0};
    wc_client_model m;
    if (wc_file_open(f, a->model, &e)) return FAIL("child: %s", e.msg);
    if (wc_client_connect(c, a->sock, &e)) return FAIL("child: %s", e.msg);
    wc_client_set_timeout(*c, 20000);
    if (wc_client_open(*c, a->model, &m, &e)) return FAIL("child: %s", e.msg);
    *model = m.id;
    return 0;
}

/* A second connection of this process maps the same tensors (the same
 * allocations: a legacy handle open twice in one process) and closes;
 * the first connection's tensors must still read the same. */
static int second_connection(const child_args *a, const wc_file *f, wc_client_tensor **held, size_t n_held)
{
    wc_client *c2;
    wc_client_model m;
    wc_client_tensor **ts;
    size_t n;
    wc_err e = {0};
    if (wc_client_connect(&c2, a->sock, &e) || wc_client_open(c2, a->model, &m, &e) ||
        get_dev(c2, m.id, a->sel, &ts, &n, &e))
        return FAIL("child: second connection: %s", e.msg);
    if (check_all(f, ts, n, a->kind)) return 1;
    wc_client_release(c2, ts, n, NULL);
    wc_client_tensors_free(ts);
    wc_client_close(c2);
    if (check_all(f, held, n_held, a->kind)) return FAIL("child: the second connection's close broke the first's");
    return 0;
}

/* map: SEL on device 0, checked, released; twice (the second get imports
 * what the first Release reply let go of). hold: mapped, checked, then
 * waits to be killed. wait-go: maps when the parent says go. */
static int child_map(const child_args *a)
{
    wc_client *c;
    uint64_t model;
    wc_file *f;
    if (child_connect(a, &c, &model, &f)) return 1;
    bool hold = !strcmp(a->role, "hold");
    if (!strcmp(a->role, "wait-go") && (pipe_byte(a->ready_fd, true, 0) || pipe_byte(a->go_fd, false, 120000)))
        return FAIL("child %d: no go", (int)getpid());
    for (int round = 0; round < (hold ? 1 : 2); round++) {
        wc_client_tensor **ts;
        size_t n;
        wc_err e = {0};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (get_dev(c, model, a->sel, &ts, &n, &e)) return FAIL("child %d: get %s: %s", (int)getpid(), a->sel, e.msg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (check_all(f, ts, n, a->kind)) return 1;
        fprintf(stderr, "# child %d: round %d: %zu tensors mapped (%s) in %.2f ms and equal to the reference\n",
                (int)getpid(), round, n, kind_name(a->kind),
                (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        if (hold) {
            if (pipe_byte(a->ready_fd, true, 0)) return FAIL("child: ready");
            for (;;) pause();
        }
        if (round == 0 && second_connection(a, f, ts, n)) return 1;
        if (wc_client_release(c, ts, n, &e)) return FAIL("child: release: %s", e.msg);
        wc_client_tensors_free(ts);
    }
    wc_client_close(c);
    wc_file_close(f);
    return 0;
}

/* outlive: maps everything, then, once the parent has killed the daemon,
 * expects WC_EDISCONNECTED from the next calls and still reads its tensors. */
static int child_outlive(const child_args *a)
{
    wc_client *c;
    uint64_t model;
    wc_file *f;
    wc_client_tensor **ts;
    size_t n;
    wc_err e = {0};
    if (child_connect(a, &c, &model, &f)) return 1;
    if (get_dev(c, model, "--all", &ts, &n, &e)) return FAIL("child: get: %s", e.msg);
    if (check_all(f, ts, n, a->kind)) return 1;
    if (pipe_byte(a->ready_fd, true, 0) || pipe_byte(a->go_fd, false, 60000)) return FAIL("child: no word");
    wc_client_stats st;
    int r = wc_client_stats_get(c, &st, &e);
    if (r != WC_EDISCONNECTED) return FAIL("child: stats after the daemon died: %d (%s), not WC_EDISCONNECTED", r, e.msg);
    wc_client_tensor **ts2;
    size_t n2;
    r = get_dev(c, model, "--all", &ts2, &n2, &e);
    if (r != WC_EDISCONNECTED) return FAIL("child: get after the daemon died: %d (%s)", r, e.msg);
    if (check_all(f, ts, n, a->kind)) return FAIL("child: the mappings did not outlive the daemon");
    fprintf(stderr, "# child: WC_EDISCONNECTED, and %zu tensors still equal to the reference\n", n);
    r = wc_client_release(c, ts, n, &e);
    if (r != WC_EDISCONNECTED) return FAIL("child: release after the daemon died: %d", r);
    wc_client_tensors_free(ts);
    wc_client_close(c);
    wc_file_close(f);
    return 0;
}

static int child_main(int argc, char **argv)
{
    if (argc < 7) return FAIL("child: usage");
    child_args a = {argv[2], argv[3], argv[4], argv[6], WC_LOC_CUDA_VMM, -1, -1};
    a.kind = !strcmp(argv[5], "legacy") ? WC_LOC_CUDA_IPC : WC_LOC_CUDA_VMM;
    if (argc > 7) a.ready_fd = atoi(argv[7]);
    if (argc > 8) a.go_fd = atoi(argv[8]);
    if (!strcmp(a.role, "outlive")) return child_outlive(&a);
    return child_map(&a);
}

/* ---- the parent: processes, daemons, stats ---- */

/* Runs this program as a client; fds ready/go (-1: none) stay open in it. */
static pid_t spawn(const char *role, const char *sock, const char *model, const char *ipc, const char *sel,
                   int ready, int go)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char rs[16], gs[16];
    snprintf(rs, sizeof rs, "%d", ready);
    snprintf(gs, sizeof gs, "%d", go);
    if (ready >= 0) fcntl(ready, F_SETFD, 0);
    if (go >= 0) fcntl(go, F_SETFD, 0);
    execl("/proc/self/exe", "test_daemon_gpu", "--child", role, sock, model, ipc, sel, rs, gs, (char *)NULL);
    _exit(127);
}

/* Waits up to timeout_ms for pid; kills it after that. 0 when it exited 0. */
static int reap(pid_t pid, int timeout_ms)
{
    int64_t end = wdt_now_ms() + timeout_ms;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0) return FAIL("waitpid %d: %s", (int)pid, strerror(errno));
        if (wdt_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return FAIL("client %d still running after %d ms: killed", (int)pid, timeout_ms);
        }
        usleep(10000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) return FAIL("client %d ended with status %#x", (int)pid, st);
    return 0;
}

static unsigned char g_uuid[16]; /* device 0's, as this process sees it */

static int start_gpu(wdt_daemon *d, const wdt_env *env, const char *ipc, const char *budget)
{
    char conf[256];
    snprintf(conf, sizeof conf, "[daemon]\nbackend = gpu\n[gpu]\nbudget = %s\nipc = %s\n", budget, ipc);
    if (wdt_daemon_start(d, env, conf, NULL, NULL)) return FAIL("wcodecd with the GPU backend (%s) did not start", ipc);
    return 0;
}

/* Device 0's pool in the daemon's stats. */
static int pool_get(wc_client *c, wc_client_pool *out)
{
    wc_client_pools *p;
    wc_err e = {0};
    if (wc_client_pools_get(c, &p, &e)) return FAIL("stats: %s", e.msg);
    int found = 0;
    for (size_t i = 0; i < p->n_pools && !found; i++)
        if (!memcmp(p->pools[i].uuid, g_uuid, 16)) *out = p->pools[i], found = 1;
    if (strcmp(p->backend, "gpu")) found = 0;
    if (!found) fprintf(stderr, "backend \"%s\", %zu pools, none for device 0\n", p->backend, p->n_pools);
    wc_client_pools_free(p);
    if (!found) return FAIL("the daemon serves no GPU pool for device 0");
    if (out->failed) return FAIL("the daemon's pool %s failed: %s", out->name, out->status);
    return 0;
}

typedef bool (*pool_pred)(const wc_client_pool *p, uint64_t arg);
static bool no_leases(const wc_client_pool *p, uint64_t arg) { return (void)arg, !p->leased_bytes && !p->leased_tensors; }
static bool used_at_most(const wc_client_pool *p, uint64_t arg) { return p->used_bytes <= arg; }

static int pool_until(wc_client *c, pool_pred pred, uint64_t arg, int timeout_ms, wc_client_pool *last)
{
    int64_t end = wdt_now_ms() + timeout_ms;
    do {
        if (pool_get(c, last)) return 1;
        if (pred(last, arg)) return 0;
        usleep(20000);
    } while (wdt_now_ms() < end);
    return 1;
}

static int free_mem(size_t *free_b)
{
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    wc_err e = {0};
    size_t total;
    if (wcg_share_enter(0, &dev, &d, &e)) return FAIL("%s", e.msg);
    return d->MemGetInfo(free_b, &total) == CUDA_SUCCESS ? 0 : FAIL("cuMemGetInfo");
}

/* The largest tensor of the example model: coded, with scales. */
static const char *largest(const wc_file *f)
{
    size_t best = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.out_bytes > bytes) bytes = ti.out_bytes, best = i;
    }
    wc_tensor_info ti;
    wc_file_tensor_info(f, best, &ti);
    return ti.name;
}

/* (a) and (b) on one daemon per mode. */
static int test_handoff(const wdt_env *env, const char *ipc)
{
    wdt_daemon d;
    if (start_gpu(&d, env, ipc, "1G")) return 1;
    int rc = reap(spawn("map", d.sock, env->model, ipc, largest(env->ref), -1, -1), 120000);
    if (!rc) rc = reap(spawn("map", d.sock, env->model, ipc, "--all", -1, -1), 120000);
    wc_client *c = wdt_connect(&d);
    wc_client_pool p;
    if (!rc && (!c || pool_until(c, no_leases, 0, 10000, &p))) rc = FAIL("leases left after the clients ended");
    if (!rc && (!p.decodes || !p.arenas)) rc = FAIL("pool %s: %" PRIu64 " decodes, %u arenas", p.name, p.decodes, p.arenas);
    if (!rc) printf("ok (a, b) %s: one tensor, then the whole model twice, mapped by other processes; pool %s: "
                    "%u arenas, %" PRIu64 " bytes used\n", ipc, p.name, p.arenas, p.used_bytes);
    wc_client_close(c);
    if (wdt_daemon_stop(&d)) rc = rc ? rc : FAIL("wcodecd did not stop cleanly");
    return rc;
}

/* The model decoded once on device 0 by this process, released and evicted:
 * whatever the daemon's decoder allocates on first use (and keeps) is
 * allocated before a baseline is taken. */
static int warm_up(wc_client *c, const char *model)
{
    wc_client_model m;
    wc_client_tensor **ts;
    size_t n;
    wc_err e = {0};
    if (wc_client_open(c, model, &m, &e) || get_dev(c, m.id, "--all", &ts, &n, &e)) return FAIL("warm-up: %s", e.msg);
    if (wc_client_release(c, ts, n, &e) || wc_client_evict(c, 0, NULL, NULL, &e)) return FAIL("warm-up: %s", e.msg);
    wc_client_tensors_free(ts);
    return 0;
}

/* (c) */
static int test_killed_client(const wdt_env *env, const char *big, const char *ipc)
{
    wdt_daemon d;
    if (start_gpu(&d, env, ipc, "1G")) return 1;
    wc_client *c = wdt_connect(&d);
    wc_client_pool p0 = {0}, p = {0};
    size_t free0 = 0, free1 = 0;
    int fds[2] = {-1, -1};
    int rc = !c || warm_up(c, big) || pool_get(c, &p0) || free_mem(&free0) || pipe2(fds, O_CLOEXEC);
    if (rc) fprintf(stderr, "(c): no baseline\n");
    pid_t pid = rc ? -1 : spawn("hold", d.sock, big, ipc, "--all", fds[1], -1);
    if (!rc && pipe_byte(fds[0], false, 120000)) rc = FAIL("the holding client did not map the model");
    if (!rc && (pool_get(c, &p) || p.leased_tensors != BIG_TENSORS))
        rc = FAIL("%u leased tensors on the device while the client holds %d", p.leased_tensors, BIG_TENSORS);
    /* the device's free memory shows the model (and the client's context):
     * the check that it comes back below is not vacuous */
    size_t free_mid = 0;
    if (!rc && (free_mem(&free_mid) || free_mid + (size_t)BIG_TENSORS * BIG_ROWS * BIG_COLS > free0))
        rc = FAIL("device free memory %zu MiB while the client holds the model, %zu MiB before", free_mid >> 20,
                  free0 >> 20);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (!rc && pool_until(c, no_leases, 0, 10000, &p))
        rc = FAIL("%" PRIu64 " bytes still leased on the device after the client was killed", p.leased_bytes);
    /* the model is still cached, unleased: the evict below must be what
     * gives its memory back */
    uint64_t model_bytes = (uint64_t)BIG_TENSORS * BIG_ROWS * BIG_COLS;
    if (!rc && p.used_bytes < p0.used_bytes + model_bytes)
        rc = FAIL("used %" PRIu64 " bytes with the model cached, %" PRIu64 " before it", p.used_bytes, p0.used_bytes);
    uint32_t et = 0;
    uint64_t eb = 0;
    wc_err e = {0};
    if (!rc && wc_client_evict(c, 0, &et, &eb, &e)) rc = FAIL("evict: %s", e.msg);
    if (!rc && et != BIG_TENSORS) rc = FAIL("evicted %u tensors, not the %d cached", et, BIG_TENSORS);
    if (!rc && pool_until(c, used_at_most, p0.used_bytes, 10000, &p))
        rc = FAIL("used %" PRIu64 " bytes after the evict, %" PRIu64 " before the client", p.used_bytes, p0.used_bytes);
    /* the driver frees the killed process's context and imports on its own time */
    for (int64_t end = wdt_now_ms() + 15000; !rc && wdt_now_ms() < end; usleep(50000)) {
        if (free_mem(&free1)) rc = 1;
        if (free1 + (8u << 20) >= free0) break;
    }
    if (!rc && free1 + (8u << 20) < free0)
        rc = FAIL("device memory free %zu MiB, %zu MiB before the client", free1 >> 20, free0 >> 20);
    if (!rc) printf("ok (c) %s: client killed holding %d tensors: leases 0, evicted %u tensors (%" PRIu64
                    " bytes), used %" PRIu64 " bytes, device free memory %zu MiB (%zu before)\n",
                    ipc, BIG_TENSORS, et, eb, p.used_bytes, free1 >> 20, free0 >> 20);
    wc_client_close(c);
    if (fds[0] >= 0) close(fds[0]), close(fds[1]);
    if (wdt_daemon_stop(&d)) rc = rc ? rc : FAIL("wcodecd did not stop cleanly");
    return rc;
}

/* (d) */
static int test_evict_leased(const wdt_env *env, const char *big)
{
    wdt_daemon d;
    if (start_gpu(&d, env, "vmm", "12M")) return 1;
    wc_client *c = wdt_connect(&d);
    wc_file *f = NULL;
    wc_client_model m;
    wc_err e = {0};
    int rc = !c || wc_file_open(&f, big, &e) || wc_client_open(c, big, &m, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    wc_client_tensor **held = NULL, **ts;
    size_t nh = 0, n;
    uint8_t *snap = malloc((size_t)BIG_ROWS * BIG_COLS);
    if (!rc && (get_dev(c, m.id, "blk.0.weight", &held, &nh, &e) || nh != 1)) rc = FAIL("get blk.0.weight: %s", e.msg);
    if (!rc) rc = check_tensor(f, held[0], WC_LOC_CUDA_VMM) || dev_read(0, held[0]->data, snap, held[0]->size);
    for (int i = 1; !rc && i < BIG_TENSORS; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.weight", i);
        if (get_dev(c, m.id, name, &ts, &n, &e)) rc = FAIL("get %s under the budget: %s", name, e.msg);
        else {
            rc = check_tensor(f, ts[0], WC_LOC_CUDA_VMM);
            if (wc_client_release(c, ts, n, &e)) rc = FAIL("release: %s", e.msg);
            wc_client_tensors_free(ts);
        }
    }
    wc_client_pool p;
    if (!rc && pool_get(c, &p)) rc = 1;
    if (!rc && (!p.evictions || p.used_bytes > p.budget_bytes))
        rc = FAIL("%" PRIu64 " evictions, %" PRIu64 " bytes used of %" PRIu64, p.evictions, p.used_bytes, p.budget_bytes);
    uint8_t *now = malloc((size_t)BIG_ROWS * BIG_COLS);
    if (!rc && (dev_read(0, held[0]->data, now, held[0]->size) || memcmp(now, snap, held[0]->size)))
        rc = FAIL("the leased tensor changed while others were evicted and decoded");
    if (!rc) rc = check_tensor(f, held[0], WC_LOC_CUDA_VMM);
    if (!rc) printf("ok (d): %d tensors through a %" PRIu64 "-byte budget (%" PRIu64 " evictions); the leased one "
                    "unchanged\n", BIG_TENSORS, p.budget_bytes, p.evictions);
    if (held) wc_client_release(c, held, nh, NULL), wc_client_tensors_free(held);
    free(snap), free(now);
    wc_client_close(c);
    if (f) wc_file_close(f);
    if (wdt_daemon_stop(&d)) rc = rc ? rc : FAIL("wcodecd did not stop cleanly");
    return rc;
}

/* (e) */
static int test_many(const wdt_env *env)
{
    wdt_daemon d;
    if (start_gpu(&d, env, "vmm", "1G")) return 1;
    int ready[2], go[2], rc = 0;
    if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) return FAIL("pipe");
    pid_t pids[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) pids[i] = spawn("wait-go", d.sock, env->model, "vmm", "--all", ready[1], go[0]);
    for (int i = 0; i < N_CLIENTS && !rc; i++)
        if (pipe_byte(ready[0], false, 120000)) rc = FAIL("%d of %d clients ready", i, N_CLIENTS);
    for (int i = 0; i < N_CLIENTS && !rc; i++) pipe_byte(go[1], true, 0);
    for (int i = 0; i < N_CLIENTS; i++)
        if (reap(pids[i], 300000)) rc = 1;
    wc_client *c = wdt_connect(&d);
    wc_client_pool p;
    if (!rc && (!c || pool_until(c, no_leases, 0, 10000, &p))) rc = FAIL("leases left after %d clients", N_CLIENTS);
    if (!rc) printf("ok (e): %d clients mapped the whole model at once, twice each, bit-exact\n", N_CLIENTS);
    wc_client_close(c);
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    if (wdt_daemon_stop(&d)) rc = rc ? rc : FAIL("wcodecd did not stop cleanly");
    return rc;
}

/* (f) */
static int test_daemon_killed(const wdt_env *env)
{
    wdt_daemon d;
    if (start_gpu(&d, env, "vmm", "1G")) return 1;
    int ready[2], go[2], rc = 0;
    if (pipe2(ready, O_CLOEXEC) || pipe2(go, O_CLOEXEC)) return FAIL("pipe");
    pid_t pid = spawn("outlive", d.sock, env->model, "vmm", "--all", ready[1], go[0]);
    if (pipe_byte(ready[0], false, 120000)) rc = FAIL("the client did not map the model");
    wdt_daemon_kill(&d);
    if (!rc) pipe_byte(go[1], true, 0);
    if (reap(pid, 60000)) rc = 1;
    if (!rc) printf("ok (f): daemon killed; the client got WC_EDISCONNECTED and still reads its tensors\n");
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    return rc;
}

/* BIG_TENSORS tensors of BIG_ROWS x BIG_COLS F32, encoded beneath the
 * daemon's root. */
static int make_big(const wdt_env *env, char *out, size_t out_size)
{
    static float *data[BIG_TENSORS];
    static char names[BIG_TENSORS][32];
    th_tensor t[BIG_TENSORS];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < BIG_TENSORS; i++) {
        if (!(data[i] = malloc(sizeof(float) * BIG_ROWS * BIG_COLS))) return FAIL("out of memory");
        for (size_t k = 0; k < (size_t)BIG_ROWS * BIG_COLS; k++) {
            double u = (double)(th_rand(&s) >> 11) / 9007199254740992.0;
            data[i][k] = (float)((u - 0.5) * (1.0 + 0.5 * sin((double)k / 997.0)) * (i + 1));
        }
        snprintf(names[i], sizeof names[i], "blk.%d.weight", i);
        t[i] = (th_tensor){names[i], WC_DT_F32, 2, {BIG_ROWS, BIG_COLS}, data[i]};
    }
    char src[192];
    snprintf(src, sizeof src, "%s/big.safetensors", env->dir);
    snprintf(out, out_size, "%s/big.wcodec", env->models);
    int rc = th_write_safetensors(src, t, BIG_TENSORS);
    for (int i = 0; i < BIG_TENSORS; i++) free(data[i]);
    if (rc) return FAIL("writing %s", src);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    wc_err e = {0};
    if (wc_encode_file(src, out, &o, &e)) return FAIL("encode %s: %s", src, e.msg);
    unlink(src);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--child")) return child_main(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const wcg_cudrv *d = wcg_cudrv_get();
    int n = 0;
    if (!d || d->DeviceGetCount(&n) != CUDA_SUCCESS || n < 1) {
        printf("no CUDA device (%s): skipped\n", d ? "none visible" : wcg_cudrv_reason());
        return 77;
    }
    CUdevice dev;
    CUuuid u;
    if (d->DeviceGet(&dev, 0) != CUDA_SUCCESS || d->DeviceGetUuid(&u, dev) != CUDA_SUCCESS) return FAIL("device 0");
    memcpy(g_uuid, u.bytes, 16);
    wdt_env env;
    char big[256];
    if (wdt_env_init(&env) || make_big(&env, big, sizeof big)) return 1;
    const char *only = getenv("WDT_GPU_ONLY"); /* a, b, ... to run some parts only */
#define RUN(k) (!only || strchr(only, k))
    int fails = 0;
    if (RUN('a') || RUN('b')) fails += test_handoff(&env, "vmm") + test_handoff(&env, "legacy");
    if (RUN('c')) fails += test_killed_client(&env, big, "vmm") + test_killed_client(&env, big, "legacy");
    if (RUN('d')) fails += test_evict_leased(&env, big);
    if (RUN('e')) fails += test_many(&env);
    if (RUN('f')) fails += test_daemon_killed(&env);
    wdt_env_fini(&env);
    printf("%s: %d part(s) failed\n", fails ? "FAIL" : "ok", fails);
    return fails ? 1 : 0;
}
