#!/usr/bin/python3
"""load_wcodec_checkpoint(tp_rank=, tp_size=, tp_layout="llama"): every
rank's tensors against the CPU reference decode (`wcodec decode`, read back
with numpy; dequantized with PyTorch alone: wct.expected_state_dict) cut with
torch.tensor_split, byte for byte.

For tp_size 1, 2, 3 (dividing no dimension here but one) and 4, every rank:
a tensor the Llama layout splits along dim d is
torch.tensor_split(full, tp_size, d)[rank] and its scales
tensor_split(scales, tp_size, 0)[rank] (d 0) or all of them (d 1); every other
tensor is whole. Models: the example model's tensors renamed to Llama names
(4-D convolutions split along dims 0 and 1; no config.json), and a small
synthetic Llama (hidden 128, vocab 257, intermediate 200; q/k/v biases) in a
Hugging Face folder encoded in 1,024-weight tiles, with 4 KV heads, and again
with 2 (num_key_value_heads, then num_attention_heads alone): at tp_size 4
k_proj and v_proj are then head rank // 2 of 2, and tp_size 3 is a
ValueError. INT8 with scales and dequantized to bf16 (and f16, f32 at
tp_size 3). The same shards through the load's GPU path
(wc_gpu_decode_file_shards, wc_gpu_dequant) on libwcodec's CPU backend, so
that its ctypes mirrors are checked without a GPU. Argument errors are
ValueErrors.

usage: test_tp.py [--cuda] EXAMPLE.safetensors
--cuda: the shards on device="cuda" (wc_gpu_decode_file_shards) against the
CPU's, bit for bit (exit 77 without a CUDA device or a libwcodec with the
CUDA decoder)."""
import logging
import os
import sys
import tempfile

import wct

np = wct.np
torch = wct.need('torch')

LAYOUT_0 = ('q_proj.weight', 'k_proj.weight', 'v_proj.weight', 'q_proj.bias', 'k_proj.bias',
            'v_proj.bias', 'gate_proj.weight', 'up_proj.weight', 'embed_tokens.weight',
            'lm_head.weight')
LAYOUT_1 = ('o_proj.weight', 'down_proj.weight')
KV = ('k_proj.weight', 'v_proj.weight', 'k_proj.bias', 'v_proj.bias')


def layout_dim(name):
    """The Llama table of docs/SHARDING.md, written here from the doc."""
    last = name.split('.')
    for d, suffixes in ((0, LAYOUT_0), (1, LAYOUT_1)):
        if any(last[-2:] == s.split('.') for s in suffixes):
            return d
    return -1


def expected_rank(full, rank, size, kv):
    """{name: tensor} rank `rank` of `size` must get from the whole-model
    expectation `full` (kv: KV heads of the config, or None)."""
    out = {}
    for k, v in full.items():
        base = k[:-len('_scale')] if k.endswith('_scale') and k[:-len('_scale')] in full else k
        d = layout_dim(base)
        r, n = rank, size
        if kv is not None and size > kv and base.endswith(KV):
            r, n = rank // (size // kv), kv
        shape = full[base].shape
        if d < 0 or not shape or n == 1:
            out[k] = v
        elif base != k:  # scales: per row
            out[k] = torch.tensor_split(v, n, 0)[r] if d == 0 else v
        else:
            out[k] = torch.tensor_split(v, n, d)[r]
    return out


def gpu_api_cpu(enc, rank, size, dtype, want, what):
    """The load's GPU path (wc_gpu_decode_file_shards and wc_gpu_dequant
    through the ctypes mirrors) on a CPU-backend wc_gpu, against `want`;
    False where libwcodec lacks it."""
    from wcodec import _lib, _tp
    if not _lib.HAVE_GPU_SHARD:
        return False
    g = _lib.Gpu(require_gpu=False, force_cpu=True)
    try:
        with _lib.File(enc) as f:
            sd = dict(_tp.decode_with(g, f, _tp.plan(f, (rank, size, 'llama')), torch.device('cpu'),
                                      dtype))
    finally:
        g.close()
    wct.compare_state_dict(sd, want, what + ' (wc_gpu_decode_file_shards, CPU backend)')
    return True


