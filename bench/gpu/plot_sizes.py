#!/usr/bin/python3
"""Plots decode time against tensor size from the `size` lines of `bench_gpu sizes`.

usage: plot_sizes.py SIZES.txt OUT.png [TITLE]
Two curves: one wc_gpu_decode_tensor call from the file (pread, copy, decode) and the
resident kernel alone, beside a device-to-device copy of the same bytes; log-log axes, so
that the fixed cost per call shows as the flat part on the left. Needs python3-matplotlib."""
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def parse(path):
    rows = []
    for line in open(path):
        if not line.startswith('size '):
            continue
        kv = dict(f.split('=', 1) for f in line.split()[1:])
        rows.append((int(kv['int8_bytes']), float(kv['call_ms']), float(kv['kernel_ms']), float(kv['d2d_ms'])))
    return sorted(rows)


def main():
    rows = parse(sys.argv[1])
    title = sys.argv[3] if len(sys.argv) > 3 else 'wcodec GPU decode time against tensor size'
    mb = [r[0] / 2**20 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(mb, [r[1] for r in rows], 'o-', label='one call from the file (pread + H2D + decode)')
    ax.loglog(mb, [r[2] for r in rows], 's-', label='kernel, compressed bytes already on the GPU')
    ax.loglog(mb, [r[3] for r in rows], '^--', label='device-to-device copy of the INT8 bytes')
    ax.set_xlabel('INT8 output (MiB)')
    ax.set_ylabel('time (ms)')
    ax.set_title(title, fontsize=10)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == '__main__':
    main()
