"""PyTorch loading: load_wcodec_checkpoint() and safe_open().

Both return what `wcodec decode` writes, read as safetensors would read it:
a coded tensor N comes as N (torch.int8, its shape) beside N_scale
(torch.float32, one per row: for X.weight that is X.weight_scale, the
compressed-tensors naming inference engines read), unless a float dtype is
asked for; raw tensors come as they were stored.
"""
import concurrent.futures
import logging
import os

import torch

from . import _lib

log = logging.getLogger('wcodec')

# safetensors dtype name -> torch dtype, where this torch has it (1.13 lacks
# the unsigned 16/32/64-bit and float8 types that 2.x has)
TORCH_DTYPES = {k: getattr(torch, v, None) for k, v in {
    'BOOL': 'bool', 'U8': 'uint8', 'I8': 'int8', 'I16': 'int16', 'U16': 'uint16',
    'F16': 'float16', 'BF16': 'bfloat16', 'I32': 'int32', 'U32': 'uint32', 'F32': 'float32',
    'F64': 'float64', 'I64': 'int64', 'U64': 'uint64', 'F8_E4M3': 'float8_e4m3fn',
    'F8_E5M2': 'float8_e5m2'}.items()}
_DEQUANT = {torch.bfloat16: 'BF16', torch.float16: 'F16', torch.float32: 'F32'}
_FLOATS = ('F32', 'F16', 'BF16')


def _torch_dtype(path, t, name):
    dt = TORCH_DTYPES.get(name)
    if dt is None:
        raise TypeError(f'{path}: tensor {t.name!r} is {name}, which torch {torch.__version__} '
                        'has no dtype for')
    return dt


def _empty(path, t, name, shape=None):
    return torch.empty(t.shape if shape is None else shape, dtype=_torch_dtype(path, t, name))


def _decode_cpu(f, t, dtype):
    """[(name, tensor)] of TensorInfo t decoded on this thread, on the CPU."""
    if dtype is not None and (t.coded or t.dtype in _FLOATS):
        out = torch.empty(t.shape, dtype=dtype)
        f.dequant_into(t, _DEQUANT[dtype], out.data_ptr(), out.numel() * out.element_size())
        return [(t.name, out)]
    out = _empty(f.path, t, t.out_dtype)
    scales = torch.empty(t.n_scales, dtype=torch.float32) if t.n_scales else None
    f.decode_into(t, out.data_ptr(), t.out_bytes, scales.data_ptr() if t.n_scales else None,
                  t.n_scales)
    return [(t.name, out)] + ([(t.name + '_scale', scales)] if t.n_scales else [])


def _check_dtype(dtype):
    if dtype is not None and dtype not in _DEQUANT:
        raise ValueError(f'dtype must be None (INT8 with scales), torch.bfloat16, torch.float16 '
                         f'or torch.float32, not {dtype!r}')


_VIAS = {'auto': 'auto', 'daemon': 'daemon', 'local': 'local', 'inprocess': 'local'}


def _check_via(via):
    """The canonical name of via: "auto", "daemon" or "local" ("inprocess" is "local")."""
    try:
        return _VIAS[via]
    except (KeyError, TypeError):
        raise ValueError(f'via must be "auto", "daemon" or "local" ("inprocess"), not {via!r}') from None


def _decode_all_cpu(f, infos, dtype, threads):
    threads = threads or min(len(infos), os.cpu_count() or 1) or 1
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        # ctypes drops the GIL in each call: the tensors decode in parallel
        parts = list(pool.map(lambda t: _decode_cpu(f, t, dtype), infos))
    return [kv for p in parts for kv in p]


