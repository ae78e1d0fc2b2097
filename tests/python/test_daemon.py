#!/usr/bin/python3
"""The daemon path (via="daemon"/"auto") through a wcodecd of the build tree
(its CPU backend, memfd tensors), against the CPU reference decode (`wcodec
decode`, read back with numpy) byte for byte:
- load_wcodec_checkpoint INT8 (mapped, no copy) and bf16 (equal to the
  in-process bf16 path, and to the reference's q x s computed with PyTorch);
- freeing the state_dict ends its leases and closes its connection (the
  daemon's stats, read with wcodecctl, a separate client);
- safe_open(via="daemon"): one get per get_tensor;
- a daemon that is down, a path outside its roots, a corrupt file: Python
  exceptions naming the socket, the path, the tensor; via="auto" decodes
  in-process where no daemon answers.

usage: test_daemon.py [MODEL.safetensors]   (WCODECD, WCODECCTL: the binaries)"""
import gc
import json
import os
import socket as pysocket
import subprocess
import sys
import tempfile
import time
import warnings

import wct

np = wct.np
torch = wct.need('torch')


def binary(var):
    b = os.environ.get(var)
    if not b or not os.path.exists(b):
        wct.skip(f'{var} is not set or absent (run through meson test in a build with the daemon)')
    return b


class Daemon:
    """A wcodecd on a socket in `tmp`, serving `roots`, from a config file;
    ready when its socket accepts a connection."""

    def __init__(self, tmp, roots):
        self.sock = os.path.join(tmp, 'd.sock')
        self.conf = os.path.join(tmp, 'd.conf')
        self.log = os.path.join(tmp, 'd.log')
        with open(self.conf, 'w') as f:
            f.write(f'[daemon]\nsocket = {self.sock}\nthreads = 2\n[security]\nroots = {roots}\n')
        self.p = subprocess.Popen([binary('WCODECD'), '--config', self.conf],
                                  stderr=open(self.log, 'w'))
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if self.p.poll() is not None:
                raise AssertionError(f'wcodecd exited {self.p.returncode}: {open(self.log).read()}')
            try:
                with pysocket.socket(pysocket.AF_UNIX) as s:
                    s.connect(self.sock)
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise AssertionError(f'wcodecd did not listen on {self.sock}: {open(self.log).read()}')

    def stats(self):
        """The daemon's counters through wcodecctl (not the binding under test)."""
        p = subprocess.run([binary('WCODECCTL'), '--socket', self.sock, '--json', 'stats'],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.splitlines()[0])

    def stop(self):
        """SIGTERM; the exit status (0 expected; negative: killed by that signal)."""
        if self.p.poll() is None:
            self.p.terminate()
        return self.p.wait(20)


def raises(exc, fn, *words):
    try:
        fn()
    except exc as e:
        for w in words:
            assert w in str(e), (w, str(e))
        return e
    raise AssertionError(f'no {exc.__name__}')


def mapping_of(addr):
    """The /proc/self/maps line of the mapping holding addr."""
    with open('/proc/self/maps') as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
            if lo <= addr < hi:
                return line.strip()
    return ''


def leased(d):
    s = d.stats()
    return s['leased_tensors'], s['connections']


def check_load(d, enc, ref, local_bf16):
    import wcodec
    load = wcodec.load_wcodec_checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # mapping must not warn (read-only buffers on torch 1.13)
        sd = load(enc, via='daemon', socket=d.sock)
    wct.compare_state_dict(sd, wct.expected_state_dict(ref, None), 'daemon INT8')
    n_tensors = sum(1 for k in ref if not (k.endswith('_scale') and k[:-6] in ref))
    held, conns = leased(d)
    # every tensor of the file leased (the metadata record, when there, too), on our connection
    assert held >= n_tensors and conns == 2, (held, n_tensors, conns)
    # the binding's own stats agree with wcodecctl's (its struct mirror is right)
    mine = wcodec.daemon_stats(d.sock)
    assert (mine['leased_tensors'], mine['connections']) == (held, 2), mine
    # zero copy: every non-empty tensor lies in a read-only memfd mapping
    for k, v in sd.items():
        if v.numel():
            m = mapping_of(v.data_ptr())
            assert 'memfd:' in m and m.split()[1].startswith('r-'), (k, m)
    # a forked child that frees its copy must not end the parent's leases
    pid = os.fork()
    if pid == 0:
        sd.clear()
        del v  # the last reference to the Lease in this process: its finalizer runs here
        gc.collect()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert leased(d) == (held, 2), f'a forked child freeing the tensors: {leased(d)}'
    k = next(k for k, v in sd.items() if v.numel() >= 4096)
    keep = sd[k]
    del sd, v
    gc.collect()
    assert leased(d) == (held, 2), 'leases must outlive the dict while a tensor lives'
    want = wct.torch_bytes(wct.expected_state_dict(ref, None)[k])
    assert wct.torch_bytes(keep) == want, 'a kept tensor still reads its values'
    del keep
    assert leased(d) == (0, 1), f'the last tensor freed: leases and connection gone, {leased(d)}'
    print(f'daemon INT8: {n_tensors} tensors equal to the reference decode, mapped; '
          f'{held} leases ended and the connection closed when the last tensor was freed')

    bf = load(enc, via='daemon', socket=d.sock, dtype=torch.bfloat16)
    wct.compare_state_dict(bf, local_bf16, 'daemon bf16 vs in-process bf16')
    wct.compare_state_dict(bf, wct.expected_state_dict(ref, torch.bfloat16), 'daemon bf16 vs reference')
    assert leased(d) == (0, 1), f'dequantized: the INT8 leases end before the return, {leased(d)}'
    print('daemon bf16: equal to the in-process bf16 path and to q x s of the reference; '
          'no lease left')


