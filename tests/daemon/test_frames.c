/* Malformed, oversized and truncated frames and requests out of order: each
 * gets an error reply, and a connection whose stream cannot be parsed is
 * closed; meanwhile another client keeps being served. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "rawconn.h"

static wdt_env env;
static wdt_daemon daemon_;
static wc_client *bystander;
static uint64_t model_id;

static int setup(void **state)
{
    (void)state;
    if (wdt_env_init(&env)) return -1;
    if (wdt_daemon_start(&daemon_, &env, "[limits]\nmax_frame = 64K\n", NULL, NULL)) return -1;
    bystander = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err err = {0};
    if (!bystander || wc_client_open(bystander, env.model, &m, &err)) return -1;
    model_id = m.id;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    wc_client_close(bystander);
    int r = wdt_daemon_stop(&daemon_);
    wdt_env_fini(&env);
    return r;
}

/* The other client still gets right tensors. */
static void bystander_served(void)
{
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, wc_file_tensor_count(env.ref) - 1, &ti);
    wc_client_tensor *t;
    wc_err err = {0};
    assert_int_equal(wc_client_get_one(bystander, model_id, ti.name, &t, &err), 0);
    assert_int_equal(wdt_check_tensor(&env, t), 0);
    assert_int_equal(wc_client_release(bystander, &t, 1, &err), 0);
}

static Wcodec__V1__Reply *expect_error(int fd, int status)
{
    int eof;
    Wcodec__V1__Reply *r = raw_recv(fd, 5000, &eof);
    assert_non_null(r);
    if (r->status != status) fprintf(stderr, "status %d (%s), wanted %d\n", r->status, r->message, status);
    assert_int_equal(r->status, status);
    assert_true(strlen(r->message) > 0);
    return r;
}

