/* The GPU decoder's descriptors: the host checks every record's head
 * (index, row map, tables) so that the kernels never parse a file, cuts the
 * tensors into batches that fit a ring slot, and writes the flat job, tile
 * and table descriptors of kernels.cuh (the prediction jobs: gpu_pred.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_int.h"
#include "rans.h"
#include "record.h"

/* ---- per-tensor preparation (host checks of the record's head) ---- */

/* Checks the head of a coded tensor's record (the kernels trust it) with the
 * CPU decoder's reader, and notes what its tiles and tables need. As on the
 * CPU, a record that fails its checksum (with verify) is the cause of a
 * head that breaks the format. */
int wcg_prep_tensor(const wc_file *f, treq *t, bool verify, wc_err *err)
{
    const wc_entry *e = t->e;
    t->coded = e->coding == WC_CODING_RANS_I8;
    if (!t->coded) return 0;
    t->scales_size = wc_entry_scales_size(e);
    t->general = e->tile_rows > 1 && e->tile_cols < e->cols;
    int r = wc_rec_parse(&t->rec, e, t->head, wc_file_label(f), err);
    if (r == WC_EFORMAT && verify) {
        wc_err herr;
        const int hr = wc_record_verify(f, e, &herr);
        if (hr && err) *err = herr;
        if (hr) r = hr;
    }
    if (r) return r;
    t->packed = WC_GPU_PACKED_FITS(e->n_tables, e->prob_bits);
    for (uint32_t k = 0; k < e->n_tables; k++)
        for (int s = 0; s < 256; s++) t->packed &= t->rec.tables[k].freq[s] <= 4096;
    for (uint32_t k = 0; k < e->n_tiles; k++) {
        const uint8_t mode = wc_rec_mode(&t->rec, k);
        if (WC_MODE_PRED(mode)) t->has_pred = 1;
        if (WC_MODE_TX(mode)) t->any_tx = 1;
    }
    return 0;
}

/* Whether a piece of n tiles of t gets the packed tables. Packed tables
 * larger than the expanded ones (13 bits: 32 KB a table against 9 KB; two
 * of 13 or four of 12 bits take 64 KB) leave room beside them in a block
 * for little more than one small table (pack_blocks), so the warps that
 * the piece's tiles leave free in its blocks mostly stay idle: the packed
 * layout is worth it where that is at most an eighth of them (packing
 * every piece of 8 tiles or more cost the real slice 7%: its 12-tile
 * tensor of two 13-bit tables kept a block of 16 warps to itself;
 * bench/RESULTS.md#gpu-packed). */
static int piece_packed(const treq *t, uint32_t n)
{
    const wc_entry *e = t->e;
    if (!t->packed) return 0;
    if (WC_GPU_PACKED_BYTES(e->prob_bits) <= WC_GPU_TABLE_BYTES(e->prob_bits)) return 1;
    const uint32_t blocks = (n + WC_GPU_WARPS - 1) / WC_GPU_WARPS, idle = blocks * WC_GPU_WARPS - n;
    return 8 * idle <= blocks * WC_GPU_WARPS;
}

/* Bytes of the tensor's tables in the layout of kernels.cuh. */
static uint64_t tables_bytes(const treq *t, int packed)
{
    const wc_entry *e = t->e;
    return (uint64_t)e->n_tables * WC_GPU_ONE_TABLE_BYTES(packed, e->prob_bits);
}

void wcg_expand_table(const wc_rans_table *tab, uint8_t *dst)
{
    uint32_t fc[256];
    for (int s = 0; s < 256; s++) {
        fc[s] = tab->freq[s] | (uint32_t)tab->cum[s] << 16;
        memset(dst + 1024 + tab->cum[s], s, tab->freq[s]);
    }
    memcpy(dst, fc, sizeof fc);
}