def check_safe_open(d, enc, ref):
    import wcodec
    names = [k for k in ref if k + '_scale' in ref][:2] + [k for k in ref if k + '_scale' not in ref
                                                            and not k.endswith('_scale')][:1]
    with wcodec.safe_open(enc, framework='pt', via='daemon', socket=d.sock) as f:
        assert f._daemon is not None
        got = {}
        s0 = d.stats()['requests']
        own = d.stats()['requests'] - s0  # what one wcodecctl stats adds
        for n in names:
            before = d.stats()['requests']
            got[n] = f.get_tensor(n)
            if n + '_scale' in ref:
                got[n + '_scale'] = f.get_tensor(n + '_scale')  # came with the tensor
            gets = d.stats()['requests'] - before - own
            assert gets == 1, f'{n}: {gets} requests for one get_tensor (and its scales)'
        if names:
            sl = f.get_slice(names[0])[1:3]
            assert wct.torch_bytes(sl) == wct.torch_bytes(got[names[0]][1:3])
    want = wct.expected_state_dict(ref, None)
    wct.compare_state_dict(got, {k: want[k] for k in got}, 'safe_open via daemon')
    assert leased(d)[0] > 0
    del got, sl
    gc.collect()
    assert leased(d) == (0, 1), f'safe_open closed and its tensors freed: {leased(d)}'
    print(f'safe_open via daemon: {len(names)} tensors, one get each, equal to the reference')


def check_errors(d, tmp, enc, outside):
    import wcodec
    load = wcodec.load_wcodec_checkpoint
    down = os.path.join(tmp, 'nobody.sock')
    e = raises(wcodec.DaemonUnavailable, lambda: load(enc, via='daemon', socket=down), down,
               'wcodecd')
    assert isinstance(e, ConnectionError) and e.name == 'EDISCONNECTED', e
    raises(wcodec.DaemonUnavailable, lambda: wcodec.safe_open(enc, via='daemon', socket=down), down)
    e = raises(wcodec.DaemonError, lambda: load(outside, via='daemon', socket=d.sock))
    assert e.name == 'EDENIED', e
    raises(FileNotFoundError, lambda: load(os.path.join(tmp, 'absent.wcodec'), via='daemon',
                                           socket=d.sock))
    # a corrupt record: the daemon's decode refuses it, naming the tensor
    data = bytearray(open(enc, 'rb').read())
    with wcodec.File(enc) as f:
        t = next(t for t in f.tensors() if t.coded)
    data[t.file_offset + 100] ^= 1
    bad = os.path.join(os.path.dirname(enc), 'bad.wcodec')
    with open(bad, 'wb') as f:
        f.write(data)
    e = raises(wcodec.WCodecError, lambda: load(bad, via='daemon', socket=d.sock), t.name)
    assert e.name == 'ECHECKSUM', e
    assert leased(d) == (0, 1), f'failed gets leave nothing leased: {leased(d)}'
    # several gets on one connection (ranks sharing KV heads): the second fails, the first's
    # tensors and leases go with the exception, and the connection closes
    from wcodec import _daemon
    with wcodec.File(enc) as f:
        names = [t.name for t in f.tensors()]
    parts = [(names[:2], None), (['no.such.tensor'], None)]
    raises(wcodec.DaemonError, lambda: _daemon.load(enc, torch.device('cpu'), None, d.sock, True, parts=parts),
           'no.such.tensor')
    assert leased(d) == (0, 1), f'a failed second get leaves nothing leased or connected: {leased(d)}'
    print('daemon down (names the socket), path outside the roots (EDENIED), missing file, '
          'corrupt record (ECHECKSUM naming the tensor), a failed second get of one load: Python exceptions')


