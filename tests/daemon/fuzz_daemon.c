/* Fuzz target for wcodecd's frame parser and request handler. Each input is
 * the byte stream of one client connection: a socketpair whose daemon end
 * goes through the daemon's own accept path and whose other end writes the
 * input, drains (and closes) whatever comes back, fds included, and hangs
 * up once the daemon is idle. The
 * daemon context lives across inputs, with a real model beneath its root
 * and a small budget, so inputs reach open, list, get (decode, cache hits,
 * eviction, budget errors), release, stats, evict and unload. After every
 * input the daemon's accounting must be back at zero leases. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "wcd.h"

static wdt_env env;
static uv_loop_t loop;
static wcd_ctx ctx;

typedef struct peer {
    int fd;
    uv_poll_t poll;
    const uint8_t *data;
    size_t size, off;
    bool conn_gone, peer_closed;
} peer;

static peer P;
static uv_check_t idle_check;
/* Wakes the loop when nothing else would, so that the check runs. */
static uv_timer_t backstop;

static void on_freed(wcd_ctx *c, wcd_conn *conn)
{
    (void)c, (void)conn;
    P.conn_gone = true;
}

static void on_peer_closed(uv_handle_t *h)
{
    (void)h;
    close(P.fd);
}

/* After each loop turn: once the daemon has taken in the whole input and
 * has nothing under way or queued, the client hangs up. Waiting for that,
 * rather than hanging up at the end of the input, lets every request be
 * answered in full. */
static void on_check(uv_check_t *h)
{
    if (P.off < P.size) return;
    wcd_conn *c = ctx.conns;
    if (c) {
        int unread = 0;
        const uint8_t *p;
        uint32_t n;
        size_t used;
        ioctl(c->fd, FIONREAD, &unread);
        if (unread || c->inflight || c->oq_head ||
            wcd_frame_next(c->rbuf, c->rlen, ctx.cfg.max_frame, &p, &n, &used) == 1)
            return;
    }
    uv_check_stop(h);
    uv_timer_stop(&backstop);
    P.peer_closed = true;
    uv_close((uv_handle_t *)&P.poll, on_peer_closed);
}

static void init(void)
{
    /* Quiet and deterministic: errors only, two decode threads. */
    setenv("UV_THREADPOOL_SIZE", "2", 1);
    signal(SIGPIPE, SIG_IGN);
    if (wdt_env_init(&env)) abort();
    wcd_setting s[] = {
        {"security", "roots", env.models},
        {"cache", "budget", "1M"},
        {"limits", "max_frame", "64K"},
        /* Small budgets, so that inputs reach the pause before a frame,
         * resuming when the queue drains, and get replies cut to the
         * descriptor credit there is. */
        {"limits", "conn_out_bytes", "64K"},
        {"limits", "conn_fds", "16"},
        {"limits", "max_leases", "4096"},
        /* One request at a time: later frames (releases) see the leases of
         * earlier gets, and the pause/resume path runs. */
        {"limits", "max_inflight", "1"},
        {"daemon", "log_level", getenv("WCD_FUZZ_LOG") ? "debug" : "error"},
        {"daemon", "backend", "cpu"},
    };
    wc_err err = {0};
    if (wcd_config_build(&ctx.cfg, NULL, s, sizeof s / sizeof s[0], &err)) {
        fprintf(stderr, "config: %s\n", err.msg);
        abort();
    }
    uv_loop_init(&loop);
    if (wcd_ctx_init(&ctx, &loop, &err)) {
        fprintf(stderr, "ctx: %s\n", err.msg);
        abort();
    }
    ctx.on_conn_freed = on_freed;
}

static void drain(void)
{
    for (;;) {
        uint8_t buf[65536];
        union {
            char b[CMSG_SPACE(sizeof(int) * 253)];
            struct cmsghdr align;
        } cm;
        struct iovec iov = {buf, sizeof buf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof cm.b};
        ssize_t n = recvmsg(P.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); n > 0 && h; h = CMSG_NXTHDR(&mh, h))
            if (h->cmsg_type == SCM_RIGHTS) {
                int *fds = (int *)CMSG_DATA(h);
                for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) close(fds[i]);
            }
        if (n <= 0) return;
    }
}

static void on_peer(uv_poll_t *h, int status, int events)
{
    (void)h;
    if (status < 0) return;
    if (events & UV_READABLE) drain();
    if (events & UV_WRITABLE && P.off < P.size) {
        ssize_t n = send(P.fd, P.data + P.off, P.size - P.off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) P.off += (size_t)n;
        if (n < 0 && errno != EAGAIN) P.off = P.size;
        if (P.off == P.size) uv_poll_start(&P.poll, UV_READABLE, on_peer);
    }
}

static void on_backstop(uv_timer_t *t)
{
    (void)t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        init();
        ready = true;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) abort();
    memset(&P, 0, sizeof P);
    P.fd = sv[1];
    P.data = data;
    P.size = size;
    uv_poll_init(&loop, &P.poll, P.fd);
    uv_poll_start(&P.poll, UV_READABLE | UV_WRITABLE, on_peer);
    if (!size) uv_poll_start(&P.poll, UV_READABLE, on_peer);
    uv_check_init(&loop, &idle_check);
    uv_check_start(&idle_check, on_check);
    uv_timer_init(&loop, &backstop);
    uv_timer_start(&backstop, on_backstop, 1, 1);
    wcd_conn_accept(&ctx, sv[0]);
    /* Returns when the connection is gone, the peer closed and no decode
     * is under way. */
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&idle_check, NULL);
    uv_close((uv_handle_t *)&backstop, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    wcd_cache_totals t;
    wcd_cache_totals_get(&ctx.cache, &t);
    if (!P.conn_gone || ctx.n_conns || ctx.total_leases || t.n_leased || t.leased_bytes || t.in_flight ||
        t.used > t.budget) {
        fprintf(stderr, "accounting after the connection: conns %u leases %llu leased %u/%llu in flight %u used %llu\n",
                ctx.n_conns, (unsigned long long)ctx.total_leases, t.n_leased, (unsigned long long)t.leased_bytes,
                t.in_flight, (unsigned long long)t.used);
        abort();
    }
    /* Nothing is in use now, so no unloaded model may linger; and an input
     * that unloaded model 1 must not change what the next one sees: the
     * models go and ids start again at 1 (model.wcodec in the seeds). */
    for (wcd_model *m = ctx.cache.models; m; m = m->next)
        if (m->retired || m->busy) {
            fprintf(stderr, "model %llu still held after the connection: %s, %u busy tensors\n",
                    (unsigned long long)m->id, m->retired ? m->retired : "served", m->busy);
            abort();
        }
    if (!wcd_cache_model(&ctx.cache, 1) || ctx.cache.next_model_id > 2) {
        while (ctx.cache.models) wcd_cache_retire(&ctx.cache, ctx.cache.models, "next fuzz input");
        ctx.cache.next_model_id = 1;
    }
    return 0;
}
