/* checkasm, after dav1d's: every routine of wc_dsp that a CPU level replaces
 * is run beside its C reference on the same random and real inputs (and on
 * damaged streams), and results, return codes and every byte written are
 * compared. `--bench` times each version instead of only checking it.
 *
 * usage: checkasm [--bench] [--seed=N] [--test=NAME] [--real=FILE.safetensors]...
 * Exit status 0 if every check passed, 1 otherwise. */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "checkasm.h"
#include "dsp.h"
#include "inputs.h"
#ifdef CA_GPU
#include "ca_gpu.h"
#endif

#define MAX_REAL 16

static struct {
    uint64_t seed;
    bool bench;
    const char *only;
    const char *real[MAX_REAL];
    int n_real;
    ca_set set;
    int fails;
} S;

void ca_mismatch(check *c, const char *fmt, ...)
{
    if (c->bad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  %s_%s mismatch: ", c->name, c->level);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static void report(const check *c)
{
    printf("%-14s %-12s %s (%ld cases", c->name, c->level, c->bad ? "FAILED" : "ok", c->cases);
    if (c->bad) printf(", %ld wrong", c->bad);
    printf(")\n");
    if (c->bad) S.fails++;
}

size_t ca_first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return n;
}

/* ---- rANS ---------------------------------------------------------------- */

/* A random table of one of the shapes that matter: flat, two-sided
 * geometric like INT8 weights, one symbol (never renormalises), a rare
 * symbol of frequency 1 beside a dominant one, and a sparse random set. */
void ca_random_table(uint64_t *rng, uint32_t bits, wc_rans_table *t)
{
    uint64_t h[256] = {0};
    switch (ca_rand(rng) % 5) {
    case 0:
        for (int s = 0; s < 256; s++) h[s] = 1 + ca_rand(rng) % 4;
        break;
    case 1: {
        double width = 0.5 + (double)(ca_rand(rng) % 4000) / 100.0, p = 1e9;
        for (int v = 0; v < 128 && p >= 1; v++, p /= 1 + 1 / width) h[v] = h[(256 - v) & 255] = (uint64_t)p;
        break;
    }
    case 2:
        h[ca_rand(rng) % 256] = 1;
        break;
    case 3:
        h[ca_rand(rng) % 256] = 1000000, h[ca_rand(rng) % 256] += 1;
        break;
    default:
        for (int k = 0; k < 20; k++) h[ca_rand(rng) % 256] += 1 + ca_rand(rng) % 1000;
    }
    if (wc_rans_normalize(h, bits, t)) abort();
}

/* Decodes stream[0, len) with both versions into buffers of exactly n
 * bytes filled alike, and compares return codes and bytes. Returns the
 * reference's code. */
static int compare_decode(check *c, wc_rans_decode_fn ref, wc_rans_decode_fn fast,
                          const wc_rans_dec_table *dec, const uint8_t *row_table, uint32_t w,
                          const uint8_t *stream, size_t len, size_t n, const char *what)
{
    /* exact-size copies, so that ASan sees any read past either end */
    uint8_t *s = malloc(len ? len : 1), *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
    if (!s || !a || !b) abort();
    memcpy(s, stream, len);
    memset(a, 0xa5, n);
    memset(b, 0xa5, n);
    int ra = ref(dec, row_table, w, s, len, a, n), rb = fast(dec, row_table, w, s, len, b, n);
    c->cases++;
    if (ra != rb)
        ca_mismatch(c, "%s (n %zu, w %u, len %zu): returns %d, reference %d", what, n, w, len, rb, ra);
    else if ((!c->loose || ra == 0) && memcmp(a, b, n)) {
        size_t i = ca_first_diff(a, b, n);
        ca_mismatch(c, "%s (n %zu, w %u, len %zu): byte %zu is %u, reference %u", what, n, w, len, i, b[i], a[i]);
    }
    free(s), free(a), free(b);
    return ra;
}

/* Damages a valid stream in each of the ways the format must catch, and
 * compares both versions on each. */
static void damage(check *c, uint64_t *rng, wc_rans_decode_fn ref, wc_rans_decode_fn fast,
                   const wc_rans_dec_table *dec, const uint8_t *row_table, uint32_t w, const uint8_t *stream,
                   size_t len, size_t n, long *caught)
{
    uint8_t *p = malloc(len + 8);
    for (int kind = 0; kind < 9; kind++) {
        memcpy(p, stream, len);
        memset(p + len, 0, 8);
        size_t l = len, nw = (len - WC_RANS_HEADER_BYTES) / 2;
        switch (kind) {
        case 0: p[ca_rand(rng) % len] ^= (uint8_t)(1u << ca_rand(rng) % 8); break; /* any bit */
        case 1: if (nw) p[WC_RANS_HEADER_BYTES + ca_rand(rng) % (2 * nw)] ^= 0x10; break; /* a word */
        case 2: if (l >= WC_RANS_HEADER_BYTES + 4) l -= 4; break;                   /* truncated */
        case 3: l += 4; break;                                                        /* zero words added */
        case 4: wc_wr32(p + l, (uint32_t)ca_rand(rng)), l += 4; break;               /* junk added */
        case 5: wc_wr32(p + 4 * (ca_rand(rng) % 32), (uint32_t)(ca_rand(rng) % WC_RANS_L)); break;
        case 6: l -= 1 + ca_rand(rng) % 3; break;                                    /* not whole words */
        case 7: if (nw) wc_wr16(p + len - 2, (uint16_t)(1 + ca_rand(rng) % 0xffff)); break; /* last word */
        default: wc_wr32(p + 4 * (ca_rand(rng) % 32), (uint32_t)ca_rand(rng) | WC_RANS_L); /* a state */
        }
        *caught += compare_decode(c, ref, fast, dec, row_table, w, p, l, n, "damaged stream") != 0;
    }
    free(p);
}

/* Tile shapes (h, w): single symbols, every edge of the 32 lanes and of
 * the vectors' eight, rows shorter and longer than a step, rows at and
 * around the width from which AVX-512 decodes several tables row by row
 * (256), a whole default tile, and one row longer than a tile. */
const uint32_t CA_SHAPES[][2] = {
    {1, 1},    {1, 2},     {1, 31},  {1, 32},  {1, 33},  {1, 63},   {1, 64},  {1, 65},   {2, 16},
    {3, 7},    {31, 1},    {33, 1},  {5, 13},  {7, 33},  {100, 3},  {64, 31}, {16, 64},  {9, 100},
    {3, 1000}, {1, 4097},  {40, 1001}, {17, 2}, {9, 255}, {9, 256}, {7, 300}, {8, 480}, {256, 1024}, {1, 262147},
};
const size_t CA_N_SHAPES = sizeof CA_SHAPES / sizeof *CA_SHAPES;

static void check_rans_random(check *c, wc_rans_decode_fn ref, wc_rans_decode_fn fast)
{
    uint64_t rng = S.seed ^ 0x7261;
    long caught = 0, damaged = 0;
    for (uint32_t bits = WC_RANS_MIN_PROB_BITS; bits <= WC_RANS_MAX_PROB_BITS; bits++) {
        for (size_t k = 0; k < sizeof CA_SHAPES / sizeof *CA_SHAPES; k++) {
            const uint32_t h = CA_SHAPES[k][0], w = CA_SHAPES[k][1];
            const size_t n = (size_t)h * w;
            /* one table, or up to 16 named per row, all of one precision
             * as in a file */
            const uint32_t n_tables = ca_rand(&rng) % 3 ? 1 + (uint32_t)(ca_rand(&rng) % 16) : 1;
            wc_rans_table tab[16];
            static wc_rans_dec_table dec[16];
            for (uint32_t t = 0; t < n_tables; t++) {
                ca_random_table(&rng, bits, &tab[t]);
                wc_rans_dec_table_init(&dec[t], &tab[t]);
            }
            uint8_t *row_table = n_tables > 1 ? malloc(h) : NULL, *sym = malloc(n);
            for (uint32_t y = 0; row_table && y < h; y++) row_table[y] = (uint8_t)(ca_rand(&rng) % n_tables);
            /* symbols drawn from each row's own table */
            for (size_t i = 0; i < n; i++) {
                const wc_rans_dec_table *d = &dec[row_table ? row_table[i / w] : 0];
                sym[i] = d->slot_sym[ca_rand(&rng) & ((1u << d->t.prob_bits) - 1)];
            }
            wc_buf b = {0};
            if (wc_rans_encode_tile(tab, row_table, w, sym, n, &b)) abort();
            uint8_t *out = malloc(n);
            if (ref(dec, row_table, w, b.data, b.len, out, n) || memcmp(out, sym, n))
                ca_mismatch(c, "the reference does not decode the encoder's stream (n %zu, bits %u)", n, bits);
            free(out);
            compare_decode(c, ref, fast, dec, row_table, w, b.data, b.len, n, "random stream");
            if (n <= 70000) {
                damage(c, &rng, ref, fast, dec, row_table, w, b.data, b.len, n, &caught);
                damaged += 9;
            }
            wc_buf_free(&b);
            free(row_table), free(sym);
        }
    }
    printf("  rans_decode: %ld of %ld damaged streams refused by both\n", caught, damaged);
}

static const struct { uint32_t bits, n_tables; uint64_t tile; } REAL_CODINGS[] = {
    {13, 1, 262144}, {13, 4, 262144}, {10, 16, 65536}, {14, 1, 262144}, {12, 3, 1000},
};

static void check_rans_real(check *c, wc_rans_decode_fn ref, wc_rans_decode_fn fast)
{
    for (size_t i = 0; i < S.set.n; i++) {
        const ca_matrix *m = &S.set.m[i];
        for (size_t k = 0; k < sizeof REAL_CODINGS / sizeof *REAL_CODINGS; k++) {
            ca_coded cd;
            if (ca_code(m, REAL_CODINGS[k].bits, REAL_CODINGS[k].n_tables, REAL_CODINGS[k].tile, &cd)) abort();
            for (size_t t = 0; t < cd.n_tiles; t++) {
                uint64_t r0, c0;
                uint32_t h, w;
                ca_tile(&cd, m, t, &r0, &c0, &h, &w);
                compare_decode(c, ref, fast, cd.dec, cd.row_map ? cd.row_map + r0 : NULL, w,
                               cd.streams + cd.off[t], cd.off[t + 1] - cd.off[t], (size_t)h * w, m->name);
            }
            ca_coded_free(&cd);
        }
    }
}

/* ---- transforms and predictions ------------------------------------------ */

static void check_itx(check *c, wc_itx_fn ref, wc_itx_fn fast, enum wc_tx tx)
{
    uint64_t rng = S.seed ^ tx;
    /* random tiles of every width up to 3 vectors and some wider, inside a
     * stride that leaves bytes the routine must not touch */
    for (uint32_t w = 0; w <= 200; w += w < 100 ? 1 : 37) {
        for (uint32_t h = 1; h <= 3; h++) {
            const size_t stride = w + ca_rand(&rng) % 9, size = stride * (h - 1) + w;
            uint8_t *a = malloc(size + 1), *b = malloc(size + 1);
            for (size_t i = 0; i < size; i++) a[i] = b[i] = (uint8_t)ca_rand(&rng);
            ref(a, stride, h, w), fast(b, stride, h, w);
            c->cases++;
            if (memcmp(a, b, size)) ca_mismatch(c, "random %ux%u, stride %zu: byte %zu", h, w, stride, ca_first_diff(a, b, size));
            free(a), free(b);
        }
    }
    /* real tiles, forward-transformed as the encoder does: both inverses
     * must give the tile back */
    for (size_t i = 0; i < S.set.n; i++) {
        const ca_matrix *m = &S.set.m[i];
        const uint32_t w = (uint32_t)(m->cols < 4099 ? m->cols : 4099), h = (uint32_t)(m->rows < 64 ? m->rows : 64);
        const size_t size = (size_t)h * w;
        uint8_t *a = malloc(size), *b = malloc(size);
        for (uint32_t y = 0; y < h; y++) memcpy(a + (size_t)y * w, m->q + y * m->cols, w);
        wc_fwd_tx(tx, a, w, h, w);
        memcpy(b, a, size);
        ref(a, w, h, w), fast(b, w, h, w);
        c->cases++;
        if (memcmp(a, b, size)) ca_mismatch(c, "%s: byte %zu", m->name, ca_first_diff(a, b, size));
        for (uint32_t y = 0; y < h; y++)
            if (memcmp(a + (size_t)y * w, m->q + y * m->cols, w)) {
                ca_mismatch(c, "%s: the reference does not invert wc_fwd_tx", m->name);
                break;
            }
        free(a), free(b);
    }
}

/* The residuals of row q under prediction p (FORMAT.md, "Modes"). */
static void forward_pred(enum wc_pred p, const uint8_t *q, const uint8_t *up, size_t n, uint8_t *res)
{
    for (size_t c = 0; c < n; c++) {
        int left = c ? (int8_t)q[c - 1] : 0, top = up ? (int8_t)up[c] : 0, tl = c && up ? (int8_t)up[c - 1] : 0;
        int pr = p == WC_PRED_LEFT ? left : p == WC_PRED_TOP ? top : p == WC_PRED_AVG ? (left + top) >> 1
                 : p == WC_PRED_PLANAR ? left + top - tl : 0;
        res[c] = (uint8_t)(q[c] - pr);
    }
}

static void check_pred(check *c, wc_pred_fn ref, wc_pred_fn fast, enum wc_pred p)
{
    uint64_t rng = S.seed ^ (p << 8);
    for (size_t n = 0; n <= 300; n += n < 100 ? 1 : 29) {
        for (int with_up = 0; with_up < 2; with_up++) {
            uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *up = with_up ? malloc(n + 1) : NULL;
            for (size_t i = 0; i < n; i++) {
                a[i] = b[i] = (uint8_t)ca_rand(&rng);
                if (up) up[i] = (uint8_t)ca_rand(&rng);
            }
            const uint8_t left = (uint8_t)ca_rand(&rng), ul = up ? (uint8_t)ca_rand(&rng) : 0;
            ref(a, up, n, left, ul), fast(b, up, n, left, ul);
            c->cases++;
            if (memcmp(a, b, n))
                ca_mismatch(c, "random n %zu%s: byte %zu", n, up ? "" : " (no row above)", ca_first_diff(a, b, n));
            free(a), free(b), free(up);
        }
    }
    /* real rows: residuals against the row above (or none), split into
     * stretches as tiles split them; both must give the row back */
    for (size_t i = 0; i < S.set.n; i++) {
        const ca_matrix *m = &S.set.m[i];
        const size_t n = m->cols;
        uint8_t *a = malloc(n), *b = malloc(n);
        for (uint64_t y = 0; y < m->rows && y < 8; y++) {
            const uint8_t *q = m->q + y * n, *up = y ? q - n : NULL;
            forward_pred(p, q, up, n, a);
            memcpy(b, a, n);
            const size_t piece = y < 4 ? n : 1 + n / 3;
            for (size_t c0 = 0; c0 < n; c0 += piece) {
                const size_t len = n - c0 < piece ? n - c0 : piece;
                const uint8_t left = c0 ? q[c0 - 1] : 0, ul = c0 && up ? up[c0 - 1] : 0;
                ref(a + c0, up ? up + c0 : NULL, len, left, ul);
                fast(b + c0, up ? up + c0 : NULL, len, left, ul);
            }
            c->cases++;
            if (memcmp(a, b, n)) ca_mismatch(c, "%s row %" PRIu64 ": byte %zu", m->name, y, ca_first_diff(a, b, n));
            else if (memcmp(a, q, n)) ca_mismatch(c, "%s row %" PRIu64 ": the reference does not invert the prediction", m->name, y);
        }
        free(a), free(b);
    }
}

/* ---- bench ---------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds of this thread per call of body (other work on the machine
 * does not count): the best of 5 rounds of at least 50 ms. */
#define BEST_TIME(secs, ...)                                           \
    do {                                                                \
        secs = 1e9;                                                     \
        for (int round_ = 0; round_ < 5; round_++) {                    \
            long reps_ = 0;                                             \
            double t0_ = now(), t_;                                     \
            do {                                                        \
                __VA_ARGS__;                                            \
                reps_++;                                                \
            } while ((t_ = now() - t0_) < 0.05);                        \
            if (t_ / reps_ < secs) secs = t_ / reps_;                   \
        }                                                               \
    } while (0)

static void bench_line(const char *name, const char *level, double secs, double bytes)
{
    printf("  %-14s %-12s %8.3f ns/byte %8.2f GB/s\n", name, level, secs * 1e9 / bytes, bytes / secs / 1e9);
}

static void bench_rans(const char *level, wc_rans_decode_fn fn)
{
    /* the real set coded with the defaults (13 bits, one table, 256 K
     * tiles), decoded whole in each timed call */
    static ca_coded *cd;
    if (!cd) {
        cd = calloc(S.set.n, sizeof *cd);
        for (size_t i = 0; i < S.set.n; i++)
            if (ca_code(&S.set.m[i], 13, 1, 262144, &cd[i])) abort();
    }
    uint8_t *tile = malloc(262144);
    double secs;
    BEST_TIME(secs, for (size_t i = 0; i < S.set.n; i++) for (size_t t = 0; t < cd[i].n_tiles; t++) {
        uint64_t r0, c0;
        uint32_t h, w;
        ca_tile(&cd[i], &S.set.m[i], t, &r0, &c0, &h, &w);
        if (fn(cd[i].dec, NULL, w, cd[i].streams + cd[i].off[t], cd[i].off[t + 1] - cd[i].off[t], tile,
               (size_t)h * w))
            abort();
    });
    free(tile);
    bench_line("rans_decode", level, secs, (double)S.set.bytes);
}

static void bench_tile(const char *name, const char *level, void (*fn)(uint8_t *, void *), void *arg)
{
    enum { H = 64, W = 4096 };
    static uint8_t buf[H * W];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = S.set.n ? S.set.m[0].q[i % (S.set.m[0].rows * S.set.m[0].cols)] : (uint8_t)i;
    double secs;
    BEST_TIME(secs, fn(buf, arg));
    bench_line(name, level, secs, sizeof buf);
}

static void run_itx(uint8_t *buf, void *fn) { ((wc_itx_fn)fn)(buf, 4096, 64, 4096); }
static void run_pred(uint8_t *buf, void *fn)
{
    for (int y = 0; y < 64; y++) ((wc_pred_fn)fn)(buf + y * 4096, y ? buf + (y - 1) * 4096 : NULL, 4096, 0, 0);
}

/* ---- driver ----------------------------------------------------------------- */

static const char *const ITX_NAMES[] = {"itx_none", "itx_haar", "itx_wht4"};
static const char *const PRED_NAMES[] = {"pred_none", "pred_left", "pred_top", "pred_avg", "pred_planar"};

static bool wanted(const char *name) { return !S.only || strstr(name, S.only); }

/* Checks (or times) each rANS decoder of this build that the CPU runs,
 * gather and plain-load forms alike, against the reference. */
static void run_rans_levels(const wc_dsp *ref, unsigned cpu)
{
    if (!wanted("rans_decode")) return;
    const wc_rans_level *lv;
    const size_t n = wc_rans_levels(&lv);
    for (size_t k = 0; k < n; k++) {
        if (lv[k].fn == ref->rans_decode) continue;
        if ((lv[k].flags & cpu) != lv[k].flags) {
            printf("rans_decode %s: not supported by this CPU, not checked\n", lv[k].name);
            continue;
        }
        check c = {.name = "rans_decode", .level = lv[k].name};
        if (S.bench) {
            bench_rans("c", ref->rans_decode), bench_rans(lv[k].name, lv[k].fn);
        } else {
            check_rans_random(&c, ref->rans_decode, lv[k].fn);
            check_rans_real(&c, ref->rans_decode, lv[k].fn);
            report(&c);
            check c2 = {.name = "rans_decode2", .level = lv[k].name};
            ca_check_rans_pairs(&c2, lv[k].fn2, S.seed, &S.set);
            report(&c2);
        }
    }
    if (S.bench) printf("  rans_decode: wc_dsp_init chooses %s\n", wc_rans_pick(cpu)->name);
    else {
        check c = {.name = "rans_force", .level = "env"};
        ca_check_rans_force(&c, cpu);
        report(&c);
    }
}

/* Checks (or times) every transform and prediction that `d` replaces, but
 * those it keeps from the level below (`prev`). */
static void run_level(const wc_dsp *ref, const wc_dsp *prev, const wc_dsp *d, const char *level)
{
    for (int tx = 0; tx < WC_TX_COUNT; tx++) {
        if (d->itx[tx] == prev->itx[tx] || !wanted(ITX_NAMES[tx])) continue;
        check c = {.name = ITX_NAMES[tx], .level = level};
        if (S.bench) {
            bench_tile(ITX_NAMES[tx], "c", run_itx, (void *)ref->itx[tx]);
            bench_tile(ITX_NAMES[tx], level, run_itx, (void *)d->itx[tx]);
        } else {
            check_itx(&c, ref->itx[tx], d->itx[tx], (enum wc_tx)tx);
            report(&c);
        }
    }
    for (int p = 0; p < WC_PRED_COUNT; p++) {
        if (d->pred[p] == prev->pred[p] || !wanted(PRED_NAMES[p])) continue;
        check c = {.name = PRED_NAMES[p], .level = level};
        if (S.bench) {
            bench_tile(PRED_NAMES[p], "c", run_pred, (void *)ref->pred[p]);
            bench_tile(PRED_NAMES[p], level, run_pred, (void *)d->pred[p]);
        } else {
            check_pred(&c, ref->pred[p], d->pred[p], (enum wc_pred)p);
            report(&c);
        }
    }
}

static void load_inputs(void)
{
    /* checks take a few MB of each file; the bench whole tensors */
    const uint64_t cap = S.bench ? (64u << 20) : (4u << 20);
    for (int i = 0; i < S.n_real; i++) {
        ca_set one = {0};
        if (ca_load_real(S.real[i], 4096, cap, &one)) exit(1);
        S.set.m = realloc(S.set.m, (S.set.n + one.n) * sizeof *S.set.m);
        memcpy(S.set.m + S.set.n, one.m, one.n * sizeof *one.m);
        S.set.n += one.n, S.set.bytes += one.bytes;
        free(one.m);
    }
    printf("real inputs: %zu matrices, %.1f MB from %d files\n", S.set.n, S.set.bytes / 1e6, S.n_real);
}

int main(int argc, char **argv)
{
    S.seed = (uint64_t)time(NULL);
    bool given = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bench")) S.bench = true;
        else if (!strncmp(argv[i], "--seed=", 7)) S.seed = strtoull(argv[i] + 7, NULL, 0);
        else if (!strncmp(argv[i], "--test=", 7)) S.only = argv[i] + 7;
        else if (!strncmp(argv[i], "--real=", 7) && S.n_real < MAX_REAL) S.real[S.n_real++] = argv[i] + 7, given = true;
        else return fprintf(stderr, "usage: %s [--bench] [--seed=N] [--test=NAME] [--real=FILE]...\n", argv[0]), 2;
    }
    if (!S.seed) S.seed = 1;
#ifdef CA_EXAMPLE_MODEL
    if (!given) S.real[S.n_real++] = CA_EXAMPLE_MODEL;
#endif
#ifdef CA_WEIGHTS_DIR
    /* names that outlive the loop: kept for the process's life */
    static char paths[MAX_REAL][4096];
    DIR *dir = given ? NULL : opendir(CA_WEIGHTS_DIR);
    if (!given && !dir)
        printf("checkasm: real weights %s: %s; the example model only (meson option weights_dir)\n",
               CA_WEIGHTS_DIR, strerror(errno));
    for (struct dirent *e; dir && (e = readdir(dir)) && S.n_real < MAX_REAL;) {
        size_t l = strlen(e->d_name);
        if (l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) {
            snprintf(paths[S.n_real], sizeof *paths, "%s/%s", CA_WEIGHTS_DIR, e->d_name);
            S.real[S.n_real] = paths[S.n_real];
            S.n_real++;
        }
    }
    if (dir) closedir(dir);
#endif
    printf("checkasm: seed %" PRIu64 "%s\n", S.seed, S.bench ? ", bench" : "");
    load_inputs();

    wc_dsp ref;
    wc_dsp_init_ref(&ref);
    static const struct { const char *name; unsigned flag; } LEVELS[] = {{"avx2", WC_CPU_AVX2}, {"avx512", WC_CPU_AVX512}};
    const unsigned cpu = wc_cpu_flags();
    wc_dsp prev = ref;
    for (size_t k = 0; k < sizeof LEVELS / sizeof *LEVELS; k++) {
        if (!(cpu & LEVELS[k].flag)) {
            printf("%s: not supported by this CPU, not checked\n", LEVELS[k].name);
            continue;
        }
        wc_dsp d;
        /* a level with the levels below it, as a CPU that has it runs */
        wc_dsp_init(&d, cpu & (LEVELS[k].flag | (LEVELS[k].flag - 1)));
        run_level(&ref, &prev, &d, LEVELS[k].name);
        prev = d;
    }
    run_rans_levels(&ref, cpu);
#ifdef CA_GPU
    /* the GPU decode kernel, tile by tile, beside the reference */
    char why[256];
    if (S.bench || !wanted("rans_decode")) {
    } else if (ca_gpu_init(why, sizeof why)) {
        printf("gpu: %s, not checked\n", why);
    } else {
        check c = {.name = "rans_decode", .level = "gpu", .loose = true};
        check_rans_random(&c, ref.rans_decode, ca_gpu_rans_decode);
        check_rans_real(&c, ref.rans_decode, ca_gpu_rans_decode);
        report(&c);
        ca_gpu_done();
    }
#endif
    ca_set_free(&S.set);
    if (!S.bench) printf("%s\n", S.fails ? "checkasm: FAILED" : "checkasm: all ok");
    return S.fails ? 1 : 0;
}
