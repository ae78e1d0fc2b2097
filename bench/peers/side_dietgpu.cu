/* DietGPU's side of bench_dietgpu: its byte-wise ANS (dietgpu/ans, built
 * from the user's copy of its source by prepare.sh) on the same INT8 bytes
 * as ours. Each tensor is cut into pieces of at most `piece` bytes (4 MiB:
 * DietGPU's own batches are of independent arrays, and a piece is what its
 * decoder spreads over warps); pieces go to DietGPU in batches of at most
 * `batch` bytes (decode) and 512 MiB (encode), because larger batches (the
 * whole 6.7 GB synthetic model in one) ended in "illegal memory access" on
 * the H200 (issue 21; see compress()). */
#include <algorithm>

#include "dietgpu/ans/GpuANSCodec.h"
#include "dietgpu/utils/StackDeviceMemory.h"

#include "side_dietgpu.h"

namespace {

struct Piece {
    size_t tensor;     /* in L */
    const uint8_t *in; /* in the oracle */
    uint32_t n;
    uint64_t out_off;  /* in a set's buffer */
    uint8_t *comp;     /* DietGPU's compressed piece */
};

/* DietGPU's decode grid has a row of blocks per batch member (gridDim.y,
 * at most 65,535). */
constexpr size_t kMaxBatchItems = 32768;
constexpr uint64_t kEncodeBatch = 512ull << 20;

/* [first, end) of each batch: consecutive items whose bytes stay within
 * limit (one item at least), kMaxBatchItems at most. */
std::vector<std::pair<size_t, size_t>> batches_of(const std::vector<uint32_t> &n, uint64_t limit)
{
    std::vector<std::pair<size_t, size_t>> b;
    size_t first = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n.size(); i++) {
        if (i > first && (bytes + n[i] > limit || i - first == kMaxBatchItems))
            b.push_back({first, i}), first = i, bytes = 0;
        bytes += n[i];
    }
    if (first < n.size()) b.push_back({first, n.size()});
    return b;
}

/* Compresses every piece (of one set); returns the compressed bytes, the
 * sum of the sizes DietGPU reports (its headers included), and adds each
 * piece's to its tensor's in per_tensor. */
uint64_t compress(dietgpu::StackDeviceMemory &res, const dietgpu::ANSCodecConfig &cfg, std::vector<Piece> &ps,
                  uint64_t batch, cudaStream_t st, uint8_t **comp_buf, std::vector<uint64_t> *per_tensor)
{
    uint64_t cap = 0;
    std::vector<uint64_t> at(ps.size());
    for (size_t i = 0; i < ps.size(); i++) {
        at[i] = cap;
        cap += (dietgpu::getMaxCompressedSize(ps[i].n) + kAlign - 1) / kAlign * kAlign;
    }
    CK(cudaMalloc(comp_buf, cap ? cap : 1));
    uint32_t *d_size;
    CK(cudaMalloc(&d_size, ps.size() * sizeof *d_size + 1));
    std::vector<const void *> in(ps.size());
    std::vector<void *> out(ps.size());
    std::vector<uint32_t> n(ps.size());
    for (size_t i = 0; i < ps.size(); i++) {
        ps[i].comp = *comp_buf + at[i];
        in[i] = ps[i].in, out[i] = ps[i].comp, n[i] = ps[i].n;
    }
    /* its encoder's scratch is 1.28x a batch's bytes, indexed by a 32-bit
     * product (GpuANSEncode.cuh: batch * uncoalescedBlockStride *
     * maxNumCompressedBlocks) that wraps past 4 GiB: small batches keep it
     * in the stack and far from that (compression is per piece, so the
     * batching of the encode changes nothing else) */
    for (auto [a, b] : batches_of(n, std::min<uint64_t>(batch, kEncodeBatch)))
        dietgpu::ansEncodeBatchPointer(res, cfg, (uint32_t)(b - a), in.data() + a, n.data() + a, nullptr,
                                       out.data() + a, d_size + a, st);
    CK(cudaStreamSynchronize(st));
    std::vector<uint32_t> h(ps.size());
    CK(cudaMemcpy(h.data(), d_size, h.size() * sizeof h[0], cudaMemcpyDeviceToHost));
    CK(cudaFree(d_size));
    uint64_t total = 0;
    for (size_t i = 0; i < ps.size(); i++) total += h[i], (*per_tensor)[ps[i].tensor] += h[i];
    return total;
}

} // namespace

