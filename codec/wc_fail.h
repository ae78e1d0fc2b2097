/* wc_fail, the error helper of libwcodec, wcodecd and libwcodec-client: not
 * installed and not exported. Each of them links its own hidden copy of
 * fail.c (wc_fail_dep in codec/meson.build). */
#ifndef WC_FAIL_H
#define WC_FAIL_H

#include "wcodec/wcodec.h"

/* Formats a message into err (when not NULL) and returns code, so that a
 * failing path reads `return wc_fail(err, WC_EFORMAT, "...", ...);`. */
int wc_fail(wc_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
