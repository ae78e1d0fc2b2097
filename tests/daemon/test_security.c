/* Model paths that leave the roots through "..", symlinks (absolute and
 * relative) or plain absolute paths are refused; a peer whose uid and gids
 * are not allowed is refused at connect. */
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
static char outside[256];

static int copy_file(const char *from, const char *to)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd);
}

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    char dir[200], p[300], q[300];
    snprintf(dir, sizeof dir, "%s/outside", env.dir);
    mkdir(dir, 0755);
    snprintf(outside, sizeof outside, "%s/secret.wcodec", dir);
    if (copy_file(env.model, outside)) return -1;
    snprintf(p, sizeof p, "%s/rel-escape", env.models);
    if (symlink("../outside/secret.wcodec", p)) return -1;
    snprintf(p, sizeof p, "%s/abs-escape", env.models);
    if (symlink(outside, p)) return -1;
    snprintf(p, sizeof p, "%s/sub", env.models);
    mkdir(p, 0755);
    snprintf(q, sizeof q, "%s/sub/inside", env.models);
    if (symlink("../model.wcodec", q)) return -1;
    snprintf(q, sizeof q, "%s/sub/dir-escape", env.models);
    if (symlink("../../outside", q)) return -1;
    return wdt_daemon_start(&daemon_, &env, NULL, NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

static void refused(wc_client *c, const char *path)
{
    wc_client_model m;
    wc_err err = {0};
    int r = wc_client_open(c, path, &m, &err);
    if (r != WC_EDENIED) fprintf(stderr, "open %s: %d %s\n", path, r, err.msg);
    assert_int_equal(r, WC_EDENIED);
}

static void test_paths(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    char p[400];
    snprintf(p, sizeof p, "%s/../outside/secret.wcodec", env.models);
    refused(c, p);
    refused(c, "../outside/secret.wcodec");
    refused(c, "sub/../../outside/secret.wcodec");
    snprintf(p, sizeof p, "%s/rel-escape", env.models);
    refused(c, p);
    refused(c, "abs-escape");
    refused(c, "sub/dir-escape/secret.wcodec");
    refused(c, outside);
    refused(c, "/etc/passwd");
    snprintf(p, sizeof p, "/proc/self/root%s", env.model);
    refused(c, p);
    /* A symlink that stays inside the root is fine: the same model. */
    wc_client_model a, b;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &a, &err), 0);
    assert_int_equal(wc_client_open(c, "sub/inside", &b, &err), 0);
    assert_int_equal(a.id, b.id);
    /* A directory is not a model. */
    assert_int_equal(wc_client_open(c, "sub", &b, &err), WC_EINVAL);
    /* The refusals did not hurt the connection. */
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.models, 1);
    wc_client_close(c);
}

static void expect_peer(const char *config, int want)
{
    wdt_daemon d;
    assert_int_equal(wdt_daemon_start(&d, &env, config, NULL, NULL), 0);
    wc_client *c = NULL;
    wc_err err = {0};
    int r = wc_client_connect(&c, d.sock, &err);
    if (r != want) fprintf(stderr, "config [%s]: connect gave %d (%s)\n", config, r, err.msg);
    assert_int_equal(r, want);
    if (want == WC_EDENIED) {
        char uid[32];
        snprintf(uid, sizeof uid, "uid %u", (unsigned)geteuid());
        assert_non_null(strstr(err.msg, uid));
        assert_null(c);
    } else {
        wc_client_close(c);
    }
    assert_int_equal(wdt_daemon_stop(&d), 0);
}

static void test_peer_credentials(void **state)
{
    (void)state;
    char cfg[128];
    /* An allow-list that excludes us (we may be root: root gets no pass). */
    expect_peer("[security]\nallow_uids = 12345\n", WC_EDENIED);
    expect_peer("[security]\nallow_uids = 12345\nallow_gids = 54321\n", WC_EDENIED);
    snprintf(cfg, sizeof cfg, "[security]\nallow_uids = 12345\nallow_gids = %u\n", (unsigned)getegid());
    expect_peer(cfg, 0);
    snprintf(cfg, sizeof cfg, "[security]\nallow_uids = 12345, %u\n", (unsigned)geteuid());
    expect_peer(cfg, 0);
    expect_peer("[security]\nallow_uids = *\n", 0);
    expect_peer(NULL, 0);  /* default: the daemon's own uid */
}

static void test_bad_config_refused(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s --root %s --budget lots --check-config 2>/dev/null", WDT_WCODECD, env.models);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --socket %s/x.sock --check-config 2>/dev/null", WDT_WCODECD, env.dir);
    assert_int_not_equal(system(cmd), 0);  /* no roots */
    snprintf(cmd, sizeof cmd, "%s --root relative/dir --check-config 2>/dev/null", WDT_WCODECD);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --root %s --allow-gids no-such-group-here --check-config 2>/dev/null", WDT_WCODECD, env.models);
    assert_int_not_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s --root %s --budget 2G --check-config >/dev/null", WDT_WCODECD, env.models);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_peer_credentials),
        cmocka_unit_test(test_bad_config_refused),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
