"""ctypes binding of libwcodec-client (wcodec_client.h): the only module that
knows the client's C ABI, as wcodec._lib is for libwcodec. No torch here.

Ownership mirrors the C rules:
- Connection owns one wc_client; it is closed (wc_client_close) when the
  Connection and every Lease taken through it are gone, because
  wc_client_close unmaps what is still leased and no other thread may use
  the handle meanwhile. A Lease holds a strong reference to its Connection.
- Lease owns one array from wc_client_get(2) and the leases of its tensors;
  release() (or the Lease being garbage) unmaps them and ends their leases
  in one round trip (wc_client_release), then frees the array.
Neither finalizer runs at interpreter exit: the daemon ends a connection's
leases when the process goes, and a tensor still alive then must not lose
its memory under it.

The library is found like libwcodec: $WCODEC_CLIENT_LIBRARY, else the
install's library directory, else the loader's search path
(libwcodec-client.so.1). It is loaded on first use, so `import wcodec`
works where only libwcodec is installed.
"""
import ctypes
import os
import threading
import logging
import weakref

from . import _lib, _paths

DEFAULT_SOCKET = '/run/wcodecd/wcodecd.sock'  # WC_CLIENT_DEFAULT_SOCKET
LOC_MEMFD, LOC_CUDA_VMM, LOC_CUDA_IPC = 1, 2, 3
SELECT_NAMES, SELECT_PREFIX, SELECT_ALL = 0, 1, 2
EDENIED, EDISCONNECTED = -64, -66
log = logging.getLogger('wcodec')


class DaemonError(_lib.WCodecError):
    """wcodecd or libwcodec-client refused: `code`/`name` as WCodecError
    (EDENIED, EDISCONNECTED, EBUDGET, ... or a libwcodec code such as
    ECHECKSUM for a corrupt file); the message names the socket or the
    model and tensor."""


class DaemonUnavailable(DaemonError, ConnectionError):
    """No daemon answers on the socket (or libwcodec-client is missing);
    `socket` is the path tried."""

    def __init__(self, code, message, socket):
        self.socket = socket
        super().__init__(code, message)


class _Tensor(ctypes.Structure):
    # mirrors struct wc_client_tensor of wcodec_client.h, field for field; the
    # library allocates it, so only its layout matters here. device and
    # device_uuid are read for CUDA kinds only (what a library before them
    # never returns).
    _fields_ = [('name', ctypes.c_char_p), ('model_id', ctypes.c_uint64),
                ('lease_id', ctypes.c_uint64), ('dtype', ctypes.c_int), ('out_dtype', ctypes.c_int),
                ('ndim', ctypes.c_uint32), ('shape', ctypes.c_uint64 * _lib.MAX_DIMS),
                ('data', ctypes.c_void_p), ('size', ctypes.c_uint64),
                ('scales', ctypes.c_void_p), ('n_scales', ctypes.c_uint64),
                ('location', ctypes.c_int), ('device', ctypes.c_int),
                ('device_uuid', ctypes.c_ubyte * 16),
                # read only after a sharded get (a library without them has no tp_* options either)
                ('tp_rank', ctypes.c_uint32), ('tp_size', ctypes.c_uint32), ('shard_dim', ctypes.c_int),
                ('shard_start', ctypes.c_uint64), ('full_shape', ctypes.c_uint64 * _lib.MAX_DIMS)]


class _Model(ctypes.Structure):
    # the leading fields of struct wc_client_model (filled in a larger buffer)
    _fields_ = [('id', ctypes.c_uint64), ('tensor_count', ctypes.c_uint32),
                ('file_bytes', ctypes.c_uint64)]


class _Stats(ctypes.Structure):
    # the leading fields of struct wc_client_stats (filled in a larger buffer)
    _fields_ = [('uptime_ms', ctypes.c_uint64), ('connections', ctypes.c_uint32),
                ('models', ctypes.c_uint32), ('budget_bytes', ctypes.c_uint64),
                ('cached_bytes', ctypes.c_uint64), ('cached_tensors', ctypes.c_uint32),
                ('leased_bytes', ctypes.c_uint64), ('leased_tensors', ctypes.c_uint32),
                ('leases', ctypes.c_uint64), ('conn_leases', ctypes.c_uint64),
                ('decodes', ctypes.c_uint64), ('hits', ctypes.c_uint64),
                ('evictions', ctypes.c_uint64), ('requests', ctypes.c_uint64),
                ('errors', ctypes.c_uint64), ('rss_bytes', ctypes.c_uint64),
                ('open_fds', ctypes.c_uint32), ('decodes_in_flight', ctypes.c_uint32)]


