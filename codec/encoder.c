/* wc_encode_file: safetensors in, .wcodec out. Workers code tensors in
 * parallel; the calling thread writes finished records in input order, so at
 * most `window` coded records wait in memory at any time, and each tensor's
 * input pages leave the process once it is coded (drop_input): memory is
 * bounded by the window, whatever the model's size. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "outfile.h"
#include "quant.h"
#include "record.h"
#include "safetensors.h"
#include "tiles.h"

#define RECORD_ALIGN 64

enum job_kind { JOB_RAW, JOB_QUANT, JOB_I8 };

typedef struct job {
    const wc_st_tensor *t;
    const wc_st_tensor *scale; /* I8 with its N_scale beside it */
    enum job_kind kind;
    wc_entry e;
    wc_buf rec;
    bool done;
    int r;
    wc_err err;
} job;

typedef struct enc {
    const wc_st_file *in;
    const wc_encode_opts *o;
    job *jobs;
    size_t n_jobs, next, written, window;
    bool failed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} enc;

void wc_encode_opts_default(wc_encode_opts *o)
{
    /* the smallest files; 12-bit tables, at most 4, decode ~10% faster on a
     * GPU at 0.3-1.5% more bits (docs/FORMAT.md, "Why these parameters");
     * tile_weights 0: from the model's size (codec/tiles.c) */
    *o = (wc_encode_opts){.min_weights = 4096, .tile_weights = 0, .prob_bits = 13,
                          .max_tables = 8, .force_pred = -1, .force_tx = -1};
}

/* Drops a tensor's input pages from this process once they are no longer
 * needed (coded: once quantized or coded; raw: once written). The input is
 * mapped whole (wc_st_open) and every page read stays resident, and counted
 * in RSS, while mapped: without this the encoder's RSS grows to the input's
 * size (7.5 GB for a 6.7 GB model). The mapping is private, read-only and
 * never written, so MADV_DONTNEED only unmaps page-cache pages: a later read
 * (a neighbour tensor on the shared boundary page, in flight on a worker)
 * faults them back in unchanged. Hence the range is widened to whole pages.
 * Advice only: a failure costs memory, not correctness, and is ignored. */
static void drop_input(const wc_st_tensor *t)
{
    if (!t || !t->map || !t->size) return; /* the metadata record is malloc'd */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)t->data & ~(page - 1);
    uintptr_t e = ((uintptr_t)t->data + t->size + page - 1) & ~(page - 1);
    (void)madvise((void *)b, e - b, MADV_DONTNEED);
}

static int quantize_job(job *j, const wc_code_params *p)
{
    const wc_st_tensor *t = j->t;
    const uint64_t rows = j->e.rows, cols = j->e.cols;
    const int es = wc_dtype_size(t->dtype);
    int8_t *q = malloc(rows * cols);
    float *s = malloc(rows * sizeof *s);
    int r = 0;
    if (!q || !s) {
        r = wc_fail(&j->err, WC_ENOMEM, "out of memory quantizing '%s'", t->name);
        goto out;
    }
    for (uint64_t y = 0; y < rows; y++) {
        size_t bad;
        const uint8_t *row = t->data + y * cols * es;
        if (wc_quantize_row(row, t->dtype, cols, q + y * cols, &s[y], &bad)) {
            r = wc_fail(&j->err, WC_ERANGE,
                        "%s: tensor '%s': row %llu, column %zu (offset %llu) is NaN or infinite; "
                        "refusing to quantize it",
                        t->path, t->name, (unsigned long long)y, bad,
                        (unsigned long long)(row - t->map + bad * es));
            goto out;
        }
    }
    drop_input(t); /* q and s hold all that is needed of it */
    r = wc_record_encode(q, s, p, &j->e, &j->rec);
out:
    free(q);
    free(s);
    return r;
}

static int run_job(enc *x, job *j)
{
    const wc_encode_opts *o = x->o;
    wc_code_params p = {o->tile_weights, o->prob_bits, o->max_tables, o->force_pred, o->force_tx,
                        o->top_distance};
    int r = 0;
    switch (j->kind) {
    case JOB_RAW:
        j->e.coding = WC_CODING_RAW;
        j->e.size = j->t->size;
        j->e.hash = wc_hash(j->t->data, j->t->size);
        return 0;
    case JOB_QUANT:
        r = quantize_job(j, &p);
        if (r == WC_ENOMEM || r == WC_ERANGE) return r;
        if (r) return wc_fail(&j->err, r, "%s: tensor '%s': coding failed: %s", j->t->path,
                              j->t->name, wc_strerror(r));
        return 0;
    case JOB_I8:
        r = wc_record_encode((const int8_t *)j->t->data, j->scale ? j->scale->data : NULL,
                             &p, &j->e, &j->rec);
        drop_input(j->t);
        drop_input(j->scale);
        if (r) return wc_fail(&j->err, r, "%s: tensor '%s': coding failed: %s", j->t->path,
                              j->t->name, wc_strerror(r));
        return 0;
    }
    return WC_EINVAL;
}

