/* wcodecd internals shared by the daemon's modules. One libuv loop owns all
 * of this state; only the decode step of a cache entry runs on a pool
 * thread, and it touches nothing but its own entry's allocation. */
#ifndef WCD_H
#define WCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <uv.h>

#include <wcodec/wcodec.h>
#include <wcodec/wcodec_client.h>

#include "spans.h"
#include "wc_fail.h"
#include "wcodec.pb-c.h"

#define WCD_VERSION WC_VERSION_STRING /* the project's (wcodec/version.h) */
/* Descriptors passed with one reply frame; well under SCM_MAX_FD (253). */
#define WCD_FDS_PER_FRAME 64
/* Tensor infos per list reply frame, to keep replies under the client's cap. */
#define WCD_INFOS_PER_FRAME 1024
#define WCD_MAX_NAME 4096
#define WCD_MAX_TENSORS_PER_REQUEST 65536

/* ---- log.c ---- */
enum { WCD_LOG_ERR = 3, WCD_LOG_WARN = 4, WCD_LOG_NOTICE = 5, WCD_LOG_INFO = 6, WCD_LOG_DEBUG = 7 };
extern int wcd_log_level;
void wcd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int wcd_log_level_parse(const char *s);
/* s, or, when it is WCD_SHORT_MAX bytes or longer, its head and tail in buf
 * (at least WCD_SHORT_MAX + 8 bytes): for quoting client paths in messages
 * so that the reason after them survives the message's size. */
#define WCD_SHORT_MAX 256
const char *wcd_short(const char *s, char *buf, size_t size);

/* ---- config.c ---- */
typedef struct wcd_config {
    char *config_path;      /* file read at start and on SIGHUP; NULL: none */
    char *socket_path;
    unsigned socket_mode;
    uid_t *allow_uids;
    size_t n_allow_uids;
    gid_t *allow_gids;
    size_t n_allow_gids;
    bool allow_any;         /* allow_uids = * : the socket mode is the only gate */
    char **roots;
    size_t n_roots;
    uint64_t budget;
    unsigned threads;
    uint32_t max_frame;
    unsigned max_models;
    unsigned max_leases;     /* per connection */
    unsigned max_connections;
    unsigned max_inflight;   /* requests under way per connection */
    uint64_t conn_out_bytes; /* reply bytes queued per connection before it is no longer read */
    unsigned conn_fds;       /* descriptors in flight per connection (queued or unread) */
    unsigned handshake_timeout_ms; /* connect to Hello; 0: none */
    unsigned idle_timeout_ms;      /* nothing asked, queued or leased; 0: none */
    unsigned send_timeout_ms;      /* replies queued and none read; 0: none */
    int log_level;
    /* GPU backend (issue 19, docs/OPERATIONS.md "GPU backend") */
    int backend;             /* WCD_BACKEND_* */
    char **gpu_devices;      /* UUIDs ("GPU-...") or ordinals; NULL: all visible */
    size_t n_gpu_devices;
    uint64_t gpu_budget;     /* bytes per device; 0: gpu_budget_pct of its memory */
    unsigned gpu_budget_pct;
    int gpu_ipc;             /* WCD_IPC_* */
} wcd_config;

enum { WCD_BACKEND_AUTO = 0, WCD_BACKEND_CPU = 1, WCD_BACKEND_GPU = 2 };
enum { WCD_IPC_VMM = 0, WCD_IPC_LEGACY = 1 };

/* One "section.key = value" from the command line. */
typedef struct wcd_setting {
    const char *section, *key, *value;
} wcd_setting;

void wcd_config_defaults(wcd_config *c);
/* Defaults, then the file (if any), then the flags: the daemon's whole
 * configuration, at start and on SIGHUP. */
int wcd_config_build(wcd_config *c, const char *path, const wcd_setting *cli, size_t n_cli,
                     wc_err *err);
