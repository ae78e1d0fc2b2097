/* The daemon's life: the listening socket (our own, or systemd's through
 * sd_listen_fds), signals, the watchdog and status timers, reload and
 * shutdown. Everything systemd hears from us goes through sd_notify. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "wcd.h"

int wcd_ctx_init(wcd_ctx *ctx, uv_loop_t *loop, wc_err *err)
{
    ctx->loop = loop;
    ctx->listen_fd = -1;
    wcd_log_level = ctx->cfg.log_level;
    int r = wcd_roots_open(&ctx->cfg, &ctx->roots, &ctx->n_roots, err);
    if (r) return r;
    wcd_cache_init(&ctx->cache, loop);
    /* GPU decoders are made here, warm before READY=1. */
    if ((r = wcd_pools_open(&ctx->cache, &ctx->cfg, err))) {
        wcd_cache_fini(&ctx->cache);
        wcd_roots_close(ctx->roots, ctx->n_roots);
        ctx->roots = NULL;
        ctx->n_roots = 0;
        return r;
    }
    ctx->start_ms = uv_now(loop);
    /* Connections may wait for descriptor credit without a listening
     * socket too (the fuzz harness): the timer is the ctx's. */
    uv_timer_init(loop, &ctx->credit_timer);
    ctx->credit_timer.data = ctx;
    wcd_fds_setup(ctx);
    return 0;
}

void wcd_ctx_fini(wcd_ctx *ctx)
{
    wcd_cache_fini(&ctx->cache);
    wcd_roots_close(ctx->roots, ctx->n_roots);
    ctx->roots = NULL;
    ctx->n_roots = 0;
    wcd_config_free(&ctx->cfg);
}

void wcd_update_status(wcd_ctx *ctx)
{
    char s[160];
    wcd_cache_totals t;
    wcd_cache_totals_get(&ctx->cache, &t);
    snprintf(s, sizeof s, "STATUS=%u connections, %u models, %u tensors cached (%llu MiB of %llu), %llu leases",
             ctx->n_conns, ctx->cache.n_models, t.n_entries, (unsigned long long)(t.used >> 20),
             (unsigned long long)(t.budget >> 20), (unsigned long long)ctx->total_leases);
    if (strcmp(s, ctx->last_status)) {
        sd_notify(0, s);
        memcpy(ctx->last_status, s, sizeof s);
    }
}

static void on_accept(uv_poll_t *h, int status, int events);

static void on_accept_retry(uv_timer_t *t)
{
    wcd_server_fd_freed(t->data);
}

/* Out of descriptors, accept fails while the listening socket stays
 * readable: polling it would spin. Accepting pauses (the kernel holds new
 * connections in the backlog) and resumes when a descriptor is freed, or
 * after a second. Logged once until the backlog has been emptied, not per
 * attempt. */
static void accept_pause(wcd_ctx *ctx, int err)
{
    if (!ctx->accept_paused) {
        ctx->accept_paused = true;
        uv_poll_stop(&ctx->listen_poll);
        uv_timer_start(&ctx->accept_timer, on_accept_retry, 1000, 1000);
    }
    if (!ctx->accept_warned) {
        ctx->accept_warned = true;
        wcd_log(WCD_LOG_WARN, "accept: %s; not accepting until a descriptor is freed (%u connections)",
                strerror(err), ctx->n_conns);
    }
}

void wcd_server_fd_freed(wcd_ctx *ctx)
{
    if (!ctx->accept_paused || ctx->stopping) return;
    ctx->accept_paused = false;
    uv_timer_stop(&ctx->accept_timer);
    uv_poll_start(&ctx->listen_poll, UV_READABLE, on_accept);
    /* The backlog may be full already: take it now. */
    on_accept(&ctx->listen_poll, 0, UV_READABLE);
}

static void on_accept(uv_poll_t *h, int status, int events)
{
    wcd_ctx *ctx = h->data;
    (void)events;
    if (status < 0) {
        wcd_log(WCD_LOG_ERR, "listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < 64; i++) {
        int fd = accept4(ctx->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                accept_pause(ctx, errno);
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* The backlog is empty: the shortage is over. */
                if (ctx->accept_warned) {
                    ctx->accept_warned = false;
                    wcd_log(WCD_LOG_NOTICE, "accepting connections again (%u connections)", ctx->n_conns);
                }
            } else {
                wcd_log(WCD_LOG_WARN, "accept: %s", strerror(errno));
            }
            return;
        }
        wcd_conn_accept(ctx, fd);
    }
}

