"""Helpers of the python suite: skipping, safetensors read/write with numpy
alone (an implementation independent of libwcodec's), the wcodec binary, and
a small synthetic model with every kind of tensor the codec stores."""
import json
import os
import struct
import subprocess
import sys

SKIP = 77


def skip(why):
    print(f'skipped: {why}')
    sys.exit(SKIP)


def need(module, why=''):
    """Imports `module`, or exits 77 naming it."""
    try:
        return __import__(module)
    except ImportError:
        skip(f'the Python package {module!r} is missing{why}')


np = need('numpy')
NP = {'F32': np.float32, 'F16': np.float16, 'I8': np.int8, 'I16': np.int16, 'I32': np.int32,
      'I64': np.int64, 'U8': np.uint8, 'F64': np.float64, 'BF16': np.uint16, 'BOOL': np.bool_,
      'U16': np.uint16, 'U32': np.uint32, 'U64': np.uint64}


def st_load(path):
    """{name: (dtype, array)} and the __metadata__ (or None) of a safetensors file."""
    with open(path, 'rb') as f:
        n, = struct.unpack('<Q', f.read(8))
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        b, e = v['data_offsets']
        out[k] = (v['dtype'], np.frombuffer(data[b:e], NP[v['dtype']]).reshape(v['shape']))
    return out, hdr.get('__metadata__')


def st_write(path, tensors, metadata=None):
    """tensors: {name: (dtype, array)} written in that order."""
    hdr, blobs, off = {}, [], 0
    if metadata is not None:
        hdr['__metadata__'] = metadata
    for k, (dt, a) in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        hdr[k] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def bf16(a):
    """float32 array -> BF16 bit patterns (uint16), truncating: test data only."""
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def synthetic(seed=1):
    """Tensors of every kind: coded F32/F16/BF16 matrices (one with an odd
    row count, one 4-D), an INT8 matrix with its scales, a matrix of zeros,
    and raw tensors (1-D, small, integer, bool, empty, 0-D)."""
    r = np.random.default_rng(seed)

    def w(*shape):
        return (r.standard_normal(shape) * 0.05).astype(np.float32)
    q8 = r.integers(-127, 128, (64, 96), dtype=np.int8)
    return {
        'model.embed_tokens.weight': ('BF16', bf16(w(257, 64))),
        'model.layers.0.self_attn.q_proj.weight': ('F32', w(64, 64)),
        'model.layers.0.mlp.up_proj.weight': ('F16', w(96, 64).astype(np.float16)),
        'model.layers.0.mlp.down_proj.weight': ('BF16', bf16(w(64, 96))),
        'conv.weight': ('F32', w(32, 8, 3, 3)),
        'pre.weight': ('I8', q8),
        'pre.weight_scale': ('F32', (r.random(64) * 0.01 + 0.001).astype(np.float32)),
        'zeros.weight': ('F32', np.zeros((64, 80), np.float32)),
        'model.norm.weight': ('BF16', bf16(1 + w(64))),
        'small.weight': ('F32', w(8, 8)),
        'ids': ('I64', np.arange(40, dtype=np.int64)),
        'mask': ('BOOL', r.random(10) > 0.5),
        'bytes': ('U8', r.integers(0, 256, 100, dtype=np.uint8)),
        'empty.bias': ('F32', np.zeros((0,), np.float32)),
        'empty.weight': ('BF16', np.zeros((0, 4), np.uint16)),
        'scalar': ('F32', np.array(3.5, np.float32)),
    }


def binary():
    b = os.environ.get('WCODEC_BIN')
    if not b:
        skip('WCODEC_BIN is not set (run through meson test)')
    return b


def wcodec(*args):
    """Runs the wcodec tool; returns the CompletedProcess (never raises)."""
    return subprocess.run([binary(), *args], capture_output=True, text=True)


def encode_decode(src, tmp, name=None):
    """wcodec encode + the CPU reference's decode: (.wcodec path, decoded
    safetensors path), named after src unless `name` is given."""
    name = name or os.path.basename(src).rsplit('.', 1)[0]
    enc, dec = os.path.join(tmp, name + '.wcodec'), os.path.join(tmp, name + '.dec.safetensors')
    for args in (('encode', '-q', '-f', src, '-o', enc), ('decode', '-q', '-f', enc, '-o', dec)):
        p = wcodec(*args)
        if p.returncode:
            raise AssertionError(f'wcodec {" ".join(args)}: {p.stderr}')
    return enc, dec


