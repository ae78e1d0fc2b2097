/* Many clients at once, one client shared by many threads, a client killed
 * while it holds leases, and a daemon killed while clients wait. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static wdt_env env;
static wdt_daemon daemon_;
static uint64_t model_id;
static size_t n_tensors;

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    if (wdt_daemon_start(&daemon_, &env, "[cache]\nbudget = 1G\n", NULL, NULL)) return -1;
    n_tensors = wc_file_tensor_count(env.ref);
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    if (!c || wc_client_open(c, env.model, &m, &err)) return -1;
    model_id = m.id;
    wc_client_close(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

typedef struct worker {
    wc_client *shared;     /* NULL: the worker connects on its own */
    unsigned seed;
    int rounds;
    int errors;
    char msg[1024];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    wc_client *c = w->shared ? w->shared : wdt_connect(&daemon_);
    if (!c) {
        w->errors++;
        return NULL;
    }
    wc_err err = {0};
    for (int r = 0; r < w->rounds; r++) {
        /* A random handful of tensors, checked against the reference. */
        const char *names[8];
        size_t k = 1 + rand_r(&w->seed) % 8;
        for (size_t i = 0; i < k; i++) {
            wc_tensor_info ti;
            wc_file_tensor_info(env.ref, rand_r(&w->seed) % n_tensors, &ti);
            names[i] = ti.name;
        }
        wc_client_tensor **ts;
        size_t n;
        if (wc_client_get(c, model_id, WC_SELECT_NAMES, names, k, &ts, &n, &err) || n != k) {
            snprintf(w->msg, sizeof w->msg, "get: %s", err.msg);
            w->errors++;
            break;
        }
        for (size_t i = 0; i < n; i++)
            if (wdt_check_tensor(&env, ts[i])) w->errors++;
        if (wc_client_release(c, ts, n, &err)) {
            snprintf(w->msg, sizeof w->msg, "release: %s", err.msg);
            w->errors++;
        }
        wc_client_tensors_free(ts);
    }
    if (!w->shared) wc_client_close(c);
    return NULL;
}

static bool no_leases(const wc_client_stats *s) { return s->leases == 0; }

static pthread_barrier_t start_line;

static void *get_all(void *arg)
{
    int *errors = arg;
    wc_client *c = wdt_connect(&daemon_);
    pthread_barrier_wait(&start_line);
    if (!c) {
        (*errors)++;
        return NULL;
    }
    wc_err err = {0};
    wc_client_tensor **ts;
    size_t n;
    if (wc_client_get(c, model_id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err) || n != n_tensors) {
        fprintf(stderr, "get all: %s\n", err.msg);
        (*errors)++;
    } else {
        for (size_t i = 0; i < n; i++)
            if (wdt_check_tensor(&env, ts[i])) (*errors)++;
        if (wc_client_release(c, ts, n, &err)) (*errors)++;
        wc_client_tensors_free(ts);
    }
    wc_client_close(c);
    return NULL;
}

static void test_many_clients_decode_once(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_err err = {0};
    assert_int_equal(wc_client_evict(c, 0, NULL, NULL, &err), 0);
    wc_client_stats s0, s1;
    assert_int_equal(wc_client_stats_get(c, &s0, &err), 0);
    assert_int_equal(s0.cached_tensors, 0);

    /* 24 connections ask for every tensor at the same moment: each tensor
     * is decoded exactly once, every copy is right. */
    enum { N = 24 };
    pthread_t th[N];
    int errors[N] = {0};
    pthread_barrier_init(&start_line, NULL, N);
    for (int i = 0; i < N; i++) pthread_create(&th[i], NULL, get_all, &errors[i]);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(errors[i], 0);
    }
    pthread_barrier_destroy(&start_line);
    assert_int_equal(wc_client_stats_get(c, &s1, &err), 0);
    assert_int_equal(s1.decodes - s0.decodes, n_tensors);
    /* The others were served by waiting on those decodes, or from the cache. */
    assert_true(s1.hits - s0.hits <= (N - 1) * n_tensors);
    assert_int_equal(s1.cached_tensors, n_tensors);
    assert_true(wdt_stats_until(c, no_leases, 5000, &s1));
    wc_client_close(c);
}