def check_model(enc, ref, kv, count, sizes=(1, 2, 3, 4), device='cpu'):
    """Every rank of every size against the reference; returns the number
    of tensors split at least once."""
    import wcodec
    split = set()
    for size in sizes:
        dtypes = (None, torch.bfloat16) + ((torch.float16, torch.float32) if size == 3 else ())
        for dtype in dtypes:
            full = wct.expected_state_dict(ref, dtype)
            for rank in range(size):
                sd = wcodec.load_wcodec_checkpoint(enc, device=device, dtype=dtype, via='local',
                                                   tp_rank=rank, tp_size=size)
                for k, v in sd.items():
                    assert v.device.type == device, (k, v.device)
                want = expected_rank(full, rank, size, kv)
                what = f'{os.path.basename(enc)} rank {rank} of {size} dtype={dtype}'
                wct.compare_state_dict(sd, want, what)
                split |= {k for k in want if tuple(want[k].shape) != tuple(full[k].shape)}
                if device == 'cpu' and gpu_api_cpu(enc, rank, size, dtype, want, what):
                    count[0] += 1
                if device == 'cuda':  # --cuda: the CPU's shards, bit for bit
                    cpu = wcodec.load_wcodec_checkpoint(enc, dtype=dtype, via='local', tp_rank=rank,
                                                        tp_size=size)
                    wct.compare_state_dict(sd, cpu, what + ' (cuda vs cpu)')
                    count[0] += 1
    return len(split)


LLAMA_SUFFIXES = ('self_attn.q_proj.weight', 'self_attn.o_proj.weight', 'mlp.gate_proj.weight',
                  'mlp.down_proj.weight', 'self_attn.k_proj.weight', 'mlp.up_proj.weight',
                  'self_attn.v_proj.weight', 'mlp.act.weight')


def renamed_example(src, tmp):
    """The example model's tensors under Llama names: matrices and
    convolutions through the layout's dim-0, dim-1 and whole names, vectors
    alternately q_proj.bias (dim 0) and a norm (whole)."""
    t, _ = wct.st_load(src)
    out, mats, vecs = {}, 0, 0
    for i, (k, (dt, a)) in enumerate(t.items()):
        if a.ndim >= 2:
            name = f'model.layers.{i}.{LLAMA_SUFFIXES[mats % len(LLAMA_SUFFIXES)]}'
            mats += 1
        else:
            name = f'model.layers.{i}.' + ('self_attn.q_proj.bias' if vecs % 2 else
                                           'input_layernorm.weight')
            vecs += 1
        out[name] = (dt, a)
    path = os.path.join(tmp, 'example-llama.safetensors')
    wct.st_write(path, out)
    return path


def synthetic_llama(seed=3):
    r = np.random.default_rng(seed)

    def w(*shape):
        return (r.standard_normal(shape) * 0.05).astype(np.float32)
    t = {'model.embed_tokens.weight': ('BF16', wct.bf16(w(257, 128)))}
    for i in range(2):
        p = f'model.layers.{i}.'
        t.update({
            p + 'self_attn.q_proj.weight': ('F32', w(128, 128)),
            p + 'self_attn.q_proj.bias': ('F32', w(128)),
            p + 'self_attn.k_proj.weight': ('F16', w(64, 128).astype(np.float16)),
            p + 'self_attn.k_proj.bias': ('F32', w(64)),
            p + 'self_attn.v_proj.weight': ('BF16', wct.bf16(w(64, 128))),
            p + 'self_attn.v_proj.bias': ('BF16', wct.bf16(w(64))),
            p + 'self_attn.o_proj.weight': ('F32', w(128, 128)),
            p + 'mlp.gate_proj.weight': ('BF16', wct.bf16(w(200, 128))),
            p + 'mlp.up_proj.weight': ('F32', w(200, 128)),
            p + 'mlp.down_proj.weight': ('F32', w(128, 200)),
            p + 'input_layernorm.weight': ('F32', 1 + w(128)),
            p + 'post_attention_layernorm.weight': ('BF16', wct.bf16(1 + w(128))),
            p + 'self_attn.rotary_emb.inv_freq': ('F32', w(16)),
        })
    t['model.layers.0.self_attn.small_proj.weight'] = ('F32', w(8, 8))  # raw, whole
    t['model.layers.1.self_attn.q_proj.weight'] = ('F32', w(40, 64))     # raw (< 4096): split raw
    t['model.norm.weight'] = ('F32', 1 + w(128))
    t['lm_head.weight'] = ('F32', w(257, 128))
    return t


