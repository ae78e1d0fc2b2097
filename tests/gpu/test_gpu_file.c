/* The GPU decoder's host side reads the file that was opened, through the
 * wc_file's own descriptor, without a device: the CPU fallback, the record
 * heads that descriptors are built from (wcg_prep_all), and the io threads'
 * reads and hashes (wcg_io_attach, as the pipeline sets them up). A model
 * replaced by rename after open, and a relative path after a chdir to a
 * folder holding another file of that name, give the opened file's bytes
 * (the pipeline used to reopen the file by its label; issue 17). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "gpu_int.h"
#include "helpers.h"

/* f (opened on a file whose bytes are img, which its name no longer
 * names) through the GPU decoder's host side without a device. */
static void check_host_side(const wc_file *f, const uint8_t *img, size_t img_size)
{
    assert_int_equal(wc_file_size(f), img_size);
    const size_t n = wc_file_tensor_count(f);
    wc_err e = {0};
    /* the CPU fallback, against the CPU decoder */
    wc_gpu_opts go;
    wc_gpu_opts_default(&go);
    go.force_cpu = true;
    wc_gpu *g;
    assert_int_equal(wc_gpu_create(&g, &go, &e), 0);
    assert_int_equal(wc_gpu_backend(g), WC_BACKEND_CPU);
    wc_gpu_dst *dst = calloc(n, sizeof *dst);
    size_t *which = calloc(n, sizeof *which);
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        dst[i] = (wc_gpu_dst){malloc(ti.out_bytes + 1), ti.out_bytes, malloc(4 * ti.n_scales + 4), ti.n_scales};
        which[i] = i;
    }
    if (wc_gpu_decode_file(g, f, dst, &e)) fail_msg("%s", e.msg);
    for (size_t i = 0; i < n; i++) {
        uint8_t *ref = malloc(dst[i].out_size + 1);
        assert_int_equal(wc_decode_tensor(f, i, ref, dst[i].out_size, NULL, 0, &e), 0);
        assert_memory_equal(ref, dst[i].out, dst[i].out_size);
        free(ref);
    }
    /* the record heads the descriptors are built from: the opened file's */
    treq *rq;
    if (wcg_prep_all(f, dst, which, n, true, &rq, &e)) fail_msg("%s", e.msg);
    size_t coded = 0;
    for (size_t k = 0; k < n; k++)
        if (rq[k].coded) {
            assert_memory_equal(rq[k].head, img + rq[k].e->offset, rq[k].e->tiles_off);
            coded++;
        }
    assert_true(coded > 0);
    /* the io threads' reads and hashes of every record */
    io_pool p;
    assert_int_equal(wcg_io_start(&p, 2), 0);
    wcg_io_attach(&p, f);
    for (size_t k = 0; k < n; k++) {
        const wc_entry *en = rq[k].e;
        uint8_t *buf = malloc(en->size + 1);
        io_task rd = {.kind = 0, .off = en->offset, .len = en->size, .dst = buf, .tensor = k};
        const io_task h = {.kind = 1, .off = en->offset, .len = en->size, .hash = en->hash, .tensor = k};
        assert_int_equal(wcg_io_queue(&p, &h), 0);
        wcg_io_run(&p, &rd, 1);
        assert_int_equal(rd.result, 0);
        assert_memory_equal(buf, img + en->offset, en->size);
        free(buf);
    }
    io_task bad;
    assert_false(wcg_io_bg_failed(&p, true, &bad));
    wcg_io_stop(&p);
    wcg_free_reqs(rq, n);
    for (size_t i = 0; i < n; i++) free(dst[i].out), free(dst[i].scales);
    free(dst);
    free(which);
    wc_gpu_destroy(g);
}

static void test_replaced_by_rename(void **state)
{
    (void)state;
    char *path = strdup(th_path("model.wcodec")), *next = strdup(th_path("next.wcodec"));
    assert_int_equal(th_encode_model(path, 200, 1), 0);
    assert_int_equal(th_encode_model(next, 70, 2), 0);
    size_t n;
    uint8_t *img = th_read_file(path, &n);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    assert_int_equal(rename(next, path), 0);
    check_host_side(f, img, n);
    wc_file_close(f);
    free(img), free(path), free(next);
}

static void test_relative_path_after_chdir(void **state)
{
    (void)state;
    char *a = strdup(th_path("a")), *b = strdup(th_path("b")), pa[4096], pb[4096], cwd[4096];
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    snprintf(pa, sizeof pa, "%s/m.wcodec", a);
    snprintf(pb, sizeof pb, "%s/m.wcodec", b);
    assert_int_equal(th_encode_model(pa, 160, 3), 0);
    assert_int_equal(th_encode_model(pb, 90, 4), 0);
    size_t n;
    uint8_t *img = th_read_file(pa, &n);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(a), 0);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, "m.wcodec", &e), 0);
    assert_int_equal(chdir(b), 0);
    check_host_side(f, img, n);
    wc_file_close(f);
    assert_int_equal(chdir(cwd), 0);
    unlink(pa), unlink(pb), rmdir(a), rmdir(b);
    free(img), free(a), free(b);
}

static int teardown(void **state)
{
    (void)state;
    th_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_replaced_by_rename),
                                       cmocka_unit_test(test_relative_path_after_chdir)};
    return cmocka_run_group_tests(tests, NULL, teardown) ? 1 : 0;
}
