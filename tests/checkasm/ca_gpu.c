/* The GPU decode kernel behind the signature of the CPU rANS routines, so
 * that checkasm runs it beside the C reference on the same random, real
 * and damaged streams. Each call lays out what the GPU decoder's host side
 * would for a tensor of one tile (kernels.cuh): the job, the tables (packed
 * where the frequencies and WC_GPU_PACKED_FITS allow it, else expanded),
 * the row map, the tile and its stream, and launches the kernel on them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "ca_gpu.h"
#include "gpu_int.h"

static struct {
    uint8_t *d_desc, *d_data, *d_out, *h_desc;
    size_t desc_cap, data_cap, out_cap;
    uint32_t max_dyn_smem;
} G;

static int grow(uint8_t **p, size_t *cap, size_t want)
{
    if (want <= *cap) return 0;
    cudaFree(*p);
    *p = NULL;
    *cap = 0;
    if (cudaMalloc((void **)p, want) != cudaSuccess) return -1;
    *cap = want;
    return 0;
}

int ca_gpu_init(char *why, size_t why_len)
{
    int n = 0, optin = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(why, why_len, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
        cudaGetLastError();
        return -1;
    }
    if ((e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0)) != cudaSuccess ||
        (e = (cudaError_t)wc_gpu_decode_setup(optin)) != cudaSuccess) {
        snprintf(why, why_len, "%s", cudaGetErrorString(e));
        return -1;
    }
    G.max_dyn_smem = (uint32_t)optin - WC_GPU_STATIC_SMEM;
    return 0;
}

void ca_gpu_done(void)
{
    cudaFree(G.d_desc), cudaFree(G.d_data), cudaFree(G.d_out);
    free(G.h_desc);
    memset(&G, 0, sizeof G);
}

int ca_gpu_rans_decode(const wc_rans_dec_table *tables, const uint8_t *row_table, uint32_t w,
                       const uint8_t *stream, size_t len, uint8_t *out, size_t n)
{
    const uint32_t h = (uint32_t)(n / w), bits = tables[0].t.prob_bits;
    uint32_t n_tables = 1;
    for (uint32_t y = 0; row_table && y < h; y++)
        if (row_table[y] >= n_tables) n_tables = row_table[y] + 1u;
    int packed = WC_GPU_PACKED_FITS(n_tables, bits);
    for (uint32_t t = 0; t < n_tables; t++) packed &= tables[t].packed != 0;
    const uint32_t one = WC_GPU_ONE_TABLE_BYTES(packed, bits);
    const uint64_t tab_bytes = (uint64_t)n_tables * one;

    /* descriptor area: job | tables | row map | error word | tiles | modes */
    const uint64_t o_tab = a16(sizeof(wc_gpu_job)), o_map = a16(o_tab + tab_bytes), o_err = a16(o_map + h),
                   o_tiles = a16(o_err + 8), o_modes = o_tiles + WC_GPU_WARPS * sizeof(wc_gpu_tile),
                   end = o_modes + WC_GPU_WARPS;
    if (end > G.desc_cap) {
        free(G.h_desc);
        if (!(G.h_desc = malloc(end))) abort();
    }
    /* the stream at each 4-byte alignment within 16 bytes, as in files */
    static unsigned calls;
    const uint32_t src = 4 * (calls++ % 4);
    if (grow(&G.d_desc, &G.desc_cap, end) || grow(&G.d_data, &G.data_cap, len + 12) ||
        grow(&G.d_out, &G.out_cap, n + 1))
        abort();
    uint8_t *hd = G.h_desc;
    memset(hd, 0, end);
    wc_gpu_job job = {.out = G.d_out, .scales_src = WC_GPU_NO_SCALES, .tables_off = o_tab,
                      .rowmap_off = o_map, .rows = h, .cols = w, .tile_rows = h, .tile_cols = w,
                      .tiles_across = 1, .prob_bits = bits, .n_tables = n_tables, .packed = (uint32_t)packed};
    memcpy(hd, &job, sizeof job);
    for (uint32_t t = 0; t < n_tables; t++) {
        uint8_t *d = hd + o_tab + (uint64_t)t * one;
        if (packed) memcpy(d, tables[t].slot_dec, one);
        else wcg_expand_table(&tables[t].t, d);
    }
    if (row_table) memcpy(hd + o_map, row_table, h);
    memset(hd + o_err, 0xff, 8);
    for (int k = 0; k < WC_GPU_WARPS; k++) {
        wc_gpu_tile t = {src, (uint32_t)len, k ? WC_GPU_TILE_PAD : 0, 0, 0};
        memcpy(hd + o_tiles + k * sizeof t, &t, sizeof t);
    }
    if (cudaMemcpy(G.d_desc, hd, end, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(G.d_data + src, stream, len, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemset(G.d_out, 0xa5, n + 1) != cudaSuccess)
        abort();
    wc_gpu_launch l = {(const wc_gpu_job *)G.d_desc, (const wc_gpu_tile *)(G.d_desc + o_tiles), G.d_desc + o_modes,
                       G.d_data, G.d_desc,
                       (unsigned long long *)(G.d_desc + o_err), 1,
                       tab_bytes <= G.max_dyn_smem ? (uint32_t)tab_bytes : 0, n_tables > 1, 0};
    unsigned long long errw = 0;
    uint8_t past = 0;
    if (wc_gpu_launch_decode(&l, NULL) || cudaDeviceSynchronize() != cudaSuccess ||
        cudaMemcpy(&errw, G.d_desc + o_err, 8, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(out, G.d_out, n, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(&past, G.d_out + n, 1, cudaMemcpyDeviceToHost) != cudaSuccess) {
        fprintf(stderr, "ca_gpu: CUDA failed: %s\n", cudaGetErrorString(cudaGetLastError()));
        abort();
    }
    if (past != 0xa5) {
        fprintf(stderr, "ca_gpu: the kernel wrote past the tile (n %zu, w %u)\n", n, w);
        abort();
    }
    return errw != UINT64_MAX ? WC_ECORRUPT : 0;
}
