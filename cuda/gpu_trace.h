/* A timeline of the file-to-GPU pipeline (issue 21): with the environment
 * variable WCODEC_GPU_TRACE=FILE, each wc_gpu_decode_file call appends to
 * FILE one line per batch and a summary, so that the time between the load
 * and its floor (bench_floor) can be placed: waiting for a ring slot,
 * planning, descriptors, reads (the io threads), the host-to-device copy and
 * the kernels (CUDA events with timing, on the slot's streams), and the
 * record hashes that finish after the last batch.
 *
 * Host times are CLOCK_MONOTONIC milliseconds from the call's start; device
 * times are event times from an event recorded at the call's start on the
 * compute stream. Off (no FILE): every function returns at once and no
 * event is made. */
#ifndef WCG_GPU_TRACE_H
#define WCG_GPU_TRACE_H

#include <stdint.h>
#include <stdio.h>

#include <cuda_runtime_api.h>

#define WCG_TRACE_SLOTS 16

typedef struct wcg_trace_batch {
    uint64_t batch, bytes;
    double t_begin, t_slot, t_planned, t_desc, t_read, t_issued; /* host, ms */
} wcg_trace_batch;

typedef struct wcg_trace {
    FILE *f;                      /* NULL: off */
    double t0;                    /* host time of the call's start, s */
    cudaEvent_t base;             /* recorded on the compute stream at the start */
    cudaEvent_t copy0[WCG_TRACE_SLOTS], copy1[WCG_TRACE_SLOTS], done[WCG_TRACE_SLOTS];
    wcg_trace_batch cur[WCG_TRACE_SLOTS]; /* the batch each slot holds */
    /* sums over the call, ms */
    double slot_wait, plan, desc, read, issue, copy, kernel;
    uint64_t batches, bytes;
} wcg_trace;

/* Opens the trace for a call when WCODEC_GPU_TRACE is set. */
void wcg_trace_begin(wcg_trace *t, cudaStream_t compute);
double wcg_trace_now(const wcg_trace *t);
/* Around a batch's copies and kernels: events on the copy and compute streams. */
void wcg_trace_copy_begin(wcg_trace *t, int slot, cudaStream_t copy);
void wcg_trace_issued(wcg_trace *t, int slot, cudaStream_t copy, cudaStream_t compute, const wcg_trace_batch *b);
/* The slot's batch has finished on the device (its done event waited): its line. */
void wcg_trace_retired(wcg_trace *t, int slot);
/* The call's end: the summary line (hashes_ms: waiting for the record hashes
 * after the last batch), and the trace closed. */
void wcg_trace_end(wcg_trace *t, double hashes_ms, int status);

#endif