def encode_folder(tmp, name, tensors, config):
    d = os.path.join(tmp, name)
    wct.hf_folder(d, tensors, n_shards=1, config=config)
    enc, dec = os.path.join(tmp, name + '.wcodec'), os.path.join(tmp, name + '.dec.safetensors')
    for args in (('encode', '-q', '--tile-weights', '1024', d, '-o', enc),
                 ('decode', '-q', enc, '-o', dec)):
        p = wct.wcodec(*args)
        assert p.returncode == 0, f'wcodec {" ".join(args)}: {p.stderr}'
    ref, _ = wct.st_load(dec)
    return enc, ref


def raises(fn, *words):
    try:
        fn()
    except ValueError as e:
        for w in words:
            assert w in str(e), f'{w!r} not in {e}'
        return
    raise AssertionError(f'no ValueError ({words})')


def check_errors(enc, enc_kv2):
    import wcodec
    load = wcodec.load_wcodec_checkpoint
    raises(lambda: load(enc, tp_rank=0), 'tp_rank and tp_size go together')
    raises(lambda: load(enc, tp_size=2), 'tp_rank and tp_size go together')
    raises(lambda: load(enc, tp_rank=2, tp_size=2), '[0, tp_size)')
    raises(lambda: load(enc, tp_rank=-1, tp_size=2), '[0, tp_size)')
    raises(lambda: load(enc, tp_rank=0, tp_size=0), '[0, tp_size)')
    raises(lambda: load(enc, tp_rank=True, tp_size=2), 'integers')
    raises(lambda: load(enc, tp_rank=0, tp_size=2.0), 'integers')
    raises(lambda: load(enc, tp_rank=0, tp_size=2, tp_layout='gpt2'), "'gpt2'", 'llama')
    raises(lambda: load(enc, tp_rank=0, tp_size=2, tp_layout=None), 'tp_layout')
    raises(lambda: load(enc_kv2, tp_rank=0, tp_size=3), 'num_key_value_heads 2', 'tp_size 3')
    # via="auto" decodes the shards here, and says so
    seen = []
    h = logging.Handler()
    h.emit = lambda rec: seen.append(rec.getMessage())
    logging.getLogger('wcodec').addHandler(h)
    logging.getLogger('wcodec').setLevel(logging.INFO)
    try:
        a = load(enc, tp_rank=1, tp_size=2, via='auto')
    finally:
        logging.getLogger('wcodec').removeHandler(h)
    assert any('decoding the shards in-process' in m for m in seen), seen
    wct.compare_state_dict(a, load(enc, tp_rank=1, tp_size=2, via='local'), 'via=auto')


def check_daemon(tmp, enc, device, sizes=(2, 3, 4)):
    """Where meson gives a wcodecd: every rank through the daemon (its
    GetTensors shards; a second get for KV heads that ranks share) equal to
    the in-process shards."""
    if not (os.environ.get('WCODECD') and os.path.exists(os.environ['WCODECD'])):
        return False
    import wcodec
    from test_daemon import Daemon
    d = Daemon(tmp, tmp)
    try:
        for size in sizes:
            for rank in range(size):
                got = wcodec.load_wcodec_checkpoint(enc, device=device, tp_rank=rank, tp_size=size, via='daemon',
                                                    socket=d.sock)
                want = wcodec.load_wcodec_checkpoint(enc, device=device, tp_rank=rank, tp_size=size, via='local')
                wct.compare_state_dict(got, want, f'via=daemon rank {rank} of {size}')
                del got
    finally:
        rc = d.stop()
    assert rc == 0, f'wcodecd exited {rc}: {open(d.log).read()}'
    return True


