/* bench_dietgpu: DietGPU (facebookresearch/dietgpu) beside wcodec on the
 * same INT8 bytes, on the same GPU, in one process (issue 21, part 1;
 * bench/peers/README.md says how to build and run it).
 *
 * For each input (a .safetensors file, encoded here with each --enc
 * configuration, or a .wcodec file as it is):
 *  - the INT8 bytes of its coded tensors, from the CPU reference decoder
 *    (the oracle); every other encoding must decode to the same bytes;
 *  - a device-to-device copy of those bytes (the scale every figure is
 *    read against);
 *  - DietGPU: compressed size, decode time (CUDA events, median), round
 *    trip checked against the oracle;
 *  - wcodec: size, kernel time (the file already in GPU memory) and
 *    file-to-GPU time, outputs checked against the oracle.
 * INPUT:SETS decodes SETS copies in one go on both sides (small models do
 * not fill a GPU). Any mismatch is printed as it is found and makes the
 * exit status 1. */
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "side_dietgpu.h"
#include "side_wcodec.h"

#ifndef WCB_DIETGPU_COMMIT
#define WCB_DIETGPU_COMMIT "unknown"
#endif
#ifndef WCB_WCODEC_COMMIT
#define WCB_WCODEC_COMMIT "unknown"
#endif

static const char usage[] =
    "usage: bench_dietgpu [options] INPUT[:SETS[:ENC+ENC...]] ...\n"
    "  INPUT    a .safetensors file (encoded here with each --enc) or a .wcodec file\n"
    "  SETS     copies decoded in one go by both codecs (default 1)\n"
    "  ENC      encoder configurations for this input instead of the --enc ones\n"
    "options:\n"
    "  --enc E        an encoder configuration for .safetensors inputs, repeatable: 'default'\n"
    "                 (wc_encode_opts_default) or KEY=VALUE,... over it with tw (--tile-weights),\n"
    "                 pb (--prob-bits), mt (--max-tables), iaf (--ints-as-float, 0 or 1); default:\n"
    "                 --enc default --enc tw=262144\n"
    "  --prob-bits L  DietGPU's probability bits, comma-separated (9..11; default 10,11)\n"
    "  --piece N      most bytes of a DietGPU piece (default 4194304: tensors are cut into pieces)\n"
    "  --batch N      most bytes of a DietGPU batch call (default 1610612736)\n"
    "  --iters N      timed decodes a figure (median; default 20)\n"
    "  --runs N       file-to-GPU decodes (median; default 5)\n"
    "  --threads N    CPU threads to encode and to reference-decode (default: online CPUs)\n"
    "  --tmp DIR      where encoded files go (default /tmp/wcb-peers); they are removed after\n"
    "                 their input unless --keep\n"
    "  --per-tensor   also each tensor's bits/weight, both codecs (sizes only)\n"
    "  --cpu-only     encode and reference-decode each input, compare the encodings, and stop\n"
    "                 before the GPU (a check of the set-up on a machine without one)\n"
    "  -h, --help     this text\n"
    "Exit status: 0 when every output of both codecs equals the CPU reference decoder's, 1 on any\n"
    "mismatch or error, 2 on bad arguments.\n";

struct Opts {
    std::vector<std::string> enc, inputs;
    std::vector<int> pbits{10, 11};
    uint64_t piece = 4u << 20, batch = 1536ull << 20;
    int iters = 20, runs = 5, threads = 0;
    std::string tmp = "/tmp/wcb-peers";
    bool keep = false, cpu_only = false, per_tensor = false;
};

