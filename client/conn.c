/* libwcodec-client, the connection: one Unix socket per wc_client, shared by the threads of
 * the process. Requests carry ids; there is no reader thread: whichever
 * waiting caller finds nobody reading becomes the reader, hands every
 * reply it reads to the caller it belongs to, and stops once its own has
 * come (leader/follower), so a single-threaded caller pays no thread
 * hand-off on the latency path. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <wcodec/wcodec_client.h>

#include "client_int.h"
#include "device.h"

static void frame_drop(frame *f)
{
    for (uint32_t j = 0; j < f->nfds; j++)
        if (f->fds[j] >= 0) close(f->fds[j]);
    free(f->fds);
    wcodec__v1__reply__free_unpacked(f->r, NULL);
}

void wcc_frames_free(frame *f, size_t n)
{
    for (size_t i = 0; i < n; i++) frame_drop(&f[i]);
    free(f);
}

/* Called with mu held: the connection is unusable from now on. */
static void set_broken(wc_client *c, int code, const char *fmt, ...)
{
    if (c->broken) return;
    c->broken = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
    va_end(ap);
    shutdown(c->fd, SHUT_RDWR);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is there (waiting up to the deadline) into rbuf and fdq.
 * Runs without mu: only the reader touches these. */
/* Microseconds a waiting reader polls the socket before it sleeps. A reply
 * to a cached tensor comes back in tens of microseconds; waking from sleep
 * costs about as much again on a virtual machine, so a short spin halves
 * the latency of a lone client. $WCODEC_CLIENT_SPIN_US overrides (0: off). */
static int64_t spin_us(void)
{
    static int64_t v = -1;
    if (v < 0) {
        const char *e = getenv("WCODEC_CLIENT_SPIN_US");
        v = e ? atoll(e) : 50;
    }
    return v;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int read_some(wc_client *c, int64_t deadline, char *msg, size_t msgsz)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    /* When replies stop coming within the spin (a busy daemon, many
     * clients), spinning only steals the CPU the daemon needs: back off. */
    int64_t spin_end = 0;
    if (spin_us() && !c->spin_backoff) spin_end = now_us() + spin_us();
    else if (c->spin_backoff) c->spin_backoff--;
    for (;;) {
        if (spin_end) {
            if (poll(&p, 1, 0) > 0) break;
            if (now_us() < spin_end) continue;
            spin_end = 0;
            c->spin_backoff = 64;
        }
        int wait = -1;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                snprintf(msg, msgsz, "no reply from wcodecd at %s within %d ms", c->path, c->timeout_ms);
                return WC_ETIMEDOUT;
            }
            wait = left > 1000 ? 1000 : (int)left;
        }
        int r = poll(&p, 1, wait);
        if (r > 0) break;
        if (r < 0 && errno != EINTR) {
            snprintf(msg, msgsz, "poll on the wcodecd socket: %s", strerror(errno));
            return WC_EIO;
        }
    }
    if (c->rcap - c->rlen < 65536) {
        size_t cap = c->rcap ? c->rcap * 2 : 131072;
        if (cap > MAX_REPLY_FRAME + 65536) cap = MAX_REPLY_FRAME + 65536;
        if (cap > c->rcap) {
            uint8_t *b = realloc(c->rbuf, cap);
            if (!b) return WC_ENOMEM;
            c->rbuf = b;
            c->rcap = cap;
        }
    }
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_READ)];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {c->rbuf + c->rlen, c->rcap - c->rlen};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n;
    do n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    /* Collect descriptors first so that none leaks whatever happens next. */
    int received = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); n >= 0 && h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[MAX_FDS_PER_READ];
        memcpy(fds, CMSG_DATA(h), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            if (c->fdq_len == c->fdq_cap) {
                size_t cap = c->fdq_cap ? c->fdq_cap * 2 : 64;
                int *q = realloc(c->fdq, cap * sizeof *q);
                if (!q) { close(fds[i]); continue; }
                c->fdq = q;
                c->fdq_cap = cap;
            }
            c->fdq[c->fdq_len++] = fds[i];
            received++;
        }
    }
    if (n > 0 && (mh.msg_flags & MSG_CTRUNC)) {
        snprintf(msg, msgsz, "descriptors from wcodecd were dropped (MSG_CTRUNC; %d arrived): "
                 "is the process out of file descriptors (RLIMIT_NOFILE)?", received);
        return WC_EPROTO;
    }
    if (n < 0 && errno == ECONNRESET) {
        snprintf(msg, msgsz, "wcodecd at %s closed the connection (reset: did the daemon exit or restart?)", c->path);
        return WC_EDISCONNECTED;
    }
    if (n < 0) {
        snprintf(msg, msgsz, "wcodecd at %s: %s", c->path, strerror(errno));
        return WC_EIO;
    }
    if (n == 0) {
        snprintf(msg, msgsz, "wcodecd at %s closed the connection (did the daemon exit or restart?)", c->path);
        return WC_EDISCONNECTED;
    }
    c->rlen += (size_t)n;
    return 0;
}

