/* Output files that appear only when complete: written unnamed (O_TMPFILE)
 * or under a temporary name, and linked/renamed into place by commit. */
#ifndef WC_OUTFILE_H
#define WC_OUTFILE_H

#include "wc_internal.h"

typedef struct wc_outfile {
    int fd;
    char *path;    /* final name */
    char *tmpname; /* named fallback when O_TMPFILE is unsupported */
} wc_outfile;

int wc_outfile_open(wc_outfile *o, const char *path, wc_err *err);
/* Writes all n bytes at the current position. */
int wc_outfile_write(wc_outfile *o, const void *p, size_t n, wc_err *err);
int wc_outfile_pwrite(wc_outfile *o, const void *p, size_t n, uint64_t off, wc_err *err);
/* Syncs, names the file `path` (replacing any old one) and closes it. */
int wc_outfile_commit(wc_outfile *o, wc_err *err);
/* Discards the file; safe after a failed commit. */
void wc_outfile_abort(wc_outfile *o);

#endif
