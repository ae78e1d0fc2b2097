/* Legacy CUDA IPC ([gpu] ipc = legacy, issue 19): memory that the daemon got
 * from cuMemAlloc, exported as a 64-byte CUipcMemHandle (the runtime's
 * cudaIpcMemHandle_t) and opened by a client. The VMM arenas of gpu_share.h
 * are the default; this serves drivers or setups where POSIX-fd handles
 * are not available.
 *
 * Like gpu_share.h, every call makes the device's primary context current on
 * the calling thread, so that the pointer is valid in the runtime's context. */
#ifndef WCG_GPU_IPC_H
#define WCG_GPU_IPC_H

#include <stddef.h>

#include "cudrv.h"

#define WCG_IPC_HANDLE_BYTES 64

typedef struct wcg_ipc_import {
    CUdevice dev;
    CUdeviceptr base;
    size_t size;   /* the whole allocation, as the driver reports it */
} wcg_ipc_import;

/* Opens `handle` (WCG_IPC_HANDLE_BYTES) of memory on the device named by
 * `uuid`, with peer access enabled lazily. WC_EPROTO when the allocation is
 * smaller than `size`, the bytes the sender says it holds. Opening a handle
 * this process has open already gives the same pointer (opens are counted
 * here, whatever the driver does; each needs its close). Thread-safe. */
int wcg_ipc_open(wcg_ipc_import *m, const unsigned char *handle, const unsigned char uuid[16], size_t size,
                 wc_err *err);
void wcg_ipc_close(wcg_ipc_import *m);

#endif
