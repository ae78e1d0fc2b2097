/* A served model file that shrinks under the daemon (fault 1): the file
 * was mapped shared, so the next decode past its new end killed the daemon
 * with SIGBUS, and every connection and lease with it. The request that
 * meets the shrunk file gets an error frame, the model is unloaded, and
 * everyone else keeps being served, their leases intact. Needs libwcodec
 * to read records through the descriptor (pread): see the commit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

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
    /* 0 only after a clean exit: a daemon killed by a signal fails here. */
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

static wc_client_tensor *get_index(wc_client *c, uint64_t id, size_t i)
{
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, i, &ti);
    wc_client_tensor *t = NULL;
    wc_err err = {0};
    int r = wc_client_get_one(c, id, ti.name, &t, &err);
    if (r) fprintf(stderr, "get %s: %s\n", ti.name, err.msg);
    assert_int_equal(r, 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    return t;
}

static void test_served_file_shrinks(void **state)
{
    (void)state;
    char path[300], cmd[700];
    snprintf(path, sizeof path, "%s/shrink.wcodec", env.models);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", env.model, path);
    assert_int_equal(system(cmd), 0);
    wc_client *a = wdt_connect(&daemon_), *b = wdt_connect(&daemon_);
    assert_non_null(a);
    assert_non_null(b);
    wc_err err = {0};
    wc_client_model ma, mb;
    assert_int_equal(wc_client_open(a, path, &ma, &err), 0);
    assert_int_equal(wc_client_open(b, env.model, &mb, &err), 0);
    /* a uses the model: a lease it keeps; b uses another file. */
    wc_client_tensor *ta = get_index(a, ma.id, 0);
    wc_client_tensor *tb = get_index(b, mb.id, 0);

    /* The file shrinks in place (same inode) to half its size. */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);

    /* Every tensor: those past the new end must be read from the file. */
    wc_client_tensor **ts = NULL;
    size_t n = 0;
    int r = wc_client_get(a, ma.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err);
    fprintf(stderr, "# get all after the truncation: %d %s\n", r, err.msg);
    assert_true(r < 0);
    assert_int_not_equal(r, WC_EDISCONNECTED);
    assert_int_not_equal(r, WC_ETIMEDOUT);
    /* The model is unloaded: a later request says why. */
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(a, ma.id, "x", &t, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "changed"));

    /* Nobody lost anything: a's lease still reads the right bytes, b is
     * served, both connections still work. */
    assert_int_equal(wdt_check_tensor(&env, ta), 0);
    wc_client_tensor *tb2 = get_index(b, mb.id, 1);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(b, &s, &err), 0);
    assert_int_equal(s.connections, 2);
    assert_int_equal(s.leases, 3);
    assert_int_equal(wc_client_release(a, &ta, 1, &err), 0);
    assert_int_equal(wc_client_release(b, &tb, 1, &err), 0);
    assert_int_equal(wc_client_release(b, &tb2, 1, &err), 0);
    assert_int_equal(wc_client_stats_get(a, &s, &err), 0);
    assert_int_equal(s.leases, 0);
    assert_int_equal(s.models, 1);
    wc_client_close(a);
    wc_client_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_served_file_shrinks),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
