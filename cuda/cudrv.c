/* The CUDA driver API through dlopen: see cudrv.h. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cudrv.h"
#include "wc_internal.h"

/* The entry points are asked for as CUDA 12.0 defined them: every call of
 * the table has had the same signature since, so a 12.x driver serves. */
#define WCG_CUDRV_API_VERSION 12000

typedef CUresult (*get_proc_fn)(const char *symbol, void **pfn, int version, cuuint64_t flags,
                                CUdriverProcAddressQueryResult *status);

static wcg_cudrv table;
static const wcg_cudrv *loaded;
static char reason[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static const struct {
    const char *name;
    size_t offset;
} SYMBOLS[] = {
#define SYM(f) {"cu" #f, offsetof(wcg_cudrv, f)}
    SYM(Init), SYM(GetErrorString), SYM(GetErrorName), SYM(DeviceGetCount), SYM(DeviceGet),
    SYM(DeviceGetUuid), SYM(DeviceGetAttribute), SYM(DevicePrimaryCtxRetain),
    SYM(DevicePrimaryCtxRelease), SYM(CtxSetCurrent), SYM(MemGetAllocationGranularity), SYM(MemCreate),
    SYM(MemRelease), SYM(MemExportToShareableHandle), SYM(MemImportFromShareableHandle),
    SYM(MemAddressReserve), SYM(MemAddressFree), SYM(MemMap), SYM(MemUnmap), SYM(MemSetAccess),
    SYM(MemcpyDtoH), SYM(MemcpyHtoD), SYM(MemsetD8), SYM(CtxSynchronize),
    SYM(DeviceGetName), SYM(DeviceTotalMem), SYM(MemGetInfo), SYM(MemAlloc), SYM(MemFree),
    SYM(IpcGetMemHandle), SYM(IpcOpenMemHandle), SYM(IpcCloseMemHandle),
    SYM(CtxGetCurrent), SYM(MemGetAddressRange),
#undef SYM
};

static void load(void)
{
    /* never closed: the table is the process's for its whole life */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(reason, sizeof reason, "no CUDA driver: %s", dlerror());
        return;
    }
    get_proc_fn get_proc = (get_proc_fn)dlsym(lib, "cuGetProcAddress_v2");
    if (!get_proc) {
        snprintf(reason, sizeof reason, "CUDA driver too old: no cuGetProcAddress_v2 (a 12.0 driver or newer is needed)");
        return;
    }
    for (size_t i = 0; i < sizeof SYMBOLS / sizeof *SYMBOLS; i++) {
        void *fn = NULL;
        CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SUCCESS;
        CUresult r = get_proc(SYMBOLS[i].name, &fn, WCG_CUDRV_API_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &st);
        if (r != CUDA_SUCCESS || !fn || st != CU_GET_PROC_ADDRESS_SUCCESS) {
            snprintf(reason, sizeof reason, "CUDA driver has no %s (error %d, status %d)", SYMBOLS[i].name,
                     (int)r, (int)st);
            return;
        }
        memcpy((char *)&table + SYMBOLS[i].offset, &fn, sizeof fn);
    }
    CUresult r = table.Init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        table.GetErrorName(r, &name);
        snprintf(reason, sizeof reason, "cuInit failed: %s", name);
        return;
    }
    loaded = &table;
}

const wcg_cudrv *wcg_cudrv_get(void)
{
    pthread_once(&once, load);
    return loaded;
}

const char *wcg_cudrv_reason(void)
{
    pthread_once(&once, load);
    return reason;
}

int wcg_cudrv_fail(wc_err *err, CUresult r, const char *what)
{
    const char *name = "?", *str = "?";
    if (loaded) {
        loaded->GetErrorName(r, &name);
        loaded->GetErrorString(r, &str);
    }
    return wc_fail(err, r == CUDA_ERROR_OUT_OF_MEMORY ? WC_ENOMEM : WC_ECUDA, "CUDA driver: %s: %s (%s)", what,
                   name, str);
}

int wcg_cudrv_device_by_uuid(const unsigned char uuid[16], CUdevice *out, wc_err *err)
{
    const wcg_cudrv *d = wcg_cudrv_get();
    if (!d) return wc_fail(err, WC_ENODEV, "%s", reason);
    int n = 0;
    CUresult r = d->DeviceGetCount(&n);
    if (r != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetCount");
    for (int i = 0; i < n; i++) {
        CUdevice dev;
        CUuuid u;
        if ((r = d->DeviceGet(&dev, i)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGet");
        if ((r = d->DeviceGetUuid(&u, dev)) != CUDA_SUCCESS) return wcg_cudrv_fail(err, r, "cuDeviceGetUuid");
        if (!memcmp(u.bytes, uuid, 16)) {
            *out = dev;
            return 0;
        }
    }
    return wc_fail(err, WC_ENOTFOUND, "no CUDA device of this process has the UUID asked for (%d visible)", n);
}