def torch_bytes(t):
    """The bytes of a CPU torch tensor (bf16 and bool included)."""
    import torch
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def expected_state_dict(ref, dtype):
    """What a loader must return for the reference decode `ref` ({name:
    (dtype, array)} of `wcodec decode`), computed with PyTorch alone:
    dtype None: ref itself; else (q.float() * s[:, None]).to(dtype) for each
    coded tensor (N with N_scale), .to(dtype) for raw float tensors."""
    import torch
    out = {}
    for name, (dt, a) in ref.items():
        if dt == 'BF16':
            t = torch.from_numpy(a.astype(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(a.copy())
        scaled = name + '_scale' in ref
        if name.endswith('_scale') and name[:-6] in ref and dtype is not None:
            continue
        if dtype is not None and scaled:
            s = torch.from_numpy(ref[name + '_scale'][1].copy())
            t = (t.reshape(t.shape[0], -1).float() * s[:, None]).to(dtype).reshape(t.shape)
        elif dtype is not None and dt in ('F32', 'F16', 'BF16'):
            t = t.to(dtype)
        out[name] = t
    return out


def compare_state_dict(sd, want, what):
    assert sorted(sd) == sorted(want), f'{what}: names differ: {sorted(set(sd) ^ set(want))}'
    for k, w in want.items():
        g = sd[k]
        assert g.dtype == w.dtype and tuple(g.shape) == tuple(w.shape), \
            f'{what}: {k}: {g.dtype} {tuple(g.shape)}, want {w.dtype} {tuple(w.shape)}'
        assert torch_bytes(g) == torch_bytes(w), f'{what}: {k}: values differ'


def hf_folder(path, tensors, n_shards=2, config=None, generation=True):
    """A Hugging Face model folder: config.json, generation_config.json,
    tokenizer.json and the tensors in n_shards shards with an index (one
    model.safetensors when n_shards is 1). Returns the config's text."""
    os.makedirs(path, exist_ok=True)
    cfg = json.dumps(config or {'model_type': 'llama', 'hidden_size': 64, 'torch_dtype': 'float32'},
                     indent=2)
    with open(os.path.join(path, 'config.json'), 'w') as f:
        f.write(cfg)
    if generation:
        with open(os.path.join(path, 'generation_config.json'), 'w') as f:
            f.write('{"bos_token_id": 1, "eos_token_id": 2}')
    with open(os.path.join(path, 'tokenizer.json'), 'w') as f:
        f.write('{}')
    names = list(tensors)
    if n_shards == 1:
        st_write(os.path.join(path, 'model.safetensors'), tensors, {'format': 'pt'})
        return cfg
    wmap = {}
    for s in range(n_shards):
        fn = f'model-{s + 1:05d}-of-{n_shards:05d}.safetensors'
        part = {k: tensors[k] for k in names[s::n_shards]}
        st_write(os.path.join(path, fn), part, {'format': 'pt'})
        wmap.update({k: fn for k in part})
    with open(os.path.join(path, 'model.safetensors.index.json'), 'w') as f:
        json.dump({'metadata': {'total_size': 0}, 'weight_map': wmap}, f)
    return cfg


def torch_qdq(w, dtype):
    """The quantization rule of design.md written with PyTorch alone, then
    dequantized: per row s = max|w| / 127 in float32 (1 where 0),
    q = clamp(round_half_even(w / s), +-127), w' = (q * s).to(dtype)."""
    import torch
    w2 = w.detach().reshape(w.shape[0], -1).to(torch.float32)
    s = w2.abs().amax(dim=1) / torch.tensor(127, dtype=torch.float32)
    s[s == 0] = 1
    q = torch.clamp(torch.round(w2 / s[:, None]), -127, 127)
    return (q * s[:, None]).to(dtype).reshape(w.shape)


def coded_by_encoder(t):
    """Whether `wcodec encode` (default options) quantizes a float tensor t."""
    import torch
    return t.dim() >= 2 and t.numel() >= 4096 and t.dtype in (torch.float32, torch.float16,
                                                               torch.bfloat16)
