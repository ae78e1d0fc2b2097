/* A reload (SIGHUP) applies to what is already connected and open (fault
 * 9): the peer check ran only at accept, so after a reload removed a
 * client's group, and a model root, that client still got tensors, also
 * of a model from the removed root. Now its connection is closed with
 * WC_EDENIED, and models of removed or swapped roots are unloaded. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "rawconn.h"

static wdt_env env;
static char models2[200];

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    snprintf(models2, sizeof models2, "%s/models2", env.dir);
    return mkdir(models2, 0755);
}

static int teardown(void **state)
{
    (void)state;
    wdt_env_fini(&env);
    return 0;
}

static void copy(const char *from, const char *to)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    assert_int_equal(system(cmd), 0);
}

/* Writes the daemon's config file anew (as wdt_daemon_start does, with
 * these roots and extra settings), sends SIGHUP and waits for the reload. */
static void reload(wdt_daemon *d, const char *roots, const char *extra)
{
    FILE *f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f, "[daemon]\nsocket = %s\nthreads = 2\nlog_level = debug\n[security]\nroots = %s\n%s\n", d->sock,
            roots, extra ? extra : "");
    assert_int_equal(fclose(f), 0);
    char seen[4096] = "";
    kill(d->pid, SIGHUP);
    assert_true(wdt_notify_wait(d, "RELOADING=1", 5000, seen, sizeof seen));
    assert_true(wdt_notify_wait(d, "READY=1", 5000, seen, sizeof seen));
    assert_null(strstr(seen, "reload failed"));
}

static void test_removed_peer_is_closed(void **state)
{
    (void)state;
    wdt_daemon d;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "allow_gids = %u\n", (unsigned)getegid());
    assert_int_equal(wdt_daemon_start(&d, &env, cfg, NULL, NULL), 0);
    int a = raw_connect(d.sock);
    assert_true(a >= 0);
    assert_int_equal(raw_hello(a), 0);
    /* The group goes: only uid 12345 may connect now. */
    reload(&d, env.models, "allow_uids = 12345\n");
    int eof = 0;
    Wcodec__V1__Reply *r = raw_recv(a, 3000, &eof);
    assert_non_null(r);
    assert_int_equal(r->id, 0);
    assert_int_equal(r->status, WC_EDENIED);
    assert_non_null(strstr(r->message, "no longer allows"));
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(a, 3000));
    close(a);
    /* And new connections are refused, as before. */
    wc_client *c = NULL;
    wc_err err = {0};
    assert_int_equal(wc_client_connect(&c, d.sock, &err), WC_EDENIED);
    /* Allowed again: served. */
    reload(&d, env.models, NULL);
    c = wdt_connect(&d);
    assert_non_null(c);
    wc_client_close(c);
    assert_int_equal(wdt_daemon_stop(&d), 0);
}

static int get_first(wc_client *c, uint64_t id, wc_client_tensor **t, wc_err *err)
{
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 0, &ti);
    return wc_client_get_one(c, id, ti.name, t, err);
}

static void test_removed_and_swapped_roots(void **state)
{
    (void)state;
    char m2[300], roots[400], cfg[300];
    snprintf(m2, sizeof m2, "%s/m2.wcodec", models2);
    copy(env.model, m2);
    snprintf(roots, sizeof roots, "%s, %s", env.models, models2);
    snprintf(cfg, sizeof cfg, "roots = %s\n", models2);
    wdt_daemon d;
    assert_int_equal(wdt_daemon_start(&d, &env, cfg, NULL, NULL), 0);
    wc_client *c = wdt_connect(&d);
    assert_non_null(c);
    wc_err err = {0};
    wc_client_model a, b;
    assert_int_equal(wc_client_open(c, env.model, &a, &err), 0);
    assert_int_equal(wc_client_open(c, m2, &b, &err), 0);
    wc_client_tensor *ta, *tb, *t;
    assert_int_equal(get_first(c, a.id, &ta, &err), 0);
    assert_int_equal(get_first(c, b.id, &tb, &err), 0);

    /* models2 is removed from the roots. */
    reload(&d, env.models, NULL);
    int r = get_first(c, b.id, &t, &err);
    if (r != WC_ENOTFOUND) fprintf(stderr, "get from the removed root: %d %s\n", r, err.msg);
    assert_int_equal(r, WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "reload"));
    assert_int_equal(wc_client_open(c, m2, &b, &err), WC_EDENIED);
    /* The other root's model is still served; the lease taken before stays. */
    assert_int_equal(get_first(c, a.id, &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, tb), 0);
    assert_int_equal(wc_client_release(c, &tb, 1, &err), 0);

    /* The root's path now names another directory. */
    char old[300];
    snprintf(old, sizeof old, "%s.old", env.models);
    assert_int_equal(rename(env.models, old), 0);
    assert_int_equal(mkdir(env.models, 0755), 0);
    copy(m2, env.model);
    reload(&d, env.models, NULL);
    r = get_first(c, a.id, &t, &err);
    if (r != WC_ENOTFOUND) fprintf(stderr, "get from the swapped root: %d %s\n", r, err.msg);
    assert_int_equal(r, WC_ENOTFOUND);
    wc_client_model a2;
    assert_int_equal(wc_client_open(c, env.model, &a2, &err), 0);
    assert_true(a2.id != a.id);
    assert_int_equal(get_first(c, a2.id, &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    assert_int_equal(wc_client_release(c, &ta, 1, &err), 0);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.models, 1);
    assert_int_equal(s.leases, 0);
    wc_client_close(c);
    assert_int_equal(wdt_daemon_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_removed_peer_is_closed),
        cmocka_unit_test(test_removed_and_swapped_roots),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