/* Hands every complete frame in rbuf to its waiter. mu held. */
static void dispatch(wc_client *c)
{
    size_t pos = 0;
    while (!c->broken && c->rlen - pos >= 4) {
        const uint8_t *b = c->rbuf + pos;
        uint32_t len = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if (len > MAX_REPLY_FRAME) {
            set_broken(c, WC_EPROTO, "wcodecd sent a frame of %u bytes, over the limit of %u", len, MAX_REPLY_FRAME);
            break;
        }
        if (c->rlen - pos - 4 < len) break;
        Wcodec__V1__Reply *r = wcodec__v1__reply__unpack(NULL, len, b + 4);
        pos += 4 + (size_t)len;
        if (!r) {
            set_broken(c, WC_EPROTO, "wcodecd sent a frame that is not a Reply");
            break;
        }
        if (r->fd_count > c->fdq_len || r->fd_count > MAX_FDS_PER_READ) {
            set_broken(c, WC_EPROTO, "a reply announces %u descriptors but %zu arrived", r->fd_count, c->fdq_len);
            wcodec__v1__reply__free_unpacked(r, NULL);
            break;
        }
        int *fds = NULL;
        if (r->fd_count) {
            fds = malloc(r->fd_count * sizeof *fds);
            if (!fds) {
                set_broken(c, WC_ENOMEM, "out of memory");
                wcodec__v1__reply__free_unpacked(r, NULL);
                break;
            }
            memcpy(fds, c->fdq, r->fd_count * sizeof *fds);
            memmove(c->fdq, c->fdq + r->fd_count, (c->fdq_len - r->fd_count) * sizeof *fds);
            c->fdq_len -= r->fd_count;
        }
        frame f = {r, fds, r->fd_count};
        if (r->id == 0) {
            set_broken(c, r->status ? r->status : WC_EPROTO, "%s",
                       r->message[0] ? r->message : "wcodecd reported a connection error");
            frame_drop(&f);
            break;
        }
        waiter *w = c->waiters;
        while (w && w->id != r->id) w = w->next;
        frame *nf = w && !w->done ? realloc(w->frames, (w->n_frames + 1) * sizeof *nf) : NULL;
        if (!nf) {
            set_broken(c, WC_EPROTO, "wcodecd sent a reply to request %llu, which nobody waits for",
                       (unsigned long long)r->id);
            frame_drop(&f);
            break;
        }
        nf[w->n_frames++] = f;
        w->frames = nf;
        /* The arena table follows the daemon's lease counts in the order
         * the frames come (arenas.h says why here). */
        if (!r->status && r->body_case == WCODEC__V1__REPLY__BODY_GET && r->get)
            wcc_arenas_get_frame(&c->arenas, r->get, fds, r->fd_count, w->device_ok);
        if (!r->more || r->status) {
            w->done = true;
            wcc_arenas_released(&c->arenas, w->released, w->n_released);
        }
    }
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
}

