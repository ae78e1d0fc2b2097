/* Connections. libuv's loop tells us when a socket is readable or writable
 * (uv_poll); reads and writes are our own recv/sendmsg calls because reply
 * frames carry descriptors (SCM_RIGHTS), which uv_write2 cannot send, and a
 * frame must never overtake an earlier one: every frame goes through the one
 * queue below, so order holds whether or not it carries fds. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wcd.h"

#define READ_CHUNK (64u << 10)

static void on_poll(uv_poll_t *h, int status, int events);
static void process(wcd_conn *c);

bool wcd_conn_peer_allowed(const wcd_ctx *ctx, uid_t uid, gid_t gid, const gid_t *groups,
                           int n_groups)
{
    const wcd_config *cfg = &ctx->cfg;
    if (cfg->allow_any) return true;
    if (!cfg->n_allow_uids && !cfg->n_allow_gids) return uid == geteuid();
    for (size_t i = 0; i < cfg->n_allow_uids; i++)
        if (cfg->allow_uids[i] == uid) return true;
    for (size_t i = 0; i < cfg->n_allow_gids; i++) {
        if (cfg->allow_gids[i] == gid) return true;
        for (int j = 0; j < n_groups; j++)
            if (cfg->allow_gids[i] == groups[j]) return true;
    }
    return false;
}

/* For peers we never adopt: one small frame on a fresh socket fits its
 * buffer, so a plain non-blocking send is enough. */
static void refuse(int fd, int status, const char *msg)
{
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.status = status;
    r.message = (char *)msg;
    uint8_t *buf;
    size_t len;
    if (!wcd_frame_pack_reply(&r, &buf, &len)) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
        free(buf);
    }
    close(fd);
}

/* The per-connection budget of what the daemon holds for a client that
 * has not read it: reply bytes queued, and descriptors queued or still to
 * be cut from a get. Checked before each request frame is handled, so a
 * connection passes it by at most one reply (a get's reply is cut as the
 * socket drains and adds at most one frame). */
static bool out_full(const wcd_conn *c)
{
    return c->oq_bytes >= c->ctx->cfg.conn_out_bytes || c->oq_fds >= c->ctx->cfg.conn_fds;
}

static bool paused(const wcd_conn *c)
{
    return c->inflight >= c->ctx->cfg.max_inflight || out_full(c);
}

static void update_poll(wcd_conn *c)
{
    if (c->closing) return;
    int ev = UV_DISCONNECT | (paused(c) ? 0 : UV_READABLE) | (c->oq_head ? UV_WRITABLE : 0);
    if (ev != c->poll_events) {
        uv_poll_start(&c->poll, ev, on_poll);
        c->poll_events = ev;
    }
}

void wcd_conn_accept(wcd_ctx *ctx, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        wcd_log(WCD_LOG_WARN, "connection refused: SO_PEERCRED: %s", strerror(errno));
        close(fd);
        return;
    }
    gid_t groups[256];
    len = sizeof groups;
    int n_groups = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0 ? 0 : (int)(len / sizeof(gid_t));
    if (!wcd_conn_peer_allowed(ctx, cred.uid, cred.gid, groups, n_groups)) {
        wcd_log(WCD_LOG_WARN, "connection refused: pid %d uid %u gid %u is not allowed", (int)cred.pid,
                (unsigned)cred.uid, (unsigned)cred.gid);
        char msg[128];
        snprintf(msg, sizeof msg, "wcodecd: uid %u gid %u is not allowed to connect", (unsigned)cred.uid,
                 (unsigned)cred.gid);
        refuse(fd, WC_EDENIED, msg);
        ctx->errors++;
        return;
    }
    /* A closed socket whose descriptors its peer has not read still holds
     * them in flight: it keeps its connection slot until they are read. */
    if (ctx->n_conns + ctx->n_linger >= ctx->cfg.max_connections || ctx->stopping) {
        wcd_log(WCD_LOG_WARN, "connection refused: pid %d: %s", (int)cred.pid,
                ctx->stopping ? "shutting down" : "too many connections");
        refuse(fd, WC_ELIMIT, ctx->stopping ? "wcodecd is shutting down" : "wcodecd: too many connections");
        ctx->errors++;
        return;
    }
    wcd_conn *c = calloc(1, sizeof *c);
    if (!c || uv_poll_init(ctx->loop, &c->poll, fd)) {
        wcd_log(WCD_LOG_ERR, "connection from pid %d dropped: out of memory", (int)cred.pid);
        free(c);
        close(fd);
        return;
    }
    c->ctx = ctx;
    c->id = ++ctx->next_conn_id;
    c->fd = fd;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->poll.data = c;
    c->connected_ms = c->active_ms = c->progress_ms = uv_now(ctx->loop);
    snprintf(c->name, sizeof c->name, "conn %llu (pid %d uid %u)", (unsigned long long)c->id,
             (int)c->pid, (unsigned)c->uid);
    c->next = ctx->conns;
    if (ctx->conns) ctx->conns->prev = c;
    ctx->conns = c;
    ctx->n_conns++;
    wcd_log(WCD_LOG_INFO, "%s: connected", c->name);
    update_poll(c);
}

