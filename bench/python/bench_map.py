#!/usr/bin/env python3
"""The warm mapping alone: load_wcodec_checkpoint(FILE, device=DEVICE,
via="daemon") of a model already resident in wcodecd (one get of every
tensor, wrapped as torch tensors, INT8 kept: no copy), RUNS times in this
process after one untimed load; prints the median and the range. torch and
wcodec are imported, and the process's CUDA context made, before the clock.

usage: WCODEC_LIBRARY=... WCODEC_CLIENT_LIBRARY=... PYTHONPATH=python \\
       bench_map.py FILE SOCKET [RUNS] [DEVICE]"""
import sys
import time

if len(sys.argv) < 3 or sys.argv[1] in ('-h', '--help'):
    print(__doc__)
    sys.exit(0 if len(sys.argv) > 1 else 2)

import torch  # noqa: E402
import wcodec  # noqa: E402

path, sock = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
device = sys.argv[4] if len(sys.argv) > 4 else 'cuda'
if device.startswith('cuda'):
    torch.empty(1, device=device)
sd = wcodec.load_wcodec_checkpoint(path, device=device, via='daemon', socket=sock)
n = len(sd)
on_dev = sum(t.device.type == torch.device(device).type for t in sd.values())
del sd
ts = []
for _ in range(runs):
    t0 = time.perf_counter()
    sd = wcodec.load_wcodec_checkpoint(path, device=device, via='daemon', socket=sock)
    ts.append(time.perf_counter() - t0)
    del sd
ts.sort()
print(f'map file={path} tensors={n} on_{device.split(":")[0]}={on_dev} runs={runs} '
      f'median_ms={ts[runs // 2] * 1e3:.2f} min_ms={ts[0] * 1e3:.2f} max_ms={ts[-1] * 1e3:.2f}')
