#include "rawconn.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int raw_connect(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, sock, sizeof sa.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int raw_send_bytes(int fd, const void *p, size_t n)
{
    return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

int raw_send(int fd, const Wcodec__V1__Request *q)
{
    size_t n = wcodec__v1__request__get_packed_size(q);
    uint8_t *b = malloc(n + 4);
    b[0] = (uint8_t)n, b[1] = (uint8_t)(n >> 8), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 24);
    wcodec__v1__request__pack(q, b + 4);
    int r = raw_send_bytes(fd, b, n + 4);
    free(b);
    return r;
}

int raw_hello(int fd)
{
    Wcodec__V1__Hello h = WCODEC__V1__HELLO__INIT;
    h.protocol_version = 1;
    h.min_version = 1;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.id = 1;
    q.body_case = WCODEC__V1__REQUEST__BODY_HELLO;
    q.hello = &h;
    if (raw_send(fd, &q)) return -1;
    int eof;
    Wcodec__V1__Reply *r = raw_recv(fd, 5000, &eof);
    int ok = r && r->status == 0 && r->body_case == WCODEC__V1__REPLY__BODY_HELLO;
    if (r) wcodec__v1__reply__free_unpacked(r, NULL);
    return ok ? 0 : -1;
}

unsigned raw_fds_seen;

static int read_full(int fd, uint8_t *p, size_t n, int timeout_ms, int *eof)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, timeout_ms) <= 0) return -1;
        union {
            char buf[CMSG_SPACE(sizeof(int) * 253)];
            struct cmsghdr align;
        } cm;
        struct iovec iov = {p + got, n - got};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
        ssize_t k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); k > 0 && h; h = CMSG_NXTHDR(&mh, h))
            if (h->cmsg_type == SCM_RIGHTS) {
                int *fds = (int *)CMSG_DATA(h);
                for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) close(fds[i]), raw_fds_seen++;
            }
        if (k == 0 || (k < 0 && errno == ECONNRESET)) {
            *eof = 1;
            return -1;
        }
        if (k < 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

Wcodec__V1__Reply *raw_recv(int fd, int timeout_ms, int *eof)
{
    *eof = 0;
    uint8_t h[4];
    if (read_full(fd, h, 4, timeout_ms, eof)) return NULL;
    uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (n > (64u << 20)) return NULL;
    uint8_t *b = malloc(n ? n : 1);
    if (read_full(fd, b, n, timeout_ms, eof)) {
        free(b);
        return NULL;
    }
    Wcodec__V1__Reply *r = wcodec__v1__reply__unpack(NULL, n, b);
    free(b);
    return r;
}

int raw_closed(int fd, int timeout_ms)
{
    for (;;) {
        int eof = 0;
        Wcodec__V1__Reply *r = raw_recv(fd, timeout_ms, &eof);
        if (eof) return 1;
        if (!r) return 0;
        wcodec__v1__reply__free_unpacked(r, NULL);
    }
}

/* The daemon's counters, asked on a connection of their own. */
Wcodec__V1__Reply *raw_stats(const char *sock)
{
    int fd = raw_connect(sock);
    if (fd < 0) return NULL;
    if (raw_hello(fd)) {
        close(fd);
        return NULL;
    }
    Wcodec__V1__Stats st = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.id = 2;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &st;
    int eof;
    Wcodec__V1__Reply *r = raw_send(fd, &q) ? NULL : raw_recv(fd, 10000, &eof);
    close(fd);
    return r && r->body_case == WCODEC__V1__REPLY__BODY_STATS ? r : NULL;
}

uint64_t raw_open(int fd, const char *path)
{
    Wcodec__V1__OpenModel o = WCODEC__V1__OPEN_MODEL__INIT;
    o.path = (char *)path;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.id = 3;
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &o;
    int eof;
    Wcodec__V1__Reply *r = raw_send(fd, &q) ? NULL : raw_recv(fd, 10000, &eof);
    uint64_t id = r && r->body_case == WCODEC__V1__REPLY__BODY_OPEN ? r->open->model_id : 0;
    if (r) wcodec__v1__reply__free_unpacked(r, NULL);
    return id;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends what the socket takes without blocking, until it has taken all or
 * has taken nothing for 500 ms (the daemon stopped reading). */
size_t raw_push(int fd, const uint8_t *b, size_t len)
{
    size_t sent = 0;
    int64_t still_since = now_ms();
    while (sent < len && now_ms() - still_since < 500) {
        ssize_t k = send(fd, b + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) {
            sent += (size_t)k;
            still_since = now_ms();
        } else if (k < 0 && errno != EAGAIN) {
            break;
        } else {
            usleep(5000);
        }
    }
    return sent;
}
