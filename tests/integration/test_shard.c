/* Tensor-parallel shards on the CPU (docs/SHARDING.md): for every tensor,
 * both dimensions and shard counts that do and do not divide them, the
 * shards put back together are the whole tensor as the reference decoder
 * gives it, bit for bit; a shard reads less than the record where the
 * tiles allow, and decodes with the tiles it does not need destroyed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "helpers.h"
#include "reader.h"
#include "record.h"
#include "shard.h"

/* torch.tensor_split(torch.arange(len), n)[rank]: the expectation, written
 * out from torch's documentation rather than from the library's formula:
 * the first len % n parts have one more index. */
static void torch_part(uint64_t len, uint32_t n, uint32_t rank, uint64_t *start, uint64_t *count)
{
    uint64_t at = 0;
    for (uint32_t k = 0; k <= rank; k++) {
        const uint64_t c = len / n + (k < len % n ? 1 : 0);
        if (k == rank) *start = at, *count = c;
        at += c;
    }
}

static void test_split_convention(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        uint32_t n;
        uint64_t starts[8], counts[8];
    } cases[] = {
        {10, 3, {0, 4, 7}, {4, 3, 3}},          /* torch.tensor_split(arange(10), 3) */
        {8, 4, {0, 2, 4, 6}, {2, 2, 2, 2}},
        {2, 4, {0, 1, 2, 2}, {1, 1, 0, 0}},     /* more shards than indices: empty ones at the end */
        {7, 7, {0, 1, 2, 3, 4, 5, 6}, {1, 1, 1, 1, 1, 1, 1}},
        {11, 4, {0, 3, 6, 9}, {3, 3, 3, 2}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (uint32_t r = 0; r < cases[k].n; r++) {
            uint64_t s, c, ts, tc;
            wc_shard_split(cases[k].len, r, cases[k].n, &s, &c);
            torch_part(cases[k].len, cases[k].n, r, &ts, &tc);
            assert_int_equal(s, cases[k].starts[r]);
            assert_int_equal(c, cases[k].counts[r]);
            assert_int_equal(s, ts);
            assert_int_equal(c, tc);
        }
}

/* Bytes of tile t's stream. */
static uint64_t stream_len(const uint8_t *img, const wc_entry *e, uint32_t t)
{
    const uint8_t *ix = img + e->offset + e->index_off;
    const uint64_t b = wc_rd32(ix + 8ull * t);
    const uint64_t end = t + 1 < e->n_tiles ? wc_rd32(ix + 8ull * (t + 1)) : e->size - e->tiles_off;
    return end - b;
}

/* Whether every tile of e predicts from nothing or from the left only: then
 * a row shard needs exactly the rows of tiles it overlaps. */
static bool no_top(const uint8_t *img, const wc_entry *e)
{
    for (uint32_t t = 0; t < e->n_tiles; t++) {
        const uint8_t p = img[e->offset + e->index_off + 8ull * t + 4] & 15;
        if (p != 0 && p != 1) return false;
    }
    return true;
}

typedef struct file_src {
    const wc_file *f;
    const wc_entry *e;
} file_src;

static int read_at(void *ctx, uint64_t off, uint64_t len, uint8_t *dst, wc_err *err)
{
    const file_src *s = ctx;
    return wc_file_pread(s->f, s->e, s->e->offset + off, len, dst, err);
}

/* The GPU's way to a coded shard (cuda/gpu_shard.c), decoded here by the
 * CPU decoder: the tensors of wc_shard_plan_subs (rows of tiles, or a row
 * of tiles each, of some columns: wc_shard_sub_tensor), each decoded whole,
 * the shard cropped out of them. Returns the crop (the caller frees it);
 * *per_row: whether the plan took a tensor per row of tiles. */
static uint8_t *sub_tensors_shard(const wc_file *f, size_t i, int dim, uint32_t rank, uint32_t n, bool *per_row)
{
    const wc_entry *e = wc_file_entry(f, i);
    wc_part p;
    wc_shard_info si;
    wc_shard_rect rc;
    assert_int_equal(wc_part_shard(e, dim, rank, n, "t", &p, NULL), 0);
    wc_part_resolve(e, &p, &si, &rc);
    uint8_t *head = malloc(e->tiles_off), *crop = malloc(si.out_bytes + 1);
    memset(crop, 0xa5, si.out_bytes);
    assert_int_equal(wc_file_pread(f, e, e->offset, e->tiles_off, head, NULL), 0);
    wc_rec rec;
    assert_int_equal(wc_rec_parse(&rec, e, head, "t", NULL), 0);
    wc_shard_plan plan;
    assert_int_equal(wc_shard_plan_subs(&rec, &rc, &plan), 0);
    *per_row = plan.per_row;
    const uint64_t w = rc.c1 - rc.c0;
    uint64_t covered = 0;
    for (uint64_t k = 0; k < plan.n_subs; k++) {
        uint64_t tr0, tr1;
        wc_shard_plan_sub(&plan, k, &tr0, &tr1);
        wc_entry ve;
        uint8_t *vhead;
        assert_int_equal(wc_shard_sub_tensor(e, &rec, head, tr0, tr1, plan.tc0, plan.tc1, e->name, &ve, &vhead), 0);
        wc_rec vrec;
        wc_err err = {0};
        int r = wc_rec_parse(&vrec, &ve, vhead, "sub tensor", &err);
        if (r) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(r, 0);
        uint8_t *box = malloc(ve.rows * ve.cols);
        file_src fs = {f, &ve};
        const wc_rec_src src = {read_at, &fs};
        r = wc_record_decode(wc_dsp_get(true), &vrec, &src, NULL, box, NULL, 1, "sub tensor", &err);
        if (r) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(r, 0);
        /* its part of the shard: the rows and columns both cover */
        const uint64_t R0 = tr0 * e->tile_rows, C0 = plan.tc0 * e->tile_cols;
        const uint64_t ra = R0 > rc.r0 ? R0 : rc.r0, rb = R0 + ve.rows < rc.r1 ? R0 + ve.rows : rc.r1;
        const uint64_t ca = C0 > rc.c0 ? C0 : rc.c0, cb = C0 + ve.cols < rc.c1 ? C0 + ve.cols : rc.c1;
        for (uint64_t y = ra; y < rb && ca < cb; y++)
            memcpy(crop + (y - rc.r0) * w + (ca - rc.c0), box + (y - R0) * ve.cols + (ca - C0), cb - ca);
        covered += rb > ra && cb > ca ? (rb - ra) * (cb - ca) : 0;
        wc_rec_free(&vrec);
        free(vhead);
        free(box);
    }
    assert_int_equal(covered, (rc.r1 - rc.r0) * w); /* every value of the shard, once */
    wc_rec_free(&rec);
    free(head);
    return crop;
}

typedef struct tally {
    size_t shards, partial_reads, exact_reads, per_row;
    uint64_t read[2], records[2]; /* coded tensors, shards of 2 along dim 0 / 1: bytes read, record bytes */
} tally;

/* Shards of tensor i along dim, n of them, decoded with dsp (reference or
 * fast), put back together and compared with want / want_scales. */
static void check_tensor_dim(const wc_file *f, const uint8_t *img, size_t i, int dim, uint32_t n, const uint8_t *want,
                             const float *want_scales, const wc_dsp *dsp, tally *ty)
{
    const wc_entry *e = wc_file_entry(f, i);
    wc_tensor_info ti;
    assert_int_equal(wc_file_tensor_info(f, i, &ti), 0);
    const uint64_t esz = (uint64_t)wc_dtype_size(ti.out_dtype);
    const uint64_t len = e->shape[dim];
    uint64_t outer = 1, inner = 1; /* the tensor as [outer, len, inner] */
    for (int k = 0; k < dim; k++) outer *= e->shape[k];
    for (uint32_t k = (uint32_t)dim + 1; k < e->ndim; k++) inner *= e->shape[k];
    uint8_t *got = malloc(ti.out_bytes + 1);
    memset(got, 0xa5, ti.out_bytes);
    float *gs = calloc(ti.rows + 1, sizeof *gs);
    for (uint32_t r = 0; r < n; r++) {
        uint64_t start = 0, count = 0;
        torch_part(len, n, r, &start, &count);
        wc_shard_info si;
        wc_err err = {0};
        assert_int_equal(wc_shard_info_get(f, i, dim, r, n, &si, &err), 0);
        assert_int_equal(si.start, start);
        assert_int_equal(si.len, count);
        assert_int_equal(si.shape[dim], count);
        assert_int_equal(si.out_bytes, outer * count * inner * esz);
        uint8_t *part = malloc(si.out_bytes + 1);
        float *ps = malloc(4 * (si.n_scales + 1));
        uint64_t nread;
        int rc = wc_shard_decode(f, i, dim, r, n, part, si.out_bytes, ps, si.n_scales, dsp, &nread, &err);
        if (rc) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(rc, 0);
        for (uint64_t o = 0; o < outer; o++)
            memcpy(got + ((o * len + start) * inner) * esz, part + o * count * inner * esz, count * inner * esz);
        if (ti.n_scales) {
            const bool row_split = dim == 0 && e->ndim >= 2;
            assert_int_equal(si.n_scales, row_split ? count : ti.rows);
            if (row_split) memcpy(gs + start, ps, 4 * count);
            else assert_memory_equal(ps, want_scales, 4 * ti.rows);
        } else {
            assert_int_equal(si.n_scales, 0);
        }
        if (n >= 2 && count && ti.coding == WC_CODING_RANS_I8) {
            bool per_row;
            uint8_t *crop = sub_tensors_shard(f, i, dim, r, n, &per_row);
            assert_memory_equal(crop, part, si.out_bytes);
            ty->per_row += per_row;
            free(crop);
        }
        if (n == 2 && ti.coding == WC_CODING_RANS_I8) ty->read[dim] += nread, ty->records[dim] += e->size;
        ty->shards++;
        assert_true(nread <= e->size); /* never more than the record */
        if (n >= 2 && nread < e->size) ty->partial_reads++;
        /* rows of tiles of a coded matrix whose tiles never look up: exactly
         * the head and the streams of the tiles the shard's rows overlap */
        if (n >= 2 && count && dim == 0 && e->ndim >= 2 && ti.coding == WC_CODING_RANS_I8 && no_top(img, e)) {
            uint64_t expect = e->tiles_off;
            for (uint32_t t = 0; t < e->n_tiles; t++) {
                const uint64_t r0 = (uint64_t)(t / e->tiles_across) * e->tile_rows;
                if (r0 < start + count && r0 + e->tile_rows > start) expect += stream_len(img, e, t);
            }
            assert_int_equal(nread, expect);
            ty->exact_reads++;
        }
        free(part);
        free(ps);
    }
    assert_memory_equal(got, want, ti.out_bytes);
    if (ti.n_scales && dim == 0 && e->ndim >= 2) assert_memory_equal(gs, want_scales, 4 * ti.rows);
    free(got);
    free(gs);
}

/* Every tensor of the .wcodec file at path, both dimensions, n in 1, 2, 3,
 * 4, 7 and one more than the dimension where that is small. */
static void check_file(const char *path, tally *ty)
{
    wc_file *f;
    wc_err err = {0};
    assert_int_equal(wc_file_open(&f, path, &err), 0);
    size_t size;
    uint8_t *img = th_read_file(path, &size);
    assert_non_null(img);
    const wc_decode_opts ref = {.reference = true};
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        uint8_t *want = malloc(ti.out_bytes + 1);
        float *ws = malloc(4 * (ti.n_scales + 1));
        assert_int_equal(wc_decode_tensor_ex(f, i, want, ti.out_bytes, ws, ti.n_scales, &ref, &err), 0);
        for (int dim = 0; dim < 2 && (uint32_t)dim < ti.ndim; dim++) {
            const uint32_t ns[] = {1, 2, 3, 4, 7, (uint32_t)(ti.shape[dim] < 40 ? ti.shape[dim] + 1 : 1)};
            for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
                check_tensor_dim(f, img, i, dim, ns[k], want, ws, wc_dsp_get(true), ty);
                if (ns[k] == 3) check_tensor_dim(f, img, i, dim, ns[k], want, ws, wc_dsp_get(false), ty);
            }
        }
        free(want);
        free(ws);
    }
    free(img);
    wc_file_close(f);
}