def check_auto(d, tmp, enc, outside, ref):
    import wcodec
    load = wcodec.load_wcodec_checkpoint
    want = wct.expected_state_dict(ref, None)
    # nothing on the socket: in-process
    sd = load(enc, via='auto', socket=os.path.join(tmp, 'nobody.sock'))
    wct.compare_state_dict(sd, want, 'auto without a daemon')
    # a daemon that refuses the path: in-process too
    sd = load(outside, via='auto', socket=d.sock)
    assert leased(d) == (0, 1), 'nothing leased: decoded in-process'
    wct.compare_state_dict(sd, want, 'auto outside the roots')
    # a daemon that serves it: mapped (leases taken)
    sd = load(enc, via='auto', socket=d.sock)
    assert leased(d)[0] > 0, 'auto with a daemon answering goes through it'
    wct.compare_state_dict(sd, want, 'auto through the daemon')
    del sd
    gc.collect()
    assert leased(d) == (0, 1)
    # no libwcodec-client: "daemon" says so, "auto" decodes in-process
    from wcodec import _client
    saved_env, saved_state = os.environ.get('WCODEC_CLIENT_LIBRARY'), dict(_client._state)
    os.environ['WCODEC_CLIENT_LIBRARY'] = os.path.join(tmp, 'absent', 'libwcodec-client.so.1')
    _client._state.update(lib=None, error=None)
    try:
        raises(wcodec.DaemonUnavailable, lambda: load(enc, via='daemon', socket=d.sock),
               'libwcodec-client', 'absent')
        wct.compare_state_dict(load(enc, via='auto', socket=d.sock), want, 'auto without the client')
    finally:
        os.environ.pop('WCODEC_CLIENT_LIBRARY')
        if saved_env is not None:
            os.environ['WCODEC_CLIENT_LIBRARY'] = saved_env
        _client._state.update(saved_state)
    assert leased(d) == (0, 1)
    print('via="auto": in-process without a daemon, outside its roots and without libwcodec-client; '
          'the daemon where it answers')


def check_from_pretrained(d, tmp, roots):
    """WCodecModel.from_pretrained(via="daemon") through test_hf's stand-in
    transformers: outputs equal to via="local"'s; with keep_int8 the INT8
    weights stay leased while the model lives."""
    import importlib.util
    if importlib.util.find_spec('transformers') is not None:
        print('transformers is installed: from_pretrained through the daemon is the GPU bench\'s')
        return
    import test_hf
    import wcodec
    fake = os.path.join(tmp, 'fake')
    os.makedirs(fake)
    with open(os.path.join(fake, 'transformers.py'), 'w') as f:
        f.write(test_hf.FAKE_TRANSFORMERS)
    sys.path.insert(0, fake)
    try:
        import transformers
        cfg = {'architectures': ['TinyLM'], 'hidden_size': 64, 'vocab_size': 320,
               'tie_word_embeddings': True, 'torch_dtype': 'bfloat16'}
        torch.manual_seed(3)
        src = transformers.TinyLM(transformers.Config(cfg))
        folder = os.path.join(tmp, 'tiny-hf')
        wct.hf_folder(folder, {k: ('F32', v.detach().numpy()) for k, v in src.state_dict().items()
                               if k != 'head.weight'}, 2, cfg)
        enc = os.path.join(roots, 'tiny-hf.wcodec')
        p = wct.wcodec('encode', '-q', folder, '-o', enc)
        assert p.returncode == 0, p.stderr
        ids = torch.randint(0, 320, (2, 9))
        for keep in (False, True):
            want = wcodec.WCodecModel.from_pretrained(enc, keep_int8=keep, via='local')(ids)
            m = wcodec.WCodecModel.from_pretrained(enc, keep_int8=keep, via='daemon', socket=d.sock)
            assert (type(m.up) is wcodec.Int8Linear) == keep
            assert torch.equal(m(ids), want), f'keep_int8={keep}: outputs differ from via="local"'
            assert (leased(d)[0] > 0) == keep, f'keep_int8={keep}: {leased(d)} leased'
            del m
            gc.collect()
            assert leased(d) == (0, 1), f'model freed: {leased(d)}'
        print('from_pretrained via daemon (stand-in transformers): outputs equal to the in-process '
              'load; INT8 kept: leased while the model lives, released after')
    finally:
        sys.path.remove(fake)
        sys.modules.pop('transformers', None)


