/* A wcodecd built without CUDA: no GPU pool can be made, and [daemon]
 * backend = auto serves from the CPU, saying why. */
#include "wcd.h"

int wcd_gpu_count(int *n, wc_err *err)
{
    *n = 0;
    return wc_fail(err, WC_ENODEV, "this wcodecd was built without CUDA");
}

int wcd_gpu_uuid(int ordinal, unsigned char uuid[16], wc_err *err)
{
    (void)uuid;
    return wc_fail(err, WC_ENODEV, "GPU %d: this wcodecd was built without CUDA", ordinal);
}

int wcd_gpu_pool_open(wcd_cache *c, int ordinal, const wcd_config *cfg, wcd_pool **out, wc_err *err)
{
    (void)c, (void)cfg, (void)out;
    return wc_fail(err, WC_ENODEV, "GPU %d: this wcodecd was built without CUDA", ordinal);
}

void wcd_gpu_pool_meminfo(wcd_pool *p, uint64_t *total, uint64_t *free_b)
{
    (void)p;
    *total = *free_b = 0;
}