static void on_closed(uv_handle_t *h)
{
    wcd_conn *c = h->data;
    if (c->fd >= 0) {
        close(c->fd);
        wcd_server_fd_freed(c->ctx);
    }
    if (c->ctx->on_conn_freed) c->ctx->on_conn_freed(c->ctx, c);
    free(c->rbuf);
    free(c);
}

static void outframe_free(wcd_ctx *ctx, wcd_outframe *f)
{
    if (f->get) wcd_get_drop(f->get);
    ctx->out_bytes -= f->len - f->off;
    free(f->data);
    free(f);
}

void wcd_conn_close(wcd_conn *c, const char *why)
{
    if (c->closing) return;
    c->closing = true;
    wcd_ctx *ctx = c->ctx;
    wcd_log(WCD_LOG_INFO, "%s: closed (%s); ending %zu leases", c->name, why, c->live_leases);
    wcd_get_orphan_all(c);
    wcd_credit_unsent_back(c);
    /* Queued frames borrow their fds from the leases: drop them first. */
    for (wcd_outframe *f = c->oq_head, *next; f; f = next) {
        next = f->next;
        outframe_free(ctx, f);
    }
    c->oq_head = c->oq_tail = NULL;
    c->oq_bytes = 0;
    c->oq_fds = 0;
    for (size_t i = 0; i < c->n_leases; i++)
        if (c->leases[i].e) wcd_cache_lease_end(c->leases[i].e);
    ctx->total_leases -= c->live_leases;
    free(c->leases);
    free(c->blocks);
    c->blocks = NULL;
    c->n_blocks = c->cap_blocks = 0;
    c->leases = NULL;
    c->n_leases = c->live_leases = 0;
    if (c->prev) c->prev->next = c->next;
    else ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    ctx->n_conns--;
    uv_poll_stop(&c->poll);
    wcd_credit_closed(c);
    uv_close((uv_handle_t *)&c->poll, on_closed);
}

/* Sends bytes [off, len) of a frame; fds go with the first byte sent.
 * Returns bytes sent, 0 on EAGAIN, or -1 with errno. */
static ssize_t send_frame(int fd, const uint8_t *data, size_t len, const int *fds, int nfds)
{
    struct iovec iov = {(void *)data, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * WCD_FDS_PER_FRAME)];
        struct cmsghdr align;
    } cm;
    if (nfds) {
        memset(&cm, 0, sizeof cm);
        mh.msg_control = cm.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
    }
    for (;;) {
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) return w;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return -1;
    }
}

static wcd_outframe *frame_new(wcd_conn *c, uint8_t *data, size_t len, const int *fds, int nfds)
{
    wcd_outframe *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->data = data;
    f->len = len;
    f->nfds = nfds;
    if (nfds) memcpy(f->fds, fds, sizeof(int) * (size_t)nfds);
    f->lease_hi = c->next_lease;
    c->oq_bytes += len;
    c->oq_fds += (unsigned)nfds;
    c->ctx->out_bytes += len;
    return f;
}