DietResult run_dietgpu(const PeerLayout &L, const uint8_t *d_oracle, const DietArgs &a)
{
    DietResult R;
    R.prob_bits = a.prob_bits;
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    int dev;
    CK(cudaGetDevice(&dev));
    /* temporary memory for the encode (1.28x an encode batch) and the
     * decode (a table a piece, 8 KB at 11 bits): beyond it DietGPU falls
     * back to cudaMalloc, with a warning */
    dietgpu::StackDeviceMemory res(dev, kEncodeBatch * 3 / 2 + (512ull << 20));
    dietgpu::ANSCodecConfig cfg(a.prob_bits, false);

    std::vector<Piece> ps;
    for (size_t k = 0; k < L.t.size(); k++) {
        const PeerTensor &t = L.t[k];
        for (uint64_t o = 0; o < t.bytes; o += a.piece)
            ps.push_back({k, d_oracle + t.off + o, (uint32_t)std::min<uint64_t>(a.piece, t.bytes - o), t.off + o, nullptr});
    }
    R.pieces = ps.size();
    uint8_t *comp = nullptr;
    R.tensor_bytes.assign(L.t.size(), 0);
    R.comp_bytes = compress(res, cfg, ps, a.batch, st, &comp, &R.tensor_bytes);

    /* decode: every set's pieces, from the same compressed pieces (as our
     * sets decode from one copy of the file), into its own output */
    const size_t np = ps.size() * (size_t)a.sets;
    std::vector<const void *> in(np);
    std::vector<void *> out(np);
    std::vector<uint32_t> n(np);
    uint8_t *d_out, *d_ok;
    uint32_t *d_n;
    CK(cudaMalloc(&d_out, L.span * (uint64_t)a.sets + 1));
    CK(cudaMalloc(&d_ok, np + 1));
    CK(cudaMalloc(&d_n, np * sizeof *d_n + 1));
    for (int k = 0; k < a.sets; k++)
        for (size_t i = 0; i < ps.size(); i++) {
            const size_t j = (size_t)k * ps.size() + i;
            in[j] = ps[i].comp, out[j] = d_out + (uint64_t)k * L.span + ps[i].out_off, n[j] = ps[i].n;
        }
    const auto bs = batches_of(n, a.batch);
    R.batches = bs.size();
    auto decode_all = [&]() {
        for (auto [x, y] : bs) {
            auto s = dietgpu::ansDecodeBatchPointer(res, cfg, (uint32_t)(y - x), in.data() + x, out.data() + x,
                                                    n.data() + x, d_ok + x, d_n + x, st);
            if (s.error != dietgpu::ANSDecodeError::None) peer_fail("DietGPU %d-bit: decode reports an error", a.prob_bits);
        }
    };
    CK(cudaMemset(d_out, 0xa5, L.span * (uint64_t)a.sets)); /* poison: a piece left undecoded shows */
    CK(cudaDeviceSynchronize()); /* st is non-blocking: it would not wait for the legacy stream's memset */
    decode_all();
    CK(cudaStreamSynchronize(st));

    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int k = 0; k < a.iters; k++) {
        CK(cudaEventRecord(e0, st));
        decode_all();
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms * 1e-3);
    }
    R.time_s = median(t);

    /* DietGPU's own account of each piece, then the bytes themselves */
    std::vector<uint8_t> ok(np);
    std::vector<uint32_t> got(np);
    CK(cudaMemcpy(ok.data(), d_ok, np, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(got.data(), d_n, np * sizeof got[0], cudaMemcpyDeviceToHost));
    R.ok = true;
    for (size_t j = 0; j < np; j++)
        if (!ok[j] || got[j] != n[j]) {
            peer_fail("DietGPU %d-bit: piece %zu of %zu: success %d, size %u (expected %u)", a.prob_bits, j, np, ok[j],
                      got[j], n[j]);
            R.ok = false;
            break;
        }
    char who[64];
    snprintf(who, sizeof who, "DietGPU %d-bit round trip", a.prob_bits);
    R.ok = verify_sets(who, L, d_out, d_oracle, a.sets) && R.ok;

    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(d_out));
    CK(cudaFree(d_ok));
    CK(cudaFree(d_n));
    CK(cudaFree(comp));
    CK(cudaStreamDestroy(st));
    return R;
}
