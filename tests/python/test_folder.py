#!/usr/bin/python3
"""`wcodec encode DIR` of a Hugging Face folder (sharded and single-file) and
`wcodec decode --folder` back: the tensors equal the reference decode of the
same tensors encoded from one safetensors file, byte for byte; config.json
and generation_config.json travel in the metadata; a missing shard, a missing
config.json, a bad index: clear errors."""
import json
import os
import sys
import tempfile

import wct

np = wct.np
torch = wct.need('torch')


def run_ok(*args):
    p = wct.wcodec(*args)
    assert p.returncode == 0, f'wcodec {" ".join(args)}: {p.stderr}'


def check_folder(tmp, n_shards, ref):
    import wcodec
    d = os.path.join(tmp, f'hf{n_shards}')
    cfg = wct.hf_folder(d, wct.synthetic(), n_shards)
    enc = os.path.join(tmp, f'hf{n_shards}.wcodec')
    run_ok('encode', '-q', d, '-o', enc)
    gen = open(os.path.join(d, 'generation_config.json')).read()
    with wcodec.File(enc) as f:
        assert f.metadata() == {'format': 'pt', 'config.json': cfg, 'generation_config.json': gen}
    with wcodec.safe_open(enc) as f:
        assert f.metadata()['config.json'] == cfg and '__metadata__' not in f.keys()
    # INT8 back: every tensor as the reference decode, config files as they were
    out = os.path.join(tmp, f'out{n_shards}')
    run_ok('decode', '-q', '--folder', enc, '-o', out)
    assert open(os.path.join(out, 'config.json')).read() == cfg
    assert open(os.path.join(out, 'generation_config.json')).read() == gen
    got, meta = wct.st_load(os.path.join(out, 'model.safetensors'))
    assert meta == {'format': 'pt', 'config.json': cfg, 'generation_config.json': gen}, meta
    assert sorted(got) == sorted(ref)
    for k, (dt, a) in ref.items():
        assert got[k][0] == dt and got[k][1].tobytes() == a.tobytes(), f'{k} differs'
    sd = wcodec.load_wcodec_checkpoint(enc)
    wct.compare_state_dict(sd, wct.expected_state_dict(ref, None), f'{n_shards} shards')
    # dequantized back
    run_ok('decode', '-q', '-f', '--folder', '--dtype', 'bf16', enc, '-o', out)
    got, _ = wct.st_load(os.path.join(out, 'model.safetensors'))
    want = wct.expected_state_dict(ref, torch.bfloat16)
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        dt, a = got[k]
        g = torch.from_numpy(a.astype(np.int16)).view(torch.bfloat16) if dt == 'BF16' \
            else torch.from_numpy(a.copy())
        assert g.dtype == w.dtype and wct.torch_bytes(g) == wct.torch_bytes(w), f'bf16 {k} differs'
    print(f'{n_shards} shard(s): metadata, INT8 and bf16 folders equal to the reference decode')


def fails(what, words, *args):
    p = wct.wcodec(*args)
    assert p.returncode == 1, f'{what}: exit {p.returncode}, {p.stderr}'
    for w in words:
        assert w in p.stderr, f'{what}: {w!r} not in {p.stderr!r}'


def check_errors(tmp):
    d = os.path.join(tmp, 'bad')
    wct.hf_folder(d, wct.synthetic(), 3)
    out = os.path.join(tmp, 'bad.wcodec')
    shard = 'model-00002-of-00003.safetensors'
    os.rename(os.path.join(d, shard), os.path.join(tmp, 'aside'))
    fails('missing shard', [shard, 'missing'], 'encode', '-q', d, '-o', out)
    os.rename(os.path.join(tmp, 'aside'), os.path.join(d, shard))
    idx = os.path.join(d, 'model.safetensors.index.json')
    good = open(idx).read()
    j = json.loads(good)
    j['weight_map']['not.there'] = shard
    open(idx, 'w').write(json.dumps(j))
    fails('tensor not in its shard', ['not.there', shard], 'encode', '-q', d, '-o', out)
    j['weight_map']['not.there'] = '../escape.safetensors'
    open(idx, 'w').write(json.dumps(j))
    fails('a path outside the folder', ['escape', 'not a file name'], 'encode', '-q', d, '-o', out)
    open(idx, 'w').write('{"weight_map": [')
    fails('index not JSON', ['index.json', 'JSON'], 'encode', '-q', d, '-o', out)
    open(idx, 'w').write(good)
    os.remove(os.path.join(d, 'config.json'))
    fails('no config.json', ['config.json'], 'encode', '-q', d, '-o', out)
    empty = os.path.join(tmp, 'empty')
    os.makedirs(empty)
    open(os.path.join(empty, 'config.json'), 'w').write('{}')
    fails('no weights', ['neither model.safetensors'], 'encode', '-q', empty, '-o', out)
    assert not os.path.exists(out), 'a failed encode left an output file'
    plain = os.path.join(tmp, 'plain.safetensors')
    wct.st_write(plain, wct.synthetic())
    enc, _ = wct.encode_decode(plain, tmp)
    fails('--folder without metadata', ['no metadata'], 'decode', '-q', '--folder', enc, '-o',
          os.path.join(tmp, 'o'))
    print('missing shard, tensor not in its shard, path outside, bad index, no config.json, no '
          'weights, --folder of a plain file: clear errors, no output')


def main():
    with tempfile.TemporaryDirectory() as tmp:
        one = os.path.join(tmp, 'one.safetensors')
        wct.st_write(one, wct.synthetic())
        _, dec = wct.encode_decode(one, tmp)
        ref, _ = wct.st_load(dec)
        check_folder(tmp, 1, ref)
        check_folder(tmp, 3, ref)
        check_errors(tmp)
    return 0


if __name__ == '__main__':
    sys.exit(main())
