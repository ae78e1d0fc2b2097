/* wcodec: lossless coding of INT8-quantized model weights.
 *
 * Public API of libwcodec. Every function returns 0 or a negative WC_E* code;
 * where a wc_err is passed (it may be NULL) it receives a message that names
 * the file, tensor and offset at fault.
 *
 * ABI (soname libwcodec.so.1; wcodec/version.h):
 *  - Nothing the library hands out is released with free(): a handle has its
 *    close or destroy function, and a string belongs to the handle it came
 *    from (a tensor's name lives as long as its wc_file).
 *  - Option and info structs end in reserved words, so that later versions
 *    add fields without changing their size. Set options with the struct's
 *    _default function, or zero the whole struct ({0}) and set the fields
 *    you want: reserved words must be zero. The library zeroes them in what
 *    it fills. */
#ifndef WCODEC_H
#define WCODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <wcodec/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WC_BUILDING_LIB)
#define WC_API __attribute__((visibility("default")))
#else
#define WC_API
#endif

/* The version of the library this program runs with, WC_VERSION_STRING of
 * its build ("1.0.0"); the macros of version.h are those of the headers it
 * was compiled against. */
WC_API const char *wc_version(void);

#define WC_FORMAT_VERSION 2 /* written; version 1 files are read too */

enum wc_status {
    WC_OK = 0,
    WC_EINVAL = -1,      /* bad argument from the caller */
    WC_EIO = -2,         /* a system call failed (errno in the message) */
    WC_ENOMEM = -3,
    WC_EFORMAT = -4,     /* malformed or truncated input file */
    WC_ECHECKSUM = -5,   /* stored checksum does not match the bytes */
    WC_EVERSION = -6,    /* format version this build cannot read */
    WC_ERANGE = -7,      /* a value cannot be represented (NaN/Inf weights, sizes) */
    WC_ENOTFOUND = -8,   /* no tensor of that name */
    WC_EUNSUPPORTED = -9,
    WC_ECORRUPT = -10,   /* a coded stream fails its integrity checks */
    WC_ECUDA = -11,      /* a CUDA call failed */
    WC_ENODEV = -12,     /* no usable CUDA device */
    WC_ECANCELED = -13,
};

/* Filled by a failing call where the context is known. */
typedef struct wc_err {
    int code;
    char msg[768];
} wc_err;

WC_API const char *wc_strerror(int code);

/* Element types, named as safetensors names them. The numeric values are
 * stored in .wcodec files and never change. */
typedef enum wc_dtype {
    WC_DT_BOOL = 1,
    WC_DT_U8 = 2,
    WC_DT_I8 = 3,
    WC_DT_I16 = 4,
    WC_DT_U16 = 5,
    WC_DT_F16 = 6,
    WC_DT_BF16 = 7,
    WC_DT_I32 = 8,
    WC_DT_U32 = 9,
    WC_DT_F32 = 10,
    WC_DT_F64 = 11,
    WC_DT_I64 = 12,
    WC_DT_U64 = 13,
    WC_DT_F8_E4M3 = 14,
    WC_DT_F8_E5M2 = 15,
} wc_dtype;

WC_API const char *wc_dtype_name(wc_dtype dt);   /* NULL if unknown */
WC_API int wc_dtype_size(wc_dtype dt);           /* bytes, or 0 if unknown */
WC_API int wc_dtype_from_name(const char *name); /* wc_dtype, or WC_EINVAL */

/* How a tensor is stored in a .wcodec file. */
typedef enum wc_coding {
    WC_CODING_RAW = 0,     /* bytes of the original dtype, as they were */
    WC_CODING_RANS_I8 = 1, /* INT8 values in tiles of interleaved rANS */
} wc_coding;

#define WC_MAX_DIMS 8

typedef struct wc_tensor_info {
    const char *name;       /* owned by the wc_file */
    wc_dtype dtype;         /* dtype of the input tensor */
    wc_dtype out_dtype;     /* dtype decode produces: I8 for coded tensors */
    wc_coding coding;
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];
    uint64_t rows, cols;    /* 2-D view: dim 0 x product of the rest */
    uint64_t out_bytes;     /* bytes decode writes */
    uint64_t n_scales;      /* fp32 scales (one per row), 0 if none */
    uint64_t stored_bytes;  /* bytes of the record in the file */
    uint64_t file_offset;   /* where the record starts */
    uint32_t tile_rows, tile_cols, n_tiles, n_tables, prob_bits;
    uint32_t top_distance;  /* rows between a value and its "top" prediction */
    uint64_t reserved[8];
} wc_tensor_info;

