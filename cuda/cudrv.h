/* The CUDA driver API, found at run time with dlopen("libcuda.so.1").
 *
 * The daemon's device arenas and the client's imports of them use the
 * driver's virtual memory calls (cuMemCreate, cuMemExportToShareableHandle,
 * cuMemImportFromShareableHandle, cuMemMap, ...). Linking libcuda would make
 * every client and the daemon need the NVIDIA driver installed even on a
 * CPU-only host, so the symbols are looked up once, through
 * cuGetProcAddress, into one table. cuda.h is used for its types only.
 *
 * wcg_cudrv_get() loads the table on first use (thread-safe, once per
 * process) and returns NULL when there is no usable driver; the reason is
 * then in wcg_cudrv_reason(). The table lives until the process ends. */
#ifndef WCG_CUDRV_H
#define WCG_CUDRV_H

#include <cuda.h>

#include <wcodec/wcodec.h>

typedef struct wcg_cudrv {
    CUresult (*Init)(unsigned flags);
    CUresult (*GetErrorString)(CUresult r, const char **s);
    CUresult (*GetErrorName)(CUresult r, const char **s);
    CUresult (*DeviceGetCount)(int *n);
    CUresult (*DeviceGet)(CUdevice *d, int ordinal);
    CUresult (*DeviceGetUuid)(CUuuid *uuid, CUdevice d);
    CUresult (*DeviceGetAttribute)(int *v, CUdevice_attribute a, CUdevice d);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice d);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice d);
    CUresult (*CtxSetCurrent)(CUcontext ctx);
    CUresult (*MemGetAllocationGranularity)(size_t *g, const CUmemAllocationProp *p,
                                            CUmemAllocationGranularity_flags o);
    CUresult (*MemCreate)(CUmemGenericAllocationHandle *h, size_t size, const CUmemAllocationProp *p,
                          unsigned long long flags);
    CUresult (*MemRelease)(CUmemGenericAllocationHandle h);
    CUresult (*MemExportToShareableHandle)(void *shareable, CUmemGenericAllocationHandle h,
                                           CUmemAllocationHandleType type, unsigned long long flags);
    CUresult (*MemImportFromShareableHandle)(CUmemGenericAllocationHandle *h, void *shareable,
                                             CUmemAllocationHandleType type);
    CUresult (*MemAddressReserve)(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
                                  unsigned long long flags);
    CUresult (*MemAddressFree)(CUdeviceptr p, size_t size);
    CUresult (*MemMap)(CUdeviceptr p, size_t size, size_t offset, CUmemGenericAllocationHandle h,
                       unsigned long long flags);
    CUresult (*MemUnmap)(CUdeviceptr p, size_t size);
    CUresult (*MemSetAccess)(CUdeviceptr p, size_t size, const CUmemAccessDesc *desc, size_t count);
    CUresult (*MemcpyDtoH)(void *dst, CUdeviceptr src, size_t n);
    CUresult (*MemcpyHtoD)(CUdeviceptr dst, const void *src, size_t n);
    CUresult (*MemsetD8)(CUdeviceptr dst, unsigned char v, size_t n);
    CUresult (*CtxSynchronize)(void);
    CUresult (*DeviceGetName)(char *name, int len, CUdevice d);
    CUresult (*DeviceTotalMem)(size_t *bytes, CUdevice d);
    CUresult (*MemGetInfo)(size_t *free_b, size_t *total);
    /* legacy IPC: cudaMalloc'd memory and its cudaIpcMemHandle_t */
    CUresult (*MemAlloc)(CUdeviceptr *p, size_t size);
    CUresult (*MemFree)(CUdeviceptr p);
    CUresult (*IpcGetMemHandle)(CUipcMemHandle *h, CUdeviceptr p);
    CUresult (*IpcOpenMemHandle)(CUdeviceptr *p, CUipcMemHandle h, unsigned flags);
    CUresult (*IpcCloseMemHandle)(CUdeviceptr p);
    /* the client: the caller's context, put back after an import; the
     * true size of a legacy allocation it opened */
    CUresult (*CtxGetCurrent)(CUcontext *ctx);
    CUresult (*MemGetAddressRange)(CUdeviceptr *base, size_t *size, CUdeviceptr p);
} wcg_cudrv;

/* The table, or NULL when libcuda.so.1 or one of its calls is missing, or
 * cuInit fails (no device, driver/library mismatch). */
const wcg_cudrv *wcg_cudrv_get(void);
const char *wcg_cudrv_reason(void);

/* WC_ECUDA (WC_ENOMEM for out of memory) with "CUDA driver: what: name
 * (string)" in err. */
int wcg_cudrv_fail(wc_err *err, CUresult r, const char *what);

/* Ordinal of the device whose UUID is `uuid` (16 bytes), or WC_ENOTFOUND:
 * ordinals differ between processes (CUDA_VISIBLE_DEVICES), UUIDs do not. */
int wcg_cudrv_device_by_uuid(const unsigned char uuid[16], CUdevice *out, wc_err *err);

#endif
