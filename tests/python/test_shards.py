#!/usr/bin/python3
"""`wcodec encode --shards DIR -o OUT` (a .wcodec per shard and
model.wcodec.index.json) and bench/gpu/synth_shards.py (the synthetic model
generated and encoded shard by shard, each shard's safetensors deleted as it
goes), on the script's tiny shape: every tensor of the per-shard files decodes
to what the one .wcodec of `wcodec encode DIR` gives, byte for byte; the index
names every tensor's file; the script's files and index equal the CLI's; and
clear errors for a folder without an index and for an existing output."""
import json
import os
import subprocess
import sys
import tempfile

import wct

wct.need('numpy')
HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, '..', '..', 'bench', 'gpu', 'synth_shards.py')


def run_ok(*args):
    p = wct.wcodec(*args)
    assert p.returncode == 0, f'wcodec {" ".join(args)}: {p.stderr}'
    return p


def script(out, *extra):
    cmd = [sys.executable, SCRIPT, out, '--shape', 'tiny', '--shard-gb', '0.0005',
           '--wcodec', wct.binary(), '--threads', '2'] + list(extra)
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, f'{" ".join(cmd)}: {p.stderr}'
    return p.stdout


def decoded(path, tmp):
    """name -> (dtype, bytes) of `wcodec decode` of path (INT8 and scales)."""
    out = os.path.join(tmp, os.path.basename(path) + '.safetensors')
    run_ok('decode', '-q', '-f', path, '-o', out)
    t, _ = wct.st_load(out)
    return {k: (dt, a.tobytes()) for k, (dt, a) in t.items()}


def index(d):
    with open(os.path.join(d, 'model.wcodec.index.json')) as f:
        return json.load(f)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        kept = os.path.join(tmp, 'kept')
        log = script(kept, '--keep-safetensors')
        assert 'synthetic total' in log and 'encoder peak RSS' in log, log
        shards = sorted(f for f in os.listdir(kept) if f.endswith('.safetensors'))
        assert len(shards) > 2, shards
        # the CLI on the same folder: the same files and index as the script
        cli = os.path.join(tmp, 'cli')
        run_ok('encode', '--shards', '-q', kept, '-o', cli)
        wfiles = sorted(f for f in os.listdir(cli) if f.endswith('.wcodec'))
        assert wfiles == [s[:-len('.safetensors')] + '.wcodec' for s in shards], wfiles
        for f in wfiles:
            with open(os.path.join(cli, f), 'rb') as a, open(os.path.join(kept, f), 'rb') as b:
                assert a.read() == b.read(), f'{f}: the script and --shards differ'
        assert index(cli)['weight_map'] == index(kept)['weight_map']
        assert open(os.path.join(cli, 'config.json')).read() == \
            open(os.path.join(kept, 'config.json')).read()
        # every tensor as the one-file encode of the whole folder decodes it
        one = os.path.join(tmp, 'one.wcodec')
        run_ok('encode', '-q', kept, '-o', one)
        want = decoded(one, tmp)
        got, wmap = {}, index(cli)['weight_map']
        for f in wfiles:
            part = decoded(os.path.join(cli, f), tmp)
            for k in part:
                if not k.endswith('_scale'):
                    assert wmap[k] == f, f'{k}: index says {wmap[k]}, found in {f}'
            assert not set(part) & set(got), f'{f}: tensors twice'
            got.update(part)
        assert len(wmap) == len([k for k in got if not k.endswith('_scale')])
        assert sorted(got) == sorted(want), (sorted(got), sorted(want))
        for k in want:
            assert got[k] == want[k], f'{k} differs'
        # shard by shard, deleting (the next shard made while one is encoded): no
        # safetensors left, the same .wcodec files
        gone = os.path.join(tmp, 'gone')
        script(gone, '--overlap')
        assert not [f for f in os.listdir(gone) if f.endswith('.safetensors')]
        for f in wfiles:
            with open(os.path.join(cli, f), 'rb') as a, open(os.path.join(gone, f), 'rb') as b:
                assert a.read() == b.read(), f'{f}: deleting shards changed it'
        assert index(gone) == index(kept)
        # errors
        p = wct.wcodec('encode', '--shards', '-q', kept, '-o', cli)
        assert p.returncode == 1 and 'exists' in p.stderr, p.stderr
        p = wct.wcodec('encode', '--shards', '-q', tmp, '-o', os.path.join(tmp, 'x'))
        assert p.returncode == 1 and 'model.safetensors.index.json' in p.stderr, p.stderr
    print(f'{len(wfiles)} shards: --shards and synth_shards.py give the same files and index; '
          'every tensor equal to the one-file encode; shards deleted as encoded; clear errors')
    return 0


if __name__ == '__main__':
    sys.exit(main())
