/* The client's table of device allocations (client/arenas.c) driven by
 * hand-made reply frames and fake imports: an allocation is imported once
 * per stretch of leases, unmapped only when a Release reply takes the
 * daemon's count to 0 (not when the caller lets go of its last tensor), a
 * get frame cut before a Release keeps it mapped, and every location is
 * checked against its allocation's size. The expectations are the rules of
 * docs/PROTOCOL.md ("Device memory"), counted by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "arenas.h"

/* ---- fake imports: a mapping is a made-up address; what was asked is kept ---- */

typedef struct fake {
    int maps, unmaps, fail_code;
    int last_fd;
    unsigned char last_handle[64];
    uint64_t next_base;
    int live;             /* mapped and not unmapped */
} fake;

static int fake_map(void *ctx, wcc_arena *a, int fd, const unsigned char *handle, wc_err *err)
{
    fake *f = ctx;
    f->maps++;
    f->last_fd = fd;
    if (handle) memcpy(f->last_handle, handle, 64);
    if (f->fail_code) {
        if (err) err->code = f->fail_code, snprintf(err->msg, sizeof err->msg, "fake import failure");
        return f->fail_code;
    }
    a->base = f->next_base;
    f->next_base += 0x10000000;
    a->device = 3;
    f->live++;
    return 0;
}

static void fake_unmap(void *ctx, wcc_arena *a)
{
    fake *f = ctx;
    assert_true(a->base != 0);
    f->unmaps++;
    f->live--;
}

static fake F;
static wcc_import_ops OPS = {fake_map, fake_unmap, &F};
static const unsigned char UUID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    F.next_base = 0x7f0000000000;
    return 0;
}

/* ---- hand-made frames ---- */

#define MAXT 8
typedef struct frame_b {
    Wcodec__V1__GetTensorsReply g;
    Wcodec__V1__Tensor t[MAXT], *tp[MAXT];
    Wcodec__V1__TensorInfo info[MAXT];
    Wcodec__V1__Location loc[MAXT];
    Wcodec__V1__Allocation a[4], *ap[4];
    unsigned char handle[64];
} frame_b;

static void fb_init(frame_b *b)
{
    memset(b, 0, sizeof *b);
    Wcodec__V1__GetTensorsReply g = WCODEC__V1__GET_TENSORS_REPLY__INIT;
    b->g = g;
    b->g.tensor = b->tp;
    b->g.allocation = b->ap;
    memset(b->handle, 0xab, sizeof b->handle);
}

static Wcodec__V1__Allocation *fb_alloc(frame_b *b, uint64_t id, bool vmm, uint64_t size, uint32_t fd_index)
{
    Wcodec__V1__Allocation a = WCODEC__V1__ALLOCATION__INIT;
    a.id = id;
    a.kind = vmm ? WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM : WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC;
    a.device_uuid = (ProtobufCBinaryData){16, (uint8_t *)UUID};
    a.size = size;
    a.fd_index = fd_index;
    if (!vmm) a.ipc_handle = (ProtobufCBinaryData){64, b->handle};
    size_t i = b->g.n_allocation++;
    b->a[i] = a;
    b->ap[i] = &b->a[i];
    return &b->a[i];
}

/* A tensor of out_bytes at offset in allocation id, with n_scales scales at sc_off. */
static Wcodec__V1__Tensor *fb_tensor(frame_b *b, uint64_t id, bool vmm, uint64_t offset, uint64_t out_bytes,
                                     uint64_t sc_off, uint64_t n_scales)
{
    size_t i = b->g.n_tensor++;
    Wcodec__V1__TensorInfo info = WCODEC__V1__TENSOR_INFO__INIT;
    info.name = "w";
    info.out_bytes = out_bytes;
    info.n_scales = n_scales;
    Wcodec__V1__Location l = WCODEC__V1__LOCATION__INIT;
    l.kind = vmm ? WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM : WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC;
    l.allocation_id = id;
    l.device_uuid = (ProtobufCBinaryData){16, (uint8_t *)UUID};
    l.offset = offset;
    l.length = out_bytes;
    l.scales_offset = sc_off;
    l.n_scales = n_scales;
    Wcodec__V1__Tensor t = WCODEC__V1__TENSOR__INIT;
    b->info[i] = info;
    b->loc[i] = l;
    t.info = &b->info[i];
    t.location = &b->loc[i];
    t.lease_id = 100 + i;
    b->t[i] = t;
    b->tp[i] = &b->t[i];
    return &b->t[i];
}