static void encode(const char *src, const char *dst, const wc_encode_opts *o)
{
    wc_err err = {0};
    int r = wc_encode_file(src, dst, o, &err);
    if (r) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(r, 0);
}

/* The example model and the real weights, at the default tile size (from
 * the model's size), at the largest (256K weights, what 7B-class models
 * get) and at 4096 weights (more tiles a tensor: shards that cut tiles). */
static void test_real_files(void **state)
{
    (void)state;
    const char *files[] = {WCT_EXAMPLE_MODEL, WCT_WEIGHTS_DIR "/ppocrv4_onnx_fp32.safetensors",
                           WCT_WEIGHTS_DIR "/slice_mixed.safetensors",
                           WCT_WEIGHTS_DIR "/stockfish15_nnue_int.safetensors"};
    int done = 0;
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        FILE *fp = fopen(files[k], "rb");
        if (!fp) {
            printf("# %s: absent, not tested (real weights: meson option weights_dir)\n", files[k]);
            continue;
        }
        fclose(fp);
        const uint32_t sizes[] = {0, 262144, 4096}; /* the default (from the model's size), the largest, small */
        for (size_t z = 0; z < 3; z++) {
            wc_encode_opts o;
            wc_encode_opts_default(&o);
            o.threads = 2;
            if (sizes[z]) o.tile_weights = sizes[z];
            encode(files[k], th_path("real.wcodec"), &o);
            tally ty = {0};
            check_file(th_path("real.wcodec"), &ty);
            printf("# %s, tiles of %u weights (0: the default): %zu shards equal the reference decode; %zu of the split ones read "
                   "less than their record (%zu exactly the tiles of their rows); a rank of 2 reads %.1f%% (dim 0) "
                   "and %.1f%% (dim 1) of the coded records' bytes\n",
                   files[k], o.tile_weights, ty.shards, ty.partial_reads, ty.exact_reads,
                   100.0 * (double)ty.read[0] / (double)(ty.records[0] ? ty.records[0] : 1),
                   100.0 * (double)ty.read[1] / (double)(ty.records[1] ? ty.records[1] : 1));
            assert_true(ty.partial_reads > 0);
        }
        done++;
    }
    if (!done) skip();
}

