#!/usr/bin/python3
"""What each coding stage buys, per 2-D tensor and in total, in bits per weight.

usage: size_stages.py BENCH_SIZE MODEL.safetensors...
Runs bench_size (--no-timing, integer matrices quantized as float) four times per model:
  foundation  one table, no prediction, no transform (the Foundation issue's coding)
  +tables     up to 8 tables per tensor, chosen by cost
  +pred       and a prediction per tile, chosen by cost
  +tx         and a transform per tile, chosen by cost: the default encoder
and prints one markdown table beside the order-0 entropy (H0) and zstd -19 of the same INT8
bytes. Everything printed is measured in this run; scales are not counted."""
import subprocess
import sys

STAGES = [('foundation', ['--pred', '0', '--tx', '0', '--max-tables', '1']),
          ('+tables', ['--pred', '0', '--tx', '0']),
          ('+pred', ['--tx', '0']),
          ('+tx', [])]


def run(bench, model, extra):
    out = subprocess.run([bench, '--no-timing', '--ints-as-float'] + extra + [model], check=True,
                         capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        f = [c.strip() for c in line.split('|')[1:-1]]
        if len(f) < 7 or not f[2].isdigit() or f[0].startswith('**'):
            continue
        rows[f[0]] = {'shape': f[1], 'w': int(f[2]), 'h0': float(f[3]), 'zstd': float(f[4]), 'bits': float(f[5])}
    return rows


def main():
    bench, models = sys.argv[1], sys.argv[2:]
    names = [s for s, _ in STAGES]
    print('| model | tensor | shape | weights | H0 | zstd -19 | ' + ' | '.join(names) +
          ' | final - H0 | final - zstd |')
    print('|' + '---|' * (8 + len(names)))
    tot = {'w': 0, 'h0': 0.0, 'zstd': 0.0, **{n: 0.0 for n in names}}
    big = dict(tot)
    nbig = below_zstd = 0
    for m in models:
        res = {n: run(bench, m, a) for n, a in STAGES}
        base = res['foundation']
        for t, r in base.items():
            bits = [res[n][t]['bits'] for n in names]
            final = bits[-1]
            print(f"| {m.split('/')[-1]} | {t} | {r['shape']} | {r['w']} | {r['h0']:.3f} | {r['zstd']:.3f} | " +
                  ' | '.join(f'{b:.3f}' for b in bits) + f" | {final - r['h0']:+.3f} | {final - r['zstd']:+.3f} |")
            for acc, take in ((tot, True), (big, r['w'] >= 262144)):
                if not take:
                    continue
                acc['w'] += r['w']
                acc['h0'] += r['h0'] * r['w']
                acc['zstd'] += r['zstd'] * r['w']
                for n, b in zip(names, bits):
                    acc[n] += b * r['w']
            if r['w'] >= 262144:
                nbig += 1
                below_zstd += final < r['zstd']
    for label, acc in (('all coded 2-D tensors', tot), ('tensors >= 256K weights', big)):
        w = acc['w'] or 1
        print(f"| **{label}** | | | {acc['w']} | {acc['h0'] / w:.3f} | {acc['zstd'] / w:.3f} | " +
              ' | '.join(f'{acc[n] / w:.3f}' for n in names) +
              f" | {(acc['+tx'] - acc['h0']) / w:+.3f} | {(acc['+tx'] - acc['zstd']) / w:+.3f} |")
    print(f'\n{below_zstd} of {nbig} tensors of >= 256K weights are smaller than zstd -19 '
          '(weighted averages above; per-tensor rows list each model file separately)')


if __name__ == '__main__':
    main()
