"""via="daemon": state_dicts over tensors that wcodecd decoded and keeps
resident, mapped into this process without a copy (libwcodec-client).

Lifetime: every tensor mapped from a get holds (through the object that
carries its array interface) the get's Lease, which holds the Connection.
When the last of those tensors is freed the Lease ends its leases
(wc_client_release) and the Connection, once no Lease of it remains, is
closed. Tensors that were copied (to another device, or dequantized) hold
nothing: when every output of a get is a copy the leases end before the
state_dict is returned.

Memory kinds (wc_client_tensor.location):
- memfd: a read-only shared mapping. The tensors are CPU tensors over it,
  made through numpy (torch.from_numpy of an array over the mapping): torch
  1.13 warns for read-only numpy arrays and buffers, and has no read-only
  tensors, so the array is declared writable. Writing into such a tensor
  (an in-place op) kills the process with SIGSEGV: clone() it first.
- CUDA VMM / IPC: device pointers valid in the device's primary context,
  PyTorch's; wrapped through __cuda_array_interface__ (torch.as_tensor),
  which keeps the carrier object, and so the Lease, alive.
"""
import concurrent.futures
import logging
import os

import numpy as np
import torch

from . import _client, _lib
from .torch_io import _DEQUANT, _FLOATS, TORCH_DTYPES, _torch_dtype

log = logging.getLogger('wcodec')

# An integer type of each element size carries the bytes; the torch dtype is
# a view of it (bf16 has no numpy or array-interface type string).
_CARRIER = {1: '|u1', 2: '<i2', 4: '<i4', 8: '<i8'}


class _Mapped:
    """Carries the array interface of leased memory, and the Lease: numpy
    (base of the array) or torch (its deleter) keeps this object alive as
    long as the tensor, and so the lease."""
    __slots__ = ('__array_interface__', '__cuda_array_interface__', 'lease')

    def __init__(self, lease, ptr, count, typestr, cuda):
        iface = {'shape': (count,), 'typestr': typestr, 'data': (ptr, False), 'strides': None}
        if cuda:
            iface['version'] = 2  # no stream: the daemon's memory is complete when it answers
            self.__cuda_array_interface__ = iface
        else:
            iface['version'] = 3
            self.__array_interface__ = iface
        self.lease = lease


_ITEM = {}


def _item(dtype):
    if dtype not in _ITEM:
        _ITEM[dtype] = torch.empty((), dtype=dtype).element_size()
    return _ITEM[dtype]


# Ranges of device memory closer than this are wrapped as one byte tensor:
# a daemon's arena packs its tensors 256 bytes apart, arenas lie far apart.
_GAP = 1 << 20


def _cuda_base(lease, ptr, nbytes, dev):
    """A uint8 CUDA tensor over nbytes of leased device memory at ptr."""
    return torch.as_tensor(_Mapped(lease, ptr, nbytes, '|u1', True), device=torch.device('cuda', dev))


def _contiguous_strides(shape):
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