void wcd_config_free(wcd_config *c);
/* Reads an ini file into c (on top of what is there). */
int wcd_config_load(wcd_config *c, const char *path, wc_err *err);
/* Applies one "section.key = value" setting; used for files and flags. */
int wcd_config_set(wcd_config *c, const char *section, const char *key, const char *value,
                   wc_err *err);
int wcd_config_check(const wcd_config *c, wc_err *err);
int wcd_parse_size(const char *s, uint64_t *out);

/* ---- frame.c ---- */
/* Finds the first complete frame in buf. Returns 1 and sets payload, plen
 * and consumed when one is there, 0 when more bytes are needed, WC_EPROTO
 * when the announced length exceeds max_frame. */
int wcd_frame_next(const uint8_t *buf, size_t len, uint32_t max_frame, const uint8_t **payload,
                   uint32_t *plen, size_t *consumed);
/* Serializes a reply behind its length prefix; *out is malloc'd. */
int wcd_frame_pack_reply(const Wcodec__V1__Reply *r, uint8_t **out, size_t *len);

/* ---- the cache and its pools (cache.c, pool.c) ----
 *
 * A pool is a place decoded tensors live in, with its own budget and LRU:
 * the host (the memfd backend) or one GPU (the GPU backend, one pool per
 * device). A block is one piece of a pool's memory: a memfd holding one
 * tensor, or a device arena holding tensors of one model; blocks are
 * refcounted by the entries placed in them and freed by their backend when
 * the last one goes. An entry is one tensor of one model in one pool. */
typedef struct wcd_model wcd_model;
typedef struct wcd_entry wcd_entry;
typedef struct wcd_claim wcd_claim;
typedef struct wcd_pool wcd_pool;
typedef struct wcd_block wcd_block;
typedef struct wcd_cache wcd_cache;

#define WCD_MAX_POOLS 17     /* the host and up to 16 GPUs */
#define WCD_MAX_VIEWS 32     /* (pool, shard) pairs a model is served as */

/* How a model's tensors are served from one pool: whole, or each one's
 * tensor-parallel shard `rank` of `count` along the dimension `layout`
 * gives it (docs/SHARDING.md; tensors the layout replicates whole). */
typedef struct wcd_view {
    wcd_pool *pool;
    uint32_t rank, count;    /* count 1: whole tensors */
    char layout[16];
    wcd_entry **entries;     /* by tensor index; NULL: not resident */
} wcd_view;

typedef struct wcd_block {
    uint64_t id;
    wcd_pool *pool;
    wcd_model *model;
    uint64_t size;           /* memory it holds, charged to its pool */
    uint64_t tensor_bytes;   /* of which its entries take */
    uint32_t entries;        /* placed in it */
    uint32_t leased;         /* of which leased */
    int fd;                  /* memfd, or the arena's exported fd; -1: none */
    bool shared;             /* holds many entries: ranges from spans */
    wcd_spans spans;
    void *priv;              /* the backend's */
    unsigned char ipc_handle[64]; /* legacy CUDA IPC: the arena's handle */
    struct wcd_block *prev, *next;   /* the pool's blocks */
} wcd_block;

/* Where an entry lies in its block. */
typedef struct wcd_place {
    uint64_t offset, length, scales_offset, n_scales;
    uint64_t span;           /* bytes of the block it takes */
} wcd_place;

/* A backend: what a pool's memory is and how tensors are decoded into it.
 * Every call runs on the loop but decode work, which the backend queues
 * itself and finishes with wcd_cache_decoded() for each entry, on the loop. */