static bool ends_with(const std::string &s, const char *suf)
{
    const size_t n = std::strlen(suf);
    return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

/* "default" or KEY=VALUE,... over the library's defaults */
static bool enc_opts(const std::string &spec, int threads, wc_encode_opts *o)
{
    wc_encode_opts_default(o);
    o->threads = threads;
    if (spec == "default") return true;
    if (spec.empty()) return false;
    size_t at = 0;
    while (at < spec.size()) {
        size_t end = spec.find(',', at);
        if (end == std::string::npos) end = spec.size();
        const std::string kv = spec.substr(at, end - at);
        const size_t eq = kv.find('=');
        char *tail = nullptr;
        const long v = eq == std::string::npos ? -1 : std::strtol(kv.c_str() + eq + 1, &tail, 10);
        if (v < 0 || !tail || *tail) return false;
        const std::string k = kv.substr(0, eq);
        if (k == "tw") o->tile_weights = (uint32_t)v;
        else if (k == "pb") o->prob_bits = (uint32_t)v;
        else if (k == "mt") o->max_tables = (uint32_t)v;
        else if (k == "iaf") o->ints_as_float = v != 0;
        else return false;
        at = end + 1;
    }
    return true;
}

static int parse(int argc, char **argv, Opts *o)
{
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(usage, stdout);
            std::exit(0);
        }
        if (a == "--keep" || a == "--cpu-only" || a == "--per-tensor") {
            (a == "--keep" ? o->keep : a == "--cpu-only" ? o->cpu_only : o->per_tensor) = true;
            continue;
        }
        if (a.rfind("--", 0) == 0) {
            if (i + 1 >= argc) return -1;
            const std::string v = argv[++i];
            if (a == "--enc") o->enc.push_back(v);
            else if (a == "--prob-bits") {
                o->pbits.clear();
                for (size_t p = 0; p < v.size(); p = v.find(',', p) == std::string::npos ? v.size() : v.find(',', p) + 1)
                    o->pbits.push_back(std::atoi(v.c_str() + p));
            } else if (a == "--piece") o->piece = std::strtoull(v.c_str(), nullptr, 10);
            else if (a == "--batch") o->batch = std::strtoull(v.c_str(), nullptr, 10);
            else if (a == "--iters") o->iters = std::atoi(v.c_str());
            else if (a == "--runs") o->runs = std::atoi(v.c_str());
            else if (a == "--threads") o->threads = std::atoi(v.c_str());
            else if (a == "--tmp") o->tmp = v;
            else return -1;
            continue;
        }
        o->inputs.push_back(a);
    }
    if (o->enc.empty()) o->enc = {"default", "tw=262144"};
    for (int pb : o->pbits)
        if (pb < 9 || pb > 11) return -1;
    wc_encode_opts eo;
    for (const std::string &e : o->enc)
        if (!enc_opts(e, 0, &eo)) return -1;
    if (o->threads <= 0) o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->iters < 1 || o->runs < 1 || o->piece < 4 || o->piece % 4 || o->piece > (1u << 30) || o->batch < o->piece ||
        o->inputs.empty())
        return -1;
    return 0;
}

struct Coded {
    std::string name, path;
    bool made = false; /* encoded here: removed after the input */
    wc_file *f = nullptr;
};

static double time_d2d(uint64_t bytes, int iters)
{
    uint8_t *s, *d;
    CK(cudaMalloc(&s, bytes + 1));
    CK(cudaMalloc(&d, bytes + 1));
    CK(cudaMemset(s, 1, bytes));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaMemcpy(d, s, bytes, cudaMemcpyDeviceToDevice));
    std::vector<double> t;
    for (int k = 0; k < iters; k++) {
        CK(cudaEventRecord(a, 0));
        CK(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, 0));
        CK(cudaEventRecord(b, 0));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms * 1e-3);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaFree(s));
    CK(cudaFree(d));
    return median(t);
}

/* The .wcodec files of an input: encoded here, or the input itself. */
static bool coded_files(const Opts &o, const std::string &path, std::vector<Coded> *cs)
{
    if (ends_with(path, ".wcodec")) {
        cs->push_back({"as given", path});
    } else {
        const std::string base = path.substr(path.rfind('/') + 1);
        for (size_t k = 0; k < o.enc.size(); k++) {
            Coded c{o.enc[k], o.tmp + "/" + base + "." + std::to_string(k) + ".wcodec", true};
            wc_encode_opts eo;
            enc_opts(c.name, o.threads, &eo);
            wc_err e = {};
            const double t0 = now_s();
            int r = wc_encode_file(path.c_str(), c.path.c_str(), &eo, &e);
            if (r) {
                peer_fail("encoding %s with '%s': %s (%s)", path.c_str(), c.name.c_str(), e.msg, wc_strerror(r));
                return false;
            }
            std::printf("   encoded with '%s' in %.1f s (%d threads)\n", c.name.c_str(), now_s() - t0, o.threads);
            cs->push_back(c);
        }
    }
    for (Coded &c : *cs) {
        wc_err e = {};
        int r = wc_file_open(&c.f, c.path.c_str(), &e);
        if (r) {
            peer_fail("opening %s: %s (%s)", c.path.c_str(), e.msg, wc_strerror(r));
            return false;
        }
    }
    return true;
}

