/* Tensor-parallel shards through wcodecd (issue 22): a model with Llama
 * names, each rank of 1..4 asking for its shards with layout "llama"; every
 * tensor a rank gets must equal libwcodec's CPU shard decode of the same
 * file (wc_decode_tensor_shard, itself checked against the whole decode by
 * test_shard), split ones carry their ShardOf, replicated ones come whole,
 * and the shards of all ranks put back together are the whole tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "helpers.h"

static wdt_env env;
static wdt_daemon daemon_;
static char model[256];

/* Llama-named tensors: split along 0 (q_proj, embed_tokens), along 1
 * (o_proj, down_proj), and replicated (the norm); sizes that 2 and 4
 * divide and 3 does not. */
static const struct {
    const char *name;
    uint64_t rows, cols;
} shapes[] = {
    {"model.embed_tokens.weight", 103, 64},
    {"model.layers.0.self_attn.q_proj.weight", 96, 64},
    {"model.layers.0.self_attn.o_proj.weight", 64, 96},
    {"model.layers.0.mlp.down_proj.weight", 64, 130},
    {"model.norm.weight", 64, 0},
};
#define N_T (sizeof shapes / sizeof shapes[0])

static int make_model(void)
{
    th_tensor t[N_T];
    float *bufs[N_T];
    uint64_t s = 7;
    for (size_t k = 0; k < N_T; k++) {
        uint64_t n = shapes[k].rows * (shapes[k].cols ? shapes[k].cols : 1);
        bufs[k] = malloc(n * sizeof(float));
        for (uint64_t i = 0; i < n; i++) bufs[k][i] = (float)((int64_t)(th_rand(&s) % 2001) - 1000) / 997.0f;
        t[k] = (th_tensor){shapes[k].name, WC_DT_F32, shapes[k].cols ? 2 : 1,
                           {shapes[k].rows, shapes[k].cols}, bufs[k]};
    }
    char src[256];
    snprintf(src, sizeof src, "%s/llama.safetensors", env.dir);
    snprintf(model, sizeof model, "%s/llama.wcodec", env.models);
    int r = th_write_safetensors(src, t, N_T);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    o.min_weights = 64;
    o.tile_weights = 1024; /* several tiles a tensor, so a shard reads some */
    wc_err e = {0};
    if (!r && (r = wc_encode_file(src, model, &o, &e))) fprintf(stderr, "encode: %s\n", e.msg);
    for (size_t k = 0; k < N_T; k++) free(bufs[k]);
    return r;
}

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env) || make_model()) return -1;
    return wdt_daemon_start(&daemon_, &env, "[cache]\nbudget = 1G\n", NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

static void check_rank(wc_client *c, uint64_t id, wc_file *f, uint32_t rank, uint32_t n)
{
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.tp_rank = rank, o.tp_size = n, o.tp_layout = "llama";
    wc_client_tensor **ts;
    size_t nt;
    wc_err e = {0};
    assert_int_equal(wc_client_get2(c, id, WC_SELECT_ALL, NULL, 0, &o, &ts, &nt, &e), 0);
    assert_int_equal(nt, wc_file_tensor_count(f));
    for (size_t k = 0; k < nt; k++) {
        const wc_client_tensor *t = ts[k];
        int i = wc_file_find(f, t->name);
        assert_true(i >= 0);
        int dim;
        assert_int_equal(wc_shard_layout_dim("llama", t->name, &dim), 0);
        wc_shard_info si;
        uint32_t cnt = dim >= 0 && n > 1 ? n : 1;
        assert_int_equal(wc_shard_info_get(f, (size_t)i, dim < 0 ? 0 : dim, cnt > 1 ? rank : 0, cnt, &si, &e), 0);
        assert_int_equal(t->size, si.out_bytes);
        assert_int_equal(t->n_scales, si.n_scales);
        if (cnt > 1) {
            assert_int_equal(t->tp_size, n);
            assert_int_equal(t->tp_rank, rank);
            assert_int_equal(t->shard_dim, dim);
            assert_int_equal(t->shard_start, si.start);
            assert_int_equal(t->shape[dim], si.len);
        } else {
            assert_int_equal(t->tp_size, 1);
            assert_int_equal(t->shard_dim, -1);
        }
        void *want = malloc(si.out_bytes ? si.out_bytes : 1);
        float *ws = si.n_scales ? malloc(si.n_scales * sizeof(float)) : NULL;
        assert_int_equal(wc_decode_tensor_shard(f, (size_t)i, dim < 0 ? 0 : dim, cnt > 1 ? rank : 0, cnt, want,
                                                si.out_bytes, ws, si.n_scales, &e), 0);
        assert_memory_equal(t->data, want, si.out_bytes);
        if (si.n_scales) assert_memory_equal(t->scales, ws, si.n_scales * sizeof(float));
        free(want);
        free(ws);
    }
    assert_int_equal(wc_client_release(c, ts, nt, &e), 0);
    wc_client_tensors_free(ts);
}

/* Every rank of 2, 3 and 4 (and 1: whole), against the CPU shard decode. */
static void test_ranks(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, model, &m, &e), 0);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, model, &e), 0);
    for (uint32_t n = 1; n <= 4; n++)
        for (uint32_t r = 0; r < n; r++) check_rank(c, m.id, f, r, n);
    wc_file_close(f);
    wc_client_close(c);
}

