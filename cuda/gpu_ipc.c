/* Legacy CUDA IPC: see gpu_ipc.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <wcodec/wcodec_client.h>

#include "gpu_ipc.h"
#include "gpu_share.h"
#include "wc_internal.h"

/* The handles this process has open. The driver lets a process open a
 * handle once per context (older drivers refuse a second open with
 * CUDA_ERROR_ALREADY_MAPPED, newer ones count them), and two connections
 * of one process may be sent the same allocation: every open of a handle
 * open already shares it, and its last close closes it. */
typedef struct open_handle {
    unsigned char h[WCG_IPC_HANDLE_BYTES];
    CUdevice dev;
    CUdeviceptr base;
    size_t real;            /* the allocation's size, as the driver reports it */
    unsigned refs;
    struct open_handle *next;
} open_handle;

static open_handle *opens;
static pthread_mutex_t opens_mu = PTHREAD_MUTEX_INITIALIZER;

/* Opens h on dev (primary context current): the pointer and the
 * allocation's true size, which bounds what the sender may place in it. */
static int open_new(const wcg_cudrv *d, const unsigned char *handle, CUdeviceptr *base, size_t *real, wc_err *err)
{
    CUipcMemHandle h;
    memcpy(h.reserved, handle, sizeof h.reserved);
    CUdeviceptr p = 0;
    CUresult r = d->IpcOpenMemHandle(&p, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuIpcOpenMemHandle");
    CUdeviceptr start = 0;
    if ((r = d->MemGetAddressRange(&start, real, p)) != CUDA_SUCCESS || start != p) {
        d->IpcCloseMemHandle(p);
        return r != CUDA_SUCCESS ? wcg_cudrv_fail(err, r, "cuMemGetAddressRange")
                                 : wc_fail(err, WC_EPROTO, "legacy CUDA IPC handle: the pointer is not its allocation's start");
    }
    *base = p;
    return 0;
}

int wcg_ipc_open(wcg_ipc_import *m, const unsigned char *handle, const unsigned char uuid[16], size_t size,
                 wc_err *err)
{
    memset(m, 0, sizeof *m);
    CUdevice dev;
    const wcg_cudrv *d = NULL;
    int rc = wcg_cudrv_device_by_uuid(uuid, &dev, err);
    if (!rc) rc = wcg_share_enter((int)dev, &m->dev, &d, err);
    if (rc) return rc;
    pthread_mutex_lock(&opens_mu);
    open_handle *o = opens;
    while (o && (o->dev != m->dev || memcmp(o->h, handle, WCG_IPC_HANDLE_BYTES))) o = o->next;
    if (!o) {
        if (!(o = calloc(1, sizeof *o))) {
            rc = wc_fail(err, WC_ENOMEM, "out of memory");
        } else if ((rc = open_new(d, handle, &o->base, &o->real, err))) {
            free(o);
            o = NULL;
        } else {
            memcpy(o->h, handle, WCG_IPC_HANDLE_BYTES);
            o->dev = m->dev;
            o->next = opens;
            opens = o;
        }
    }
    if (o && o->real < size) {
        rc = wc_fail(err, WC_EPROTO, "legacy CUDA IPC handle: the allocation holds %zu bytes, %zu announced", o->real,
                     size);
        o = NULL;   /* an entry made here has refs 0: closed below */
    }
    if (o) {
        o->refs++;
        m->base = o->base;
        m->size = size;
    }
    /* drop what no one holds (an open whose size was refused) */
    for (open_handle **p = &opens; *p;) {
        if ((*p)->refs) {
            p = &(*p)->next;
            continue;
        }
        open_handle *dead = *p;
        *p = dead->next;
        d->IpcCloseMemHandle(dead->base);
        free(dead);
    }
    pthread_mutex_unlock(&opens_mu);
    return rc;
}

void wcg_ipc_close(wcg_ipc_import *m)
{
    if (!m->base) return;
    pthread_mutex_lock(&opens_mu);
    for (open_handle **p = &opens; *p; p = &(*p)->next) {
        open_handle *o = *p;
        if (o->base != m->base || o->dev != m->dev) continue;
        CUdevice dev;
        const wcg_cudrv *d = NULL;
        /* the close goes to the context that opened it: the primary one */
        if (!--o->refs) {
            *p = o->next;
            if (!wcg_share_enter((int)o->dev, &dev, &d, NULL)) d->IpcCloseMemHandle(o->base);
            free(o);
        }
        break;
    }
    pthread_mutex_unlock(&opens_mu);
    memset(m, 0, sizeof *m);
}
