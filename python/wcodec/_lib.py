"""ctypes binding of libwcodec: the only module that knows the C ABI.

Everything that mirrors a C struct or names a C function is here, so that a
change of the public headers (include/wcodec/wcodec.h) is mended in one place.
The binding calls functions; the struct layouts it reads are wc_tensor_info
(after wc_file_tensor_info), wc_shard_info (after wc_shard_info_get) and
wc_err (a code and a message), and it hands the library buffers larger than
any of them needs, so that a library whose structs grew reserved space at
their end still fits. The arrays it passes in (wc_gpu_dst,
wc_gpu_shard_dst) are mirrored whole, reserved fields included.
"""
import ctypes
import json
import os

from . import _paths

# wc_status (wcodec.h)
E_NAMES = {-1: 'EINVAL', -2: 'EIO', -3: 'ENOMEM', -4: 'EFORMAT', -5: 'ECHECKSUM', -6: 'EVERSION',
           -7: 'ERANGE', -8: 'ENOTFOUND', -9: 'EUNSUPPORTED', -10: 'ECORRUPT', -11: 'ECUDA',
           -12: 'ENODEV', -13: 'ECANCELED',
           # wc_client_status (wcodec_client.h)
           -64: 'EDENIED', -65: 'EPROTO', -66: 'EDISCONNECTED', -67: 'EBUDGET', -68: 'ETIMEDOUT',
           -69: 'ELIMIT'}
ENOTFOUND = -8
ENODEV = -12

# wc_dtype (wcodec.h): numeric value -> safetensors name; the values never change
DTYPES = {1: 'BOOL', 2: 'U8', 3: 'I8', 4: 'I16', 5: 'U16', 6: 'F16', 7: 'BF16', 8: 'I32', 9: 'U32',
          10: 'F32', 11: 'F64', 12: 'I64', 13: 'U64', 14: 'F8_E4M3', 15: 'F8_E5M2'}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
DTYPE_SIZES = {'BOOL': 1, 'U8': 1, 'I8': 1, 'I16': 2, 'U16': 2, 'F16': 2, 'BF16': 2, 'I32': 4,
               'U32': 4, 'F32': 4, 'F64': 8, 'I64': 8, 'U64': 8, 'F8_E4M3': 1, 'F8_E5M2': 1}
CODING_RAW, CODING_RANS_I8 = 0, 1
MAX_DIMS = 8
# The name of the metadata record (docs/FORMAT.md, "Metadata"): a RAW U8
# tensor holding a JSON object of strings, hidden from the tensor lists.
METADATA_NAME = '__metadata__'

# wc_backend (wcodec_gpu.h)
BACKEND_CUDA = 2


class WCodecError(RuntimeError):
    """A libwcodec call failed: `code` is the negative WC_E* value, `name` its
    name (ECHECKSUM, EFORMAT, ...), and the message names file, tensor and offset."""

    def __init__(self, code, message):
        self.code = code
        self.name = E_NAMES.get(code, str(code))
        super().__init__(f'{message} [WC_{self.name}]')


class _TensorInfo(ctypes.Structure):
    # mirrors struct wc_tensor_info of wcodec.h, field for field
    _fields_ = [('name', ctypes.c_char_p), ('dtype', ctypes.c_int), ('out_dtype', ctypes.c_int),
                ('coding', ctypes.c_int), ('ndim', ctypes.c_uint32),
                ('shape', ctypes.c_uint64 * MAX_DIMS),
                ('rows', ctypes.c_uint64), ('cols', ctypes.c_uint64),
                ('out_bytes', ctypes.c_uint64), ('n_scales', ctypes.c_uint64),
                ('stored_bytes', ctypes.c_uint64), ('file_offset', ctypes.c_uint64),
                ('tile_rows', ctypes.c_uint32), ('tile_cols', ctypes.c_uint32),
                ('n_tiles', ctypes.c_uint32), ('n_tables', ctypes.c_uint32),
                ('prob_bits', ctypes.c_uint32), ('top_distance', ctypes.c_uint32)]


# Room handed to the library for a struct it fills: more than the mirrors
# need, so that reserved space added at a struct's end does not overrun.
_ROOM = 4096
_ERR_MSG_OFFSET = 4   # struct wc_err { int code; char msg[768]; }
_ERR_MSG_LEN = 768