/* A socket file left by a daemon that died is removed; one that somebody
 * still answers on is not ours to take. */
static int bind_socket(wcd_ctx *ctx, wc_err *err)
{
    const char *path = ctx->cfg.socket_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) goto sys;
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            close(fd);
            snprintf(err->msg, sizeof err->msg, "%s exists and is not a socket", path);
            return WC_EINVAL;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            close(fd);
            snprintf(err->msg, sizeof err->msg, "%s: another wcodecd is listening there", path);
            return WC_EINVAL;
        }
        if (probe >= 0) close(probe);
        unlink(path);
    }
    /* The mode is set before anyone can connect: bind under a umask that
     * yields it, rather than chmod after. */
    mode_t old = umask(0777 & ~ctx->cfg.socket_mode);
    int b = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (b < 0 || listen(fd, 256) < 0) goto sys;
    ctx->listen_fd = fd;
    ctx->own_socket = true;
    return 0;
sys:
    snprintf(err->msg, sizeof err->msg, "socket %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return WC_EIO;
}

static void on_signal(uv_signal_t *h, int signum)
{
    wcd_ctx *ctx = h->data;
    if (signum == SIGHUP) {
        wcd_server_reload(ctx);
        return;
    }
    wcd_log(WCD_LOG_NOTICE, "%s: shutting down", strsignal(signum));
    wcd_server_stop(ctx);
}

static void on_watchdog(uv_timer_t *t)
{
    wcd_ctx *ctx = t->data;
    sd_notify(0, "WATCHDOG=1");
    wcd_update_status(ctx);
}

static void on_status(uv_timer_t *t)
{
    wcd_ctx *ctx = t->data;
    /* Unused models of removed files go, and their disk space with them. */
    wcd_cache_sweep(&ctx->cache);
    wcd_update_status(ctx);
}

static void on_sweep(uv_timer_t *t)
{
    wcd_conn_sweep(t->data);
}