/* Expands the tensor's tables into dst (tables_bytes(t, packed) bytes). */
static int expand_tables(const treq *t, int packed, uint8_t *dst, wc_err *err)
{
    const wc_entry *e = t->e;
    const uint32_t tb = WC_GPU_ONE_TABLE_BYTES(packed, e->prob_bits);
    wc_rans_dec_table *dt = packed ? malloc(sizeof *dt) : NULL;
    if (packed && !dt) return wc_fail(err, WC_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < e->n_tables; k++) {
        if (packed) {
            wc_rans_dec_table_init(dt, &t->rec.tables[k]);
            memcpy(dst + (uint64_t)k * tb, dt->slot_dec, tb);
        } else {
            wcg_expand_table(&t->rec.tables[k], dst + (uint64_t)k * tb);
        }
    }
    free(dt);
    return 0;
}

/* ---- batches: pieces of tensors and their descriptors ---- */

/* Fixed descriptor bytes of a coded piece of n tiles. */
uint64_t wcg_piece_desc(const treq *t, uint32_t n, int first, int last)
{
    const wc_entry *e = t->e;
    uint64_t np = (n + WC_GPU_WARPS - 1) / WC_GPU_WARPS * WC_GPU_WARPS;
    /* packing pieces into blocks (pack_blocks) never takes more blocks than a block per 16 tiles */
    uint64_t d = sizeof(wc_gpu_job) + 8 + (sizeof(wc_gpu_tile) + 1) * np + 112; /* a16 slack of the 7 shared regions */
    d += a16(tables_bytes(t, piece_packed(t, n)));
    if (e->n_tables > 1) d += a16(e->rows);
    if (first && t->scales_size) d += a16(t->scales_size);
    if (last && t->has_pred) d += a16(e->n_tiles) + sizeof(wc_gpu_pred_job) + 8; /* and two list entries */
    return d;
}

/* Fills pieces for one batch from the cursor within the data and descriptor
 * budgets. Returns the number of pieces, or a negative WC_E* code. */
long wcg_plan_batch(const treq *rq, size_t n_rq, cursor *c, uint64_t data_cap, uint64_t desc_cap,
                       piece **pp, size_t *cap, const wc_file *f, wc_err *err)
{
    uint64_t data = 0, desc = 0;
    long n = 0;
    while (c->t < n_rq) {
        const treq *t = &rq[c->t];
        const wc_entry *e = t->e;
        piece p = {.t = c->t, .first = c->at == 0};
        p.data_off = a16(data);
        if (!t->coded) {
            uint64_t total = e->size;
            if (total == 0) {
                c->t++, c->at = 0;
                continue;
            }
            if (p.data_off + 16 > data_cap) break;
            uint64_t take = total - c->at;
            if (take > data_cap - p.data_off) take = (data_cap - p.data_off) & ~(uint64_t)15;
            if (!take) break;
            p.b0 = c->at;
            p.b1 = c->at + take;
            data = p.data_off + take;
            c->at += take;
            p.last = c->at == total;
            if (p.last) c->t++, c->at = 0;
        } else {
            uint32_t t0 = (uint32_t)c->at, t1 = t0;
            uint64_t b0 = wc_rec_begin(&t->rec, t0);
            while (t1 < e->n_tiles) {
                uint64_t b1 = wc_rec_begin(&t->rec, t1 + 1);
                int last = t1 + 1 == e->n_tiles;
                if (p.data_off + (b1 - b0) > data_cap ||
                    desc + wcg_piece_desc(t, t1 + 1 - t0, p.first, last) > desc_cap)
                    break;
                t1++;
            }
            if (t1 == t0) {
                if (n == 0)
                    return wc_fail(err, WC_EINVAL,
                                   "%s: tensor '%s': tile %u does not fit the GPU decoder's ring (%llu data "
                                   "bytes, %llu descriptor bytes per slot); give it a larger ring_bytes",
                                   wc_file_label(f), e->name, t0, (unsigned long long)data_cap,
                                   (unsigned long long)desc_cap);
                break;
            }
            p.t0 = t0, p.t1 = t1;
            p.b0 = b0, p.b1 = wc_rec_begin(&t->rec, t1);
            p.last = t1 == e->n_tiles;
            data = p.data_off + (p.b1 - p.b0);
            desc += wcg_piece_desc(t, t1 - t0, p.first, p.last);
            c->at = t1;
            if (p.last) c->t++, c->at = 0;
        }
        if ((size_t)n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            piece *np = realloc(*pp, nc * sizeof *np);
            if (!np) return wc_fail(err, WC_ENOMEM, "out of memory");
            *pp = np, *cap = nc;
        }
        (*pp)[n++] = p;
    }
    return n;
}

