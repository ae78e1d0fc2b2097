/* libwcodec-client: one Unix socket per wc_client, shared by the threads of
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

#include "wcodec.pb-c.h"

#define MAX_REPLY_FRAME (64u << 20)
#define MAX_FDS_PER_READ 253

typedef struct frame {
    Wcodec__V1__Reply *r;
    int *fds;
    uint32_t nfds;
} frame;

typedef struct waiter {
    uint64_t id;
    const char *what;
    bool done;
    frame *frames;
    size_t n_frames;
    struct waiter *next;
} waiter;

struct wc_client {
    int fd;
    pthread_mutex_t mu;        /* everything below but rbuf/fdq, which only the reader touches */
    pthread_mutex_t send_mu;   /* frames go out whole */
    pthread_cond_t cv;
    bool reading;
    int broken;
    char broken_msg[512];
    uint64_t next_id;
    waiter *waiters;
    uint8_t *rbuf;
    size_t rlen, rcap;
    int *fdq;
    size_t fdq_len, fdq_cap;
    int timeout_ms;
    unsigned spin_backoff;     /* waits left before the reader spins again */
    wc_client_server_info info;
    char path[108];
    wc_client_tensor *tensors;   /* mapped and not yet released */
};

static int fail(wc_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static void frame_drop(frame *f)
{
    for (uint32_t j = 0; j < f->nfds; j++)
        if (f->fds[j] >= 0) close(f->fds[j]);
    free(f->fds);
    wcodec__v1__reply__free_unpacked(f->r, NULL);
}

static void frames_free(frame *f, size_t n)
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
        if (!r->more || r->status) w->done = true;
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

/* One round trip. On success *frames holds the reply's frames (the caller
 * frees them with frames_free); every frame has status 0. */
static int call(wc_client *c, Wcodec__V1__Request *q, const char *what, frame **frames, size_t *n_frames,
                wc_err *err)
{
    *frames = NULL;
    *n_frames = 0;
    waiter w = {.what = what};
    pthread_mutex_lock(&c->mu);
    if (c->broken) {
        int code = c->broken;
        fail(err, code, "%s: %s", what, c->broken_msg);
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
        fail(err, code, "%s: %s", what, c->broken_msg);
    }
    /* The next reader must come from the threads still waiting. */
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (code) {
        frames_free(w.frames, w.n_frames);
        return code;
    }
    for (size_t i = 0; i < w.n_frames; i++)
        if (w.frames[i].r->status) {
            code = w.frames[i].r->status;
            fail(err, code, "%s: %s", what, w.frames[i].r->message[0] ? w.frames[i].r->message : wc_client_strerror(code));
            frames_free(w.frames, w.n_frames);
            return code >= 0 ? WC_EPROTO : code;
        }
    *frames = w.frames;
    *n_frames = w.n_frames;
    return 0;
}

/* A reply must carry the body its request asks for. */
static int expect_body(frame *f, size_t n, int body, const char *what, wc_err *err)
{
    for (size_t i = 0; i < n; i++)
        if ((int)f[i].r->body_case != body) {
            frames_free(f, n);
            return fail(err, WC_EPROTO, "%s: wcodecd sent a reply of another kind", what);
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
        return fail(err, WC_EINVAL, "socket path %s is too long", socket_path);
    strcpy(sa.sun_path, socket_path);
    wc_client *c = calloc(1, sizeof *c);
    if (!c) return fail(err, WC_ENOMEM, "out of memory");
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        free(c);
        return fail(err, WC_EIO, "socket: %s", strerror(errno));
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->send_mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->timeout_ms = 30000;
    snprintf(c->path, sizeof c->path, "%s", socket_path);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        wc_client_close(c);
        if (e == EACCES || e == EPERM)
            return fail(err, WC_EDENIED, "cannot connect to wcodecd at %s: %s", socket_path, strerror(e));
        return fail(err, WC_EDISCONNECTED, "cannot connect to wcodecd at %s: %s (is wcodecd running?)",
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
    int r = call(c, &q, "connect", &f, &n, err);
    if (!r) r = expect_body(f, n, WCODEC__V1__REPLY__BODY_HELLO, "connect", err);
    if (r) {
        wc_client_close(c);
        return r;
    }
    Wcodec__V1__HelloReply *hr = f[0].r->hello;
    c->info.protocol_version = hr->protocol_version;
    snprintf(c->info.server_version, sizeof c->info.server_version, "%s", hr->server_version);
    c->info.backend = (wc_location_kind)hr->backend;
    c->info.max_frame = hr->max_frame;
    frames_free(f, n);
    *out = c;
    return 0;
}

void wc_client_close(wc_client *c)
{
    if (!c) return;
    while (c->tensors) {
        wc_client_tensor *t = c->tensors;
        c->tensors = t->next_;
        munmap(t->map_base_, t->map_len_);
        free(t);
    }
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

int wc_client_open(wc_client *c, const char *path, wc_client_model *out, wc_err *err)
{
    Wcodec__V1__OpenModel o = WCODEC__V1__OPEN_MODEL__INIT;
    o.path = (char *)path;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &o;
    frame *f;
    size_t n;
    int r = call(c, &q, "open", &f, &n, err);
    if (!r) r = expect_body(f, n, WCODEC__V1__REPLY__BODY_OPEN, "open", err);
    if (r) return r;
    out->id = f[0].r->open->model_id;
    out->tensor_count = f[0].r->open->tensor_count;
    out->file_bytes = f[0].r->open->file_bytes;
    frames_free(f, n);
    return 0;
}

static void info_from(wc_client_tensor_info *d, const Wcodec__V1__TensorInfo *s)
{
    d->dtype = (wc_dtype)s->dtype;
    d->out_dtype = (wc_dtype)s->out_dtype;
    d->coding = (wc_coding)s->coding;
    d->ndim = (uint32_t)(s->n_shape > WC_MAX_DIMS ? WC_MAX_DIMS : s->n_shape);
    for (uint32_t i = 0; i < d->ndim; i++) d->shape[i] = s->shape[i];
    d->out_bytes = s->out_bytes;
    d->n_scales = s->n_scales;
    d->stored_bytes = s->stored_bytes;
    d->cached = s->cached;
}

int wc_client_list(wc_client *c, uint64_t model_id, const char *prefix, wc_client_tensor_info **out,
                   size_t *n_out, wc_err *err)
{
    *out = NULL;
    *n_out = 0;
    Wcodec__V1__ListTensors l = WCODEC__V1__LIST_TENSORS__INIT;
    l.model_id = model_id;
    l.prefix = (char *)(prefix ? prefix : "");
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_LIST;
    q.list = &l;
    frame *f;
    size_t n;
    int r = call(c, &q, "list", &f, &n, err);
    if (!r) r = expect_body(f, n, WCODEC__V1__REPLY__BODY_LIST, "list", err);
    if (r) return r;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += f[i].r->list->n_tensor;
    wc_client_tensor_info *a = calloc(total ? total : 1, sizeof *a);
    if (!a) {
        frames_free(f, n);
        return fail(err, WC_ENOMEM, "list: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < f[i].r->list->n_tensor; j++, k++) {
            info_from(&a[k], f[i].r->list->tensor[j]);
            if (!(a[k].name = strdup(f[i].r->list->tensor[j]->name))) {
                frames_free(f, n);
                wc_client_list_free(a, k);
                return fail(err, WC_ENOMEM, "list: out of memory");
            }
        }
    frames_free(f, n);
    *out = a;
    *n_out = total;
    return 0;
}

void wc_client_list_free(wc_client_tensor_info *infos, size_t n)
{
    for (size_t i = 0; infos && i < n; i++) free(infos[i].name);
    free(infos);
}

static int release_ids(wc_client *c, const uint64_t *ids, size_t n, wc_err *err)
{
    Wcodec__V1__Release rl = WCODEC__V1__RELEASE__INIT;
    rl.n_lease_id = n;
    rl.lease_id = (uint64_t *)ids;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_RELEASE;
    q.release = &rl;
    frame *f;
    size_t nf;
    int r = call(c, &q, "release", &f, &nf, err);
    if (!r) r = expect_body(f, nf, WCODEC__V1__REPLY__BODY_RELEASE, "release", err);
    if (!r) frames_free(f, nf);
    return r;
}

/* Maps one tensor of a get reply; checks the daemon's numbers first so that
 * a bad reply cannot make the caller read past the mapping. */
static int map_tensor(const Wcodec__V1__Tensor *t, const frame *f, uint64_t model_id, wc_client_tensor **out,
                      wc_err *err)
{
    const Wcodec__V1__Location *l = t->location;
    const char *name = t->info && t->info->name ? t->info->name : "?";
    if (!t->info || !l) return fail(err, WC_EPROTO, "get: tensor %s: reply without info or location", name);
    if (l->kind != WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD)
        return fail(err, WC_EUNSUPPORTED, "get: tensor %s: location kind %d is not supported by this client",
                    name, (int)l->kind);
    if (l->fd_index >= f->nfds || f->fds[l->fd_index] < 0)
        return fail(err, WC_EPROTO, "get: tensor %s: descriptor %u missing", name, l->fd_index);
    if (!l->map_length || l->offset > l->map_length || l->length > l->map_length - l->offset ||
        l->scales_offset > l->map_length || l->n_scales > (l->map_length - l->scales_offset) / sizeof(float) ||
        l->length != t->info->out_bytes || l->scales_offset % sizeof(float) || l->map_length > SIZE_MAX)
        return fail(err, WC_EPROTO, "get: tensor %s: location out of bounds", name);
    int fd = f->fds[l->fd_index];
    struct stat sb;
    if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size < l->map_length)
        return fail(err, WC_EPROTO, "get: tensor %s: the shared memory is smaller than announced", name);
    size_t nl = strlen(name);
    wc_client_tensor *ct = calloc(1, sizeof *ct + nl + 1);
    if (!ct) return fail(err, WC_ENOMEM, "get: out of memory");
    void *p = mmap(NULL, (size_t)l->map_length, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        free(ct);
        return fail(err, WC_EIO, "get: tensor %s: mmap of %llu bytes: %s", name,
                    (unsigned long long)l->map_length, strerror(errno));
    }
    memcpy((char *)(ct + 1), name, nl + 1);
    ct->name = (const char *)(ct + 1);
    ct->model_id = model_id;
    ct->lease_id = t->lease_id;
    ct->dtype = (wc_dtype)t->info->dtype;
    ct->out_dtype = (wc_dtype)t->info->out_dtype;
    ct->ndim = (uint32_t)(t->info->n_shape > WC_MAX_DIMS ? WC_MAX_DIMS : t->info->n_shape);
    for (uint32_t i = 0; i < ct->ndim; i++) ct->shape[i] = t->info->shape[i];
    ct->data = (const char *)p + l->offset;
    ct->size = l->length;
    ct->scales = l->n_scales ? (const float *)((const char *)p + l->scales_offset) : NULL;
    ct->n_scales = l->n_scales;
    ct->location = WC_LOC_MEMFD;
    ct->map_base_ = p;
    ct->map_len_ = (size_t)l->map_length;
    *out = ct;
    return 0;
}

static void track(wc_client *c, wc_client_tensor **ts, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        ts[i]->prev_ = NULL;
        ts[i]->next_ = c->tensors;
        if (c->tensors) c->tensors->prev_ = ts[i];
        c->tensors = ts[i];
    }
    pthread_mutex_unlock(&c->mu);
}

static void untrack_unmap(wc_client *c, wc_client_tensor *const *ts, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        wc_client_tensor *t = ts[i];
        if (t->prev_) t->prev_->next_ = t->next_;
        else if (c->tensors == t) c->tensors = t->next_;
        if (t->next_) t->next_->prev_ = t->prev_;
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        munmap(ts[i]->map_base_, ts[i]->map_len_);
        free(ts[i]);
    }
}

int wc_client_get(wc_client *c, uint64_t model_id, wc_client_select sel, const char *const *names,
                  size_t n_names, wc_client_tensor ***out, size_t *n_out, wc_err *err)
{
    *out = NULL;
    *n_out = 0;
    Wcodec__V1__GetTensors g = WCODEC__V1__GET_TENSORS__INIT;
    Wcodec__V1__GetTensors__Names nm = WCODEC__V1__GET_TENSORS__NAMES__INIT;
    g.model_id = model_id;
    switch (sel) {
    case WC_SELECT_NAMES:
        if (!n_names) return fail(err, WC_EINVAL, "get: no names");
        nm.n_name = n_names;
        nm.name = (char **)names;
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_NAMES;
        g.names = &nm;
        break;
    case WC_SELECT_PREFIX:
        if (!names || !names[0]) return fail(err, WC_EINVAL, "get: no prefix");
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_PREFIX;
        g.prefix = (char *)names[0];
        break;
    case WC_SELECT_ALL:
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_ALL;
        g.all = 1;
        break;
    default:
        return fail(err, WC_EINVAL, "get: unknown selection %d", (int)sel);
    }
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_GET;
    q.get = &g;
    frame *f;
    size_t nf;
    int r = call(c, &q, "get", &f, &nf, err);
    if (!r) r = expect_body(f, nf, WCODEC__V1__REPLY__BODY_GET, "get", err);
    if (r) return r;
    size_t total = 0;
    for (size_t i = 0; i < nf; i++) total += f[i].r->get->n_tensor;
    wc_client_tensor **ts = calloc(total ? total : 1, sizeof *ts);
    uint64_t *ids = calloc(total ? total : 1, sizeof *ids);
    size_t k = 0;
    if (!ts || !ids) r = fail(err, WC_ENOMEM, "get: out of memory");
    for (size_t i = 0; !r && i < nf; i++)
        for (size_t j = 0; !r && j < f[i].r->get->n_tensor; j++) {
            ids[k] = f[i].r->get->tensor[j]->lease_id;
            r = map_tensor(f[i].r->get->tensor[j], &f[i], model_id, &ts[k], err);
            if (!r) k++;
        }
    frames_free(f, nf);
    if (r) {
        /* All or none: hand back what the daemon leased us. */
        for (size_t i = 0; i < k; i++) {
            munmap(ts[i]->map_base_, ts[i]->map_len_);
            free(ts[i]);
        }
        if (ids && total) release_ids(c, ids, total, NULL);
        free(ts);
        free(ids);
        return r;
    }
    free(ids);
    track(c, ts, total);
    *out = ts;
    *n_out = total;
    return 0;
}

int wc_client_get_one(wc_client *c, uint64_t model_id, const char *name, wc_client_tensor **out, wc_err *err)
{
    wc_client_tensor **ts;
    size_t n;
    *out = NULL;
    int r = wc_client_get(c, model_id, WC_SELECT_NAMES, &name, 1, &ts, &n, err);
    if (r) return r;
    *out = ts[0];
    free(ts);
    return 0;
}

int wc_client_release(wc_client *c, wc_client_tensor *const *tensors, size_t n, wc_err *err)
{
    if (!n) return 0;
    uint64_t stackids[64];
    uint64_t *ids = n <= 64 ? stackids : malloc(n * sizeof *ids);
    if (!ids) return fail(err, WC_ENOMEM, "release: out of memory");
    for (size_t i = 0; i < n; i++) ids[i] = tensors[i]->lease_id;
    /* The mappings are ours: drop them whatever the daemon answers. */
    untrack_unmap(c, tensors, n);
    int r = release_ids(c, ids, n, err);
    if (ids != stackids) free(ids);
    return r;
}

int wc_client_stats_get(wc_client *c, wc_client_stats *out, wc_err *err)
{
    Wcodec__V1__Stats s = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &s;
    frame *f;
    size_t n;
    int r = call(c, &q, "stats", &f, &n, err);
    if (!r) r = expect_body(f, n, WCODEC__V1__REPLY__BODY_STATS, "stats", err);
    if (r) return r;
    const Wcodec__V1__StatsReply *s2 = f[0].r->stats;
    *out = (wc_client_stats){
        .uptime_ms = s2->uptime_ms, .connections = s2->connections, .models = s2->models,
        .budget_bytes = s2->budget_bytes, .cached_bytes = s2->cached_bytes, .cached_tensors = s2->cached_tensors,
        .leased_bytes = s2->leased_bytes, .leased_tensors = s2->leased_tensors, .leases = s2->leases,
        .conn_leases = s2->conn_leases, .decodes = s2->decodes, .hits = s2->hits, .evictions = s2->evictions,
        .requests = s2->requests, .errors = s2->errors, .rss_bytes = s2->rss_bytes, .open_fds = s2->open_fds,
        .decodes_in_flight = s2->decodes_in_flight,
    };
    frames_free(f, n);
    return 0;
}

int wc_client_evict(wc_client *c, uint64_t model_id, uint32_t *evicted_tensors, uint64_t *evicted_bytes,
                    wc_err *err)
{
    Wcodec__V1__Evict e = WCODEC__V1__EVICT__INIT;
    e.model_id = model_id;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_EVICT;
    q.evict = &e;
    frame *f;
    size_t n;
    int r = call(c, &q, "evict", &f, &n, err);
    if (!r) r = expect_body(f, n, WCODEC__V1__REPLY__BODY_EVICT, "evict", err);
    if (r) return r;
    if (evicted_tensors) *evicted_tensors = f[0].r->evict->evicted_tensors;
    if (evicted_bytes) *evicted_bytes = f[0].r->evict->evicted_bytes;
    frames_free(f, n);
    return 0;
}