/* The get at the head of the queue gives its next frame, as large as the
 * descriptor credit allows; the frame goes in front of it. 1: a frame was
 * made; 0: no credit now; -1: the connection was closed. */
static int cut_get(wcd_conn *c, wcd_outframe *head)
{
    unsigned k = wcd_credit(c);
    if (k > c->ctx->fds_per_frame) k = c->ctx->fds_per_frame;
    if (!k) {
        wcd_credit_wait(c);
        return 0;
    }
    wcd_get *g = head->get;
    uint32_t before = g->sent;
    uint8_t *data;
    size_t len;
    int fds[WCD_FDS_PER_FRAME], nfds;
    int more = wcd_get_next_frame(g, k, &data, &len, fds, &nfds);
    if (more < 0) {
        wcd_conn_close(c, "out of memory making a reply");
        return -1;
    }
    /* The slots now in a frame are counted by that frame. */
    c->oq_fds -= g->sent - before;
    wcd_outframe *f = frame_new(c, data, len, fds, nfds);
    if (!f) {
        free(data);
        wcd_conn_close(c, "out of memory queueing a reply");
        return -1;
    }
    /* Charged now, not when sent: the frame was cut to the credit there
     * was, which others could take before the socket has room. */
    wcd_credit_charge(c, (unsigned)nfds);
    f->charged = true;
    f->next = head;
    c->oq_head = f;
    if (!more) {
        f->next = head->next;
        if (c->oq_tail == head) c->oq_tail = f;
        outframe_free(c->ctx, head);
    }
    return 1;
}

int wcd_conn_flush(wcd_conn *c)
{
    while (c->oq_head && !c->closing) {
        wcd_outframe *f = c->oq_head;
        if (f->get) {
            int r = cut_get(c, f);
            if (r < 0) return 0;  /* closed, and logged why */
            if (!r) break;
            continue;
        }
        if (f->nfds && !f->charged) {
            if (wcd_credit(c) < (unsigned)f->nfds) {
                wcd_credit_wait(c);
                break;
            }
            wcd_credit_charge(c, (unsigned)f->nfds);
            f->charged = true;
        }
        ssize_t w = send_frame(c->fd, f->data + f->off, f->len - f->off, f->fds, f->nfds);
        if (w < 0 && errno == ETOOMANYREFS && f->nfds) {
            /* The kernel's count is per user: other processes of the
             * daemon's user may hold descriptors in flight too. Wait as for
             * credit (send_timeout ends it) rather than drop the client. */
            if (!c->ctx->toomanyrefs_warned)
                wcd_log(WCD_LOG_WARN, "%s: descriptor passing refused (%s): other processes of this user hold "
                        "descriptors in flight; waiting", c->name, strerror(errno));
            c->ctx->toomanyrefs_warned = true;
            wcd_credit_wait(c);
            break;
        }
        if (w < 0) return -1;
        if (w == 0) break;
        if (f->nfds) c->ctx->toomanyrefs_warned = false;
        c->progress_ms = uv_now(c->ctx->loop);
        if (f->nfds) {
            /* They are the kernel's now, in flight until the peer reads. */
            c->oq_fds -= (unsigned)f->nfds;
            f->nfds = 0;
        }
        if (f->lease_hi > c->lease_sent) c->lease_sent = f->lease_hi;
        f->off += (size_t)w;
        c->oq_bytes -= (size_t)w;
        c->ctx->out_bytes -= (size_t)w;
        if (f->off < f->len) break;
        c->oq_head = f->next;
        if (!c->oq_head) c->oq_tail = NULL;
        free(f->data);
        free(f);
    }
    return 0;
}