class _ListInfo(ctypes.Structure):
    # mirrors struct wc_client_tensor_info whole: the library returns an array of them
    _fields_ = [('name', ctypes.c_char_p), ('dtype', ctypes.c_int), ('out_dtype', ctypes.c_int),
                ('coding', ctypes.c_int), ('ndim', ctypes.c_uint32),
                ('shape', ctypes.c_uint64 * _lib.MAX_DIMS), ('out_bytes', ctypes.c_uint64),
                ('n_scales', ctypes.c_uint64), ('stored_bytes', ctypes.c_uint64),
                ('cached', ctypes.c_int), ('reserved', ctypes.c_uint64 * 8)]


_TensorPP = ctypes.POINTER(ctypes.POINTER(_Tensor))
_state = {'lib': None, 'error': None}
_load_lock = threading.Lock()


def _candidates():
    env = os.environ.get('WCODEC_CLIENT_LIBRARY')
    if env:
        return [env]
    name = f'libwcodec-client.so.{_paths.SOVERSION}'
    return ([os.path.join(_paths.LIBDIR, name)] if _paths.LIBDIR else []) + [name]


def _declare(lib):
    vp, i, cp, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t
    _lib._proto(lib, 'wc_client_strerror', cp, i)
    _lib._proto(lib, 'wc_client_connect', i, ctypes.POINTER(vp), cp, vp)
    _lib._proto(lib, 'wc_client_close', None, vp)
    _lib._proto(lib, 'wc_client_set_timeout', None, vp, i)
    _lib._proto(lib, 'wc_client_open', i, vp, cp, vp, vp)
    _lib._proto(lib, 'wc_client_get', i, vp, ctypes.c_uint64, i, ctypes.POINTER(cp), sz,
                ctypes.POINTER(_TensorPP), ctypes.POINTER(sz), vp)
    _lib._proto(lib, 'wc_client_tensors_free', None, _TensorPP)
    _lib._proto(lib, 'wc_client_release', i, vp, _TensorPP, sz, vp)
    _lib._proto(lib, 'wc_client_stats_get', i, vp, vp, vp)
    _lib._proto(lib, 'wc_client_list', i, vp, ctypes.c_uint64, cp, ctypes.POINTER(ctypes.POINTER(_ListInfo)),
                ctypes.POINTER(sz), vp)
    _lib._proto(lib, 'wc_client_list_free', None, ctypes.POINTER(_ListInfo), sz)
    # wc_client_get2 (device placement): where the library has it
    lib.have_get2 = hasattr(lib, 'wc_client_get2')
    if lib.have_get2:
        _lib._proto(lib, 'wc_client_get_opts_default', None, vp)
        _lib._proto(lib, 'wc_client_get2', i, vp, ctypes.c_uint64, i, ctypes.POINTER(cp), sz, vp,
                    ctypes.POINTER(_TensorPP), ctypes.POINTER(sz), vp)


def client_lib():
    """The loaded libwcodec-client; ImportError listing each place tried."""
    with _load_lock:
        if _state['lib'] is None and _state['error'] is None:
            errors = []
            for c in _candidates():
                try:
                    lib = ctypes.CDLL(c)
                    _declare(lib)
                    _state['lib'] = lib
                    break
                except OSError as e:
                    errors.append(f'{c}: {e}')
            else:
                _state['error'] = ('wcodec: cannot load libwcodec-client (set WCODEC_CLIENT_LIBRARY '
                                   'to its path): ' + '; '.join(errors))
    if _state['lib'] is None:
        raise ImportError(_state['error'])
    return _state['lib']


def _check(lib, r, err, cls=DaemonError):
    if r == 0:
        return
    code = ctypes.c_int.from_buffer(err).value
    msg = bytes(err[_lib._ERR_MSG_OFFSET:_lib._ERR_MSG_OFFSET + _lib._ERR_MSG_LEN]).split(b'\0', 1)[0]
    text = msg.decode('utf-8', 'replace') if code == r and msg else ''
    raise cls(r, text or lib.wc_client_strerror(r).decode())


