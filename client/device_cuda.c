/* libwcodec-client with CUDA: importing the daemon's device allocations
 * (VMM descriptors through cuda/gpu_share.c, legacy handles through
 * cuda/gpu_ipc.c); see device.h.
 *
 * The cuda/ calls make the device's primary context current on the calling
 * thread. That thread is the caller's (whichever thread reads the reply),
 * whose current context is the CUDA runtime's notion of its current device:
 * it is put back as it was after each call, so that a wc_client_get2 for
 * device 1 does not move an application thread that works on device 0. */
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "gpu_ipc.h"
#include "gpu_share.h"
#include "wc_fail.h"

typedef struct saved_ctx {
    const wcg_cudrv *d;
    CUcontext ctx;
    bool ok;
} saved_ctx;

static saved_ctx save(void)
{
    saved_ctx s = {wcg_cudrv_get(), NULL, false};
    if (s.d) s.ok = s.d->CtxGetCurrent(&s.ctx) == CUDA_SUCCESS;
    return s;
}

static void restore(const saved_ctx *s)
{
    if (s->ok) s->d->CtxSetCurrent(s->ctx);
}

static int map(void *ctx, wcc_arena *a, int fd, const unsigned char *handle, wc_err *err)
{
    (void)ctx;
    saved_ctx s = save();
    if (!s.d) return wc_fail(err, WC_ENODEV, "%s", wcg_cudrv_reason());
    int rc;
    if (a->kind == WC_LOC_CUDA_VMM) {
        wcg_import *m = malloc(sizeof *m);
        if (!m) return wc_fail(err, WC_ENOMEM, "out of memory");
        if ((rc = wcg_import_map(m, fd, a->uuid, (size_t)a->size, err))) {
            free(m);
        } else {
            a->base = m->base;
            a->device = (int)m->dev;
            a->priv = m;
        }
    } else {
        wcg_ipc_import *m = malloc(sizeof *m);
        if (!m) return wc_fail(err, WC_ENOMEM, "out of memory");
        if ((rc = wcg_ipc_open(m, handle, a->uuid, (size_t)a->size, err))) {
            free(m);
        } else {
            a->base = m->base;
            a->device = (int)m->dev;
            a->priv = m;
        }
    }
    restore(&s);
    return rc;
}

static void unmap(void *ctx, wcc_arena *a)
{
    (void)ctx;
    saved_ctx s = save();
    /* The thread that reads a Release reply may never have entered the
     * device: its primary context is made current for the unmap, as for
     * the import. */
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    wcg_share_enter(a->device, &dev, &d, NULL);
    if (a->kind == WC_LOC_CUDA_VMM) wcg_import_unmap(a->priv);
    else wcg_ipc_close(a->priv);
    restore(&s);
    free(a->priv);
    a->priv = NULL;
}

static const wcc_import_ops ops = {map, unmap, NULL};

const wcc_import_ops *wcc_device_ops(void) { return &ops; }

int wcc_device_uuid(int ordinal, unsigned char uuid[16], wc_err *err)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d) return wc_fail(err, WC_ENODEV, "get: CUDA device %d: %s", ordinal, wcg_cudrv_reason());
    int n = 0;
    CUresult r = d->DeviceGetCount(&n);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetCount");
    if (ordinal >= n) return wc_fail(err, WC_ENODEV, "get: CUDA device %d: this process sees %d", ordinal, n);
    CUdevice dev;
    CUuuid u;
    if ((r = d->DeviceGet(&dev, ordinal)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGet");
    if ((r = d->DeviceGetUuid(&u, dev)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetUuid");
    memcpy(uuid, u.bytes, 16);
    return 0;
}
