#!/usr/bin/python3
"""Writes the seed corpus of the rANS decoder fuzzer (tests/fuzz/fuzz_rans.c; its comment gives
the input layout): valid streams of weight-like symbols at several precisions, widths and table
counts, a damaged one, and a raw stream.

usage: make-corpus-rans.py OUT_DIR
"""
import os
import random
import sys

out = sys.argv[1]
rng = random.Random(18)


def weights(n, spread):
    """INT8-like symbols: a two-sided geometric around 0, as bytes."""
    return bytes(int(rng.expovariate(1 / spread) * rng.choice((-1, 1))) & 255 for _ in range(n))


# (name, bits index, w, mode, at, mask, payload)
SEEDS = [
    ('valid-13b-w64', 5, 64, 0, 0, 0, weights(4096, 8)),
    ('valid-8b-w33-2t', 0, 33, 2, 0, 0, weights(3000, 3)),
    ('valid-14b-w300-4t', 6, 300, 6, 0, 0, weights(5000, 20)),
    ('valid-12b-w1-1sym', 4, 1, 0, 0, 0, bytes(100)),
    ('valid-10b-w7-3t', 2, 7, 4, 0, 0, weights(700, 1)),
    ('damaged-13b-w32', 5, 32, 8, 200, 0x10, weights(2048, 8)),
    ('raw-13b-w64', 5, 64, 1, 1024, 0, bytes(rng.randrange(256) for _ in range(1500))),
]
os.makedirs(out, exist_ok=True)
for name, bits, w, mode, at, mask, payload in SEEDS:
    head = bytes((bits, (w - 1) & 255, (w - 1) >> 8, mode, at & 255, at >> 8, mask, 0))
    with open(os.path.join(out, name), 'wb') as f:
        f.write(head + payload)
