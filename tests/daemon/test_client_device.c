/* The client's device-memory API where there is no device (CI): against a
 * real CPU-backend wcodecd, wc_client_get2's defaults are wc_client_get's,
 * a device request gives memfds or WC_ENODEV (never a crash or a half
 * answer), and wc_client_pools_get agrees with wc_client_stats_get; against
 * a fake daemon that answers a request for host memory with device
 * memory, the get fails as a whole, hands the lease back with a Release,
 * and leaks no descriptor. (The device paths run in the gpu suite:
 * tests/gpu/test_daemon_gpu.c.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "wcodec.pb-c.h"

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

static void get2_defaults_are_get(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &e), 0);
    wc_client_get_opts o;
    memset(&o, 0x5a, sizeof o);
    wc_client_get_opts_default(&o);
    assert_int_equal(o.device, -1);
    for (size_t i = 0; i < sizeof o.reserved / sizeof o.reserved[0]; i++) assert_int_equal(o.reserved[i], 0);
    assert_int_equal(o.tp_size, 0);
    assert_null(o.tp_layout);
    wc_client_tensor **a, **b;
    size_t na, nb;
    assert_int_equal(wc_client_get2(c, m.id, WC_SELECT_ALL, NULL, 0, NULL, &a, &na, &e), 0);
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &b, &nb, &e), 0);
    assert_int_equal(na, wc_file_tensor_count(env.ref));
    assert_int_equal(na, nb);
    static const unsigned char zero[16];
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(a[i]->location, WC_LOC_MEMFD);
        assert_int_equal(a[i]->device, -1);
        assert_memory_equal(a[i]->device_uuid, zero, 16);
        assert_string_equal(a[i]->name, b[i]->name);
        assert_int_equal(wdt_check_tensor(&env, a[i]), 0);
    }
    wc_client_tensors_free(a);
    wc_client_tensors_free(b);
    /* close ends the leases and unmaps what is still held */
    o.device = -2;
    assert_int_equal(wc_client_get2(c, m.id, WC_SELECT_ALL, NULL, 0, &o, &a, &na, &e), WC_EINVAL);
    assert_null(a);
    wc_client_close(c);
}

/* Device 0 from a CPU daemon: memfds equal to the reference (a host with a
 * driver and a device), or WC_ENODEV naming the reason (none, or a
 * library built without CUDA). */
static void get2_device_from_cpu_daemon(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &e), 0);
    wc_client_get_opts o;
    wc_client_get_opts_default(&o);
    o.device = 0;
    wc_client_tensor **ts = NULL;
    size_t n = 0;
    int r = wc_client_get2(c, m.id, WC_SELECT_ALL, NULL, 0, &o, &ts, &n, &e);
    if (r) {
        assert_int_equal(r, WC_ENODEV);
        assert_non_null(strstr(e.msg, "CUDA device 0"));
        assert_null(ts);
        assert_int_equal(n, 0);
        fprintf(stderr, "# device 0: %s\n", e.msg);
    } else {
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ts[i]->location, WC_LOC_MEMFD);
            assert_int_equal(wdt_check_tensor(&env, ts[i]), 0);
        }
        assert_int_equal(wc_client_release(c, ts, n, &e), 0);
        wc_client_tensors_free(ts);
    }
    /* the connection goes on either way */
    wc_client_stats s;
    assert_int_equal(wc_client_stats_get(c, &s, &e), 0);
    wc_client_close(c);
}

/* The pools of a CPU daemon: one host pool whose numbers are the
 * daemon-wide ones, and no arenas. */
static void pools_match_stats(void **state)
{
    (void)state;
    wc_client *c = wdt_connect(&daemon_);
    wc_client_model m;
    wc_err e = {0};
    assert_int_equal(wc_client_open(c, env.model, &m, &e), 0);
    wc_client_tensor **ts;
    size_t n;
    assert_int_equal(wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &ts, &n, &e), 0);
    wc_client_stats s;
    wc_client_pools *p;
    assert_int_equal(wc_client_stats_get(c, &s, &e), 0);
    assert_int_equal(wc_client_pools_get(c, &p, &e), 0);
    assert_string_equal(p->backend, "cpu");
    assert_int_equal(p->n_pools, 1);
    assert_int_equal(p->n_arenas, 0);
    const wc_client_pool *h = &p->pools[0];
    static const unsigned char zero[16];
    assert_memory_equal(h->uuid, zero, 16);
    assert_int_equal(h->kind, WC_LOC_MEMFD);
    assert_int_equal(h->failed, 0);
    assert_int_equal(h->budget_bytes, s.budget_bytes);
    assert_int_equal(h->used_bytes, s.cached_bytes);
    assert_int_equal(h->cached_tensors, s.cached_tensors);
    assert_int_equal(h->leased_tensors, n);
    assert_int_equal(h->leased_bytes, s.leased_bytes);
    assert_int_equal(h->total_bytes, 0);
    wc_client_pools_free(p);
    wc_client_pools_free(NULL);
    assert_int_equal(wc_client_release(c, ts, n, &e), 0);
    wc_client_tensors_free(ts);
    wc_client_close(c);
}

