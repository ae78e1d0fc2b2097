#!/usr/bin/env python3
"""Times safetensors.torch.load_file(path, device="cuda") (page cache warm:
one untimed load first), median of RUNS, and prints one key=value line."""
import sys
import time

import torch
from safetensors.torch import load_file

path = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
torch.cuda.init()
torch.empty(1, device="cuda")
ts = []
for k in range(runs + 1):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    d = load_file(path, device="cuda")
    torch.cuda.synchronize()
    t = time.perf_counter() - t0
    nbytes = sum(v.numel() * v.element_size() for v in d.values())
    del d
    torch.cuda.empty_cache()
    if k:
        ts.append(t)
ts.sort()
print("safetensors file=%s bytes=%d runs=%d load_s=%.4f GBps=%.1f torch=%s" %
      (path, nbytes, runs, ts[len(ts) // 2], nbytes / ts[len(ts) // 2] / 1e9, torch.__version__))
