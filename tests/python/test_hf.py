#!/usr/bin/python3
"""WCodecModel without transformers: the ImportError that names it; the
model-filling part (wcodec.hf.load_into) on a small PyTorch model built on the
meta device, whose outputs must equal those of the same model holding weights
that an independent PyTorch quantizer quantized and dequantized, in float32
and bfloat16, dequantized and with INT8 linears kept (Int8Linear); and
from_pretrained's own steps (config from the metadata, class from
"architectures", tied weights, generation config) through a stand-in
`transformers` module of a few lines, where the real one is absent (the real
one is tests/python/test_hf_llama.py's, on the GPU machine)."""
import os
import sys
import tempfile

import wct

np = wct.np
torch = wct.need('torch')
nn = torch.nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(300, 64)
        self.proj = nn.Linear(64, 128)
        self.norm = nn.LayerNorm(128)
        self.head = nn.Linear(128, 300, bias=False)
        # float32, computed at construction and not in checkpoints, as the
        # rotary frequencies of transformers' models are
        self.register_buffer('gain', torch.linspace(0.5, 1.5, 128, dtype=torch.float32),
                             persistent=False)

    def forward(self, ids):
        x = torch.nn.functional.gelu(self.proj(self.embed(ids)))
        return self.head((self.norm(x) * self.gain).to(x.dtype))


def check_import_error(enc):
    import wcodec
    saved = sys.modules.get('transformers')
    sys.modules['transformers'] = None  # import transformers now raises ImportError
    try:
        wcodec.WCodecModel.from_pretrained(enc)
    except ImportError as e:
        assert 'transformers' in str(e), e
        print(f'without transformers: ImportError: {e}')
    else:
        raise AssertionError('no ImportError without transformers')
    finally:
        if saved is None:
            del sys.modules['transformers']
        else:
            sys.modules['transformers'] = saved


def check_fill(tmp):
    from wcodec import hf
    torch.manual_seed(0)
    src = Tiny()
    with torch.no_grad():
        src.head.weight[7].zero_()  # a row of zeros: scale 1
    path = os.path.join(tmp, 'tiny.safetensors')
    wct.st_write(path, {k: ('F32', v.detach().numpy()) for k, v in src.state_dict().items()})
    enc, _ = wct.encode_decode(path, tmp)
    ids = torch.randint(0, 300, (3, 11))
    for dtype in (torch.float32, torch.bfloat16):
        ref = Tiny()
        ref.load_state_dict({k: wct.torch_qdq(v, dtype) if wct.coded_by_encoder(v) else v.to(dtype)
                             for k, v in src.state_dict().items()})
        for p in ref.parameters():
            p.data = p.data.to(dtype)
        want = ref(ids)
        for keep in (False, True):
            with hf._params_on_meta():
                m = Tiny()
            assert m.proj.weight.device.type == 'meta' and m.gain.device.type == 'cpu'
            missing = hf.load_into(m, enc, 'cpu', dtype, keep_int8=keep)
            assert missing == [], missing
            if keep:
                assert type(m.proj) is hf.Int8Linear and m.proj.weight.dtype == torch.int8
                assert type(m.head) is hf.Int8Linear and m.embed.weight.dtype == dtype
            got = m(ids)
            assert got.dtype == want.dtype and torch.equal(got, want), \
                f'{dtype} keep_int8={keep}: outputs differ by {(got - want).abs().max()}'
    print('load_into: outputs equal to the independently quantized model, float32 and bfloat16, '
          'dequantized and INT8')


FAKE_TRANSFORMERS = '''
"""A stand-in for the parts of transformers that from_pretrained calls."""
import json
import os
import torch
from torch import nn
__version__ = "4.0-stand-in"


class Config:
    def __init__(self, d):
        self.__dict__.update(d)


class AutoConfig:
    @staticmethod
    def from_pretrained(folder):
        with open(os.path.join(folder, "config.json")) as f:
            return Config(json.load(f))


class GenerationConfig:
    @classmethod
    def from_dict(cls, d):
        g = cls()
        g.__dict__.update(d)
        return g


class TinyLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        h, v = config.hidden_size, config.vocab_size
        self.config = config
        self.embed = nn.Embedding(v, h)
        self.up = nn.Linear(h, 2 * h)
        self.down = nn.Linear(2 * h, h, bias=False)
        self.norm = nn.LayerNorm(h)
        self.head = nn.Linear(h, v, bias=False)
        self.tie_weights()

    @classmethod
    def _from_config(cls, config, torch_dtype=None):
        return cls(config)

    def tie_weights(self):
        if self.config.tie_word_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, ids):
        x = self.embed(ids)
        return self.head(self.norm(x + self.down(torch.nn.functional.gelu(self.up(x)))))
'''


