#!/usr/bin/python3
"""WCodecModel.from_pretrained on a Llama-architecture model, for the GPU
machine (PyTorch 2.x, transformers): exit 77 where transformers is missing.

A LlamaForCausalLM from a transformers config (hidden 1024, 8 layers) is
saved with save_pretrained in shards, encoded from its folder with `wcodec
encode DIR`, and loaded with WCodecModel.from_pretrained, dequantized and with
INT8 linears kept, in float32 and bfloat16. The reference is the same model
whose weights an independent PyTorch implementation of the quantization rule
(wct.torch_qdq) quantized and dequantized, saved, and loaded by transformers'
own AutoModelForCausalLM.from_pretrained. Logits on a fixed batch must agree
to float tolerance, and greedy generation of 32 tokens must give the same
tokens. With $WCODECD (a wcodecd binary; meson sets it), every load is done
again through a daemon started here (via="daemon": on the GPU machine its GPU
backend, the tensors mapped from its device memory).

usage (from the source tree, after a build in build/):
  WCODEC_LIBRARY=build/libwcodec.so WCODEC_BIN=build/tools/wcodec \\
  PYTHONPATH=python:tests/python python3 tests/python/test_hf_llama.py [--device cuda]
Default device: cuda where torch sees one, else cpu."""
import os
import sys
import tempfile
import time

import wct

torch = wct.need('torch')
transformers = wct.need('transformers', ' (WCodecModel.from_pretrained builds the model with it)')

TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def dtype_kw(dtype):
    # transformers 5 renamed torch_dtype to dtype
    major = int(transformers.__version__.split('.')[0])
    return {'dtype': dtype} if major >= 5 else {'torch_dtype': dtype}


def make_folders(tmp):
    cfg = transformers.LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                                   num_attention_heads=16, num_key_value_heads=8, vocab_size=32000,
                                   max_position_embeddings=512, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1, so that their raw values matter
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    src = os.path.join(tmp, 'llama')
    model.save_pretrained(src, max_shard_size='100MB')
    assert os.path.exists(os.path.join(src, 'model.safetensors.index.json')), 'not sharded'
    coded = 0
    sd = {}
    for k, v in model.state_dict().items():
        if wct.coded_by_encoder(v):
            sd[k] = wct.torch_qdq(v, torch.float32)
            coded += 1
        else:
            sd[k] = v
    model.load_state_dict(sd)
    ref = os.path.join(tmp, 'llama-qdq')
    model.save_pretrained(ref)
    print(f'model: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, '
          f'{coded} tensors quantized by the reference')
    return src, ref


def main():
    args = sys.argv[1:]
    device = args[1] if args[:1] == ['--device'] else ('cuda' if torch.cuda.is_available() else 'cpu')
    import wcodec
    with tempfile.TemporaryDirectory() as tmp:
        src, ref_dir = make_folders(tmp)
        enc = os.path.join(tmp, 'llama.wcodec')
        p = wct.wcodec('encode', '-q', src, '-o', enc)
        assert p.returncode == 0, p.stderr
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(0, 32000, (4, 48), generator=g).to(device)
        prompt = ids[:1, :16]
        vias = [('local', None)]
        daemon = None
        if os.environ.get('WCODECD') and os.path.exists(os.environ['WCODECD']):
            from test_daemon import Daemon
            daemon = Daemon(tmp, tmp)
            vias.append(('daemon', daemon.sock))
        try:
            for dtype in (torch.float32, torch.bfloat16):
                check_dtype(enc, ref_dir, ids, prompt, device, dtype, vias)
        finally:
            if daemon:
                rc = daemon.stop()
                assert rc == 0, f'wcodecd exited {rc}: {open(daemon.log).read()}'
    return 0


def check_dtype(enc, ref_dir, ids, prompt, device, dtype, vias):
    """The loads of one dtype, each via, INT8 linears dequantized and kept,
    against the reference model's logits and greedy tokens."""
    import wcodec
    ref = transformers.AutoModelForCausalLM.from_pretrained(ref_dir, **dtype_kw(dtype))
    ref = ref.to(device).eval()
    with torch.no_grad():
        want = ref(ids).logits
        want_tokens = ref.generate(prompt, max_new_tokens=32, min_new_tokens=32,
                                   do_sample=False, pad_token_id=0)
    del ref
    for (via, sock), keep in ((v, k) for v in vias for k in (False, True)):
        t0 = time.perf_counter()
        m = wcodec.WCodecModel.from_pretrained(enc, device_map=device, torch_dtype=dtype,
                                               keep_int8=keep, via=via, socket=sock)
        t_load = time.perf_counter() - t0
        n_int8 = sum(isinstance(x, wcodec.Int8Linear) for x in m.modules())
        assert (n_int8 > 0) == keep, n_int8
        with torch.no_grad():
            got = m(ids).logits
            tokens = m.generate(prompt, max_new_tokens=32, min_new_tokens=32,
                                do_sample=False, pad_token_id=0)
        diff = (got.float() - want.float()).abs().max().item()
        what = f'{device} {dtype} keep_int8={keep} via={via}'
        assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
        assert torch.allclose(got.float(), want.float(), rtol=TOL[dtype], atol=TOL[dtype]), \
            f'{what}: logits differ by {diff}'
        assert torch.equal(tokens, want_tokens), f'{what}: greedy tokens differ'
        print(f'{what}: logits max |diff| {diff:.3g}, 32 greedy tokens equal '
              f'({n_int8} Int8Linear; from_pretrained {t_load:.2f} s, not a benchmark)')
        del m


if __name__ == '__main__':
    sys.exit(main())
