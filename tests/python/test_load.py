#!/usr/bin/python3
"""load_wcodec_checkpoint() against the CPU reference decode (`wcodec
decode`, read back with numpy) byte for byte, INT8 and dequantized to each
float dtype (the expectation computed with PyTorch from the reference's INT8
values and scales); bad input gives Python exceptions.

usage: test_load.py [--cuda] [MODEL.safetensors...]
--cuda: the same on device="cuda" (exit 77 without a CUDA device)."""
import os
import sys
import tempfile

import wct

np = wct.np
torch = wct.need('torch')


def check_model(path, tmp, device):
    import wcodec
    enc, dec = wct.encode_decode(path, tmp)
    ref, _ = wct.st_load(dec)
    for dtype in (None, torch.bfloat16, torch.float16, torch.float32):
        sd = wcodec.load_wcodec_checkpoint(enc, device=device, dtype=dtype)
        for k, v in sd.items():
            assert v.device.type == torch.device(device).type, (k, v.device)
        wct.compare_state_dict(sd, wct.expected_state_dict(ref, dtype), f'{path} dtype={dtype}')
    print(f'{path}: {len(sd)} tensors on {device} equal to the reference decode, INT8 and '
          'dequantized to bf16, f16, f32')
    return enc


def check_peak(enc, device):
    """A dequantized load on CUDA holds each INT8 buffer only until its
    tensor is dequantized: torch's peak is at most that of the tensors in
    that order (the outputs so far, the INT8 and scales not yet turned),
    plus the allocator's rounding."""
    import wcodec
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    sd = wcodec.load_wcodec_checkpoint(enc, device=device, dtype=torch.bfloat16)
    peak = torch.cuda.max_memory_allocated() - base
    with wcodec.File(enc) as f:
        infos = f.tensors()
    held = [t.out_bytes + 4 * t.n_scales for t in infos]  # decoded, not yet turned
    made = [sd[t.name].numel() * sd[t.name].element_size() for t in infos]
    want = max(sum(made[:k + 1]) + sum(held[k:]) for k in range(len(infos)))
    slack = 1024 * len(infos) + (2 << 20)
    assert peak <= want + slack, f'peak {peak} bytes, expected at most {want} + {slack}'
    print(f'dequantized on {device}: peak {peak} bytes of torch memory, at most {want} expected '
          f'(all INT8 and all outputs at once: {sum(held) + sum(made)})')


def check_errors(enc, tmp, device):
    import wcodec

    def raises(exc, fn, *words):
        try:
            fn()
        except exc as e:
            for w in words:
                assert w in str(e), (w, str(e))
            return e
        raise AssertionError(f'no {exc.__name__}')
    load = wcodec.load_wcodec_checkpoint
    raises(ValueError, lambda: load(enc, via='socket'), 'via')
    raises(ValueError, lambda: load(enc, dtype=torch.int8), 'dtype')
    raises(FileNotFoundError, lambda: load(os.path.join(tmp, 'absent.wcodec'), device=device))
    data = bytearray(open(enc, 'rb').read())
    with wcodec.File(enc) as f:
        t = next(t for t in f.tensors() if t.coded)
    data[t.file_offset + 100] ^= 1
    bad = os.path.join(tmp, 'bad.wcodec')
    with open(bad, 'wb') as f:
        f.write(data)
    e = raises(wcodec.WCodecError, lambda: load(bad, device=device), t.name, 'bad.wcodec')
    assert e.name == 'ECHECKSUM', e
    # a dtype this torch may lack (torch 1.13 has no uint16)
    u16 = os.path.join(tmp, 'u16.safetensors')
    wct.st_write(u16, {'u': ('U16', np.arange(5, dtype=np.uint16))})
    enc16, _ = wct.encode_decode(u16, tmp, 'u16')
    if getattr(torch, 'uint16', None) is None:
        raises(TypeError, lambda: load(enc16, device=device), "'u'", 'U16')
    else:
        assert load(enc16)['u'].tolist() == list(range(5))
    print('bad via/dtype, missing file, corrupt record, U16: Python exceptions')


def main():
    args = sys.argv[1:]
    device = 'cpu'
    if args and args[0] == '--cuda':
        args, device = args[1:], 'cuda'
        if not torch.cuda.is_available():
            wct.skip('torch sees no CUDA device')
    with tempfile.TemporaryDirectory() as tmp:
        syn = os.path.join(tmp, 'syn.safetensors')
        wct.st_write(syn, wct.synthetic())
        enc = check_model(syn, tmp, device)
        if device == 'cuda':
            # 16 matrices whose INT8 (2 MiB) and bf16 (4 MiB) sizes the allocator does not round
            big = os.path.join(tmp, 'big.safetensors')
            rng = np.random.default_rng(3)
            wct.st_write(big, {f'm{i}.weight': ('F32', rng.standard_t(5, (1024, 2048)).astype(np.float32))
                               for i in range(16)})
            check_peak(wct.encode_decode(big, tmp, 'big')[0], device)
        for m in args:
            if os.path.exists(m):
                check_model(m, tmp, device)
            else:
                print(f'{m}: absent, not checked')
        check_errors(enc, tmp, device)
    return 0


if __name__ == '__main__':
    sys.exit(main())