/* Where a piece's tiles go: tile k in block `block`, warp `warp + k`, while
 * that is below WC_GPU_WARPS, with the tables at byte `tab` of the block's
 * shared memory; the rest fill the blocks after it, tables at 0. */
typedef struct place {
    uint32_t block, warp, tab;
} place;

/* Packs the coded pieces' tiles into blocks. A piece that fits one block
 * goes to the first of the last FIT_WINDOW blocks with warps free and room
 * for its tables (tb[i] bytes) within `budget`; any other starts in the
 * last block while that has a warp free and room, and fills new blocks
 * after it. Returns the number of blocks; *smem: the most table bytes of a
 * block. A block holds until its slowest warp is done, so small tensors
 * each in a block of their own would leave most of the GPU idle (the real
 * weights' tensors are 1-60 tiles each), and a piece with large packed
 * tables, which keeps later pieces out of its block, would otherwise close
 * the block before it with warps free. */
#define FIT_WINDOW 64
static uint32_t pack_blocks(const treq *rq, const piece *ps, size_t np, const uint64_t *tb, uint64_t budget,
                            place *pl, uint64_t *smem)
{
    uint32_t nb = 0, used[FIT_WINDOW];
    uint64_t bytes[FIT_WINDOW]; /* warps and table bytes taken, block b at b % FIT_WINDOW */
    *smem = 0;
    for (size_t i = 0; i < np; i++) {
        if (!rq[ps[i].t].coded) continue;
        const uint32_t cnt = ps[i].t1 - ps[i].t0;
        uint32_t b = nb;
        if (cnt <= WC_GPU_WARPS)
            for (b = nb > FIT_WINDOW ? nb - FIT_WINDOW : 0; b < nb; b++)
                if (used[b % FIT_WINDOW] + cnt <= WC_GPU_WARPS && bytes[b % FIT_WINDOW] + tb[i] <= budget) break;
        if (b == nb && nb > 0 && used[(nb - 1) % FIT_WINDOW] < WC_GPU_WARPS &&
            bytes[(nb - 1) % FIT_WINDOW] + tb[i] <= budget)
            b = nb - 1;
        if (b == nb) used[nb % FIT_WINDOW] = 0, bytes[nb % FIT_WINDOW] = 0, nb++;
        uint32_t *u = &used[b % FIT_WINDOW];
        uint64_t *s = &bytes[b % FIT_WINDOW];
        pl[i] = (place){b, *u, (uint32_t)*s};
        *s += tb[i];
        if (*s > *smem) *smem = *s;
        const uint32_t here = cnt < WC_GPU_WARPS - *u ? cnt : WC_GPU_WARPS - *u;
        *u += here;
        for (uint32_t rest = cnt - here; rest; nb++) { /* whole blocks after b, which is the last */
            const uint32_t k = rest < WC_GPU_WARPS ? rest : WC_GPU_WARPS;
            used[nb % FIT_WINDOW] = k, bytes[nb % FIT_WINDOW] = tb[i];
            rest -= k;
        }
    }
    return nb;
}

/* A block lasts as long as its longest tile, and blocks start in index
 * order as earlier ones end: the longest first, so that what runs last,
 * while SMs fall idle, is short (longest-processing-time order). cost[b]:
 * the most symbols of a tile of block b. Stable, so that equal blocks keep
 * file order. */
typedef struct block_key {
    uint64_t cost;
    uint32_t block;
} block_key;

static int block_cmp(const void *a, const void *b)
{
    const block_key *x = a, *y = b;
    if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
    return x->block < y->block ? -1 : x->block > y->block;
}

