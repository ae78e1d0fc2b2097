"""Tensor-parallel shards for load_wcodec_checkpoint(tp_rank=, tp_size=,
tp_layout=): each rank decodes only its own slice of each tensor
(docs/SHARDING.md, "Wiring it"), in this process.

Which slice: wc_shard_layout_dim names the dimension a tensor splits along
in the layout (-1: every rank takes it whole); the slice is shard tp_rank of
tp_size with torch.tensor_split's sizes, except k_proj and v_proj where the
file's config.json has fewer KV heads than ranks (each rank then takes the
one head it shares with tp_size / kv_heads ranks, as vLLM does).

Decoding: on the CPU wc_decode_tensor_shard, one tensor a thread; on CUDA
wc_gpu_decode_file_shards, the rank's whole model in one call. A tensor a
rank takes whole goes through the whole-tensor path (record hash checked).
Dequantizing a shard (dtype set) uses the rule of the whole-tensor path and
the same C code: libwcodec's wc_dequant_rows through wc_gpu_dequant (a
CPU-backend wc_gpu on the CPU, the CUDA one on the device), or the same rule
in PyTorch ((q.float() * s[:, None]).to(dtype)) with a libwcodec that lacks
wc_gpu_dequant.
"""
import concurrent.futures
import json
import logging
import os

import torch

from . import _lib
from .torch_io import _DEQUANT, _FLOATS, _decode_cpu, _gpu_decoder, _torch_dtype

log = logging.getLogger('wcodec')

# Tensors whose rows are KV heads (the KV-heads rule of docs/SHARDING.md)
_KV = ('k_proj.weight', 'v_proj.weight', 'k_proj.bias', 'v_proj.bias')


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check(tp_rank, tp_size, tp_layout):
    """None when both tp_rank and tp_size are None (a whole-model load), else
    (rank, size, layout); ValueError for arguments that make no sense."""
    if tp_rank is None and tp_size is None:
        return None
    if tp_rank is None or tp_size is None:
        raise ValueError(f'tp_rank and tp_size go together: tp_rank={tp_rank!r}, tp_size={tp_size!r}')
    if not _is_int(tp_rank) or not _is_int(tp_size):
        raise ValueError(f'tp_rank and tp_size must be integers, not {tp_rank!r} and {tp_size!r}')
    if tp_size < 1 or not 0 <= tp_rank < tp_size:
        raise ValueError(f'tp_rank must lie in [0, tp_size): tp_rank={tp_rank}, tp_size={tp_size}')
    if not isinstance(tp_layout, str):
        raise ValueError(f'tp_layout must be a layout name ("llama"), not {tp_layout!r}')
    _lib.shard_layout_dim(tp_layout, '')  # ValueError for a layout libwcodec does not know
    return tp_rank, tp_size, tp_layout


def _kv_heads(f):
    """num_key_value_heads of the file's config.json metadata (its
    num_attention_heads where it has none, as transformers defaults it), or
    None without a config."""
    cfg = (f.metadata() or {}).get('config.json')
    if cfg is None:
        return None
    try:
        cfg = json.loads(cfg)
    except ValueError as e:
        raise _lib.WCodecError(-4, f'{f.path}: config.json in its metadata is not JSON: {e}') from None
    if not isinstance(cfg, dict):
        raise _lib.WCodecError(-4, f'{f.path}: config.json in its metadata is not a JSON object')
    for c in (cfg, cfg.get('text_config') or {}):
        kv = c.get('num_key_value_heads') or c.get('num_attention_heads')
        if kv:
            return int(kv)
    return None


def shares_kv_heads(f, tp):
    """Whether tp's ranks outnumber f's KV heads, so that k_proj and v_proj
    are not tensor_split's shards (what the daemon serves) but a head shared
    by several ranks."""
    infos = f.tensors()
    if tp[1] <= 1 or not any(t.name.endswith(_KV) for t in infos):
        return False
    kv = _kv_heads(f)
    return kv is not None and tp[1] > kv


