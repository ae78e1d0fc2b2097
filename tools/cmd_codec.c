/* wcodec encode / decode */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmds.h"
#include "progress.h"

static const char encode_help[] =
    "usage: wcodec encode [options] MODEL.safetensors [-o OUT.wcodec]\n"
    "       wcodec encode [options] HF_FOLDER [-o OUT.wcodec]\n"
    "       wcodec encode --shards [options] HF_FOLDER [-o OUT_DIR]\n"
    "\n"
    "A Hugging Face model folder gives config.json and generation_config.json to the\n"
    "file's metadata and its tensors from model.safetensors, or from the shards that\n"
    "model.safetensors.index.json names; tokenizer files are not read (keep them beside).\n"
    "\n"
    "With --shards, each shard of a sharded folder is encoded to a .wcodec of its own\n"
    "(model-00001-of-00015.safetensors to OUT_DIR/model-00001-of-00015.wcodec, no\n"
    "metadata record), one after the other, and OUT_DIR (default HF_FOLDER) gets\n"
    "model.wcodec.index.json (\"weight_map\": each tensor of the .wcodec files to its\n"
    "file) and a copy of config.json and generation_config.json: the layout for models\n"
    "whose single .wcodec would not fit beside its source (docs/OPERATIONS.md, \"Models\n"
    "larger than the disk\"). Encoded shards stay if a later one fails.\n"
    "\n"
    "Quantizes float matrices to INT8 (one fp32 scale per row: max|w|/127, round half to\n"
    "even) and codes them losslessly. INT8 tensors with an N_scale beside them are taken as\n"
    "they are. 1-D and small tensors, and other dtypes, are kept byte for byte.\n"
    "\n"
    "  -o, --output FILE     output (default: MODEL with .wcodec for .safetensors, or\n"
    "                        HF_FOLDER.wcodec)\n"
    "  -j, --threads N       encoder threads (default: one per CPU)\n"
    "  -f, --force           replace an existing output file\n"
    "      --min-weights N   store tensors under N weights raw (default 4096)\n"
    "      --tile-weights N  weights per tile (default: from the model's size, 16384 to\n"
    "                        262144; smaller gives the GPU more parallel work, larger\n"
    "                        costs fewer bits)\n"
    "      --prob-bits N     rANS table precision, 8..14 (default 13; 12 with\n"
    "                        --max-tables 4 decodes ~10% faster on a GPU, files a\n"
    "                        little larger)\n"
    "      --ints-as-float   quantize I16/I32 matrices like float ones\n"
    "      --max-tables N    frequency tables per tensor, 1..16 (default 8)\n"
    "      --pred P          force one prediction on every tile: none, left, top, avg,\n"
    "                        planar (default: chosen per tile by estimated size)\n"
    "      --tx T            force one transform: none, haar, wht4 (default: chosen)\n"
    "      --top-distance D  rows between a value and its top prediction (default:\n"
    "                        searched per tensor)\n"
    "  -v, --verbose         a last line on stdout: the input's tensor bytes (INT8\n"
    "                        scales travel in their tensor's record), the output's bytes,\n"
    "                        seconds, and peak_rss_kb, the peak resident memory (VmHWM:\n"
    "                        the heap and the input's mapped, file-backed pages alike;\n"
    "                        each tensor's pages are released once it is coded)\n"
    "  -q, --quiet           no progress bar\n"
    "  -h, --help            this text\n";

