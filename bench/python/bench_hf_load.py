#!/usr/bin/env python3
"""From `from_pretrained` called to the first logits: a SYNTHETIC Llama-2-7B-shaped
model (Student-t rows, quantized per row, stored as bf16 q x s) saved as a sharded
Hugging Face folder, loaded by transformers' AutoModelForCausalLM.from_pretrained
and, encoded from that folder, by wcodec's WCodecModel.from_pretrained (in-process
GPU decode, dequantized to bf16 on the device, or INT8 kept), in the same call, on
the same GPU. Each load runs in a process of its own (torch, transformers with
its Llama model module, and wcodec imported before the clock starts), twice; the files are in the page cache (just written).
Every figure is of a synthetic model: say so where it is quoted.

Through wcodecd (--wcodecd PATH): a daemon started here with `[daemon] backend =
gpu` (socket and roots in WORKDIR); cold: the first from_pretrained(via="daemon")
after the daemon started (it decodes the file onto the GPU), warm: a second
process, the model resident (mapped, no decode); and the mapping alone, warm
(load_wcodec_checkpoint(via="daemon"), INT8 kept: the get and the wrapping of
every tensor). Each daemon run starts a fresh daemon and stops it after.

Usage (GPU machine, from the source tree):
  WCODEC_LIBRARY=build/libwcodec.so.1 WCODEC_CLIENT_LIBRARY=build/client/libwcodec-client.so.1 \\
  WCODEC_BIN=build/tools/wcodec PYTHONPATH=python \\
      python3 bench/python/bench_hf_load.py WORKDIR [--layers N] [--reuse] [--wcodecd build/daemon/wcodecd]
(--help works anywhere: torch and transformers are imported where they are used)"""
import argparse
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
# and wcodec's torch modules, which it imports on first use (so that `import wcodec` needs no torch)
from wcodec import hf, torch_io, _daemon  # noqa: F401
kind, path = sys.argv[1], sys.argv[2]
sock = sys.argv[3] if len(sys.argv) > 3 else None
ids = torch.arange(1, 17, device="cuda").view(1, 16)
torch.cuda.synchronize()
t0 = time.perf_counter()
if kind == "daemon-map":  # the mapping alone: one get, every tensor wrapped, INT8 kept
    sd = wcodec.load_wcodec_checkpoint(path, device="cuda", via="daemon", socket=sock)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    on_gpu = sum(1 for v in sd.values() if v.is_cuda)
    # zero copy: the tensors are the daemon's memory, not torch's allocator's
    print("RESULT %s map_s=%.4f tensors=%d on_cuda=%d torch_alloc_GB=%.2f" % (
        kind, t1 - t0, len(sd), on_gpu, torch.cuda.memory_allocated() / 1e9))
    sys.exit(0)
if kind == "hf":
    m = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda")
