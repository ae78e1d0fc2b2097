/* The GPU decoder's descriptors: the host checks every record's head
 * (index, row map, tables) so that the kernels never parse a file, cuts the
 * tensors into batches that fit a ring slot, and writes the flat job, tile,
 * table and prediction descriptors of kernels.cuh. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "gpu_int.h"
#include "rans.h"

/* ---- per-tensor preparation (host checks of the record's head) ---- */

static int check_dst(const wc_file *f, const wc_entry *e, const wc_gpu_dst *d, wc_err *err)
{
    const uint64_t need = wc_entry_out_bytes(e);
    if (d->out_size < need)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': output buffer of %zu bytes, needs %llu",
                       wc_file_label(f), e->name, d->out_size, (unsigned long long)need);
    if (d->scales && (e->flags & WC_ENTRY_HAS_SCALES) && d->n_scales < e->rows)
        return wc_fail(err, WC_EINVAL, "%s: tensor '%s': room for %zu scales, needs %llu",
                       wc_file_label(f), e->name, d->n_scales, (unsigned long long)e->rows);
    return 0;
}

/* Checks the index, row map and tables of a coded tensor (the kernels trust them). */
static int prep_tensor(const wc_file *f, treq *t, wc_err *err)
{
    const wc_entry *e = t->e;
    const char *label = wc_file_label(f);
    t->coded = e->coding == WC_CODING_RANS_I8;
    if (!t->coded) return 0;
    const uint8_t *rec = t->rec;
    t->stream_bytes = e->size - e->tiles_off;
    t->scales_size = e->flags & WC_ENTRY_HAS_SCALES ? 4 * e->rows : 0;
    t->general = e->tile_rows > 1 && e->tile_cols < e->cols;
    if ((e->offset + e->tiles_off) & 3)
        return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': tile streams at offset %llu are not 4-byte aligned",
                       label, e->name, (unsigned long long)(e->offset + e->tiles_off));
    if (e->n_tables > 1) {
        const uint8_t *map = rec + t->scales_size;
        for (uint64_t r = 0; r < e->rows; r++)
            if (map[r] >= e->n_tables)
                return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': row %llu maps to table %u of %u (offset %llu)",
                               label, e->name, (unsigned long long)r, map[r], e->n_tables,
                               (unsigned long long)(e->offset + t->scales_size + r));
    }
    if (e->n_tables == 1) {
        wc_rans_table tab;
        size_t used;
        if (wc_rans_table_read(rec + e->tables_off, e->index_off - e->tables_off, e->prob_bits, &tab, &used))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': frequency table 0 at offset %llu is invalid", label,
                           e->name, (unsigned long long)(e->offset + e->tables_off));
        t->packed = 1;
        for (int s = 0; s < 256; s++) t->packed &= tab.freq[s] <= 4096;
    }
    for (uint32_t k = 0; k < e->n_tiles; k++) {
        const uint8_t *ent = rec + e->index_off + (uint64_t)WC_TILE_ENTRY * k;
        uint64_t begin = wc_rd32(ent);
        uint64_t end = k + 1 < e->n_tiles ? wc_rd32(ent + WC_TILE_ENTRY) : t->stream_bytes;
        uint32_t mode = ent[4];
        if ((mode & 15) > 4 || (mode >> 4) > 2 || ent[5] || ent[6] || ent[7] || (e->version < 2 && mode))
            return wc_fail(err, WC_EFORMAT,
                           "%s: tensor '%s': tile %u (index entry at offset %llu): unknown mode %u or "
                           "reserved bytes set",
                           label, e->name, k, (unsigned long long)(e->offset + e->index_off + 8ull * k), mode);
        if (end < begin || end > t->stream_bytes || (begin & 3))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': tile %u stream at offsets [%llu, %llu) is out of bounds",
                           label, e->name, k, (unsigned long long)(e->offset + e->tiles_off + begin),
                           (unsigned long long)(e->offset + e->tiles_off + end));
        if (mode & 15) t->has_pred = 1;
        if (mode >> 4) t->any_tx = 1;
    }
    return 0;
}