class _GpuDst(ctypes.Structure):
    # mirrors struct wc_gpu_dst of wcodec_gpu.h
    _fields_ = [('out', ctypes.c_void_p), ('out_size', ctypes.c_size_t),
                ('scales', ctypes.c_void_p), ('n_scales', ctypes.c_size_t)]


class _ShardInfo(ctypes.Structure):
    # mirrors struct wc_shard_info of wcodec.h up to scale_row0 (read in a larger buffer)
    _fields_ = [('dim', ctypes.c_int), ('start', ctypes.c_uint64), ('len', ctypes.c_uint64),
                ('ndim', ctypes.c_uint32), ('shape', ctypes.c_uint64 * MAX_DIMS),
                ('out_bytes', ctypes.c_uint64), ('n_scales', ctypes.c_uint64),
                ('scale_row0', ctypes.c_uint64)]


class _GpuShardDst(ctypes.Structure):
    # mirrors struct wc_gpu_shard_dst of wcodec_gpu.h whole: the library walks an array of them
    _fields_ = [('out', ctypes.c_void_p), ('out_size', ctypes.c_size_t),
                ('scales', ctypes.c_void_p), ('n_scales', ctypes.c_size_t),
                ('dim', ctypes.c_int), ('rank', ctypes.c_uint32), ('n_shards', ctypes.c_uint32),
                ('reserved', ctypes.c_uint64 * 4)]


class _GpuOpts(ctypes.Structure):
    # mirrors the leading fields of struct wc_gpu_opts (wcodec_gpu.h); filled
    # by wc_gpu_opts_default in a larger buffer, only `device`,
    # `require_gpu` and `force_cpu` are set here
    _fields_ = [('device', ctypes.c_int), ('require_gpu', ctypes.c_bool), ('force_cpu', ctypes.c_bool)]


def _candidates():
    env = os.environ.get('WCODEC_LIBRARY')
    if env:
        return [env]  # an explicit choice is not second-guessed
    out = []
    if _paths.LIBDIR:
        out.append(os.path.join(_paths.LIBDIR, f'libwcodec.so.{_paths.SOVERSION}'))
    out.append(f'libwcodec.so.{_paths.SOVERSION}')
    return out


def _load():
    errors = []
    for c in _candidates():
        try:
            return ctypes.CDLL(c)
        except OSError as e:
            errors.append(f'{c}: {e}')
    raise ImportError('wcodec: cannot load libwcodec (set WCODEC_LIBRARY to its path): '
                      + '; '.join(errors))


def _proto(lib, name, restype, *argtypes):
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_lib = _load()
_vp, _sz, _i, _cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p
_proto(_lib, 'wc_strerror', _cp, _i)
_proto(_lib, 'wc_file_open', _i, ctypes.POINTER(_vp), _cp, _vp)
_proto(_lib, 'wc_file_close', None, _vp)
_proto(_lib, 'wc_file_tensor_count', _sz, _vp)
_proto(_lib, 'wc_file_tensor_info', _i, _vp, _sz, _vp)
_proto(_lib, 'wc_file_find', _i, _vp, _cp)
_proto(_lib, 'wc_file_size', ctypes.c_uint64, _vp)
_proto(_lib, 'wc_decode_tensor', _i, _vp, _sz, _vp, _sz, _vp, _sz, _vp)
HAVE_DEQUANT = hasattr(_lib, 'wc_decode_tensor_dequant')
if HAVE_DEQUANT:
    _proto(_lib, 'wc_decode_tensor_dequant', _i, _vp, _sz, _i, _vp, _sz, _vp)
# Tensor-parallel shards (libwcodec >= 1.1.0, docs/SHARDING.md)
HAVE_SHARD = hasattr(_lib, 'wc_decode_tensor_shard')
if HAVE_SHARD:
    _u32 = ctypes.c_uint32
    _proto(_lib, 'wc_shard_info_get', _i, _vp, _sz, _i, _u32, _u32, _vp, _vp)
    _proto(_lib, 'wc_decode_tensor_shard', _i, _vp, _sz, _i, _u32, _u32, _vp, _sz, _vp, _sz, _vp)
    _proto(_lib, 'wc_shard_layout_dim', _i, _cp, _cp, ctypes.POINTER(_i))