typedef struct wcd_backend {
    const char *name;
    Wcodec__V1__LocationKind kind;
    bool shared_blocks;      /* many entries a block (arenas) or one (memfds) */
    /* Bytes of a block one tensor takes, and where its parts lie there. */
    void (*layout)(const wcd_pool *p, const wc_tensor_info *ti, wcd_place *pl);
    /* A block of at least `size` bytes (the backend rounds it up and sets
     * b->size, b->fd, b->priv); `first` is the entry it is made for. */
    int (*block_new)(wcd_pool *p, wcd_block *b, uint64_t size, const wcd_entry *first, wc_err *err);
    void (*block_free)(wcd_pool *p, wcd_block *b);
    /* Starts decoding the n new entries (one model, one pool). */
    int (*submit)(wcd_pool *p, wcd_model *m, wcd_entry **e, uint32_t n, wc_err *err);
    void (*close)(wcd_pool *p);
} wcd_backend;

extern const wcd_backend wcd_backend_memfd;

struct wcd_pool {
    const wcd_backend *be;
    wcd_cache *cache;
    unsigned ix;             /* in cache->pools */
    char name[96];           /* "host", or "GPU 0 (NVIDIA H200, GPU-8d3e...)" */
    unsigned char uuid[16];  /* GPUs */
    bool is_gpu;
    int ordinal;             /* the daemon's CUDA ordinal; -1 for the host */
    uint64_t budget, used;   /* used: the size of its blocks */
    uint64_t tensor_bytes;   /* of its entries */
    uint64_t leased_bytes;
    uint32_t n_entries, n_leased, n_blocks, in_flight;
    uint64_t decodes, hits, evictions;
    wcd_entry *lru_head, *lru_tail;   /* idle ready entries, head = least recent */
    wcd_block *blocks;
    const char *failed;      /* NULL, or why nothing more is placed here */
    char failed_msg[256];
    void *priv;              /* the backend's state (a GPU: its decoder, queue) */
};

enum wcd_entry_state { WCD_DECODING = 1, WCD_READY = 2 };

struct wcd_entry {
    wcd_model *model;
    wcd_pool *pool;
    wcd_view *view;
    uint32_t index;
    int dim;                 /* its shard: rank of count along dim; count 1: whole */
    uint32_t rank, count;
    int state;
    uint32_t leases;         /* held by connections */
    uint32_t pins;           /* requests under way that will take a lease */
    wcd_block *block;
    wcd_place at;
    wcd_entry *lru_prev, *lru_next;
    bool in_lru;
    wcd_claim *waiters;
    void *work;              /* the backend's, while it decodes */
};

struct wcd_model {
    uint64_t id;
    dev_t dev;
    ino_t ino;
    char *label;
    wc_file *f;
    uint32_t n;
    wcd_view views[WCD_MAX_VIEWS];
    unsigned n_views;
    wcd_model *next;
    /* Lifetime (docs/OPERATIONS.md, "Model files"). The model keeps its
     * own descriptor to see its file removed (no links left) or changed in
     * place (size or mtime); path is what the opener named, to see the
     * file replaced there by a later OpenModel. */
    int fd;
    char *path;
    uint64_t size;
    struct timespec mtime;
    uint32_t busy;           /* entries pinned, leased or decoding */
    bool replaced;           /* a later OpenModel of path found another file */
    dev_t root_dev;          /* the root directory it was opened beneath */
    ino_t root_ino;
    const char *retired;     /* NULL, or why no request is served from it any more */
};

/* A caller's claim on one tensor; also its node in the entry's waiter list
 * while the tensor decodes. The cache calls done(claim, status, msg) on the
 * loop when a claim that had to wait is resolved (claim->e ready, or an
 * error and claim->e NULL). */
struct wcd_claim {
    void (*done)(wcd_claim *cl, int status, const char *msg);
    void *owner;
    wcd_entry *e;
    uint32_t index;
    wcd_claim *next_waiter;
};

struct wcd_cache {
    uv_loop_t *loop;
    wcd_pool *pools[WCD_MAX_POOLS];  /* [0]: the host */
    unsigned n_pools;
    wcd_model *models;
    uint32_t n_models;       /* not retired */
    uint64_t next_model_id, next_block_id;
};

