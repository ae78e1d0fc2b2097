/* What a reload does to what is already running: the new allow-list and
 * roots apply to existing connections and open models too, not only to
 * new ones, so that removing a group or a root ends that access at once.
 * A connection whose peer the new allow-list refuses gets an error frame
 * (id 0, WC_EDENIED) and is closed, which ends its leases. A model opened
 * beneath a root that is gone, or whose directory is another one now (the
 * path swapped), is unloaded for everyone: its requests, those under way
 * included, fail; leases already granted cannot be taken back (the client
 * has the memfd) and end with Release or the connection. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "wcd.h"

/* The peer as the kernel recorded it at connect(2): the same credentials
 * the accept-time check saw. */
static bool still_allowed(const wcd_ctx *ctx, const wcd_conn *c)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        wcd_log(WCD_LOG_WARN, "%s: SO_PEERCRED: %s; closing it", c->name, strerror(errno));
        return false;
    }
    gid_t groups[256];
    len = sizeof groups;
    int n_groups = getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0 ? 0 : (int)(len / sizeof(gid_t));
    return wcd_conn_peer_allowed(ctx, cred.uid, cred.gid, groups, n_groups);
}

static bool root_kept(const wcd_ctx *ctx, const wcd_model *m)
{
    for (size_t i = 0; i < ctx->n_roots; i++)
        if (ctx->roots[i].dev == m->root_dev && ctx->roots[i].ino == m->root_ino) return true;
    return false;
}

void wcd_reload_revoke(wcd_ctx *ctx)
{
    unsigned closed = 0, unloaded = 0;
    for (wcd_conn *c = ctx->conns, *next; c; c = next) {
        next = c->next;
        if (c->closing || still_allowed(ctx, c)) continue;
        wcd_conn_send_error(c, 0, WC_EDENIED, "wcodecd's reloaded configuration no longer allows uid %u gid %u",
                            (unsigned)c->uid, (unsigned)c->gid);
        wcd_conn_close(c, "peer no longer allowed after a reload");
        closed++;
    }
    for (wcd_model *m = ctx->cache.models, *next; m; m = next) {
        next = m->next;
        if (m->retired || root_kept(ctx, m)) continue;
        /* May free m. */
        wcd_cache_retire(&ctx->cache, m, "a reload removed or replaced its model root");
        unloaded++;
    }
    wcd_cache_sweep(&ctx->cache);
    if (closed || unloaded)
        wcd_log(WCD_LOG_NOTICE, "reload: closed %u connections of peers no longer allowed, unloaded %u models of "
                "removed roots", closed, unloaded);
}