static void print_row(const char *codec, const char *input, int sets, double bpw, double bpw_rec, double t,
                      uint64_t bytes, double d2d, double file_gbps, bool ok)
{
    const double gbps = bytes / t / 1e9;
    std::printf("   %-40s %7.3f %9.4f %8.1f %7.3f", codec, bpw, t * 1e3, gbps, d2d / t);
    if (file_gbps > 0) std::printf(" %10.2f   (%.3f with scales)", file_gbps, bpw_rec);
    std::printf("\n");
    std::printf("row input=%s sets=%d codec=\"%s\" bits_per_weight=%.4f time_ms=%.4f GBps=%.1f of_d2d=%.3f "
                "file_GBps=%.2f ok=%d\n",
                input, sets, codec, bpw, t * 1e3, gbps, d2d / t, file_gbps, ok);
}

/* Each tensor's bits/weight: DietGPU at each precision, each encoding of ours
 * (records less scales). */
static void print_tensors(const PeerLayout &L, const std::vector<DietResult> &diets, const std::vector<Coded> &cs)
{
    std::printf("   per tensor, bits/weight:\n   %-44s %12s", "tensor", "weights");
    for (const DietResult &d : diets) std::printf("  DietGPU-%d", d.prob_bits);
    for (const Coded &c : cs) std::printf("  '%s'", c.name.c_str());
    std::printf("\n");
    for (size_t k = 0; k < L.t.size(); k++) {
        const PeerTensor &t = L.t[k];
        std::printf("   %-44s %12llu", t.name.c_str(), (unsigned long long)t.bytes);
        for (const DietResult &d : diets) std::printf("  %10.3f", 8.0 * d.tensor_bytes[k] / t.bytes);
        for (const Coded &c : cs) {
            wc_tensor_info ti;
            wc_file_tensor_info(c.f, t.index, &ti);
            std::printf("  %*.3f", (int)c.name.size() + 2, 8.0 * (ti.stored_bytes - 4 * ti.n_scales) / t.bytes);
        }
        std::printf("\n");
    }
}

