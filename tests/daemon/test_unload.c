/* Model lifetime (fault 6): a model is unloaded on request, and an unused
 * one whose file was replaced (rename-deploy) or removed goes by itself, so
 * deploys past max_models keep working and deleted files' space is freed.
 * Leases taken before keep their tensors readable. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

/* How many of the daemon's descriptors and mappings name a deleted file
 * whose name contains `name`. */
static int deleted_held(const char *name)
{
    int n = 0;
    char p[300], link[600];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)daemon_.pid);
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d))) {
        char q[600];
        snprintf(q, sizeof q, "%s/%s", p, de->d_name);
        ssize_t k = readlink(q, link, sizeof link - 1);
        if (k <= 0) continue;
        link[k] = 0;
        n += strstr(link, name) && strstr(link, "(deleted)");
    }
    closedir(d);
    snprintf(p, sizeof p, "/proc/%d/maps", (int)daemon_.pid);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f)) n += strstr(line, name) && strstr(line, "(deleted)");
    fclose(f);
    return n;
}

/* Writes the model's bytes to dir/.tmp and renames it over `to`: a
 * rename-deploy, a new inode at the same path each time. */
static void deploy(const char *to)
{
    static uint8_t *img;
    static size_t size;
    if (!img) {
        FILE *f = fopen(env.model, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        size = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        img = malloc(size);
        assert_int_equal(fread(img, 1, size, f), size);
        fclose(f);
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/.deploy.tmp", env.models);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, to), 0);
}

static void get_check_release(wc_client *c, uint64_t id)
{
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 0, &ti);
    wc_client_tensor *t;
    wc_err err = {0};
    int r = wc_client_get_one(c, id, ti.name, &t, &err);
    if (r) fprintf(stderr, "get: %s\n", err.msg);
    assert_int_equal(r, 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
}

static bool one_model(const wc_client_stats *s) { return s->models == 1; }

/* 70 rename-deploys of one path, each opened and used: past the default
 * limit of 64 models, the 65th open failed with WC_ELIMIT and every
 * replaced file stayed open (and its disk space held). */
static void test_rename_deploys(void **state)
{
    (void)state;
    char served[300];
    snprintf(served, sizeof served, "%s/served.wcodec", env.models);
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    uint64_t last = 0;
    for (int i = 0; i < 70; i++) {
        deploy(served);
        wc_client_model m;
        wc_err err = {0};
        int r = wc_client_open(c, served, &m, &err);
        if (r) fprintf(stderr, "deploy %d: open: %d %s\n", i + 1, r, err.msg);
        assert_int_equal(r, 0);
        assert_true(m.id != last);
        last = m.id;
        get_check_release(c, m.id);
    }
    wc_client_stats s;
    assert_true(wdt_stats_until(c, one_model, 5000, &s));
    assert_int_equal(deleted_held("served.wcodec"), 0);
    wc_client_close(c);
}

/* A replaced model still leased keeps serving its holder until released,
 * then goes. */
static void test_replaced_while_leased(void **state)
{
    (void)state;
    char served[300];
    snprintf(served, sizeof served, "%s/leased.wcodec", env.models);
    deploy(served);
    wc_client *a = wdt_connect(&daemon_), *b = wdt_connect(&daemon_);
    assert_non_null(a);
    assert_non_null(b);
    wc_client_model ma, mb;
    wc_err err = {0};
    assert_int_equal(wc_client_open(a, served, &ma, &err), 0);
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 1, &ti);
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(a, ma.id, ti.name, &t, &err), 0);
    deploy(served);
    assert_int_equal(wc_client_open(b, served, &mb, &err), 0);
    assert_true(mb.id != ma.id);
    get_check_release(b, mb.id);
    /* a's model is in use: still served, its old file still held. */
    get_check_release(a, ma.id);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_true(deleted_held("leased.wcodec") > 0);
    assert_int_equal(wc_client_release(a, &t, 1, &err), 0);
    /* Unused now: gone (at once, or by the sweep). */
    for (int64_t end = wdt_now_ms() + 5000; deleted_held("leased.wcodec") && wdt_now_ms() < end;) usleep(20000);
    assert_int_equal(deleted_held("leased.wcodec"), 0);
    wc_client_tensor *t2;
    assert_int_equal(wc_client_get_one(a, ma.id, ti.name, &t2, &err), WC_ENOTFOUND);
    wc_client_close(a);
    wc_client_close(b);
}

