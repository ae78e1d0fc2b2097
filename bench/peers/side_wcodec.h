/* wcodec's side of bench_dietgpu (side_wcodec.cu): the INT8 bytes from the
 * CPU reference decoder (the oracle both codecs are checked against), and
 * our GPU decoder timed on them. */
#ifndef WCB_SIDE_WCODEC_H
#define WCB_SIDE_WCODEC_H

#include "peers.cuh"

extern "C" {
#include "wcodec/wcodec_gpu.h"
}

/* The coded tensors of f and their INT8 bytes, decoded by the CPU reference
 * decoder on `threads` threads into oracle (L.span bytes, padding zero). */
int wcs_oracle(const wc_file *f, int threads, PeerLayout *L, std::vector<uint8_t> *oracle);
/* The CPU reference decode of f (another encoding of the same model) equals
 * the oracle, tensor by tensor; a difference is a failure. */
bool wcs_same_as_oracle(const wc_file *f, const char *what, int threads, const PeerLayout &L,
                        const std::vector<uint8_t> &oracle);

struct WcResult {
    uint64_t values_bytes = 0;  /* coded records less their scales: INT8 values, tables, index, states */
    uint64_t record_bytes = 0;  /* the records whole */
    uint64_t tiles = 0;
    uint32_t tile_min = 0, tile_max = 0;  /* weights a tile (tile_rows x tile_cols), over tensors */
    double kernel_s = 0;  /* median, compressed file already in GPU memory, every set */
    double file_s = 0;    /* median, wc_gpu_decode_file of one set from the page cache */
    bool ok = false;      /* every output equal to the oracle */
};

/* Times our decoder on f, whose coded tensors are L's, with sets copies in
 * one launch (the kernel) and one copy file-to-GPU (runs times). */
WcResult run_wcodec(wc_gpu *g, const wc_file *f, const PeerLayout &L, const uint8_t *d_oracle, int sets,
                    int iters, int runs, const char *who);

#endif
