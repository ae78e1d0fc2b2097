/* Opening model files only beneath the configured roots. openat2 with
 * RESOLVE_BENEATH makes the kernel refuse any resolution that leaves the
 * root ("..", absolute symlinks, relative symlinks that climb out), without
 * a check-then-open race. Kernels without openat2 get a realpath prefix
 * check instead, then an O_NOFOLLOW open of the resolved path.
 *
 * Every open runs on the event-loop thread, so it must never block: the
 * file is opened O_NONBLOCK (a FIFO's open then returns at once instead of
 * waiting for a writer, and a device's open does not wait for carrier),
 * anything but a regular file is refused, and O_NONBLOCK is cleared again
 * for the regular file's reads. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "wcd.h"

int wcd_roots_open(const wcd_config *cfg, wcd_root **out, size_t *n, wc_err *err)
{
    wcd_root *r = calloc(cfg->n_roots ? cfg->n_roots : 1, sizeof *r);
    if (!r) return WC_ENOMEM;
    size_t i = 0;
    for (; i < cfg->n_roots; i++) {
        /* Keep the root's own spelling, less trailing slashes, for the
         * lexical match of absolute request paths. */
        r[i].path = strdup(cfg->roots[i]);
        if (!r[i].path) { wcd_roots_close(r, i); return WC_ENOMEM; }
        size_t l = strlen(r[i].path);
        while (l > 1 && r[i].path[l - 1] == '/') r[i].path[--l] = 0;
        r[i].fd = open(r[i].path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct stat sb;
        if (r[i].fd >= 0 && fstat(r[i].fd, &sb) < 0) {
            close(r[i].fd);
            r[i].fd = -1;
        }
        if (r[i].fd >= 0) {
            r[i].dev = sb.st_dev;
            r[i].ino = sb.st_ino;
        }
        if (r[i].fd < 0) {
            int e = errno;
            free(r[i].path);
            wcd_roots_close(r, i);
            return wc_fail(err, WC_EIO, "model root %s: %s", cfg->roots[i], strerror(e));
        }
    }
    *out = r;
    *n = i;
    return 0;
}

void wcd_roots_close(wcd_root *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        close(r[i].fd);
        free(r[i].path);
    }
    free(r);
}

static int open_fallback(const wcd_root *root, const char *rel, int *fd, wc_err *err,
                         const char *shown)
{
    char full[PATH_MAX], real[PATH_MAX], rootreal[PATH_MAX];
    if (snprintf(full, sizeof full, "%s/%s", root->path, rel) >= (int)sizeof full)
        return wc_fail(err, WC_EINVAL, "%s: path too long", shown);
    if (!realpath(root->path, rootreal)) return wc_fail(err, WC_EIO, "root %s: %s", root->path, strerror(errno));
    if (!realpath(full, real)) return wc_fail(err, WC_EIO, "%s: %s", shown, strerror(errno));
    size_t l = strlen(rootreal);
    if (strncmp(real, rootreal, l) || (real[l] != '/' && !(l == 1 && rootreal[0] == '/')))
    {
        char rbuf[WCD_SHORT_MAX + 8];
        return wc_fail(err, WC_EDENIED, "%s: resolves to %s, outside the model root %s", shown,
                       wcd_short(real, rbuf, sizeof rbuf), root->path);
    }
    *fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (*fd < 0) return wc_fail(err, WC_EIO, "%s: %s", shown, strerror(errno));
    return 0;
}

static int open_in_root(const wcd_root *root, const char *rel, int *fd, wc_err *err, const char *shown)
{
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    long r = syscall(SYS_openat2, root->fd, rel, &how, sizeof how);
    if (r >= 0) {
        *fd = (int)r;
        return 0;
    }
    switch (errno) {
    case ENOSYS: return open_fallback(root, rel, fd, err, shown);
    case EXDEV:
    case ELOOP:
        return wc_fail(err, WC_EDENIED, "%s: resolves outside the model root %s (through '..' or a symlink)",
                    shown, root->path);
    case ENOENT: return wc_fail(err, WC_ENOTFOUND, "%s: no such file beneath %s", shown, root->path);
    default: return wc_fail(err, WC_EIO, "%s: %s", shown, strerror(errno));
    }
}

int wcd_open_beneath(const wcd_root *roots, size_t n, const char *path, int *fd, const wcd_root **used,
                     wc_err *err)
{
    *fd = -1;
    *used = NULL;
    char sbuf[WCD_SHORT_MAX + 8];
    const char *shown = wcd_short(path, sbuf, sizeof sbuf);
    if (!path[0]) return wc_fail(err, WC_EINVAL, "empty model path");
    if (strlen(path) >= PATH_MAX) return wc_fail(err, WC_EINVAL, "model path longer than %d bytes", PATH_MAX);
    if (!n) return wc_fail(err, WC_EDENIED, "%s: no model roots configured", shown);
    int r;
    if (path[0] == '/') {
        /* The root the path names lexically; the kernel then resolves the
         * rest beneath it. */
        const wcd_root *root = NULL;
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(roots[i].path);
            if (l == 1 || (!strncmp(path, roots[i].path, l) && (path[l] == '/' || !path[l]))) {
                if (l >= best) { best = l; root = &roots[i]; }
            }
        }
        if (!root) return wc_fail(err, WC_EDENIED, "%s: not beneath any configured model root", shown);
        const char *rel = path + (best == 1 ? 1 : best);
        while (*rel == '/') rel++;
        if (!*rel) rel = ".";
        r = open_in_root(root, rel, fd, err, shown);
        *used = root;
    } else {
        r = open_in_root(&roots[0], path, fd, err, shown);
        *used = &roots[0];
    }
    if (r) return r;
    struct stat sb;
    int fl;
    if (fstat(*fd, &sb) < 0) r = wc_fail(err, WC_EIO, "%s: fstat: %s", shown, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        r = wc_fail(err, WC_EINVAL, "%s: not a regular file (a directory, FIFO, socket or device)", shown);
    else if ((fl = fcntl(*fd, F_GETFL)) < 0 || fcntl(*fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        r = wc_fail(err, WC_EIO, "%s: fcntl: %s", shown, strerror(errno));
    if (r) {
        close(*fd);
        *fd = -1;
    }
    return r;
}
