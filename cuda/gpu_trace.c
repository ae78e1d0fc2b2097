/* The pipeline's timeline: see gpu_trace.h. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_trace.h"

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double wcg_trace_now(const wcg_trace *t) { return t->f ? (mono() - t->t0) * 1e3 : 0; }

void wcg_trace_begin(wcg_trace *t, cudaStream_t compute)
{
    memset(t, 0, sizeof *t);
    const char *path = getenv("WCODEC_GPU_TRACE");
    if (!path || !*path || !(t->f = fopen(path, "a"))) return;
    bool ok = cudaEventCreate(&t->base) == cudaSuccess;
    for (int s = 0; ok && s < WCG_TRACE_SLOTS; s++)
        ok = cudaEventCreate(&t->copy0[s]) == cudaSuccess && cudaEventCreate(&t->copy1[s]) == cudaSuccess &&
             cudaEventCreate(&t->done[s]) == cudaSuccess;
    if (!ok || cudaEventRecord(t->base, compute) != cudaSuccess) {
        cudaGetLastError();
        fclose(t->f);
        t->f = NULL;
        return;
    }
    t->t0 = mono();
    fprintf(t->f, "# batch slot MiB | host ms: begin slot_free planned desc_built read issued | device ms: copy_start copy_end kernels_end\n");
}

void wcg_trace_copy_begin(wcg_trace *t, int slot, cudaStream_t copy)
{
    if (t->f) cudaEventRecord(t->copy0[slot], copy);
}

void wcg_trace_issued(wcg_trace *t, int slot, cudaStream_t copy, cudaStream_t compute, const wcg_trace_batch *b)
{
    if (!t->f) return;
    cudaEventRecord(t->copy1[slot], copy);
    cudaEventRecord(t->done[slot], compute);
    t->cur[slot] = *b;
    t->slot_wait += b->t_slot - b->t_begin;
    t->plan += b->t_planned - b->t_slot;
    t->desc += b->t_desc - b->t_planned;
    t->read += b->t_read - b->t_desc;
    t->issue += b->t_issued - b->t_read;
    t->batches++;
    t->bytes += b->bytes;
}

static float since_base(const wcg_trace *t, cudaEvent_t e)
{
    float ms = 0;
    if (cudaEventElapsedTime(&ms, t->base, e) != cudaSuccess) cudaGetLastError();
    return ms;
}

void wcg_trace_retired(wcg_trace *t, int slot)
{
    if (!t->f) return;
    const wcg_trace_batch *b = &t->cur[slot];
    float c0 = since_base(t, t->copy0[slot]), c1 = since_base(t, t->copy1[slot]), k = since_base(t, t->done[slot]);
    t->copy += c1 - c0;
    t->kernel += k - c1;
    fprintf(t->f, "%llu %d %.1f | %.3f %.3f %.3f %.3f %.3f %.3f | %.3f %.3f %.3f\n", (unsigned long long)b->batch, slot,
            b->bytes / 1048576.0, b->t_begin, b->t_slot, b->t_planned, b->t_desc, b->t_read, b->t_issued, c0, c1, k);
}

void wcg_trace_end(wcg_trace *t, double hashes_ms, int status)
{
    if (!t->f) return;
    fprintf(t->f,
            "summary status=%d wall_ms=%.3f batches=%llu MiB=%.1f slot_wait_ms=%.3f plan_ms=%.3f desc_ms=%.3f "
            "read_ms=%.3f issue_ms=%.3f copy_span_ms=%.3f kernel_after_copy_ms=%.3f hashes_after_ms=%.3f\n",
            status, wcg_trace_now(t), (unsigned long long)t->batches, t->bytes / 1048576.0, t->slot_wait, t->plan,
            t->desc, t->read, t->issue, t->copy, t->kernel, hashes_ms);
    fclose(t->f);
    t->f = NULL;
    cudaEventDestroy(t->base);
    for (int s = 0; s < WCG_TRACE_SLOTS; s++) {
        cudaEventDestroy(t->copy0[s]);
        cudaEventDestroy(t->copy1[s]);
        cudaEventDestroy(t->done[s]);
    }
}
