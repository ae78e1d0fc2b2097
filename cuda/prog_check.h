/* For programs (benchmarks and tests), never the library: a CUDA call that
 * fails ends the program, naming the file, line, call and error. The library
 * returns WC_ECUDA instead (wcg_cuda_fail, gpu_int.h). */
#ifndef WC_CUDA_PROG_CHECK_H
#define WC_CUDA_PROG_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cuda_runtime_api.h>

#define CK(x)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));    \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* CLOCK_MONOTONIC, seconds */
static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