def _gpu_decoder(device):
    """A wcodec.Gpu on torch's `device`, or None with the reason logged."""
    if not _lib.HAVE_GPU:
        log.debug('libwcodec has no GPU decoder: decoding on the CPU')
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        g = _lib.Gpu(device=index)
    except _lib.WCodecError as e:
        log.debug('GPU decoder unavailable (%s): decoding on the CPU', e)
        return None
    if not g.on_cuda:  # require_gpu should exclude it; never hand device pointers to the CPU
        log.debug('GPU decoder on the CPU (%s): decoding on the CPU', g.fallback_reason)
        g.close()
        return None
    return g


def _decode_all_cuda(f, infos, device, dtype, threads):
    """In-process GPU decode through wcodec_gpu.h into tensors on `device`;
    the CPU decoder then .to(device) where the library cannot use it."""
    g = _gpu_decoder(device)
    if g is None:
        return [(k, v.to(device)) for k, v in _decode_all_cpu(f, infos, dtype, threads)]
    try:
        out, dsts = [], {}
        for t in infos:
            q = torch.empty(t.shape, dtype=_torch_dtype(f.path, t, t.out_dtype), device=device)
            s = torch.empty(t.n_scales, dtype=torch.float32, device=device) if t.n_scales else None
            dsts[t] = (q.data_ptr(), t.out_bytes, s.data_ptr() if s is not None else None,
                       t.n_scales)
            out.append((t, q, s))
        # the decoder works on its own non-blocking streams: nothing of torch's may be pending
        torch.cuda.synchronize(device)
        g.decode_file(f, dsts)
        res = []
        for k, (t, q, s) in enumerate(out):
            # each INT8 buffer goes once its tensor is dequantized (the loop's
            # names let go of it next turn): the peak is the outputs and one
            # tensor's INT8, not every tensor's INT8 beside the outputs
            out[k] = None
            if dtype is not None and t.coded:
                res.append((t.name, _dequant_cuda(g, t, q, s, dtype)))
            elif dtype is not None and t.dtype in _FLOATS:
                res.append((t.name, q.to(dtype)))
            else:
                res.append((t.name, q))
                if s is not None:
                    res.append((t.name + '_scale', s))
    finally:
        g.close()
    return res


def _dequant_cuda(g, t, q, s, dtype):
    """q x s as dtype on q's device: wc_gpu_dequant where the library has
    it, else the same rule in PyTorch (float32 product, then rounded)."""
    if _lib.HAVE_GPU_DEQUANT:
        w = torch.empty(t.shape, dtype=dtype, device=q.device)
        g.dequant(q.data_ptr(), s.data_ptr() if s is not None else None, t.rows, t.cols, _DEQUANT[dtype],
                  w.data_ptr())
        return w
    w = q.view(t.rows, t.cols).to(torch.float32)
    if s is not None:
        w = w * s[:, None]
    return w.to(dtype).view(t.shape)


