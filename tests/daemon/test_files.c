/* Model files that are valid but unusual, and files that are not models at
 * all, in a model root: the daemon answers each with a reply (data or a
 * clear error) and keeps serving every other client. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "helpers.h"
#include "rawconn.h"
#include "wc_internal.h"

static wdt_env env;
static wdt_daemon daemon_;

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    return wdt_daemon_start(&daemon_, &env, NULL, NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

/* A safetensors file with no tensors: an 8-byte header length, then "{}"
 * padded to 8 bytes. */
static void write_empty_safetensors(const char *path)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const char hdr[8] = {'{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    uint64_t n = sizeof hdr;
    assert_int_equal(fwrite(&n, 8, 1, f), 1);
    assert_int_equal(fwrite(hdr, 1, sizeof hdr, f), sizeof hdr);
    assert_int_equal(fclose(f), 0);
}

/* Fault 7: `get all` on a model with no tensors read slots[0] of a request
 * with none (a heap overflow under ASan). It is an empty, successful get. */
static void test_get_all_of_empty_model(void **state)
{
    (void)state;
    char st[256], wc[256];
    snprintf(st, sizeof st, "%s/empty.safetensors", env.dir);
    snprintf(wc, sizeof wc, "%s/empty.wcodec", env.models);
    write_empty_safetensors(st);
    wc_encode_opts o;
    wc_encode_opts_default(&o);
    wc_err err = {0};
    assert_int_equal(wc_encode_file(st, wc, &o, &err), 0);

    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_client_model m;
    assert_int_equal(wc_client_open(c, wc, &m, &err), 0);
    assert_int_equal(m.tensor_count, 0);
    wc_client_tensor **ts = NULL;
    size_t n = 99;
    int r = wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err);
    if (r) fprintf(stderr, "get all: %d %s\n", r, err.msg);
    assert_int_equal(r, 0);
    assert_int_equal(n, 0);
    wc_client_tensors_free(ts);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.conn_leases, 0);
    wc_client_close(c);
}

/* Sends OpenModel{path} on a raw connection without waiting for the reply. */
static int raw_open_async(int fd, uint64_t id, const char *path)
{
    Wcodec__V1__OpenModel o = WCODEC__V1__OPEN_MODEL__INIT;
    o.path = (char *)path;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.id = id;
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &o;
    return raw_send(fd, &q);
}

/* Fault 2: a FIFO in a model root. Opening it for reading blocked the
 * event loop until somebody opened it for writing, so every other client
 * hung. It is refused as not a regular file, and others are served. */
static void test_fifo_in_root(void **state)
{
    (void)state;
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/pipe.wcodec", env.models);
    assert_int_equal(mkfifo(fifo, 0644), 0);
    int a = raw_connect(daemon_.sock);
    assert_true(a >= 0);
    assert_int_equal(raw_hello(a), 0);
    assert_int_equal(raw_open_async(a, 7, "pipe.wcodec"), 0);
    /* Another client, after the open was sent: its Hello must be answered. */
    int b = raw_connect(daemon_.sock);
    assert_true(b >= 0);
    int b_served = raw_hello(b) == 0;
    int eof = 0;
    Wcodec__V1__Reply *r = raw_recv(a, 5000, &eof);
    /* Unblock a daemon stuck in open(2) before any assertion can end the
     * test: a writer lets the blocked reader's open return. */
    int w = open(fifo, O_WRONLY | O_NONBLOCK);
    if (w >= 0) {
        fprintf(stderr, "the daemon was blocked opening the FIFO\n");
        close(w);
    }
    assert_true(b_served);
    assert_non_null(r);
    assert_int_equal(r->id, 7);
    assert_int_equal(r->status, WC_EINVAL);
    assert_non_null(strstr(r->message, "not a regular file"));
    wcodec__v1__reply__free_unpacked(r, NULL);
    close(a);
    close(b);
    unlink(fifo);
}

/* A NaN scale in a record whose checksum is forged to match was served as
 * it is; the decode refuses it (WC_ECORRUPT, naming tensor and row), and
 * the other tensors of the file are still served. */