int wcd_server_start(wcd_ctx *ctx, wc_err *err)
{
    int n = sd_listen_fds(1);
    if (n > 1) {
        snprintf(err->msg, sizeof err->msg, "systemd passed %d sockets; expected one", n);
        return WC_EINVAL;
    }
    if (n == 1) {
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            snprintf(err->msg, sizeof err->msg, "the socket systemd passed is not a listening AF_UNIX stream socket");
            return WC_EINVAL;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        ctx->listen_fd = fd;
        ctx->activated = true;
    } else {
        int r = bind_socket(ctx, err);
        if (r) return r;
    }
    uv_poll_init(ctx->loop, &ctx->listen_poll, ctx->listen_fd);
    ctx->listen_poll.data = ctx;
    uv_poll_start(&ctx->listen_poll, UV_READABLE, on_accept);

    uv_signal_init(ctx->loop, &ctx->sig_term);
    uv_signal_init(ctx->loop, &ctx->sig_int);
    uv_signal_init(ctx->loop, &ctx->sig_hup);
    ctx->sig_term.data = ctx->sig_int.data = ctx->sig_hup.data = ctx;
    uv_signal_start(&ctx->sig_term, on_signal, SIGTERM);
    uv_signal_start(&ctx->sig_int, on_signal, SIGINT);
    uv_signal_start(&ctx->sig_hup, on_signal, SIGHUP);

    uv_timer_init(ctx->loop, &ctx->watchdog);
    uv_timer_init(ctx->loop, &ctx->status_timer);
    ctx->watchdog.data = ctx->status_timer.data = ctx;
    if (sd_watchdog_enabled(0, &ctx->watchdog_usec) > 0 && ctx->watchdog_usec) {
        /* Half the interval, as sd_watchdog_enabled(3) advises; the loop
         * itself pets it, so a wedged loop is what systemd detects. */
        uint64_t ms = ctx->watchdog_usec / 2000;
        uv_timer_start(&ctx->watchdog, on_watchdog, 0, ms ? ms : 1);
    }
    uv_timer_start(&ctx->status_timer, on_status, 2000, 2000);
    uv_timer_init(ctx->loop, &ctx->accept_timer);
    ctx->accept_timer.data = ctx;
    uv_timer_init(ctx->loop, &ctx->sweep_timer);
    ctx->sweep_timer.data = ctx;
    uv_timer_start(&ctx->sweep_timer, on_sweep, 1000, 1000);

    const char *backend = wcd_pools_backend(&ctx->cache);
    wcd_log(WCD_LOG_NOTICE, "listening on %s; backend %s (%u GPUs), host budget %llu MiB, %zu roots, watchdog %s",
            ctx->activated ? "the socket from systemd" : ctx->cfg.socket_path, backend, ctx->cache.n_pools - 1,
            (unsigned long long)(ctx->cache.pools[0]->budget >> 20), ctx->n_roots, ctx->watchdog_usec ? "on" : "off");
    sd_notifyf(0, "READY=1\nSTATUS=listening; backend %s, %u GPUs\nMAINPID=%lu", backend, ctx->cache.n_pools - 1,
               (unsigned long)getpid());
    return 0;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void wcd_server_stop(wcd_ctx *ctx)
{
    if (ctx->stopping) return;
    ctx->stopping = true;
    sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
    close_handle((uv_handle_t *)&ctx->listen_poll);
    if (ctx->listen_fd >= 0) {
        close(ctx->listen_fd);
        ctx->listen_fd = -1;
    }
    if (ctx->own_socket) unlink(ctx->cfg.socket_path);
    close_handle((uv_handle_t *)&ctx->sig_term);
    close_handle((uv_handle_t *)&ctx->sig_int);
    close_handle((uv_handle_t *)&ctx->sig_hup);
    close_handle((uv_handle_t *)&ctx->watchdog);
    close_handle((uv_handle_t *)&ctx->status_timer);
    close_handle((uv_handle_t *)&ctx->sweep_timer);
    close_handle((uv_handle_t *)&ctx->accept_timer);
    while (ctx->conns) wcd_conn_close(ctx->conns, "daemon shutting down");
    /* Closed sockets still holding unread descriptors go now. */
    wcd_linger_close_all(ctx);
    close_handle((uv_handle_t *)&ctx->credit_timer);
    /* Decodes under way finish on their own; uv_run returns after them. */
}

int wcd_server_reload(wcd_ctx *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    wcd_config next;
    wc_err err = {0};
    int r = wcd_config_build(&next, ctx->cfg.config_path, ctx->cli, ctx->n_cli, &err);
    wcd_root *roots = NULL;
    size_t n_roots = 0;
    if (!r) r = wcd_roots_open(&next, &roots, &n_roots, &err);
    if (r) {
        if (!roots) wcd_config_free(&next);
        wcd_log(WCD_LOG_ERR, "reload failed, keeping the running configuration: %s", err.msg);
        sd_notify(0, "READY=1\nSTATUS=reload failed; running configuration kept");
        return r;
    }
    if (strcmp(next.socket_path, ctx->cfg.socket_path))
        wcd_log(WCD_LOG_WARN, "reload: socket path change to %s takes effect at restart", next.socket_path);
    wcd_pools_reload(&ctx->cache, &ctx->cfg, &next);
    /* The socket stays where it is: keep its path for the unlink at exit. */
    free(next.socket_path);
    next.socket_path = ctx->cfg.socket_path;
    ctx->cfg.socket_path = NULL;
    wcd_config_free(&ctx->cfg);
    ctx->cfg = next;
    wcd_roots_close(ctx->roots, ctx->n_roots);
    ctx->roots = roots;
    ctx->n_roots = n_roots;
    wcd_log_level = ctx->cfg.log_level;
    wcd_reload_revoke(ctx);
    wcd_log(WCD_LOG_NOTICE, "configuration reloaded: budget %llu MiB, %zu roots, %zu allowed uids, %zu allowed gids",
            (unsigned long long)(ctx->cfg.budget >> 20), ctx->n_roots, ctx->cfg.n_allow_uids, ctx->cfg.n_allow_gids);
    ctx->last_status[0] = 0;
    sd_notify(0, "READY=1");
    wcd_update_status(ctx);
    return 0;
}
