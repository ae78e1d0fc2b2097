#!/usr/bin/env python3
"""A SYNTHETIC 7B-class checkpoint (Llama-2-7B shapes) for speed benchmarks.

Every row is drawn from a Student-t distribution with 5 degrees of freedom and
quantized per row (s = max|w| / 127, q = clamp(round_half_even(w / s), -127,
127)); its order-0 entropy is near 6 bits per weight. It measures speed, not
size: say "synthetic" wherever its figures appear.

Writes OUT/synth7b_int8.safetensors (I8 + N_scale F32, what wcodec encodes and
what safetensors loads as INT8) and, with --bf16, OUT/synth7b_bf16.safetensors
(q * s in bf16). --sizes writes OUT/sizes.safetensors: one tensor per size,
64 KB .. 1 GB of INT8, for the fixed-cost curve.
Usage: make_synth.py OUT [--bf16] [--sizes] [--layers N]"""
import os
import sys
import time

import torch
from safetensors.torch import save_file


def quant_rows(rows, cols, gen, dev):
    t = torch.distributions.StudentT(torch.tensor(5.0, device=dev))
    w = t.sample((rows, cols)).float()
    s = w.abs().amax(dim=1) / 127
    s = torch.where(s == 0, torch.ones_like(s), s)
    q = torch.round(w / s[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, s


def main():
    out = sys.argv[1]
    bf16 = "--bf16" in sys.argv
    layers = 32
    if "--layers" in sys.argv:
        layers = int(sys.argv[sys.argv.index("--layers") + 1])
    os.makedirs(out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(1234)
    t0 = time.time()
    if "--sizes" in sys.argv:
        ts = {}
        for kb in [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576]:
            n = kb * 1024
            cols = 4096 if n >= 4096 * 16 else 1024
            q, s = quant_rows(n // cols, cols, None, dev)
            name = "t%07dKB" % kb
            ts[name] = q.cpu()
            ts[name + "_scale"] = s.cpu()
        save_file(ts, os.path.join(out, "sizes.safetensors"))
        print("sizes written in %.1f s" % (time.time() - t0))
        return
    H, F, V = 4096, 11008, 32000
    shapes = [("model.embed_tokens.weight", (V, H))]
    for i in range(layers):
        p = "model.layers.%d." % i
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            shapes.append((p + "self_attn.%s.weight" % n, (H, H)))
        shapes.append((p + "mlp.gate_proj.weight", (F, H)))
        shapes.append((p + "mlp.up_proj.weight", (F, H)))
        shapes.append((p + "mlp.down_proj.weight", (H, F)))
        shapes.append((p + "input_layernorm.weight", (H,)))
        shapes.append((p + "post_attention_layernorm.weight", (H,)))
    shapes.append(("model.norm.weight", (H,)))
    shapes.append(("lm_head.weight", (V, H)))
    i8, b16 = {}, {}
    nw = 0
    for name, shp in shapes:
        if len(shp) == 1:
            v = torch.ones(shp, dtype=torch.bfloat16)
            i8[name] = v
            b16[name] = v
            continue
        q, s = quant_rows(shp[0], shp[1], None, dev)
        nw += q.numel()
        i8[name] = q.cpu()
        i8[name + "_scale"] = s.cpu()
        if bf16:
            b16[name] = (q.float() * s[:, None]).to(torch.bfloat16).cpu()
    save_file(i8, os.path.join(out, "synth7b_int8.safetensors"))
    print("synthetic 7B-class INT8: %d weights, %d tensors, %.1f s" % (nw, len(i8), time.time() - t0))
    if bf16:
        del i8
        save_file(b16, os.path.join(out, "synth7b_bf16.safetensors"))
        print("bf16 written, %.1f s" % (time.time() - t0))


main()
