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

void wcd_log(int level, const char *fmt, ...)
{
    if (level > wcd_log_level) return;
    static int journal = -1;
    if (journal < 0) journal = getenv("JOURNAL_STREAM") != NULL;
    char line[1024];
    int n = journal ? snprintf(line, sizeof line, "<%d>", level)
                    : snprintf(line, sizeof line, "wcodecd: %s: ", level_name(level));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    /* Messages may quote client input: keep it on one line. */
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[len++] = '\n';
    /* One write per line so that lines from pool threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