static void test_clients_and_shared_client(void **state)
{
    (void)state;
    enum { OWN = 16, SHARED = 8 };
    wc_client *shared = wdt_connect(&daemon_);
    assert_non_null(shared);
    pthread_t th[OWN + SHARED];
    worker w[OWN + SHARED];
    memset(w, 0, sizeof w);
    for (int i = 0; i < OWN + SHARED; i++) {
        w[i].shared = i < OWN ? NULL : shared;
        w[i].seed = (unsigned)(i * 7919 + 1);
        w[i].rounds = 40;
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (int i = 0; i < OWN + SHARED; i++) {
        pthread_join(th[i], NULL);
        if (w[i].errors) fprintf(stderr, "worker %d: %s\n", i, w[i].msg);
        assert_int_equal(w[i].errors, 0);
    }
    wc_client_stats s;
    wc_err err = {0};
    assert_int_equal(wc_client_stats_get(shared, &s, &err), 0);
    assert_int_equal(s.conn_leases, 0);
    wc_client_close(shared);
    wc_client *c = wdt_connect(&daemon_);
    assert_true(wdt_stats_until(c, no_leases, 5000, &s));
    wc_client_close(c);
}

static void test_killed_client_leases_end(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_err err = {0};
    assert_int_equal(wc_client_evict(c, 0, NULL, NULL, &err), 0);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        wc_client *k = wdt_connect(&daemon_);
        wc_client_tensor **ts;
        size_t n;
        if (!k || wc_client_get(k, model_id, WC_SELECT_ALL, NULL, 0, &ts, &n, &err)) _exit(1);
        if (write(pfd[1], "ok", 2) != 2) _exit(1);
        for (;;) pause();
    }
    close(pfd[1]);
    char buf[2];
    assert_int_equal(read(pfd[0], buf, 2), 2);
    close(pfd[0]);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.leases, n_tensors);
    assert_int_equal(s.leased_tensors, n_tensors);
    /* Nothing leased can be evicted. */
    uint32_t et;
    assert_int_equal(wc_client_evict(c, 0, &et, NULL, &err), 0);
    assert_int_equal(et, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_true(wdt_stats_until(c, no_leases, 5000, &s));
    assert_int_equal(s.leased_bytes, 0);
    assert_int_equal(s.leased_tensors, 0);
    /* And the memory comes back. */
    assert_int_equal(wc_client_evict(c, 0, &et, NULL, &err), 0);
    assert_int_equal(et, n_tensors);
    assert_int_equal(wc_client_stats_get(c, &s, &err), 0);
    assert_int_equal(s.cached_bytes, 0);
    assert_int_equal(s.cached_tensors, 0);
    wc_client_close(c);
}

typedef struct waiting {
    wc_client *c;
    uint64_t model;
    int status;
    char msg[768];
    volatile int done;
} waiting;

static void *wait_get(void *arg)
{
    waiting *w = arg;
    wc_err err = {0};
    wc_client_tensor **ts;
    size_t n;
    w->status = wc_client_get(w->c, w->model, WC_SELECT_ALL, NULL, 0, &ts, &n, &err);
    if (!w->status) wc_client_tensors_free(ts);
    snprintf(w->msg, sizeof w->msg, "%s", err.msg);
    w->done = 1;
    return NULL;
}

static void test_daemon_killed_while_waiting(void **state)
{
    (void)state;
    wdt_daemon d2;
    assert_int_equal(wdt_daemon_start(&d2, &env, NULL, NULL, NULL), 0);
    enum { N = 5, OWN = 3 };
    wc_client *own[OWN];
    wc_client_model m;
    wc_err err = {0};
    for (int i = 0; i < OWN; i++) {
        own[i] = wdt_connect(&d2);
        assert_non_null(own[i]);
        assert_int_equal(wc_client_open(own[i], env.model, &m, &err), 0);
        /* Wait forever: only the daemon's death can end the calls. */
        wc_client_set_timeout(own[i], 0);
    }
    /* The daemon stops answering, the requests go out, then it dies. */
    kill(d2.pid, SIGSTOP);
    waiting w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].c = own[i < OWN ? i : OWN - 1];  /* the last client is shared by three threads */
        w[i].model = m.id;
        pthread_create(&th[i], NULL, wait_get, &w[i]);
    }
    usleep(200000);
    for (int i = 0; i < N; i++) assert_int_equal(w[i].done, 0);
    wdt_daemon_kill(&d2);
    int64_t end = wdt_now_ms() + 5000;
    for (int i = 0; i < N; i++) {
        while (!w[i].done && wdt_now_ms() < end) usleep(1000);
        assert_int_equal(w[i].done, 1);  /* no hang */
        pthread_join(th[i], NULL);
        if (w[i].status != WC_EDISCONNECTED || !strstr(w[i].msg, "closed the connection"))
            fprintf(stderr, "waiter %d: %d %s\n", i, w[i].status, w[i].msg);
        assert_int_equal(w[i].status, WC_EDISCONNECTED);
        assert_non_null(strstr(w[i].msg, "closed the connection"));
    }
    /* The connection stays dead; a new one says the daemon is not there. */
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(own[0], &s, &err), WC_EDISCONNECTED);
    for (int i = 0; i < OWN; i++) wc_client_close(own[i]);
    wc_client *c;
    assert_int_equal(wc_client_connect(&c, d2.sock, &err), WC_EDISCONNECTED);
    assert_non_null(strstr(err.msg, "is wcodecd running"));
}

/* A daemon that never answers: the client's timeout ends the call. */
static void test_timeout(void **state)
{
    (void)state;
    wdt_daemon d2;
    assert_int_equal(wdt_daemon_start(&d2, &env, NULL, NULL, NULL), 0);
    wc_client *c = wdt_connect(&d2);
    assert_non_null(c);
    wc_client_set_timeout(c, 300);
    kill(d2.pid, SIGSTOP);
    wc_client_stats s;
    wc_err err = {0};
    int64_t t0 = wdt_now_ms();
    assert_int_equal(wc_client_stats_get(c, &s, &err), WC_ETIMEDOUT);
    assert_true(wdt_now_ms() - t0 < 3000);
    wc_client_close(c);
    kill(d2.pid, SIGCONT);
    assert_int_equal(wdt_daemon_stop(&d2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_clients_decode_once),
        cmocka_unit_test(test_clients_and_shared_client),
        cmocka_unit_test(test_killed_client_leases_end),
        cmocka_unit_test(test_daemon_killed_while_waiting),
        cmocka_unit_test(test_timeout),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