static uint64_t leases_of(const wcc_arenas *t, uint64_t id)
{
    const wcc_arena *a = wcc_arenas_find(t, id);
    return a ? a->leases : 0;
}

/* ---- the rules ---- */

/* An allocation is imported by the frame that lists it, once; later frames
 * with tensors in it (not listing it) use that mapping. */
static void imported_once(void **state)
{
    (void)state;
    wcc_arenas t;
    wcc_arenas_init(&t, &OPS);
    int fds[2] = {41, 42};
    frame_b b;
    fb_init(&b);
    fb_alloc(&b, 7, true, 4 << 20, 1);
    fb_tensor(&b, 7, true, 0, 1000, 1024, 10);
    fb_tensor(&b, 7, true, 4096, 2000, 0, 0);
    wcc_arenas_get_frame(&t, &b.g, fds, 2, true);
    assert_int_equal(F.maps, 1);
    assert_int_equal(F.last_fd, 42);   /* fds[fd_index] */
    assert_int_equal(leases_of(&t, 7), 2);

    wcc_place p;
    wc_err e = {0};
    assert_int_equal(wcc_arenas_locate(&t, &b.t[0], &p, &e), 0);
    assert_true(p.data == 0x7f0000000000 && p.scales == 0x7f0000000000 + 1024 && p.device == 3);
    assert_memory_equal(p.uuid, UUID, 16);
    assert_int_equal(wcc_arenas_locate(&t, &b.t[1], &p, &e), 0);
    assert_true(p.data == 0x7f0000000000 + 4096 && p.scales == 0);

    frame_b b2;
    fb_init(&b2);
    fb_tensor(&b2, 7, true, 8192, 100, 0, 0);
    wcc_arenas_get_frame(&t, &b2.g, NULL, 0, true);
    assert_int_equal(F.maps, 1);
    assert_int_equal(leases_of(&t, 7), 3);
    assert_int_equal(wcc_arenas_locate(&t, &b2.t[0], &p, &e), 0);
    assert_true(p.data == 0x7f0000000000 + 8192);

    /* listed again while held (a daemon should not): the mapping stays */
    frame_b b3;
    fb_init(&b3);
    fb_alloc(&b3, 7, true, 4 << 20, 0);
    fb_tensor(&b3, 7, true, 0, 1000, 0, 0);
    wcc_arenas_get_frame(&t, &b3.g, fds, 1, true);
    assert_int_equal(F.maps, 1);
    assert_int_equal(leases_of(&t, 7), 4);

    wcc_arenas_fini(&t);
    assert_int_equal(F.unmaps, 1);
    assert_int_equal(F.live, 0);
}

/* Unmapped when a Release reply takes the count to 0, not before; listed
 * again afterwards, it is imported again. */
static void unmapped_after_release_reply(void **state)
{
    (void)state;
    wcc_arenas t;
    wcc_arenas_init(&t, &OPS);
    int fds[1] = {40};
    frame_b b;
    fb_init(&b);
    fb_alloc(&b, 9, true, 1 << 20, 0);
    fb_tensor(&b, 9, true, 0, 10, 0, 0);
    fb_tensor(&b, 9, true, 64, 10, 0, 0);
    fb_tensor(&b, 9, true, 128, 10, 0, 0);
    wcc_arenas_get_frame(&t, &b.g, fds, 1, true);
    uint64_t two[2] = {9, 9}, one[1] = {9};
    wcc_arenas_released(&t, two, 2);
    assert_int_equal(leases_of(&t, 9), 1);
    assert_int_equal(F.unmaps, 0);
    wcc_arenas_released(&t, one, 1);
    assert_null(wcc_arenas_find(&t, 9));
    assert_int_equal(F.unmaps, 1);
    /* a stray decrement of an allocation no longer held changes nothing */
    wcc_arenas_released(&t, one, 1);
    assert_int_equal(F.unmaps, 1);

    frame_b b2;
    fb_init(&b2);
    fb_alloc(&b2, 9, true, 1 << 20, 0);
    fb_tensor(&b2, 9, true, 0, 10, 0, 0);
    wcc_arenas_get_frame(&t, &b2.g, fds, 1, true);
    assert_int_equal(F.maps, 2);
    assert_int_equal(leases_of(&t, 9), 1);
    wcc_arenas_fini(&t);
    assert_int_equal(F.live, 0);
}