void wcd_cache_init(wcd_cache *c, uv_loop_t *loop);
/* Adds a pool (the cache owns it from here; backend close at fini). */
int wcd_cache_add_pool(wcd_cache *c, wcd_pool *p, wc_err *err);
/* Frees everything; no decode may be under way and no lease held. */
void wcd_cache_fini(wcd_cache *c);
wcd_model *wcd_cache_model(wcd_cache *c, uint64_t id);
/* Takes ownership of f and fd (the model file, open for reading); path is
 * the client's spelling, label its short form for messages. */
int wcd_cache_add_model(wcd_cache *c, int fd, const char *path, const char *label, wc_file *f,
                        unsigned max_models, wcd_model **out, wc_err *err);
/* The model of that file still served (not retired), or NULL. */
wcd_model *wcd_cache_find_model(wcd_cache *c, dev_t dev, ino_t ino);
/* Ends the model's service for `why` (a static string): its idle tensors
 * are dropped at once, the model itself when nothing of it is in use. */
void wcd_cache_retire(wcd_cache *c, wcd_model *m, const char *why);
/* Retires models whose file changed in place, and unused ones whose file
 * was removed or replaced; run on OpenModel, reload and a timer. */
void wcd_cache_sweep(wcd_cache *c);
/* The view of m from pool p as shard rank of count (count 0 or 1: whole
 * tensors) with `layout`; made when missing. WC_ELIMIT past WCD_MAX_VIEWS,
 * WC_EINVAL for a layout libwcodec does not know. */
int wcd_model_view(wcd_model *m, wcd_pool *p, uint32_t rank, uint32_t count, const char *layout, wcd_view **out,
                   wc_err *err);
/* Pins the n tensors of the claims (claim->index set, done and owner set)
 * in view v (its pool, its shard), decoding the missing ones as one batch.
 * Returns the number of claims that wait (their done follows), or an
 * error: then the claims with e set hold pins the caller drops with
 * wcd_cache_unpin. */
int wcd_cache_acquire(wcd_cache *c, wcd_view *v, wcd_model *m, wcd_claim *claims, uint32_t n, wc_err *err);
/* What an entry holds: its tensor's info with the shard's shape, bytes and
 * scales (si->dim -1 for a whole tensor). */
