"""WCodecModel.from_pretrained: a transformers model from a .wcodec file
encoded from a Hugging Face folder (`wcodec encode DIR`).

The model is built from the config stored in the file's metadata with its
parameters on the meta device (no memory, no random init), then each
parameter is set to the decoded tensor, already on the target device. INT8
linear weights either stay INT8 in an Int8Linear (keep_int8=True) or are
dequantized to torch_dtype.
"""
import contextlib
import json
import logging
import os
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

from . import _lib
from .torch_io import _DEQUANT, load_wcodec_checkpoint

log = logging.getLogger('wcodec')


def _transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError('wcodec.WCodecModel.from_pretrained needs the Python package '
                          '"transformers", which is not installed (load_wcodec_checkpoint and '
                          'safe_open work without it)') from e
    return transformers


class Int8Linear(nn.Module):
    """A weight-only INT8 linear layer: `weight` int8 [out, in] and
    `weight_scale` float32 [out] (buffers), `bias` as the layer had it.
    forward dequantizes the weight to the input's dtype by the rule of
    wc_decode_tensor_dequant, (q.float() * scale[:, None]).to(x.dtype), so
    its outputs equal those of the dequantized model's nn.Linear."""

    def __init__(self, weight, weight_scale, bias=None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer('weight', weight)
        self.register_buffer('weight_scale', weight_scale)
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def forward(self, x):
        w = (self.weight.to(torch.float32) * self.weight_scale[:, None]).to(x.dtype)
        return F.linear(x, w, self.bias)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}, int8'


