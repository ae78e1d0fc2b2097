/* libwcodec-client: tensors decoded and kept resident by wcodecd, mapped
 * into the calling process without a copy.
 *
 * A request takes a lease on each tensor it returns; the bytes stay valid
 * until wc_client_release() (or wc_client_close(), or the process exits,
 * which ends every lease of the connection). All functions return 0 or a
 * negative code: the WC_E* codes of wcodec.h or the WC_E* below, with a
 * message in `err` (may be NULL) that names the daemon, model and tensor.
 *
 * Handles and lifetimes:
 *  - wc_client: one connection. Every call but wc_client_close() may be
 *    made from many threads at once; wc_client_close() only when no other
 *    thread uses it.
 *  - wc_client_tensor: owned by the library from wc_client_get() until
 *    wc_client_release() or wc_client_close() unmaps and frees it; read it
 *    from any thread meanwhile (it is never written after the get).
 *  - What the library allocates for the caller is freed with the function
 *    named beside it (wc_client_tensors_free, wc_client_list_free), never
 *    with free().
 *  - Structs the library fills (the *_info, model and stats structs) end in
 *    reserved words: later versions add fields there without changing the
 *    struct's size, and they may be nonzero. */
#ifndef WCODEC_CLIENT_H
#define WCODEC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <wcodec/wcodec.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WC_BUILDING_CLIENT)
#define WC_CLIENT_API __attribute__((visibility("default")))
#else
#define WC_CLIENT_API
#endif

/* The protocol version this library speaks (docs/PROTOCOL.md). */
#define WC_PROTOCOL_VERSION 1
/* Where wcodecd listens unless $WCODECD_SOCKET or the caller says otherwise. */
#define WC_CLIENT_DEFAULT_SOCKET "/run/wcodecd/wcodecd.sock"

/* Codes of the daemon and its protocol, beyond those of wcodec.h. */
enum wc_client_status {
    WC_EDENIED = -64,       /* peer not allowed, or path outside the roots */
    WC_EPROTO = -65,        /* malformed or unexpected frame */
    WC_EDISCONNECTED = -66, /* the daemon closed the connection or is not running */
    WC_EBUDGET = -67,       /* the tensors do not fit the daemon's memory budget */
    WC_ETIMEDOUT = -68,     /* no reply within the client's timeout */
    WC_ELIMIT = -69,        /* a daemon limit (models, leases, connections) is reached */
};

/* wc_strerror() extended with the codes above. */
WC_CLIENT_API const char *wc_client_strerror(int code);

typedef enum wc_location_kind {
    WC_LOC_MEMFD = 1,     /* data points into a read-only shared mapping */
    WC_LOC_CUDA_VMM = 2,  /* data points into device memory: a CUDA VMM arena imported */
    WC_LOC_CUDA_IPC = 3,  /* data points into device memory: a legacy CUDA IPC handle opened */
} wc_location_kind;

typedef struct wc_client wc_client;

/* Connects and performs the version handshake. `socket_path` NULL means
 * $WCODECD_SOCKET, else WC_CLIENT_DEFAULT_SOCKET. */
WC_CLIENT_API int wc_client_connect(wc_client **out, const char *socket_path, wc_err *err);
/* Closes the connection, which ends its leases, and unmaps and frees the
 * tensors still held. No other thread may be using c. */
WC_CLIENT_API void wc_client_close(wc_client *c);
/* Milliseconds a call waits for its reply; 0 waits forever. Default 30000. */
WC_CLIENT_API void wc_client_set_timeout(wc_client *c, int timeout_ms);

typedef struct wc_client_server_info {
    uint32_t protocol_version;
    char server_version[32];
    wc_location_kind backend;
    uint32_t max_frame;
    uint64_t reserved[8];
} wc_client_server_info;

WC_CLIENT_API int wc_client_server_info_get(wc_client *c, wc_client_server_info *out);

typedef struct wc_client_model {
    uint64_t id;
    uint32_t tensor_count;
    uint64_t file_bytes;
    uint64_t reserved[8];
} wc_client_model;

/* Opens (or finds already open) a .wcodec file beneath the daemon's roots. */
WC_CLIENT_API int wc_client_open(wc_client *c, const char *path, wc_client_model *out, wc_err *err);

