/* Device memory handed to another process (issue 19's hand-off, without
 * the daemon yet): this process decodes every tensor of a file with the GPU
 * decoder into one VMM arena (tensors placed by wcd_spans), exports the
 * arena as a descriptor and passes it with SCM_RIGHTS to a child process
 * (this program again, --child), then destroys its own arena. The child
 * imports and maps the arena and checks every tensor and its scales byte
 * for byte against the CPU reference decoder. Also: importing a descriptor
 * that is not an arena fails with an error, not a crash.
 * Usage: test_gpu_share FILE.wcodec. Exit 77 without a device. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <wcodec/wcodec_gpu.h>

#include "gpu_share.h"
#include "spans.h"

#define FAIL(...) (fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__), fprintf(stderr, __VA_ARGS__), \
                   fputc('\n', stderr), 1)

typedef struct place {
    uint64_t out_off, out_len, sc_off, sc_len; /* sc_len 0: no scales */
} place;

/* What the parent tells the child, before the table of places. */
typedef struct hello {
    unsigned char uuid[16];
    uint64_t arena_size;
    uint64_t n;
} hello;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int send_fd(int sock, int fd, const void *buf, size_t len)
{
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &m, 0) == (ssize_t)len ? 0 : -1;
}

static int recv_fd(int sock, int *fd, void *buf, size_t len)
{
    char ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &m, MSG_WAITALL) != (ssize_t)len) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    memcpy(fd, CMSG_DATA(c), sizeof *fd);
    return 0;
}

static int full_io(int sock, void *buf, size_t len, bool out)
{
    for (size_t done = 0; done < len;) {
        ssize_t k = out ? write(sock, (char *)buf + done, len - done) : read(sock, (char *)buf + done, len - done);
        if (k <= 0) return -1;
        done += (size_t)k;
    }
    return 0;
}

/* ---- the child: import, map, compare ---- */

static int compare_tensor(const wcg_cudrv *d, const wc_file *f, size_t i, CUdeviceptr base, const place *p)
{
    wc_tensor_info ti;
    wc_file_tensor_info(f, i, &ti);
    uint8_t *want = malloc(ti.out_bytes + 1), *got = malloc(ti.out_bytes + 1);
    float *wsc = calloc(ti.n_scales + 1, 4), *gsc = calloc(ti.n_scales + 1, 4);
    wc_decode_opts o = {.reference = true};
    wc_err e = {0};
    int rc = 0;
    if (!want || !got || !wsc || !gsc) rc = FAIL("out of memory");
    else if (wc_decode_tensor_ex(f, i, want, ti.out_bytes, wsc, ti.n_scales, &o, &e))
        rc = FAIL("reference decode of %s: %s", ti.name, e.msg);
    else if (d->MemcpyDtoH(got, base + p->out_off, ti.out_bytes) != CUDA_SUCCESS ||
             (p->sc_len && d->MemcpyDtoH(gsc, base + p->sc_off, p->sc_len) != CUDA_SUCCESS))
        rc = FAIL("cuMemcpyDtoH of %s from the imported arena", ti.name);
    else if (memcmp(want, got, ti.out_bytes)) rc = FAIL("%s: bytes differ from the CPU reference", ti.name);
    else if (p->sc_len && memcmp(wsc, gsc, p->sc_len)) rc = FAIL("%s: scales differ", ti.name);
    free(want), free(got), free(wsc), free(gsc);
    return rc;
}

static int child(int sock, const char *path)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d) return FAIL("child: %s", wcg_cudrv_reason());
    wc_err e = {0};
    hello h;
    int fd = -1;
    if (recv_fd(sock, &fd, &h, sizeof h)) return FAIL("child: no arena descriptor received");
    place *pl = malloc(h.n * sizeof *pl);
    if (!pl || full_io(sock, pl, h.n * sizeof *pl, false)) return FAIL("child: table of places");
    /* a descriptor that is not an arena, on the right device: an error, not
     * a crash (this also makes the context, so that the import below is
     * timed alone) */
    wcg_import bad;
    int devnull = open("/dev/null", O_RDONLY);
    if (wcg_import_map(&bad, devnull, h.uuid, h.arena_size, &e) == 0) return FAIL("/dev/null was imported");
    printf("child: /dev/null refused: %s\n", e.msg);
    close(devnull);
    double t0 = now();
    wcg_import m;
    if (wcg_import_map(&m, fd, h.uuid, h.arena_size, &e)) return FAIL("child: import: %s", e.msg);
    double t1 = now();
    close(fd);
    printf("child: imported and mapped %" PRIu64 " bytes in %.3f ms\n", h.arena_size, (t1 - t0) * 1e3);
    char go = 0;
    if (full_io(sock, &go, 1, true) || full_io(sock, &go, 1, false)) return FAIL("child: handshake");
    /* the parent has destroyed its arena by now: the mapping must still hold */
    wc_file *f;
    if (wc_file_open(&f, path, &e)) return FAIL("child: %s", e.msg);
    int rc = 0;
    size_t coded = 0;
    for (size_t i = 0; i < h.n && !rc; i++) {
        if (!pl[i].out_len) continue;
        rc = compare_tensor(d, f, i, m.base, &pl[i]);
        coded++;
    }
    if (!rc) printf("child: %zu tensors equal to the CPU reference after the exporter let go\n", coded);
    wc_file_close(f);
    wcg_import_unmap(&m);
    free(pl);
    return rc;
}

