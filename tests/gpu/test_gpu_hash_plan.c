/* The host side of the device record hashes (cuda/gpu_hash.c) without a
 * device: a file's records planned into batches as the pipeline plans them
 * (wcg_plan_batch, with small batches so that records span several),
 * wcg_hash_plan's jobs run through the reference (wcg_xxh3_stream_add on a
 * copy of the states, standing for the device's), and wcg_hash_finish
 * comparing each record with its stored hash. Checked: every coded record
 * long enough is taken, each job's split is the one its state calls for,
 * every hash passes on the file, and a byte changed in a tile stream or a
 * record head fails its record's hash (WC_ECHECKSUM naming the tensor).
 *
 * usage: test_gpu_hash_plan FILE.wcodec */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "gpu_int.h"
#include "helpers.h"

static const char *model;

/* Plans and "runs" every batch of f with data_cap bytes a batch; returns
 * the first error (0: every record's hash passed), the records taken in
 * *taken and the coded records long enough in *eligible. */
static int run(const wc_file *f, uint64_t data_cap, size_t *taken, size_t *eligible, size_t *spanning, wc_err *e)
{
    const size_t n = wc_file_tensor_count(f);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    size_t *which = calloc(n, sizeof *which);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        dst[i] = (wc_gpu_dst){malloc(ti.out_bytes + 1), ti.out_bytes, malloc(4 * ti.n_scales + 4), ti.n_scales};
        which[i] = i;
    }
    treq *rq;
    int r = wcg_prep_all(f, dst, which, n, true, &rq, e);
    if (r) goto out;
    /* a decoder as far as the plan needs one: checksums on, a hash stream
     * (never used here), the states; one slot whose "device" data is here */
    wc_gpu g;
    memset(&g, 0, sizeof g);
    g.o.verify_checksums = true;
    g.hash = (cudaStream_t)&g;
    g.h_states = calloc(n, sizeof *g.h_states);
    wcg_xxh3_stream *dev = calloc(n, sizeof *dev); /* the device's copy of the states */
    slot *sl = &g.slots[0];
    sl->d_data = malloc(data_cap);
    sl->h_jobs = calloc(HASH_JOBS, sizeof *sl->h_jobs);
    *taken = *eligible = *spanning = 0;
    for (size_t k = 0; k < n; k++) *eligible += rq[k].coded && rq[k].e->size >= WCG_XXH3_MIN_LONG;
    cursor c = {0, 0};
    piece *ps = NULL;
    size_t cap = 0;
    long np;
    while (!r && (np = wcg_plan_batch(rq, n, &c, data_cap, data_cap, &ps, &cap, f, e)) > 0) {
        /* the batch's reads: its tile streams at their places in the slot */
        for (long i = 0; i < np && !r; i++) {
            const piece *p = &ps[i];
            const treq *t = &rq[p->t];
            const uint64_t off = t->e->offset + (t->coded ? t->e->tiles_off : 0) + p->b0;
            r = wc_file_pread(f, t->e, off, p->b1 - p->b0, sl->d_data + p->data_off, e);
        }
        if (r || (r = wcg_hash_plan(&g, sl, rq, ps, np, e))) break;
        for (uint32_t k = 0; k < sl->n_init; k++) dev[sl->init[k]] = g.h_states[sl->init[k]], ++*taken;
        for (long i = 0; i < np; i++) *spanning += rq[ps[i].t].gpu_hash && !ps[i].first;
        uint64_t sums = 0;
        for (uint32_t k = 0; k < sl->n_hjobs; k++) {
            const wcg_hash_job *j = &sl->h_jobs[k];
            const wcg_xxh3_split x = wcg_xxh3_split_of(dev[j->state].at, j->n, dev[j->state].len);
            assert_int_equal(x.head, j->head);
            assert_int_equal(x.blocks, j->blocks);
            assert_int_equal(j->sums, sums);
            sums += j->blocks;
            wcg_xxh3_stream_add(&dev[j->state], j->src, (size_t)j->n); /* what the kernels do */
        }
        for (uint32_t k = 0; k < sl->n_fin; k++) g.h_states[sl->fin[k]] = dev[sl->fin[k]];
        r = wcg_hash_finish(&g, sl, f, rq, e);
    }
    if (!r && np < 0) r = (int)np;
    free(ps);
    free(sl->d_data);
    free(sl->h_jobs);
    free(g.h_states);
    free(dev);
    wcg_free_reqs(rq, n);
out:
    for (size_t i = 0; i < n; i++) free(dst[i].out), free(dst[i].scales);
    free(dst);
    free(which);
    return r;
}

static void whole_file(void **state)
{
    (void)state;
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, model, &e), 0);
    for (uint64_t cap = 256 << 10; cap <= 16 << 20; cap *= 8) {
        size_t taken, eligible, spanning;
        if (run(f, cap, &taken, &eligible, &spanning, &e))
            fail_msg("batches of %llu bytes: %s", (unsigned long long)cap, e.msg);
        assert_true(eligible > 0);
        assert_int_equal(taken, eligible);
        if (cap == 256 << 10) assert_true(spanning > 0); /* records continued from an earlier batch */
        printf("# batches of %llu bytes: %zu records hashed by the plan (%zu pieces continuing a record), "
               "every hash equal\n", (unsigned long long)cap, taken, spanning);
    }
    wc_file_close(f);
}

/* the largest coded record's image with one byte changed at `at` (relative
 * to the record); the test expects that record named */
static void damaged(bool in_head)
{
    size_t size;
    uint8_t *img = th_read_file(model, &size);
    assert_non_null(img);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, model, &e), 0);
    size_t big = SIZE_MAX;
    uint64_t best = 0;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.coding == WC_CODING_RANS_I8 && ti.stored_bytes > best) best = ti.stored_bytes, big = i;
    }
    assert_true(big != SIZE_MAX);
    wc_tensor_info ti;
    wc_file_tensor_info(f, big, &ti);
    char name[256];
    snprintf(name, sizeof name, "'%s'", ti.name); /* the wc_file owns ti.name */
    const wc_entry *en = wc_file_entry(f, big);
    const uint64_t at = in_head ? 5 : en->tiles_off + (en->size - en->tiles_off) / 2;
    img[en->offset + at] ^= 0x10;
    wc_file_close(f);
    const char *path = th_path(in_head ? "head.wcodec" : "stream.wcodec");
    assert_int_equal(th_write_file(path, img, size), 0);
    free(img);
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    size_t taken, eligible, spanning;
    int r = run(f, 256 << 10, &taken, &eligible, &spanning, &e);
    assert_int_equal(r, WC_ECHECKSUM);
    assert_non_null(strstr(e.msg, name));
    wc_file_close(f);
}

static void damaged_stream(void **state)
{
    (void)state;
    damaged(false);
}

static void damaged_head(void **state)
{
    (void)state;
    damaged(true);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_gpu_hash_plan FILE.wcodec\n");
        return 2;
    }
    model = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(whole_file),
        cmocka_unit_test(damaged_stream),
        cmocka_unit_test(damaged_head),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    th_cleanup();
    return r;
}