typedef struct wc_client_tensor_info {
    char *name;
    wc_dtype dtype, out_dtype;
    wc_coding coding;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    uint64_t out_bytes, n_scales, stored_bytes;
    int cached;
    uint64_t reserved[8];
} wc_client_tensor_info;

/* Lists the tensors of a model whose names start with `prefix` (NULL: all).
 * Free the array with wc_client_list_free(). */
WC_CLIENT_API int wc_client_list(wc_client *c, uint64_t model_id, const char *prefix,
                                 wc_client_tensor_info **out, size_t *n_out, wc_err *err);
WC_CLIENT_API void wc_client_list_free(wc_client_tensor_info *infos, size_t n);

/* A leased tensor, mapped. The library allocates it (with private state
 * after these fields): a caller never allocates, copies or sizes one, and
 * later versions may add fields at the end. */
typedef struct wc_client_tensor {
    const char *name;
    uint64_t model_id, lease_id;
    wc_dtype dtype, out_dtype;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    const void *data;      /* out_dtype elements, row-major */
    uint64_t size;         /* bytes at data */
    const float *scales;   /* n_scales per-row scales, NULL if none */
    uint64_t n_scales;
    wc_location_kind location;
    /* CUDA kinds: data and scales are device pointers on this device, valid
     * in its primary context (the CUDA runtime's and PyTorch's); -1 and
     * zeros for memfd tensors. */
    int device;
    unsigned char device_uuid[16];
    /* A shard (wc_client_get_opts.tp_size >= 2 and a tensor the layout
     * splits): shard tp_rank of tp_size, its indices [shard_start, shard_start
     * + shape[shard_dim]) along shard_dim of full_shape (shape is the
     * shard's). A whole tensor: tp_size 1, shard_dim -1, full_shape = shape. */
    uint32_t tp_rank, tp_size;
    int shard_dim;
    uint64_t shard_start;
    uint64_t full_shape[WC_MAX_DIMS];
} wc_client_tensor;

typedef enum wc_client_select {
    WC_SELECT_NAMES = 0,   /* names[0..n_names) */
    WC_SELECT_PREFIX = 1,  /* names[0] is the prefix */
    WC_SELECT_ALL = 2,
} wc_client_select;

/* Gets tensors of a model, decoding those not yet resident. All or none:
 * on error nothing is leased. `*out` receives an array of `*n_out`
 * tensors; release them with wc_client_release() and free the array with
 * wc_client_tensors_free(). */
WC_CLIENT_API int wc_client_get(wc_client *c, uint64_t model_id, wc_client_select sel,
                                const char *const *names, size_t n_names,
                                wc_client_tensor ***out, size_t *n_out, wc_err *err);
/* Options of wc_client_get2(); wc_client_get_opts_default() fills them. */
typedef struct wc_client_get_opts {
    /* -1 (default): host memory (memfd), as wc_client_get(). >= 0: device
     * memory on the CUDA device of that ordinal in this process, when the
     * daemon has a GPU backend serving that device; otherwise the daemon
     * answers with memfd tensors (each tensor's `location` says which).
     * Loads libcuda.so.1 on first use: WC_ENODEV when it cannot. */
    int device;
    /* tp_size >= 2: instead of whole tensors, each tensor's tensor-parallel
     * shard tp_rank of tp_size along the dimension tp_layout gives it
     * ("llama", docs/SHARDING.md: torch.tensor_split's sizes), and whole
     * the tensors the layout replicates; each tensor's tp_* fields say which.
     * 0 or 1 (default): whole tensors. */
    uint32_t tp_rank, tp_size;
    const char *tp_layout;
    uint64_t reserved[6];
} wc_client_get_opts;

WC_CLIENT_API void wc_client_get_opts_default(wc_client_get_opts *o);
/* wc_client_get() with options (NULL: the defaults). */
WC_CLIENT_API int wc_client_get2(wc_client *c, uint64_t model_id, wc_client_select sel,
                                 const char *const *names, size_t n_names, const wc_client_get_opts *opts,
                                 wc_client_tensor ***out, size_t *n_out, wc_err *err);
/* Frees an array that wc_client_get() returned (NULL: nothing), not the
 * tensors it points to: they stay leased until wc_client_release(). */