/* ---- the parent: decode into an arena, export ---- */

/* Bytes of one arena for every tensor and its scales, in 256-byte spans. */
static void plan(const wc_file *f, uint64_t *total)
{
    uint64_t need = 0;
    size_t n = wc_file_tensor_count(f);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        need += (ti.out_bytes + 255) / 256 * 256 + (ti.n_scales * 4 + 255) / 256 * 256;
    }
    *total = need ? need : 256;
}

static int parent(const char *self, const char *path)
{
    wc_err e = {0};
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    wc_gpu *g;
    if (wc_gpu_create(&g, &go, &e)) {
        printf("no usable CUDA device (%s): skipped\n", e.msg);
        return 77;
    }
    wc_file *f;
    if (wc_file_open(&f, path, &e)) return FAIL("%s", e.msg);
    size_t n = wc_file_tensor_count(f);
    place *pl = calloc(n ? n : 1, sizeof *pl);
    wc_gpu_dst *dst = calloc(n ? n : 1, sizeof *dst);
    uint64_t need;
    plan(f, &need);
    wcg_arena a;
    if (wcg_arena_create(&a, wc_gpu_device(g), need, &e)) return FAIL("arena: %s", e.msg);
    wcd_spans s;
    if (wcd_spans_init(&s, a.size, 256)) return FAIL("spans");
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (!ti.out_bytes) continue;
        pl[i].out_len = ti.out_bytes;
        if (wcd_spans_alloc(&s, ti.out_bytes, &pl[i].out_off)) return FAIL("%s does not fit", ti.name);
        dst[i].out = (void *)(uintptr_t)(a.base + pl[i].out_off);
        dst[i].out_size = ti.out_bytes;
        if (ti.n_scales) {
            pl[i].sc_len = ti.n_scales * 4;
            if (wcd_spans_alloc(&s, pl[i].sc_len, &pl[i].sc_off)) return FAIL("scales of %s", ti.name);
            dst[i].scales = (float *)(uintptr_t)(a.base + pl[i].sc_off);
            dst[i].n_scales = ti.n_scales;
        }
    }
    if (wc_gpu_decode_file(g, f, dst, &e)) return FAIL("decode into the arena: %s", e.msg);
    printf("parent: %zu tensors decoded into one arena of %zu bytes (%" PRIu64 " used)\n", n, a.size, s.used);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return FAIL("socketpair: %s", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", sv[1]);
        int fl = fcntl(sv[1], F_GETFD);
        fcntl(sv[1], F_SETFD, fl & ~FD_CLOEXEC);
        execl(self, self, "--child", fdarg, path, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    int fd;
    if (wcg_arena_export(&a, &fd, &e)) return FAIL("export: %s", e.msg);
    hello h = {.arena_size = a.size, .n = n};
    memcpy(h.uuid, a.uuid, 16);
    if (send_fd(sv[0], fd, &h, sizeof h) || full_io(sv[0], pl, n * sizeof *pl, true)) return FAIL("send");
    close(fd);
    char go1;
    int rc = full_io(sv[0], &go1, 1, false);
    /* the child has mapped the arena: let go of it here before it reads */
    wcg_arena_destroy(&a);
    if (!rc) rc = full_io(sv[0], &go1, 1, true);
    int st = 0;
    waitpid(pid, &st, 0);
    close(sv[0]);
    wcd_spans_deinit(&s);
    wc_file_close(f);
    wc_gpu_destroy(g);
    free(pl), free(dst);
    if (rc || !WIFEXITED(st) || WEXITSTATUS(st)) return FAIL("child failed (status %d)", st);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--child")) return child(atoi(argv[2]), argv[3]);
    if (argc != 2) return fprintf(stderr, "usage: %s FILE.wcodec\n", argv[0]), 2;
    return parent("/proc/self/exe", argv[1]);
}
