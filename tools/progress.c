#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

double wct_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void wct_progress_init(wct_progress *p, const char *label, bool quiet)
{
    p->label = label;
    p->on = !quiet && isatty(STDERR_FILENO);
    p->last = 0;
}

void wct_progress_cb(void *user, uint64_t done, uint64_t total)
{
    wct_progress *p = user;
    if (!p->on) return;
    double now = wct_now();
    if (done < total && now - p->last < 0.1) return;
    p->last = now;
    const int width = 30;
    int fill = total ? (int)(width * (double)done / (double)total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r%-8s [%s] %3d%%  %.1f / %.1f MB", p->label, bar,
            total ? (int)(100.0 * (double)done / (double)total) : 100, done / 1e6, total / 1e6);
    fflush(stderr);
}

void wct_progress_end(wct_progress *p)
{
    if (p->on) fputs("\r\033[K", stderr);
}
