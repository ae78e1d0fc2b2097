/* wcodec_gpu.h in a build without CUDA (-Dcuda=disabled, or no nvcc): a
 * decoder whose backend is always the CPU, which does what the CUDA build
 * does on a machine without a device. wc_gpu_create gives a CPU decoder
 * (WC_ENODEV with require_gpu), the decode calls run the CPU decoder into
 * host memory (gpu_api.c), and the resident path, which needs a device,
 * returns WC_ENODEV. libwcodec exports the same symbols as with CUDA. */
#include <stdio.h>
#include <stdlib.h>

#include "dequant.h"
#include "gpu_api.h"
#include "wc_internal.h"

struct wc_gpu {
    char reason[128];
};

int wc_gpu_create(wc_gpu **out, const wc_gpu_opts *opts, wc_err *err)
{
    *out = NULL;
    wc_gpu *g = calloc(1, sizeof *g);
    if (!g) return wc_fail(err, WC_ENOMEM, "out of memory");
    wc_gpu_opts o;
    if (opts) o = *opts;
    else wc_gpu_opts_default(&o);
    if (o.force_cpu) {
        snprintf(g->reason, sizeof g->reason, "the CPU decoder was asked for (force_cpu)");
    } else {
        snprintf(g->reason, sizeof g->reason, "this libwcodec was built without CUDA");
        if (o.require_gpu) {
            int r = wc_fail(err, WC_ENODEV, "GPU decoder: %s", g->reason);
            free(g);
            return r;
        }
    }
    *out = g;
    return 0;
}

/* No io threads to share: every decoder here is the CPU's. */
int wc_gpu_create_sharing(wc_gpu **out, const wc_gpu_opts *opts, wc_gpu *share, wc_err *err)
{
    (void)share;
    return wc_gpu_create(out, opts, err);
}

void wc_gpu_destroy(wc_gpu *g) { free(g); }

wc_backend wc_gpu_backend(const wc_gpu *g)
{
    (void)g;
    return WC_BACKEND_CPU;
}

const char *wc_gpu_fallback_reason(const wc_gpu *g) { return g->reason; }

int wc_gpu_device(const wc_gpu *g)
{
    (void)g;
    return -1;
}

int wcg_decode(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, wc_err *err)
{
    (void)g;
    return wcg_decode_cpu(f, dst, which, n, err);
}

int wcg_decode_shards(wc_gpu *g, const wc_file *f, const wc_gpu_shard_dst *dst, const size_t *which, size_t n,
                      wc_err *err)
{
    (void)g;
    return wcg_decode_shards_cpu(f, dst, which, n, err);
}

int wc_gpu_resident_create(wc_gpu *g, const wc_file *f, const wc_gpu_dst *dst, wc_gpu_resident **out, wc_err *err)
{
    (void)f, (void)dst;
    *out = NULL;
    return wc_fail(err, WC_ENODEV, "GPU decoder: resident decode needs a CUDA device (%s)", g->reason);
}

/* No wc_gpu_resident is ever created here: r cannot be one. */
int wc_gpu_resident_run(wc_gpu_resident *r, bool sync, wc_err *err)
{
    (void)r, (void)sync;
    return wc_fail(err, WC_EINVAL, "GPU decoder: no resident decode in a build without CUDA");
}

void wc_gpu_resident_destroy(wc_gpu_resident *r) { (void)r; }

int wcg_dequant(wc_gpu *g, const int8_t *q, const float *scales, uint64_t rows, uint64_t cols, wc_dtype dtype,
                void *out, wc_err *err)
{
    (void)g, (void)err;
    wc_dequant_rows(q, scales, rows, cols, dtype, out);
    return 0;
}
