/* peers.cuh: checks, timing and the device comparison. */
#include <algorithm>
#include <cstdarg>
#include <ctime>

#include "peers.cuh"

int g_failures = 0;

void peer_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    std::fprintf(stdout, "MISMATCH: ");
    std::vfprintf(stdout, fmt, ap);
    std::fprintf(stdout, "\n");
    std::fflush(stdout);
    va_end(ap);
    g_failures++;
}

/* The lowest index where the bytes differ, by atomicMin: any order of
 * blocks gives the same answer. */
__global__ void first_diff_kernel(const uint8_t *a, const uint8_t *b, uint64_t n, unsigned long long *first)
{
    const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        if (a[i] != b[i]) {
            atomicMin(first, (unsigned long long)i);
            return;
        }
}

uint64_t dev_first_diff(const uint8_t *a, const uint8_t *b, uint64_t n)
{
    static unsigned long long *d; /* one counter for the process: thousands of small tensors */
    unsigned long long h = ~0ull;
    if (!d) CK(cudaMalloc(&d, sizeof *d));
    CK(cudaMemcpy(d, &h, sizeof h, cudaMemcpyHostToDevice));
    if (n) {
        const uint64_t want = (n + 255) / 256;
        first_diff_kernel<<<(unsigned)std::min<uint64_t>(want, 65536), 256>>>(a, b, n, d);
        CK(cudaGetLastError());
    }
    CK(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
    return h;
}

bool verify_sets(const char *who, const PeerLayout &L, const uint8_t *out, const uint8_t *oracle, int sets)
{
    bool ok = true;
    for (int k = 0; k < sets; k++)
        for (const PeerTensor &t : L.t) {
            uint64_t at = dev_first_diff(out + (uint64_t)k * L.span + t.off, oracle + t.off, t.bytes);
            if (at != ~0ull) {
                peer_fail("%s: set %d, tensor '%s' (%llu bytes) differs from the CPU reference decoder's "
                          "first at byte %llu",
                          who, k, t.name.c_str(), (unsigned long long)t.bytes, (unsigned long long)at);
                ok = false;
            }
        }
    return ok;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

double now_s()
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
