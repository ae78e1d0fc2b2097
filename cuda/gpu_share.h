/* Device memory shared between processes: arenas made with the CUDA virtual
 * memory API, exported as POSIX file descriptors and imported by another
 * process (the daemon exports, clients import; issue 19).
 *
 * An arena is one physical allocation (cuMemCreate with a POSIX-fd
 * shareable handle), mapped at an address of its own and readable and
 * writable from its device. Its size is a multiple of the device's
 * allocation granularity (2 MiB on the H200); tensors are placed inside it by
 * a sub-allocator (daemon/spans.c), so that a small tensor does not cost a
 * granule and a whole model costs one export and one import per arena.
 *
 * Lifetimes: the physical memory lives while any process holds a handle or
 * a mapping of it: the exporter's wcg_arena, each importer's wcg_import, and
 * any file descriptor not yet imported. Destroying the exporter's arena
 * while a client still maps it leaves the client's mapping valid.
 *
 * Every call runs with the device's primary context made current on the
 * calling thread: the one the CUDA runtime (libwcodec's decoder, PyTorch)
 * uses, so that pointers are valid in both. */
#ifndef WCG_GPU_SHARE_H
#define WCG_GPU_SHARE_H

#include <stdbool.h>
#include <stddef.h>

#include "cudrv.h"

typedef struct wcg_arena {
    CUdevice dev;
    CUmemGenericAllocationHandle handle;
    CUdeviceptr base;
    size_t size;
    unsigned char uuid[16]; /* of dev: how another process names it */
    bool legacy;            /* cuMemAlloc'd, shared by a CUDA IPC handle */
} wcg_arena;

/* Makes device `ordinal`'s primary context current on this thread (it is
 * retained once per process) and returns the driver table. */
int wcg_share_enter(int ordinal, CUdevice *dev, const wcg_cudrv **out, wc_err *err);

/* Granularity of device `ordinal`'s shareable allocations, in bytes. */
int wcg_share_granularity(int ordinal, size_t *out, wc_err *err);

/* An arena of at least `size` bytes (rounded up to the granularity) on
 * device `ordinal`. */
int wcg_arena_create(wcg_arena *a, int ordinal, size_t size, wc_err *err);
/* A new descriptor for the arena (O_CLOEXEC is not set by the driver: the
 * caller owns it, passes it with SCM_RIGHTS and closes it). */
int wcg_arena_export(const wcg_arena *a, int *fd, wc_err *err);
/* Unmaps and releases this process's hold on the memory (legacy: frees it;
 * a process that opened its handle keeps the memory until it closes it). */
void wcg_arena_destroy(wcg_arena *a);

/* Legacy hand-off ([gpu] ipc = legacy): an arena of `size` bytes from
 * cuMemAlloc (a cudaMalloc, to the runtime) and its IPC handle. */
int wcg_arena_create_legacy(wcg_arena *a, int ordinal, size_t size, unsigned char handle[64], wc_err *err);

/* What the daemon says about a device: its UUID, name and memory. */
int wcg_device_describe(int ordinal, unsigned char uuid[16], char *name, size_t name_size, size_t *total,
                        wc_err *err);
/* Free and total memory of the device now. */
int wcg_device_meminfo(int ordinal, size_t *free_b, size_t *total, wc_err *err);
/* The sticky error of the device's primary context, if any: a device whose
 * context has one serves nothing more in this process. */
int wcg_device_check(int ordinal, wc_err *err);

typedef struct wcg_import {
    CUdevice dev;
    CUmemGenericAllocationHandle handle;
    CUdeviceptr base;
    size_t size;
} wcg_import;

/* Imports an arena's descriptor (which the call does not close) of `size`
 * bytes, made on the device named by `uuid`, and maps it readable and
 * writable at m->base. */
int wcg_import_map(wcg_import *m, int fd, const unsigned char uuid[16], size_t size, wc_err *err);
void wcg_import_unmap(wcg_import *m);

#endif