static void enqueue(wcd_conn *c, wcd_outframe *f)
{
    if (!c->oq_head) c->progress_ms = uv_now(c->ctx->loop);
    if (c->oq_tail) c->oq_tail->next = f;
    else c->oq_head = f;
    c->oq_tail = f;
    if (c->oq_head == f && wcd_conn_flush(c) < 0) {
        wcd_conn_close(c, strerror(errno));
        return;
    }
    update_poll(c);
}

int wcd_conn_send(wcd_conn *c, const Wcodec__V1__Reply *r, const int *fds, int nfds)
{
    if (c->closing) return WC_EDISCONNECTED;
    uint8_t *buf;
    size_t len;
    int rc = wcd_frame_pack_reply(r, &buf, &len);
    if (rc) return rc;
    /* The fds are borrowed from leases this connection holds, which last
     * at least until the frame has gone (wcd_conn_lease_take). */
    wcd_outframe *f = frame_new(c, buf, len, fds, nfds);
    if (!f) {
        free(buf);
        wcd_conn_close(c, "out of memory queueing a reply");
        return WC_ENOMEM;
    }
    enqueue(c, f);
    return c->closing ? WC_EDISCONNECTED : 0;
}

void wcd_conn_queue_get(wcd_conn *c, wcd_get *g)
{
    if (c->closing) {
        wcd_get_drop(g);
        return;
    }
    wcd_outframe *f = calloc(1, sizeof *f);
    if (!f) {
        wcd_get_drop(g);
        wcd_conn_close(c, "out of memory queueing a reply");
        return;
    }
    f->get = g;
    c->oq_fds += g->n - g->sent;
    enqueue(c, f);
}

void wcd_conn_send_error(wcd_conn *c, uint64_t id, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->ctx->errors++;
    wcd_log(WCD_LOG_INFO, "%s: request %llu: %s: %s", c->name, (unsigned long long)id,
            wc_client_strerror(status), msg);
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.status = status;
    r.message = msg;
    wcd_conn_send(c, &r, NULL, 0);
}

/* The connection's count of leases in shared block b, made when absent. */
static wcd_conn_block *conn_block(wcd_conn *c, wcd_block *b, bool make)
{
    for (size_t i = 0; i < c->n_blocks; i++)
        if (c->blocks[i].b == b) return &c->blocks[i];
    if (!make) return NULL;
    if (c->n_blocks == c->cap_blocks) {
        size_t cap = c->cap_blocks ? c->cap_blocks * 2 : 4;
        wcd_conn_block *a = realloc(c->blocks, cap * sizeof *a);
        if (!a) return NULL;
        c->blocks = a;
        c->cap_blocks = cap;
    }
    c->blocks[c->n_blocks] = (wcd_conn_block){b, 0};
    return &c->blocks[c->n_blocks++];
}

uint64_t wcd_conn_lease_add(wcd_conn *c, wcd_entry *e, bool *first)
{
    *first = false;
    wcd_conn_block *cb = NULL;
    if (e->block->shared && !(cb = conn_block(c, e->block, true))) return 0;
    if (c->n_leases == c->cap_leases) {
        /* Compact released holes before growing. */
        size_t j = 0;
        for (size_t i = 0; i < c->n_leases; i++)
            if (c->leases[i].e) c->leases[j++] = c->leases[i];
        c->n_leases = j;
        if (j * 2 > c->cap_leases || !c->cap_leases) {
            size_t cap = c->cap_leases ? c->cap_leases * 2 : 16;
            wcd_lease *l = realloc(c->leases, cap * sizeof *l);
            if (!l) return 0;
            c->leases = l;
            c->cap_leases = cap;
        }
    }
    uint64_t id = ++c->next_lease;
    c->leases[c->n_leases++] = (wcd_lease){id, e};
    c->live_leases++;
    c->ctx->total_leases++;
    if (cb) *first = !cb->leases++;
    wcd_cache_pin_to_lease(e);
    return id;
}

