/* DietGPU's side of bench_dietgpu (side_dietgpu.cu). */
#ifndef WCB_SIDE_DIETGPU_H
#define WCB_SIDE_DIETGPU_H

#include "peers.cuh"

struct DietArgs {
    int prob_bits;   /* DietGPU's table precision: 9, 10 or 11 */
    uint64_t piece;  /* most bytes of a piece (one array of DietGPU's batch) */
    uint64_t batch;  /* most bytes a batch call handles */
    int sets;        /* copies decoded in one go (the same compressed pieces) */
    int iters;       /* timed decodes; the median is kept */
};

struct DietResult {
    int prob_bits = 0;
    uint64_t comp_bytes = 0;  /* compressed, headers included, one set */
    std::vector<uint64_t> tensor_bytes;  /* the same, tensor by tensor (L's order) */
    double time_s = 0;        /* median decode of every set, all batches */
    size_t pieces = 0, batches = 0;
    bool ok = false;          /* round trip bit-exact, every piece reported whole */
};

/* Compresses one set of L's tensors (in d_oracle) and times the decode of
 * a.sets of them; checks the decode against d_oracle. */
DietResult run_dietgpu(const PeerLayout &L, const uint8_t *d_oracle, const DietArgs &a);

#endif