static const char *structured_model(void)
{
    const char *src = th_structured_model();
    assert_non_null(src);
    return src;
}

/* Every prediction forced on every tile (each transform with it), tiles
 * narrower than the rows (37 weights: one row, 37 columns), of a few rows
 * (1000), fewer rows than the distance of top predictions and more, and
 * the whole tensor in one. */
static void test_forced_modes(void **state)
{
    (void)state;
    const char *src = structured_model();
    const uint32_t tiles[] = {37, 1000, 4000, 65536};
    const uint32_t dists[] = {0, 1, 12};
    for (int pred = 0; pred < 5; pred++)
        for (int tx = 0; tx < 3; tx++)
            for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++) {
                wc_encode_opts o;
                wc_encode_opts_default(&o);
                o.min_weights = 100, o.tile_weights = tiles[k], o.threads = 2;
                o.force_pred = pred, o.force_tx = tx, o.max_tables = k == 1 ? 1 : 8;
                o.top_distance = dists[(size_t)(pred + tx) % 3];
                encode(src, th_path("forced.wcodec"), &o);
                tally ty = {0};
                check_file(th_path("forced.wcodec"), &ty);
                if (tiles[k] < 65536) assert_true(ty.partial_reads > 0);
                /* tiles of one row and 37 columns, no look up: column shards take a tensor per row of tiles */
                if (tiles[k] == 37 && pred <= 1) assert_true(ty.per_row > 0);
            }
}