/* ---- a fake daemon that sends device memory to a request for host memory ---- */

typedef struct fake {
    int lfd;
    int n_conns;        /* connections to serve, one after another */
    pthread_t th;
    uint64_t released[8];
    size_t n_released;
    int saw_get_accept; /* accept entries in the get */
} fake;

static int read_full(int fd, void *p, size_t n)
{
    for (size_t k = 0; k < n;) {
        ssize_t r = read(fd, (char *)p + k, n - k);
        if (r <= 0) return -1;
        k += (size_t)r;
    }
    return 0;
}

static void send_reply(int fd, Wcodec__V1__Reply *r, int pass_fd)
{
    size_t n = wcodec__v1__reply__get_packed_size(r);
    uint8_t *b = malloc(n + 4);
    b[0] = (uint8_t)n, b[1] = (uint8_t)(n >> 8), b[2] = (uint8_t)(n >> 16), b[3] = (uint8_t)(n >> 24);
    wcodec__v1__reply__pack(r, b + 4);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof cm);
    struct iovec iov = {b, n + 4};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        mh.msg_control = cm.buf;
        mh.msg_controllen = sizeof cm.buf;
        struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &pass_fd, sizeof pass_fd);
    }
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) != (ssize_t)(n + 4)) fprintf(stderr, "fake: sendmsg failed\n");
    free(b);
}

static void fake_get_reply(int fd, uint64_t id)
{
    static unsigned char uuid[16] = {0xde, 0xad};
    Wcodec__V1__Allocation al = WCODEC__V1__ALLOCATION__INIT, *alp = &al;
    al.id = 5;
    al.kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
    al.device_uuid = (ProtobufCBinaryData){16, uuid};
    al.size = 2 << 20;
    al.fd_index = 0;
    Wcodec__V1__TensorInfo ti = WCODEC__V1__TENSOR_INFO__INIT;
    ti.name = "w";
    ti.out_bytes = 100;
    Wcodec__V1__Location l = WCODEC__V1__LOCATION__INIT;
    l.kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
    l.allocation_id = 5;
    l.device_uuid = (ProtobufCBinaryData){16, uuid};
    l.length = 100;
    Wcodec__V1__Tensor t = WCODEC__V1__TENSOR__INIT, *tp = &t;
    t.info = &ti;
    t.location = &l;
    t.lease_id = 77;
    Wcodec__V1__GetTensorsReply g = WCODEC__V1__GET_TENSORS_REPLY__INIT;
    g.n_tensor = 1;
    g.tensor = &tp;
    g.n_allocation = 1;
    g.allocation = &alp;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.fd_count = 1;
    r.body_case = WCODEC__V1__REPLY__BODY_GET;
    r.get = &g;
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    send_reply(fd, &r, nul);
    close(nul);
}

/* A StatsReply as a GPU daemon sends it: the host pool, a GPU that
 * failed, one arena. */
