#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t wdt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A small safetensors file: 2-D float matrices (coded) and vectors (raw). */
static int write_synthetic(const char *path)
{
    static const struct { const char *name; unsigned rows, cols; } t[] = {
        {"blk.0.attn.weight", 256, 512}, {"blk.0.attn.bias", 1, 256}, {"blk.0.mlp.weight", 512, 256},
        {"blk.1.attn.weight", 256, 512}, {"blk.1.attn.bias", 1, 256}, {"blk.1.mlp.weight", 384, 256},
        {"embed.weight", 1000, 64},      {"norm.weight", 1, 64},
    };
    size_t n = sizeof t / sizeof t[0];
    char hdr[4096];
    size_t off = 0, hl = (size_t)snprintf(hdr, sizeof hdr, "{");
    for (size_t i = 0; i < n; i++) {
        size_t bytes = (size_t)t[i].rows * t[i].cols * 4;
        if (t[i].rows == 1)
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%u],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t[i].name, t[i].cols, off, off + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%u,%u],\"data_offsets\":[%zu,%zu]}",
                                   i ? "," : "", t[i].name, t[i].rows, t[i].cols, off, off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t h = hl;
    fwrite(&h, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < (size_t)t[i].rows * t[i].cols; k++) {
            s = s * 1103515245u + 12345u;
            float v = ((float)(s >> 8) / 16777216.0f - 0.5f) * (float)(1 + i);
            fwrite(&v, 4, 1, f);
        }
    return fclose(f);
}

int wdt_env_init(wdt_env *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/wcdtest-XXXXXX");
    if (!mkdtemp(e->dir)) return perror("mkdtemp"), -1;
    snprintf(e->models, sizeof e->models, "%s/models", e->dir);
    snprintf(e->model, sizeof e->model, "%s/model.wcodec", e->models);
    mkdir(e->models, 0755);
    const char *cands[] = {getenv("WDT_MODEL"), WDT_EXAMPLE_MODEL, WDT_WEIGHTS_MODEL};
    const char *src = NULL;
    for (size_t i = 0; i < 3 && !src; i++)
        if (cands[i] && cands[i][0] && access(cands[i], R_OK) == 0) src = cands[i];
    char synth[192];
    if (!src) {
        snprintf(synth, sizeof synth, "%s/synthetic.safetensors", e->dir);
        if (write_synthetic(synth)) return perror(synth), -1;
        src = synth;
    }
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.threads = 1;
    wc_err err = {0};
    if (wc_encode_file(src, e->model, &o, &err)) return fprintf(stderr, "encode %s: %s\n", src, err.msg), -1;
    if (wc_file_open(&e->ref, e->model, &err)) return fprintf(stderr, "open %s: %s\n", e->model, err.msg), -1;
    fprintf(stderr, "# model: %s (%zu tensors)\n", src, wc_file_tensor_count(e->ref));
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void wdt_env_fini(wdt_env *e)
{
    if (e->ref) wc_file_close(e->ref);
    if (e->dir[0] && !getenv("WDT_KEEP")) nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

unsigned wdt_daemon_nofile;

int wdt_daemon_start(wdt_daemon *d, const wdt_env *e, const char *config, const char *const *args,
                     const char *const *env_extra)
{
    static int seq;
    memset(d, 0, sizeof *d);
    seq++;
    snprintf(d->sock, sizeof d->sock, "%s/d%d.sock", e->dir, seq);
    snprintf(d->conf, sizeof d->conf, "%s/d%d.conf", e->dir, seq);
    snprintf(d->log, sizeof d->log, "%s/d%d.log", e->dir, seq);
    snprintf(d->notify_path, sizeof d->notify_path, "%s/d%d.notify", e->dir, seq);
    FILE *f = fopen(d->conf, "w");
    if (!f) return perror(d->conf), -1;
    /* The CPU backend unless the test's config says otherwise (later keys
     * win): the memfd tests mean the same on a host with a GPU. */
    fprintf(f, "[daemon]\nsocket = %s\nthreads = 2\nlog_level = debug\nbackend = cpu\n[security]\nroots = %s\n%s\n",
            d->sock, e->models, config ? config : "");
    fclose(f);
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d->notify_path);
    if (bind(d->notify_fd, (struct sockaddr *)&sa, sizeof sa) < 0) return perror("bind notify"), -1;
    d->pid = fork();
    if (d->pid < 0) return perror("fork"), -1;
    if (d->pid == 0) {
        /* a test that fails an assertion skips its stop: the daemon must not
         * outlive it (it would hold meson's output pipe open) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) dup2(fd, 2);
        setenv("NOTIFY_SOCKET", d->notify_path, 1);
        if (wdt_daemon_nofile) {
            struct rlimit rl = {wdt_daemon_nofile, wdt_daemon_nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl)) _exit(126);
            /* Run as root, the daemon would keep these two, and either lifts
             * the kernel's limit on descriptors in flight (ETOOMANYREFS):
             * drop them from the bounding set, so that exec leaves them out.
             * (EPERM when not root: then it has neither anyway.) */
            prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0);
            prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
        }
        for (size_t i = 0; env_extra && env_extra[i]; i++) putenv((char *)env_extra[i]);
        /* $WDT_WCODECD: a daemon elsewhere than this build tree (the GPU machine's copy) */
        const char *exe = getenv("WDT_WCODECD") ? getenv("WDT_WCODECD") : WDT_WCODECD;
        const char *argv[32] = {exe, "--config", d->conf};
        size_t n = 3;
        for (size_t i = 0; args && args[i] && n < 31; i++) argv[n++] = args[i];
        argv[n] = NULL;
        execv(exe, (char **)argv);
        _exit(127);
    }
    if (!wdt_notify_wait(d, "READY=1", 20000, NULL, 0)) {
        fprintf(stderr, "wcodecd did not become ready; log %s:\n", d->log);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat %s >&2", d->log);
        if (system(cmd)) {}
        wdt_daemon_kill(d);
        return -1;
    }
    return 0;
}

