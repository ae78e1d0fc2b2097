#!/usr/bin/python3
"""wcodec.safe_open against the CPU reference decode (`wcodec decode`, read
back with numpy): keys, get_tensor, get_slice (rows, columns, both, single
rows, steps, negative bounds) byte for byte, metadata, the context manager
and its errors."""
import os
import sys
import tempfile

import wct

np = wct.np
torch = wct.need('torch')

INDEXES = [(slice(None),), (slice(1, 3),), (slice(None), slice(2, 5)), (slice(-3, None), slice(1, 4)),
           (0,), (-1,), (slice(0, 10, 3),), (slice(5, 2),), (slice(None), 1), (Ellipsis, 0)]


def as_torch(dt, a):
    if dt == 'BF16':
        return torch.from_numpy(a.astype(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def check_model(path, tmp):
    import wcodec
    enc, dec = wct.encode_decode(path, tmp)
    ref, _ = wct.st_load(dec)
    slices = 0
    with wcodec.safe_open(enc, framework='pt', device='cpu') as f:
        assert f.keys() == sorted(ref), (f.keys(), sorted(ref))
        assert f.metadata() is None
        for k in f.keys():
            dt, a = ref[k]
            want = as_torch(dt, a)
            got = f.get_tensor(k)
            assert got.dtype == want.dtype and got.shape == want.shape, (k, got.dtype, got.shape)
            assert wct.torch_bytes(got) == wct.torch_bytes(want), f'{k}: get_tensor differs'
            s = f.get_slice(k)
            assert s.get_shape() == list(a.shape) and s.get_dtype() == dt, (k, s.get_shape())
            for ix in INDEXES:
                if len([i for i in ix if i is not Ellipsis]) > max(want.dim(), 1) or \
                        (want.dim() == 0):
                    continue
                try:
                    w = want[ix]
                except IndexError:
                    continue
                g = s[ix]
                assert g.shape == w.shape and wct.torch_bytes(g) == wct.torch_bytes(w), \
                    f'{path}: {k}[{ix}]: {tuple(g.shape)} differs from {tuple(w.shape)}'
                slices += 1
    print(f'{path}: {len(ref)} tensors and {slices} slices equal to the reference decode')
    return enc


def check_errors(enc, tmp):
    import wcodec

    def raises(exc, fn, *words):
        try:
            fn()
        except exc as e:
            assert all(w in str(e) for w in words), (words, str(e))
            return e
        raise AssertionError(f'no {exc.__name__}')
    raises(FileNotFoundError, lambda: wcodec.safe_open(os.path.join(tmp, 'no.wcodec')))
    raises(ValueError, lambda: wcodec.safe_open(enc, framework='tf'), 'pt')
    with wcodec.safe_open(enc) as f:
        raises(KeyError, lambda: f.get_tensor('nope'), 'nope')
        raises(KeyError, lambda: f.get_slice('nope'), 'nope')
        k = f.keys()[0]
        raises(IndexError, lambda: f.get_slice('ids')[40])
    raises(ValueError, lambda: f.get_tensor(k), 'closed')
    print('missing file, framework, unknown names, index out of range, closed file: exceptions')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        syn = os.path.join(tmp, 'syn.safetensors')
        wct.st_write(syn, wct.synthetic())
        enc = check_model(syn, tmp)
        for m in sys.argv[1:]:
            if os.path.exists(m):
                check_model(m, tmp)
        check_errors(enc, tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
