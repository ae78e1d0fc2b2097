#!/usr/bin/env python3
"""From `from_pretrained` called to the first logits: a SYNTHETIC Llama-2-7B-shaped
model (Student-t rows, quantized per row, stored as bf16 q x s) saved as a sharded
Hugging Face folder, loaded by transformers' AutoModelForCausalLM.from_pretrained
and, encoded from that folder, by wcodec's WCodecModel.from_pretrained (in-process
GPU decode, dequantized to bf16 on the device, or INT8 kept), in the same call, on
the same GPU. Each load runs in a process of its own (torch, transformers with
its Llama model module, and wcodec imported before the clock starts), twice; the files are in the page cache (just written).
Every figure is of a synthetic model: say so where it is quoted.

Usage (GPU machine, from the source tree):
  WCODEC_LIBRARY=build/libwcodec.so.1 WCODEC_BIN=build/tools/wcodec PYTHONPATH=python \\
      python3 bench/python/bench_hf_load.py WORKDIR [--layers N] [--reuse]"""
import json
import os
import subprocess
import sys
import time

LOAD = r'''
import sys, time, torch
import transformers, wcodec  # imported before the clock starts, as in a serving process
# transformers imports its model modules lazily, and Llama's pulls in torch._dynamo and more:
# 5-7 s of Python imports on first use (profiled), paid by both loaders; done before the clock
transformers.LlamaForCausalLM, transformers.AutoModelForCausalLM
kind, path = sys.argv[1], sys.argv[2]
ids = torch.arange(1, 17, device="cuda").view(1, 16)
torch.cuda.synchronize()
t0 = time.perf_counter()
if kind == "hf":
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda")
elif kind == "wcodec-sd":  # the state_dict alone: the decode's share of from_pretrained
    sd = wcodec.load_wcodec_checkpoint(path, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    print("RESULT %s load_s=%.3f first_logits_s=%.3f tensors=%d mem_GB=%.2f" % (
        kind, time.perf_counter() - t0, 0.0, len(sd), torch.cuda.max_memory_allocated() / 1e9))
    sys.exit(0)
else:
    m = wcodec.WCodecModel.from_pretrained(path, device_map="cuda", torch_dtype=torch.bfloat16,
                                           keep_int8=(kind == "wcodec-int8"))
t1 = time.perf_counter()
with torch.no_grad():
    logits = m(ids).logits
torch.cuda.synchronize()
t2 = time.perf_counter()
print("RESULT %s load_s=%.3f first_logits_s=%.3f logit0=%.4f mem_GB=%.2f" % (
    kind, t1 - t0, t2 - t0, logits[0, -1, 0].item(), torch.cuda.max_memory_allocated() / 1e9))
'''


def quant_rows(rows, cols):
    import torch
    t = torch.distributions.StudentT(torch.tensor(5.0, device="cuda"))
    w = t.sample((rows, cols)).float()
    s = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
    q = torch.round(w / s[:, None]).clamp_(-127, 127)
    return (q * s[:, None]).to(torch.bfloat16)


def make_folder(d, layers):
    import torch
    import transformers
    from safetensors.torch import save_file
    os.makedirs(d, exist_ok=True)
    cfg = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
                                   num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                                   tie_word_embeddings=False)
    cfg.architectures = ["LlamaForCausalLM"]
    cfg.save_pretrained(d)
    H, F, V = 4096, 11008, 32000
    shapes = [("model.embed_tokens.weight", (V, H)), ("lm_head.weight", (V, H)), ("model.norm.weight", (H,))]
    for i in range(layers):
        p = "model.layers.%d." % i
        shapes += [(p + "self_attn.%s.weight" % n, (H, H)) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        shapes += [(p + "mlp.gate_proj.weight", (F, H)), (p + "mlp.up_proj.weight", (F, H)),
                   (p + "mlp.down_proj.weight", (H, F))]
        shapes += [(p + "input_layernorm.weight", (H,)), (p + "post_attention_layernorm.weight", (H,))]
    torch.manual_seed(1234)
    shard, size, n, index = {}, 0, 0, {}
    names = []

    def flush():
        nonlocal shard, size, n
        if shard:
            n += 1
            name = "model-%05d.safetensors" % n
            save_file(shard, os.path.join(d, name), metadata={"format": "pt"})
            names.append(name)
            for k in shard:
                index[k] = name
            shard, size = {}, 0

    for name, shp in shapes:
        t = torch.ones(shp, dtype=torch.bfloat16) if len(shp) == 1 else quant_rows(*shp).cpu()
        shard[name] = t
        size += t.numel() * 2
        if size >= 5e9:
            flush()
    flush()
    # the shards were numbered as written; name them "of N" as save_pretrained does
    total = len(names)
    for i, old in enumerate(names, 1):
        new = "model-%05d-of-%05d.safetensors" % (i, total)
        os.rename(os.path.join(d, old), os.path.join(d, new))
        for k, v in index.items():
            if v == old:
                index[k] = new
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                                                  if f.endswith(".safetensors"))},
                   "weight_map": index}, fh)


def main():
    work = sys.argv[1]
    layers = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 32
    folder, wc = os.path.join(work, "hf7b"), os.path.join(work, "hf7b.wcodec")
    if "--reuse" in sys.argv and os.path.exists(wc):
        print("reusing %s and %s" % (folder, wc))
    else:
        t0 = time.time()
        make_folder(folder, layers)
        print("synthetic folder: %.1f GB in %.1f s" % (sum(os.path.getsize(os.path.join(folder, f))
                                                           for f in os.listdir(folder)) / 1e9, time.time() - t0))
        t0 = time.time()
        subprocess.run([os.environ["WCODEC_BIN"], "encode", "-q", "-f", folder, "-o", wc], check=True)
        print("wcodec encode DIR: %.1f s, %.2f GB" % (time.time() - t0, os.path.getsize(wc) / 1e9))
    res = {}
    for rnd in (1, 2):
        for kind, path in (("hf", folder), ("wcodec-bf16", wc), ("wcodec-int8", wc), ("wcodec-sd", wc)):
            out = subprocess.run([sys.executable, "-c", LOAD, kind, path], capture_output=True, text=True)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
            if out.returncode or not line:
                print(kind, "failed:", out.stderr[-2000:])
                continue
            print("round %d %s" % (rnd, line[0][7:]))
            if kind != "wcodec-sd":
                res.setdefault(kind, []).append(float(line[0].split("first_logits_s=")[1].split()[0]))
    if "hf" in res:
        for k in ("wcodec-bf16", "wcodec-int8"):
            if k in res:
                print("%s: first logits in %.3f s against transformers' %.3f s: %.2fx (best of 2 each; "
                      "synthetic model)" % (k, min(res[k]), min(res["hf"]), min(res["hf"]) / min(res[k])))


if __name__ == "__main__":
    main()