def check_from_pretrained(tmp):
    import importlib.util
    if importlib.util.find_spec('transformers') is not None:
        print('transformers is installed: from_pretrained is test_hf_llama.py\'s to check')
        return
    import wcodec
    fake = os.path.join(tmp, 'fake')
    os.makedirs(fake)
    with open(os.path.join(fake, 'transformers.py'), 'w') as f:
        f.write(FAKE_TRANSFORMERS)
    sys.path.insert(0, fake)
    try:
        import transformers
        cfg = {'architectures': ['TinyLM'], 'hidden_size': 64, 'vocab_size': 320,
               'tie_word_embeddings': True, 'torch_dtype': 'bfloat16'}
        torch.manual_seed(2)
        src = transformers.TinyLM(transformers.Config(cfg))
        # the tied head is not saved, as save_pretrained leaves it out
        sd = {k: v for k, v in src.state_dict().items() if k != 'head.weight'}
        d = os.path.join(tmp, 'tiny-hf')
        wct.hf_folder(d, {k: ('F32', v.detach().numpy()) for k, v in sd.items()}, 2, cfg)
        enc = os.path.join(tmp, 'tiny-hf.wcodec')
        p = wct.wcodec('encode', '-q', d, '-o', enc)
        assert p.returncode == 0, p.stderr
        ids = torch.randint(0, 320, (2, 9))
        for dtype in (None, torch.float32):  # None: the config's bfloat16
            want_dt = dtype or torch.bfloat16
            ref = transformers.TinyLM(transformers.Config(cfg))
            ref.load_state_dict({k: wct.torch_qdq(v, want_dt) if wct.coded_by_encoder(v) else v
                                 for k, v in sd.items()}, strict=False)
            ref.tie_weights()
            ref.to(want_dt)
            for keep in (False, True):
                m = wcodec.WCodecModel.from_pretrained(enc, device_map={'': 'cpu'},
                                                       torch_dtype=dtype, keep_int8=keep)
                assert m.head.weight is m.embed.weight, 'head not tied to the embedding'
                assert m.generation_config.eos_token_id == 2
                assert (type(m.up) is wcodec.Int8Linear) == keep
                got, want = m(ids), ref(ids)
                assert got.dtype == want_dt and torch.equal(got, want), \
                    f'{dtype} keep_int8={keep}: differs by {(got.float() - want.float()).abs().max()}'
        for bad, exc in (({'cuda:0': 0, 'cpu': 1}, NotImplementedError),):
            try:
                wcodec.WCodecModel.from_pretrained(enc, device_map=bad)
            except exc:
                pass
            else:
                raise AssertionError(f'device_map={bad}: no {exc.__name__}')
        plain = os.path.join(tmp, 'plain.safetensors')
        wct.st_write(plain, {'w': ('F32', np.zeros((64, 64), np.float32))})
        plain_enc, _ = wct.encode_decode(plain, tmp)
        try:
            wcodec.WCodecModel.from_pretrained(plain_enc)
        except ValueError as e:
            assert 'config.json' in str(e), e
        else:
            raise AssertionError('no ValueError for a file without config.json')
        print('from_pretrained (stand-in transformers): outputs equal to the independently '
              'quantized model, tied head, generation config, the config\'s dtype; '
              'a spread device_map and a file without config.json raise')
    finally:
        sys.path.remove(fake)
        sys.modules.pop('transformers', None)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, 'hf')
        wct.hf_folder(d, wct.synthetic(), 1)
        enc = os.path.join(tmp, 'hf.wcodec')
        p = wct.wcodec('encode', '-q', d, '-o', enc)
        assert p.returncode == 0, p.stderr
        check_import_error(enc)
        check_fill(tmp)
        check_from_pretrained(tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