def socket_path(socket=None):
    """The socket the client library will use for `socket` (None: as C does)."""
    return os.fspath(socket) if socket else (os.environ.get('WCODECD_SOCKET') or DEFAULT_SOCKET)


class _GetOpts(ctypes.Structure):
    """The head of wc_client_get_opts (wcodec_client.h); the rest is
    reserved, zeroed by wc_client_get_opts_default in a larger buffer."""
    _fields_ = [('device', ctypes.c_int), ('tp_rank', ctypes.c_uint32), ('tp_size', ctypes.c_uint32),
                ('tp_layout', ctypes.c_char_p)]


class TensorView:
    """One leased tensor as the daemon mapped it (read from wc_client_tensor)."""
    __slots__ = ('name', 'dtype', 'out_dtype', 'shape', 'data', 'size', 'scales', 'n_scales',
                 'location', 'device', 'tp_size')

    def __init__(self, t):
        self.name = t.name.decode('utf-8')
        self.dtype, self.out_dtype = _lib.DTYPES[t.dtype], _lib.DTYPES[t.out_dtype]
        self.shape = tuple(t.shape[d] for d in range(t.ndim))
        self.data, self.size = t.data, t.size
        self.scales, self.n_scales = t.scales, t.n_scales
        self.location = t.location
        self.device = t.device if t.location in (LOC_CUDA_VMM, LOC_CUDA_IPC) else -1
        self.tp_size = None  # set by Lease for a sharded get

    @property
    def on_cuda(self):
        return self.location in (LOC_CUDA_VMM, LOC_CUDA_IPC)


def _close_client(lib, handle, pid):
    # a forked child inherits the socket: only the process that connected
    # may speak on it (the child keeps the mappings it inherited)
    if os.getpid() == pid:
        lib.wc_client_close(handle)


