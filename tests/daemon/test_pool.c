/* The daemon's pools without a device (issue 19): a stand-in GPU backend
 * whose arenas are host memory in 64 KiB granules drives the seam the GPU
 * backend uses (batches, shared arenas placed with wcd_spans, per-pool
 * budgets, LRU eviction that frees arenas as they empty), and every tensor
 * placed is compared with the CPU reference decode of the same file, so a
 * range handed out twice, or placed outside its arena, shows as wrong
 * bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "wcd.h"

#define GRANULE (64u << 10)

static wdt_env env;
static uv_loop_t loop;
static unsigned submits, blocks_made, blocks_freed;

static void fake_layout(const wcd_pool *p, const wc_tensor_info *ti, wcd_place *pl)
{
    (void)p;
    pl->offset = 0;
    pl->length = ti->out_bytes;
    pl->scales_offset = (ti->out_bytes + 255) / 256 * 256;
    pl->n_scales = ti->n_scales;
    uint64_t end = pl->scales_offset + ti->n_scales * 4;
    pl->span = ((end ? end : 1) + 255) / 256 * 256;
}

static int fake_block_new(wcd_pool *p, wcd_block *b, uint64_t size, const wcd_entry *first, wc_err *err)
{
    (void)p, (void)first, (void)err;
    b->size = (size + GRANULE - 1) / GRANULE * GRANULE;
    /* Poisoned, so that a tensor not written shows. */
    b->priv = malloc(b->size);
    memset(b->priv, 0xa5, b->size);
    blocks_made++;
    return 0;
}

static void fake_block_free(wcd_pool *p, wcd_block *b)
{
    (void)p;
    free(b->priv);
    blocks_freed++;
}

typedef struct fake_work {
    uv_work_t w;
    wcd_entry **es;
    uint32_t n;
    int status;
} fake_work;

static void fake_decode(uv_work_t *w)
{
    fake_work *fw = w->data;
    for (uint32_t i = 0; i < fw->n && !fw->status; i++) {
        wcd_entry *e = fw->es[i];
        char *base = e->block->priv;
        wc_err err;
        float *sc = e->at.n_scales ? (float *)(base + e->at.scales_offset) : NULL;
        fw->status = e->count > 1 ? wc_decode_tensor_shard(e->model->f, e->index, e->dim, e->rank, e->count,
                                                           base + e->at.offset, e->at.length, sc, e->at.n_scales, &err)
                                  : wc_decode_tensor(e->model->f, e->index, base + e->at.offset, e->at.length, sc,
                                                     e->at.n_scales, &err);
    }
}

static void fake_done(uv_work_t *w, int status)
{
    (void)status;
    fake_work *fw = w->data;
    for (uint32_t i = 0; i < fw->n; i++) wcd_cache_decoded(fw->es[i], fw->status, "fake decode failed");
    free(fw->es);
    free(fw);
}

static int fake_submit(wcd_pool *p, wcd_model *m, wcd_entry **es, uint32_t n, wc_err *err)
{
    (void)m, (void)err;
    fake_work *fw = calloc(1, sizeof *fw);
    fw->es = malloc(n * sizeof *es);
    memcpy(fw->es, es, n * sizeof *es);
    fw->n = n;
    fw->w.data = fw;
    submits++;
    uv_queue_work(p->cache->loop, &fw->w, fake_decode, fake_done);
    return 0;
}

static void fake_close(wcd_pool *p)
{
    free(p);
}

static const wcd_backend fake_backend = {
    .name = "fake-arena",
    .kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM,
    .shared_blocks = true,
    .layout = fake_layout,
    .block_new = fake_block_new,
    .block_free = fake_block_free,
    .submit = fake_submit,
    .close = fake_close,
};

/* A claim's completion: counts what came back. */
static unsigned done_ok, done_err;
static void claim_done(wcd_claim *cl, int status, const char *msg)
{
    (void)cl, (void)msg;
    if (status) done_err++;
    else done_ok++;
}

typedef struct fixture {
    wcd_cache cache;
    wcd_pool *pool;
    wcd_model *m;
} fixture;

