/* wcodecd benchmarks.
 *   latency: a cached tensor, request -> pointer mapped in the client
 *            (wc_client_get_one), with 1 and with 32 concurrent clients;
 *            reference from the same run: the release round trip (no fd,
 *            no mapping) on the same connections.
 *   load:    64 clients x 1000 requests with random holds, releases and
 *            disconnects; reports errors, the daemon's RSS and open fds
 *            before and after, and its own lease accounting at the end.
 * Starts its own wcodecd (tests/daemon harness). Prints results; asserts
 * nothing about timings. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static wdt_env env;
static wdt_daemon dmn;
static uint64_t model_id;
static const char *tensor;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct lat_job {
    int n;
    uint64_t *get_ns, *rt_ns;
    int errors;
    pthread_barrier_t *bar;
} lat_job;

static void *lat_worker(void *arg)
{
    lat_job *j = arg;
    wc_client *c = wdt_connect(&dmn);
    pthread_barrier_wait(j->bar);
    if (!c) {
        j->errors++;
        return NULL;
    }
    wc_err err = {0};
    volatile uint8_t sink = 0;
    for (int i = 0; i < j->n; i++) {
        wc_client_tensor *t;
        uint64_t t0 = now_ns();
        int r = wc_client_get_one(c, model_id, tensor, &t, &err);
        if (!r) sink ^= ((const uint8_t *)t->data)[0];  /* the pointer is usable */
        uint64_t t1 = now_ns();
        if (r) {
            j->errors++;
            continue;
        }
        j->get_ns[i] = t1 - t0;
        /* The reference: a round trip that carries no fd and maps nothing. */
        t0 = now_ns();
        if (wc_client_release(c, &t, 1, &err)) j->errors++;
        j->rt_ns[i] = now_ns() - t0;
    }
    (void)sink;
    wc_client_close(c);
    return NULL;
}

static void pct(const char *what, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    printf("  %-34s n=%zu  p50 %6.1f us  p99 %6.1f us  p99.9 %6.1f us  max %7.1f us\n", what, n, v[n / 2] / 1e3,
           v[n * 99 / 100] / 1e3, v[n * 999 / 1000] / 1e3, v[n - 1] / 1e3);
}

static int latency(int clients, int per_client)
{
    pthread_t th[64];
    lat_job jobs[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)clients);
    size_t total = (size_t)clients * (size_t)per_client;
    uint64_t *g = calloc(total, sizeof *g), *rt = calloc(total, sizeof *rt);
    for (int i = 0; i < clients; i++) {
        jobs[i] = (lat_job){per_client, g + (size_t)i * per_client, rt + (size_t)i * per_client, 0, &bar};
        pthread_create(&th[i], NULL, lat_worker, &jobs[i]);
    }
    int errors = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        errors += jobs[i].errors;
    }
    pthread_barrier_destroy(&bar);
    printf("%d client%s x %d requests (errors: %d)\n", clients, clients > 1 ? "s" : "", per_client, errors);
    pct("cached tensor: request -> mapped", g, total);
    pct("reference: release round trip", rt, total);
    free(g);
    free(rt);
    return errors;
}

typedef struct load_job {
    unsigned seed;
    int requests, errors, disconnects, releases;
    char msg[1024];
} load_job;

static void *load_worker(void *arg)
{
    load_job *j = arg;
    size_t nt = wc_file_tensor_count(env.ref);
    wc_client *c = wdt_connect(&dmn);
    wc_client_tensor *held[16];
    int n_held = 0;
    wc_err err = {0};
    for (int i = 0; i < j->requests && c; i++) {
        const char *names[4];
        size_t k = 1 + rand_r(&j->seed) % 4;
        for (size_t q = 0; q < k; q++) {
            wc_tensor_info ti;
            wc_file_tensor_info(env.ref, rand_r(&j->seed) % nt, &ti);
            names[q] = ti.name;
        }
        wc_client_tensor **ts;
        size_t n;
        if (wc_client_get(c, model_id, WC_SELECT_NAMES, names, k, &ts, &n, &err)) {
            if (!j->errors++) snprintf(j->msg, sizeof j->msg, "%s", err.msg);
            continue;
        }
        /* Keep some, release the rest now. */
        for (size_t q = 0; q < n; q++) {
            if (n_held < 16 && rand_r(&j->seed) % 3 == 0) held[n_held++] = ts[q];
            else if (wc_client_release(c, &ts[q], 1, &err)) j->errors++;
            else j->releases++;
        }
        wc_client_tensors_free(ts);
        unsigned dice = rand_r(&j->seed) % 100;
        if (dice < 10 && n_held) {
            int m = 1 + rand_r(&j->seed) % n_held;
            if (wc_client_release(c, held + n_held - m, (size_t)m, &err)) j->errors++;
            else j->releases += m;
            n_held -= m;
        } else if (dice < 12) {
            /* Hang up holding leases: the daemon must end them. */
            wc_client_close(c);
            n_held = 0;
            j->disconnects++;
            c = wdt_connect(&dmn);
            if (!c) j->errors++;
        }
    }
    if (c) wc_client_close(c);
    return NULL;
}