WC_CLIENT_API void wc_client_tensors_free(wc_client_tensor **tensors);
/* One tensor by name. */
WC_CLIENT_API int wc_client_get_one(wc_client *c, uint64_t model_id, const char *name,
                                    wc_client_tensor **out, wc_err *err);

/* Unmaps the tensors, frees them and ends their leases (one round trip).
 * Device tensors share their daemon's allocations: an allocation stays
 * mapped until the reply shows that the connection holds no lease in it
 * (docs/PROTOCOL.md, "Device memory"); pointers into it must not be used
 * after the release all the same. */
WC_CLIENT_API int wc_client_release(wc_client *c, wc_client_tensor *const *tensors, size_t n,
                                    wc_err *err);

typedef struct wc_client_stats {
    uint64_t uptime_ms;
    uint32_t connections, models;
    uint64_t budget_bytes, cached_bytes;
    uint32_t cached_tensors;
    uint64_t leased_bytes;
    uint32_t leased_tensors;
    uint64_t leases, conn_leases;
    uint64_t decodes, hits, evictions, requests, errors;
    uint64_t rss_bytes;
    uint32_t open_fds, decodes_in_flight;
    uint64_t reserved[8];
} wc_client_stats;

WC_CLIENT_API int wc_client_stats_get(wc_client *c, wc_client_stats *out, wc_err *err);

/* One memory pool of the daemon: the host (memfds) or one GPU. */
typedef struct wc_client_pool {
    unsigned char uuid[16];     /* the GPU's; zeros for the host */
    char name[64];              /* "host", or the GPU's name and ordinal in the daemon */
    wc_location_kind kind;      /* WC_LOC_MEMFD, WC_LOC_CUDA_VMM or WC_LOC_CUDA_IPC */
    int failed;                 /* the device failed: the daemon serves from the others */
    char status[256];           /* why it failed or is not used; "" when it is */
    uint64_t budget_bytes;
    uint64_t used_bytes;        /* memory held: memfds, or arenas (whole granules) */
    uint64_t tensor_bytes;      /* of which tensors take */
    uint64_t leased_bytes;
    uint32_t cached_tensors, leased_tensors, arenas;
    uint64_t decodes, evictions;
    uint64_t total_bytes, free_bytes; /* the device's memory, and free at the time (0 for the host) */
    uint64_t reserved[8];
} wc_client_pool;

/* One device allocation of the daemon: tensors of one model on one GPU. */
typedef struct wc_client_arena {
    uint64_t id;
    unsigned char device_uuid[16];
    uint64_t model_id;
    uint64_t size, used_bytes;
    uint32_t tensors, leased_tensors;
    uint64_t reserved[8];
} wc_client_arena;

typedef struct wc_client_pools {
    char backend[16];           /* "cpu", or "gpu" (with the host for what no device serves) */
    size_t n_pools;
    wc_client_pool *pools;
    size_t n_arenas;
    wc_client_arena *arenas;
    uint64_t reserved[8];
} wc_client_pools;

/* The daemon's backend, pools and arenas (one Stats round trip). A daemon
 * that predates them answers with backend "" and none of either. Free the
 * result with wc_client_pools_free(). */
WC_CLIENT_API int wc_client_pools_get(wc_client *c, wc_client_pools **out, wc_err *err);
WC_CLIENT_API void wc_client_pools_free(wc_client_pools *p);

/* Evicts the unleased cached tensors of a model (0: of every model). */
WC_CLIENT_API int wc_client_evict(wc_client *c, uint64_t model_id, uint32_t *evicted_tensors,
                                  uint64_t *evicted_bytes, wc_err *err);

/* Unloads a model for every client: no further request is served from it
 * (they get WC_ENOTFOUND and must open the file again), its unleased
 * tensors are dropped, and the daemon closes the file when the last lease
 * on one of its tensors ends; *leased_tensors says how many are still
 * leased. A daemon older than this request answers WC_EUNSUPPORTED. */
WC_CLIENT_API int wc_client_unload(wc_client *c, uint64_t model_id, uint32_t *leased_tensors, wc_err *err);

#ifdef __cplusplus
}
#endif
#endif