# The GPU decoder is there where libwcodec was built with CUDA.
HAVE_GPU = hasattr(_lib, 'wc_gpu_create')
if HAVE_GPU:
    _proto(_lib, 'wc_gpu_opts_default', None, _vp)
    _proto(_lib, 'wc_gpu_create', _i, ctypes.POINTER(_vp), _vp, _vp)
    _proto(_lib, 'wc_gpu_destroy', None, _vp)
    _proto(_lib, 'wc_gpu_backend', _i, _vp)
    _proto(_lib, 'wc_gpu_fallback_reason', _cp, _vp)
    _proto(_lib, 'wc_gpu_decode_file', _i, _vp, _vp, ctypes.POINTER(_GpuDst), _vp)
HAVE_GPU_SHARD = HAVE_GPU and hasattr(_lib, 'wc_gpu_decode_file_shards')
if HAVE_GPU_SHARD:
    _proto(_lib, 'wc_gpu_decode_file_shards', _i, _vp, _vp, ctypes.POINTER(_GpuShardDst), _vp)
# wc_gpu_dequant: dequantization where the decode happened (libwcodec >= 1.0.0)
HAVE_GPU_DEQUANT = HAVE_GPU and hasattr(_lib, 'wc_gpu_dequant')
if HAVE_GPU_DEQUANT:
    _proto(_lib, 'wc_gpu_dequant', _i, _vp, _vp, _vp, ctypes.c_uint64, ctypes.c_uint64, _i, _vp, _vp)


def _check(r, err):
    if r == 0:
        return
    code = ctypes.c_int.from_buffer(err).value
    msg = bytes(err[_ERR_MSG_OFFSET:_ERR_MSG_OFFSET + _ERR_MSG_LEN]).split(b'\0', 1)[0]
    text = msg.decode('utf-8', 'replace') if code == r and msg else ''
    raise WCodecError(r, text or _lib.wc_strerror(r).decode())


def _err():
    return (ctypes.c_char * _ROOM)()


# Where a zero-byte output goes (decoding an empty tensor still checks its record).
_NOWHERE = ctypes.addressof(ctypes.create_string_buffer(8))


class TensorInfo:
    """What the directory says of one tensor (wc_tensor_info)."""
    __slots__ = ('index', 'name', 'dtype', 'out_dtype', 'coded', 'shape', 'rows', 'cols',
                 'out_bytes', 'n_scales', 'stored_bytes', 'file_offset')

    def __init__(self, index, ti):
        self.index = index
        self.name = ti.name.decode('utf-8')
        self.dtype = DTYPES[ti.dtype]          # of the source tensor
        self.out_dtype = DTYPES[ti.out_dtype]  # what decode yields: I8 for coded tensors
        self.coded = ti.coding == CODING_RANS_I8
        self.shape = tuple(ti.shape[d] for d in range(ti.ndim))
        self.rows, self.cols = ti.rows, ti.cols
        self.out_bytes, self.n_scales = ti.out_bytes, ti.n_scales
        self.stored_bytes, self.file_offset = ti.stored_bytes, ti.file_offset

    def __repr__(self):
        return f'TensorInfo({self.name!r}, {self.out_dtype}, {list(self.shape)}, coded={self.coded})'


class ShardInfo:
    """What wc_shard_info_get says of one shard: dim, start, len, shape (the
    shard's), out_bytes, n_scales and scale_row0."""
    __slots__ = ('dim', 'start', 'len', 'shape', 'out_bytes', 'n_scales', 'scale_row0')

    def __init__(self, si):
        self.dim, self.start, self.len = si.dim, si.start, si.len
        self.shape = tuple(si.shape[d] for d in range(si.ndim))
        self.out_bytes, self.n_scales, self.scale_row0 = si.out_bytes, si.n_scales, si.scale_row0

    def __repr__(self):
        return (f'ShardInfo(dim={self.dim}, [{self.start}, {self.start + self.len}), '
                f'{list(self.shape)}, n_scales={self.n_scales})')


def _need_shard():
    if not HAVE_SHARD:
        raise WCodecError(-9, 'this libwcodec has no tensor-parallel shards (wc_decode_tensor_shard, '
                              'libwcodec >= 1.1.0)')