def main():
    args = sys.argv[1:]
    cuda = args[:1] == ['--cuda']
    args = args[1:] if cuda else args
    from wcodec import _lib
    if not _lib.HAVE_SHARD:
        wct.skip('this libwcodec has no wc_decode_tensor_shard')
    device, count = 'cpu', [0]
    if cuda:
        if not torch.cuda.is_available():
            wct.skip('torch sees no CUDA device')
        if not _lib.HAVE_GPU_SHARD:
            wct.skip('this libwcodec has no wc_gpu_decode_file_shards')
        g = _lib.Gpu(device=0, require_gpu=False)
        on_cuda, why = g.on_cuda, g.fallback_reason
        g.close()
        if not on_cuda:  # the CPU's shards against themselves would prove nothing
            wct.skip(f'libwcodec cannot use the CUDA device ({why})')
        device = 'cuda'
    cfg = {'model_type': 'llama', 'hidden_size': 128, 'num_attention_heads': 4,
           'num_key_value_heads': 4, 'torch_dtype': 'float32'}
    with tempfile.TemporaryDirectory() as tmp:
        tensors = synthetic_llama()
        enc, ref = encode_folder(tmp, 'llama-kv4', tensors, cfg)
        n = check_model(enc, ref, None, count, device=device)
        print(f'synthetic Llama, 4 KV heads: tp_size 1-4, every rank equal to tensor_split of the '
              f'reference ({n} tensors and scales split)')
        if check_daemon(tmp, enc, device):
            print(f'the same through wcodecd (via="daemon", {device}): tp_size 2-4, every rank equal to '
                  'the in-process shards')
        enc2, ref2 = encode_folder(tmp, 'llama-kv2', tensors, dict(cfg, num_key_value_heads=2))
        check_model(enc2, ref2, 2, count, sizes=(1, 2, 4), device=device)
        cfg_heads = {k: v for k, v in cfg.items() if k != 'num_key_value_heads'}
        enc3, ref3 = encode_folder(tmp, 'llama-heads2', tensors, dict(cfg_heads, num_attention_heads=2))
        check_model(enc3, ref3, 2, count, sizes=(4,), device=device)
        print('synthetic Llama, 2 KV heads (num_key_value_heads; num_attention_heads alone): '
              'at tp_size 4 k_proj/v_proj are head rank // 2 of 2')
        enc1, ref1 = encode_folder(tmp, 'llama-kv1', tensors, dict(cfg, num_key_value_heads=1))
        check_model(enc1, ref1, 1, count, sizes=(2, 3), device=device)
        print('synthetic Llama, 1 KV head: at tp_size 2 and 3 every rank takes k_proj/v_proj whole')
        if check_daemon(tmp, enc2, device, sizes=(2, 4)) and check_daemon(tmp, enc1, device, sizes=(3,)):
            print(f'through wcodecd ({device}), ranks sharing KV heads (2 heads, tp_size 4; 1 head, '
                  'tp_size 3): every rank equal to the in-process shards')
        for example in args:
            src = renamed_example(example, tmp)
            for tiles in (None, '4096'):
                enc4 = os.path.join(tmp, f'example-{tiles}.wcodec')
                dec4 = os.path.join(tmp, f'example-{tiles}.dec.safetensors')
                extra = ('--tile-weights', tiles) if tiles else ()
                for a in (('encode', '-q', '-f', *extra, src, '-o', enc4),
                          ('decode', '-q', '-f', enc4, '-o', dec4)):
                    p = wct.wcodec(*a)
                    assert p.returncode == 0, p.stderr
                ref4, _ = wct.st_load(dec4)
                n = check_model(enc4, ref4, None, count, device=device)
                print(f'{example} renamed to Llama names, tiles {tiles or "default"}: tp_size 1-4, '
                      f'every rank equal to tensor_split of the reference ({n} split)')
        if not cuda:
            check_errors(enc, enc2)
            print(f'{count[0]} loads also through wc_gpu_decode_file_shards on the CPU backend, '
                  'equal')
            print('errors: ValueError for bad tp arguments and unshareable KV heads; '
                  'via="auto" decodes shards in-process and logs it')
        else:
            print(f'{count[0]} loads on cuda equal to the CPU shards')
    return 0


if __name__ == '__main__':
    sys.exit(main())
