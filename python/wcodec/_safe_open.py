"""wcodec.safe_open: the safetensors reading API over a .wcodec file.

The file reads as the safetensors file that `wcodec decode` writes from it:
a coded tensor N is N (torch.int8) and N_scale (torch.float32, one per row);
raw tensors are as they were stored. So code written for
safetensors.safe_open(path, framework="pt") runs unchanged.

What a call decodes:
- get_tensor(name): that tensor alone (its record hash checked first). The
  scales decoded with N are kept for a following get_tensor(N_scale).
- get_slice(name)[...] on a raw tensor or on N_scale: only the bytes of the
  rows asked for are read from the file; these reads skip the record hash
  (as safetensors reads any file), get_tensor checks it.
- get_slice(name)[...] on a coded tensor: the whole tensor is decoded and then
  sliced (get_tensor, so through the daemon where get_tensor goes there). Its values are predicted from the rows above (up to D rows up) and
  the columns to the left, across tiles (docs/FORMAT.md), so no row or column
  range decodes alone.

via="daemon" (or "auto" when wcodecd answers and accepts the path): each
get_tensor is one get from the daemon of that tensor (with its scales), mapped
without a copy as load_wcodec_checkpoint's daemon path maps it (read-only
shared memory on the CPU, holding its lease until freed). keys(), metadata()
and get_slice of raw tensors read the file's directory and bytes here.
"""
import mmap

import torch

from . import _lib
from .torch_io import _check_via, _decode_cpu, _torch_dtype


class _Entry:
    __slots__ = ('info', 'is_scale')

    def __init__(self, info, is_scale):
        self.info, self.is_scale = info, is_scale

    @property
    def dtype(self):
        return 'F32' if self.is_scale else self.info.out_dtype

    @property
    def shape(self):
        return (self.info.n_scales,) if self.is_scale else self.info.shape


class safe_open:
    """safe_open(path, framework="pt", device="cpu", via="auto", socket=None):
    keys(), get_tensor(), get_slice(), metadata(); a context manager.
    framework "pt" (or "torch") only. device: where get_tensor/get_slice put
    their tensors (decoded on the CPU, then moved; through the daemon, mapped
    there when it serves that device). via/socket: as load_wcodec_checkpoint's;
    the connection is closed with the last tensor it leased, after close()."""

    def __init__(self, filename, framework='pt', device='cpu', via='auto', socket=None):
        if framework not in ('pt', 'torch'):
            raise ValueError(f'framework {framework!r}: wcodec.safe_open supports "pt" only')
        via = _check_via(via)
        self._device = torch.device(device)
        self._f = _lib.File(filename)
        self._daemon = None  # (Connection, model id) when tensors come from wcodecd
        if via != 'local':
            from . import _daemon
            try:
                self._daemon = _daemon.open_model(filename, socket, required=via == 'daemon')
            except BaseException:
                self._f.close()
                raise
        self._map = None
        self._entries = {}
        for t in self._f.tensors():
            self._entries[t.name] = _Entry(t, False)
            if t.n_scales:
                self._entries[t.name + '_scale'] = _Entry(t, True)
        self._scales = (None, None)  # (name, tensor): the scales decoded with the last tensor

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._map is not None:
            self._map.close()
            self._map = None
        self._f.close()
        self._scales = (None, None)
        self._daemon = None  # the connection goes with the last tensor it leased

    def _entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f'{self._f.path}: no tensor {name!r}') from None

    def keys(self):
        """The tensor names, sorted (as safetensors lists them)."""
        return sorted(self._entries)

    def metadata(self):
        """The file's metadata, a dict of str to str, or None."""
        return self._f.metadata()

    def _decode(self, e):
        """{name: tensor} of the tensor of entry e (and its scales)."""
        if self._daemon is None:
            return dict(_decode_cpu(self._f, e.info, None))
        from . import _daemon
        conn, model_id = self._daemon
        return _daemon.state_dict(conn, model_id, self._f.path, self._device, None, [e.info.name])

    def get_tensor(self, name):
        e = self._entry(name)
        if e.is_scale:
            held, scales = self._scales
            if held != name:
                scales = self._decode(e)[name]
        else:
            parts = self._decode(e)
            if e.info.n_scales:
                self._scales = (name + '_scale', parts[name + '_scale'])
            scales = parts[name]
        return scales.to(self._device)

    def get_slice(self, name):
        return _Slice(self, self._entry(name))

    def _raw_rows(self, e, start, stop):
        """Rows [start, stop) of a raw tensor or of scales, read from the file."""
        if self._map is None:
            with open(self._f.path, 'rb') as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        shape, dt = e.shape, e.dtype
        size = _lib.DTYPE_SIZES[dt]
        row = size
        for d in shape[1:]:
            row *= d
        begin = e.info.file_offset + start * row  # scales lead a coded record
        buf = bytearray(self._map[begin:begin + (stop - start) * row])
        t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        return t.view(_torch_dtype(self._f.path, e.info, dt)).reshape((stop - start,) + tuple(shape[1:]))


class _Slice:
    """get_slice's result: get_shape(), get_dtype() and indexing."""

    def __init__(self, owner, entry):
        self._o, self._e = owner, entry

    def get_shape(self):
        return list(self._e.shape)

    def get_dtype(self):
        return self._e.dtype

    def __getitem__(self, index):
        e = self._e
        if not isinstance(index, tuple):
            index = (index,)
        if e.info.coded and not e.is_scale or not e.shape or not index:
            return self._o.get_tensor(e.info.name + ('_scale' if e.is_scale else ''))[index]
        # raw or scales: read only the rows the first index selects
        first, n = index[0], e.shape[0]
        if isinstance(first, int):
            i = first + n if first < 0 else first
            if not 0 <= i < n:
                raise IndexError(f'index {first} is out of range for dimension 0 of size {n}')
            rows, rest = self._o._raw_rows(e, i, i + 1), (0,) + index[1:]
        elif isinstance(first, slice) and (first.step is None or first.step > 0):
            start, stop, step = first.indices(n)
            stop = max(stop, start)
            rows = self._o._raw_rows(e, start, stop)
            rest = (slice(0, stop - start, step),) + index[1:]
        else:  # anything else torch indexing takes: read every row
            rows, rest = self._o._raw_rows(e, 0, n), index
        return rows[rest].to(self._o._device)