def load_wcodec_checkpoint(path, device='cpu', dtype=None, via='auto', threads=None, socket=None,
                           tp_rank=None, tp_size=None, tp_layout='llama'):
    """Loads a .wcodec file as a state_dict {name: torch.Tensor}.

    dtype=None: a coded tensor X.weight comes as torch.int8 (its shape) beside
    X.weight_scale (torch.float32, one per row: w ~ q * scale), raw tensors as
    stored (every safetensors dtype this torch has, bf16 included).
    dtype=torch.bfloat16/float16/float32: coded tensors are dequantized
    (q * scale in float32, rounded to nearest even: docs/FORMAT.md,
    "Dequantized output") and raw float tensors converted alike; integer and
    bool tensors stay as stored.

    device: "cpu", "cuda", "cuda:N" or a torch.device. In-process on "cuda",
    libwcodec's GPU decoder (wcodec_gpu.h) decodes into the device tensors
    and dequantizes there; a library without it, or one that cannot use the
    device, leaves the work to the CPU decoder and the tensors are copied to
    the device.

    via: "local" (or "inprocess") decodes in this process. "daemon" maps the
    tensors that wcodecd decoded and keeps resident, without a copy: all in
    one request over the socket (`socket`; None: $WCODECD_SOCKET, else
    /run/wcodecd/wcodecd.sock). Those tensors are valid while they live: each
    holds the get's leases, which end (and the connection closes) when the
    last of them is freed. On the CPU they are read-only shared memory
    (a memfd mapping; torch has no read-only tensors, so writing into one, an
    in-place op, kills the process with SIGSEGV: clone() first). With
    device="cuda:N" and a daemon with a GPU backend they are device memory
    on that GPU; where the daemon answers with host memory (its CPU backend,
    or a libwcodec-client without wc_client_get2) they are copied to the
    device and the leases end at once. dtype set: dequantized where the
    tensors are (wc_gpu_dequant: on the device, or libwcodec's CPU dequant
    for host memory) into new tensors, and the leases end before this
    returns.
    A daemon that is down is a wcodec.DaemonUnavailable (a ConnectionError)
    naming the socket; a path outside the daemon's roots a
    wcodec.DaemonError (EDENIED). "auto": the daemon when its socket answers
    and it accepts the path, else in-process.

    threads: CPU decode threads of the in-process path (default: one per CPU).

    tp_rank, tp_size, tp_layout: this rank's tensor-parallel shards only
    (docs/SHARDING.md): each tensor that tp_layout ("llama") splits comes as
    torch.tensor_split(full, tp_size, dim)[tp_rank] (dim 0 for
    column-parallel layers, dim 1 for row-parallel ones), its scales with it
    (the shard's rows for dim 0, every row for dim 1); k_proj/v_proj take
    the KV head they share where config.json has fewer KV heads than ranks;
    other tensors whole. Only the tiles a shard needs are decoded (shards
    are not checked against the record hash; whole tensors are). Through
    the daemon, its GetTensors shards (ranks that share KV heads ask for
    those in a second get).
    tp_size 1 is the whole model (through the daemon too). ValueError for
    one of tp_rank/tp_size without the other, a rank outside [0, tp_size),
    an unknown layout, or more ranks than KV heads that they do not divide.
    Raises FileNotFoundError, wcodec.WCodecError (a corrupt or truncated file,
    naming file and tensor), TypeError (a dtype this torch lacks).
    """
    via = _check_via(via)
    _check_dtype(dtype)
    device = torch.device(device)
    tp = None
    if tp_rank is not None or tp_size is not None:  # _tp is imported only where shards are asked for
        from . import _tp
        tp = _tp.check(tp_rank, tp_size, tp_layout)
    if tp is not None and tp[1] > 1:
        if via != 'local':
            with _lib.File(path) as f:
                # ranks that share KV heads ask for those in a get of their own
                parts = _tp.daemon_parts(f, tp) if _tp.shares_kv_heads(f, tp) else None
            from . import _daemon
            sd = _daemon.load(path, device, dtype, socket, required=via == 'daemon', tp=tp, parts=parts)
            if sd is not None:
                return sd
            log.info('%s: tp_rank %d of tp_size %d: decoding the shards in-process', path, tp[0], tp[1])
        with _lib.File(path) as f:
            shards = _tp.plan(f, tp)
            if device.type == 'cuda':
                items = _tp.decode_cuda(f, shards, device, dtype, threads)
            else:
                items = _tp.decode_cpu(f, shards, dtype, threads)
                if device.type != 'cpu':
                    items = [(k, v.to(device)) for k, v in items]
        return dict(items)
    if via != 'local':
        from . import _daemon
        sd = _daemon.load(path, device, dtype, socket, required=via == 'daemon')
        if sd is not None:
            return sd
    with _lib.File(path) as f:
        infos = f.tensors()
        if device.type == 'cuda':
            items = _decode_all_cuda(f, infos, device, dtype, threads)
        else:
            items = _decode_all_cpu(f, infos, dtype, threads)
            if device.type != 'cpu':
                items = [(k, v.to(device)) for k, v in items]
    return dict(items)
