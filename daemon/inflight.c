/* Descriptors in flight, and the timeouts of connections.
 *
 * A descriptor sent and not yet received counts against the daemon user's
 * RLIMIT_NOFILE in the kernel, whatever connection it went to; past it
 * every sendmsg with descriptors fails (ETOOMANYREFS), so one client that
 * never reads could stop descriptor passing for all. The daemon cannot see
 * what a peer has received, only whether it has read everything (SIOCOUTQ,
 * the bytes of ours still in its receive queue, is 0), so it counts the
 * descriptors charged to a connection since it was last seen drained, and
 * gives each connection credit: a reserve of its own, then a share of a
 * pool, up to [limits] conn_fds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "wcd.h"

static unsigned borrowed_of(const wcd_ctx *ctx, unsigned unread)
{
    return unread > ctx->fds_reserve ? unread - ctx->fds_reserve : 0;
}

static bool drained(int fd)
{
    int n = 0;
    /* An error (the peer is gone) means nothing of ours waits there. */
    return ioctl(fd, SIOCOUTQ, &n) < 0 || n == 0;
}

/* Descriptors charged to c and not sent yet: those of a frame cut from a
 * get, which stays at the head of the queue until its first byte goes. */
static unsigned charged_unsent(const wcd_conn *c)
{
    const wcd_outframe *f = c->oq_head;
    return f && f->charged && f->nfds ? (unsigned)f->nfds : 0;
}

void wcd_credit_refresh(wcd_conn *c)
{
    unsigned keep = charged_unsent(c);
    if (c->fds_unread > keep && drained(c->fd)) {
        c->ctx->fds_borrowed -= borrowed_of(c->ctx, c->fds_unread) - borrowed_of(c->ctx, keep);
        c->fds_unread = keep;
    }
}

unsigned wcd_credit(wcd_conn *c)
{
    wcd_ctx *ctx = c->ctx;
    wcd_credit_refresh(c);
    unsigned cap = ctx->cfg.conn_fds;
    if (c->fds_unread >= cap) return 0;
    unsigned res = c->fds_unread < ctx->fds_reserve ? ctx->fds_reserve - c->fds_unread : 0;
    unsigned can = res + (ctx->fds_pool - ctx->fds_borrowed);
    return can < cap - c->fds_unread ? can : cap - c->fds_unread;
}

void wcd_credit_charge(wcd_conn *c, unsigned k)
{
    wcd_ctx *ctx = c->ctx;
    unsigned before = borrowed_of(ctx, c->fds_unread);
    c->fds_unread += k;
    ctx->fds_borrowed += borrowed_of(ctx, c->fds_unread) - before;
}

static void on_credit(uv_timer_t *t);

static void credit_timer_fast(wcd_ctx *ctx)
{
    if (uv_is_active((uv_handle_t *)&ctx->credit_timer) && ctx->credit_period_ms == 1) return;
    ctx->credit_period_ms = 1;
    uv_timer_start(&ctx->credit_timer, on_credit, 1, 1);
}

void wcd_credit_wait(wcd_conn *c)
{
    c->credit_wait = true;
    credit_timer_fast(c->ctx);
}

void wcd_fds_setup(wcd_ctx *ctx)
{
    /* epoll has no FD_SETSIZE: take the whole hard limit, as systemd
     * advises; what is in flight is then charged against the larger one. */
    struct rlimit rl;
    uint64_t soft = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            struct rlimit up = {rl.rlim_max == RLIM_INFINITY ? (1u << 20) : rl.rlim_max, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = up.rlim_cur;
        }
        soft = rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : (uint64_t)rl.rlim_cur;
    }
    /* Half the limit may be in flight; of that, half is reserved in equal
     * shares for every connection slot, half is a pool any may borrow. */
    uint64_t total = soft / 2;
    ctx->fds_pool = (unsigned)(total / 2);
    uint64_t res = (total - ctx->fds_pool) / (ctx->cfg.max_connections ? ctx->cfg.max_connections : 1);
    ctx->fds_reserve = res ? (unsigned)res : 1;
    if (ctx->fds_reserve > ctx->cfg.conn_fds) ctx->fds_reserve = ctx->cfg.conn_fds;
    ctx->fds_per_frame = ctx->cfg.conn_fds < WCD_FDS_PER_FRAME ? ctx->cfg.conn_fds : WCD_FDS_PER_FRAME;
    wcd_log(WCD_LOG_INFO, "descriptors: limit %llu; in flight at most %u a connection, %u reserved each, %u shared",
            (unsigned long long)soft, ctx->cfg.conn_fds, ctx->fds_reserve, ctx->fds_pool);
}

