#!/usr/bin/python3
"""The INT8 rule of design.md written independently with numpy, checked byte for byte against
what `wcodec encode` + `wcodec decode` produce on real models.

usage: quant_numpy.py WCODEC_BINARY MODEL.safetensors [MODEL...]
Models that do not exist are skipped; exit 77 if none exists or numpy is missing.
Integer matrices (I16/I32) are quantized as float (encode --ints-as-float), as the Foundation
issue's acceptance reads the Stockfish int16 matrix.
"""
import os
import subprocess
import sys
import tempfile

# wct (beside this file, so on sys.path) exits 77 naming numpy where it is missing
import wct

np = wct.np

MIN_WEIGHTS = 4096  # the encoder's default


def as_f32(dtype, a):
    if dtype == 'BF16':
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def quantize(w):
    """per row: s = max|w| / 127 in float32 (1 where that is 0), q = clamp(rint(w / s), +-127)"""
    w = w.reshape(w.shape[0], -1)
    s = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    s[s == 0] = np.float32(1)
    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def check(wcodec, model, tmp):
    enc = os.path.join(tmp, 'm.wcodec')
    dec = os.path.join(tmp, 'm.safetensors')
    subprocess.run([wcodec, 'encode', '-q', '-f', '--ints-as-float', model, '-o', enc], check=True)
    subprocess.run([wcodec, 'decode', '-q', '-f', enc, '-o', dec], check=True)
    (src, _), (out, _) = wct.st_load(model), wct.st_load(dec)
    coded = raw = 0
    for name, (dt, a) in src.items():
        got_dt, got = out[name]
        if a.ndim >= 2 and a.size >= MIN_WEIGHTS and dt in ('F32', 'F16', 'BF16', 'I16', 'I32'):
            q, s = quantize(as_f32(dt, a))
            assert got_dt == 'I8', (name, got_dt)
            assert got.tobytes() == q.tobytes(), f'{model}: {name}: INT8 values differ from numpy'
            assert out[name + '_scale'][1].tobytes() == s.tobytes(), f'{model}: {name}: scales differ'
            coded += 1
        else:
            assert got_dt == dt and got.tobytes() == a.tobytes(), f'{model}: {name}: raw bytes differ'
            raw += 1
    print(f'{model}: {coded} tensors equal to numpy\'s quantizer byte for byte, {raw} raw tensors equal')


def main():
    wcodec, models = sys.argv[1], [m for m in sys.argv[2:] if os.path.exists(m)]
    for m in sys.argv[2:]:
        if not os.path.exists(m):
            print(f'{m}: absent, not checked (real weights: meson option weights_dir)')
    if not models:
        print('no model found: skipped')
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            check(wcodec, m, tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