static int order_blocks(wc_gpu_tile *tiles, uint8_t *modes, const uint64_t *cost, uint32_t nb)
{
    block_key *k = malloc((nb ? nb : 1) * sizeof *k);
    wc_gpu_tile *t = malloc((size_t)(nb ? nb : 1) * WC_GPU_WARPS * sizeof *t);
    uint8_t *m = malloc((size_t)(nb ? nb : 1) * WC_GPU_WARPS);
    int r = k && t && m ? 0 : WC_ENOMEM;
    if (!r) {
        for (uint32_t b = 0; b < nb; b++) k[b] = (block_key){cost[b], b};
        qsort(k, nb, sizeof *k, block_cmp);
        memcpy(t, tiles, (size_t)nb * WC_GPU_WARPS * sizeof *t);
        memcpy(m, modes, (size_t)nb * WC_GPU_WARPS);
        for (uint32_t b = 0; b < nb; b++) {
            memcpy(tiles + (size_t)b * WC_GPU_WARPS, t + (size_t)k[b].block * WC_GPU_WARPS, WC_GPU_WARPS * sizeof *t);
            memcpy(modes + (size_t)b * WC_GPU_WARPS, m + (size_t)k[b].block * WC_GPU_WARPS, WC_GPU_WARPS);
        }
    }
    free(k);
    free(t);
    free(m);
    return r;
}

/* Writes the descriptors of the coded pieces into desc (cap bytes). `src_base`
 * gives each piece's stream offset: the stream of tile k lies at
 * src_base[piece] + begin(k) in the data area. */