static std::string fmt(const char *f, double v)
{
    char b[32];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

/* One line per (input, encoding) for the summary at the end. */
static std::vector<std::string> g_summary;

/* Both codecs on the GPU: D2D, DietGPU at each precision, each encoding of ours. */
static void bench_gpu(const Opts &o, wc_gpu *g, const std::string &path, int sets, const PeerLayout &L,
                      const std::vector<uint8_t> &oracle, std::vector<Coded> &cs)
{
    const uint64_t bytes = L.int8 * (uint64_t)sets;
    uint8_t *d_oracle;
    CK(cudaMalloc(&d_oracle, L.span + 1));
    CK(cudaMemcpy(d_oracle, oracle.data(), L.span, cudaMemcpyHostToDevice));
    /* from pageable memory cudaMemcpy may return before its DMA is done, and
     * both codecs read the oracle on non-blocking streams of their own */
    CK(cudaDeviceSynchronize());
    const double d2d = time_d2d(bytes, o.iters);
    std::printf("   device-to-device copy of those bytes: %.4f ms, %.1f GB/s\n", d2d * 1e3, bytes / d2d / 1e9);
    std::printf("   %-40s %7s %9s %8s %7s %10s\n", "codec", "bits/w", "ms", "GB/s", "of_D2D", "file->GPU");
    DietResult best;
    std::vector<DietResult> diets;
    for (int pb : o.pbits) {
        DietResult r = run_dietgpu(L, d_oracle, DietArgs{pb, o.piece, o.batch, sets, o.iters});
        char name[96];
        std::snprintf(name, sizeof name, "DietGPU %d-bit (%zu pieces, %zu batch%s)", pb, r.pieces, r.batches,
                      r.batches > 1 ? "es" : "");
        const double bpw = 8.0 * r.comp_bytes / L.int8;
        print_row(name, path.c_str(), sets, bpw, bpw, r.time_s, bytes, d2d, 0, r.ok);
        if (r.ok && (best.time_s == 0 || r.time_s < best.time_s)) best = r;
        diets.push_back(r);
    }
    for (Coded &c : cs) {
        std::string who = "wcodec '" + c.name + "'";
        WcResult r = run_wcodec(g, c.f, L, d_oracle, sets, o.iters, o.runs, who.c_str());
        print_row(who.c_str(), path.c_str(), sets, 8.0 * r.values_bytes / L.int8, 8.0 * r.record_bytes / L.int8,
                  r.kernel_s, bytes, d2d, L.int8 / r.file_s / 1e9, r.ok);
        std::printf("      %llu tiles of %u..%u weights; file-to-GPU: one set, %.3f ms, checksums on\n",
                    (unsigned long long)r.tiles, r.tile_min, r.tile_max, r.file_s * 1e3);
        if (best.time_s > 0 && r.ok)
            std::printf("      against DietGPU %d-bit (its fastest here): %.2fx its decode speed, %.3fx its size\n",
                        best.prob_bits, best.time_s / r.kernel_s, (double)r.values_bytes / best.comp_bytes);
        char line[512];
        std::snprintf(line, sizeof line,
                      "%-44s x%-4d %-22s %6.3f %8.1f %6.3f %9.2f %7s %7s  vs DietGPU-%d %.3f b/w %.1f GB/s%s",
                      path.substr(path.rfind('/') + 1).c_str(), sets, c.name.c_str(), 8.0 * r.values_bytes / L.int8,
                      bytes / r.kernel_s / 1e9, d2d / r.kernel_s, L.int8 / r.file_s / 1e9,
                      best.time_s > 0 ? fmt("%.2fx", best.time_s / r.kernel_s).c_str() : "-",
                      best.comp_bytes ? fmt("%.3fx", (double)r.values_bytes / best.comp_bytes).c_str() : "-",
                      best.prob_bits, best.comp_bytes * 8.0 / L.int8, best.time_s > 0 ? bytes / best.time_s / 1e9 : 0.0,
                      r.ok && best.ok ? "" : "  [MISMATCH]");
        g_summary.push_back(line);
    }
    CK(cudaFree(d_oracle));
    if (o.per_tensor) print_tensors(L, diets, cs);
}

/* INPUT[:SETS[:ENC+ENC...]]: SETS digits; ENC as --enc, for this input only */
static bool parse_input(const std::string &arg, std::string *path, int *sets, std::vector<std::string> *enc)
{
    std::vector<std::string> f;
    for (size_t at = 0;;) {
        const size_t c = arg.find(':', at);
        f.push_back(arg.substr(at, c == std::string::npos ? std::string::npos : c - at));
        if (c == std::string::npos) break;
        at = c + 1;
    }
    *path = f[0];
    *sets = 1;
    if (f.size() > 3 || f[0].empty()) return false;
    if (f.size() > 1) {
        if (f[1].empty() || f[1].find_first_not_of("0123456789") != std::string::npos) return false;
        *sets = std::atoi(f[1].c_str());
    }
    if (f.size() > 2) {
        enc->clear();
        wc_encode_opts eo;
        for (size_t at = 0; at <= f[2].size();) {
            size_t c = f[2].find('+', at);
            if (c == std::string::npos) c = f[2].size();
            enc->push_back(f[2].substr(at, c - at));
            if (!enc_opts(enc->back(), 0, &eo)) return false;
            at = c + 1;
        }
    }
    return *sets >= 1;
}

static void bench_input(const Opts &o0, wc_gpu *g, const std::string &arg)
{
    Opts o = o0;
    std::string path;
    int sets;
    if (!parse_input(arg, &path, &sets, &o.enc)) {
        peer_fail("input '%s': not PATH[:SETS[:ENC+ENC...]] with SETS >= 1 and known encoder keys", arg.c_str());
        return;
    }
    std::printf("\n== %s, %d set%s\n", path.c_str(), sets, sets > 1 ? "s in one go" : "");
    std::vector<Coded> cs;
    PeerLayout L;
    std::vector<uint8_t> oracle;
    if (coded_files(o, path, &cs) && !wcs_oracle(cs[0].f, o.threads, &L, &oracle)) {
        bool same = true;
        for (size_t k = 1; k < cs.size(); k++) /* one that differs is reported and measured no further */
            if (!wcs_same_as_oracle(cs[k].f, cs[k].name.c_str(), o.threads, L, oracle)) {
                wc_file_close(cs[k].f);
                if (cs[k].made && !o.keep) unlink(cs[k].path.c_str());
                cs.erase(cs.begin() + (long)k--);
                same = false;
            }
        const uint64_t bytes = L.int8 * (uint64_t)sets;
        std::printf("   %zu coded tensors, %.2f MB of INT8 a set (CPU reference decoder, %d threads)%s; a decode "
                    "makes %.1f MB\n",
                    L.t.size(), L.int8 / 1e6, o.threads, same ? "" : " [an encoding differs: left out]", bytes / 1e6);
        for (Coded &c : cs) {
            uint64_t values = 0, tiles = 0;
            for (const PeerTensor &t : L.t) {
                wc_tensor_info ti;
                wc_file_tensor_info(c.f, t.index, &ti);
                values += ti.stored_bytes - 4 * ti.n_scales, tiles += ti.n_tiles;
            }
            std::printf("   wcodec '%s': %.4f bits/weight (scales apart), %llu tiles, file %llu bytes\n", c.name.c_str(),
                        8.0 * values / L.int8, (unsigned long long)tiles, (unsigned long long)wc_file_size(c.f));
        }
        if (g) bench_gpu(o, g, path, sets, L, oracle, cs);
    }
    for (Coded &c : cs) {
        wc_file_close(c.f);
        if (c.made && !o.keep) unlink(c.path.c_str());
    }
}

int main(int argc, char **argv)
{
    Opts o;
    if (parse(argc, argv, &o)) {
        std::fputs(usage, stderr);
        return 2;
    }
    if (mkdir(o.tmp.c_str(), 0755) && errno != EEXIST) {
        std::fprintf(stderr, "cannot create %s: %s\n", o.tmp.c_str(), std::strerror(errno));
        return 1;
    }
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.require_gpu = true;
    wc_gpu *g = nullptr;
    wc_err e = {};
    int r = o.cpu_only ? 0 : wc_gpu_create(&g, &go, &e);
    if (r) {
        std::fprintf(stderr, "wc_gpu_create: %s (%s)\n", e.msg, wc_strerror(r));
        return 1;
    }
    cudaDeviceProp p;
    std::memset(&p, 0, sizeof p);
    std::strcpy(p.name, "no GPU (--cpu-only)");
    if (g) CK(cudaGetDeviceProperties(&p, wc_gpu_device(g)));
    char cpu[256];
    wc_cpu_describe(cpu, sizeof cpu);
    const time_t now = time(nullptr);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    std::printf("bench_dietgpu %s: %s (%d SMs), wcodec %s (%s), DietGPU %s\nCPU: %s\n", date, p.name,
                p.multiProcessorCount, wc_version(), WCB_WCODEC_COMMIT, WCB_DIETGPU_COMMIT, cpu);
    std::printf("bits/w: compressed bits a weight of the INT8 values (DietGPU: its output with headers; wcodec:\n"
                "its records less the row scales, which DietGPU does not store). ms: median of %d decodes of every\n"
                "set, CUDA events, compressed bytes already in GPU memory. GB/s: INT8 bytes decoded / time.\n"
                "file->GPU: GB/s of one set through wc_gpu_decode_file from the page cache (wall clock, median of %d).\n",
                o.iters, o.runs);
    for (const std::string &in : o.inputs) bench_input(o, g, in);
    if (g) wc_gpu_destroy(g);
    if (!g_summary.empty()) {
        std::printf("\n== summary: wcodec (bits/weight scales apart; kernel GB/s and of D2D; file-to-GPU GB/s of one set)\n"
                    "   beside DietGPU's faster precision on the same bytes in the same run\n"
                    "%-44s %-5s %-22s %6s %8s %6s %9s %7s %7s\n",
                    "input", "sets", "encoding", "bits/w", "GB/s", "ofD2D", "file_GB/s", "xspeed", "xsize");
        for (const std::string &l : g_summary) std::printf("%s\n", l.c_str());
    }
    if (g_failures) {
        std::printf("\nFAILED: %d mismatch%s or error%s above\n", g_failures, g_failures > 1 ? "es" : "",
                    g_failures > 1 ? "s" : "");
        return 1;
    }
    if (o.cpu_only) std::printf("\n--cpu-only: every encoding decodes to the same INT8 values; nothing ran on a GPU\n");
    else std::printf("\nall outputs equal to the CPU reference decoder's (both codecs, every set)\n");
    return 0;
}
