/* libFuzzer target: the .wcodec container parser and the reference decoder,
 * and the safetensors parser, on the same input.
 *
 * In the fuzz build FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION turns the
 * checksum comparisons off, so that mutated inputs reach the parsers behind
 * them instead of stopping at the first hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "safetensors.h"

#define MAX_OUT (16u << 20)

static int memfd_of(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) abort();
    for (size_t o = 0; o < size;) {
        ssize_t w = write(fd, data + o, size - o);
        if (w <= 0) abort();
        o += (size_t)w;
    }
    return fd;
}

static void run_container(int fd)
{
    wc_file *f;
    wc_err e;
    if (wc_file_open_fd(&f, fd, "fuzz.wcodec", &e)) return;
    for (size_t i = 0; i < wc_file_tensor_count(f); i++) {
        wc_tensor_info t;
        if (wc_file_tensor_info(f, i, &t)) abort();
        if (wc_file_find(f, t.name) < 0) abort();
        if (t.out_bytes > MAX_OUT || t.n_scales > MAX_OUT) continue;
        uint8_t *out = malloc(t.out_bytes + 1);
        float *sc = malloc(4 * t.n_scales + 4);
        if (!out || !sc) abort();
        wc_decode_tensor(f, i, out, t.out_bytes, sc, t.n_scales, &e);
        free(out);
        free(sc);
    }
    wc_file_close(f);
}

static void run_safetensors(int fd)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    wc_st_file st;
    if (wc_st_open(&st, path, NULL)) return;
    for (size_t i = 0; i < st.n_tensors; i++) {
        volatile uint8_t sink = 0;
        if (st.tensors[i].size) sink ^= st.tensors[i].data[st.tensors[i].size - 1];
        (void)sink;
    }
    wc_st_close(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_of(data, size);
    run_container(fd);
    run_safetensors(fd);
    close(fd);
    return 0;
}
