/* The GPU decoder's prediction descriptors: a job for each tensor with
 * predicted tiles whose last piece is in the batch, the kernels it needs
 * (predictor_reconstruct.cu), each kernel's list of jobs and the sizes of
 * its launch (kernels.cuh, wc_gpu_pred_sizes). */
#include "gpu_int.h"
#include "record.h"

/* Which of the prediction kernels a tensor needs (WC_GPU_PRED_*), from its
 * tiles' modes: a row of tiles reading the row D above is chained; one
 * that does not but has a left tile is free. The chains of a tensor one
 * tile wide take a kernel of their own where its tiles are all none or
 * top (TOP: a thread per 16 columns) or its rows are narrow (NARROW: a
 * thread per chain). */
static uint32_t pred_kinds(const uint8_t *modes, const wc_entry *e)
{
    const uint32_t n_tiles = e->n_tiles, across = e->tiles_across;
    uint32_t kinds = 0;
    int top_only = across == 1 && e->cols <= WC_GPU_PRED_TOP_W;
    for (uint32_t t0 = 0; t0 < n_tiles; t0 += across) {
        int chained = 0, left = 0;
        for (uint32_t k = t0; k < t0 + across && k < n_tiles; k++) {
            const uint32_t pm = modes[k] & 15;
            chained |= pm >= 2;
            left |= pm == 1;
            top_only &= pm == 0 || pm == 2;
        }
        kinds |= chained ? WC_GPU_PRED_CHAINS : left ? WC_GPU_PRED_FREE : 0;
    }
    if (!(kinds & WC_GPU_PRED_CHAINS)) return kinds;
    if (top_only) return kinds | WC_GPU_PRED_TOP;
    return across == 1 && e->cols <= WC_GPU_PRED_NARROW_W ? kinds | WC_GPU_PRED_NARROW : kinds;
}

void wcg_add_pred(layout *L, uint8_t *desc, uint64_t o, const treq *t)
{
    const wc_entry *e = t->e;
    for (uint32_t k = 0; k < e->n_tiles; k++) desc[o + k] = wc_rec_mode(&t->rec, k);
    ((wc_gpu_pred_job *)(desc + L->preds))[L->n_preds++] = (wc_gpu_pred_job){
        .q = t->dst.out,
        .modes_off = o,
        .rows = e->rows,
        .cols = e->cols,
        .tile_rows = e->tile_rows,
        .tile_cols = e->tile_cols,
        .tiles_across = e->tiles_across,
        .top_distance = e->top_distance ? e->top_distance : 1,
        .kinds = pred_kinds(desc + o, e),
    };
}

/* The chain kernel a job's chained rows go to: 1 the general one, 2 top,
 * 3 narrow (the order of the lists), 0 none. */
static int chain_list(uint32_t kinds)
{
    if (!(kinds & WC_GPU_PRED_CHAINS)) return 0;
    return kinds & WC_GPU_PRED_TOP ? 2 : kinds & WC_GPU_PRED_NARROW ? 3 : 1;
}

static void raise_to(uint64_t *most, uint64_t v)
{
    if (v > *most) *most = v;
}

void wcg_list_preds(layout *L, uint8_t *desc)
{
    const wc_gpu_pred_job *pj = (const wc_gpu_pred_job *)(desc + L->preds);
    uint32_t *idx = (uint32_t *)(desc + L->pred_idx);
    wc_gpu_pred_sizes *ps = &L->pred;
    uint32_t *count[4] = {&ps->n_free, &ps->n_chain, &ps->n_top, &ps->n_narrow};
    for (int list = 0; list < 4; list++)
        for (uint32_t k = 0; k < L->n_preds; k++) {
            const wc_gpu_pred_job *p = &pj[k];
            if (list == 0 ? !(p->kinds & WC_GPU_PRED_FREE) : chain_list(p->kinds) != list) continue;
            *idx++ = k, ++*count[list];
            const uint64_t chains = p->top_distance < p->rows ? p->top_distance : p->rows;
            if (list == 0) raise_to(&ps->free_rows, p->rows);
            if (list == 1) raise_to(&ps->max_chains, chains);
            if (list == 2) raise_to(&ps->max_top_chains, chains), raise_to(&ps->top_cols, p->cols);
            if (list == 3) raise_to(&ps->max_narrow_chains, chains);
        }
}

int wcg_launch_preds(wc_gpu *g, const layout *L, const uint8_t *d_desc, wc_err *err)
{
    if (!L->n_preds) return 0;
    int ce = wc_gpu_launch_predict((const wc_gpu_pred_job *)(d_desc + L->preds),
                                   (const uint32_t *)(d_desc + L->pred_idx), &L->pred, d_desc, g->compute);
    return ce ? wcg_cuda_fail(err, (cudaError_t)ce, "prediction kernel launch") : 0;
}