static void test_garbage_closes(void **state)
{
    (void)state;
    int fd = raw_connect(daemon_.sock);
    assert_true(fd >= 0);
    assert_int_equal(raw_hello(fd), 0);
    /* A frame whose payload is not a Request (a field 15 of wire type 7). */
    static const uint8_t junk[] = {6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(raw_send_bytes(fd, junk, sizeof junk), 0);
    Wcodec__V1__Reply *r = expect_error(fd, WC_EPROTO);
    assert_int_equal(r->id, 0);
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    bystander_served();
}

static void test_oversized_closes(void **state)
{
    (void)state;
    int fd = raw_connect(daemon_.sock);
    assert_int_equal(raw_hello(fd), 0);
    static const uint8_t big[] = {0x00, 0x00, 0x10, 0x00};  /* 1 MiB, over the 64K cap */
    assert_int_equal(raw_send_bytes(fd, big, sizeof big), 0);
    Wcodec__V1__Reply *r = expect_error(fd, WC_EPROTO);
    assert_non_null(strstr(r->message, "exceeds"));
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    fd = raw_connect(daemon_.sock);
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(raw_send_bytes(fd, huge, sizeof huge), 0);
    r = expect_error(fd, WC_EPROTO);
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    bystander_served();
}

static void test_truncated(void **state)
{
    (void)state;
    /* Half a length prefix, half a frame, and a frame cut mid-way through
     * a big request: the daemon drops them when the peer goes. */
    static const uint8_t half_prefix[] = {0x10, 0x00};
    static const uint8_t half_frame[] = {0x20, 0x00, 0x00, 0x00, 0x08, 0x01, 0x6a};
    for (int i = 0; i < 2; i++) {
        int fd = raw_connect(daemon_.sock);
        assert_int_equal(raw_hello(fd), 0);
        if (i == 0) assert_int_equal(raw_send_bytes(fd, half_prefix, sizeof half_prefix), 0);
        else assert_int_equal(raw_send_bytes(fd, half_frame, sizeof half_frame), 0);
        usleep(20000);
        close(fd);
    }
    int fd = raw_connect(daemon_.sock);
    assert_int_equal(raw_hello(fd), 0);
    uint8_t *b = calloc(1, 40000);
    b[0] = 0x40, b[1] = 0x9c;  /* 40000 */
    assert_int_equal(raw_send_bytes(fd, b, 20000), 0);
    free(b);
    close(fd);
    bystander_served();
    wc_client_stats s;
    wc_err err = {0};
    assert_int_equal(wc_client_stats_get(bystander, &s, &err), 0);
    assert_int_equal(s.connections, 1);
}

static void test_order_and_fields(void **state)
{
    (void)state;
    /* Anything before Hello closes the connection. */
    int fd = raw_connect(daemon_.sock);
    Wcodec__V1__Stats st = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.id = 5;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &st;
    assert_int_equal(raw_send(fd, &q), 0);
    Wcodec__V1__Reply *r = expect_error(fd, WC_EPROTO);
    assert_int_equal(r->id, 5);
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(fd, 5000));
    close(fd);

    /* A version we do not speak. */
    fd = raw_connect(daemon_.sock);
    Wcodec__V1__Hello h = WCODEC__V1__HELLO__INIT;
    h.protocol_version = 9;
    h.min_version = 7;
    q.body_case = WCODEC__V1__REQUEST__BODY_HELLO;
    q.hello = &h;
    assert_int_equal(raw_send(fd, &q), 0);
    r = expect_error(fd, WC_EVERSION);
    wcodec__v1__reply__free_unpacked(r, NULL);
    assert_true(raw_closed(fd, 5000));
    close(fd);

    /* Bad fields get error replies; the connection goes on. */
    fd = raw_connect(daemon_.sock);
    assert_int_equal(raw_hello(fd), 0);
    Wcodec__V1__Request empty = WCODEC__V1__REQUEST__INIT;  /* no body: a newer request type */
    empty.id = 10;
    assert_int_equal(raw_send(fd, &empty), 0);
    r = expect_error(fd, WC_EUNSUPPORTED);
    assert_int_equal(r->id, 10);
    wcodec__v1__reply__free_unpacked(r, NULL);

    Wcodec__V1__GetTensors g = WCODEC__V1__GET_TENSORS__INIT;  /* no selection */
    g.model_id = model_id;
    q.id = 11;
    q.body_case = WCODEC__V1__REQUEST__BODY_GET;
    q.get = &g;
    assert_int_equal(raw_send(fd, &q), 0);
    wcodec__v1__reply__free_unpacked(expect_error(fd, WC_EINVAL), NULL);

    char *longname = malloc(20000);
    memset(longname, 'a', 19999);
    longname[19999] = 0;
    Wcodec__V1__GetTensors__Names nm = WCODEC__V1__GET_TENSORS__NAMES__INIT;
    char *names[1] = {longname};
    nm.n_name = 1;
    nm.name = names;
    g.select_case = WCODEC__V1__GET_TENSORS__SELECT_NAMES;
    g.names = &nm;
    assert_int_equal(raw_send(fd, &q), 0);
    wcodec__v1__reply__free_unpacked(expect_error(fd, WC_ENOTFOUND), NULL);
    free(longname);

    g.select_case = WCODEC__V1__GET_TENSORS__SELECT_ALL;
    g.all = 1;
    g.model_id = 0xdeadbeef;
    assert_int_equal(raw_send(fd, &q), 0);
    wcodec__v1__reply__free_unpacked(expect_error(fd, WC_ENOTFOUND), NULL);

    /* Another connection's lease is out of reach. */
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, 0, &ti);
    wc_client_tensor *held;
    wc_err err = {0};
    assert_int_equal(wc_client_get_one(bystander, model_id, ti.name, &held, &err), 0);
    uint64_t ids[3] = {held->lease_id, held->lease_id + 1, 0};
    Wcodec__V1__Release rl = WCODEC__V1__RELEASE__INIT;
    rl.n_lease_id = 3;
    rl.lease_id = ids;
    q.body_case = WCODEC__V1__REQUEST__BODY_RELEASE;
    q.release = &rl;
    assert_int_equal(raw_send(fd, &q), 0);
    wcodec__v1__reply__free_unpacked(expect_error(fd, WC_ENOTFOUND), NULL);
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(bystander, &s, &err), 0);
    assert_int_equal(s.conn_leases, 1);
    assert_int_equal(wdt_check_tensor(&env, held), 0);
    assert_int_equal(wc_client_release(bystander, &held, 1, &err), 0);

    Wcodec__V1__OpenModel om = WCODEC__V1__OPEN_MODEL__INIT;
    om.path = (char *)"/etc/shadow";
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &om;
    assert_int_equal(raw_send(fd, &q), 0);
    wcodec__v1__reply__free_unpacked(expect_error(fd, WC_EDENIED), NULL);

    /* Still alive: a stats request is answered. */
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &st;
    q.id = 99;
    assert_int_equal(raw_send(fd, &q), 0);
    int eof;
    r = raw_recv(fd, 5000, &eof);
    assert_non_null(r);
    assert_int_equal(r->status, 0);
    assert_int_equal(r->id, 99);
    wcodec__v1__reply__free_unpacked(r, NULL);
    close(fd);
    bystander_served();
}

/* A client that sends without reading: the daemon stops reading it once its
 * replies pile up, and serves everyone else meanwhile. */
static void test_flood_without_reading(void **state)
{
    (void)state;
    int fd = raw_connect(daemon_.sock);
    assert_int_equal(raw_hello(fd), 0);
    Wcodec__V1__ListTensors l = WCODEC__V1__LIST_TENSORS__INIT;
    l.model_id = model_id;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_LIST;
    q.list = &l;
    size_t n = wcodec__v1__request__get_packed_size(&q);
    uint8_t *b = malloc((n + 4) * 2000);
    for (int i = 0; i < 2000; i++) {
        uint8_t *p = b + i * (n + 4);
        p[0] = (uint8_t)n, p[1] = p[2] = p[3] = 0;
        wcodec__v1__request__pack(&q, p + 4);
    }
    /* Non-blocking: the socket fills up, which is the point. */
    size_t sent = 0;
    while (sent < (n + 4) * 2000) {
        ssize_t k = send(fd, b + sent, (n + 4) * 2000 - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k <= 0) break;
        sent += (size_t)k;
    }
    free(b);
    usleep(100000);
    bystander_served();
    close(fd);
    bystander_served();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_garbage_closes),
        cmocka_unit_test(test_oversized_closes),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_order_and_fields),
        cmocka_unit_test(test_flood_without_reading),
    };
    int fails = cmocka_run_group_tests(tests, setup, teardown);
    return fails ? 1 : 0;
}