/* The modes of every tile redrawn at random (the streams stay valid: a
 * mode only says how the decoded symbols become values), so that tiles of
 * every mode sit beside and below each other: a planar tile whose left
 * neighbour only looks left still needs the tile above that neighbour. The
 * whole reference decode of the changed file is the expectation. */
static void test_random_modes(void **state)
{
    (void)state;
    const char *src = structured_model();
    const uint32_t tiles[] = {37, 500, 1000};
    for (size_t k = 0; k < sizeof tiles / sizeof tiles[0]; k++)
        for (uint64_t seed = 1; seed <= 4; seed++) {
            wc_encode_opts o;
            wc_encode_opts_default(&o);
            o.min_weights = 100, o.tile_weights = tiles[k], o.threads = 2;
            o.top_distance = seed == 1 ? 1 : seed == 2 ? 2 : 5;
            encode(src, th_path("mixed.wcodec"), &o);
            size_t size;
            uint8_t *img = th_read_file(th_path("mixed.wcodec"), &size);
            assert_non_null(img);
            wc_file *f;
            assert_int_equal(wc_file_open(&f, th_path("mixed.wcodec"), NULL), 0);
            uint64_t s = seed * 7919;
            for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
                const wc_entry *e = wc_file_entry(f, i);
                if (e->coding != WC_CODING_RANS_I8) continue;
                for (uint32_t t = 0; t < e->n_tiles; t++)
                    img[e->offset + e->index_off + 8ull * t + 4] = (uint8_t)(th_rand(&s) % 5 | th_rand(&s) % 3 << 4);
                th_rehash_record(img, i);
            }
            wc_file_close(f);
            th_reseal(img, size);
            assert_int_equal(th_write_file(th_path("mixed.wcodec"), img, size), 0);
            free(img);
            tally ty = {0};
            check_file(th_path("mixed.wcodec"), &ty);
            assert_true(ty.partial_reads > 0);
        }
}