wcd_entry *wcd_conn_lease_take(wcd_conn *c, uint64_t id)
{
    /* A lease whose frame has not gone yet cannot be released: that frame
     * borrows the entry's descriptor. (Its id is unknown to an honest
     * client anyway.) */
    if (id > c->lease_sent) return NULL;
    /* Ids only grow, so the array stays sorted. */
    size_t lo = 0, hi = c->n_leases;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->leases[mid].id == id) {
            wcd_entry *e = c->leases[mid].e;
            if (!e) return NULL;
            c->leases[mid].e = NULL;
            c->live_leases--;
            c->ctx->total_leases--;
            wcd_conn_block *cb = e->block->shared ? conn_block(c, e->block, false) : NULL;
            /* The last lease in a block: its descriptor goes again with the
             * next lease in it (the client unmaps it at this release). */
            if (cb && !--cb->leases) *cb = c->blocks[--c->n_blocks];
            return e;
        }
        if (c->leases[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void process(wcd_conn *c)
{
    /* A request that completes at once may land back here: the outer call
     * goes on with the buffer. */
    if (c->in_process) return;
    c->in_process = true;
    size_t pos = 0;
    /* The budget is checked before each frame: a pipelined burst stops at
     * the first frame past it, however much of it one read brought. */
    while (!c->closing && !paused(c)) {
        const uint8_t *p;
        uint32_t n;
        size_t used;
        int r = wcd_frame_next(c->rbuf + pos, c->rlen - pos, c->ctx->cfg.max_frame, &p, &n, &used);
        if (r < 0) {
            const uint8_t *b = c->rbuf + pos;
            uint32_t want = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            wcd_conn_send_error(c, 0, WC_EPROTO, "frame of %u bytes exceeds the limit of %u", want,
                                c->ctx->cfg.max_frame);
            wcd_conn_close(c, "oversized frame");
            c->in_process = false;
            return;
        }
        if (!r) break;
        pos += used;
        c->active_ms = uv_now(c->ctx->loop);
        wcd_handle_frame(c, p, n);
    }
    c->in_process = false;
    if (c->closing) return;
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    update_poll(c);
}

/* Frames may be waiting in the buffer behind a limit that has lifted. */
void wcd_conn_resume(wcd_conn *c)
{
    if (c->closing) return;
    if (c->rlen && !paused(c)) process(c);
    else update_poll(c);
}

void wcd_conn_request_done(wcd_conn *c)
{
    c->inflight--;
    wcd_conn_resume(c);
}

static void on_readable(wcd_conn *c)
{
    size_t budget = 4 * READ_CHUNK;  /* then let other connections run */
    while (budget && !c->closing && !paused(c)) {
        if (c->rcap - c->rlen < READ_CHUNK) {
            size_t cap = c->rcap ? c->rcap * 2 : READ_CHUNK * 2;
            size_t max = (size_t)c->ctx->cfg.max_frame + 4 + READ_CHUNK;
            if (cap > max) cap = max;
            if (cap <= c->rlen) break;  /* full: process() makes room */
            uint8_t *b = realloc(c->rbuf, cap);
            if (!b) {
                wcd_conn_close(c, "out of memory");
                return;
            }
            c->rbuf = b;
            c->rcap = cap;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            wcd_conn_close(c, strerror(errno));
            return;
        }
        if (n == 0) {
            if (c->rlen) wcd_log(WCD_LOG_INFO, "%s: %zu unprocessed bytes dropped", c->name, c->rlen);
            wcd_conn_close(c, "peer closed the connection");
            return;
        }
        c->rlen += (size_t)n;
        budget = (size_t)n > budget ? 0 : budget - (size_t)n;
        process(c);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    wcd_conn *c = h->data;
    if (c->closing) return;
    if (status < 0) {
        /* libuv reports POLLERR, typically a reset by the peer, as EBADF. */
        wcd_conn_close(c, status == UV_EBADF ? "socket error (reset by the peer?)" : uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        if (wcd_conn_flush(c) < 0) {
            wcd_conn_close(c, strerror(errno));
            return;
        }
        wcd_conn_resume(c);
        if (c->closing) return;
    }
    if (events & UV_READABLE) on_readable(c);
    else if (events & UV_DISCONNECT && !c->closing) on_readable(c);
}