def check_views():
    """_DeviceBases (the views a warm get's device tensors are made from)
    over a host buffer: each tensor is the bytes at its address, as numpy
    reads them, and shares the buffer; a misaligned or uncovered address,
    another device, or a size its shape does not give makes the whole get
    None (its tensors are then wrapped one by one)."""
    from types import SimpleNamespace
    from wcodec import _daemon
    from wcodec.torch_io import TORCH_DTYPES
    buf = np.random.default_rng(5).integers(0, 256, 4 << 20, dtype=np.uint8)
    addr = buf.ctypes.data

    def host_base(lease, ptr, nbytes, dev):
        return torch.from_numpy(buf[ptr - addr:ptr - addr + nbytes])

    def view(name, dtype, shape, off, size, soff=0, n_scales=0, device=0):
        return SimpleNamespace(name=name, out_dtype=dtype, shape=shape, on_cuda=True, device=device,
                               data=addr + off, size=size, scales=addr + soff, n_scales=n_scales)
    # two runs: 0 to 1 MiB + 8 KiB (ranges 256 bytes and more apart), and 3 MiB + 4 KiB on, past _GAP
    views = [view('a.weight', 'I8', (16, 256), 0, 4096, 4096 + 256, 16),
             view('b', 'I16', (512, 1024), 8192, 2 << 19),
             view('c', 'F32', (250,), (3 << 20) + 4096, 1000)]
    b = _daemon._DeviceBases(None, views, base=host_base)
    assert [len(r) for r in b.runs.values()] == [2], b.runs
    # and, within those runs, other element types and shapes: three dimensions, a scalar
    views += [view('d', 'I16', (2, 3, 4), 8192, 48), view('e', 'F64', (), 8192 + 64, 8)]
    items = b.state_items(views, 0, TORCH_DTYPES)
    want = [('a.weight', 0, (16, 256), torch.int8, np.int8),
            ('a.weight_scale', 4096 + 256, (16,), torch.float32, np.float32),
            ('b', 8192, (512, 1024), torch.int16, np.int16),
            ('c', (3 << 20) + 4096, (250,), torch.float32, np.float32),
            ('d', 8192, (2, 3, 4), torch.int16, np.int16), ('e', 8192 + 64, (), torch.float64, np.float64)]
    assert [k for k, _ in items] == [w[0] for w in want], items
    for (name, t), (_, off, shape, dt, nt) in zip(items, want):
        n = int(np.prod(shape)) if shape else 1
        assert t.dtype == dt and tuple(t.shape) == shape, (name, t)
        assert t.data_ptr() == addr + off and t.is_contiguous(), (name, t.data_ptr() - addr)
        # bytes: random floats hold NaNs
        assert t.numpy().tobytes() == buf[off:off + n * np.dtype(nt).itemsize].tobytes(), name
    for bad, why in ((view('f', 'F32', (4,), 2, 16), 'not aligned to its element'),
                     (view('f', 'I8', (4,), 2 << 20, 4), 'between the runs'),
                     (view('f', 'I8', (4,), 0, 4, device=1), 'another device'),
                     (view('f', 'I16', (512, 1023), 8192, 2 << 19), 'not the bytes it maps')):
        assert b.state_items(views + [bad], 0, TORCH_DTYPES) is None, why
    print(f'device views: a get of {len(want)} tensors over 2 runs equal to the bytes at their addresses; '
          'misaligned, uncovered, other-device and mis-sized tensors refused')


def main():
    import wcodec
    check_views()
    with tempfile.TemporaryDirectory() as tmp:
        roots = os.path.join(tmp, 'models')
        os.makedirs(roots)
        syn = os.path.join(tmp, 'syn.safetensors')
        wct.st_write(syn, wct.synthetic())  # every dtype and shape the codec stores
        models = [syn] + [m for m in sys.argv[1:] if os.path.exists(m)]
        encoded = []
        for i, src in enumerate(models):
            enc, dec = wct.encode_decode(src, roots, f'model{i}')
            encoded.append((src, enc, wct.st_load(dec)[0]))
        enc, ref = encoded[0][1], encoded[0][2]
        outside = os.path.join(tmp, 'outside.wcodec')
        with open(enc, 'rb') as a, open(outside, 'wb') as b:
            b.write(a.read())
        d = Daemon(tmp, roots)
        ok = False
        try:
            for src, e, r in encoded:
                print(f'{os.path.basename(src)}:')
                check_load(d, e, r, wcodec.load_wcodec_checkpoint(e, via='local', dtype=torch.bfloat16))
            check_safe_open(d, enc, ref)
            check_errors(d, tmp, enc, outside)
            check_auto(d, tmp, enc, outside, ref)
            check_from_pretrained(d, tmp, roots)
            ok = True
        finally:
            rc = d.stop()
            if not ok or rc:
                print(f'wcodecd exit status {rc}; its log:\n' + open(d.log).read())
    assert rc == 0, f'wcodecd exited {rc}'

    return 0


if __name__ == '__main__':
    sys.exit(main())