def shard_layout_dim(layout, name):
    """Where tensor `name` splits in `layout` (wc_shard_layout_dim): 0, 1, or
    -1 for a tensor every rank takes whole. ValueError for an unknown layout."""
    _need_shard()
    dim = ctypes.c_int(-1)
    if _lib.wc_shard_layout_dim(str(layout).encode(), name.encode('utf-8'), ctypes.byref(dim)):
        raise ValueError(f'tp_layout {layout!r} is not a layout libwcodec knows (it knows "llama")')
    return dim.value


class File:
    """An open .wcodec file (wc_file). Decoding calls release the GIL, so
    several threads may decode tensors of one File at once."""
    _h = None  # set once wc_file_open succeeded: close() and __del__ rely on it

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(2, 'No such file', path)
        if os.path.isdir(path):
            raise IsADirectoryError(21, 'a .wcodec file is needed, not a folder', path)
        self.path = path
        h, err = ctypes.c_void_p(), _err()
        _check(_lib.wc_file_open(ctypes.byref(h), os.fsencode(path), err), err)
        self._h = h
        self._infos = []
        buf = (ctypes.c_char * _ROOM)()
        for i in range(_lib.wc_file_tensor_count(h)):
            _check(_lib.wc_file_tensor_info(h, i, buf), err)
            self._infos.append(TensorInfo(i, _TensorInfo.from_buffer(buf)))
        self._by_name = {t.name: t for t in self._infos}

    def close(self):
        if self._h:
            _lib.wc_file_close(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _handle(self):
        if not self._h:
            raise ValueError(f'{self.path}: the file is closed')
        return self._h

    @property
    def size(self):
        return _lib.wc_file_size(self._handle())

    def tensors(self):
        """TensorInfo of every tensor in file order (the metadata record left out)."""
        return [t for t in self._infos if t.name != METADATA_NAME]

    def info(self, name):
        """TensorInfo of `name`; KeyError if the file has none of that name."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f'{self.path}: no tensor {name!r}') from None

    def decode_into(self, t, out, out_size, scales=None, n_scales=0):
        """Decodes TensorInfo t (its record hash checked first) into host
        memory at address `out` (out_size bytes) and its scales at `scales`."""
        out = out or _NOWHERE  # an empty tensor's storage may be NULL: the library wants memory
        err = _err()
        _check(_lib.wc_decode_tensor(self._handle(), t.index, out, out_size, scales, n_scales, err),
               err)

    def dequant_into(self, t, dtype, out, out_size):
        """Decodes t as `dtype` ('BF16', 'F16' or 'F32'): q x scale rounded to
        nearest even from float32 (wc_decode_tensor_dequant)."""
        if not HAVE_DEQUANT:
            raise WCodecError(-9, f'{_lib._name}: this libwcodec has no wc_decode_tensor_dequant')
        out = out or _NOWHERE
        err = _err()
        _check(_lib.wc_decode_tensor_dequant(self._handle(), t.index, DTYPE_CODES[dtype], out,
                                             out_size, err), err)

    def shard_info(self, t, dim, rank, n_shards):
        """ShardInfo of shard `rank` of `n_shards` of t along dim (wc_shard_info_get)."""
        _need_shard()
        buf, err = (ctypes.c_char * _ROOM)(), _err()
        _check(_lib.wc_shard_info_get(self._handle(), t.index, dim, rank, n_shards, buf, err), err)
        return ShardInfo(_ShardInfo.from_buffer(buf))

    def decode_shard_into(self, t, dim, rank, n_shards, out, out_size, scales=None, n_scales=0):
        """Decodes that shard on the CPU (wc_decode_tensor_shard) into host
        memory at `out` and its scales at `scales`: only the tiles it needs,
        not checked against the record's hash (n_shards 1: the whole tensor, checked)."""
        _need_shard()
        out = out or _NOWHERE
        err = _err()
        _check(_lib.wc_decode_tensor_shard(self._handle(), t.index, dim, rank, n_shards, out, out_size,
                                           scales, n_scales, err), err)

    def read_bytes(self, t):
        """The decoded bytes of t (INT8 values for coded tensors), and its
        scales as bytes (b'' without)."""
        out = ctypes.create_string_buffer(max(t.out_bytes, 1))
        sc = ctypes.create_string_buffer(max(4 * t.n_scales, 1))
        self.decode_into(t, out, t.out_bytes, sc if t.n_scales else None, t.n_scales)
        return out.raw[:t.out_bytes], sc.raw[:4 * t.n_scales]

    def metadata(self):
        """The file's metadata (a dict of str to str), or None without a metadata record."""
        t = self._by_name.get(METADATA_NAME)
        if t is None:
            return None
        raw, _ = self.read_bytes(t)
        try:
            meta = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as e:
            raise WCodecError(-4, f'{self.path}: metadata record is not JSON: {e}') from None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise WCodecError(-4, f'{self.path}: metadata record is not an object of strings')
        return meta


class Gpu:
    """The in-process GPU decoder of wcodec_gpu.h (wc_gpu) on CUDA device
    `device`, default options otherwise. With require_gpu (the default) a
    library that cannot use the device raises WCodecError (ENODEV/ECUDA);
    without, it falls back to the CPU and says why in `fallback_reason`.
    force_cpu (with require_gpu False): the CPU backend, whose dequant works
    on host memory and may be called from many threads at once."""
    _g = None

    def __init__(self, device=-1, require_gpu=True, force_cpu=False):
        if not HAVE_GPU:
            raise WCodecError(-12, 'this libwcodec was built without the GPU decoder')
        opts = (ctypes.c_char * _ROOM)()
        _lib.wc_gpu_opts_default(opts)
        o = _GpuOpts.from_buffer(opts)
        o.device, o.require_gpu, o.force_cpu = device, require_gpu, force_cpu
        g, err = ctypes.c_void_p(), _err()
        _check(_lib.wc_gpu_create(ctypes.byref(g), opts, err), err)
        self._g = g
        self.on_cuda = _lib.wc_gpu_backend(g) == BACKEND_CUDA
        self.fallback_reason = (_lib.wc_gpu_fallback_reason(g) or b'').decode()

    def decode_file(self, f, dsts):
        """dsts: {TensorInfo: (out_ptr, out_size, scales_ptr, n_scales)},
        device pointers; every other tensor is skipped."""
        arr = (_GpuDst * len(f._infos))()
        for t, (o, osz, s, ns) in dsts.items():
            arr[t.index] = _GpuDst(o, osz, s, ns)
        err = _err()
        _check(_lib.wc_gpu_decode_file(self._g, f._handle(), arr, err), err)

    def decode_file_shards(self, f, dsts):
        """dsts: {TensorInfo: (out_ptr, out_size, scales_ptr, n_scales, dim,
        rank, n_shards)}, device pointers: one wc_gpu_decode_file_shards call
        (every tensor not in dsts, or with out_ptr 0, is skipped)."""
        if not HAVE_GPU_SHARD:
            raise WCodecError(-9, 'this libwcodec has no wc_gpu_decode_file_shards')
        arr = (_GpuShardDst * len(f._infos))()  # zeroed: reserved fields 0, out NULL skips
        for t, (o, osz, s, ns, dim, rank, n) in dsts.items():
            d = arr[t.index]
            d.out, d.out_size, d.scales, d.n_scales = o, osz, s, ns
            d.dim, d.rank, d.n_shards = dim, rank, n
        err = _err()
        _check(_lib.wc_gpu_decode_file_shards(self._g, f._handle(), arr, err), err)

    def dequant(self, q, scales, rows, cols, dtype, out):
        """out = q x scales[row] as `dtype` ('BF16', 'F16' or 'F32'), on the
        decoder's device (device pointers; scales may be None): the rule of
        wc_decode_tensor_dequant, bit for bit (wc_gpu_dequant)."""
        if not HAVE_GPU_DEQUANT:
            raise WCodecError(-9, f'{_lib._name}: this libwcodec has no wc_gpu_dequant')
        err = _err()
        _check(_lib.wc_gpu_dequant(self._g, q, scales, rows, cols, DTYPE_CODES[dtype], out, err), err)

    def close(self):
        if self._g:
            _lib.wc_gpu_destroy(self._g)
            self._g = None

    def __del__(self):
        self.close()
