/* Device memory shared between processes: see gpu_share.h. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "gpu_share.h"
#include "wc_internal.h"

static CUmemAllocationProp alloc_prop(CUdevice dev)
{
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = (int)dev;
    p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    return p;
}

/* Each device's primary context, retained once per process and never
 * released: it is the runtime's too, and releasing it here could tear it
 * down under it. */
#define MAX_DEVICES 64
static CUcontext primary[MAX_DEVICES];
static pthread_mutex_t primary_mu = PTHREAD_MUTEX_INITIALIZER;

/* The driver table with dev's primary context current on this thread. */
static int enter(int ordinal, CUdevice *dev, const wcg_cudrv **out, wc_err *err)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d) return wc_fail(err, WC_ENODEV, "%s", wcg_cudrv_reason());
    if (ordinal < 0 || ordinal >= MAX_DEVICES)
        return wc_fail(err, WC_EINVAL, "CUDA device %d: at most %d devices", ordinal, MAX_DEVICES);
    CUresult r;
    if ((r = d->DeviceGet(dev, ordinal)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGet");
    pthread_mutex_lock(&primary_mu);
    if (!primary[ordinal] && (r = d->DevicePrimaryCtxRetain(&primary[ordinal], *dev)) != CUDA_SUCCESS)
        primary[ordinal] = NULL;
    CUcontext ctx = primary[ordinal];
    pthread_mutex_unlock(&primary_mu);
    if (!ctx) return wcg_cudrv_fail(err, r, "cuDevicePrimaryCtxRetain");
    if ((r = d->CtxSetCurrent(ctx)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuCtxSetCurrent");
    *out = d;
    return 0;
}

int wcg_share_enter(int ordinal, CUdevice *dev, const wcg_cudrv **out, wc_err *err)
{
    return enter(ordinal, dev, out, err);
}

static int granularity(const wcg_cudrv *d, CUdevice dev, size_t *out, wc_err *err)
{
    CUmemAllocationProp p = alloc_prop(dev);
    CUresult r = d->MemGetAllocationGranularity(out, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    return r == CUDA_SUCCESS ? 0 : wcg_cudrv_fail(err, r, "cuMemGetAllocationGranularity");
}

int wcg_share_granularity(int ordinal, size_t *out, wc_err *err)
{
    const wcg_cudrv *d = NULL;
    CUdevice dev;
    int rc = enter(ordinal, &dev, &d, err);
    return rc ? rc : granularity(d, dev, out, err);
}

/* Reserves an address range for `size` bytes of handle h, maps it, and
 * gives dev read and write access; undoes what it did on failure. */
static int map_rw(const wcg_cudrv *d, CUdevice dev, CUmemGenericAllocationHandle h, size_t size,
                  CUdeviceptr *base, wc_err *err)
{
    CUresult r = d->MemAddressReserve(base, size, 0, 0, 0);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuMemAddressReserve");
    const char *what = "cuMemMap";
    if ((r = d->MemMap(*base, size, 0, h, 0)) == CUDA_SUCCESS) {
        CUmemAccessDesc acc;
        memset(&acc, 0, sizeof acc);
        acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        acc.location.id = (int)dev;
        acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        if ((r = d->MemSetAccess(*base, size, &acc, 1)) == CUDA_SUCCESS) return 0;
        what = "cuMemSetAccess";
        d->MemUnmap(*base, size);
    }
    d->MemAddressFree(*base, size);
    *base = 0;
    return wcg_cudrv_fail(err, r, what);
}

/* What both kinds of arena start with: a cleared a, dev's primary context
 * current, the size rounded up to the granularity, the device's UUID. */
static int arena_begin(wcg_arena *a, int ordinal, size_t size, const wcg_cudrv **d, wc_err *err)
{
    memset(a, 0, sizeof *a);
    size_t gran;
    int rc = enter(ordinal, &a->dev, d, err);
    if (!rc) rc = granularity(*d, a->dev, &gran, err);
    if (rc) return rc;
    if (size == 0 || size > SIZE_MAX - gran) return wc_fail(err, WC_EINVAL, "arena of %zu bytes", size);
    a->size = (size + gran - 1) / gran * gran;
    CUuuid u;
    CUresult r = (*d)->DeviceGetUuid(&u, a->dev);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetUuid");
    memcpy(a->uuid, u.bytes, 16);
    return 0;
}

int wcg_arena_create(wcg_arena *a, int ordinal, size_t size, wc_err *err)
{
    const wcg_cudrv *d = NULL;
    int rc = arena_begin(a, ordinal, size, &d, err);
    if (rc) return rc;
    CUresult r;
    CUmemAllocationProp p = alloc_prop(a->dev);
    if ((r = d->MemCreate(&a->handle, a->size, &p, 0)) != CUDA_SUCCESS) {
        a->handle = 0;
        return wcg_cudrv_fail(err, r, "cuMemCreate");
    }
    if ((rc = map_rw(d, a->dev, a->handle, a->size, &a->base, err))) {
        d->MemRelease(a->handle);
        a->handle = 0;
    }
    return rc;
}

int wcg_arena_export(const wcg_arena *a, int *fd, wc_err *err)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d || !a->handle) return wc_fail(err, WC_EINVAL, "export of an arena that does not exist");
    int v = -1;
    CUresult r = d->MemExportToShareableHandle(&v, a->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuMemExportToShareableHandle");
    *fd = v;
    return 0;
}

int wcg_arena_create_legacy(wcg_arena *a, int ordinal, size_t size, unsigned char handle[64], wc_err *err)
{
    const wcg_cudrv *d = NULL;
    /* Whole granules, as the VMM arenas: the budget counts the same. */
    int rc = arena_begin(a, ordinal, size, &d, err);
    if (rc) return rc;
    a->legacy = true;
    CUresult r;
    if ((r = d->MemAlloc(&a->base, a->size)) != CUDA_SUCCESS) {
        a->base = 0;
        return wcg_cudrv_fail(err, r, "cuMemAlloc");
    }
    CUipcMemHandle h;
    if ((r = d->IpcGetMemHandle(&h, a->base)) != CUDA_SUCCESS) {
        d->MemFree(a->base);
        a->base = 0;
        return wcg_cudrv_fail(err, r, "cuIpcGetMemHandle");
    }
    memcpy(handle, h.reserved, 64);
    return 0;
}

int wcg_device_describe(int ordinal, unsigned char uuid[16], char *name, size_t name_size, size_t *total,
                        wc_err *err)
{
    const wcg_cudrv *d = NULL;
    CUdevice dev;
    int rc = enter(ordinal, &dev, &d, err);
    if (rc) return rc;
    CUuuid u;
    CUresult r = d->DeviceGetUuid(&u, dev);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetUuid");
    memcpy(uuid, u.bytes, 16);
    if ((r = d->DeviceGetName(name, (int)name_size, dev)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetName");
    if ((r = d->DeviceTotalMem(total, dev)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceTotalMem");
    return 0;
}

int wcg_device_meminfo(int ordinal, size_t *free_b, size_t *total, wc_err *err)
{
    const wcg_cudrv *d = NULL;
    CUdevice dev;
    int rc = enter(ordinal, &dev, &d, err);
    if (rc) return rc;
    CUresult r = d->MemGetInfo(free_b, total);
    return r == CUDA_SUCCESS ? 0 : wcg_cudrv_fail(err, r, "cuMemGetInfo");
}

int wcg_device_check(int ordinal, wc_err *err)
{
    const wcg_cudrv *d = NULL;
    CUdevice dev;
    int rc = enter(ordinal, &dev, &d, err);
    if (rc) return rc;
    CUresult r = d->CtxSynchronize();
    return r == CUDA_SUCCESS ? 0 : wcg_cudrv_fail(err, r, "the device's context");
}

void wcg_arena_destroy(wcg_arena *a)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (d && a->legacy) {
        CUdevice dev;
        wc_err e;
        /* cuMemFree needs the allocation's context current. */
        if (a->base && !enter((int)a->dev, &dev, &d, &e)) d->MemFree(a->base);
        memset(a, 0, sizeof *a);
        return;
    }
    if (d && a->base) {
        d->MemUnmap(a->base, a->size);
        d->MemAddressFree(a->base, a->size);
    }
    if (d && a->handle) d->MemRelease(a->handle);
    memset(a, 0, sizeof *a);
}

int wcg_import_map(wcg_import *m, int fd, const unsigned char uuid[16], size_t size, wc_err *err)
{
    memset(m, 0, sizeof *m);
    CUdevice dev;
    int rc = wcg_cudrv_device_by_uuid(uuid, &dev, err);
    const wcg_cudrv *d = NULL;
    if (!rc) rc = enter((int)dev, &m->dev, &d, err);
    if (rc) return rc;
    /* the driver takes the descriptor by value, cast to a pointer */
    CUresult r = d->MemImportFromShareableHandle(&m->handle, (void *)(intptr_t)fd,
                                                 CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuMemImportFromShareableHandle");
    if ((rc = map_rw(d, m->dev, m->handle, size, &m->base, err))) {
        d->MemRelease(m->handle);
        memset(m, 0, sizeof *m);
        return rc;
    }
    m->size = size;
    return 0;
}

void wcg_import_unmap(wcg_import *m)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (d && m->base) {
        d->MemUnmap(m->base, m->size);
        d->MemAddressFree(m->base, m->size);
    }
    if (d && m->handle) d->MemRelease(m->handle);
    memset(m, 0, sizeof *m);
}
