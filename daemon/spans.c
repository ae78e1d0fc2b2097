/* wcd_spans: byte ranges of an arena, first fit; see spans.h. */
#include <stdlib.h>
#include <string.h>

#include <wcodec/wcodec.h>

#include "spans.h"

int wcd_spans_init(wcd_spans *s, uint64_t size, uint32_t align)
{
    memset(s, 0, sizeof *s);
    if (!align || (align & (align - 1)) || size % align) return WC_EINVAL;
    s->size = size;
    s->align = align;
    s->cap = 16;
    if (!(s->free = malloc(s->cap * sizeof *s->free))) return WC_ENOMEM;
    if (size) s->free[s->n_free++] = (wcd_span){0, size};
    return 0;
}

void wcd_spans_deinit(wcd_spans *s)
{
    free(s->free);
    memset(s, 0, sizeof *s);
}

static uint64_t round_len(const wcd_spans *s, uint64_t len)
{
    return (len + s->align - 1) & ~(uint64_t)(s->align - 1);
}

int wcd_spans_alloc(wcd_spans *s, uint64_t len, uint64_t *off)
{
    if (!len || len > s->size) return len ? WC_ENOMEM : WC_EINVAL;
    len = round_len(s, len);
    for (size_t i = 0; i < s->n_free; i++) {
        wcd_span *f = &s->free[i];
        if (f->len < len) continue;
        *off = f->off;
        f->off += len;
        f->len -= len;
        if (!f->len) {
            memmove(f, f + 1, (s->n_free - i - 1) * sizeof *f);
            s->n_free--;
        }
        s->used += len;
        return 0;
    }
    return WC_ENOMEM;
}

/* Index of the first free range that starts after off. */
static size_t upper(const wcd_spans *s, uint64_t off)
{
    size_t lo = 0, hi = s->n_free;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->free[mid].off <= off) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int wcd_spans_free(wcd_spans *s, uint64_t off, uint64_t len)
{
    if (!len || off % s->align || off > s->size) return WC_EINVAL;
    len = round_len(s, len);
    if (len > s->size - off) return WC_EINVAL;
    size_t i = upper(s, off);
    wcd_span *prev = i ? &s->free[i - 1] : NULL, *next = i < s->n_free ? &s->free[i] : NULL;
    /* the range must overlap no free range: otherwise it was not allocated */
    if ((prev && prev->off + prev->len > off) || (next && off + len > next->off)) return WC_EINVAL;
    bool join_prev = prev && prev->off + prev->len == off, join_next = next && off + len == next->off;
    if (join_prev && join_next) {
        prev->len += len + next->len;
        memmove(next, next + 1, (s->n_free - i - 1) * sizeof *next);
        s->n_free--;
    } else if (join_prev) {
        prev->len += len;
    } else if (join_next) {
        next->off = off;
        next->len += len;
    } else {
        if (s->n_free == s->cap) {
            wcd_span *n = realloc(s->free, 2 * s->cap * sizeof *n);
            if (!n) return WC_ENOMEM;
            s->free = n;
            s->cap *= 2;
        }
        memmove(&s->free[i + 1], &s->free[i], (s->n_free - i) * sizeof *s->free);
        s->free[i] = (wcd_span){off, len};
        s->n_free++;
    }
    s->used -= len;
    return 0;
}

uint64_t wcd_spans_largest(const wcd_spans *s)
{
    uint64_t m = 0;
    for (size_t i = 0; i < s->n_free; i++)
        if (s->free[i].len > m) m = s->free[i].len;
    return m;
}