static const char decode_help[] =
    "usage: wcodec decode [options] MODEL.wcodec [-o OUT.safetensors]\n"
    "       wcodec decode --folder [options] MODEL.wcodec -o DIR\n"
    "\n"
    "Writes a safetensors file: a coded tensor N comes back as N (I8, its original shape)\n"
    "beside N_scale (F32, one per row); raw tensors come back byte for byte. With --dtype,\n"
    "coded tensors come back as float weights q x scale (rounded to nearest even from\n"
    "float32) and raw float tensors are converted alike. The file's metadata becomes the\n"
    "safetensors __metadata__.\n"
    "\n"
    "  -o, --output FILE     output (default: MODEL with .safetensors for .wcodec)\n"
    "      --dtype T         bf16, f16 or f32: dequantized output\n"
    "      --folder          a Hugging Face folder: DIR/model.safetensors and the\n"
    "                        config.json and generation_config.json of the metadata\n"
    "  -f, --force           replace an existing output file\n"
    "  -q, --quiet           no progress bar\n"
    "  -h, --help            this text\n";

/* in with its suffix `from` replaced by `to` (or `to` appended). */
static char *swap_suffix(const char *in, const char *from, const char *to)
{
    size_t n = strlen(in), f = strlen(from);
    if (n > f && !strcmp(in + n - f, from)) n -= f;
    char *out = malloc(n + strlen(to) + 1);
    if (!out) return NULL;
    memcpy(out, in, n);
    strcpy(out + n, to);
    return out;
}

/* DIR (trailing slashes dropped) with .wcodec appended. */
static char *folder_output(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    char *out = malloc(n + sizeof ".wcodec");
    if (!out) return NULL;
    memcpy(out, dir, n);
    strcpy(out + n, ".wcodec");
    return out;
}

/* A field of /proc/self/status in kB, or -1 where it cannot be read. */
static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* The progress bar, and the input's tensor bytes for the --verbose line. */
typedef struct encode_progress {
    wct_progress bar;
    uint64_t total;
} encode_progress;

static void encode_progress_cb(void *user, uint64_t done, uint64_t total)
{
    encode_progress *p = user;
    p->total = total;
    wct_progress_cb(&p->bar, done, total);
}

/* The --verbose line: input tensor bytes, output bytes, time and the peak
 * RSS of the whole process. */
static void print_summary(const char *in, const char *out, uint64_t in_bytes, double secs)
{
    struct stat so;
    long long ob = stat(out, &so) == 0 ? (long long)so.st_size : -1;
    printf("encoded %s -> %s: tensor_bytes=%llu out_bytes=%lld seconds=%.2f peak_rss_kb=%ld\n",
           in, out, (unsigned long long)in_bytes, ob, secs, status_kb("VmHWM"));
}

int wct_check_output(const char *out, bool force)
{
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "wcodec: %s exists; use -f to replace it\n", out);
        return 1;
    }
    return 0;
}

int wct_encode_one(const char *in, const char *out, bool folder, wc_encode_opts *o,
                   const char *label, bool quiet, bool verbose)
{
    encode_progress p = {0};
    wct_progress_init(&p.bar, label, quiet);
    o->progress = encode_progress_cb;
    o->progress_user = &p;
    wc_err e = {0};
    double t0 = wct_now();
    int r = folder ? wc_encode_hf_folder(in, out, o, &e) : wc_encode_file(in, out, o, &e);
    wct_progress_end(&p.bar);
    o->progress = NULL;
    o->progress_user = NULL;
    if (r) return wct_report(&e, r);
    if (verbose) print_summary(in, out, p.total, wct_now() - t0);
    return 0;
}