static void fake_stats_reply(int fd, uint64_t id)
{
    static unsigned char uuid[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    Wcodec__V1__DeviceStats h = WCODEC__V1__DEVICE_STATS__INIT, g = WCODEC__V1__DEVICE_STATS__INIT;
    h.name = "host";
    h.kind = WCODEC__V1__LOCATION_KIND__LOCATION_MEMFD;
    h.budget_bytes = 1000;
    h.used_bytes = 100;
    g.uuid = (ProtobufCBinaryData){16, uuid};
    g.name = "NVIDIA H200 (0)";
    g.kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
    g.budget_bytes = 1ull << 36;
    g.used_bytes = 4 << 20;
    g.tensor_bytes = 3 << 20;
    g.cached_tensors = 7;
    g.leased_bytes = 1 << 20;
    g.leased_tensors = 2;
    g.arenas = 1;
    g.decodes = 9;
    g.evictions = 3;
    g.failed = 1;
    g.status = "cuda error 700 (illegal address) decoding blk.3";
    g.total_bytes = 150000000000ull;
    g.free_bytes = 140000000000ull;
    Wcodec__V1__DeviceStats *dp[2] = {&h, &g};
    Wcodec__V1__ArenaStats a = WCODEC__V1__ARENA_STATS__INIT, *ap = &a;
    a.id = 42;
    a.device_uuid = (ProtobufCBinaryData){16, uuid};
    a.model_id = 3;
    a.size = 4 << 20;
    a.used_bytes = 3 << 20;
    a.tensors = 7;
    a.leased_tensors = 2;
    Wcodec__V1__StatsReply st = WCODEC__V1__STATS_REPLY__INIT;
    st.backend = "gpu";
    st.n_devices = 2;
    st.devices = dp;
    st.n_arenas = 1;
    st.arenas = &ap;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = id;
    r.body_case = WCODEC__V1__REPLY__BODY_STATS;
    r.stats = &st;
    send_reply(fd, &r, -1);
}

/* Serves n_conns connections in turn: Hello, Get (answered with device
 * memory), Release (recorded), Stats (fake_stats_reply); each ends at EOF. */
static void *fake_serve(void *arg)
{
    fake *f = arg;
    for (int k = 0; k < f->n_conns; k++) {
    int fd = accept(f->lfd, NULL, NULL);
    for (;;) {
        uint8_t h[4];
        if (fd < 0 || read_full(fd, h, 4)) break;
        uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        uint8_t *b = malloc(len ? len : 1);
        if (read_full(fd, b, len)) {
            free(b);
            break;
        }
        Wcodec__V1__Request *q = wcodec__v1__request__unpack(NULL, len, b);
        free(b);
        if (!q) break;
        Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
        r.id = q->id;
        if (q->body_case == WCODEC__V1__REQUEST__BODY_HELLO) {
            Wcodec__V1__HelloReply hr = WCODEC__V1__HELLO_REPLY__INIT;
            hr.protocol_version = WC_PROTOCOL_VERSION;
            hr.server_version = "fake";
            hr.backend = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
            hr.max_frame = 1 << 20;
            hr.max_tensors_per_frame = 64;
            r.body_case = WCODEC__V1__REPLY__BODY_HELLO;
            r.hello = &hr;
            send_reply(fd, &r, -1);
        } else if (q->body_case == WCODEC__V1__REQUEST__BODY_GET) {
            f->saw_get_accept = (int)q->get->n_accept;
            fake_get_reply(fd, q->id);
        } else if (q->body_case == WCODEC__V1__REQUEST__BODY_RELEASE) {
            for (size_t i = 0; i < q->release->n_lease_id && f->n_released < 8; i++)
                f->released[f->n_released++] = q->release->lease_id[i];
            Wcodec__V1__ReleaseReply rr = WCODEC__V1__RELEASE_REPLY__INIT;
            rr.released = (uint32_t)q->release->n_lease_id;
            r.body_case = WCODEC__V1__REPLY__BODY_RELEASE;
            r.release = &rr;
            send_reply(fd, &r, -1);
        } else if (q->body_case == WCODEC__V1__REQUEST__BODY_STATS) {
            fake_stats_reply(fd, q->id);
        }
        wcodec__v1__request__free_unpacked(q, NULL);
    }
    if (fd >= 0) close(fd);
    }
    return NULL;
}

/* Listens at env.dir/fake.sock (path) and serves n_conns connections. */
static void fake_start(fake *f, char path[100], int n_conns)
{
    memset(f, 0, sizeof *f);
    f->n_conns = n_conns;
    snprintf(path, 100, "%s/fake.sock", env.dir);
    unlink(path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_serve, f), 0);
}

static void fake_stop(fake *f)
{
    pthread_join(f->th, NULL);
    close(f->lfd);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *de; d && (de = readdir(d));) n += de->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

static void device_memory_to_host_request(void **state)
{
    (void)state;
    int fds0 = open_fds();
    fake f;
    char path[100];
    fake_start(&f, path, 1);
    wc_client *c = NULL;
    wc_err e = {0};
    assert_int_equal(wc_client_connect(&c, path, &e), 0);
    wc_client_tensor **ts = NULL;
    size_t n = 0;
    const char *name = "w";
    int r = wc_client_get2(c, 1, WC_SELECT_NAMES, &name, 1, NULL, &ts, &n, &e);
    fprintf(stderr, "# %s\n", e.msg);
#ifdef WDT_CLIENT_CUDA
    assert_int_equal(r, WC_EPROTO);
    assert_non_null(strstr(e.msg, "request for host memory"));
#else
    assert_int_equal(r, WC_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "without CUDA"));
