/* wc_fail (wc_fail.h). */
#include <stdarg.h>
#include <stdio.h>

#include "wc_fail.h"

int wc_fail(wc_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}