/* One thread releases its last tensor in an allocation while another's
 * get, cut by the daemon before it processed that Release, arrives
 * without listing it: the get frame comes first in the stream, so the
 * allocation must still be mapped for it and stay mapped after the Release
 * reply. The other order (the Release processed first, then the get frame
 * listing the allocation again) imports anew. */
static void get_frame_before_release_reply(void **state)
{
    (void)state;
    wcc_arenas t;
    wcc_arenas_init(&t, &OPS);
    int fds[1] = {40};
    frame_b a;
    fb_init(&a);
    fb_alloc(&a, 5, true, 1 << 20, 0);
    fb_tensor(&a, 5, true, 0, 10, 0, 0);
    wcc_arenas_get_frame(&t, &a.g, fds, 1, true);
    /* thread 1: wc_client_release of its tensor: the request is sent, the
     * table does not move until the reply */
    frame_b b;
    fb_init(&b);
    fb_tensor(&b, 5, true, 4096, 10, 0, 0);
    wcc_arenas_get_frame(&t, &b.g, NULL, 0, true);   /* thread 2's frame */
    wcc_place p;
    wc_err e = {0};
    assert_int_equal(wcc_arenas_locate(&t, &b.t[0], &p, &e), 0);
    uint64_t rel[1] = {5};
    wcc_arenas_released(&t, rel, 1);                  /* thread 1's reply */
    assert_int_equal(F.unmaps, 0);
    assert_int_equal(leases_of(&t, 5), 1);
    assert_int_equal(wcc_arenas_locate(&t, &b.t[0], &p, &e), 0);
    assert_true(p.data == 0x7f0000000000 + 4096);

    /* two releases in flight, replies in either order: the count follows
     * the replies, the unmap comes with the last */
    frame_b c;
    fb_init(&c);
    fb_tensor(&c, 5, true, 8192, 10, 0, 0);
    wcc_arenas_get_frame(&t, &c.g, NULL, 0, true);
    wcc_arenas_released(&t, rel, 1);
    assert_int_equal(F.unmaps, 0);
    wcc_arenas_released(&t, rel, 1);
    assert_int_equal(F.unmaps, 1);
    assert_int_equal(F.maps, 1);
    wcc_arenas_fini(&t);
    assert_int_equal(F.live, 0);
}

/* Every location is checked against its allocation: nothing may lead the
 * caller past the mapping. */
static void locations_bounded(void **state)
{
    (void)state;
    wcc_arenas t;
    wcc_arenas_init(&t, &OPS);
    int fds[1] = {40};
    const uint64_t SZ = 2 << 20;
    frame_b b;
    fb_init(&b);
    fb_alloc(&b, 1, true, SZ, 0);
    Wcodec__V1__Tensor *exact = fb_tensor(&b, 1, true, SZ - 100, 60, SZ - 40, 10);  /* ends at the last byte */
    Wcodec__V1__Tensor *past = fb_tensor(&b, 1, true, SZ - 100, 101, 0, 0);
    Wcodec__V1__Tensor *wrap = fb_tensor(&b, 1, true, UINT64_MAX - 10, 100, 0, 0);
    Wcodec__V1__Tensor *sc_past = fb_tensor(&b, 1, true, 0, 100, SZ - 36, 10);
    Wcodec__V1__Tensor *sc_odd = fb_tensor(&b, 1, true, 0, 100, 1026, 1);
    Wcodec__V1__Tensor *sc_huge = fb_tensor(&b, 1, true, 0, 100, 1024, UINT64_MAX / 2);
    Wcodec__V1__Tensor *len_info = fb_tensor(&b, 1, true, 0, 100, 0, 0);
    Wcodec__V1__Tensor *other_dev = fb_tensor(&b, 1, true, 0, 100, 0, 0);
    wcc_arenas_get_frame(&t, &b.g, fds, 1, true);
    assert_int_equal(leases_of(&t, 1), 8);
    b.info[6].out_bytes = 99;                          /* length unlike the info */
    static const unsigned char other[16] = {9};
    b.loc[7].device_uuid = (ProtobufCBinaryData){16, (uint8_t *)other};
    wcc_place p;
    wc_err e = {0};
    assert_int_equal(wcc_arenas_locate(&t, exact, &p, &e), 0);
    assert_int_equal(wcc_arenas_locate(&t, past, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, wrap, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, sc_past, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, sc_odd, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, sc_huge, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, len_info, &p, &e), WC_EPROTO);
    assert_int_equal(wcc_arenas_locate(&t, other_dev, &p, &e), WC_EPROTO);
    assert_non_null(strstr(e.msg, "allocation 1"));
    /* a VMM tensor claiming to lie in a legacy allocation */
    b.loc[0].kind = WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC;
    assert_int_equal(wcc_arenas_locate(&t, exact, &p, &e), WC_EPROTO);
    wcc_arenas_fini(&t);
}