/* ---- reading ---- */

/* An open .wcodec file. It keeps a descriptor of its own (O_CLOEXEC) from
 * open to wc_file_close and reads everything through it with pread: the
 * header and directory once, at open, and a tensor's record each time it is
 * decoded, into buffers of that call. It never maps the file and never
 * opens it again by name: a file replaced by rename, or a relative path
 * after a chdir, still reads the file that was opened; a file that shrinks
 * after open gives WC_EIO for the tensors it lost (naming the file, tensor
 * and offset), never a signal. A file changed in place is caught by the
 * record checksums.
 *
 * Thread safety: after open a wc_file does not change; any number of
 * threads may call the functions below (and the GPU decoder's) on the same
 * wc_file at once. wc_file_close must come after every such call has
 * returned. Strings it returns (names, the label) live until then. */
typedef struct wc_file wc_file;

/* Opens path read-only and checks header and directory (checksums, bounds,
 * shapes). Tensor data is checked when it is decoded. `path` becomes the
 * label. */
WC_API int wc_file_open(wc_file **out, const char *path, wc_err *err);
/* The same on a descriptor open for reading: the wc_file duplicates it and
 * keeps its own copy, so the caller keeps ownership of fd and may close it
 * as soon as the call returns. `label` names the file in messages only. */
WC_API int wc_file_open_fd(wc_file **out, int fd, const char *label, wc_err *err);
/* Closes the descriptor and frees everything; NULL is a no-op. */
WC_API void wc_file_close(wc_file *f);

WC_API size_t wc_file_tensor_count(const wc_file *f);
WC_API int wc_file_tensor_info(const wc_file *f, size_t i, wc_tensor_info *out);
/* Index of the tensor called `name`, or WC_ENOTFOUND. */
WC_API int wc_file_find(const wc_file *f, const char *name);
WC_API uint64_t wc_file_size(const wc_file *f); /* at open */
/* The format version of the file (1 or 2), which may be older than the
 * WC_FORMAT_VERSION this build writes. */
WC_API uint32_t wc_file_version(const wc_file *f);
/* The name given at open, for messages; never reopened. */
WC_API const char *wc_file_label(const wc_file *f);

/* Decodes tensor i on the CPU into `out` (out_bytes of info) and, for coded
 * tensors with scales, `scales` (n_scales floats; may be NULL if the caller
 * does not want them). The record's checksum is verified before anything
 * is decoded (a raw tensor's record is read straight into `out`, whose
 * contents are then undefined when the call fails). Uses the fastest
 * routines this CPU has, on the calling thread. */
WC_API int wc_decode_tensor(const wc_file *f, size_t i, void *out, size_t out_size,
                            float *scales, size_t n_scales, wc_err *err);

/* Zero it ({0}: the fast decoder on the calling thread), then set fields. */
typedef struct wc_decode_opts {
    bool reference; /* the plain C reference decoder (the oracle), not the fast one */
    int threads;    /* tiles decoded by this many threads; 0 or 1: the calling thread */
    uint64_t reserved[8];
} wc_decode_opts;

WC_API int wc_decode_tensor_ex(const wc_file *f, size_t i, void *out, size_t out_size,
                               float *scales, size_t n_scales, const wc_decode_opts *o,
                               wc_err *err);

/* "model name (family F model M, AVX-512), rANS decoder NAME": the first
 * CPU of /proc/cpuinfo and the decoder libwcodec picked for this process
 * (by a short calibration at first use; WC_RANS_DECODER forces one), for
 * benchmarks and bug reports to print beside their figures: a generic name
 * ("Intel Xeon Processor") still tells the generation by family and model. */
WC_API void wc_cpu_describe(char *buf, size_t size);

/* Checks every tensor: checksum, decode, rANS end states. */
WC_API int wc_file_verify(const wc_file *f, wc_err *err);

/* Decodes every tensor and compares it with what encoding the safetensors
 * file `source` gives: raw bytes equal, coded tensors equal to the quantizer
 * applied to the source (or to the source's INT8 values and N_scale). */
WC_API int wc_file_compare_source(const wc_file *f, const char *source, wc_err *err);

/* How a coded tensor's tiles were coded, and what that bought. */
#define WC_N_PRED 5 /* none, left, top, avg, planar */
#define WC_N_TX 3   /* none, haar, wht4 */
typedef struct wc_tensor_stats {
    uint32_t tiles[WC_N_PRED][WC_N_TX];  /* tiles per prediction and transform */
    /* Per mode: the bits its tiles would take coded value by value with the
     * tensor's order-0 distribution, minus the bits their streams take. */
    double saved_bits[WC_N_PRED][WC_N_TX];
    double h0_bits;                      /* order-0 entropy of the values, in bits */
    double stream_bits;                  /* bits of all tile streams */
    double overhead_bits;                /* tables, row map and tile index */
    uint64_t reserved[8];
} wc_tensor_stats;