def plan(f, tp):
    """[(TensorInfo, dim, rank, n_shards)] of every tensor of f for tp =
    (rank, size, layout): n_shards 1 for a tensor taken whole."""
    rank, size, layout = tp
    infos = f.tensors()
    kv = None
    if any(t.name.endswith(_KV) for t in infos):
        kv = _kv_heads(f)
        if kv is None:
            log.info('%s: no num_key_value_heads in the config.json of its metadata: k_proj and '
                     'v_proj are split as any other tensor', f.path)
        elif size > kv and size % kv:
            raise ValueError(f'{f.path}: tp_size {size} is more than num_key_value_heads {kv} and '
                             'not a multiple of it: the ranks cannot share KV heads')
    out = []
    for t in infos:
        dim = _lib.shard_layout_dim(layout, t.name)
        if dim < 0 or not t.shape or size == 1:
            out.append((t, 0, 0, 1))
        elif kv is not None and size > kv and t.name.endswith(_KV):
            out.append((t, dim, rank // (size // kv), kv))  # one KV head, shared by size // kv ranks
        else:
            out.append((t, dim, rank, size))
    return out


def daemon_parts(f, tp):
    """The gets that fetch plan(f, tp) from the daemon, which cuts one
    (rank, size) per get: [(names, (rank, size, layout))], one for the
    tensors that are tensor_split's shards of tp, one for the shared KV
    heads', one (a size of 1) for those taken whole, shared KV heads
    included where there is one head."""
    groups = {}
    for t, _dim, rank, n in plan(f, tp):
        groups.setdefault((rank, n), []).append(t.name)
    return [(names, (rank, n, tp[2])) for (rank, n), names in groups.items()]


def _dequant(g, q, s, dtype):
    """q x s[row] as dtype, a new tensor on q's device: wc_gpu_dequant on
    g (the C rule of wc_decode_tensor_dequant), or the same rule in PyTorch
    where libwcodec lacks it (g None). Rows are the shard's first dimension:
    a dim-0 shard's own rows, a dim-1 shard's every row (its scales)."""
    rows = q.shape[0] if q.dim() else 1
    cols = q.numel() // rows if rows else 0
    if g is not None:
        w = torch.empty(q.shape, dtype=dtype, device=q.device)
        if q.numel():
            g.dequant(q.data_ptr(), s.data_ptr() if s is not None else None, rows, cols,
                      _DEQUANT[dtype], w.data_ptr())
        return w
    w = q.reshape(rows, cols).to(torch.float32)
    if s is not None:
        w = w * s[:, None]
    return w.to(dtype).reshape(q.shape)


def _finish(g, t, q, s, dtype):
    """(name, tensor) pairs of a decoded shard q with its scales s."""
    if dtype is not None and t.coded:
        return [(t.name, _dequant(g, q, s, dtype))]
    if dtype is not None and t.dtype in _FLOATS:
        # raw floats: torch's conversion, round to nearest even as the C rule
        # (docs/FORMAT.md, "Dequantized output"), as the CUDA whole-tensor path does
        return [(t.name, q.to(dtype))]
    return [(t.name, q)] + ([(t.name + '_scale', s)] if s is not None else [])


def _decode_shard_cpu(f, g, t, dim, rank, n, dtype):
    if n == 1:
        return _decode_cpu(f, t, dtype)  # whole: wc_decode_tensor(_dequant), hash checked
    si = f.shard_info(t, dim, rank, n)
    q = torch.empty(si.shape, dtype=_torch_dtype(f.path, t, t.out_dtype))
    s = torch.empty(si.n_scales, dtype=torch.float32) if si.n_scales else None
    f.decode_shard_into(t, dim, rank, n, q.data_ptr(), si.out_bytes,
                        s.data_ptr() if s is not None else None, si.n_scales)
    return _finish(g, t, q, s, dtype)


def _cpu_dequantizer(dtype):
    """A CPU-backend wc_gpu for wc_gpu_dequant on host memory (safe from many
    threads), or None where PyTorch applies the rule."""
    if dtype is None or not _lib.HAVE_GPU_DEQUANT:
        return None
    return _lib.Gpu(require_gpu=False, force_cpu=True)


def decode_cpu(f, shards, dtype, threads):
    """[(name, tensor)] of the rank's shards, decoded on the CPU."""
    g = _cpu_dequantizer(dtype)
    try:
        threads = threads or min(len(shards), os.cpu_count() or 1) or 1
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(lambda p: _decode_shard_cpu(f, g, *p, dtype), shards))
    finally:
        if g is not None:
            g.close()
    return [kv for p in parts for kv in p]


def decode_cuda(f, shards, device, dtype, threads):
    """The rank's shards on `device`: one wc_gpu_decode_file_shards call, or
    the CPU's shards copied there where the library cannot use the device."""
    g = _gpu_decoder(device) if _lib.HAVE_GPU_SHARD else None
    if g is None:
        log.debug('%s: shards decoded on the CPU and copied to %s', f.path, device)
        return [(k, v.to(device)) for k, v in decode_cpu(f, shards, dtype, threads)]
    try:
        return decode_with(g, f, shards, device, dtype)
    finally:
        g.close()


def decode_with(g, f, shards, device, dtype):
    """The shards through wc_gpu g (wc_gpu_decode_file_shards) into tensors
    on `device`: g's CUDA device, or the CPU for a CPU-backend g (which the
    tests use to check this path without a GPU)."""
    out, dsts = [], {}
    for t, dim, rank, n in shards:
        si = f.shard_info(t, dim, rank, n)
        q = torch.empty(si.shape, dtype=_torch_dtype(f.path, t, t.out_dtype), device=device)
        s = torch.empty(si.n_scales, dtype=torch.float32, device=device) if si.n_scales else None
        dsts[t] = (q.data_ptr(), si.out_bytes, s.data_ptr() if s is not None else None,
                   si.n_scales, dim, rank, n)
        out.append((t, q, s))
    if device.type == 'cuda':
        # the decoder works on its own non-blocking streams: nothing of torch's may be pending
        torch.cuda.synchronize(device)
    g.decode_file_shards(f, dsts)
    dq = g if _lib.HAVE_GPU_DEQUANT else None
    return [kv for t, q, s in out for kv in _finish(dq, t, q, s, dtype)]
