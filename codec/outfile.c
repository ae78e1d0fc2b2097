#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outfile.h"

static char *dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

int wc_outfile_open(wc_outfile *o, const char *path, wc_err *err)
{
    *o = (wc_outfile){.fd = -1};
    char *dir = dir_of(path);
    if (!dir || !(o->path = strdup(path))) {
        free(dir);
        free(o->path);
        return wc_fail(err, WC_ENOMEM, "out of memory");
    }
    o->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (o->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        size_t n = strlen(path) + 16;
        o->tmpname = malloc(n);
        if (o->tmpname) {
            snprintf(o->tmpname, n, "%s.tmpXXXXXX", path);
            o->fd = mkostemp(o->tmpname, O_CLOEXEC);
        }
    }
    int saved = errno;
    free(dir);
    if (o->fd < 0) {
        int r = wc_fail(err, WC_EIO, "%s: cannot create: %s", path, strerror(saved));
        wc_outfile_abort(o);
        return r;
    }
    return 0;
}

int wc_outfile_write(wc_outfile *o, const void *p, size_t n, wc_err *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(o->fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return wc_fail(err, WC_EIO, "%s: write: %s", o->path, strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int wc_outfile_pwrite(wc_outfile *o, const void *p, size_t n, uint64_t off, wc_err *err)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(o->fd, b, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return wc_fail(err, WC_EIO, "%s: write: %s", o->path, strerror(errno));
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int wc_outfile_commit(wc_outfile *o, wc_err *err)
{
    if (fsync(o->fd) < 0)
        return wc_fail(err, WC_EIO, "%s: fsync: %s", o->path, strerror(errno));
    if (!o->tmpname) {
        /* linkat cannot replace: link under a temporary name, then rename. */
        char proc[64];
        size_t n = strlen(o->path) + 16;
        if (!(o->tmpname = malloc(n))) return wc_fail(err, WC_ENOMEM, "out of memory");
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
        for (int tries = 0;; tries++) {
            snprintf(o->tmpname, n, "%s.tmp%06d", o->path, (int)(random() % 1000000));
            if (linkat(AT_FDCWD, proc, AT_FDCWD, o->tmpname, AT_SYMLINK_FOLLOW) == 0) break;
            if (errno != EEXIST || tries > 100) {
                int r = wc_fail(err, WC_EIO, "%s: link: %s", o->path, strerror(errno));
                free(o->tmpname);
                o->tmpname = NULL;
                return r;
            }
        }
    }
    if (rename(o->tmpname, o->path) < 0)
        return wc_fail(err, WC_EIO, "%s: rename: %s", o->path, strerror(errno));
    free(o->tmpname);
    o->tmpname = NULL;
    close(o->fd);
    o->fd = -1;
    free(o->path);
    o->path = NULL;
    return 0;
}

void wc_outfile_abort(wc_outfile *o)
{
    if (o->fd >= 0) close(o->fd);
    if (o->tmpname) unlink(o->tmpname);
    free(o->tmpname);
    free(o->path);
    *o = (wc_outfile){.fd = -1};
}