/* A removed file's unused model goes without any further request. */
static void test_removed_file_freed(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/removed.wcodec", env.models);
    deploy(path);
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_err err = {0};
    assert_int_equal(wc_client_evict(c, 0, NULL, NULL, &err), 0);
    wc_client_model m;
    assert_int_equal(wc_client_open(c, path, &m, &err), 0);
    get_check_release(c, m.id);
    assert_int_equal(unlink(path), 0);
    assert_true(deleted_held("removed.wcodec") > 0);
    for (int64_t end = wdt_now_ms() + 6000; deleted_held("removed.wcodec") && wdt_now_ms() < end;) usleep(50000);
    assert_int_equal(deleted_held("removed.wcodec"), 0);
    wc_client_close(c);
}

/* A file rewritten in place (same inode: cp over it) ends its model at
 * once, in use or not: its bytes are no longer those that were checked.
 * Opening it again gives a new model of the new bytes; leases taken before
 * still read their tensors. */
static void test_changed_in_place(void **state)
{
    (void)state;
    char path[300], cmd[700];
    snprintf(path, sizeof path, "%s/inplace.wcodec", env.models);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", env.model, path);
    assert_int_equal(system(cmd), 0);
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_err err = {0};
    wc_client_model m, m2;
    assert_int_equal(wc_client_open(c, path, &m, &err), 0);
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 3, &ti);
    wc_client_tensor *t, *t2;
    assert_int_equal(wc_client_get_one(c, m.id, ti.name, &t, &err), 0);
    /* Past the file system's timestamp granularity, so the mtime moves. */
    usleep(50000);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(wc_client_open(c, path, &m2, &err), 0);
    assert_true(m2.id != m.id);
    assert_int_equal(wc_client_get_one(c, m.id, ti.name, &t2, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "changed while it was served"));
    get_check_release(c, m2.id);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    wc_client_close(c);
}

/* Explicit unload: later requests on the id fail, a lease taken before
 * stays readable and releasable, and the file can be opened again. */
static void test_unload(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    assert_non_null(c);
    wc_err err = {0};
    wc_client_model m, m2;
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 2, &ti);
    wc_client_tensor *t, *t2;
    assert_int_equal(wc_client_get_one(c, m.id, ti.name, &t, &err), 0);
    uint32_t leased = 99;
    assert_int_equal(wc_client_unload(c, m.id, &leased, &err), 0);
    assert_int_equal(leased, 1);
    assert_int_equal(wc_client_get_one(c, m.id, ti.name, &t2, &err), WC_ENOTFOUND);
    assert_non_null(strstr(err.msg, "unloaded"));
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    assert_int_equal(wc_client_unload(c, m.id, &leased, &err), WC_ENOTFOUND);
    assert_int_equal(wc_client_open(c, env.model, &m2, &err), 0);
    assert_true(m2.id != m.id);
    get_check_release(c, m2.id);
    /* wcodecctl unload, by path. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s --socket %s unload %s | grep -q 'unloaded model'", WDT_WCODECCTL,
             daemon_.sock, env.model);
    assert_int_equal(system(cmd), 0);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.leases, 0);
    wc_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rename_deploys),
        cmocka_unit_test(test_replaced_while_leased),
        cmocka_unit_test(test_removed_file_freed),
        cmocka_unit_test(test_changed_in_place),
        cmocka_unit_test(test_unload),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