static wcd_model *open_model(wcd_cache *c)
{
    int fd = open(env.model, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    wc_file *f;
    wc_err err = {0};
    assert_int_equal(wc_file_open(&f, env.model, &err), 0);
    wcd_model *m;
    assert_int_equal(wcd_cache_add_model(c, fd, env.model, "model.wcodec", f, 8, &m, &err), 0);
    return m;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    wcd_cache_init(&fx->cache, &loop);
    fx->pool = calloc(1, sizeof *fx->pool);
    fx->pool->be = &fake_backend;
    fx->pool->is_gpu = true;
    fx->pool->budget = 1ull << 40;
    snprintf(fx->pool->name, sizeof fx->pool->name, "fake GPU");
    wc_err err = {0};
    assert_int_equal(wcd_cache_add_pool(&fx->cache, fx->pool, &err), 0);
    fx->m = open_model(&fx->cache);
    submits = blocks_made = blocks_freed = done_ok = done_err = 0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    wcd_cache_fini(&fx->cache);
    free(fx);
    return 0;
}

/* Acquires the tensors and runs the loop until their batch is decoded. */
static int acquire(fixture *fx, wcd_model *m, wcd_claim *cl, const uint32_t *idx, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) cl[i] = (wcd_claim){.done = claim_done, .index = idx[i]};
    wc_err err = {0};
    wcd_view *v;
    assert_int_equal(wcd_model_view(m, fx->pool, 0, 0, "", &v, &err), 0);
    int r = wcd_cache_acquire(&fx->cache, v, m, cl, n, &err);
    if (r > 0) uv_run(&loop, UV_RUN_DEFAULT);
    return r < 0 ? r : 0;
}

static void check_bytes(const wcd_entry *e)
{
    void *data;
    float *scales;
    wdt_reference(&env, e->index, &data, &scales);
    const char *base = e->block->priv;
    assert_true(e->at.offset + e->at.length <= e->block->size);
    assert_memory_equal(base + e->at.offset, data, e->at.length);
    if (e->at.n_scales) assert_memory_equal(base + e->at.scales_offset, scales, e->at.n_scales * 4);
    free(data);
    free(scales);
}

/* A whole model in one request: one batch, one arena of whole granules
 * holding every tensor, each byte as the reference decodes it. */
static void test_one_batch_one_arena(void **state)
{
    fixture *fx = *state;
    uint32_t n = fx->m->n;
    wcd_claim *cl = calloc(n, sizeof *cl);
    uint32_t *idx = calloc(n ? n : 1, sizeof *idx);
    for (uint32_t i = 0; i < n; i++) idx[i] = i;
    assert_int_equal(acquire(fx, fx->m, cl, idx, n), 0);
    assert_int_equal(submits, 1);
    assert_int_equal(blocks_made, 1);
    assert_int_equal(done_ok, n);
    uint64_t spans = 0;
    for (uint32_t i = 0; i < n; i++) {
        assert_ptr_equal(cl[i].e->block, fx->pool->blocks);
        spans += cl[i].e->at.span;
        check_bytes(cl[i].e);
    }
    assert_int_equal(fx->pool->used, (spans + GRANULE - 1) / GRANULE * GRANULE);
    assert_int_equal(fx->pool->tensor_bytes, spans);
    assert_int_equal(fx->pool->blocks->entries, n);
    /* Asked again: hits, no decode. */
    wcd_claim *again = calloc(n, sizeof *again);
    assert_int_equal(acquire(fx, fx->m, again, idx, n), 0);
    assert_int_equal(submits, 1);
    assert_int_equal(fx->pool->hits, n);
    for (uint32_t i = 0; i < n; i++) {
        wcd_cache_unpin(cl[i].e);
        wcd_cache_unpin(again[i].e);
    }
    /* Idle now: evicting them frees the arena with its last tensor. */
    uint32_t ev;
    uint64_t bytes;
    wcd_cache_evict(&fx->cache, NULL, &ev, &bytes);
    assert_int_equal(ev, n);
    assert_int_equal(blocks_freed, 1);
    assert_int_equal(fx->pool->used, 0);
    assert_int_equal(fx->pool->tensor_bytes, 0);
    free(cl);
    free(again);
    free(idx);
}

/* Later tensors of the same model go where the first arena has room. */
static void test_later_tensors_fill_the_arena(void **state)
{
    fixture *fx = *state;
    uint32_t small[2] = {0, 1};
    wcd_claim a[1], b[1];
    assert_int_equal(acquire(fx, fx->m, a, &small[0], 1), 0);
    assert_true(a[0].e->at.span < GRANULE);
    assert_int_equal(acquire(fx, fx->m, b, &small[1], 1), 0);
    assert_int_equal(submits, 2);
    assert_int_equal(blocks_made, 1);
    assert_ptr_equal(a[0].e->block, b[0].e->block);
    assert_true(a[0].e->at.offset + a[0].e->at.span <= b[0].e->at.offset ||
                b[0].e->at.offset + b[0].e->at.span <= a[0].e->at.offset);
    check_bytes(a[0].e);
    check_bytes(b[0].e);
    /* Another model never shares it: a client mapping an arena sees only
     * a model it opened. */
    wcd_model *m2 = open_model(&fx->cache);
    wcd_claim c[1];
    assert_int_equal(acquire(fx, m2, c, &small[0], 1), 0);
    assert_int_equal(blocks_made, 2);
    assert_ptr_not_equal(c[0].e->block, a[0].e->block);
    wcd_cache_unpin(a[0].e);
    wcd_cache_unpin(b[0].e);
    wcd_cache_unpin(c[0].e);
}

