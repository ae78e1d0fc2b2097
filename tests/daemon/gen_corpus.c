/* Writes the seed corpus of fuzz_daemon: client byte streams that reach
 * each request type. Run by hand when the protocol changes:
 *   build/tests/daemon/gen_corpus MODEL.wcodec tests/daemon/corpus */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wcodec/wcodec.h>

#include "wcodec.pb-c.h"

static uint8_t stream[1 << 20];
static size_t len;

static void add(Wcodec__V1__Request *q)
{
    static uint64_t id;
    q->id = ++id;
    size_t n = wcodec__v1__request__get_packed_size(q);
    stream[len] = (uint8_t)n, stream[len + 1] = (uint8_t)(n >> 8);
    stream[len + 2] = (uint8_t)(n >> 16), stream[len + 3] = (uint8_t)(n >> 24);
    wcodec__v1__request__pack(q, stream + len + 4);
    len += 4 + n;
}

static void raw(const void *p, size_t n)
{
    memcpy(stream + len, p, n);
    len += n;
}

static void hello(uint32_t v)
{
    Wcodec__V1__Hello h = WCODEC__V1__HELLO__INIT;
    h.protocol_version = v;
    h.min_version = v;
    h.client_name = (char *)"corpus";
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_HELLO;
    q.hello = &h;
    add(&q);
}

static void open_(const char *path)
{
    Wcodec__V1__OpenModel o = WCODEC__V1__OPEN_MODEL__INIT;
    o.path = (char *)path;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_OPEN;
    q.open = &o;
    add(&q);
}

static void list(const char *prefix)
{
    Wcodec__V1__ListTensors l = WCODEC__V1__LIST_TENSORS__INIT;
    l.model_id = 1;
    l.prefix = (char *)prefix;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_LIST;
    q.list = &l;
    add(&q);
}

static void get(int sel, const char **names, size_t n)
{
    Wcodec__V1__GetTensors g = WCODEC__V1__GET_TENSORS__INIT;
    Wcodec__V1__GetTensors__Names nm = WCODEC__V1__GET_TENSORS__NAMES__INIT;
    g.model_id = 1;
    if (sel == 0) {
        nm.n_name = n;
        nm.name = (char **)names;
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_NAMES;
        g.names = &nm;
    } else if (sel == 1) {
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_PREFIX;
        g.prefix = (char *)names[0];
    } else {
        g.select_case = WCODEC__V1__GET_TENSORS__SELECT_ALL;
        g.all = 1;
    }
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_GET;
    q.get = &g;
    add(&q);
}

static void release(uint64_t from, uint64_t to)
{
    uint64_t ids[512];
    size_t n = 0;
    for (uint64_t i = from; i <= to && n < 512; i++) ids[n++] = i;
    Wcodec__V1__Release r = WCODEC__V1__RELEASE__INIT;
    r.n_lease_id = n;
    r.lease_id = ids;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_RELEASE;
    q.release = &r;
    add(&q);
}

static void stats(void)
{
    Wcodec__V1__Stats s = WCODEC__V1__STATS__INIT;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_STATS;
    q.stats = &s;
    add(&q);
}

static void evict(uint64_t model)
{
    Wcodec__V1__Evict e = WCODEC__V1__EVICT__INIT;
    e.model_id = model;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_EVICT;
    q.evict = &e;
    add(&q);
}

static void unload(uint64_t model)
{
    Wcodec__V1__Unload u = WCODEC__V1__UNLOAD__INIT;
    u.model_id = model;
    Wcodec__V1__Request q = WCODEC__V1__REQUEST__INIT;
    q.body_case = WCODEC__V1__REQUEST__BODY_UNLOAD;
    q.unload = &u;
    add(&q);
}

static const char *dir;

static void save(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(stream, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    len = 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_corpus MODEL.wcodec OUTDIR\n");
        return 2;
    }
    wc_file *f;
    wc_err err = {0};
    if (wc_file_open(&f, argv[1], &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    dir = argv[2];
    size_t nt = wc_file_tensor_count(f);
    wc_tensor_info a, b, c;
    wc_file_tensor_info(f, 0, &a);
    wc_file_tensor_info(f, nt / 2, &b);
    wc_file_tensor_info(f, nt - 1, &c);
    char prefix[8];
    snprintf(prefix, sizeof prefix, "%.3s", b.name);

    hello(1);
    save("hello");
    hello(1), open_("model.wcodec"), list(""), list(prefix), stats();
    save("open-list-stats");
    const char *names[] = {a.name, b.name, c.name, b.name};
    hello(1), open_("model.wcodec"), get(0, names, 4), get(0, names + 1, 1), release(1, 3), stats(), evict(0),
        release(4, 5), stats();
    save("get-names-release");
    const char *pp[] = {prefix};
    hello(1), open_("model.wcodec"), get(1, pp, 1), stats(), evict(1), release(1, 64);
    save("get-prefix");
    hello(1), open_("model.wcodec"), get(2, NULL, 0), get(2, NULL, 0), stats(), release(1, 512), evict(0);
    save("get-all-twice");
    hello(1), open_("model.wcodec"), get(0, names, 2), unload(1), get(0, names, 1), list(""), release(1, 2),
        unload(1), open_("model.wcodec"), get(0, names + 2, 1), stats();
    save("unload");
    const char *bad[] = {"no.such.tensor"};
    hello(1), open_("../outside.wcodec"), open_("/etc/passwd"), open_(""), get(0, bad, 1), evict(99), release(7, 7);
    save("errors");
    stats(), hello(1);
    save("no-hello");
    hello(9);
    save("bad-version");
    hello(1);
    raw("\x06\x00\x00\x00\x7f\xff\xff\xff\xff\x0f", 10);
    save("garbage");
    hello(1);
    raw("\xff\xff\xff\x7f", 4);
    save("oversized");
    hello(1), open_("model.wcodec");
    raw("\x40\x00\x00\x00\x08\x01\x6a", 7);
    save("truncated");
    Wcodec__V1__Request empty = WCODEC__V1__REQUEST__INIT;
    hello(1), add(&empty), stats();
    save("empty-request");
    wc_file_close(f);
    return 0;
}
