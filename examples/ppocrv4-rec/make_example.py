#!/usr/bin/python3
"""Makes examples/ppocrv4-rec/model.safetensors from shared/weights/ppocrv4_onnx_fp32.safetensors.

Keeps the recognizer's tensors (prefix "rec.", dropped from the names) and transposes the
MatMul weights (ONNX/Paddle store them [in, out]) to [out, in], one row per output channel,
as PyTorch's nn.Linear stores them: per-row INT8 scales are then per output channel.
Deterministic: the same input gives the same bytes.

usage: make_example.py SRC.safetensors OUT.safetensors
"""
import json
import struct
import sys

import numpy as np

DT = {'F32': np.float32, 'F16': np.float16, 'I8': np.int8, 'I16': np.int16, 'I32': np.int32,
      'I64': np.int64, 'U8': np.uint8}


def load(path):
    with open(path, 'rb') as f:
        n, = struct.unpack('<Q', f.read(8))
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        b, e = v['data_offsets']
        out[k] = np.frombuffer(data[b:e], DT[v['dtype']]).reshape(v['shape'])
    return out


def save(path, tensors):
    inv = {np.dtype(v): k for k, v in DT.items()}
    hdr, blobs, off = {}, [], 0
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        hdr[k] = {'dtype': inv[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(',', ':')).encode()
    h += b' ' * (-len(h) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h)
        for b in blobs:
            f.write(b)


def main():
    src, dst = sys.argv[1:3]
    t = load(src)
    out = {}
    for k in sorted(k for k in t if k.startswith('rec.')):
        a = t[k]
        if '.linear_' in k and k.endswith('.w_0'):
            a = a.T
        out[k[len('rec.'):]] = np.ascontiguousarray(a)
    save(dst, out)


if __name__ == '__main__':
    main()
