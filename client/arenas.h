/* libwcodec-client: the device allocations (arenas) a connection has
 * imported, with the daemon's count of this connection's leases in each
 * (docs/PROTOCOL.md, "Device memory").
 *
 * Why the count is kept as the daemon keeps it, and where. The daemon sends
 * an allocation (its descriptor or legacy handle) in the frame whose tensors
 * take the connection's lease count in it from 0 to more, and decrements
 * that count as it processes each Release, whose reply it queues behind
 * every get frame already cut. So the stream of reply frames, read in order,
 * tells exactly what the daemon's count is after each frame: + the frame's
 * tensors in each allocation for a get frame, - the released tensors for a
 * Release reply. This table replays that stream in the order the frames
 * arrive (conn.c's dispatch calls it, with the connection's mutex held), not
 * in the order the threads that asked come to look at their replies:
 *  - a get frame cut before the daemon processed a Release arrives before
 *    that Release's reply, so it brings the count back above 0 and the
 *    allocation stays mapped, although the releasing thread may have let go
 *    of its last tensor in it long before;
 *  - an allocation is unmapped when a Release reply brings its count to 0:
 *    the daemon's count is 0 then too, so the next frame with a tensor in
 *    it lists the allocation again (and it is imported again);
 *  - two releases in flight at once, in either order, each decrement at
 *    their reply, which is where the daemon decremented;
 *  - a get whose reply the caller drops (an error, a timeout) leaves its
 *    leases with the daemon until the connection ends, and its counts here
 *    likewise: nothing is unmapped under a lease the daemon still counts.
 * A Release that fails on the way (the connection broke) never decrements:
 * its allocations stay mapped until wc_client_close(), which is what a
 * client whose daemon died needs (its mappings stay readable).
 *
 * Importing happens in the same place, when the frame that lists the
 * allocation is read, so that a later frame of another thread always finds
 * it mapped. The import and unmap calls go through a table of functions
 * (the CUDA ones in device_cuda.c; fakes in tests/daemon/test_arenas.c). */
#ifndef WCC_ARENAS_H
#define WCC_ARENAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wcodec/wcodec_client.h>

#include "wcodec.pb-c.h"

/* Bytes of a legacy handle: cudaIpcMemHandle_t, CUipcMemHandle. */
#define WCC_IPC_HANDLE_BYTES 64

typedef struct wcc_arena {
    uint64_t id;
    wc_location_kind kind;      /* WC_LOC_CUDA_VMM or WC_LOC_CUDA_IPC */
    unsigned char uuid[16];     /* the device, as the daemon names it */
    uint64_t size;              /* bytes mapped at base */
    uint64_t leases;            /* the daemon's count of this connection's leases in it */
    wc_err why;                 /* code 0: mapped; else why not (the tensors in it fail with it) */
    uint64_t base;              /* device address in this process */
    int device;                 /* the device's ordinal in this process */
    void *priv;                 /* the importer's */
} wcc_arena;

typedef struct wcc_import_ops {
    /* Imports and maps allocation a (id, kind, uuid and size set): VMM from
     * descriptor fd (which it does not close), legacy from handle (64
     * bytes). Sets a->base, a->device and, as it likes, a->priv. */
    int (*map)(void *ctx, wcc_arena *a, int fd, const unsigned char *handle, wc_err *err);
    /* Undoes map (only called after map succeeded). */
    void (*unmap)(void *ctx, wcc_arena *a);
    void *ctx;
} wcc_import_ops;

typedef struct wcc_arenas {
    const wcc_import_ops *ops;  /* NULL: this library cannot map device memory */
    wcc_arena **v;              /* the allocations with leases, in no order */
    size_t n, cap;
    uint64_t imports, unmaps;   /* done so far (for tests and stats) */
} wcc_arenas;

void wcc_arenas_init(wcc_arenas *t, const wcc_import_ops *ops);
/* Unmaps everything (the connection is closing). */
void wcc_arenas_fini(wcc_arenas *t);

/* The allocation a tensor of a get reply counts against, if any: true for
 * the CUDA kinds, whose leases the daemon counts per allocation. */
bool wcc_loc_counts(const Wcodec__V1__Location *l, uint64_t *arena_id);

/* A get frame was read (status 0): imports the allocations it lists that
 * are not in the table (only when may_import: a request that asked for
 * host memory must not load the driver; its tensors fail at locate), then
 * counts its tensors. Failures are recorded in the allocation, for
 * wcc_arenas_locate to report to the caller. */
void wcc_arenas_get_frame(wcc_arenas *t, const Wcodec__V1__GetTensorsReply *g, const int *fds, uint32_t nfds,
                          bool may_import);
/* The reply to a Release was read: one decrement per id (ids of released
 * tensors that counted, repeated per tensor); an allocation whose count
 * reaches 0 is unmapped and leaves the table. */
void wcc_arenas_released(wcc_arenas *t, const uint64_t *arena_ids, size_t n);

/* Where a CUDA-kind tensor of a get reply lies: checks its location against
 * its allocation (WC_EPROTO for anything out of bounds or inconsistent, the
 * import's error for an allocation that could not be mapped). */
typedef struct wcc_place {
    uint64_t data, scales;      /* device addresses; scales 0 when none */
    int device;
    unsigned char uuid[16];
} wcc_place;
int wcc_arenas_locate(const wcc_arenas *t, const Wcodec__V1__Tensor *tensor, wcc_place *out, wc_err *err);

/* The entry of an allocation (NULL: not in the table). */
const wcc_arena *wcc_arenas_find(const wcc_arenas *t, uint64_t id);

#endif
