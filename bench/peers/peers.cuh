/* What the two sides of bench_dietgpu share: the INT8 bytes both codecs
 * code (the layout of one set of a model's coded tensors), checks that
 * stop the run, timing, and the device comparison that every figure is
 * verified with. Ours (wcodec's); no DietGPU code. */
#ifndef WCB_PEERS_CUH
#define WCB_PEERS_CUH

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

/* A CUDA call that fails ends the run: every figure after it would be
 * suspect. */
#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

/* Offsets of tensors in the oracle and in every output buffer: cudaMalloc's
 * alignment, so that both codecs write where they would in memory of their
 * own, and DietGPU's 4-byte rule holds for every piece. */
constexpr uint64_t kAlign = 256;

/* One coded tensor of the input: its index in the .wcodec file, its INT8
 * bytes and where they lie in a set's buffer. */
struct PeerTensor {
    std::string name;
    size_t index;
    uint64_t off, bytes;
};

/* One set of the input's coded tensors (raw tensors, stored as they are by
 * wcodec, are in neither codec's figures). */
struct PeerLayout {
    std::vector<PeerTensor> t;
    uint64_t span = 0;  /* bytes of a set's buffer, padding included */
    uint64_t int8 = 0;  /* INT8 bytes of a set: what a decode produces */
};

/* Failures are counted, reported as they happen and turned into a
 * non-zero exit at the end, so that one run shows every one of them. */
extern int g_failures;
void peer_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* First byte where a and b (device memory, n bytes) differ, or UINT64_MAX. */
uint64_t dev_first_diff(const uint8_t *a, const uint8_t *b, uint64_t n);
/* Compares every tensor of `sets` sets at out (set k at k * span) with the
 * oracle (one set, device memory); a difference is a failure naming what. */
bool verify_sets(const char *who, const PeerLayout &L, const uint8_t *out, const uint8_t *oracle, int sets);

double median(std::vector<double> v);
double now_s();

#endif