int wcd_entry_info(const wcd_entry *e, wc_tensor_info *ti, wc_shard_info *si);
/* The backend finished decoding e: status 0 or an error with its message. */
void wcd_cache_decoded(wcd_entry *e, int status, const char *msg);
void wcd_cache_unpin(wcd_entry *e);
void wcd_cache_pin_to_lease(wcd_entry *e);
void wcd_cache_lease_end(wcd_entry *e);
/* Evicts idle tensors of m (NULL: every model) from every pool. */
void wcd_cache_evict(wcd_cache *c, wcd_model *m, uint32_t *n, uint64_t *bytes);
void wcd_pool_set_budget(wcd_pool *p, uint64_t budget);
/* Marks the pool failed: nothing more is placed in it. */
void wcd_pool_fail(wcd_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The first usable GPU pool, or the one of that UUID; NULL: none. */
wcd_pool *wcd_cache_gpu_pool(wcd_cache *c, const unsigned char *uuid, size_t uuid_len);
/* Between cache.c and pool.c: an entry's one release point; a model that
 * nothing uses any more (freed if retired or its file went); a decode of
 * one of its tensors failed (a file changed in place ends it). */
void wcd_entry_free(wcd_entry *e);
void wcd_model_unused(wcd_cache *c, wcd_model *m);
void wcd_model_decode_failed(wcd_cache *c, wcd_model *m);
/* Totals over the pools, for the daemon-wide stats. */
typedef struct wcd_cache_totals {
    uint64_t budget, used, leased_bytes, decodes, hits, evictions;
    uint32_t n_entries, n_leased, in_flight;
} wcd_cache_totals;
void wcd_cache_totals_get(const wcd_cache *c, wcd_cache_totals *t);

/* ---- pools.c: the backends chosen by the configuration ---- */
struct wcd_config;
/* The host pool, then a pool per usable GPU as [daemon] backend and [gpu]
 * say; each GPU's decoder is warm when this returns. */
int wcd_pools_open(wcd_cache *c, const struct wcd_config *cfg, wc_err *err);
/* A reload: the new budgets; what needs a restart is logged. */
void wcd_pools_reload(wcd_cache *c, const struct wcd_config *old, const struct wcd_config *next);
/* "cpu", or "gpu" when a GPU pool serves. */
const char *wcd_pools_backend(const wcd_cache *c);
/* The UUID of CUDA device `ordinal` (backend_gpu.c). */
int wcd_gpu_uuid(int ordinal, unsigned char uuid[16], wc_err *err);
/* GPU backend: a GPU pool for CUDA device `ordinal` (backend_gpu.c). */
int wcd_gpu_pool_open(wcd_cache *c, int ordinal, const struct wcd_config *cfg, wcd_pool **out, wc_err *err);
/* Device memory now: total and free (0s where not known). */
void wcd_gpu_pool_meminfo(wcd_pool *p, uint64_t *total, uint64_t *free_b);
/* The number of CUDA devices, or an error with the reason none can be used. */
int wcd_gpu_count(int *n, wc_err *err);

/* ---- model.c ---- */
typedef struct wcd_root {
    char *path;
    int fd;     /* O_PATH directory */
    dev_t dev;  /* the directory itself: a reload that swaps it is seen */
    ino_t ino;
} wcd_root;

int wcd_roots_open(const wcd_config *cfg, wcd_root **out, size_t *n, wc_err *err);
void wcd_roots_close(wcd_root *r, size_t n);
/* Opens path beneath one of the roots: an fd for a regular file, or
 * WC_EDENIED if it resolves outside them; *used: the root it is beneath. */
int wcd_open_beneath(const wcd_root *roots, size_t n, const char *path, int *fd, const wcd_root **used,
                     wc_err *err);

/* ---- conn.c ---- */
typedef struct wcd_lease {
    uint64_t id;
    wcd_entry *e;   /* NULL: released (a hole until compaction) */
} wcd_lease;

/* A shared block (device arena) this connection holds leases in: its
 * descriptor or handle went with the frame that took the first of them,
 * and goes again only after the last has been released (docs/PROTOCOL.md,
 * "Device memory"). */
typedef struct wcd_conn_block {
    wcd_block *b;
    uint32_t leases;
} wcd_conn_block;

/* A queued reply frame. Its fds are borrowed from the leases the frame
 * carries (no dup: the daemon holds no descriptor for a queued frame beyond
 * the cache's own); a lease is not released before its frame has gone, see
 * wcd_conn_lease_take. A frame with get set is a get reply still to be cut
 * into frames: each is made when it reaches the head of the queue, with as
 * many descriptors as the connection's credit allows. */
typedef struct wcd_outframe {
    struct wcd_outframe *next;
    size_t len, off;
    int nfds;
    int fds[WCD_FDS_PER_FRAME];
    uint64_t lease_hi;        /* leases up to this id are in this frame or earlier */
    bool charged;             /* its fds are counted in the connection's fds_unread */
    uint8_t *data;
    struct wcd_get *get;
} wcd_outframe;

typedef struct wcd_ctx wcd_ctx;

/* A closed connection's socket, kept while its peer has descriptors of ours
 * unread: they still count against RLIMIT_NOFILE in the kernel. */
struct wcd_linger {
    int fd;
    unsigned unread;
};

typedef struct wcd_conn {
    wcd_ctx *ctx;
    uint64_t id;
    int fd;
    uv_poll_t poll;
    int poll_events;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    uint8_t *rbuf;
    size_t rlen, rcap;
    wcd_outframe *oq_head, *oq_tail;
    size_t oq_bytes;
    unsigned oq_fds;             /* descriptors of queued frames */
    unsigned fds_unread;         /* sent since the socket was last seen drained */
    uint64_t lease_sent;         /* highest lease id whose frame has gone */
    uint32_t pending_leases;     /* leases requests under way will take */
    uint64_t connected_ms, active_ms, progress_ms;
    bool credit_wait;            /* a frame waits for descriptor credit */
    bool hello_done, closing, in_process;
    wcd_lease *leases;
    size_t n_leases, cap_leases, live_leases;
    uint64_t next_lease;
    wcd_conn_block *blocks;
    size_t n_blocks, cap_blocks;
    struct wcd_get *gets;        /* requests under way */
    unsigned inflight;
    char name[64];               /* for logs: pid, uid and client name */
    struct wcd_conn *prev, *next;
} wcd_conn;

/* Adopts an accepted socket; checks the peer. */
void wcd_conn_accept(wcd_ctx *ctx, int fd);
void wcd_conn_close(wcd_conn *c, const char *why);
/* Queues (or sends at once) a reply and, with it, fds. The fds are not
 * duplicated: they must stay open until the frame has gone, as the
 * entries behind this connection's leases do. */
int wcd_conn_send(wcd_conn *c, const Wcodec__V1__Reply *r, const int *fds, int nfds);
void wcd_conn_send_error(wcd_conn *c, uint64_t id, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes a lease on e (its pin becomes the lease); *first: e's block is a
 * shared one in which c held no lease before (its descriptor goes now). */
uint64_t wcd_conn_lease_add(wcd_conn *c, wcd_entry *e, bool *first);
wcd_entry *wcd_conn_lease_take(wcd_conn *c, uint64_t id);
/* Called when a request finishes, to resume reading if it was paused. */
void wcd_conn_request_done(wcd_conn *c);
/* Queues a resolved get whose reply is cut into frames as the socket
 * drains (wcd_get_next_frame); the queue owns g from here. */
void wcd_conn_queue_get(wcd_conn *c, struct wcd_get *g);
/* Sends what the queue holds and the socket takes: 0, or -1 with errno
 * (the caller closes). */
int wcd_conn_flush(wcd_conn *c);
/* Reads on, or handles buffered frames, once a limit has lifted. */
void wcd_conn_resume(wcd_conn *c);

/* ---- inflight.c ---- */
/* The shares of descriptors in flight, from RLIMIT_NOFILE (raised to its
 * hard limit first); once, at start. */
void wcd_fds_setup(wcd_ctx *ctx);
/* Descriptors c may send now: its reserve, then what the pool has, up to
 * conn_fds. Notices first whether its peer has read everything. */
unsigned wcd_credit(wcd_conn *c);
void wcd_credit_refresh(wcd_conn *c);
void wcd_credit_charge(wcd_conn *c, unsigned k);
/* c has a frame that waits for credit: re-checked every millisecond. */
void wcd_credit_wait(wcd_conn *c);
/* Closing c: a cut frame's charge goes back before the queue is dropped;
 * then what its peer has not read keeps the socket (a linger) until read. */
void wcd_credit_unsent_back(wcd_conn *c);
void wcd_credit_closed(wcd_conn *c);
void wcd_linger_close_all(wcd_ctx *ctx);
/* Once a second: the handshake, idle and send timeouts. */
void wcd_conn_sweep(wcd_ctx *ctx);
bool wcd_conn_peer_allowed(const wcd_ctx *ctx, uid_t uid, gid_t gid, const gid_t *groups,
                           int n_groups);

/* ---- request.c ---- */
typedef struct wcd_get {
    wcd_conn *conn;         /* NULL once the connection has closed */
    wcd_pool *pool;
    uint64_t req_id;
    uint32_t n, pending;
    int status;
    char msg[sizeof(((wc_err *)0)->msg)];
    uint32_t sent;          /* slots already in reply frames */
    struct wcd_get *prev, *next;
    wcd_claim slots[];
} wcd_get;

void wcd_handle_frame(wcd_conn *c, const uint8_t *p, size_t n);
/* The connection is closing: drop its requests under way. */
void wcd_get_orphan_all(wcd_conn *c);
/* (reply.c) The next frame of a resolved get: up to max_fds tensors, their leases
 * taken. Returns 1 when more frames follow, 0 on the last, or an error
 * (the connection is then closed). */
int wcd_get_next_frame(wcd_get *g, unsigned max_fds, uint8_t **data, size_t *len, int *fds, int *nfds);
/* A queued get dropped with its connection: unpins what was not sent. */
void wcd_get_drop(wcd_get *g);

/* ---- reply.c ---- */
/* A TensorInfo from a tensor's info (whose strings and shape it borrows);
 * cached: the whole tensor is resident in some pool. */
void wcd_fill_info(Wcodec__V1__TensorInfo *ti, const wc_tensor_info *in, const wcd_model *m, uint32_t index);

/* ---- stats.c ---- */
void wcd_on_stats(wcd_conn *c, uint64_t id);

/* ---- server.c ---- */
struct wcd_ctx {
    uv_loop_t *loop;
    wcd_config cfg;
    const wcd_setting *cli;  /* flags given on the command line, kept over reloads */
    size_t n_cli;
    wcd_root *roots;
    size_t n_roots;
    int listen_fd;
    bool own_socket;         /* we bound it, so we unlink it */
    bool activated;          /* socket from systemd */
    uv_poll_t listen_poll;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, status_timer;
    uint64_t watchdog_usec;
    char last_status[160];
    wcd_cache cache;
    wcd_conn *conns;
    unsigned n_conns;
    uint64_t next_conn_id;
    uint64_t start_ms;
    uint64_t requests, errors;
    uint64_t total_leases;
    /* Descriptors in flight (sent, not yet received) count against the
     * daemon user's RLIMIT_NOFILE in the kernel (ETOOMANYREFS past it).
     * Each connection may always have fds_reserve; beyond that it borrows
     * from a shared pool of fds_pool, up to cfg.conn_fds. */
    unsigned fds_reserve, fds_pool, fds_borrowed, fds_per_frame;
    size_t out_bytes;         /* reply bytes queued, all connections */
    unsigned n_linger;        /* closed sockets whose descriptors are still unread */
    struct wcd_linger *linger;
    uv_timer_t credit_timer, sweep_timer, accept_timer;
    unsigned credit_period_ms;
    bool accept_paused, accept_warned;
    bool toomanyrefs_warned;  /* logged until a descriptor goes again */
    bool stopping;
    int exit_status;
    /* test hooks (fuzz harness) */
    void (*on_conn_freed)(wcd_ctx *ctx, wcd_conn *c);
};

/* Listens (or adopts systemd's socket), arms signals and timers. */
int wcd_server_start(wcd_ctx *ctx, wc_err *err);
void wcd_server_stop(wcd_ctx *ctx);
int wcd_server_reload(wcd_ctx *ctx);
/* Sets up everything but the listening socket (fuzz harness, tests). */
int wcd_ctx_init(wcd_ctx *ctx, uv_loop_t *loop, wc_err *err);
void wcd_ctx_fini(wcd_ctx *ctx);
void wcd_update_status(wcd_ctx *ctx);
/* A descriptor was freed: accepting resumes if EMFILE paused it. */
void wcd_server_fd_freed(wcd_ctx *ctx);

/* ---- reload.c ---- */
/* After a reload has put the new configuration and roots in place: closes
 * the connections of peers the new allow-list refuses and unloads the
 * models opened beneath roots it removed or swapped. */
void wcd_reload_revoke(wcd_ctx *ctx);

#endif