/* Bytes of the tensor's expanded tables (kernels.cuh). */
static uint64_t tables_bytes(const treq *t)
{
    const wc_entry *e = t->e;
    return t->packed ? WC_GPU_PACKED_BYTES(e->prob_bits) : (uint64_t)e->n_tables * WC_GPU_TABLE_BYTES(e->prob_bits);
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

/* Expands the tensor's tables into dst (tables_bytes(t) bytes). */
static int expand_tables(const wc_file *f, const treq *t, uint8_t *dst, wc_err *err)
{
    const wc_entry *e = t->e;
    uint64_t pos = e->tables_off;
    const uint32_t tb = WC_GPU_TABLE_BYTES(e->prob_bits);
    for (uint32_t k = 0; k < e->n_tables; k++) {
        wc_rans_table tab;
        size_t used;
        if (wc_rans_table_read(t->rec + pos, e->index_off - pos, e->prob_bits, &tab, &used))
            return wc_fail(err, WC_EFORMAT, "%s: tensor '%s': frequency table %u at offset %llu is invalid",
                           wc_file_label(f), e->name, k, (unsigned long long)(e->offset + pos));
        if (t->packed) {
            wc_rans_dec_table *dt = malloc(sizeof *dt);
            if (!dt) return wc_fail(err, WC_ENOMEM, "out of memory");
            wc_rans_dec_table_init(dt, &tab);
            memcpy(dst, dt->slot_dec, WC_GPU_PACKED_BYTES(e->prob_bits));
            free(dt);
            return 0;
        }
        wcg_expand_table(&tab, dst + (uint64_t)k * tb);
        pos += used;
    }
    return 0;
}

/* ---- batches: pieces of tensors and their descriptors ---- */

uint64_t wcg_tile_begin(const treq *t, uint32_t k)
{
    if (k >= t->e->n_tiles) return t->stream_bytes;
    return wc_rd32(t->rec + t->e->index_off + (uint64_t)WC_TILE_ENTRY * k);
}

/* Fixed descriptor bytes of a coded piece of n tiles. */
uint64_t wcg_piece_desc(const treq *t, uint32_t n, int first, int last)
{
    const wc_entry *e = t->e;
    uint64_t np = (n + WC_GPU_WARPS - 1) / WC_GPU_WARPS * WC_GPU_WARPS;
    uint64_t d = sizeof(wc_gpu_job) + 8 + 4 * (np / WC_GPU_WARPS) + (sizeof(wc_gpu_tile) + 1) * np + 112; /* a16 slack of the 7 shared regions */
    d += a16(tables_bytes(t));
    if (e->n_tables > 1) d += a16(e->rows);
    if (first && t->scales_size) d += a16(t->scales_size);
    if (last && t->has_pred) d += a16(e->n_tiles) + sizeof(wc_gpu_pred_job);
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
            uint64_t b0 = wcg_tile_begin(t, t0);
            while (t1 < e->n_tiles) {
                uint64_t b1 = wcg_tile_begin(t, t1 + 1);
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
            p.b0 = b0, p.b1 = wcg_tile_begin(t, t1);
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

/* Writes the descriptors of the coded pieces into desc (cap bytes). `src_base`
 * gives each piece's stream offset: the stream of tile k lies at
 * src_base[piece] + begin(k) in the data area. */
int wcg_build_desc(wc_gpu *g, const wc_file *f, const treq *rq, const piece *ps, size_t np,
                      const uint64_t *src_base, uint8_t *desc, uint64_t cap, layout *L,
                      size_t **job_tensor, size_t *job_cap, wc_err *err)
{
    uint32_t nj = 0, nb = 0, npred = 0;
    for (size_t i = 0; i < np; i++) {
        if (!rq[ps[i].t].coded) continue;
        nj++;
        nb += (ps[i].t1 - ps[i].t0 + WC_GPU_WARPS - 1) / WC_GPU_WARPS;
        npred += ps[i].last && rq[ps[i].t].has_pred;
    }
    memset(L, 0, sizeof *L);
    L->n_jobs = nj, L->n_blocks = nb;
    if (*job_cap < nj + 1) {
        size_t *nt = realloc(*job_tensor, (nj + 1) * sizeof *nt);
        if (!nt) return wc_fail(err, WC_ENOMEM, "out of memory");
        *job_tensor = nt;
        *job_cap = nj + 1;
    }
    uint64_t o = 0;
    L->jobs = o, o = a16(o + (uint64_t)nj * sizeof(wc_gpu_job));
    L->errs = o, o = a16(o + 8ull * nj);
    L->block_job = o, o = a16(o + 4ull * nb);
    L->tiles = o, o = a16(o + sizeof(wc_gpu_tile) * (uint64_t)nb * WC_GPU_WARPS);
    L->modes = o, o = a16(o + (uint64_t)nb * WC_GPU_WARPS);
    L->preds = o, o = a16(o + (uint64_t)npred * sizeof(wc_gpu_pred_job));
    if (o > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
    wc_gpu_job *jobs = (wc_gpu_job *)(desc + L->jobs);
    uint32_t *bj = (uint32_t *)(desc + L->block_job);
    wc_gpu_tile *tiles = (wc_gpu_tile *)(desc + L->tiles);
    uint8_t *modes = desc + L->modes;
    memset(desc + L->errs, 0xff, 8ull * nj);
    uint32_t j = 0, b = 0;
    int r;
    for (size_t i = 0; i < np; i++) {
        const piece *p = &ps[i];
        const treq *t = &rq[p->t];
        if (!t->coded) continue;
        const wc_entry *e = t->e;
        wc_gpu_job *jb = &jobs[j];
        memset(jb, 0, sizeof *jb);
        jb->out = t->dst.out;
        jb->rows = e->rows, jb->cols = e->cols;
        jb->tile_rows = e->tile_rows, jb->tile_cols = e->tile_cols, jb->tiles_across = e->tiles_across;
        jb->prob_bits = e->prob_bits, jb->n_tables = e->n_tables, jb->any_tx = (uint32_t)t->any_tx;
        jb->packed = (uint32_t)t->packed;
        const uint64_t tsz = tables_bytes(t);
        if (o + a16(tsz) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
        jb->tables_off = o;
        if ((r = expand_tables(f, t, desc + o, err))) return r;
        o = a16(o + tsz);
        if (tsz > L->smem) L->smem = (uint32_t)tsz;
        jb->rowmap_off = WC_GPU_NO_ROWMAP;
        if (e->n_tables > 1) {
            if (o + a16(e->rows) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            memcpy(desc + o, t->rec + t->scales_size, e->rows);
            jb->rowmap_off = o;
            o = a16(o + e->rows);
            L->multi = 1;
        }
        jb->scales_src = WC_GPU_NO_SCALES;
        if (p->first && t->scales_size && t->dst.scales) {
            if (o + a16(t->scales_size) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            memcpy(desc + o, t->rec, t->scales_size);
            jb->scales_src = o;
            jb->scales_dst = t->dst.scales;
            o = a16(o + t->scales_size);
        }
        if (p->last && t->has_pred) {
            if (o + a16(e->n_tiles) > cap) return wc_fail(err, WC_EINVAL, "GPU decoder: descriptor area overflow");
            for (uint32_t k = 0; k < e->n_tiles; k++)
                desc[o + k] = t->rec[e->index_off + (uint64_t)WC_TILE_ENTRY * k + 4];
            const uint64_t D = e->top_distance ? e->top_distance : 1;
            ((wc_gpu_pred_job *)(desc + L->preds))[L->n_preds++] = (wc_gpu_pred_job){
                .q = t->dst.out,
                .modes_off = o,
                .rows = e->rows,
                .cols = e->cols,
                .tile_rows = e->tile_rows,
                .tile_cols = e->tile_cols,
                .tiles_across = e->tiles_across,
                .top_distance = (uint32_t)D,
            };
            const uint64_t chains = D < e->rows ? D : e->rows;
            if (chains > L->max_chains) L->max_chains = chains;
            o = a16(o + e->n_tiles);
        }
        if (t->general) L->general = 1;
        (*job_tensor)[j] = p->t;
        const uint32_t cnt = p->t1 - p->t0;
        const uint32_t blocks = (cnt + WC_GPU_WARPS - 1) / WC_GPU_WARPS;
        for (uint32_t k = 0; k < blocks; k++) bj[b + k] = j | (k == 0 ? 1u << 31 : 0);
        for (uint32_t k = 0; k < blocks * WC_GPU_WARPS; k++) {
            wc_gpu_tile *tl = &tiles[(uint64_t)b * WC_GPU_WARPS + k];
            uint8_t *md = &modes[(uint64_t)b * WC_GPU_WARPS + k];
            if (k < cnt) {
                const uint32_t tn = p->t0 + k;
                const uint64_t beg = wcg_tile_begin(t, tn), end = wcg_tile_begin(t, tn + 1);
                tl->src = src_base[i] + beg;
                tl->len = (uint32_t)(end - beg > UINT32_MAX ? UINT32_MAX : end - beg);
                tl->tile = tn;
                *md = t->rec[e->index_off + (uint64_t)WC_TILE_ENTRY * tn + 4];
            } else {
                tl->src = 0, tl->len = 0, tl->tile = WC_GPU_TILE_PAD;
                *md = 0;
            }
        }
        b += blocks;
        j++;
    }
    L->end = o;
    if (L->smem > (uint32_t)g->max_smem - WC_GPU_STATIC_SMEM - 1024) L->smem = 0; /* tables from global memory */
    return 0;
}

wc_gpu_launch wcg_make_launch(const layout *L, const uint8_t *d_desc, const uint8_t *d_data)
{
    wc_gpu_launch l;
    memset(&l, 0, sizeof l);
    l.jobs = (const wc_gpu_job *)(d_desc + L->jobs);
    l.tiles = (const wc_gpu_tile *)(d_desc + L->tiles);
    l.modes = d_desc + L->modes;
    l.block_job = (const uint32_t *)(d_desc + L->block_job);
    l.data = d_data;
    l.desc = d_desc;
    l.errs = (unsigned long long *)(d_desc + L->errs);
    l.n_blocks = L->n_blocks;
    l.smem_bytes = L->smem;
    l.multi_table = (int)L->multi;
    l.general_tiles = (int)L->general;
    return l;
}

/* Launches the predictions of the jobs whose tensor ends in this launch. */
int wcg_launch_preds(wc_gpu *g, const layout *L, const uint8_t *d_desc, wc_err *err)
{
    if (!L->n_preds) return 0;
    int ce = wc_gpu_launch_predict((const wc_gpu_pred_job *)(d_desc + L->preds), L->n_preds, L->max_chains, d_desc,
                                   g->compute);
    return ce ? wcg_cuda_fail(err, (cudaError_t)ce, "prediction kernel launch") : 0;
}

/* Turns the error words of a finished launch into the first error. */
int wcg_check_errs(const wc_file *f, const treq *rq, const unsigned long long *errs, uint32_t n_jobs,
                      const size_t *job_tensor, wc_err *err)
{
    for (uint32_t j = 0; j < n_jobs; j++) {
        if (errs[j] == ~0ull) continue;
        const treq *t = &rq[job_tensor[j]];
        const wc_entry *e = t->e;
        uint32_t tile = (uint32_t)(errs[j] >> 8);
        uint64_t tr = tile / e->tiles_across, tc = tile % e->tiles_across;
        return wc_fail(err, WC_ECORRUPT,
                       "%s: tensor '%s': tile %u (rows %llu.., cols %llu..) at offset %llu fails its rANS "
                       "end-state check (found on the GPU)",
                       wc_file_label(f), e->name, tile, (unsigned long long)(tr * e->tile_rows),
                       (unsigned long long)(tc * e->tile_cols),
                       (unsigned long long)(e->offset + e->tiles_off + wcg_tile_begin(t, tile)));
    }
    return 0;
}

/* Prepares the requests: dst checks and record head checks. */
int wcg_prep_all(const wc_file *f, const wc_gpu_dst *dst, const size_t *which, size_t n, treq **out,
                    wc_err *err)
{
    treq *rq = calloc(n ? n : 1, sizeof *rq);
    if (!rq) return wc_fail(err, WC_ENOMEM, "out of memory");
    int r = 0;
    for (size_t k = 0; k < n && !r; k++) {
        rq[k].idx = which[k];
        rq[k].e = wc_file_entry(f, which[k]);
        rq[k].rec = wc_file_base(f) + rq[k].e->offset;
        rq[k].dst = dst[k];
        if (!(r = check_dst(f, rq[k].e, &dst[k], err))) r = prep_tensor(f, &rq[k], err);
    }
    if (r) {
        free(rq);
        return r;
    }
    *out = rq;
    return 0;
}