/* A row shard of a tensor whose tiles look left at most decodes with the
 * stream of every tile outside its rows destroyed (states of 0, which any
 * decode of that tile refuses), and fails at once when one of its own is:
 * it reads no other tile. The record's checksum no longer matches, which a
 * shard does not check (its record is not read whole). */
static void test_other_tiles_destroyed(void **state)
{
    (void)state;
    const char *src = structured_model();
    for (int pred = 0; pred < 2; pred++) {
        wc_encode_opts o;
        wc_encode_opts_default(&o);
        o.min_weights = 100, o.tile_weights = 1000, o.threads = 2, o.force_pred = pred;
        encode(src, th_path("clean.wcodec"), &o);
        wc_file *f;
        wc_err err = {0};
        assert_int_equal(wc_file_open(&f, th_path("clean.wcodec"), &err), 0);
        const size_t i = (size_t)wc_file_find(f, "periodic.weight");
        const wc_entry ent = *wc_file_entry(f, i), *e = &ent; /* its numbers outlive f */
        assert_true(e->tiles_down >= 8 && e->tiles_across == 1);
        const uint64_t rows = e->rows, cols = e->cols, tr = e->tile_rows;
        uint8_t *want = malloc(rows * cols);
        float ws[96];
        assert_int_equal(wc_decode_tensor(f, i, want, rows * cols, ws, rows, &err), 0);
        size_t size;
        uint8_t *img = th_read_file(th_path("clean.wcodec"), &size);
        wc_file_close(f);
        for (uint32_t r = 0; r < 3; r++) {
            uint64_t start = 0, count = 0;
            torch_part(rows, 3, r, &start, &count);
            uint8_t *bad = malloc(size);
            memcpy(bad, img, size);
            uint32_t own = UINT32_MAX;
            for (uint32_t t = 0; t < e->n_tiles; t++) {
                const uint64_t r0 = (uint64_t)t * tr;
                const uint64_t at = e->offset + e->tiles_off + wc_rd32(img + e->offset + e->index_off + 8ull * t);
                if (r0 < start + count && r0 + tr > start) {
                    own = own == UINT32_MAX ? t : own;
                    continue;
                }
                memset(bad + at, 0, 4 * 32);
            }
            assert_int_equal(th_write_file(th_path("bad.wcodec"), bad, size), 0);
            assert_int_equal(wc_file_open(&f, th_path("bad.wcodec"), &err), 0);
            uint8_t *got = malloc(count * cols + 1);
            float gs[96];
            int rc = wc_decode_tensor_shard(f, i, 0, r, 3, got, count * cols, gs, count, &err);
            if (rc) fprintf(stderr, "%s\n", err.msg);
            assert_int_equal(rc, 0);
            assert_memory_equal(got, want + start * cols, count * cols);
            assert_memory_equal(gs, ws + start, 4 * count);
            /* the whole decode sees the damage */
            uint8_t *all = malloc(rows * cols);
            assert_int_equal(wc_decode_tensor(f, i, all, rows * cols, NULL, 0, &err), WC_ECHECKSUM);
            free(all);
            wc_file_close(f);
            /* one of its own tiles destroyed: it fails, naming the tile */
            memset(bad + e->offset + e->tiles_off + wc_rd32(img + e->offset + e->index_off + 8ull * own), 0, 4 * 32);
            assert_int_equal(th_write_file(th_path("bad.wcodec"), bad, size), 0);
            assert_int_equal(wc_file_open(&f, th_path("bad.wcodec"), &err), 0);
            assert_int_equal(wc_decode_tensor_shard(f, i, 0, r, 3, got, count * cols, NULL, 0, &err), WC_ECORRUPT);
            char tile[32];
            snprintf(tile, sizeof tile, "tile %u ", own);
            assert_true(th_msg_has(err.msg, "bad.wcodec", "'periodic.weight'", "shard", "of 3 along dim 0", tile,
                                   "end-state", NULL));
            wc_file_close(f);
            free(got);
            free(bad);
        }
        free(img);
        free(want);
    }
}

