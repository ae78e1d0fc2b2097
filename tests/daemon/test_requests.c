/* Every request type through libwcodec-client against a real wcodecd, and
 * every mapped tensor byte for byte against the CPU reference decode. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static wdt_env env;
static wdt_daemon daemon_;

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    return wdt_daemon_start(&daemon_, &env, "[cache]\nbudget = 1G\n", NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

static void test_hello(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_client_server_info si;
    assert_int_equal(wc_client_server_info_get(c, &si), 0);
    assert_int_equal(si.protocol_version, WC_PROTOCOL_VERSION);
    assert_int_equal(si.backend, WC_LOC_MEMFD);
    assert_string_equal(si.server_version, WC_VERSION_STRING);
    assert_true(si.max_frame >= 1024);
    wc_client_close(c);
    /* The socket got the configured default mode before anyone could connect. */
    struct stat sb;
    assert_int_equal(stat(daemon_.sock, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0660);
}

static void test_open(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m1, m2, m3;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m1, &err), 0);
    assert_int_equal(m1.tensor_count, wc_file_tensor_count(env.ref));
    assert_int_equal(m1.file_bytes, wc_file_size(env.ref));
    /* Relative to the first root, and again: the same model. */
    assert_int_equal(wc_client_open(c, "model.wcodec", &m2, &err), 0);
    assert_int_equal(m2.id, m1.id);
    assert_int_equal(wc_client_open(c, env.model, &m3, &err), 0);
    assert_int_equal(m3.id, m1.id);
    assert_int_equal(wc_client_open(c, "missing.wcodec", &m3, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "missing.wcodec"));
    /* Not a .wcodec file. */
    char junk[256];
    snprintf(junk, sizeof junk, "%s/junk.wcodec", env.models);
    FILE *f = fopen(junk, "w");
    fputs("this is not a wcodec file, but it is long enough to have a header of sorts..........", f);
    fclose(f);
    int r = wc_client_open(c, junk, &m3, &err);
    assert_true(r < 0);
    assert_non_null(strstr(err.msg, "junk.wcodec"));
    assert_int_equal(wc_client_open(c, "", &m3, &err), WC_EINVAL);
    wc_client_close(c);
}

static void test_list(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_client_tensor_info *ti;
    size_t n;
    assert_int_equal(wc_client_list(c, m.id, NULL, &ti, &n, &err), 0);
    assert_int_equal(n, wc_file_tensor_count(env.ref));
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info r;
        wc_file_tensor_info(env.ref, i, &r);
        assert_string_equal(ti[i].name, r.name);
        assert_int_equal(ti[i].dtype, r.dtype);
        assert_int_equal(ti[i].out_dtype, r.out_dtype);
        assert_int_equal(ti[i].ndim, r.ndim);
        assert_memory_equal(ti[i].shape, r.shape, r.ndim * sizeof(uint64_t));
        assert_int_equal(ti[i].out_bytes, r.out_bytes);
        assert_int_equal(ti[i].n_scales, r.n_scales);
    }
    /* A prefix: the first tensor's name up to its first dot. */
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s", ti[0].name);
    char *dot = strchr(prefix, '.');
    if (dot) dot[1] = 0;
    size_t want = 0;
    for (size_t i = 0; i < n; i++) want += !strncmp(ti[i].name, prefix, strlen(prefix));
    wc_client_list_free(ti, n);
    assert_int_equal(wc_client_list(c, m.id, prefix, &ti, &n, &err), 0);
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) assert_int_equal(strncmp(ti[i].name, prefix, strlen(prefix)), 0);
    wc_client_list_free(ti, n);
    assert_int_equal(wc_client_list(c, m.id, "no-such-prefix", &ti, &n, &err), 0);
    assert_int_equal(n, 0);
    wc_client_list_free(ti, n);
    assert_int_equal(wc_client_list(c, 9999, NULL, &ti, &n, &err), WC_ENOTFOUND);
    wc_client_close(c);
}

static void test_get_all_matches_reference(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_client_tensor **ts;
    size_t n;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err), 0);
    assert_int_equal(n, wc_file_tensor_count(env.ref));
    for (size_t i = 0; i < n; i++) {
        wc_tensor_info r;
        wc_file_tensor_info(env.ref, i, &r);
        assert_string_equal(ts[i]->name, r.name);  /* file order */
        assert_int_equal(wdt_check_tensor(&env, ts[i]), 0);
        assert_int_equal(ts[i]->location, WC_LOC_MEMFD);
        /* Sealed: the mapping cannot be made writable (its page that holds data). */
        uintptr_t page = (uintptr_t)ts[i]->data & ~(uintptr_t)(sysconf(_SC_PAGESIZE) - 1);
        assert_int_not_equal(mprotect((void *)page, 1, PROT_READ | PROT_WRITE), 0);
        assert_int_equal(errno, EACCES);
    }
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.conn_leases, n);
    assert_true(s.leases >= n);
    assert_int_equal(wc_client_release(c, ts, n, &err), 0);
    wc_client_tensors_free(ts);
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.conn_leases, 0);
    wc_client_close(c);
}

