"""wcodec for Python: load .wcodec files into PyTorch.

    import wcodec
    sd = wcodec.load_wcodec_checkpoint('model.wcodec', device='cpu')       # INT8 + scales
    sd = wcodec.load_wcodec_checkpoint('model.wcodec', dtype=torch.bfloat16)  # dequantized
    sd = wcodec.load_wcodec_checkpoint('model.wcodec', via='daemon')  # mapped from wcodecd
    sd = wcodec.load_wcodec_checkpoint('model.wcodec', device='cuda:1', tp_rank=1, tp_size=2)
    with wcodec.safe_open('model.wcodec', framework='pt') as f:
        w = f.get_slice('lm_head.weight')[:, :128]
    model = wcodec.WCodecModel.from_pretrained('model.wcodec', device_map='cuda')

The binding is ctypes over libwcodec (wcodec._lib) rather than a compiled
extension: the C ABI it needs is a dozen functions, so nothing has to be
compiled against a particular Python or PyTorch at install time, one package
serves every Python 3 and both Debian's torch 1.13 and a 2.x from elsewhere,
and ctypes releases the GIL during every call, so tensors decode in parallel
threads. The cost is that two struct layouts are mirrored in Python; they are
in wcodec._lib alone. docs/PYTHON.md has the details.

The library is found through WCODEC_LIBRARY (a path, used by the tests in the
build tree), else the directory `meson install` put it in, else the dynamic
loader's search path.

Only wcodec._lib needs nothing but the standard library; the PyTorch parts
import torch when first used, and WCodecModel.from_pretrained needs
transformers.
"""
from ._client import DaemonError, DaemonUnavailable
from ._lib import File, TensorInfo, WCodecError

__all__ = ['File', 'TensorInfo', 'WCodecError', 'DaemonError', 'DaemonUnavailable',
           'daemon_stats', 'load_wcodec_checkpoint', 'safe_open', 'WCodecModel', 'Int8Linear']


def daemon_stats(socket=None):
    """wcodecd's counters (a dict: leased_tensors, leases, cached_bytes, ...),
    over a connection of its own; socket None: $WCODECD_SOCKET, else
    /run/wcodecd/wcodecd.sock. DaemonUnavailable when nothing answers."""
    from ._client import Connection
    return Connection(socket).stats()


def __getattr__(name):
    # torch is imported on first use, so that `import wcodec` works without it
    if name == 'load_wcodec_checkpoint':
        from . import torch_io
        return torch_io.load_wcodec_checkpoint
    if name == 'safe_open':
        from ._safe_open import safe_open
        return safe_open
    if name in ('WCodecModel', 'Int8Linear'):
        from . import hf
        return getattr(hf, name)
    raise AttributeError(f'module wcodec has no attribute {name!r}')