/* Requests that make no sense are refused with a message naming the file,
 * the tensor and the shard. */
static void test_bad_requests(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 100;
    encode(src, th_path("args.wcodec"), &o);
    wc_file *f;
    wc_err err = {0};
    assert_int_equal(wc_file_open(&f, th_path("args.wcodec"), &err), 0);
    const size_t m = (size_t)wc_file_find(f, "noise.weight"), v = (size_t)wc_file_find(f, "vec.bias");
    uint8_t buf[40 * 123];
    float sc[40];
    wc_shard_info si;
    assert_int_equal(wc_decode_tensor_shard(f, m, 0, 2, 2, buf, sizeof buf, NULL, 0, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "args.wcodec", "'noise.weight'", "shard 2 of 2", "rank", NULL));
    assert_int_equal(wc_shard_info_get(f, m, 0, 0, 0, &si, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "'noise.weight'", "shard 0 of 0 along dim 0", "number of shards 0", NULL));
    assert_int_equal(wc_shard_info_get(f, m, 2, 0, 2, &si, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "'noise.weight'", "along dim 2", "dim 0 or 1", NULL));
    assert_int_equal(wc_shard_info_get(f, m, -1, 0, 2, &si, &err), WC_EINVAL);
    assert_int_equal(wc_shard_info_get(f, v, 1, 0, 2, &si, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "'vec.bias'", "1 dimensions", "dim 0 only", NULL));
    /* n 1 is the whole tensor, whatever dim */
    assert_int_equal(wc_shard_info_get(f, v, 1, 0, 1, &si, &err), 0);
    assert_int_equal(si.out_bytes, 77 * 4);
    /* rows 20..39 of 40: 20 x 123 bytes and 20 scales */
    assert_int_equal(wc_shard_info_get(f, m, 0, 1, 2, &si, &err), 0);
    assert_int_equal(si.out_bytes, 20 * 123);
    assert_int_equal(si.n_scales, 20);
    assert_int_equal(si.scale_row0, 20);
    assert_int_equal(wc_decode_tensor_shard(f, m, 0, 1, 2, buf, 20 * 123 - 1, NULL, 0, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "'noise.weight'", "shard 1 of 2 along dim 0", "2459 bytes", "2460", NULL));
    assert_int_equal(wc_decode_tensor_shard(f, m, 0, 1, 2, buf, sizeof buf, sc, 19, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "room for 19 scales", "needs 20", NULL));
    /* columns 62..122 of 123 (the second of two): every row's scales */
    assert_int_equal(wc_shard_info_get(f, m, 1, 1, 2, &si, &err), 0);
    assert_int_equal(si.start, 62);
    assert_int_equal(si.len, 61);
    assert_int_equal(si.n_scales, 40);
    assert_int_equal(wc_decode_tensor_shard(f, wc_file_tensor_count(f), 0, 0, 2, buf, sizeof buf, NULL, 0, &err),
                     WC_EINVAL);
    wc_file_close(f);
}

