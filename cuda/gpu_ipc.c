/* Legacy CUDA IPC: see gpu_ipc.h. */
#include <string.h>

#include <wcodec/wcodec_client.h>

#include "gpu_ipc.h"
#include "gpu_share.h"
#include "wc_internal.h"

int wcg_ipc_open(wcg_ipc_import *m, const unsigned char *handle, const unsigned char uuid[16], size_t size,
                 wc_err *err)
{
    memset(m, 0, sizeof *m);
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    int rc = wcg_cudrv_device_by_uuid(uuid, &dev, err);
    if (!rc) rc = wcg_share_enter((int)dev, &m->dev, &d, err);
    if (rc) return rc;
    CUipcMemHandle h;
    memcpy(h.reserved, handle, sizeof h.reserved);
    CUdeviceptr p = 0;
    CUresult r = d->IpcOpenMemHandle(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuIpcOpenMemHandle");
    /* the handle names a whole cuMemAlloc allocation: its true size bounds
     * what the sender may place in it */
    CUdeviceptr start = 0;
    size_t real = 0;
    if ((r = d->MemGetAddressRange(&start, &real, p)) != CUDA_SUCCESS) {
        d->IpcCloseMemHandle(p);
        return wcg_cudrv_fail(err, r, "cuMemGetAddressRange");
    }
    if (start != p || real < size) {
        d->IpcCloseMemHandle(p);
        return wc_fail(err, WC_EPROTO, "legacy CUDA IPC handle: the allocation holds %zu bytes, %zu announced", real,
                       size);
    }
    m->base = p;
    m->size = size;
    return 0;
}

void wcg_ipc_close(wcg_ipc_import *m)
{
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    /* the close goes to the context that opened it: the primary one */
    if (m->base && !wcg_share_enter((int)m->dev, &dev, &d, NULL)) d->IpcCloseMemHandle(m->base);
    memset(m, 0, sizeof *m);
}