static bool no_leases(const wc_client_stats *s) { return s->leases == 0 && s->connections == 1; }

static int load(int clients, int per_client)
{
    wc_client *mon = wdt_connect(&dmn);
    wc_client_stats before, after, s;
    wc_err err = {0};
    wc_client_stats_get(mon, &before, &err);
    pthread_t th[64];
    load_job jobs[64];
    uint64_t t0 = now_ns(), max_rss = before.rss_bytes;
    uint32_t max_fds = before.open_fds;
    for (int i = 0; i < clients; i++) {
        jobs[i] = (load_job){.seed = (unsigned)(i * 2654435761u + 7), .requests = per_client};
        pthread_create(&th[i], NULL, load_worker, &jobs[i]);
    }
    int errors = 0, disconnects = 0, releases = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        errors += jobs[i].errors;
        disconnects += jobs[i].disconnects;
        releases += jobs[i].releases;
        if (jobs[i].errors) fprintf(stderr, "client %d: %s\n", i, jobs[i].msg);
        if (!wc_client_stats_get(mon, &s, &err)) {
            if (s.rss_bytes > max_rss) max_rss = s.rss_bytes;
            if (s.open_fds > max_fds) max_fds = s.open_fds;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    int settled = wdt_stats_until(mon, no_leases, 10000, &after);
    printf("load: %d clients x %d requests in %.2f s (%.0f requests/s): %d errors, %d releases, %d disconnects holding leases\n",
           clients, per_client, secs, clients * per_client / secs, errors, releases, disconnects);
    printf("  daemon before: rss %.1f MiB, %u fds, %" PRIu64 " leases, %u cached tensors\n", before.rss_bytes / 1048576.0,
           before.open_fds, before.leases, before.cached_tensors);
    printf("  daemon peak:   rss %.1f MiB, %u fds (sampled)\n", max_rss / 1048576.0, max_fds);
    printf("  daemon after:  rss %.1f MiB, %u fds, %" PRIu64 " leases, %" PRIu64 " leased bytes, %u leased tensors, "
           "%u connections, %u cached tensors, %" PRIu64 " decodes, %" PRIu64 " errors\n",
           after.rss_bytes / 1048576.0, after.open_fds, after.leases, after.leased_bytes, after.leased_tensors,
           after.connections, after.cached_tensors, after.decodes, after.errors);
    wc_client_close(mon);
    return errors || !settled || after.leases || after.open_fds != before.open_fds;
}

int main(int argc, char **argv)
{
    int per1 = argc > 1 ? atoi(argv[1]) : 10000;
    if (wdt_env_init(&env)) return 1;
    if (wdt_daemon_start(&dmn, &env, "[daemon]\nlog_level = warning\nthreads = 2\n[cache]\nbudget = 1G\n", NULL, NULL))
        return 1;
    wc_client *c = wdt_connect(&dmn);
    wc_client_model m;
    wc_err err = {0};
    if (!c || wc_client_open(c, env.model, &m, &err)) return fprintf(stderr, "open: %s\n", err.msg), 1;
    model_id = m.id;
    /* The largest coded tensor, decoded once before timing. */
    size_t best = 0;
    for (size_t i = 0; i < wc_file_tensor_count(env.ref); i++)
        if (wdt_footprint(&env, i) > wdt_footprint(&env, best)) best = i;
    wc_tensor_info ti;
    wc_file_tensor_info(env.ref, best, &ti);
    tensor = ti.name;
    wc_client_tensor **all;
    size_t n;
    if (wc_client_get(c, m.id, WC_SELECT_ALL, NULL, 0, &all, &n, &err)) return fprintf(stderr, "get: %s\n", err.msg), 1;
    wc_client_release(c, all, n, &err);
    free(all);
    wc_client_close(c);
    printf("wcodecd bench: model %s (%zu tensors), tensor %s (%" PRIu64 " bytes + %" PRIu64 " scales), %ld CPUs\n",
           env.model, wc_file_tensor_count(env.ref), tensor, ti.out_bytes, ti.n_scales, sysconf(_SC_NPROCESSORS_ONLN));
    int bad = 0;
    bad |= latency(1, per1) != 0;
    bad |= latency(32, per1 / 10 > 0 ? per1 / 10 : 1) != 0;
    bad |= load(64, 1000);
    int st = wdt_daemon_stop(&dmn);
    wdt_env_fini(&env);
    printf("daemon exit status %d\n", st);
    return bad || st;
}
