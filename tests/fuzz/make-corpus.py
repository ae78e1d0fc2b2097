#!/usr/bin/python3
"""Writes the seed corpus of the container fuzzer: small safetensors files and their .wcodec
encodings, covering coded and raw tensors, scales, several tiles down and across, a one-symbol
table, and F16/I8 inputs.

usage: make-corpus.py WCODEC_BINARY OUT_DIR
"""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'examples', 'ppocrv4-rec'))
from make_example import save  # noqa: E402

rng = np.random.default_rng(7)
ROWS = rng.standard_normal((24, 64)).astype(np.float32)
ROWS[::3] *= 0.01  # rows of another spread: a second table pays
MODELS = {
    'tables': {'t.weight': ROWS},
    'mixed': {'a.weight': rng.standard_normal((8, 40)).astype(np.float32),
              'a.bias': rng.standard_normal(5).astype(np.float32),
              'q.weight': rng.integers(-127, 128, (6, 50)).astype(np.int8),
              'q.weight_scale': rng.random(6).astype(np.float32)},
    'half3d': {'conv.weight': rng.standard_normal((3, 7, 5)).astype(np.float16)},
    'constant': {'c.weight': np.full((9, 9), 0.25, np.float32)},
    'wide': {'w.weight': rng.standard_normal((2, 300)).astype(np.float32),
             'ids': np.arange(12, dtype=np.int64).reshape(3, 4)},
}


def main():
    wcodec, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    for name, tensors in MODELS.items():
        st = os.path.join(out, name + '.safetensors')
        save(st, tensors)
        for tile in (32, 100):
            wc = os.path.join(out, f'{name}-t{tile}.wcodec')
            subprocess.run([wcodec, 'encode', '-q', '-f', '--min-weights', '16', '--tile-weights',
                            str(tile), st, '-o', wc], check=True)
    # every prediction and transform, several tables and a top distance
    st = os.path.join(out, 'mixed.safetensors')
    for pred, tx in (('left', 'haar'), ('top', 'wht4'), ('avg', 'none'), ('planar', 'haar')):
        wc = os.path.join(out, f'mixed-{pred}-{tx}.wcodec')
        subprocess.run([wcodec, 'encode', '-q', '-f', '--min-weights', '16', '--tile-weights', '64',
                        '--pred', pred, '--tx', tx, '--top-distance', '3', st, '-o', wc], check=True)


if __name__ == '__main__':
    main()
