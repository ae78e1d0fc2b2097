#!/usr/bin/python3
"""wcodec._lib (ctypes over libwcodec) against the CPU reference decode:
every tensor's bytes and scales equal, byte for byte, what `wcodec decode`
writes (read back with numpy); and bad input gives Python exceptions.

usage: test_binding.py [MODEL.safetensors...] (WCODEC_BIN, WCODEC_LIBRARY from meson)"""
import os
import sys
import tempfile

import wct

np = wct.np


def check_equal(path, tmp):
    import wcodec
    enc, dec = wct.encode_decode(path, tmp)
    ref, _ = wct.st_load(dec)
    n = 0
    with wcodec.File(enc) as f:
        for t in f.tensors():
            data, scales = f.read_bytes(t)
            dt, want = ref[t.name]
            assert dt == t.out_dtype and list(want.shape) == list(t.shape), (t, dt, want.shape)
            assert data == want.tobytes(), f'{path}: {t.name}: bytes differ from the reference decode'
            if t.n_scales:
                assert scales == ref[t.name + '_scale'][1].tobytes(), f'{t.name}: scales differ'
            n += 1
        assert f.metadata() is None
    names = {t for t in ref if not (t.endswith('_scale') and t[:-6] in ref)}
    assert n == len(names), (n, len(names))
    print(f'{path}: {n} tensors equal to the reference decode byte for byte')
    check_gpu_binding(enc, dec)
    return enc


def check_gpu_binding(enc, dec):
    """wcodec._lib.Gpu (wc_gpu_create, wc_gpu_decode_file and the mirrored
    wc_gpu_dst) on the library's CPU fallback, which decodes into host
    memory: the same bytes as the reference decode. On a machine with a
    device the CUDA path is test_load.py --cuda's."""
    import ctypes
    import wcodec
    from wcodec import _lib
    if not _lib.HAVE_GPU:
        print('libwcodec has no GPU decoder: wc_gpu binding not checked')
        return
    g = _lib.Gpu(require_gpu=False)
    try:
        if g.on_cuda:
            print('a CUDA device is in use: the host-memory check of wc_gpu does not apply')
            return
        assert g.fallback_reason, 'CPU backend without a reason'
        ref, _ = wct.st_load(dec)
        with wcodec.File(enc) as f:
            ts = f.tensors()
            bufs = {t: (ctypes.create_string_buffer(max(t.out_bytes, 1)),
                        ctypes.create_string_buffer(max(4 * t.n_scales, 1))) for t in ts}
            dsts = {t: (ctypes.addressof(o), t.out_bytes, ctypes.addressof(sc) if t.n_scales else None,
                        t.n_scales) for t, (o, sc) in bufs.items()}
            g.decode_file(f, dsts)
            for t, (o, sc) in bufs.items():
                assert o.raw[:t.out_bytes] == ref[t.name][1].tobytes(), f'{t.name} differs'
                if t.n_scales:
                    assert sc.raw[:4 * t.n_scales] == ref[t.name + '_scale'][1].tobytes()
        print(f'wc_gpu binding (CPU fallback: {g.fallback_reason}): {len(ts)} tensors equal to '
              'the reference decode')
    finally:
        g.close()


def check_errors(enc, tmp):
    import wcodec
    raised = lambda exc, fn: _raises(exc, fn)
    raised(FileNotFoundError, lambda: wcodec.File(os.path.join(tmp, 'absent.wcodec')))
    raised(IsADirectoryError, lambda: wcodec.File(tmp))
    junk = os.path.join(tmp, 'junk.wcodec')
    with open(junk, 'wb') as f:
        f.write(b'not a wcodec file at all' * 10)
    e = raised(wcodec.WCodecError, lambda: wcodec.File(junk))
    assert e.name == 'EFORMAT' and 'junk.wcodec' in str(e), e
    data = open(enc, 'rb').read()
    trunc = os.path.join(tmp, 'trunc.wcodec')
    with open(trunc, 'wb') as f:
        f.write(data[:len(data) // 2])
    e = raised(wcodec.WCodecError, lambda: wcodec.File(trunc))
    assert e.name == 'EFORMAT', e
    # a flipped byte inside the first coded record: the record hash refuses it
    with wcodec.File(enc) as f:
        t = next(t for t in f.tensors() if t.coded)
    bad = os.path.join(tmp, 'corrupt.wcodec')
    b = bytearray(data)
    b[t.file_offset + t.stored_bytes // 2] ^= 0x40
    with open(bad, 'wb') as f:
        f.write(b)
    with wcodec.File(bad) as f:
        e = raised(wcodec.WCodecError, lambda: f.read_bytes(f.info(t.name)))
        assert e.name == 'ECHECKSUM' and t.name in str(e), e
        raised(KeyError, lambda: f.info('no.such.tensor'))
    f = wcodec.File(enc)
    f.close()
    raised(ValueError, lambda: f.read_bytes(t))
    print('bad paths, a junk file, a truncated file, a corrupt record, an unknown name and a '
          'closed file: Python exceptions')


def _raises(exc, fn):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError(f'{fn} did not raise {exc.__name__}')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        syn = os.path.join(tmp, 'syn.safetensors')
        wct.st_write(syn, wct.synthetic())
        enc = check_equal(syn, tmp)
        for m in sys.argv[1:]:
            if os.path.exists(m):
                check_equal(m, tmp)
            else:
                print(f'{m}: absent, not checked')
        check_errors(enc, tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
