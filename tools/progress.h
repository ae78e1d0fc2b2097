/* A progress bar on stderr, drawn only when stderr is a terminal. */
#ifndef WCT_PROGRESS_H
#define WCT_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct wct_progress {
    const char *label;
    bool on;
    double last;
} wct_progress;

void wct_progress_init(wct_progress *p, const char *label, bool quiet);
/* A wc_progress_fn: user is the wct_progress. */
void wct_progress_cb(void *user, uint64_t done, uint64_t total);
void wct_progress_end(wct_progress *p);
double wct_now(void);

#endif
