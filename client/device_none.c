/* libwcodec-client built without CUDA: see device.h. */
#include "device.h"
#include "wc_fail.h"

const wcc_import_ops *wcc_device_ops(void) { return NULL; }

int wcc_device_uuid(int ordinal, unsigned char uuid[16], wc_err *err)
{
    (void)uuid;
    return wc_fail(err, WC_ENODEV, "get: CUDA device %d: this libwcodec-client was built without CUDA", ordinal);
}