static void test_nan_scale(void **state)
{
    (void)state;
    size_t i = 0, n = wc_file_tensor_count(env.ref);
    wc_tensor_info ti;
    for (; i < n; i++) {
        wc_file_tensor_info(env.ref, i, &ti);
        if (ti.n_scales > 3) break;
    }
    assert_true(i < n);
    size_t other = i ? 0 : 1;
    char name[4200], oname[4200], path[256];
    snprintf(name, sizeof name, "%s", ti.name);
    wc_tensor_info to;
    wc_file_tensor_info(env.ref, other, &to);
    snprintf(oname, sizeof oname, "%s", to.name);
    size_t size;
    uint8_t *img = th_read_file(env.model, &size);
    assert_non_null(img);
    size_t de = th_dir_entry(img, i);
    uint64_t off = wc_rd64(img + de + 8);
    float nan = NAN;
    memcpy(img + off + 4 * 3, &nan, 4);   /* row 3's scale */
    th_rehash_record(img, i);
    th_reseal(img, size);
    snprintf(path, sizeof path, "%s/nan.wcodec", env.models);
    assert_int_equal(th_write_file(path, img, size), 0);
    free(img);

    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, path, &m, &err), 0);
    wc_client_tensor *t = NULL;
    int r = wc_client_get_one(c, m.id, name, &t, &err);
    if (r != WC_ECORRUPT) fprintf(stderr, "get %s: %d %s\n", name, r, err.msg);
    assert_int_equal(r, WC_ECORRUPT);
    assert_non_null(strstr(err.msg, "scale of row 3"));
    assert_non_null(strstr(err.msg, "NaN"));
    assert_int_equal(wc_client_get_one(c, m.id, oname, &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    wc_client_close(c);
}

/* The daemon's log as one string (its bytes, NULs aside). */
static char *read_log(void)
{
    size_t n;
    uint8_t *p = th_read_file(daemon_.log, &n);
    assert_non_null(p);
    p[n] = 0;
    return (char *)p;
}

/* Client paths and tensor names reach the log: control bytes (ESC
 * sequences, newlines) are written as \xNN, never as they are. */
static void test_log_escapes_control_bytes(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, "\x1b[31mred\x1b[0m\nfake line.wcodec", &m, &err), WC_ENOTFOUND);
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(c, m.id, "\x1b]0;title\x07", &t, &err), WC_ENOTFOUND);
    wc_client_close(c);
    char *log = read_log();
    for (const char *p = log; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\n') fail_msg("control byte 0x%02x in the log at %zu", *p, (size_t)(p - log));
    assert_non_null(strstr(log, "\\x1b[31mred\\x1b[0m\\x0afake line.wcodec: no such file"));
    assert_non_null(strstr(log, "\\x1b]0;title\\x07"));
    free(log);
}

/* A path of 4,095 bytes (the longest the daemon takes) used to fill the
 * whole error message, so the reason after it was cut off; the path is
 * shortened in the middle and the reason kept, in the reply and the log. */
static void test_long_path_keeps_reason(void **state)
{
    (void)state;
    char path[4096];
    size_t n = 0;
    for (; n < sizeof path - 1; n++) path[n] = n % 200 == 199 ? '/' : 'a';
    path[n] = 0;
    assert_int_equal(strlen(path), 4095);
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, path, &m, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no such file beneath"));
    assert_non_null(strstr(err.msg, "(4095 bytes)"));
    wc_client_close(c);
    char *log = read_log();
    assert_non_null(strstr(log, "(4095 bytes)"));
    const char *at = strstr(log, "(4095 bytes)");
    assert_non_null(strstr(at, "no such file beneath"));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_all_of_empty_model),
        cmocka_unit_test(test_fifo_in_root),
        cmocka_unit_test(test_nan_scale),
        cmocka_unit_test(test_log_escapes_control_bytes),
        cmocka_unit_test(test_long_path_keeps_reason),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