static int send_request(wc_client *c, Wcodec__V1__Request *q)
{
    size_t n = wcodec__v1__request__get_packed_size(q);
    uint8_t stackbuf[4096];
    uint8_t *b = n + 4 <= sizeof stackbuf ? stackbuf : malloc(n + 4);
    if (!b) return WC_ENOMEM;
    b[0] = (uint8_t)n, b[1] = (uint8_t)(n >> 8), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 24);
    wcodec__v1__request__pack(q, b + 4);
    int r = 0;
    pthread_mutex_lock(&c->send_mu);
    for (size_t off = 0; off < n + 4;) {
        ssize_t w = send(c->fd, b + off, n + 4 - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            r = errno == EPIPE || errno == ECONNRESET ? WC_EDISCONNECTED : WC_EIO;
            break;
        }
        off += (size_t)w;
    }
    pthread_mutex_unlock(&c->send_mu);
    if (b != stackbuf) free(b);
    return r;
}

int wcc_call(wc_client *c, Wcodec__V1__Request *q, const char *what, frame **frames, size_t *n_frames,
                wc_err *err)
{
    return wcc_call_ex(c, q, what, NULL, frames, n_frames, err);
}

/* One round trip. On success *frames holds the reply's frames (the caller
 * frees them with frames_free); every frame has status 0. */