static void *worker(void *arg)
{
    enc *x = arg;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->failed && x->next < x->n_jobs && x->next >= x->written + x->window)
            pthread_cond_wait(&x->cv, &x->mu);
        if (x->failed || x->next >= x->n_jobs) break;
        job *j = &x->jobs[x->next++];
        pthread_mutex_unlock(&x->mu);
        int r = run_job(x, j);
        pthread_mutex_lock(&x->mu);
        j->r = r;
        j->done = true;
        pthread_cond_broadcast(&x->cv);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Decides how each input tensor is stored. Scales that belong to an INT8
 * tensor travel inside its record and get no job of their own. */
static int plan(enc *x, wc_err *err)
{
    const wc_st_file *in = x->in;
    bool *consumed = calloc(in->n_tensors + 1, 1);
    x->jobs = calloc(in->n_tensors + 1, sizeof *x->jobs);
    if (!consumed || !x->jobs) {
        free(consumed);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    const wc_st_tensor **scale_of = calloc(in->n_tensors + 1, sizeof *scale_of);
    if (!scale_of) {
        free(consumed);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    int r = 0;
    char name[WC_MAX_NAME + 16];
    for (size_t i = 0; i < in->n_tensors && !r; i++) {
        const wc_st_tensor *t = &in->tensors[i];
        uint64_t rows, cols;
        wc_shape_2d(t->shape, t->ndim, &rows, &cols);
        bool big = t->ndim >= 2 && t->numel >= x->o->min_weights && t->numel > 0;
        snprintf(name, sizeof name, "%s_scale", t->name);
        long si = wc_st_find(in, name);
        if (big && wc_dtype_quantizable(t->dtype, x->o->ints_as_float) && si >= 0)
            r = wc_fail(err, WC_EINVAL,
                        "%s: tensor '%s' would be quantized, but its decoded scales '%s' would "
                        "collide with the input tensor of that name",
                        in->path, t->name, name);
        if (big && t->dtype == WC_DT_I8 && si >= 0) {
            const wc_st_tensor *s = &in->tensors[si];
            if (s->dtype == WC_DT_F32 && s->numel == rows) {
                scale_of[i] = s;
                consumed[si] = true;
            }
        }
    }
    for (size_t i = 0; i < in->n_tensors && !r; i++) {
        if (consumed[i]) continue;
        const wc_st_tensor *t = &in->tensors[i];
        job *j = &x->jobs[x->n_jobs++];
        j->t = t;
        j->scale = scale_of[i];
        j->e.name = t->name;
        j->e.dtype = t->dtype;
        j->e.ndim = t->ndim;
        memcpy(j->e.shape, t->shape, sizeof j->e.shape);
        j->e.numel = t->numel;
        wc_shape_2d(t->shape, t->ndim, &j->e.rows, &j->e.cols);
        bool big = t->ndim >= 2 && t->numel >= x->o->min_weights && t->numel > 0;
        if (big && wc_dtype_quantizable(t->dtype, x->o->ints_as_float)) j->kind = JOB_QUANT;
        else if (big && t->dtype == WC_DT_I8) j->kind = JOB_I8;
        else j->kind = JOB_RAW;
    }
    free(consumed);
    free(scale_of);
    return r;
}

/* Weights of the tensors plan() decided to code: the model's size, for the
 * default tile size. */
static uint64_t coded_weights(const enc *x)
{
    uint64_t n = 0;
    for (size_t i = 0; i < x->n_jobs; i++)
        if (x->jobs[i].kind != JOB_RAW) n += x->jobs[i].e.numel;
    return n;
}

static int write_all(enc *x, wc_outfile *out, wc_err *err)
{
    static const uint8_t zeros[RECORD_ALIGN];
    uint64_t off = WC_HEADER_SIZE, total = 0, done = 0;
    wc_buf dir = {0};
    int r = wc_outfile_write(out, zeros, WC_HEADER_SIZE, err);
    for (size_t i = 0; i < x->n_jobs; i++) total += x->jobs[i].t->size;
    for (size_t i = 0; i < x->n_jobs && !r; i++) {
        job *j = &x->jobs[i];
        pthread_mutex_lock(&x->mu);
        while (!j->done) pthread_cond_wait(&x->cv, &x->mu);
        pthread_mutex_unlock(&x->mu);
        if (j->r) {
            r = j->r;
            if (err) *err = j->err;
            break;
        }
        size_t pad = (size_t)(-off & (RECORD_ALIGN - 1));
        j->e.offset = off + pad;
        const void *data = j->kind == JOB_RAW ? (const void *)j->t->data : j->rec.data;
        if (!(r = wc_outfile_write(out, zeros, pad, err)))
            r = wc_outfile_write(out, data, j->e.size, err);
        off = j->e.offset + j->e.size;
        if (!r && wc_entry_write(&dir, &j->e))
            r = wc_fail(err, WC_ENOMEM, "out of memory");
        wc_buf_free(&j->rec);
        if (j->kind == JOB_RAW) drop_input(j->t); /* coded ones dropped by run_job */
        pthread_mutex_lock(&x->mu);
        x->written = i + 1;
        pthread_cond_broadcast(&x->cv);
        pthread_mutex_unlock(&x->mu);
        done += j->t->size;
        if (x->o->progress) x->o->progress(x->o->progress_user, done, total);
    }
    if (!r) {
        wc_header h = {.version = WC_FORMAT_VERSION, .n_tensors = (uint32_t)x->n_jobs,
                       .dir_offset = off, .dir_size = dir.len, .file_size = off + dir.len};
        uint8_t hb[WC_HEADER_SIZE];
        wc_header_write(hb, &h, wc_hash(dir.data, dir.len));
        if (!(r = wc_outfile_write(out, dir.data, dir.len, err)))
            r = wc_outfile_pwrite(out, hb, sizeof hb, 0, err);
    }
    wc_buf_free(&dir);
    return r;
}

static int check_opts(const wc_encode_opts *opts, wc_encode_opts *o, wc_err *err)
{
    if (opts) *o = *opts;
    else wc_encode_opts_default(o);
    if (o->prob_bits < WC_RANS_MIN_PROB_BITS || o->prob_bits > WC_RANS_MAX_PROB_BITS)
        return wc_fail(err, WC_EINVAL, "table precision %u bits: must be %d to %d", o->prob_bits,
                       WC_RANS_MIN_PROB_BITS, WC_RANS_MAX_PROB_BITS);
    if (o->tile_weights && (o->tile_weights < WC_RANS_LANES || o->tile_weights > WC_MAX_TILE_WEIGHTS))
        return wc_fail(err, WC_EINVAL, "tile size %u weights: must be %d to %u", o->tile_weights,
                       WC_RANS_LANES, WC_MAX_TILE_WEIGHTS);
    if (o->max_tables < 1 || o->max_tables > WC_MAX_TABLES || o->force_pred < -1 ||
        o->force_pred >= WC_PRED_COUNT || o->force_tx < -1 || o->force_tx >= WC_TX_COUNT)
        return wc_fail(err, WC_EINVAL, "tables %u (1..%d), prediction %d or transform %d out of range",
                       o->max_tables, WC_MAX_TABLES, o->force_pred, o->force_tx);
    if (o->threads <= 0) o->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (o->threads <= 0) o->threads = 1;
    return 0;
}

/* Encodes the open input `in` (a file or a folder) into out_path. */
static int encode_input(const wc_st_file *in, const char *out_path, const wc_encode_opts *opts,
                        wc_err *err)
{
    wc_encode_opts o;
    int r = check_opts(opts, &o, err);
    if (r) return r;
    enc x = {.in = in, .o = &o, .window = 2 * (size_t)o.threads};
    pthread_mutex_init(&x.mu, NULL);
    pthread_cond_init(&x.cv, NULL);
    wc_outfile out = {.fd = -1};
    pthread_t *th = calloc((size_t)o.threads, sizeof *th);
    int started = 0;
    if (!th) {
        r = wc_fail(err, WC_ENOMEM, "out of memory");
        goto out;
    }
    if ((r = plan(&x, err)) || (r = wc_outfile_open(&out, out_path, err))) goto out;
    if (!o.tile_weights) o.tile_weights = wc_auto_tile_weights(coded_weights(&x));
    for (; started < o.threads; started++)
        if (pthread_create(&th[started], NULL, worker, &x)) break;
    if (!started) {
        r = wc_fail(err, WC_ENOMEM, "cannot start encoder threads");
        goto out;
    }
    r = write_all(&x, &out, err);
    if (!r) r = wc_outfile_commit(&out, err);
out:
    pthread_mutex_lock(&x.mu);
    x.failed = true; /* stops workers that are still waiting for work */
    pthread_cond_broadcast(&x.cv);
    pthread_mutex_unlock(&x.mu);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    for (size_t i = 0; i < x.n_jobs; i++) wc_buf_free(&x.jobs[i].rec);
    free(x.jobs);
    wc_outfile_abort(&out);
    pthread_cond_destroy(&x.cv);
    pthread_mutex_destroy(&x.mu);
    return r;
}

int wc_encode_file(const char *in_path, const char *out_path, const wc_encode_opts *opts,
                   wc_err *err)
{
    wc_encode_opts o;
    int r = check_opts(opts, &o, err); /* before the input is read */
    if (r) return r;
    wc_st_file in;
    if ((r = wc_st_open(&in, in_path, err))) return r;
    r = encode_input(&in, out_path, &o, err);
    wc_st_close(&in);
    return r;
}

int wc_encode_hf_folder(const char *dir, const char *out_path, const wc_encode_opts *opts,
                        wc_err *err)
{
    wc_encode_opts o;
    int r = check_opts(opts, &o, err);
    if (r) return r;
    wc_st_file in;
    if ((r = wc_st_open_folder(&in, dir, err))) return r;
    r = encode_input(&in, out_path, &o, err);
    wc_st_close(&in);
    return r;
}
