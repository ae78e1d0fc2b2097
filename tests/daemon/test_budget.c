/* A budget smaller than the model: least recently used unleased tensors are
 * evicted, leased ones never are, and a request that cannot fit gets
 * WC_EBUDGET while the daemon goes on serving. The budget is then lowered
 * by a config reload (SIGHUP). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static wdt_env env;
static wdt_daemon daemon_;
static size_t n_tensors, big1, big2;
static uint64_t budget, total;

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    n_tensors = wc_file_tensor_count(env.ref);
    /* The two largest tensors fill the budget exactly. */
    big1 = big2 = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        total += wdt_footprint(&env, i);
        if (wdt_footprint(&env, i) > wdt_footprint(&env, big1)) big1 = i;
    }
    if (big1 == 0) big2 = 1;
    for (size_t i = 0; i < n_tensors; i++)
        if (i != big1 && wdt_footprint(&env, i) > wdt_footprint(&env, big2)) big2 = i;
    budget = wdt_footprint(&env, big1) + wdt_footprint(&env, big2);
    if (budget >= total) {
        fprintf(stderr, "model too small for the budget test\n");
        return -1;
    }
    char cfg[128];
    snprintf(cfg, sizeof cfg, "[cache]\nbudget = %llu\n", (unsigned long long)budget);
    return wdt_daemon_start(&daemon_, &env, cfg, NULL, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

static bool no_leases(const wc_client_stats *s) { return s->leases == 0; }

static const char *tname(size_t i)
{
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, i, &ti);
    return ti.name;
}

static void test_eviction_cycles_the_model(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_client_stats s;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n_tensors; i++) {
            wc_client_tensor *t;
            assert_int_equal(wc_client_get_one(c, m.id, tname(i), &t, &err), 0);
            assert_int_equal(wdt_check_tensor(&env, t), 0);
            assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
            assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
            assert_true(s.cached_bytes <= budget);
        }
    assert_true(s.evictions > 0);
    assert_true(s.decodes > n_tensors);  /* the second pass decoded evicted tensors again */
    wc_client_close(c);
}

static void test_leased_never_evicted(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_client_tensor *held;
    assert_int_equal(wc_client_get_one(c, m.id, tname(big1), &held, &err), 0);
    wc_client_stats s0, s1;
    assert_int_equal(wc_client_stats_get(c, &s0, &err), 0);
    for (size_t i = 0; i < n_tensors; i++) {
        if (i == big1) continue;
        wc_client_tensor *t;
        assert_int_equal(wc_client_get_one(c, m.id, tname(i), &t, &err), 0);
        assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    }
    assert_int_equal(wc_client_stats_get(c, &s1, &err), 0);
    assert_true(s1.evictions > s0.evictions);
    assert_int_equal(s1.leased_tensors, 1);
    /* Still resident and still right. */
    wc_client_tensor_info *ti;
    size_t n;
    assert_int_equal(wc_client_list(c, m.id, tname(big1), &ti, &n, &err), 0);
    int cached = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ti[i].name, tname(big1))) cached = ti[i].cached;
    wc_client_list_free(ti, n);
    assert_true(cached);
    assert_int_equal(wdt_check_tensor(&env, held), 0);
    uint64_t decodes = s1.decodes;
    wc_client_tensor *again;
    assert_int_equal(wc_client_get_one(c, m.id, tname(big1), &again, &err), 0);
    assert_int_equal(wc_client_stats_get(c, &s1, &err), 0);
    assert_int_equal(s1.decodes, decodes);  /* a hit, not a new decode */
    wc_client_tensor *both[2] = {held, again};
    assert_int_equal(wc_client_release(c, both, 2, &err), 0);
    wc_client_close(c);
}

static void test_cannot_fit(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client *other = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    /* The budget is full of leases... */
    const char *two[] = {tname(big1), tname(big2)};
    wc_client_tensor **pair, **ts;
    size_t n;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_NAMES, two, 2, &pair, &n, &err), 0);
    /* ...so a third tensor (not resident) cannot come in. */
    size_t third = 0;
    while (third == big1 || third == big2) third++;
    assert_int_equal(wc_client_evict(c, 0, NULL, NULL, &err), 0);
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(other, m.id, tname(third), &t, &err), WC_EBUDGET);
    assert_non_null(strstr(err.msg, "budget"));
    assert_non_null(strstr(err.msg, tname(third)));
    /* All or none: get all fails and leaves nothing leased by `other`. */
    assert_int_equal(wc_client_get(other, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err), WC_EBUDGET);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(other, &s, &err), 0);
    assert_int_equal(s.conn_leases, 0);
    assert_int_equal(s.leases, 2);
    wc_client_close(c);  /* ends the two leases and unmaps them */
    wc_client_tensors_free(pair);
    /* The daemon sees the close in its own time. */
    assert_true(wdt_stats_until(other, no_leases, 5000, &s));
    assert_int_equal(wc_client_get_one(other, m.id, tname(third), &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(other, &t, 1, &err), 0);
    wc_client_close(other);
}

static void test_reload_lowers_budget(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    FILE *f = fopen(daemon_.conf, "a");
    fprintf(f, "[cache]\nbudget = 4096\n");
    fclose(f);
    kill(daemon_.pid, SIGHUP);
    char seen[4096] = "";
    assert_true(wdt_notify_wait(&daemon_, "RELOADING=1", 5000, seen, sizeof seen));
    assert_true(wdt_notify_wait(&daemon_, "READY=1", 5000, seen, sizeof seen));
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.budget_bytes, 4096);
    assert_true(s.cached_bytes <= 4096);
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(c, m.id, tname(big1), &t, &err), WC_EBUDGET);
    assert_non_null(strstr(err.msg, "more than the whole budget"));
    /* A bad config is refused and the running one kept. */
    f = fopen(daemon_.conf, "a");
    fprintf(f, "[cache]\nbudget = lots\n");
    fclose(f);
    kill(daemon_.pid, SIGHUP);
    assert_true(wdt_notify_wait(&daemon_, "reload failed", 5000, seen, sizeof seen));
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.budget_bytes, 4096);
    wc_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eviction_cycles_the_model),
        cmocka_unit_test(test_leased_never_evicted),
        cmocka_unit_test(test_cannot_fit),
        cmocka_unit_test(test_reload_lowers_budget),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