int wcg_build_desc(wc_gpu *g, const treq *rq, const piece *ps, size_t np,
                      const uint64_t *src_base, uint8_t *desc, uint64_t cap, layout *L,
                      size_t **job_tensor, size_t *job_cap, wc_err *err)
{
    uint32_t nj = 0, npred = 0;
    uint64_t max_tb = 0;
    memset(L, 0, sizeof *L);
    uint64_t *tb = calloc(np ? np : 1, sizeof *tb);
    place *pl = calloc(np ? np : 1, sizeof *pl);
    uint64_t *cost = NULL;
    int r = 0;
    if (!tb || !pl) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < np; i++) {
        const treq *t = &rq[ps[i].t];
        if (!t->coded) continue;
        nj++;
        npred += ps[i].last && t->has_pred;
        tb[i] = a16(tables_bytes(t, piece_packed(t, ps[i].t1 - ps[i].t0)));
        if (tb[i] > max_tb) max_tb = tb[i];
        if (t->e->n_tables > 1) L->multi = 1;
        if (t->general) L->general = 1;
    }
    /* A block's tables within what leaves the SM its blocks (kernels.cuh);
     * tables too large for shared memory are read from global memory,
     * and then blocks are filled regardless of them. */
    const uint64_t fixed = WC_GPU_STATIC_SMEM + 1024; /* the rings, and what the system reserves a block */
    const uint64_t most = (uint64_t)g->max_smem;
    const uint64_t per = (uint64_t)g->smem_sm / WC_GPU_BLOCKS_PER_SM(L->multi || L->general);
    const uint64_t smem_most = most > fixed ? most - fixed : 0;
    uint64_t budget = per > fixed ? per - fixed : 0;
    if (budget > smem_most) budget = smem_most;
    if (budget < max_tb) budget = max_tb;
    const int shared = max_tb <= smem_most;
    if (!shared)
        for (size_t i = 0; i < np; i++) tb[i] = 0;
    uint64_t smem;
    const uint32_t nb = pack_blocks(rq, ps, np, tb, budget, pl, &smem);
    cost = calloc(nb ? nb : 1, sizeof *cost);
    if (!cost) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto done;
    }
    L->n_jobs = nj, L->n_blocks = nb;
    L->smem = shared ? (uint32_t)smem : 0;
    if (*job_cap < nj + 1) {
        size_t *nt = realloc(*job_tensor, (nj + 1) * sizeof *nt);
        if (!nt) {
            r = wc_fail(err, WC_ENOMEM, "out of memory");
            goto done;
        }
        *job_tensor = nt;
        *job_cap = nj + 1;
    }
    const uint64_t n_ent = (uint64_t)nb * WC_GPU_WARPS;
    uint64_t o = 0;
    L->jobs = o, o = a16(o + (uint64_t)nj * sizeof(wc_gpu_job));
    L->errs = o, o = a16(o + 8ull * nj);
    L->tiles = o, o = a16(o + sizeof(wc_gpu_tile) * n_ent);
    L->modes = o, o = a16(o + n_ent);
    L->preds = o, o = a16(o + (uint64_t)npred * sizeof(wc_gpu_pred_job));
    L->pred_idx = o, o = a16(o + 8ull * npred);
    if (o > cap) {
        r = wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
        goto done;
    }
    wc_gpu_job *jobs = (wc_gpu_job *)(desc + L->jobs);
    wc_gpu_tile *tiles = (wc_gpu_tile *)(desc + L->tiles);
    uint8_t *modes = desc + L->modes;
    memset(desc + L->errs, 0xff, 8ull * nj);
    memset(modes, 0, n_ent);
    for (uint64_t k = 0; k < n_ent; k++) tiles[k] = (wc_gpu_tile){.tile = WC_GPU_TILE_PAD};
    uint32_t j = 0;
    for (size_t i = 0; i < np; i++) {
        const piece *p = &ps[i];
        const treq *t = &rq[p->t];
        if (!t->coded) continue;
        const wc_entry *e = t->e;
        const uint32_t cnt = p->t1 - p->t0;
        const int packed = piece_packed(t, cnt);
        wc_gpu_job *jb = &jobs[j];
        memset(jb, 0, sizeof *jb);
        jb->out = t->dst.out;
        jb->rows = e->rows, jb->cols = e->cols;
        jb->tile_rows = e->tile_rows, jb->tile_cols = e->tile_cols, jb->tiles_across = e->tiles_across;
        jb->prob_bits = e->prob_bits, jb->n_tables = e->n_tables, jb->any_tx = (uint32_t)t->any_tx;
        jb->packed = (uint32_t)packed;
        const uint64_t tsz = tables_bytes(t, packed);
        if (o + a16(tsz) > cap) goto overflow;
        jb->tables_off = o;
        if ((r = expand_tables(t, packed, desc + o, err))) goto done;
        o = a16(o + tsz);
        jb->rowmap_off = WC_GPU_NO_ROWMAP;
        if (e->n_tables > 1) {
            if (o + a16(e->rows) > cap) goto overflow;
            memcpy(desc + o, t->rec.row_map, e->rows);
            jb->rowmap_off = o;
            o = a16(o + e->rows);
        }
        jb->scales_src = WC_GPU_NO_SCALES;
        if (p->first && t->scales_size && t->dst.scales) {
            if (o + a16(t->scales_size) > cap) goto overflow;
            memcpy(desc + o, t->head, t->scales_size);
            jb->scales_src = o;
            jb->scales_dst = t->dst.scales;
            o = a16(o + t->scales_size);
        }
        if (p->last && t->has_pred) {
            if (o + a16(e->n_tiles) > cap) goto overflow;
            wcg_add_pred(L, desc, o, t);
            o = a16(o + e->n_tiles);
        }
        (*job_tensor)[j] = p->t;
        /* tile k: in the piece's first block after its place's warp, then whole blocks */
        const uint64_t first = (uint64_t)pl[i].block * WC_GPU_WARPS + pl[i].warp;
        for (uint32_t k = 0; k < cnt; k++) {
            const uint64_t at = first + k;
            const int in_first = at < ((uint64_t)pl[i].block + 1) * WC_GPU_WARPS;
            const uint32_t tn = p->t0 + k;
            const uint64_t beg = wc_rec_begin(&t->rec, tn), end = wc_rec_begin(&t->rec, tn + 1);
            tiles[at] = (wc_gpu_tile){
                .src = src_base[i] + beg,
                .len = (uint32_t)(end - beg > UINT32_MAX ? UINT32_MAX : end - beg),
                .tile = tn,
                .job = j | (k == 0 && jb->scales_src != WC_GPU_NO_SCALES ? WC_GPU_JOB_SCALES : 0),
                .tab = in_first ? pl[i].tab : 0,
            };
            modes[at] = wc_rec_mode(&t->rec, tn);
            uint64_t r0, c0;
            uint32_t h, w;
            wc_tile_rect(e, tn, &r0, &c0, &h, &w);
            if ((uint64_t)h * w > cost[at / WC_GPU_WARPS]) cost[at / WC_GPU_WARPS] = (uint64_t)h * w;
        }
        j++;
    }
    wcg_list_preds(L, desc);
    if ((r = order_blocks(tiles, modes, cost, nb))) {
        r = wc_fail(err, r, "out of memory");
        goto done;
    }
    L->end = o;
    r = 0;
    goto done;
