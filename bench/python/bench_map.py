#!/usr/bin/env python3
"""The warm mapping alone: load_wcodec_checkpoint(FILE, device=DEVICE,
via="daemon") of a model already resident in wcodecd (one get of every
tensor, wrapped as torch tensors, INT8 kept: no copy), RUNS times in this
process after a first load (timed apart, with its phases); prints the median and the range, and the
median of its phases: connect and open (a new connection each load, as a
new process has), the get (the request, the reply, the arenas imported),
and wrapping the answer as torch tensors. torch and wcodec are imported,
and the process's CUDA context made, before the clock.

usage: WCODEC_LIBRARY=... WCODEC_CLIENT_LIBRARY=... PYTHONPATH=python \\
       bench_map.py FILE SOCKET [RUNS] [DEVICE]"""
import os
import sys
import time

if len(sys.argv) < 3 or sys.argv[1] in ('-h', '--help'):
    print(__doc__)
    sys.exit(0 if len(sys.argv) > 1 else 2)

import torch  # noqa: E402
import wcodec  # noqa: E402
from wcodec import _client, _daemon  # noqa: E402

# the phases, timed by wrapping the two calls that bound them
phase = {'open': 0.0, 'get': 0.0}


def timed(key, fn):
    def run(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            phase[key] += time.perf_counter() - t
    return run


_daemon.open_model = timed('open', _daemon.open_model)
_client.Connection.get = timed('get', _client.Connection.get)

path, sock = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
device = sys.argv[4] if len(sys.argv) > 4 else 'cuda'
if device.startswith('cuda'):
    torch.empty(1, device=device)
# the first load of this process: what a second serving process pays once
# (the client library loaded, each arena imported for the first time)
# BENCH_MAP_PROFILE=FILE: the first load runs under cProfile (its stats to FILE; its time then
# includes the profiler's)
prof = None
if os.environ.get('BENCH_MAP_PROFILE'):
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
t0 = time.perf_counter()
sd = wcodec.load_wcodec_checkpoint(path, device=device, via='daemon', socket=sock)
first = time.perf_counter() - t0
if prof:
    prof.disable()
    with open(os.environ['BENCH_MAP_PROFILE'], 'w') as f:
        pstats.Stats(prof, stream=f).sort_stats('tottime').print_stats(30)
print(f'map first load of this process: total_ms={first * 1e3:.2f} open_ms={phase["open"] * 1e3:.2f} '
      f'get_ms={phase["get"] * 1e3:.2f} wrap_ms={(first - phase["open"] - phase["get"]) * 1e3:.2f}')
n = len(sd)
on_dev = sum(t.device.type == torch.device(device).type for t in sd.values())
del sd
ts, opens, gets = [], [], []
for _ in range(runs):
    phase.update(open=0.0, get=0.0)
    t0 = time.perf_counter()
    sd = wcodec.load_wcodec_checkpoint(path, device=device, via='daemon', socket=sock)
    ts.append(time.perf_counter() - t0)
    opens.append(phase['open'])
    gets.append(phase['get'])
    del sd
wraps = sorted(t - o - g for t, o, g in zip(ts, opens, gets))
ts.sort()
opens.sort()
gets.sort()
print(f'map file={path} tensors={n} on_{device.split(":")[0]}={on_dev} runs={runs} '
      f'median_ms={ts[runs // 2] * 1e3:.2f} min_ms={ts[0] * 1e3:.2f} max_ms={ts[-1] * 1e3:.2f}')
print(f'map phases (medians): open_ms={opens[runs // 2] * 1e3:.2f} get_ms={gets[runs // 2] * 1e3:.2f} '
      f'wrap_ms={wraps[runs // 2] * 1e3:.2f}')