int wcc_call_ex(wc_client *c, Wcodec__V1__Request *q, const char *what, const wcc_call_arenas *ca, frame **frames,
                size_t *n_frames, wc_err *err)
{
    *frames = NULL;
    *n_frames = 0;
    waiter w = {.what = what};
    if (ca) {
        w.device_ok = ca->device_ok;
        w.released = ca->released;
        w.n_released = ca->n_released;
    }
    pthread_mutex_lock(&c->mu);
    if (c->broken) {
        int code = c->broken;
        wc_fail(err, code, "%s: %s", what, c->broken_msg);
        pthread_mutex_unlock(&c->mu);
        return code;
    }
    w.id = q->id = ++c->next_id;
    w.next = c->waiters;
    c->waiters = &w;
    pthread_mutex_unlock(&c->mu);

    int64_t deadline = c->timeout_ms ? now_ms() + c->timeout_ms : 0;
    int r = send_request(c, q);
    pthread_mutex_lock(&c->mu);
    /* A daemon that refuses a connection sends its reason and closes; a send
     * that finds the socket closed (EPIPE, ECONNRESET) must not hide that
     * reason: the peer is gone, so reading below ends at once with its last
     * frame or with the end of the stream. */
    if (r && r != WC_EDISCONNECTED) set_broken(c, r, "sending to wcodecd at %s: %s", c->path, strerror(errno));
    while (!w.done && !c->broken) {
        if (c->reading) {
            if (deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t left = deadline - now_ms();
                if (left <= 0) {
                    set_broken(c, WC_ETIMEDOUT, "no reply from wcodecd at %s within %d ms", c->path, c->timeout_ms);
                    break;
                }
                ts.tv_sec += left / 1000;
                ts.tv_nsec += (left % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
                pthread_cond_timedwait(&c->cv, &c->mu, &ts);
            } else {
                pthread_cond_wait(&c->cv, &c->mu);
            }
            continue;
        }
        c->reading = true;
        pthread_mutex_unlock(&c->mu);
        char msg[512];
        int rr = read_some(c, deadline, msg, sizeof msg);
        pthread_mutex_lock(&c->mu);
        c->reading = false;
        if (rr) set_broken(c, rr, "%s", msg);
        else dispatch(c);
        pthread_cond_broadcast(&c->cv);
    }
    for (waiter **p = &c->waiters; *p; p = &(*p)->next)
        if (*p == &w) {
            *p = w.next;
            break;
        }
    int code = 0;
    if (!w.done) {
        code = c->broken;
        wc_fail(err, code, "%s: %s", what, c->broken_msg);
    }
    /* The next reader must come from the threads still waiting. */
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (code) {
        wcc_frames_free(w.frames, w.n_frames);
        return code;
    }
    for (size_t i = 0; i < w.n_frames; i++)
        if (w.frames[i].r->status) {
            code = w.frames[i].r->status;
            wc_fail(err, code, "%s: %s", what, w.frames[i].r->message[0] ? w.frames[i].r->message : wc_client_strerror(code));
            wcc_frames_free(w.frames, w.n_frames);
            return code >= 0 ? WC_EPROTO : code;
        }
    *frames = w.frames;
    *n_frames = w.n_frames;
    return 0;
}

/* A reply must carry the body its request asks for. */
int wcc_expect_body(frame *f, size_t n, int body, const char *what, wc_err *err)
{
    for (size_t i = 0; i < n; i++)
        if ((int)f[i].r->body_case != body) {
            wcc_frames_free(f, n);
            return wc_fail(err, WC_EPROTO, "%s: wcodecd sent a reply of another kind", what);
        }
    return 0;
}

int wc_client_connect(wc_client **out, const char *socket_path, wc_err *err)
{
    *out = NULL;
    if (!socket_path) socket_path = getenv("WCODECD_SOCKET");
    if (!socket_path || !*socket_path) socket_path = WC_CLIENT_DEFAULT_SOCKET;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path)
        return wc_fail(err, WC_EINVAL, "socket path %s is too long", socket_path);
    strcpy(sa.sun_path, socket_path);
    wc_client *c = calloc(1, sizeof *c);
    if (!c) return wc_fail(err, WC_ENOMEM, "out of memory");
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        free(c);
        return wc_fail(err, WC_EIO, "socket: %s", strerror(errno));
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->send_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    wcc_arenas_init(&c->arenas, wcc_device_ops());
    c->timeout_ms = 30000;
    snprintf(c->path, sizeof c->path, "%s", socket_path);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        wc_client_close(c);
        if (e == EACCES || e == EPERM)
            return wc_fail(err, WC_EDENIED, "cannot connect to wcodecd at %s: %s", socket_path, strerror(e));
        return wc_fail(err, WC_EDISCONNECTED, "cannot connect to wcodecd at %s: %s (is wcodecd running?)",
                    socket_path, strerror(e));
    }
    Wcodec__V1__Hello h = WCODEC__V1__HELLO__INIT;
    h.protocol_version = WC_PROTOCOL_VERSION;
    h.min_version = WC_PROTOCOL_VERSION;
    char name[32];
    snprintf(name, sizeof name, "libwcodec-client/%d", (int)getpid());
    h.client_name = name;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_HELLO;
    q.hello = &h;
    frame *f;
    size_t n;
    int r = wcc_call(c, &q, "connect", &f, &n, err);
    if (!r) r = wcc_expect_body(f, n, WCODEC__V1__REPLY__BODY_HELLO, "connect", err);
    if (r) {
        wc_client_close(c);
        return r;
    }
    Wcodec__V1__HelloReply *hr = f[0].r->hello;
    c->info.protocol_version = hr->protocol_version;
    snprintf(c->info.server_version, sizeof c->info.server_version, "%s", hr->server_version);
    c->info.backend = (wc_location_kind)hr->backend;
    c->info.max_frame = hr->max_frame;
    wcc_frames_free(f, n);
    *out = c;
    return 0;
}

void wc_client_close(wc_client *c)
{
    if (!c) return;
    while (c->tensors) {
        wcc_tensor *t = c->tensors;
        c->tensors = t->next;
        wcc_tensor_free(t);
    }
    wcc_arenas_fini(&c->arenas);
    if (c->fd >= 0) close(c->fd);
    for (size_t i = 0; i < c->fdq_len; i++) close(c->fdq[i]);
    free(c->fdq);
    free(c->rbuf);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->send_mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void wc_client_set_timeout(wc_client *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms < 0 ? 0 : timeout_ms;
}

int wc_client_server_info_get(wc_client *c, wc_client_server_info *out)
{
    *out = c->info;
    return 0;
}
