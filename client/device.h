/* libwcodec-client: what it needs of CUDA, in one place (device_cuda.c with
 * CUDA; device_none.c in a build without it, where device memory is
 * refused with WC_ENODEV and device tensors in a reply with
 * WC_EUNSUPPORTED). Nothing here links libcuda: the driver is found with
 * dlopen on first use (cuda/cudrv.c), so a CPU-only client needs no driver. */
#ifndef WCC_DEVICE_H
#define WCC_DEVICE_H

#include "arenas.h"

/* The imports of device_cuda.c, or NULL in a build without CUDA. */
const wcc_import_ops *wcc_device_ops(void);
/* The UUID of the CUDA device of `ordinal` in this process; loads the
 * driver. WC_ENODEV when there is no driver, no such device, or no CUDA in
 * this build. */
int wcc_device_uuid(int ordinal, unsigned char uuid[16], wc_err *err);

#endif
