/* wcodec's side of bench_dietgpu: see side_wcodec.h. */
#include <algorithm>
#include <cstring>

#include "side_wcodec.h"

extern "C" {
#include "gpu_bench.h" /* wcg_stream, wcg_resident_create_sets: cuda/, not installed */
}

static int ref_decode(const wc_file *f, size_t i, uint8_t *out, uint64_t bytes, int threads, wc_err *e)
{
    wc_decode_opts o;
    std::memset(&o, 0, sizeof o);
    o.reference = true; /* the oracle, not the fast decoder */
    o.threads = threads;
    return wc_decode_tensor_ex(f, i, out, bytes, nullptr, 0, &o, e);
}

int wcs_oracle(const wc_file *f, int threads, PeerLayout *L, std::vector<uint8_t> *oracle)
{
    *L = PeerLayout();
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding != WC_CODING_RANS_I8) continue;
        L->t.push_back({ti.name, i, L->span, ti.out_bytes});
        L->span += (ti.out_bytes + kAlign - 1) / kAlign * kAlign;
        L->int8 += ti.out_bytes;
    }
    oracle->assign(L->span, 0);
    for (const PeerTensor &t : L->t) {
        wc_err e = {};
        int r = ref_decode(f, t.index, oracle->data() + t.off, t.bytes, threads, &e);
        if (r) {
            std::fprintf(stderr, "%s: CPU reference decode of '%s': %s (%s)\n", wc_file_label(f), t.name.c_str(),
                         e.msg, wc_strerror(r));
            return r;
        }
    }
    return 0;
}

bool wcs_same_as_oracle(const wc_file *f, const char *what, int threads, const PeerLayout &L,
                        const std::vector<uint8_t> &oracle)
{
    std::vector<uint8_t> buf;
    size_t k = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding != WC_CODING_RANS_I8) continue;
        if (k >= L.t.size() || L.t[k].name != ti.name || L.t[k].bytes != ti.out_bytes || L.t[k].index != i) {
            peer_fail("%s: coded tensor %zu ('%s') is not the first encoding's", what, k, ti.name);
            return false;
        }
        buf.resize(ti.out_bytes);
        wc_err e = {};
        int r = ref_decode(f, i, buf.data(), ti.out_bytes, threads, &e);
        if (r) {
            peer_fail("%s: CPU reference decode of '%s': %s", what, ti.name, e.msg);
            return false;
        }
        if (std::memcmp(buf.data(), oracle.data() + L.t[k].off, ti.out_bytes)) {
            peer_fail("%s: tensor '%s' decodes to other INT8 values than the first encoding's", what, ti.name);
            return false;
        }
        k++;
    }
    if (k != L.t.size()) peer_fail("%s: %zu coded tensors, the first encoding has %zu", what, k, L.t.size());
    return k == L.t.size();
}

static bool wc_ok(int r, const wc_err &e, const char *who, const char *what)
{
    if (r) peer_fail("%s: %s: %s (%s)", who, what, e.msg, wc_strerror(r));
    return r == 0;
}

/* Median kernel time of the resident decode, CUDA events on its stream;
 * checked runs (sync) before and after. */
static double time_kernel(wc_gpu *g, wc_gpu_resident *res, int iters, const char *who, bool *ok)
{
    wc_err e = {};
    cudaStream_t st = (cudaStream_t)wcg_stream(g);
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    *ok = wc_ok(wc_gpu_resident_run(res, true, &e), e, who, "resident decode");
    std::vector<double> t;
    for (int k = 0; k < iters && *ok; k++) {
        CK(cudaEventRecord(a, st));
        *ok = wc_ok(wc_gpu_resident_run(res, false, &e), e, who, "resident decode");
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1e-3);
    }
    *ok = *ok && wc_ok(wc_gpu_resident_run(res, true, &e), e, who, "resident decode (last, checked)");
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return median(t);
}

WcResult run_wcodec(wc_gpu *g, const wc_file *f, const PeerLayout &L, const uint8_t *d_oracle, int sets,
                    int iters, int runs, const char *who)
{
    WcResult R;
    const size_t nt = wc_file_tensor_count(f);
    R.tile_min = ~0u;
    for (const PeerTensor &t : L.t) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, t.index, &ti);
        R.record_bytes += ti.stored_bytes;
        R.values_bytes += ti.stored_bytes - 4 * ti.n_scales;
        R.tiles += ti.n_tiles;
        const uint32_t tw = ti.tile_rows * ti.tile_cols;
        R.tile_min = std::min(R.tile_min, tw), R.tile_max = std::max(R.tile_max, tw);
    }
    uint8_t *d_out;
    CK(cudaMalloc(&d_out, L.span * (uint64_t)sets + 1));
    std::vector<wc_gpu_dst> dst(nt * (size_t)sets);
    for (int k = 0; k < sets; k++)
        for (const PeerTensor &t : L.t) {
            wc_gpu_dst &d = dst[(size_t)k * nt + t.index];
            d.out = d_out + (uint64_t)k * L.span + t.off;
            d.out_size = t.bytes;
        }

    /* the kernel: the compressed file already in GPU memory */
    CK(cudaMemset(d_out, 0xa5, L.span * (uint64_t)sets));
    CK(cudaDeviceSynchronize()); /* the decoder's streams do not wait for the legacy one */
    wc_err e = {};
    wc_gpu_resident *res = nullptr;
    bool ok = wc_ok(wcg_resident_create_sets(g, f, dst.data(), (size_t)sets, &res, &e), e, who, "resident create");
    if (ok) R.kernel_s = time_kernel(g, res, iters, who, &ok);
    wc_gpu_resident_destroy(res);
    ok = ok && verify_sets(who, L, d_out, d_oracle, sets);

    /* file to GPU: one set, through the pipeline (page cache, pinned ring,
     * copies beside the kernels), the library's default options */
    CK(cudaMemset(d_out, 0xa5, L.span));
    CK(cudaDeviceSynchronize());
    std::vector<double> t;
    for (int k = 0; k < runs && ok; k++) {
        double a = now_s();
        ok = wc_ok(wc_gpu_decode_file(g, f, dst.data(), &e), e, who, "file-to-GPU decode");
        t.push_back(now_s() - a);
    }
    R.file_s = median(t);
    char w2[160];
    snprintf(w2, sizeof w2, "%s file-to-GPU", who);
    ok = ok && verify_sets(w2, L, d_out, d_oracle, 1);
    CK(cudaFree(d_out));
    R.ok = ok;
    return R;
}