class Connection:
    """One connection to wcodecd (wc_client): socket None means
    $WCODECD_SOCKET, else /run/wcodecd/wcodecd.sock. Raises
    DaemonUnavailable naming the socket when nothing answers there.
    timeout_ms: how long a call waits for its reply (0: forever); the
    default, 10 minutes, leaves room for a first get that decodes a large
    model on the daemon's CPU backend (the C library's own is 30 s)."""

    def __init__(self, socket=None, timeout_ms=600000):
        self.socket = socket_path(socket)
        try:
            lib = client_lib()
        except ImportError as e:
            raise DaemonUnavailable(-9, str(e), self.socket) from None
        h, err = ctypes.c_void_p(), _lib._err()
        r = lib.wc_client_connect(ctypes.byref(h), os.fsencode(self.socket), err)
        if r in (EDISCONNECTED, EDENIED):
            _check(lib, r, err, lambda c, m: DaemonUnavailable(c, m, self.socket))
        _check(lib, r, err)
        self._lib, self._h, self._pid = lib, h, os.getpid()
        if timeout_ms is not None:
            lib.wc_client_set_timeout(h, timeout_ms)
        self._fin = weakref.finalize(self, _close_client, lib, h, self._pid)
        self._fin.atexit = False

    def _handle(self):
        if os.getpid() != self._pid:
            raise DaemonError(-66, f'wcodecd at {self.socket}: this connection belongs to process '
                                   f'{self._pid} (inherited through fork): connect again')
        if not self._fin.alive:
            raise ValueError(f'wcodecd at {self.socket}: the connection is closed')
        return self._h

    def close(self):
        """Closes now; only when no Lease of this connection is alive (a
        Lease keeps its Connection, so dropping references is the safe way)."""
        self._fin()

    def open(self, path):
        """Opens a .wcodec file beneath the daemon's roots: (model id, tensor count)."""
        buf, err = (ctypes.c_char * _lib._ROOM)(), _lib._err()
        _check(self._lib, self._lib.wc_client_open(self._handle(), os.fsencode(path), buf, err), err)
        m = _Model.from_buffer(buf)
        return m.id, m.tensor_count

    def get(self, model_id, names=None, device=-1, tp=None):
        """Leases and maps the tensors named (None: all of the model) in one
        request: a Lease. device >= 0 asks for device memory on that CUDA
        ordinal through wc_client_get2 (the daemon may still answer memfd);
        a library without wc_client_get2 always answers memfd. tp = (rank,
        size, layout) with size >= 2 asks for each tensor's tensor-parallel
        shard (wc_client_get_opts.tp_*: needs wc_client_get2)."""
        lib, err = self._lib, _lib._err()
        arr, n = _TensorPP(), ctypes.c_size_t()
        if names is None:
            sel, cnames, nn = SELECT_ALL, None, 0
        else:
            sel, nn = SELECT_NAMES, len(names)
            cnames = (ctypes.c_char_p * max(nn, 1))(*[s.encode('utf-8') for s in names])
        sharded = tp is not None and tp[1] > 1
        if sharded and not lib.have_get2:
            raise DaemonError(-8, 'this libwcodec-client has no wc_client_get2: no tensor-parallel shards '
                                  'through the daemon')
        if lib.have_get2 and (device >= 0 or sharded):
            room = (ctypes.c_char * _lib._ROOM)()
            lib.wc_client_get_opts_default(room)
            opts = _GetOpts.from_buffer(room)
            opts.device = device
            layout = tp[2].encode('utf-8') if sharded else None
            if sharded:
                opts.tp_rank, opts.tp_size, opts.tp_layout = tp[0], tp[1], layout
            r = lib.wc_client_get2(self._handle(), model_id, sel, cnames, nn, room, ctypes.byref(arr),
                                   ctypes.byref(n), err)
        else:
            r = lib.wc_client_get(self._handle(), model_id, sel, cnames, nn, ctypes.byref(arr),
                                  ctypes.byref(n), err)
        _check(lib, r, err)
        return Lease(self, arr, n.value, sharded)

    def codings(self, model_id):
        """{name: True if coded (INT8 rANS), False if raw} of every tensor (wc_client_list)."""
        lib, err = self._lib, _lib._err()
        arr, n = ctypes.POINTER(_ListInfo)(), ctypes.c_size_t()
        _check(lib, lib.wc_client_list(self._handle(), model_id, None, ctypes.byref(arr), ctypes.byref(n), err),
               err)
        try:
            return {arr[i].name.decode('utf-8'): arr[i].coding == _lib.CODING_RANS_I8
                    for i in range(n.value)}
        finally:
            lib.wc_client_list_free(arr, n.value)

    def stats(self):
        """The daemon's counters (wc_client_stats) as a dict."""
        buf, err = (ctypes.c_char * _lib._ROOM)(), _lib._err()
        _check(self._lib, self._lib.wc_client_stats_get(self._handle(), buf, err), err)
        s = _Stats.from_buffer(buf)
        return {f: getattr(s, f) for f, _ in _Stats._fields_}


def _release(conn, arr, n, hooks):
    # hooks first (a device sync: a kernel may still read the memory); the
    # tensors are unmapped whatever the daemon answers, and a failed release
    # round trip ends with the connection (its leases go when it closes).
    # Not in a forked child: the socket and the leases are the parent's.
    if os.getpid() != conn._pid:
        return
    for h in hooks:
        try:
            h()
        except Exception:  # noqa: BLE001 -- the leases must end regardless
            log.exception('wcodec: before releasing leases')
    lib = conn._lib
    lib.wc_client_release(conn._h, arr, n, None)
    lib.wc_client_tensors_free(arr)


class Lease:
    """The tensors of one get: `tensors` (TensorViews), valid until
    release() or until this object is garbage. Holds its Connection.
    `hooks`: callables run just before the leases end (they must not refer
    to the Lease)."""

    def __init__(self, conn, arr, n, sharded=False):
        self.conn = conn
        self.hooks = []
        self._fin = weakref.finalize(self, _release, conn, arr, n, self.hooks)
        self._fin.atexit = False
        try:
            self.tensors = [TensorView(arr[i].contents) for i in range(n)]
            for i, v in enumerate(self.tensors):
                if sharded:
                    v.tp_size = arr[i].contents.tp_size
        except Exception as e:  # e.g. a dtype code this binding does not know
            self.release()
            raise DaemonError(-65, f'wcodecd at {conn.socket}: get: {e!r}') from None

    def release(self):
        """Ends the leases now (idempotent): nothing may read the tensors after."""
        self._fin()

    @property
    def released(self):
        return not self._fin.alive