int wdt_notify_wait(wdt_daemon *d, const char *needle, int timeout_ms, char *seen, size_t seen_size)
{
    int64_t end = wdt_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - wdt_now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {d->notify_fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) continue;
        char buf[4096];
        ssize_t n = recv(d->notify_fd, buf, sizeof buf - 1, 0);
        if (n <= 0) continue;
        buf[n] = 0;
        if (seen && seen_size) {
            size_t l = strlen(seen);
            snprintf(seen + l, seen_size - l, "%s\n", buf);
        }
        if (strstr(buf, needle)) return 1;
    }
}

static void show_log(const wdt_daemon *d, int lines)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "tail -n %d %s >&2", lines, d->log);
    if (system(cmd)) {}
}

int wdt_daemon_stop(wdt_daemon *d)
{
    if (d->pid <= 0) return -1;
    kill(d->pid, SIGTERM);
    int st;
    waitpid(d->pid, &st, 0);
    d->pid = 0;
    close(d->notify_fd);
    unlink(d->notify_path);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "wcodecd ended with status %#x; its log ends:\n", st);
        show_log(d, 40);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    return 0;
}

void wdt_daemon_kill(wdt_daemon *d)
{
    if (d->pid <= 0) return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    close(d->notify_fd);
    unlink(d->notify_path);
}

wc_client *wdt_connect(const wdt_daemon *d)
{
    wc_client *c = NULL;
    wc_err err = {0};
    if (wc_client_connect(&c, d->sock, &err)) fprintf(stderr, "connect: %s\n", err.msg);
    return c;
}

void wdt_reference(const wdt_env *e, size_t i, void **data, float **scales)
{
    wc_tensor_info ti;
    wc_file_tensor_info(e->ref, i, &ti);
    *data = malloc(ti.out_bytes ? ti.out_bytes : 1);
    *scales = ti.n_scales ? malloc(ti.n_scales * sizeof(float)) : NULL;
    wc_err err = {0};
    if (wc_decode_tensor(e->ref, i, *data, ti.out_bytes, *scales, ti.n_scales, &err)) {
        fprintf(stderr, "reference decode of %s: %s\n", ti.name, err.msg);
        abort();
    }
}

int wdt_check_tensor(const wdt_env *e, const wc_client_tensor *t)
{
    int i = wc_file_find(e->ref, t->name);
    if (i < 0) return fprintf(stderr, "tensor %s not in the reference file\n", t->name), -1;
    wc_tensor_info ti;
    wc_file_tensor_info(e->ref, (size_t)i, &ti);
    if (t->size != ti.out_bytes || t->n_scales != ti.n_scales || t->ndim != ti.ndim || t->out_dtype != ti.out_dtype ||
        t->dtype != ti.dtype || memcmp(t->shape, ti.shape, ti.ndim * sizeof(uint64_t)))
        return fprintf(stderr, "tensor %s: info differs from the reference\n", t->name), -1;
    void *data;
    float *scales;
    wdt_reference(e, (size_t)i, &data, &scales);
    int bad = memcmp(data, t->data, ti.out_bytes) != 0;
    if (!bad && ti.n_scales) bad = memcmp(scales, t->scales, ti.n_scales * sizeof(float)) != 0;
    if (bad) fprintf(stderr, "tensor %s: bytes differ from the CPU reference decode\n", t->name);
    free(data);
    free(scales);
    return bad ? -1 : 0;
}

uint64_t wdt_footprint(const wdt_env *e, size_t i)
{
    wc_tensor_info ti;
    wc_file_tensor_info(e->ref, i, &ti);
    uint64_t end = (ti.out_bytes + 63) / 64 * 64 + ti.n_scales * 4;
    uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
    return ((end ? end : 1) + pg - 1) / pg * pg;
}

int wdt_stats_until(wc_client *c, bool (*pred)(const wc_client_stats *), int timeout_ms, wc_client_stats *last)
{
    int64_t end = wdt_now_ms() + timeout_ms;
    do {
        wc_err err = {0};
        if (wc_client_stats_get(c, last, &err)) return fprintf(stderr, "stats: %s\n", err.msg), 0;
        if (pred(last)) return 1;
        usleep(10000);
    } while (wdt_now_ms() < end);
    return 0;
}