@contextlib.contextmanager
def _params_on_meta():
    """Parameters created inside go to the meta device as they are
    registered (their initialisation then costs nothing); buffers stay real,
    because models compute some (rotary frequencies) in __init__ and do not
    store them in checkpoints."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = type(p)(p.to('meta'), requires_grad=p.requires_grad)
    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


@contextlib.contextmanager
def _default_dtype(dtype):
    """torch's default dtype set to the model's while it is built, as
    transformers' from_pretrained does (buffers made with the default dtype
    get it); left alone where this torch refuses it (1.13: bf16/f16)."""
    old = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
    except (TypeError, RuntimeError) as e:
        log.debug('default dtype %s refused (%s): buffers keep %s', dtype, e, old)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _one_device(device_map):
    """The one device a device_map names; several devices are not supported."""
    if device_map is None:
        return torch.device('cpu')
    if device_map == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if len(devices) != 1:
            raise NotImplementedError('device_map: one device for the whole model only, not '
                                      f'{sorted(map(str, devices))}')
        device_map = devices.pop()
    if isinstance(device_map, int):
        return torch.device('cuda', device_map)
    return torch.device(device_map)


def _resolve_dtype(torch_dtype, config):
    if torch_dtype in (None, 'auto'):
        stored = getattr(config, 'torch_dtype', None) or getattr(config, 'dtype', None)
        if isinstance(stored, str):
            stored = getattr(torch, stored, None)
        torch_dtype = stored if stored in _DEQUANT else torch.float32
    if torch_dtype not in _DEQUANT:
        raise ValueError(f'torch_dtype must be torch.bfloat16, float16 or float32, not {torch_dtype!r}')
    return torch_dtype


def _owner(model, name):
    mod, _, attr = name.rpartition('.')
    return (model.get_submodule(mod) if mod else model), attr


def _dequant(q, s, dtype):
    return (q.reshape(q.shape[0], -1).to(torch.float32) * s[:, None]).to(dtype).reshape(q.shape)


def _state_for(model, sd, dtype, keep_int8):
    """(name, module, attr, value) to set; INT8 pairs become Int8Linear where
    their module is an nn.Linear (keep_int8), else float weights of dtype."""
    out = []
    for name, t in sd.items():
        if name.endswith('_scale') and name[:-6] in sd:
            continue
        scale = sd.get(name + '_scale')
        try:
            mod, attr = _owner(model, name)
        except AttributeError:
            log.warning('%s: not in the model, ignored', name)
            continue
        if scale is not None and keep_int8 and attr == 'weight' and type(mod) is nn.Linear:
            out.append((name, mod, None, scale))
            continue
        if scale is not None:
            t = _dequant(t, scale, dtype)
        elif t.dtype.is_floating_point and t.dtype != dtype:
            t = t.to(dtype)  # raw float tensors: the rule of the decoder, in torch
        out.append((name, mod, attr, t))
    return out


def load_into(model, path, device='cpu', torch_dtype=torch.float32, keep_int8=False, via='auto',
              socket=None):
    """Fills `model` (parameters on the meta device or anywhere) from the
    .wcodec at path, on `device`; returns the names left unset (on meta).
    The part of from_pretrained that needs no transformers."""
    # INT8 for keep_int8 (the Linear weights stay INT8, the rest is dequantized
    # here by the same rule); otherwise dequantized by the decoder
    sd = load_wcodec_checkpoint(path, device=device, dtype=None if keep_int8 else torch_dtype,
                                via=via, socket=socket)
    for name, mod, attr, t in _state_for(model, sd, torch_dtype, keep_int8):
        if attr is None:  # INT8 linear
            prefix = name.rpartition('.')[0]
            parent, child = _owner(model, prefix)
            bias = sd.get(prefix + '.bias') if mod.bias is not None else None
            if mod.bias is not None and bias is None:
                raise ValueError(f'{path}: no tensor for {prefix}.bias')
            setattr(parent, child, Int8Linear(sd[name], t, None if bias is None else
                                              bias.to(torch_dtype)))
        elif attr in mod._parameters:
            mod._parameters[attr] = nn.Parameter(t, requires_grad=False)
        elif attr in mod._buffers:
            mod._buffers[attr] = t
        else:
            log.warning('%s: not a parameter or buffer of the model, ignored', name)
    return [n for n, p in model.named_parameters() if p.device.type == 'meta']


class WCodecModel:
    """from_pretrained(path, device_map=None, torch_dtype=None, keep_int8=False, via="auto",
    socket=None): the transformers model of a .wcodec encoded from a Hugging
    Face folder.

    device_map: one device ("cpu", "cuda", "cuda:1", an int, {"": device},
    or "auto": cuda where there is one); a model spread over devices is not
    supported. torch_dtype: torch.bfloat16/float16/float32; None or "auto":
    the config's torch_dtype, else float32. keep_int8=True keeps every INT8
    nn.Linear weight as an Int8Linear (weight int8, weight_scale float32)
    whose forward dequantizes on the fly; otherwise weights are dequantized
    (q * scale rounded to nearest even). Embeddings and norms are always
    torch_dtype. via/socket: as load_wcodec_checkpoint's ("daemon": the
    weights mapped from wcodecd; with keep_int8 on a daemon serving the
    device, the INT8 weights stay the daemon's memory, leased while the model
    lives). Without transformers: ImportError naming it."""

    @classmethod
    def from_pretrained(cls, path, device_map=None, torch_dtype=None, keep_int8=False, via='auto',
                        socket=None, **kwargs):
        transformers = _transformers()
        if kwargs.get('dtype') is not None and torch_dtype is None:
            torch_dtype = kwargs.pop('dtype')  # transformers 5 spells it dtype
        if kwargs:
            raise TypeError(f'from_pretrained: unsupported arguments {sorted(kwargs)}')
        with _lib.File(path) as f:
            meta = f.metadata() or {}
        if 'config.json' not in meta:
            raise ValueError(f'{path}: no config.json in its metadata: encode the Hugging Face '
                             'folder with `wcodec encode DIR`')
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, 'config.json'), 'w') as fh:
                fh.write(meta['config.json'])
            config = transformers.AutoConfig.from_pretrained(tmp)
        dtype = _resolve_dtype(torch_dtype, config)
        device = _one_device(device_map)
        arch = (getattr(config, 'architectures', None) or [None])[0]
        model_cls = getattr(transformers, arch, None) if arch else None
        # transformers' own from-config path (it sets the default dtype and the
        # attention implementation as from_pretrained does); 5.x spells it dtype
        kw = {'dtype' if int(transformers.__version__.split('.')[0]) >= 5 else 'torch_dtype': dtype}
        with _params_on_meta(), _default_dtype(dtype):
            if model_cls is None:
                model = transformers.AutoModelForCausalLM.from_config(config, **kw)
            else:
                model = model_cls._from_config(config, **kw)
        missing = load_into(model, path, device, dtype, keep_int8, via, socket)
        if missing and getattr(config, 'tie_word_embeddings', False):
            model.tie_weights()
            missing = [n for n, p in model.named_parameters() if p.device.type == 'meta']
        if missing:
            raise ValueError(f'{path}: no tensor for {len(missing)} parameters of {type(model).__name__}: '
                             + ', '.join(missing[:8]))
        model.to(device)  # the buffers computed at construction; parameters are there already
        if 'generation_config.json' in meta:
            model.generation_config = transformers.GenerationConfig.from_dict(
                json.loads(meta['generation_config.json']))
        return model.eval()