class _DeviceBases:
    """One uint8 CUDA tensor over each run of nearby device ranges of a
    get (in practice one per arena), and a view of it for each element
    type; each tensor of the warm map (state_items) is then one as_strided
    of the typed base. Why: torch.as_tensor of an array interface costs
    about 20 us, a view about 1, and a model has hundreds of tensors (issue
    20 asks for a warm map of a 7B model in 10 ms;
    bench/RESULTS.md#py-warm-map). Other gets (dequantized: the copy costs
    far more than the wrapping) wrap each tensor on its own (_wrap).
    `base(lease, ptr, nbytes, device)` makes the byte tensors (a test
    passes one over host memory)."""

    def __init__(self, lease, views, base=_cuda_base):
        ranges = {}
        for v in views:
            if not v.on_cuda:
                continue
            r = ranges.setdefault(v.device, [])
            if v.size:
                r.append((v.data, v.data + v.size))
            if v.n_scales:
                r.append((v.scales, v.scales + 4 * v.n_scales))
        self.runs = {}
        for dev, r in ranges.items():
            r.sort()
            runs = []
            for lo, hi in r:
                if runs and lo <= runs[-1][1] + _GAP:
                    runs[-1][1] = max(runs[-1][1], hi)
                else:
                    runs.append([lo, hi])
            self.runs[dev] = [(lo, hi, base(lease, lo, hi - lo, dev), {}) for lo, hi in runs]

    def state_items(self, views, dev, dtypes):
        """[(name, tensor)] of every view, INT8 kept (X and X_scale), all
        of them views of this object's bases on device dev; None where any
        view is elsewhere, misaligned or of another size than its shape
        says (the caller then wraps each on its own, which reports it).
        One loop with no calls but torch's: a warm map of a 7B model is
        800 of these, and Python calls cost about 1 us each."""
        runs = self.runs.get(dev)
        if not runs:
            return None
        out = []
        for v in views:
            dt = dtypes.get(v.out_dtype)
            if dt is None or not v.on_cuda or v.device != dev:
                return None
            pieces = [(v.name, v.data, v.size, v.shape, dt)]
            if v.n_scales:
                pieces.append((v.name + '_scale', v.scales, 4 * v.n_scales, (v.n_scales,), torch.float32))
            for name, ptr, nbytes, shape, dt in pieces:
                item = _item(dt)
                n = len(shape)
                count = shape[0] if n == 1 else shape[0] * shape[1] if n == 2 else None
                if count is None:
                    count = 1
                    for d in shape:
                        count *= d
                for lo, hi, raw, typed in runs:  # one run an arena, and most gets have one arena
                    if lo <= ptr and ptr + nbytes <= hi:
                        break
                else:
                    return None
                if count == 0 or count * item != nbytes or (ptr - lo) % item:
                    return None
                b = typed.get(dt)
                if b is None:  # the run as dt, cut to whole elements (not `or`: a tensor has no truth value)
                    b = typed[dt] = raw.narrow(0, 0, (hi - lo) // item * item).view(dt)
                strides = (1,) if n == 1 else (shape[1], 1) if n == 2 else _contiguous_strides(shape)
                t = b.as_strided(shape, strides, (ptr - lo) // item)
                if t.data_ptr() != ptr:
                    return None
                out.append((name, t))
        return out


def _wrap(lease, ptr, nbytes, shape, dtype, device, what):
    """A tensor of `dtype` and `shape` over nbytes of leased memory at ptr."""
    item = _item(dtype)
    count = 1
    for d in shape:
        count *= d
    if count * item != nbytes:
        raise _client.DaemonError(-65, f'{what}: the daemon mapped {nbytes} bytes for '
                                       f'{list(shape)} of {dtype}')
    if count == 0:
        return torch.empty(shape, dtype=dtype, device=device)
    holder = _Mapped(lease, ptr, count, _CARRIER[item], device.type == 'cuda')
    if device.type == 'cuda':
        t = torch.as_tensor(holder, device=device)
    else:
        t = torch.from_numpy(np.asarray(holder))
    if t.dtype != dtype:
        t = t.view(dtype)
    return t.view(shape)


def _dequant(g, q, s, dtype):
    """q x s[row] as dtype, a new tensor on q's device: wc_gpu_dequant (a
    wc_gpu of q's kind: CUDA for device memory, CPU for host memory) where
    libwcodec has it, else the same rule in PyTorch ((q.float() * s[:, None])
    .to(dtype): docs/FORMAT.md, "Dequantized output")."""
    rows = q.shape[0] if q.dim() else 1
    cols = q.numel() // rows if rows else 0
    if g is not None and q.numel():
        w = torch.empty(q.shape, dtype=dtype, device=q.device)
        g.dequant(q.data_ptr(), s.data_ptr() if s is not None else None, rows, cols, _DEQUANT[dtype],
                  w.data_ptr())
        return w
    w = q.reshape(rows, cols).to(torch.float32)
    if s is not None:
        w = w * s[:, None]
    return w.to(dtype).reshape(q.shape)


class _Builder:
    """Turns the TensorViews of one Lease into (name, tensor) pairs on
    `device`, dequantized when dtype is set; knows whether any output still
    maps the lease."""

    def __init__(self, path, lease, device, dtype, codings):
        self.path, self.lease, self.device, self.dtype = path, lease, device, dtype
        self.codings = codings  # {name: coded} where it had to be asked, else None
        self.kept = False       # an output maps leased memory
        self.cuda_devices = set()
        self._gpu = {}

    def close(self):
        for g in self._gpu.values():
            g.close()

    def _gpu_for(self, dev):
        """The wc_gpu that dequantizes memory of dev (None: PyTorch does):
        the CUDA backend on that device, the CPU backend for host memory
        (libwcodec's CPU dequant, safe from many threads; made before any
        thread asks, by cpu_pool)."""
        if not _lib.HAVE_GPU_DEQUANT:
            return None
        key = dev.index if dev.type == 'cuda' else 'cpu'
        if key not in self._gpu:
            if dev.type == 'cuda':
                torch.cuda.synchronize(dev)  # wc_gpu works on its own streams
                self._gpu[key] = _lib.Gpu(device=dev.index)
            else:
                self._gpu[key] = _lib.Gpu(require_gpu=False, force_cpu=True)
        return self._gpu[key]

    def _coded(self, v):
        if v.n_scales or (v.out_dtype == 'I8' and v.dtype != 'I8'):
            return True
        if v.out_dtype != 'I8' or self.codings is None:
            return False
        return self.codings.get(v.name, False)  # an INT8 source coded without scales

    def tensors(self, v):
        where = torch.device('cuda', v.device) if v.on_cuda else torch.device('cpu')
        if v.on_cuda:
            self.cuda_devices.add(where)
        what = f'{self.path}: tensor {v.name!r}'
        q = _wrap(self.lease, v.data, v.size, v.shape, _torch_dtype(self.path, v, v.out_dtype), where, what)
        s = (_wrap(self.lease, v.scales, 4 * v.n_scales, (v.n_scales,), torch.float32, where,
                   what + ' scales') if v.n_scales else None)
        if self.dtype is not None:
            # new tensors: the leases can end once all are made
            if self._coded(v):
                out = [(v.name, _dequant(self._gpu_for(where), q, s, self.dtype))]
            elif v.dtype in _FLOATS:
                out = [(v.name, q.to(self.dtype, copy=True))]
            else:
                out = [(v.name, q.clone())]
            return [(k, t.to(self.device)) for k, t in out]
        out = [(v.name, q)] + ([(v.name + '_scale', s)] if s is not None else [])
        if where == self.device or (where.type == self.device.type == 'cpu'):
            self.kept = True
            return out
        # the daemon answered memfd for a device: copied there
        return [(k, t.to(self.device)) for k, t in out]


def _device_index(device):
    if device.type != 'cuda':
        return -1
    return device.index if device.index is not None else torch.cuda.current_device()


def state_dict(conn, model_id, path, device, dtype, names=None, tp=None):
    """{name: tensor} of one get from the daemon (all tensors, or `names`),
    laid out as load_wcodec_checkpoint's; see the module's docstring for
    what the tensors hold."""
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', torch.cuda.current_device())
    index = _device_index(device)
    try:
        lease = conn.get(model_id, names, device=index, tp=tp)
    except _client.DaemonError as e:
        if index < 0 or e.code != _lib.ENODEV:
            raise
        # this client cannot map device memory (built without CUDA, no
        # libcuda): host memory, copied to the device below
        log.debug('%s: %s: mapping host memory and copying to %s', path, e, device)
        lease = conn.get(model_id, names, device=-1, tp=tp)
    views = [v for v in lease.tensors if v.name != _lib.METADATA_NAME]
    if tp is not None and tp[1] > 1:
        # a daemon older than shards answers whole tensors: not what was asked
        whole = [v.name for v in views if v.tp_size == 1 and v.shape
                 and _lib.shard_layout_dim(tp[2], v.name) >= 0]
        if whole:
            lease.release()
            raise _client.DaemonError(-9, f'{path}: wcodecd answered {whole[0]!r} whole to a request for '
                                           f'shard {tp[0]} of {tp[1]}: it does not serve shards (older '
                                           'than this client)')
    codings = None
    if dtype is not None and any(v.out_dtype == 'I8' and v.dtype == 'I8' and not v.n_scales
                                 for v in views):
        codings = conn.codings(model_id)
    if dtype is None and device.type == 'cuda' and any(v.on_cuda for v in views):
        # the warm map of a serving process: every tensor a view of its arena, no copy
        try:
            items = _DeviceBases(lease, views).state_items(views, device.index, TORCH_DTYPES)
        except (RuntimeError, TypeError, ValueError) as e:
            # views are an optimization: each tensor wrapped alone instead
            log.debug('%s: device tensors wrapped one by one (%s)', path, e)
            items = None
        if items is not None:
            lease.hooks.append(lambda dev=device: torch.cuda.synchronize(dev))
            return dict(items)
    b = _Builder(path, lease, device, dtype, codings)
    try:
        if dtype is not None and not any(v.on_cuda for v in views) and len(views) > 1:
            # host memory dequantized on the CPU: one tensor a thread (ctypes
            # and torch drop the GIL), as the in-process CPU path decodes
            b._gpu_for(torch.device('cpu'))
            with concurrent.futures.ThreadPoolExecutor(min(len(views), os.cpu_count() or 1)) as pool:
                items = [kv for part in pool.map(b.tensors, views) for kv in part]
        else:
            items = [kv for v in views for kv in b.tensors(v)]
    except BaseException:
        lease.release()  # what was built goes with the exception
        raise
    finally:
        b.close()
    # a kernel may still read device memory of the lease when it ends
    for dev in b.cuda_devices:
        lease.hooks.append(lambda dev=dev: torch.cuda.synchronize(dev))
    if not b.kept:
        lease.release()
    return dict(items)


def check_path(path):
    """The absolute path the daemon is to open; the errors the in-process
    path gives for a missing file or a folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, 'No such file', path)
    if os.path.isdir(path):
        raise IsADirectoryError(21, 'a .wcodec file is needed, not a folder', path)
    return os.path.abspath(path)


def open_model(path, socket, required):
    """(Connection, model id) for `path`, or None where via="auto" decodes
    in-process instead: nothing answers on the socket, or the daemon refuses
    the path (outside its roots). With required, those raise
    DaemonUnavailable / DaemonError naming the socket or the path."""
    apath = check_path(path)
    try:
        conn = _client.Connection(socket)
    except _client.DaemonUnavailable as e:
        if required:
            raise
        log.debug('via="auto": no daemon (%s): decoding in-process', e)
        return None
    try:
        model_id, _ = conn.open(apath)
    except _client.DaemonError as e:
        conn.close()  # nothing leased: an exception kept by the caller must not keep it open
        if required or e.code != _client.EDENIED:
            raise
        log.info('via="auto": the daemon at %s refuses %s (%s): decoding in-process', conn.socket,
                 apath, e)
        return None
    return conn, model_id


def load(path, device, dtype, socket, required, tp=None, parts=None):
    """load_wcodec_checkpoint through the daemon, or None (see open_model);
    tp = (rank, size, layout): that rank's shards (the daemon's split:
    torch.tensor_split along the layout's dimension); parts = [(names, tp)]
    instead: one get each, on one connection (_tp.daemon_parts: ranks that
    share KV heads)."""
    opened = open_model(path, socket, required)
    if opened is None:
        return None
    conn, model_id = opened
    out = {}
    try:
        for names, ptp in (parts if parts is not None else [(None, tp)]):
            if names is None or names:
                out.update(state_dict(conn, model_id, os.fspath(path), device, dtype, names=names, tp=ptp))
        return out
    except BaseException:
        # the tensors of the gets that succeeded go first, and their leases
        # with them (nothing else refers to them); then no lease of conn is
        # alive and it can close
        out.clear()
        conn.close()
        raise