/* A budget of a few granules: idle tensors of another model are evicted,
 * their arena freed, to make room; a leased one is never touched and a
 * request that cannot fit fails with WC_EBUDGET, leaving it intact. */
static void test_budget_evicts_idle_keeps_leased(void **state)
{
    fixture *fx = *state;
    uint32_t n = fx->m->n;
    uint32_t *idx = calloc(n ? n : 1, sizeof *idx);
    for (uint32_t i = 0; i < n; i++) idx[i] = i;
    wcd_claim *cl = calloc(n, sizeof *cl);
    assert_int_equal(acquire(fx, fx->m, cl, idx, n), 0);
    uint64_t whole = fx->pool->used;
    assert_true(whole > 2 * GRANULE);
    wcd_pool_set_budget(fx->pool, whole + GRANULE);
    /* Keep tensor 0 leased, the rest idle. */
    wcd_entry *kept = cl[0].e;
    wcd_cache_pin_to_lease(kept);
    for (uint32_t i = 1; i < n; i++) wcd_cache_unpin(cl[i].e);
    assert_int_equal(fx->pool->n_leased, 1);
    wcd_model *m2 = open_model(&fx->cache);
    wcd_claim *c2 = calloc(n, sizeof *c2);
    /* The whole second model needs the whole budget: the first arena holds
     * a leased tensor and cannot go, so it does not fit. */
    for (uint32_t i = 0; i < n; i++) c2[i] = (wcd_claim){.done = claim_done, .index = i};
    wc_err err = {0};
    wcd_view *v2;
    assert_int_equal(wcd_model_view(m2, fx->pool, 0, 0, "", &v2, &err), 0);
    assert_int_equal(wcd_cache_acquire(&fx->cache, v2, m2, c2, n, &err), WC_EBUDGET);
    assert_non_null(strstr(err.msg, "budget"));
    for (uint32_t i = 0; i < n; i++) assert_null(c2[i].e);
    assert_true(fx->pool->used <= fx->pool->budget);
    check_bytes(kept);
    /* One small tensor of it fits once the idle ones are evicted... */
    uint32_t one = 1;
    assert_int_equal(acquire(fx, m2, c2, &one, 1), 0);
    assert_true(fx->pool->evictions > 0);
    assert_true(fx->pool->used <= fx->pool->budget);
    check_bytes(kept);
    check_bytes(c2[0].e);
    /* ...and when the lease ends, the first model's arena goes. */
    unsigned freed = blocks_freed;
    wcd_cache_lease_end(kept);
    uint32_t ev;
    uint64_t bytes;
    wcd_cache_evict(&fx->cache, fx->m, &ev, &bytes);
    assert_int_equal(blocks_freed, freed + 1);
    wcd_cache_unpin(c2[0].e);
    free(cl);
    free(c2);
    free(idx);
}

/* A failed pool takes nothing more and drops its idle tensors. */
static void test_failed_pool(void **state)
{
    fixture *fx = *state;
    uint32_t i0 = 0;
    wcd_claim a[1];
    assert_int_equal(acquire(fx, fx->m, a, &i0, 1), 0);
    wcd_cache_unpin(a[0].e);
    assert_int_equal(fx->pool->n_entries, 1);
    wcd_pool_fail(fx->pool, "a sticky error (test)");
    assert_int_equal(fx->pool->n_entries, 0);
    assert_int_equal(fx->pool->used, 0);
    assert_null(wcd_cache_gpu_pool(&fx->cache, NULL, 0));
}

int main(void)
{
    if (wdt_env_init(&env)) return 1;
    uv_loop_init(&loop);
    wcd_log_level = WCD_LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_batch_one_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_later_tensors_fill_the_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_evicts_idle_keeps_leased, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_pool, setup, teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    uv_loop_close(&loop);
    wdt_env_fini(&env);
    return r;
}
