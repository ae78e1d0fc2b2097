/* What the two halves of libwcodec-client share: the connection (conn.c:
 * socket, framing, the leader/follower reading of replies) and the requests
 * built on it (client.c). Not installed. */
#ifndef WC_CLIENT_INT_H
#define WC_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <wcodec/wcodec_client.h>

#include "arenas.h"
#include "wc_fail.h"
#include "wcodec.pb-c.h"

#define MAX_REPLY_FRAME (64u << 20)
#define MAX_FDS_PER_READ 253

/* A leased tensor as the library keeps it: the public part first (what
 * wc_client_get hands out points at it), then what is the library's alone;
 * its name follows the struct in the same allocation. */
typedef struct wcc_tensor {
    wc_client_tensor pub;
    void *map_base;            /* memfd tensors: their mapping; NULL for device tensors */
    size_t map_len;
    bool counted;              /* device tensors: a lease the daemon counts in arena_id */
    uint64_t arena_id;
    struct wcc_tensor *prev, *next;   /* the connection's mapped tensors */
} wcc_tensor;

static inline wcc_tensor *wcc_tensor_of(const wc_client_tensor *t) { return (wcc_tensor *)t; }
/* Unmaps t (a memfd tensor; a device tensor's allocation is the arena
 * table's) and frees it (its lease is the caller's business). */
void wcc_tensor_free(wcc_tensor *t);

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
    bool device_ok;            /* a get that asked for device memory: its frames may import */
    const uint64_t *released;  /* a release: the arena of each counted lease it ends */
    size_t n_released;
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
    wcc_tensor *tensors;         /* mapped and not yet released */
    wcc_arenas arenas;           /* device allocations imported (under mu) */
};

/* Drops n reply frames: their descriptors are closed. */
void wcc_frames_free(frame *f, size_t n);
/* One round trip. On success *frames holds the reply's frames (the caller
 * frees them with wcc_frames_free); every frame has status 0. */
int wcc_call(wc_client *c, Wcodec__V1__Request *q, const char *what, frame **frames, size_t *n_frames, wc_err *err);
/* wcc_call with what the arena table needs to follow the reply (arenas.h):
 * device_ok for a get that asked for device memory; for a release, the
 * arena of each counted lease it ends (released[0..n_released)). */
typedef struct wcc_call_arenas {
    bool device_ok;
    const uint64_t *released;
    size_t n_released;
} wcc_call_arenas;
int wcc_call_ex(wc_client *c, Wcodec__V1__Request *q, const char *what, const wcc_call_arenas *ca, frame **frames,
                size_t *n_frames, wc_err *err);
/* 0 when every frame has the reply body `body`; frees them otherwise. */
int wcc_expect_body(frame *f, size_t n, int body, const char *what, wc_err *err);

#endif
