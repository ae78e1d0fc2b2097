/* A wc_file reads the file it opened, through its own descriptor, whatever
 * happens to the name afterwards (issue 17): replaced by rename (the usual
 * deploy), a relative path after a chdir; and a file that shrinks after it
 * was opened gives a clear error naming the file, the tensor and the offset,
 * where a shared mapping of it died of SIGBUS (issue 16, fault 1). */
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

#include "helpers.h"
#include "wcodec/wcodec.h"

/* Every tensor of f decodes to what `ref` (a file holding the bytes f was
 * opened on) gives. */
static void assert_same_tensors(const wc_file *f, const char *ref)
{
    wc_file *r;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&r, ref, &e), 0);
    assert_int_equal(wc_file_tensor_count(f), wc_file_tensor_count(r));
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        assert_int_equal(wc_file_tensor_info(f, i, &ti), 0);
        uint8_t *got = malloc(ti.out_bytes + 1), *want = malloc(ti.out_bytes + 1);
        float *gs = malloc(4 * ti.n_scales + 4), *ws = malloc(4 * ti.n_scales + 4);
        if (wc_decode_tensor(f, i, got, ti.out_bytes, gs, ti.n_scales, &e)) fail_msg("%s", e.msg);
        assert_int_equal(wc_decode_tensor(r, i, want, ti.out_bytes, ws, ti.n_scales, &e), 0);
        assert_memory_equal(got, want, ti.out_bytes);
        assert_memory_equal(gs, ws, 4 * ti.n_scales);
        wc_tensor_stats st; /* reads the record's head again */
        if (wc_tensor_stats_get(f, i, &st, &e)) fail_msg("%s", e.msg);
        free(got), free(want), free(gs), free(ws);
    }
    if (wc_file_verify(f, &e)) fail_msg("%s", e.msg);
    wc_file_close(r);
}

static char *copy_of(const char *from, const char *name)
{
    size_t n;
    uint8_t *p = th_read_file(from, &n);
    assert_non_null(p);
    char *to = strdup(th_path(name));
    assert_int_equal(th_write_file(to, p, n), 0);
    free(p);
    return to;
}

/* A deploy replaces the file by rename between open and decode: decode
 * reads the file that was opened. */
static void test_replaced_by_rename(void **state)
{
    (void)state;
    char *path = strdup(th_path("model.wcodec")), *next = strdup(th_path("next.wcodec"));
    assert_int_equal(th_encode_model(path, 150, 1), 0);
    assert_int_equal(th_encode_model(next, 90, 2), 0);
    char *old = copy_of(path, "old.wcodec");
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    assert_int_equal(rename(next, path), 0);
    assert_same_tensors(f, old);
    wc_file_close(f);
    free(path), free(next), free(old);
}

/* wc_file_open_fd keeps a descriptor of its own: the caller's may be
 * closed at once. */
static void test_open_fd_caller_closes(void **state)
{
    (void)state;
    char *path = strdup(th_path("fd.wcodec"));
    assert_int_equal(th_encode_model(path, 40, 3), 0);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open_fd(&f, fileno(fp), "fd.wcodec", &e), 0);
    fclose(fp);
    assert_same_tensors(f, path);
    wc_file_close(f);
    free(path);
}

/* A relative path, then a chdir to a folder holding another file of that
 * name: still the first file. */
static void test_relative_path_after_chdir(void **state)
{
    (void)state;
    char *a = strdup(th_path("a")), *b = strdup(th_path("b"));
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(mkdir(b, 0700), 0);
    char pa[4096], pb[4096], cwd[4096];
    snprintf(pa, sizeof pa, "%s/m.wcodec", a);
    snprintf(pb, sizeof pb, "%s/m.wcodec", b);
    assert_int_equal(th_encode_model(pa, 120, 4), 0);
    assert_int_equal(th_encode_model(pb, 60, 5), 0);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(a), 0);
    wc_file *f;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, "m.wcodec", &e), 0);
    assert_int_equal(chdir(b), 0);
    assert_string_equal(wc_file_label(f), "m.wcodec");
    assert_same_tensors(f, pa);
    wc_file_close(f);
    assert_int_equal(chdir(cwd), 0);
    unlink(pa), unlink(pb), rmdir(a), rmdir(b);
    free(a), free(b);
}

/* The file shrinks after open: every tensor whose record is gone fails
 * with WC_EIO naming the file, the tensor and the offset; those before the
 * cut still decode. */
static void test_truncated_after_open(void **state)
{
    (void)state;
    char *path = strdup(th_path("short.wcodec"));
    assert_int_equal(th_encode_model(path, 150, 6), 0);
    char *whole = copy_of(path, "whole.wcodec");
    wc_file *f, *r;
    wc_err e = {0};
    assert_int_equal(wc_file_open(&f, path, &e), 0);
    assert_int_equal(wc_file_open(&r, whole, &e), 0);
    uint64_t end = 0; /* of the last record: the directory follows, read at open */
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info ti;
        wc_file_tensor_info(f, i, &ti);
        if (ti.file_offset + ti.stored_bytes > end) end = ti.file_offset + ti.stored_bytes;
    }
    const uint64_t cuts[] = {end - 1, end / 2, 100, 0};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        assert_int_equal(truncate(path, (off_t)cuts[k]), 0);
        int failed = 0;
        for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
            wc_tensor_info ti;
            wc_file_tensor_info(f, i, &ti);
            uint8_t *got = malloc(ti.out_bytes + 1), *want = malloc(ti.out_bytes + 1);
            const wc_decode_opts three = {.threads = 3}; /* the streams read by several threads */
            const int rc3 = wc_decode_tensor_ex(f, i, got, ti.out_bytes, NULL, 0, &three, &e);
            int rc = wc_decode_tensor(f, i, got, ti.out_bytes, NULL, 0, &e);
            assert_int_equal(rc3, rc);
            if (ti.file_offset + ti.stored_bytes <= cuts[k]) {
                assert_int_equal(rc, 0);
                assert_int_equal(wc_decode_tensor(r, i, want, ti.out_bytes, NULL, 0, &e), 0);
                assert_memory_equal(got, want, ti.out_bytes);
            } else {
                /* the read that found the end: inside the record, past the cut */
                assert_int_equal(rc, WC_EIO);
                assert_true(th_msg_has(e.msg, "short.wcodec", ti.name, "shrank", NULL));
                const char *at = strstr(e.msg, "bytes at offset ");
                assert_non_null(at);
                unsigned long long len = strtoull(strstr(e.msg, "read of ") + 8, NULL, 10),
                                   off = strtoull(at + 16, NULL, 10);
                assert_true(off >= ti.file_offset && off + len <= ti.file_offset + ti.stored_bytes);
                assert_true(off + len > cuts[k]);
                failed++;
            }
            free(got), free(want);
        }
        assert_true(failed > 0);
        assert_int_equal(wc_file_verify(f, &e), WC_EIO);
    }
    wc_file_close(f);
    wc_file_close(r);
    free(path), free(whole);
}

static int teardown(void **state)
{
    (void)state;
    th_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replaced_by_rename),
        cmocka_unit_test(test_open_fd_caller_closes),
        cmocka_unit_test(test_relative_path_after_chdir),
        cmocka_unit_test(test_truncated_after_open),
    };
    return cmocka_run_group_tests(tests, NULL, teardown) ? 1 : 0;
}