#endif
    assert_null(ts);
    assert_int_equal(n, 0);
    wc_client_close(c);
    fake_stop(&f);
    /* the lease went back; the request asked for memfds only */
    assert_int_equal(f.saw_get_accept, 0);
    assert_int_equal(f.n_released, 1);
    assert_int_equal(f.released[0], 77);
    assert_int_equal(open_fds(), fds0);
}

/* Every field of a GPU daemon's pools and arenas, as wc_client_pools_get
 * and wcodecctl give them. */
static void pools_of_a_gpu_daemon(void **state)
{
    (void)state;
    fake f;
    char path[100];
    fake_start(&f, path, 2);
    wc_client *c = NULL;
    wc_err e = {0};
    assert_int_equal(wc_client_connect(&c, path, &e), 0);
    wc_client_pools *p;
    assert_int_equal(wc_client_pools_get(c, &p, &e), 0);
    assert_string_equal(p->backend, "gpu");
    assert_int_equal(p->n_pools, 2);
    const wc_client_pool *h = &p->pools[0], *g = &p->pools[1];
    static const unsigned char zero[16], uuid[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_memory_equal(h->uuid, zero, 16);
    assert_string_equal(h->name, "host");
    assert_int_equal(h->kind, WC_LOC_MEMFD);
    assert_int_equal(h->budget_bytes, 1000);
    assert_int_equal(h->used_bytes, 100);
    assert_memory_equal(g->uuid, uuid, 16);
    assert_string_equal(g->name, "NVIDIA H200 (0)");
    assert_int_equal(g->kind, WC_LOC_CUDA_VMM);
    assert_int_equal(g->budget_bytes, 1ull << 36);
    assert_int_equal(g->used_bytes, 4 << 20);
    assert_int_equal(g->tensor_bytes, 3 << 20);
    assert_int_equal(g->cached_tensors, 7);
    assert_int_equal(g->leased_bytes, 1 << 20);
    assert_int_equal(g->leased_tensors, 2);
    assert_int_equal(g->arenas, 1);
    assert_int_equal(g->decodes, 9);
    assert_int_equal(g->evictions, 3);
    assert_true(g->failed);
    assert_string_equal(g->status, "cuda error 700 (illegal address) decoding blk.3");
    assert_int_equal(g->total_bytes, 150000000000ull);
    assert_int_equal(g->free_bytes, 140000000000ull);
    assert_int_equal(p->n_arenas, 1);
    const wc_client_arena *a = &p->arenas[0];
    assert_int_equal(a->id, 42);
    assert_memory_equal(a->device_uuid, uuid, 16);
    assert_int_equal(a->model_id, 3);
    assert_int_equal(a->size, 4 << 20);
    assert_int_equal(a->used_bytes, 3 << 20);
    assert_int_equal(a->tensors, 7);
    assert_int_equal(a->leased_tensors, 2);
    wc_client_pools_free(p);
    wc_client_close(c);

    /* wcodecctl on the second connection: the pools and the arena */
    char cmd[512], out[8192] = "";
    snprintf(cmd, sizeof cmd, "%s --socket %s stats -- arenas", WDT_WCODECCTL, path);
    FILE *pp = popen(cmd, "r");
    assert_non_null(pp);
    size_t k = fread(out, 1, sizeof out - 1, pp);
    out[k] = 0;
    assert_int_equal(pclose(pp), 0);
    fake_stop(&f);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "backend gpu"));
    assert_non_null(strstr(out, "pool NVIDIA H200 (0) GPU-deadbeef-0102-0304-0506-0708090a0b0c (cuda_vmm) FAILED"));
    assert_non_null(strstr(out, "\n  status: cuda error 700 (illegal address) decoding blk.3\n"));
    assert_non_null(strstr(out, "140000000000 free of 150000000000"));
    assert_non_null(strstr(out, "42       GPU-deadbeef-0102-0304-0506-0708090a0b0c"));
    assert_non_null(strstr(out, "1 arenas"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get2_defaults_are_get),
        cmocka_unit_test(get2_device_from_cpu_daemon),
        cmocka_unit_test(pools_match_stats),
        cmocka_unit_test(device_memory_to_host_request),
        cmocka_unit_test(pools_of_a_gpu_daemon),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
