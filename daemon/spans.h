/* wcd_spans: places tensors inside one arena (issue 19).
 *
 * An arena is a few large allocations (2 MiB granules on the GPU); a model
 * has hundreds of tensors, many of a few KB. The spans allocator hands out
 * byte ranges [off, off + len) of an arena of `size` bytes: lengths are
 * rounded up to `align` (a power of two: 256 B, so that every tensor starts
 * where the decode kernels' vector stores want it), the lowest free range
 * that fits is taken (first fit: a model decoded once and evicted in LRU
 * order frees mostly from the front), and a freed range merges with free
 * neighbours, so that an arena whose tensors are all freed is one free range
 * again.
 *
 * The free ranges are kept in a sorted array: a model's arena holds at most
 * a few thousand tensors, and a request allocates them in one go, so that a
 * binary search and a memmove cost less than a tree would. Not thread-safe:
 * the daemon's loop owns its arenas. */
#ifndef WCD_SPANS_H
#define WCD_SPANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wcd_span {
    uint64_t off, len;
} wcd_span;

typedef struct wcd_spans {
    uint64_t size;   /* of the arena */
    uint64_t used;   /* bytes allocated (rounded lengths) */
    uint32_t align;
    wcd_span *free;  /* free ranges, sorted by offset, none adjacent */
    size_t n_free, cap;
} wcd_spans;

/* 0, or WC_EINVAL (align not a power of two, or size not a multiple of it),
 * or WC_ENOMEM. */
int wcd_spans_init(wcd_spans *s, uint64_t size, uint32_t align);
void wcd_spans_deinit(wcd_spans *s);

/* The offset of `len` bytes (rounded up to align) in *off; WC_ENOMEM when no
 * free range is long enough, WC_EINVAL for len 0. */
int wcd_spans_alloc(wcd_spans *s, uint64_t len, uint64_t *off);
/* Gives back what wcd_spans_alloc(s, len) returned at off. WC_EINVAL if
 * that range is not wholly allocated (a double free, or a range that was
 * never handed out): the allocator is then unchanged. */
int wcd_spans_free(wcd_spans *s, uint64_t off, uint64_t len);

/* The longest free range, for "would a tensor of n bytes fit". */
uint64_t wcd_spans_largest(const wcd_spans *s);
static inline bool wcd_spans_empty(const wcd_spans *s) { return s->used == 0; }

#endif