/* Decodes tensor i and fills s. */
WC_API int wc_tensor_stats_get(const wc_file *f, size_t i, wc_tensor_stats *s, wc_err *err);

/* ---- writing ---- */

typedef void (*wc_progress_fn)(void *user, uint64_t done, uint64_t total);

typedef struct wc_encode_opts {
    int threads;              /* 0: one per online CPU */
    uint64_t min_weights;     /* smaller tensors are stored raw; default 4096 */
    uint32_t tile_weights;    /* target weights per tile, 32..2^24; 0 (default): from the
                                 model's coded weights, 16384..262144 (262144 from
                                 4.3 G weights; docs/FORMAT.md, "Why these parameters") */
    uint32_t prob_bits;       /* rANS table precision in bits; default 13 */
    bool ints_as_float;       /* quantize I16/I32 matrices like floats */
    uint32_t max_tables;      /* frequency tables per tensor, 1..16; default 8 */
    int force_pred;           /* one prediction for every tile (0 none, 1 left, 2 top,
                                 3 avg, 4 planar), or -1 (default): chosen per tile */
    int force_tx;             /* one transform (0 none, 1 Haar, 2 WHT4), or -1 */
    uint32_t top_distance;    /* rows between a value and its top prediction; 0: searched */
    wc_progress_fn progress;  /* called from the calling thread */
    void *progress_user;
    uint64_t reserved[8];
} wc_encode_opts;

WC_API void wc_encode_opts_default(wc_encode_opts *o);

/* Encodes a safetensors file into a .wcodec file. The output is written to a
 * temporary file beside `out_path` and renamed at the end, so a failed or
 * interrupted run leaves no partial file. */
WC_API int wc_encode_file(const char *in_path, const char *out_path,
                          const wc_encode_opts *opts, wc_err *err);

/* Decodes a .wcodec file into a safetensors file: coded tensor N becomes
 * N (I8) beside N_scale (F32, one per row); raw tensors come back as they
 * were. Same temporary-file rule as encoding. */
WC_API int wc_decode_file(const char *in_path, const char *out_path,
                          wc_progress_fn progress, void *progress_user, wc_err *err);

/* ---- dequantized output ---- */

/* Decodes tensor i of f as float weights of `dtype` (WC_DT_BF16, WC_DT_F16
 * or WC_DT_F32) into out (rows x cols elements of dtype, row-major, the
 * tensor's shape): a coded tensor becomes q x scale[row], the product
 * computed in float32 and rounded to dtype to nearest, ties to even (IEEE
 * 754's default; subnormals kept, beyond dtype's range +-inf): what
 * PyTorch's (q.float() * scale[:, None]).to(dtype) gives. A coded tensor
 * without scales uses a scale of 1. A raw F32/F16/BF16 tensor is converted
 * with the same rounding; any other raw dtype is WC_EINVAL. The record's
 * checksum is verified first; the CPU decodes, on the calling thread, with
 * no memory beyond the row scales (the INT8 values are decoded into out's
 * tail and widened in place). docs/FORMAT.md, "Dequantized output". */
WC_API int wc_decode_tensor_dequant(const wc_file *f, size_t i, wc_dtype dtype, void *out,
                                    size_t out_size, wc_err *err);

/* ---- tensor-parallel shards (docs/SHARDING.md) ----
 * Shard `rank` of `n_shards` of a tensor along dimension `dim`: dim 0 cuts
 * rows (column-parallel layers), dim 1 columns (row-parallel layers; for a
 * tensor of more than two dimensions, the slices of shape[1], each with all
 * of the dimensions after it). Sizes follow torch.tensor_split(x, n, dim):
 * with len = shape[dim], the first len % n shards have len / n + 1 indices
 * and the others len / n (empty ones where n > len); where n divides len
 * (what vLLM requires of most layers) every shard has len / n. n_shards 1
 * is the whole tensor, whatever dim and ndim (a replicated tensor). */