elif kind == "wcodec-sd":  # the state_dict alone: the decode's share of from_pretrained
    sd = wcodec.load_wcodec_checkpoint(path, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    print("RESULT %s load_s=%.3f first_logits_s=%.3f tensors=%d mem_GB=%.2f" % (
        kind, time.perf_counter() - t0, 0.0, len(sd), torch.cuda.max_memory_allocated() / 1e9))
    sys.exit(0)
elif kind.startswith("daemon-"):  # daemon-bf16 / daemon-int8: through wcodecd
    m = wcodec.WCodecModel.from_pretrained(path, device_map="cuda", torch_dtype=torch.bfloat16,
                                           keep_int8=(kind == "daemon-int8"), via="daemon", socket=sock)
else:
    m = wcodec.WCodecModel.from_pretrained(path, device_map="cuda", torch_dtype=torch.bfloat16,
                                           keep_int8=(kind == "wcodec-int8"), via="local")
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


def run_load(kind, path, sock=None):
    """Runs LOAD in a process of its own; its RESULT line as a dict (None on failure)."""
    args = [sys.executable, "-c", LOAD, kind, path] + ([sock] if sock else [])
    out = subprocess.run(args, capture_output=True, text=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT")]
    if out.returncode or not line:
        print(kind, "failed:", out.stderr[-2000:])
        return None
    fields = dict(f.split("=", 1) for f in line[0].split()[2:])
    fields["line"] = line[0][7:]
    return fields


class Daemon:
    """wcodecd from `binary` with `[daemon] backend = gpu` (or `backend`),
    serving `work`; ready when its socket accepts a connection."""

    def __init__(self, binary, work, backend, budget, extra):
        import socket as pysocket
        self.sock = os.path.join(work, "wcodecd.sock")
        self.conf = os.path.join(work, "wcodecd.conf")
        self.log = os.path.join(work, "wcodecd.log")
        with open(self.conf, "w") as f:
            f.write("[daemon]\nsocket = %s\n%s[security]\nroots = %s\n[cache]\nbudget = %s\n%s\n"
                    % (self.sock, "backend = %s\n" % backend if backend else "", os.path.abspath(work), budget,
                       extra))
        t0 = time.perf_counter()
        self.p = subprocess.Popen([binary, "--config", self.conf], stderr=open(self.log, "w"))
        while True:
            if self.p.poll() is not None:
                raise SystemExit("wcodecd exited %d; %s:\n%s" % (self.p.returncode, self.log, open(self.log).read()))
            try:
                with pysocket.socket(pysocket.AF_UNIX) as s:
                    s.connect(self.sock)
                break
            except OSError:
                if time.perf_counter() - t0 > 60:
                    self.stop()
                    raise SystemExit("wcodecd did not listen on %s within 60 s" % self.sock)
                time.sleep(0.02)
        self.ready_s = time.perf_counter() - t0

    def stats(self):
        import wcodec
        return wcodec.daemon_stats(self.sock)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        return self.p.wait(60)


def bench_daemon(args, wc, hf_best):
    """Cold and warm from_pretrained through a fresh daemon for each of bf16
    (dequantized on the device) and INT8 kept, and the mapping alone (warm)."""
    res = {}
    for kind in ("daemon-bf16", "daemon-int8"):
        d = Daemon(args.wcodecd, args.workdir, args.backend, args.budget, args.daemon_config)
        try:
            print("%s: wcodecd (backend %s) ready in %.2f s" % (kind, args.backend, d.ready_s))
            for phase in ("cold", "warm"):
                r = run_load(kind, wc, d.sock)
                if r:
                    print("%s %s" % (phase, r["line"]))
                    res[(kind, phase)] = float(r["first_logits_s"])
            if kind == "daemon-int8":  # resident and unleased now: the mapping alone, twice
                for _ in range(2):
                    r = run_load("daemon-map", wc, d.sock)
                    if r:
                        print("warm %s" % r["line"])
                        res[("map", "warm")] = min(res.get(("map", "warm"), 1e9), float(r["map_s"]))
            st = d.stats()
            print("daemon stats: cached %.2f GB in %d tensors, %d decodes, %d hits, leased %d" % (
                st["cached_bytes"] / 1e9, st["cached_tensors"], st["decodes"], st["hits"], st["leased_tensors"]))
        finally:
            print("wcodecd stopped: exit status %d (log %s)" % (d.stop(), d.log))
    for (kind, phase), t in sorted(res.items()):
        if kind == "map":
            print("mapping alone, warm: %.1f ms (one get of every tensor, INT8 kept)" % (t * 1e3))
        elif hf_best:
            print("%s %s: first logits in %.3f s against transformers' %.3f s: %.2fx (synthetic model)" % (
                kind, phase, t, hf_best, hf_best / t))
        else:
            print("%s %s: first logits in %.3f s" % (kind, phase, t))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", help="where the synthetic folder, the .wcodec, and the daemon's socket go")
    ap.add_argument("--layers", type=int, default=32, help="decoder layers of the synthetic model (default 32: 7B)")
    ap.add_argument("--reuse", action="store_true", help="reuse WORKDIR's folder and .wcodec when there")
    ap.add_argument("--wcodecd", metavar="PATH", help="the wcodecd binary: also measure through the daemon")
    ap.add_argument("--daemon-only", action="store_true", help="skip the in-process and transformers runs "
                    "(no ratio to transformers then)")
    ap.add_argument("--backend", default="gpu", help="[daemon] backend of the daemon started (default gpu; "
                    "empty: the daemon's default)")
    ap.add_argument("--budget", default="64G", help="[cache] budget of the daemon started (default 64G)")
    ap.add_argument("--daemon-config", default="", metavar="INI", help="more ini text for the daemon's config")
    return ap.parse_args(argv)


def main():
    args = parse_args()
    work, layers = args.workdir, args.layers
    folder, wc = os.path.join(work, "hf7b"), os.path.join(work, "hf7b.wcodec")
    if args.reuse and os.path.exists(wc):
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
    for rnd in ((1, 2) if not args.daemon_only else ()):
        for kind, path in (("hf", folder), ("wcodec-bf16", wc), ("wcodec-int8", wc), ("wcodec-sd", wc)):
            r = run_load(kind, path)
            if r is None:
                continue
            print("round %d %s" % (rnd, r["line"]))
            if kind != "wcodec-sd":
                res.setdefault(kind, []).append(float(r["first_logits_s"]))
    if "hf" in res:
        for k in ("wcodec-bf16", "wcodec-int8"):
            if k in res:
                print("%s: first logits in %.3f s against transformers' %.3f s: %.2fx (best of 2 each; "
                      "synthetic model)" % (k, min(res[k]), min(res["hf"]), min(res["hf"]) / min(res[k])))
    if args.wcodecd:
        bench_daemon(args, wc, min(res["hf"]) if "hf" in res else None)


if __name__ == "__main__":
    main()