/* Allocations the client cannot or must not map: the tensors in them fail
 * with the reason, the counts still follow the daemon's. */
static void unmappable(void **state)
{
    (void)state;
    int fds[1] = {40};
    wcc_place p;
    wc_err e = {0};
    /* descriptor missing, handle short, never sent */
    wcc_arenas t;
    wcc_arenas_init(&t, &OPS);
    frame_b b;
    fb_init(&b);
    fb_alloc(&b, 1, true, 1 << 20, 1);                 /* fd_index 1 of 1 */
    Wcodec__V1__Allocation *ipc = fb_alloc(&b, 2, false, 1 << 20, 0);
    ipc->ipc_handle.len = 63;
    fb_tensor(&b, 1, true, 0, 10, 0, 0);
    fb_tensor(&b, 2, false, 0, 10, 0, 0);
    fb_tensor(&b, 3, true, 0, 10, 0, 0);
    wcc_arenas_get_frame(&t, &b.g, fds, 1, true);
    assert_int_equal(F.maps, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(wcc_arenas_locate(&t, &b.t[i], &p, &e), WC_EPROTO);
    uint64_t rel[3] = {1, 2, 3};
    wcc_arenas_released(&t, rel, 3);
    assert_int_equal(t.n, 0);
    assert_int_equal(F.unmaps, 0);

    /* a legacy handle passes its 64 bytes; an import that fails */
    frame_b c;
    fb_init(&c);
    fb_alloc(&c, 4, false, 1 << 20, 0);
    fb_tensor(&c, 4, false, 0, 10, 0, 0);
    F.fail_code = WC_ECUDA;
    wcc_arenas_get_frame(&t, &c.g, NULL, 0, true);
    assert_int_equal(F.maps, 1);
    assert_int_equal(F.last_fd, -1);
    assert_memory_equal(F.last_handle, c.handle, 64);
    assert_int_equal(wcc_arenas_locate(&t, &c.t[0], &p, &e), WC_ECUDA);
    assert_non_null(strstr(e.msg, "fake import failure"));
    uint64_t r4[1] = {4};
    wcc_arenas_released(&t, r4, 1);
    assert_int_equal(F.unmaps, 0);                     /* nothing was mapped */
    F.fail_code = 0;

    /* a request for host memory does not import */
    frame_b d;
    fb_init(&d);
    fb_alloc(&d, 5, true, 1 << 20, 0);
    fb_tensor(&d, 5, true, 0, 10, 0, 0);
    wcc_arenas_get_frame(&t, &d.g, fds, 1, false);
    assert_int_equal(F.maps, 1);
    assert_int_equal(wcc_arenas_locate(&t, &d.t[0], &p, &e), WC_EPROTO);
    wcc_arenas_fini(&t);

    /* a build without CUDA */
    wcc_arenas n;
    wcc_arenas_init(&n, NULL);
    wcc_arenas_get_frame(&n, &d.g, fds, 1, true);
    assert_int_equal(wcc_arenas_locate(&n, &d.t[0], &p, &e), WC_EUNSUPPORTED);
    assert_non_null(strstr(e.msg, "without CUDA"));
    wcc_arenas_fini(&n);
    assert_int_equal(F.maps, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(imported_once, setup),
        cmocka_unit_test_setup(unmapped_after_release_reply, setup),
        cmocka_unit_test_setup(get_frame_before_release_reply, setup),
        cmocka_unit_test_setup(locations_bounded, setup),
        cmocka_unit_test_setup(unmappable, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