typedef struct wc_shard_info {
    int dim;                      /* the dimension split */
    uint64_t start, len;          /* the shard's indices [start, start + len) along dim */
    uint32_t ndim;
    uint64_t shape[WC_MAX_DIMS];  /* the shard's shape: the tensor's, shape[dim] = len */
    uint64_t out_bytes;           /* bytes a shard decode writes (INT8 for coded tensors) */
    uint64_t n_scales;            /* fp32 scales it returns, 0 if none: the shard's rows for
                                     dim 0 of a matrix, every row otherwise (scales are per row) */
    uint64_t scale_row0;          /* the tensor row of the first of them */
    uint64_t reserved[8];
} wc_shard_info;

/* Fills *out for shard rank of n_shards of tensor i along dim: WC_EINVAL
 * (with a message naming the file, tensor and shard) for a rank >= n_shards,
 * n_shards 0, or a dim other than 0 or 1 or beyond the tensor's (but for
 * n_shards 1). */
WC_API int wc_shard_info_get(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards,
                             wc_shard_info *out, wc_err *err);

/* Decodes shard rank of n_shards of tensor i along dim on the CPU: its
 * values row-major in the shard's shape into out (out_bytes of
 * wc_shard_info) and, for coded tensors with scales, its n_scales scales
 * into scales (may be NULL). A coded tensor's record is read in part: its
 * head (scales, row map, tables, tile index) and the streams of the tiles
 * the shard's values depend on (the tiles it overlaps, and those their
 * predictions reach: docs/SHARDING.md), which are checked as in a whole
 * decode (rANS end states, scales finite) but, the record not being read
 * whole, not against its checksum: wc_file_verify checks that. A raw
 * tensor's shard is read straight from its record. n_shards 1 is
 * wc_decode_tensor (checksum included). */
WC_API int wc_decode_tensor_shard(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n_shards,
                                  void *out, size_t out_size, float *scales, size_t n_scales, wc_err *err);

/* Where a tensor of a named layout is split: *dim = 0 or 1, or -1 for a
 * tensor every rank takes whole (n_shards 1). Layout "llama" (Llama,
 * Mistral, Qwen2 and most decoder-only models, by their Hugging Face
 * names; docs/SHARDING.md, "The Llama layout"): q/k/v_proj weights and
 * biases, gate_proj, up_proj, embed_tokens and lm_head along 0, o_proj and
 * down_proj weights along 1, anything else whole. A rank shares KV heads
 * with others where there are fewer than ranks: that is the caller's
 * (docs/SHARDING.md). WC_EINVAL for a layout it does not know. */
WC_API int wc_shard_layout_dim(const char *layout, const char *name, int *dim);

/* The slice [start, start + len) of tensor i along dim (0 or 1, as for
 * shards), decoded as a shard is (never checked against the record's
 * checksum, even when whole): for splits that are not tensor_split's, such
 * as vLLM's padded vocabulary or KV heads shared by several ranks
 * (docs/SHARDING.md). Its size is the shard's rule with len for shape[dim];
 * a start or len beyond the dimension is WC_EINVAL. */
WC_API int wc_decode_tensor_slice(const wc_file *f, size_t i, int dim, uint64_t start, uint64_t len, void *out,
                                  size_t out_size, float *scales, size_t n_scales, wc_err *err);

/* ---- metadata and Hugging Face folders ----
 * A file's metadata is a RAW U8 tensor of this name holding a JSON object of
 * strings (safetensors' "__metadata__" rule: no safetensors tensor can have
 * the name, and readers that do not know it see a byte vector);
 * docs/FORMAT.md, "Metadata". */
#define WC_METADATA_NAME "__metadata__"

/* Encodes a Hugging Face model folder: config.json (required),
 * generation_config.json (if there) and "format": "pt" into the metadata,
 * then the tensors of model.safetensors, or of every shard that
 * model.safetensors.index.json names (a missing shard, or a tensor not in
 * the shard the index names, is an error naming it). Tokenizer and other
 * files are not read: they stay beside. Same temporary-file rule as
 * wc_encode_file. */
WC_API int wc_encode_hf_folder(const char *dir, const char *out_path, const wc_encode_opts *opts,
                               wc_err *err);

/* wc_decode_file with a choice of output: dtype 0 gives wc_decode_file's
 * (N as I8 beside N_scale); WC_DT_BF16, WC_DT_F16 or WC_DT_F32 gives coded
 * and raw float tensors as that dtype (the rule of wc_decode_tensor_dequant)
 * and no N_scale. Either way the metadata record becomes the safetensors
 * header's "__metadata__", not a tensor. */
WC_API int wc_decode_file_as(const char *in_path, const char *out_path, wc_dtype dtype,
                             wc_progress_fn progress, void *progress_user, wc_err *err);

#ifdef __cplusplus
}
#endif
#endif