overflow:
    r = wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
done:
    free(tb);
    free(pl);
    free(cost);
    return r;
}

wc_gpu_launch wcg_make_launch(const layout *L, const uint8_t *d_desc, const uint8_t *d_data)
{
    wc_gpu_launch l;
    memset(&l, 0, sizeof l);
    l.jobs = (const wc_gpu_job *)(d_desc + L->jobs);
    l.tiles = (const wc_gpu_tile *)(d_desc + L->tiles);
    l.modes = d_desc + L->modes;
    l.data = d_data;
    l.desc = d_desc;
    l.errs = (unsigned long long *)(d_desc + L->errs);
    l.n_blocks = L->n_blocks;
    l.smem_bytes = L->smem;
    l.multi_table = (int)L->multi;
    l.general_tiles = (int)L->general;
    return l;
}

/* Turns the error words of a finished launch into the first error. */
int wcg_check_errs(const wc_file *f, const treq *rq, const unsigned long long *errs, uint32_t n_jobs,
                      const size_t *job_tensor, wc_err *err)
{
    for (uint32_t j = 0; j < n_jobs; j++) {
        if (errs[j] == ~0ull) continue;
        const treq *t = &rq[job_tensor[j]];
        const wc_entry *e = t->e;
        const uint32_t tile = (uint32_t)(errs[j] >> 8);
        uint64_t r0, c0;
        uint32_t h, w;
        wc_tile_rect(e, tile, &r0, &c0, &h, &w);
        return wc_fail(err, WC_ECORRUPT,
                       "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails its rANS "
                       "end-state check (found on the GPU)",
                       wc_file_label(f), e->name, tile, (unsigned long long)r0, (unsigned long long)c0,
                       (unsigned long long)wc_rec_stream_at(&t->rec, tile));
    }
    return 0;
}

void wcg_free_reqs(treq *rq, size_t n)
{
    if (!rq) return;
    for (size_t k = 0; k < n; k++) {
        wc_rec_free(&rq[k].rec);
        free(rq[k].head);
    }
    free(rq);
}

/* Reads the head of a coded tensor's record through the file's descriptor. */
static int read_head(const wc_file *f, treq *t, wc_err *err)
{
    const wc_entry *e = t->e;
    if (e->coding != WC_CODING_RANS_I8) return 0;
    if (!(t->head = malloc(e->tiles_off))) return wc_fail(err, WC_ENOMEM, "out of memory");
    return wc_file_pread(f, e, e->offset, e->tiles_off, t->head, err);
}

/* Prepares the requests: dst checks and record head checks. */
int wcg_prep_all(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, bool verify, treq **out,
                 wc_err *err)
{
    treq *rq = calloc(n ? n : 1, sizeof *rq);
    if (!rq) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    for (size_t k = 0; k < n && !r; k++) {
        rq[k].idx = which[k];
        rq[k].e = wc_file_entry(f, which[k]);
        rq[k].dst = dst[k];
        r = wc_entry_check_dst(f, rq[k].e, dst[k].out_size, dst[k].scales, dst[k].n_scales, err);
        if (!r) r = read_head(f, &rq[k], err);
        if (!r) r = wcg_prep_tensor(f, &rq[k], verify, err);
    }
    if (r) {
        wcg_free_reqs(rq, n);
        return r;
    }
    *out = rq;
    return 0;
}
