/* systemd integration without systemd: readiness, status, watchdog, reload
 * and stop through a NOTIFY_SOCKET the test reads, and socket activation
 * through systemd-socket-activate. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static wdt_env env;

static int setup(void **state)
{
    (void)state;
    return wdt_env_init(&env);
}

static int teardown(void **state)
{
    (void)state;
    wdt_env_fini(&env);
    return 0;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_notify_watchdog_reload_stop(void **state)
{
    (void)state;
    const char *envs[] = {"WATCHDOG_USEC=200000", NULL};
    wdt_daemon d;
    /* wdt_daemon_start returns once READY=1 has arrived... */
    assert_int_equal(wdt_daemon_start(&d, &env, NULL, NULL, envs), 0);
    /* ...and by then the socket must accept: READY comes after listen(). */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d.sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);

    /* WATCHDOG=1 every WATCHDOG_USEC/2 = 100 ms, from the loop's timer. */
    char seen[16384] = "";
    wdt_notify_wait(&d, "never-sent", 1000, seen, sizeof seen);
    int pets = count(seen, "WATCHDOG=1");
    fprintf(stderr, "# %d WATCHDOG=1 in 1 s\n", pets);
    assert_true(pets >= 5 && pets <= 15);

    /* STATUS= follows what happens. */
    wc_client *c = wdt_connect(&d);
    assert_non_null(c);
    seen[0] = 0;
    assert_true(wdt_notify_wait(&d, "STATUS=1 connections", 3000, seen, sizeof seen));
    wc_client_close(c);

    seen[0] = 0;
    kill(d.pid, SIGHUP);
    assert_true(wdt_notify_wait(&d, "RELOADING=1", 3000, seen, sizeof seen));
    assert_non_null(strstr(seen, "MONOTONIC_USEC="));
    assert_true(wdt_notify_wait(&d, "READY=1", 3000, seen, sizeof seen));

    /* Stop: STOPPING=1, then a clean exit and the socket file gone. */
    kill(d.pid, SIGTERM);
    seen[0] = 0;
    assert_true(wdt_notify_wait(&d, "STOPPING=1", 3000, seen, sizeof seen));
    d.pid = -d.pid;  /* already signalled: reap here */
    int st;
    assert_int_equal(waitpid(-d.pid, &st, 0), -d.pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    struct stat sb;
    assert_int_not_equal(stat(d.sock, &sb), 0);
    close(d.notify_fd);
}

static void test_no_watchdog_without_env(void **state)
{
    (void)state;
    wdt_daemon d;
    assert_int_equal(wdt_daemon_start(&d, &env, NULL, NULL, NULL), 0);
    char seen[8192] = "";
    wdt_notify_wait(&d, "never-sent", 500, seen, sizeof seen);
    assert_int_equal(count(seen, "WATCHDOG=1"), 0);
    assert_int_equal(wdt_daemon_stop(&d), 0);
}

static void test_socket_activation(void **state)
{
    (void)state;
    if (access(WDT_SOCKET_ACTIVATE, X_OK)) {
        fprintf(stderr, "# %s not found\n", WDT_SOCKET_ACTIVATE);
        skip();
    }
    char sock[160], conf[160], unused[160], log[160];
    snprintf(sock, sizeof sock, "%s/activated.sock", env.dir);
    snprintf(unused, sizeof unused, "%s/not-bound.sock", env.dir);
    snprintf(conf, sizeof conf, "%s/activated.conf", env.dir);
    snprintf(log, sizeof log, "%s/activated.log", env.dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[daemon]\nsocket = %s\n[security]\nroots = %s\n", unused, env.models);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(WDT_SOCKET_ACTIVATE, WDT_SOCKET_ACTIVATE, "-l", sock, WDT_WCODECD, "--config", conf, (char *)NULL);
        _exit(127);
    }
    /* systemd-socket-activate binds, then starts wcodecd on the first
     * connection, handing it the listening socket. */
    wc_client *c = NULL;
    wc_err err = {0};
    for (int i = 0; i < 200 && !c; i++) {
        if (wc_client_connect(&c, sock, &err)) {
            c = NULL;
            usleep(20000);
        }
    }
    if (!c) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat %s >&2", log);
        if (system(cmd)) {}
    }
    assert_non_null(c);
    wc_client_model m;
    assert_int_equal(wc_client_open(c, env.model, &m, &err), 0);
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 0, &ti);
    wc_client_tensor *t;
    assert_int_equal(wc_client_get_one(c, m.id, ti.name, &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(c, &t, 1, &err), 0);
    wc_client_close(c);
    /* It used the socket it was given, not the configured path. */
    struct stat sb;
    assert_int_not_equal(stat(unused, &sb), 0);
    kill(pid, SIGTERM);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* Not ours to unlink: the activating side owns the socket file. */
    assert_int_equal(stat(sock, &sb), 0);
    f = fopen(log, "r");
    char line[512];
    int said = 0;
    while (fgets(line, sizeof line, f)) said |= strstr(line, "the socket from systemd") != NULL;
    fclose(f);
    assert_true(said);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_watchdog_reload_stop),
        cmocka_unit_test(test_no_watchdog_without_env),
        cmocka_unit_test(test_socket_activation),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