/* The shards of q_proj (rows) and o_proj (columns) over all ranks of 3
 * make the whole tensor, as wc_decode_tensor gives it. */
static void test_shards_make_the_whole(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, model, &m, &e), 0);
    wc_file *f;
    assert_int_equal(wc_file_open(&f, model, &e), 0);
    const char *names[] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.o_proj.weight"};
    for (int k = 0; k < 2; k++) {
        int i = wc_file_find(f, names[k]);
        wc_tensor_info ti;
        assert_int_equal(wc_file_tensor_info(f, (size_t)i, &ti), 0);
        int8_t *whole = malloc(ti.out_bytes), *got = calloc(1, ti.out_bytes);
        assert_int_equal(wc_decode_tensor(f, (size_t)i, whole, ti.out_bytes, NULL, 0, &e), 0);
        uint64_t rows = ti.shape[0], cols = ti.shape[1];
        for (uint32_t r = 0; r < 3; r++) {
            wc_client_get_opts o;
            wc_client_get_opts_default(&o);
            o.tp_rank = r, o.tp_size = 3, o.tp_layout = "llama";
            wc_client_tensor **ts;
            size_t nt;
            assert_int_equal(wc_client_get2(c, m.id, WC_SELECT_NAMES, &names[k], 1, &o, &ts, &nt, &e), 0);
            const wc_client_tensor *t = ts[0];
            assert_int_equal(t->tp_size, 3);
            const int8_t *d = t->data;
            for (uint64_t y = 0; y < t->shape[0]; y++)
                for (uint64_t x = 0; x < t->shape[1]; x++) {
                    uint64_t gy = t->shard_dim == 0 ? t->shard_start + y : y;
                    uint64_t gx = t->shard_dim == 1 ? t->shard_start + x : x;
                    got[gy * cols + gx] = d[y * t->shape[1] + x];
                }
            assert_int_equal(wc_client_release(c, ts, nt, &e), 0);
            wc_client_tensors_free(ts);
        }
        assert_memory_equal(got, whole, rows * cols);
        free(whole);
        free(got);
    }
    wc_file_close(f);
    wc_client_close(c);
}

/* A rank past the count, or shards without a layout: refused. */
static void test_bad_shards(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, model, &m, &e), 0);
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.tp_rank = 2, o.tp_size = 2, o.tp_layout = "llama";
    wc_client_tensor **ts;
    size_t nt;
    assert_int_equal(wc_client_get2(c, m.id, WC_SELECT_ALL, NULL, 0, &o, &ts, &nt, &e), WC_EINVAL);
    o.tp_rank = 0, o.tp_layout = "gpt-neox";
    assert_int_equal(wc_client_get2(c, m.id, WC_SELECT_ALL, NULL, 0, &o, &ts, &nt, &e), WC_EINVAL);
    assert_non_null(strstr(e.msg, "gpt-neox"));
    wc_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranks),
        cmocka_unit_test(test_shards_make_the_whole),
        cmocka_unit_test(test_bad_shards),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