static void linger_add(wcd_conn *c)
{
    wcd_ctx *ctx = c->ctx;
    struct wcd_linger *l = realloc(ctx->linger, (ctx->n_linger + 1) * sizeof *l);
    if (!l) return;  /* closed at once: the count is then low by these */
    ctx->linger = l;
    shutdown(c->fd, SHUT_RDWR);
    l[ctx->n_linger++] = (struct wcd_linger){c->fd, c->fds_unread};
    c->fd = -1;
    c->fds_unread = 0;  /* the linger entry holds what was borrowed */
    credit_timer_fast(ctx);
}

/* Closes the lingering sockets whose peers have read all; true when one
 * did. */
static bool linger_sweep(wcd_ctx *ctx, bool all)
{
    size_t j = 0;
    for (size_t i = 0; i < ctx->n_linger; i++) {
        struct wcd_linger *l = &ctx->linger[i];
        if (all || drained(l->fd)) {
            ctx->fds_borrowed -= borrowed_of(ctx, l->unread);
            close(l->fd);
            wcd_server_fd_freed(ctx);
        } else {
            ctx->linger[j++] = *l;
        }
    }
    bool freed = j < ctx->n_linger;
    ctx->n_linger = (unsigned)j;
    return freed;
}

/* While a connection waits for descriptor credit or a closed socket still
 * holds unread descriptors: every millisecond after progress, backing off
 * to every 64 ms while nothing moves (peers that never read must not cost
 * a system call per socket per millisecond). */
static void on_credit(uv_timer_t *t)
{
    wcd_ctx *ctx = t->data;
    bool progress = linger_sweep(ctx, ctx->stopping), waiting = false;
    /* Give the pool back from every connection that has drained. */
    for (wcd_conn *c = ctx->conns; c; c = c->next) wcd_credit_refresh(c);
    for (wcd_conn *c = ctx->conns, *next; c; c = next) {
        next = c->next;
        if (!c->credit_wait) continue;
        c->credit_wait = false;
        if (wcd_conn_flush(c) < 0) {
            wcd_conn_close(c, strerror(errno));
            continue;
        }
        if (c->credit_wait) {
            waiting = true;
        } else {
            progress = true;
            wcd_conn_resume(c);
        }
    }
    if (!waiting && !ctx->n_linger) {
        uv_timer_stop(t);
        return;
    }
    unsigned period = progress ? 1 : ctx->credit_period_ms < 64 ? ctx->credit_period_ms * 2 : 64;
    if (period != ctx->credit_period_ms) {
        ctx->credit_period_ms = period;
        uv_timer_start(t, on_credit, period, period);
    }
}

void wcd_credit_unsent_back(wcd_conn *c)
{
    wcd_ctx *ctx = c->ctx;
    unsigned unsent = charged_unsent(c);
    ctx->fds_borrowed -= borrowed_of(ctx, c->fds_unread) - borrowed_of(ctx, c->fds_unread - unsent);
    c->fds_unread -= unsent;
}

void wcd_credit_closed(wcd_conn *c)
{
    wcd_ctx *ctx = c->ctx;
    wcd_credit_refresh(c);
    if (c->fds_unread && !ctx->stopping) linger_add(c);
    ctx->fds_borrowed -= borrowed_of(ctx, c->fds_unread);
    c->fds_unread = 0;
}

void wcd_linger_close_all(wcd_ctx *ctx)
{
    linger_sweep(ctx, true);
    free(ctx->linger);
    ctx->linger = NULL;
}

/* Once a second: connections that never said Hello, that sit idle, or
 * that leave their replies unread are closed. */
void wcd_conn_sweep(wcd_ctx *ctx)
{
    const wcd_config *cfg = &ctx->cfg;
    uint64_t now = uv_now(ctx->loop);
    char why[96];
    for (wcd_conn *c = ctx->conns, *next; c; c = next) {
        next = c->next;
        why[0] = 0;
        if (!c->hello_done && cfg->handshake_timeout_ms && now - c->connected_ms >= cfg->handshake_timeout_ms)
            snprintf(why, sizeof why, "no Hello within %u ms", cfg->handshake_timeout_ms);
        else if (c->oq_head && cfg->send_timeout_ms && now - c->progress_ms >= cfg->send_timeout_ms)
            snprintf(why, sizeof why, "replies left unread for %u ms", cfg->send_timeout_ms);
        else if (c->hello_done && cfg->idle_timeout_ms && !c->oq_head && !c->inflight && !c->live_leases &&
                 now - c->active_ms >= cfg->idle_timeout_ms)
            snprintf(why, sizeof why, "idle for %u ms", cfg->idle_timeout_ms);
        if (!why[0]) continue;
        wcd_log(WCD_LOG_NOTICE, "%s: %s", c->name, why);
        if (!c->oq_head) {
            /* It may be reading: say why, on a socket with room. */
            Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
            r.status = WC_ETIMEDOUT;
            r.message = why;
            wcd_conn_send(c, &r, NULL, 0);
        }
        wcd_conn_close(c, why);
    }
}