/* Slices of chunks of a fixed size, the last one shorter (vLLM's padded
 * vocabulary: torch.chunk's sizes, not tensor_split's), put back together
 * along each dimension. */
static void test_slices(void **state)
{
    (void)state;
    const char *src = structured_model();
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 100, o.tile_weights = 500;
    encode(src, th_path("slices.wcodec"), &o);
    wc_file *f;
    wc_err err = {0};
    assert_int_equal(wc_file_open(&f, th_path("slices.wcodec"), &err), 0);
    const size_t m = (size_t)wc_file_find(f, "noise.weight"); /* 40 x 123 */
    uint8_t want[40 * 123], got[40 * 123], part[40 * 123];
    float ws[40], gs[40], ps[40];
    assert_int_equal(wc_decode_tensor(f, m, want, sizeof want, ws, 40, &err), 0);
    for (uint64_t a = 0; a < 40; a += 16) {
        const uint64_t len = a + 16 <= 40 ? 16 : 40 - a;
        assert_int_equal(wc_decode_tensor_slice(f, m, 0, a, len, got + a * 123, len * 123, gs + a, len, &err), 0);
    }
    assert_memory_equal(got, want, sizeof want);
    assert_memory_equal(gs, ws, sizeof ws);
    for (uint64_t a = 0; a < 123; a += 50) {
        const uint64_t len = a + 50 <= 123 ? 50 : 123 - a;
        assert_int_equal(wc_decode_tensor_slice(f, m, 1, a, len, part, 40 * len, ps, 40, &err), 0);
        for (uint64_t y = 0; y < 40; y++) memcpy(got + y * 123 + a, part + y * len, len);
        assert_memory_equal(ps, ws, sizeof ws);
    }
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(wc_decode_tensor_slice(f, m, 0, 30, 11, got, sizeof got, NULL, 0, &err), WC_EINVAL);
    assert_true(th_msg_has(err.msg, "slices.wcodec", "'noise.weight'", "slice [30, 41) along dim 0",
                           "beyond the 40 indices", NULL));
    wc_file_close(f);
}

/* The Llama layout's table (docs/SHARDING.md), name by name. */
static void test_llama_layout(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        int dim;
    } t[] = {
        {"model.embed_tokens.weight", 0},
        {"model.layers.0.self_attn.q_proj.weight", 0},
        {"model.layers.0.self_attn.k_proj.weight", 0},
        {"model.layers.31.self_attn.v_proj.weight", 0},
        {"model.layers.3.self_attn.q_proj.bias", 0},
        {"model.layers.3.self_attn.v_proj.bias", 0},
        {"model.layers.0.self_attn.o_proj.weight", 1},
        {"model.layers.0.self_attn.o_proj.bias", -1},
        {"model.layers.7.mlp.gate_proj.weight", 0},
        {"model.layers.7.mlp.up_proj.weight", 0},
        {"model.layers.7.mlp.down_proj.weight", 1},
        {"model.layers.7.input_layernorm.weight", -1},
        {"model.layers.7.post_attention_layernorm.weight", -1},
        {"model.norm.weight", -1},
        {"lm_head.weight", 0},
        {"model.layers.0.self_attn.rotary_emb.inv_freq", -1},
        {"model.layers.0.mlp.xup_proj.weight", -1}, /* a whole component only */
        {"up_proj.weight", 0},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        int dim = 7;
        assert_int_equal(wc_shard_layout_dim("llama", t[k].name, &dim), 0);
        if (dim != t[k].dim) fprintf(stderr, "%s: %d, want %d\n", t[k].name, dim, t[k].dim);
        assert_int_equal(dim, t[k].dim);
    }
    int dim;
    assert_int_equal(wc_shard_layout_dim("gpt2", "h.0.attn.c_attn.weight", &dim), WC_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_convention),
        cmocka_unit_test(test_forced_modes),
        cmocka_unit_test(test_random_modes),
        cmocka_unit_test(test_other_tiles_destroyed),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_llama_layout),
        cmocka_unit_test(test_real_files),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r;
}
