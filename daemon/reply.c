/* The bodies of replies about tensors: a tensor's info, and the frames of a
 * get reply, cut as the connection's queue reaches them (with its leases,
 * its descriptors and the allocations new to the connection). */
#include <stdio.h>
#include <string.h>

#include "wcd.h"

void wcd_fill_info(Wcodec__V1__TensorInfo *ti, const wc_tensor_info *in, const wcd_model *m, uint32_t index)
{
    wcodec__v1__tensor_info__init(ti);
    ti->name = (char *)in->name;
    ti->dtype = (uint32_t)in->dtype;
    ti->out_dtype = (uint32_t)in->out_dtype;
    ti->n_shape = in->ndim;
    ti->shape = (uint64_t *)in->shape;
    ti->out_bytes = in->out_bytes;
    ti->n_scales = in->n_scales;
    ti->coding = (uint32_t)in->coding;
    ti->stored_bytes = in->stored_bytes;
    /* the whole tensor decoded and resident in some pool */
    ti->cached = false;
    for (unsigned k = 0; k < m->n_views; k++) {
        const wcd_entry *e = m->views[k].entries[index];
        if (m->views[k].count == 1 && e && e->state == WCD_READY) ti->cached = true;
    }
}

/* Where a tensor lies: its own memfd (fd_index), or a range of a shared
 * block named by its allocation id. */
static void fill_location(Wcodec__V1__Location *loc, const wcd_entry *e, uint32_t fd_index)
{
    wcodec__v1__location__init(loc);
    loc->kind = e->pool->be->kind;
    loc->map_length = e->block->size;
    loc->offset = e->at.offset;
    loc->length = e->at.length;
    loc->scales_offset = e->at.scales_offset;
    loc->n_scales = e->at.n_scales;
    if (!e->block->shared) {
        loc->fd_index = fd_index;
        return;
    }
    loc->allocation_id = e->block->id;
    loc->device_uuid.data = (uint8_t *)e->pool->uuid;
    loc->device_uuid.len = 16;
}

static void fill_allocation(Wcodec__V1__Allocation *a, const wcd_block *b, uint32_t fd_index)
{
    wcodec__v1__allocation__init(a);
    a->id = b->id;
    a->kind = b->pool->be->kind;
    a->device_uuid.data = (uint8_t *)b->pool->uuid;
    a->device_uuid.len = 16;
    a->size = b->size;
    if (a->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_IPC) {
        a->ipc_handle.data = (uint8_t *)b->ipc_handle;
        a->ipc_handle.len = sizeof b->ipc_handle;
    } else {
        a->fd_index = fd_index;
    }
}

int wcd_get_next_frame(wcd_get *g, unsigned max_fds, uint8_t **data, size_t *len, int *fds, int *nfds)
{
    wcd_conn *c = g->conn;
    Wcodec__V1__Tensor t[WCD_FDS_PER_FRAME];
    Wcodec__V1__Tensor *tp[WCD_FDS_PER_FRAME];
    Wcodec__V1__TensorInfo ti[WCD_FDS_PER_FRAME];
    Wcodec__V1__Location loc[WCD_FDS_PER_FRAME];
    Wcodec__V1__Allocation al[WCD_FDS_PER_FRAME];
    Wcodec__V1__Allocation *ap[WCD_FDS_PER_FRAME];
    Wcodec__V1__ShardOf sh[WCD_FDS_PER_FRAME];
    wc_shard_info si[WCD_FDS_PER_FRAME];
    wc_tensor_info in[WCD_FDS_PER_FRAME], full[WCD_FDS_PER_FRAME];
    if (max_fds > WCD_FDS_PER_FRAME) max_fds = WCD_FDS_PER_FRAME;
    /* Every tensor may bring a descriptor (its memfd, or its arena's when
     * new to the connection): at most max_fds tensors a frame. Lease ids
     * go in the frame, so the leases are taken first; only memory can
     * fail, and then the connection is closed, which ends them. */
    size_t n = 0, n_al = 0;
    int k_fd = 0;
    for (; g->sent < g->n && n < max_fds; n++) {
        wcd_claim *s = &g->slots[g->sent];
        wcd_entry *e = s->e;
        bool first;
        wcd_entry_info(e, &in[n], &si[n]);
        wcodec__v1__tensor__init(&t[n]);
        wcd_fill_info(&ti[n], &in[n], e->model, e->index);
        if (si[n].dim >= 0) {
            wc_file_tensor_info(e->model->f, e->index, &full[n]);
            wcodec__v1__shard_of__init(&sh[n]);
            sh[n].rank = e->rank;
            sh[n].count = e->count;
            sh[n].dim = si[n].dim;
            sh[n].start = si[n].start;
            sh[n].length = si[n].len;
            sh[n].n_full_shape = full[n].ndim;
            sh[n].full_shape = full[n].shape;
            t[n].shard = &sh[n];
        }
        t[n].lease_id = wcd_conn_lease_add(c, e, &first);
        if (!t[n].lease_id) return WC_ENOMEM;
        s->e = NULL;
        g->sent++;
        c->pending_leases--;
        if (!e->block->shared) {
            fill_location(&loc[n], e, (uint32_t)k_fd);
            fds[k_fd++] = e->block->fd;
        } else {
            fill_location(&loc[n], e, 0);
            if (first) {
                bool vmm = e->pool->be->kind == WCODEC__V1__LOCATION_KIND__LOCATION_CUDA_VMM;
                fill_allocation(&al[n_al], e->block, (uint32_t)k_fd);
                ap[n_al] = &al[n_al];
                n_al++;
                if (vmm) fds[k_fd++] = e->block->fd;
            }
        }
        t[n].info = &ti[n];
        t[n].location = &loc[n];
        tp[n] = &t[n];
    }
    Wcodec__V1__GetTensorsReply gr = WCODEC__V1__GET_TENSORS_REPLY__INIT;
    gr.n_tensor = n;
    gr.tensor = tp;
    gr.n_allocation = n_al;
    gr.allocation = ap;
    Wcodec__V1__Reply r = WCODEC__V1__REPLY__INIT;
    r.id = g->req_id;
    r.more = g->sent < g->n;
    r.fd_count = (uint32_t)k_fd;
    r.body_case = WCODEC__V1__REPLY__BODY_GET;
    r.get = &gr;
    if (wcd_frame_pack_reply(&r, data, len)) return WC_ENOMEM;
    *nfds = k_fd;
    return r.more ? 1 : 0;
}