static void test_get_names_prefix(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    size_t nt = wc_file_tensor_count(env.ref);
    wc_tensor_info a, b;
    wc_file_tensor_info(env.ref, nt - 1, &a);
    wc_file_tensor_info(env.ref, nt / 2, &b);
    /* A name twice: two leases on one tensor. */
    const char *names[] = {a.name, b.name, a.name};
    wc_client_tensor **ts;
    size_t n;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_NAMES, names, 3, &ts, &n, &err), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(ts[i]->name, names[i]);
        assert_int_equal(wdt_check_tensor(&env, ts[i]), 0);
    }
    assert_int_not_equal(ts[0]->lease_id, ts[2]->lease_id);
    assert_int_equal(wc_client_release(c, ts, 3, &err), 0);
    wc_client_tensors_free(ts);

    wc_client_tensor *one;
    assert_int_equal(wc_client_get_one(c, m.id, b.name, &one, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, one), 0);
    assert_int_equal(wc_client_release(c, &one, 1, &err), 0);

    char prefix[128];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(b.name) > 3 ? 3 : strlen(b.name)), b.name);
    size_t want = 0;
    for (size_t i = 0; i < nt; i++) {
        wc_tensor_info r;
        wc_file_tensor_info(env.ref, i, &r);
        want += !strncmp(r.name, prefix, strlen(prefix));
    }
    const char *pp = prefix;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_PREFIX, &pp, 1, &ts, &n, &err), 0);
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) assert_int_equal(wdt_check_tensor(&env, ts[i]), 0);
    assert_int_equal(wc_client_release(c, ts, n, &err), 0);
    wc_client_tensors_free(ts);

    /* All or none: one unknown name, nothing leased. */
    const char *bad[] = {a.name, "no.such.tensor"};
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_NAMES, bad, 2, &ts, &n, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no.such.tensor"));
    const char *nop = "no-such-prefix";
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_PREFIX, &nop, 1, &ts, &n, &err), WC_ENOTFOUND);
    assert_int_equal(wc_client_get(c, 777, WC_SELECT_ALL, NULL, 0, &ts, &n, &err), WC_ENOTFOUND);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.conn_leases, 0);
    wc_client_close(c);
}

static void test_stats_and_evict(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    uint32_t et;
    uint64_t eb;
    assert_int_equal(wc_client_evict(c, 0, &et, &eb, &err), 0);
    wc_client_stats s0, s1;
    assert_int_equal(wc_client_stats_get(c, &s0, &err), 0);
    assert_int_equal(s0.cached_tensors, 0);
    assert_int_equal(s0.cached_bytes, 0);
    assert_true(s0.budget_bytes == 1ull << 30);
    assert_true(s0.connections >= 1);
    assert_true(s0.models >= 1);
    assert_true(s0.rss_bytes > 0 && s0.open_fds > 0);

    wc_client_tensor **ts;
    size_t n;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err), 0);
    assert_int_equal(wc_client_stats_get(c, &s1, &err), 0);
    assert_int_equal(s1.decodes - s0.decodes, n);
    assert_int_equal(s1.cached_tensors, n);
    assert_int_equal(s1.leased_tensors, n);
    uint64_t want = 0;
    for (size_t i = 0; i < n; i++) want += wdt_footprint(&env, i);
    assert_int_equal(s1.cached_bytes, want);
    assert_int_equal(s1.leased_bytes, want);

    /* Leased tensors are not evicted. */
    assert_int_equal(wc_client_evict(c, m.id, &et, &eb, &err), 0);
    assert_int_equal(et, 0);
    assert_int_equal(wc_client_release(c, ts, n, &err), 0);
    wc_client_tensors_free(ts);

    /* Served again from the cache: hits, no decodes. */
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err), 0);
    assert_int_equal(wc_client_stats_get(c, &s0, &err), 0);
    assert_int_equal(s0.decodes, s1.decodes);
    assert_int_equal(s0.hits - s1.hits, n);
    assert_int_equal(wc_client_release(c, ts, n, &err), 0);
    wc_client_tensors_free(ts);

    assert_int_equal(wc_client_evict(c, 4242, &et, &eb, &err), WC_ENOTFOUND);
    assert_int_equal(wc_client_evict(c, m.id, &et, &eb, &err), 0);
    assert_int_equal(et, n);
    assert_int_equal(eb, want);
    assert_int_equal(wc_client_stats_get(c, &s1, &err), 0);
    assert_int_equal(s1.cached_tensors, 0);
    assert_int_equal(s1.cached_bytes, 0);
    assert_int_equal(s1.leases, 0);
    wc_client_close(c);
}

/* wcodecctl drives the same requests; its --json output is checked. */
static void test_wcodecctl(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s --socket %s --json open %s -- get 1 --all -- stats -- release all -- stats -- evict 1 -- status",
             WDT_WCODECCTL, daemon_.sock, env.model);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1 << 16];
    int lines = 0, saw_release = 0, saw_leases_zero = 0;
    while (fgets(line, sizeof line, p)) {
        lines++;
        if (strstr(line, "\"command\":\"release\"")) saw_release = 1;
        if (saw_release && strstr(line, "\"command\":\"stats\"") && strstr(line, "\"leases\":0")) saw_leases_zero = 1;
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(lines, 7);
    assert_true(saw_release && saw_leases_zero);
    snprintf(cmd, sizeof cmd, "%s --help >/dev/null && %s --help >/dev/null", WDT_WCODECCTL, WDT_WCODECD);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --socket %s release 5 2>/dev/null", WDT_WCODECCTL, daemon_.sock);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --socket %s/none status 2>/dev/null", WDT_WCODECCTL, env.dir);
    assert_int_not_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),
        cmocka_unit_test(test_open),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_get_all_matches_reference),
        cmocka_unit_test(test_get_names_prefix),
        cmocka_unit_test(test_stats_and_evict),
        cmocka_unit_test(test_wcodecctl),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