int wct_encode(int argc, char **argv)
{
    static const struct option lo[] = {
        {"output", 1, 0, 'o'},      {"threads", 1, 0, 'j'},      {"force", 0, 0, 'f'},
        {"min-weights", 1, 0, 'M'}, {"tile-weights", 1, 0, 'T'}, {"prob-bits", 1, 0, 'P'},
        {"ints-as-float", 0, 0, 'I'}, {"quiet", 0, 0, 'q'},      {"help", 0, 0, 'h'},
        {"max-tables", 1, 0, 'K'},  {"pred", 1, 0, 'R'},         {"tx", 1, 0, 'X'},
        {"top-distance", 1, 0, 'D'}, {"verbose", 0, 0, 'v'},  {"shards", 0, 0, 'S'},
        {0, 0, 0, 0}};
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    const char *out = NULL;
    bool force = false, quiet = false, verbose = false, shards = false;
    int c;
    while ((c = getopt_long(argc, argv, "o:j:fqvh", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'j': o.threads = (int)wct_parse_long("-j", optarg, 1, 1024); break;
        case 'f': force = true; break;
        case 'M': o.min_weights = (uint64_t)wct_parse_long("--min-weights", optarg, 1, 1L << 40); break;
        case 'T': o.tile_weights = (uint32_t)wct_parse_long("--tile-weights", optarg, 32, 1 << 24); break;
        case 'P': o.prob_bits = (uint32_t)wct_parse_long("--prob-bits", optarg, 8, 14); break;
        case 'I': o.ints_as_float = true; break;
        case 'K': o.max_tables = (uint32_t)wct_parse_long("--max-tables", optarg, 1, 16); break;
        case 'R': o.force_pred = wct_parse_name("--pred", optarg, wct_pred_names); break;
        case 'X': o.force_tx = wct_parse_name("--tx", optarg, wct_tx_names); break;
        case 'D': o.top_distance = (uint32_t)wct_parse_long("--top-distance", optarg, 1, 1L << 31); break;
        case 'q': quiet = true; break;
        case 'v': verbose = true; break;
        case 'S': shards = true; break;
        case 'h': fputs(encode_help, stdout); return 0;
        default: fputs(encode_help, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(encode_help, stderr);
        return 2;
    }
    const char *in = argv[optind];
    struct stat sb;
    bool folder = stat(in, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (shards) {
        if (!folder) {
            fprintf(stderr, "wcodec: --shards: %s is not a folder\n", in);
            return 2;
        }
        return wct_encode_shards(in, out ? out : in, &o, force, quiet, verbose);
    }
    char *def = out ? NULL : folder ? folder_output(in) : swap_suffix(in, ".safetensors", ".wcodec");
    if (!out) out = def;
    int ret = wct_check_output(out, force);
    if (!ret) ret = wct_encode_one(in, out, folder, &o, "encode", quiet, verbose);
    free(def);
    return ret;
}

int wct_decode(int argc, char **argv)
{
    static const struct option lo[] = {{"output", 1, 0, 'o'}, {"force", 0, 0, 'f'},
                                       {"quiet", 0, 0, 'q'},  {"help", 0, 0, 'h'},
                                       {"dtype", 1, 0, 'T'},  {"folder", 0, 0, 'F'},
                                       {0, 0, 0, 0}};
    static const char *const dtypes[] = {"bf16", "f16", "f32", NULL};
    static const wc_dtype dtype_of[] = {WC_DT_BF16, WC_DT_F16, WC_DT_F32};
    const char *out = NULL;
    bool force = false, quiet = false, folder = false;
    wc_dtype dtype = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:fqh", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'T': dtype = dtype_of[wct_parse_name("--dtype", optarg, dtypes)]; break;
        case 'F': folder = true; break;
        case 'f': force = true; break;
        case 'q': quiet = true; break;
        case 'h': fputs(decode_help, stdout); return 0;
        default: fputs(decode_help, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(decode_help, stderr);
        return 2;
    }
    const char *in = argv[optind];
    if (folder) {
        if (!out) {
            fputs("wcodec: --folder needs -o DIR\n", stderr);
            return 2;
        }
        return wct_decode_folder(in, out, dtype, force, quiet);
    }
    char *def = out ? NULL : swap_suffix(in, ".wcodec", ".safetensors");
    if (!out) out = def;
    int ret = wct_check_output(out, force);
    if (!ret) {
        wct_progress p;
        wct_progress_init(&p, "decode", quiet);
        wc_err e = {0};
        int r = wc_decode_file_as(in, out, dtype, wct_progress_cb, &p, &e);
        wct_progress_end(&p);
        ret = r ? wct_report(&e, r) : 0;
    }
    free(def);
    return ret;
}
