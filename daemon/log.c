/* One line per event on stderr. Under systemd (JOURNAL_STREAM set) each line
 * starts with its syslog priority, "<6>", so journald files it at the right
 * level; elsewhere it names the level in words. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wcd.h"

int wcd_log_level = WCD_LOG_INFO;

static const char *level_name(int level)
{
    switch (level) {
    case WCD_LOG_ERR: return "error";
    case WCD_LOG_WARN: return "warning";
    case WCD_LOG_NOTICE: return "notice";
    case WCD_LOG_INFO: return "info";
    default: return "debug";
    }
}

int wcd_log_level_parse(const char *s)
{
    static const struct { const char *name; int level; } t[] = {
        {"error", WCD_LOG_ERR}, {"warning", WCD_LOG_WARN}, {"notice", WCD_LOG_NOTICE},
        {"info", WCD_LOG_INFO}, {"debug", WCD_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcasecmp(s, t[i].name)) return t[i].level;
    return WC_EINVAL;
}

const char *wcd_short(const char *s, char *buf, size_t size)
{
    size_t n = strlen(s);
    if (n < WCD_SHORT_MAX || size < WCD_SHORT_MAX + 8) return s;
    /* Both ends: a path's root and its file name are what tell files apart. */
    size_t half = WCD_SHORT_MAX / 2 - 8;
    snprintf(buf, size, "%.*s...(%zu bytes)...%s", (int)half, s, n, s + n - half);
    return buf;
}

void wcd_log(int level, const char *fmt, ...)
{
    if (level > wcd_log_level) return;
    static int journal = -1;
    if (journal < 0) journal = getenv("JOURNAL_STREAM") != NULL;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m < 0) msg[0] = 0;
    /* Messages quote client input and names from model files: every control
     * byte (newlines, ESC sequences that would drive a terminal reading the
     * log) is written as \xNN, so a line stays one line of plain text. */
    char line[4 * sizeof msg + 64];
    int n = journal ? snprintf(line, sizeof line, "<%d>", level)
                    : snprintf(line, sizeof line, "wcodecd: %s: ", level_name(level));
    size_t len = (size_t)n;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\') {
            static const char hex[] = "0123456789abcdef";
            line[len++] = '\\';
            if (*p == '\\') {
                line[len++] = '\\';
                continue;
            }
            line[len++] = 'x';
            line[len++] = hex[*p >> 4];
            line[len++] = hex[*p & 15];
        } else {
            line[len++] = (char)*p;
        }
    }
    line[len++] = '\n';
    /* One write per line so that lines from pool threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
