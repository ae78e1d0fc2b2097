#!/usr/bin/env python3
"""A SYNTHETIC Llama-shaped INT8 checkpoint, generated and encoded shard by
shard. Every figure measured on it is synthetic: say so wherever it appears.

Every matrix row is drawn from a Student-t distribution with 5 degrees of
freedom and quantized per row (s = max|w| / 127, q = round_half_even(w / s)),
like make_synth.py (order-0 entropy near 6 bits per weight): it measures speed
and memory, not how well real weights compress. Matrices are stored as I8 with
an F32 N_scale beside them, norms as BF16 ones. Values depend on the backend
(torch: CUDA if present, else numpy) and on nothing else: each tensor and each
block of 2^24 weights has its own seed, so the shard size changes the files'
boundaries, not the weights.

Why shards, and one .wcodec per shard (docs/OPERATIONS.md, "Models larger
than the disk"): the 70B-class INT8 safetensors (69 GB) and its .wcodec (about
50 GB: 5.7 bits per weight on one synthetic 70B-shaped layer) do not both
fit on a 64 GiB disk. So each shard is written (a Hugging Face sharded folder:
model-0000k-of-0000n.safetensors, model.safetensors.index.json, config.json),
encoded by `wcodec encode SHARD.safetensors` to model-0000k-of-0000n.wcodec,
and deleted before the next one is made (unless --keep-safetensors): the disk
holds one safetensors shard plus the .wcodec files written so far. The
.wcodec files and model.wcodec.index.json (weight_map: tensor -> .wcodec
file, as Hugging Face's index does for safetensors) are the served model.
`wcodec encode DIR` of the whole folder writes one .wcodec instead, but needs
every shard on disk at once.

Each encode runs `wcodec encode --verbose`, whose last line gives its peak
RSS; this script prints one line per shard and a summary line with the
largest peak (max_encoder_rss).

Usage: synth_shards.py OUT_DIR [--shape 70b|7b|tiny] [--layers N]
         [--shard-gb G] [--wcodec PATH] [--threads N] [--keep-safetensors]
         [--no-encode] [--resume] [--overlap] [--tmp DIR]"""
import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib

SHAPES = {
    # Llama-2-70B: 80 layers, hidden 8192, MLP 28672, 64 heads, 8 KV heads of 128
    "70b": dict(layers=80, hidden=8192, mlp=28672, heads=64, kv_heads=8, head_dim=128, vocab=32000),
    # Llama-2-7B (make_synth.py's shapes)
    "7b": dict(layers=32, hidden=4096, mlp=11008, heads=32, kv_heads=32, head_dim=128, vocab=32000),
    # for tests: seconds on a CPU
    "tiny": dict(layers=2, hidden=256, mlp=688, heads=4, kv_heads=2, head_dim=64, vocab=1000),
}
BLOCK = 1 << 24  # weights drawn per seed


def model_tensors(s):
    """(name, shape) of every weight matrix and norm, in Hugging Face order."""
    H, F, V = s["hidden"], s["mlp"], s["vocab"]
    kv = s["kv_heads"] * s["head_dim"]
    out = [("model.embed_tokens.weight", (V, H))]
    for i in range(s["layers"]):
        p = "model.layers.%d." % i
        out += [(p + "self_attn.q_proj.weight", (s["heads"] * s["head_dim"], H)),
                (p + "self_attn.k_proj.weight", (kv, H)),
                (p + "self_attn.v_proj.weight", (kv, H)),
                (p + "self_attn.o_proj.weight", (H, s["heads"] * s["head_dim"])),
                (p + "mlp.gate_proj.weight", (F, H)),
                (p + "mlp.up_proj.weight", (F, H)),
                (p + "mlp.down_proj.weight", (H, F)),
                (p + "input_layernorm.weight", (H,)),
                (p + "post_attention_layernorm.weight", (H,))]
    out += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    return out


def stored(name, shape):
    """The safetensors entries of one weight: (name, dtype, shape, bytes)."""
    if len(shape) == 1:
        return [(name, "BF16", shape, 2 * shape[0])]
    rows, cols = shape
    return [(name, "I8", shape, rows * cols), (name + "_scale", "F32", (rows,), 4 * rows)]


class Gen:
    """Quantized Student-t(5) rows, one block of rows at a time."""

    def __init__(self, backend):
        self.torch = None
        if backend != "numpy":
            try:
                import torch
                self.torch = torch
                self.dev = "cuda" if torch.cuda.is_available() else "cpu"
                self.backend = "torch-" + self.dev
            except ImportError:
                if backend == "torch":
                    raise
        if not self.torch:
            import numpy
            self.np = numpy
            self.backend = "numpy"

    def tobytes(self, x):
        x = x.contiguous().cpu()
        try:
            return x.numpy().tobytes()
        except (RuntimeError, TypeError):  # torch without numpy: a fresh tensor's storage is x
            return bytes(x.untyped_storage())

    def block(self, seed, rows, cols):
        """(q bytes, scale bytes) of rows x cols weights."""
        if self.torch:
            t = self.torch
            g = t.Generator(device=self.dev)
            g.manual_seed(seed)
            z = t.randn((rows, cols), generator=g, device=self.dev)
            chi = t.zeros((rows, cols), device=self.dev)
            for _ in range(5):
                chi.add_(t.randn((rows, cols), generator=g, device=self.dev).square_())
            w = z / (chi / 5).sqrt_()
            del z, chi
            s = w.abs().amax(dim=1) / 127
            s = t.where(s == 0, t.ones_like(s), s)
            q = t.round(w / s[:, None]).clamp_(-127, 127).to(t.int8)
            return self.tobytes(q), self.tobytes(s.float())
        np = self.np
        rng = np.random.default_rng(seed)
        w = rng.standard_t(5, size=(rows, cols)).astype(np.float32)
        s = np.abs(w).max(axis=1) / np.float32(127)
        s[s == 0] = 1
        q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8)
        return q.tobytes(), s.astype("<f4").tobytes()


def plan_shards(entries, max_bytes):
    """Groups of weights (a matrix stays with its scales), each at most
    max_bytes unless one weight alone is larger."""
    shards, cur, size = [], [], 0
    for name, shape in entries:
        b = sum(e[3] for e in stored(name, shape))
        if cur and size + b > max_bytes:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += b
    if cur:
        shards.append(cur)
    return shards


def write_shard(path, weights, gen, base_seed):
    """Writes one safetensors file, streaming: header first, then each
    tensor block by block (memory: one block)."""
    ents = [e for n, s in weights for e in stored(n, s)]
    meta = {"format": "pt", "synthetic": "student-t(5) rows, " + gen.backend}
    hdr, off = {"__metadata__": meta}, 0
    for name, dt, shape, nb in ents:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    js = json.dumps(hdr, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    nw = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js)
        for name, shape in weights:
            if len(shape) == 1:
                f.write(struct.pack("<H", 0x3F80) * shape[0])  # bf16 ones
                continue
            rows, cols = shape
            step = max(1, BLOCK // cols)
            seed = base_seed ^ zlib.crc32(name.encode())
            scales = []
            for k, r0 in enumerate(range(0, rows, step)):
                q, s = gen.block((seed << 20) + k, min(step, rows - r0), cols)
                f.write(q)
                scales.append(s)
            f.write(b"".join(scales))
            nw += rows * cols
    return off + 8 + len(js), nw


def config(s):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": s["hidden"], "intermediate_size": s["mlp"],
            "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
            "num_key_value_heads": s["kv_heads"], "head_dim": s["head_dim"],
            "vocab_size": s["vocab"], "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
            "torch_dtype": "int8", "wcodec_synthetic": "Student-t(5) rows quantized per row"}


class Encode:
    """`wcodec encode -v` of one shard, running in the background."""

    def __init__(self, wcodec, src, dst, threads, line, nw):
        self.cmd = [wcodec, "encode", "-q", "-f", "--verbose", src, "-o", dst]
        if threads:
            self.cmd[2:2] = ["-j", str(threads)]
        self.src, self.dst, self.line, self.nw = src, dst, line, nw
        self.t0 = time.time()
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)

    def finish(self, keep):
        """Waits; deletes the shard's safetensors unless keep; (size, peak RSS kB)."""
        out, err = self.p.communicate()
        if self.p.returncode:
            sys.exit("synth_shards: %s failed (%d): %s" % (" ".join(self.cmd), self.p.returncode,
                                                           err.strip()))
        secs = time.time() - self.t0
        m = re.search(r"peak_rss_kb=(\d+)", out + err)
        rss = int(m.group(1)) if m else -1
        size = os.path.getsize(self.dst)
        if not keep:
            os.unlink(self.src)
        print(self.line + "; wcodec %.3f GB (%.3f bits/weight) in %.1f s, encoder peak RSS %.0f MB"
              % (size / 1e9, 8 * size / max(self.nw, 1), secs, rss / 1024), flush=True)
        return size, rss


def main():
    ap = argparse.ArgumentParser(
        description="Generates a SYNTHETIC Llama-shaped INT8 model (Student-t rows, not real "
        "weights: every figure from it is synthetic) as a Hugging Face sharded folder, and "
        "encodes each shard to its own .wcodec, deleting the shard's safetensors before the "
        "next is made, so the disk holds one shard plus the .wcodec files.",
        epilog="Shapes: 70b = Llama-2-70B (80 layers, hidden 8192, MLP 28672, 8 KV heads of "
        "128, vocab 32000, 69 G weights); 7b = Llama-2-7B; tiny = for tests.")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="70b")
    ap.add_argument("--layers", type=int, help="override the shape's layer count")
    ap.add_argument("--shard-gb", type=float, default=5.0,
                    help="largest safetensors shard in GB (default 5, Hugging Face's default)")
    ap.add_argument("--wcodec", default="build/tools/wcodec", help="the wcodec binary")
    ap.add_argument("--threads", type=int, default=0, help="encoder threads (default: all CPUs)")
    ap.add_argument("--keep-safetensors", action="store_true",
                    help="keep each shard's safetensors (needs disk for the whole model)")
    ap.add_argument("--no-encode", action="store_true", help="only write the safetensors folder")
    ap.add_argument("--resume", action="store_true",
                    help="skip the shards whose .wcodec is there (a .wcodec appears only when "
                    "complete), e.g. after a run stopped by a time limit")
    ap.add_argument("--tmp", help="folder for the safetensors shards (default OUT; /dev/shm "
                    "keeps them off the disk)")
    ap.add_argument("--overlap", action="store_true",
                    help="generate shard k+1 while shard k is encoded: faster, but two "
                    "safetensors shards on disk (or in --tmp) at once, and the encoder's times "
                    "include the competition")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--backend", choices=["auto", "torch", "numpy"], default="auto",
                    help="random numbers from torch (CUDA where there is one) or numpy; auto: "
                    "torch if it imports. The weights differ between them")
    a = ap.parse_args()
    s = dict(SHAPES[a.shape])
    if a.layers is not None:
        s["layers"] = a.layers
    os.makedirs(a.out, exist_ok=True)
    tmp = a.tmp or a.out
    os.makedirs(tmp, exist_ok=True)
    gen = Gen(a.backend)
    shards = plan_shards(model_tensors(s), int(a.shard_gb * 1e9))
    n = len(shards)
    names = ["model-%05d-of-%05d" % (k + 1, n) for k in range(n)]
    st_map, wc_map, total = {}, {}, 0
    for k, ws in enumerate(shards):
        for name, shape in ws:
            for e in stored(name, shape):
                st_map[e[0]] = names[k] + ".safetensors"
                total += e[3]
            wc_map[name] = names[k] + ".wcodec"  # scales travel inside the record
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(s), f, indent=2)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": st_map}, f, indent=2)
    print("synthetic %s-class (layers %d): %d shards, %.2f GB INT8 safetensors, backend %s" %
          (a.shape, s["layers"], n, total / 1e9, gen.backend), flush=True)
    t_all, nw_all, wc_bytes, peak, pending = time.time(), 0, 0, 0, None
    for k, ws in enumerate(shards):
        src = os.path.join(tmp, names[k] + ".safetensors")
        dst = os.path.join(a.out, names[k] + ".wcodec")
        if a.resume and not a.no_encode and os.path.exists(dst):
            nw_all += sum(sh[0] * sh[1] for _, sh in ws if len(sh) == 2)
            wc_bytes += os.path.getsize(dst)
            print("shard %d/%d: %s is there, skipped (--resume)" % (k + 1, n, dst), flush=True)
            continue
        t0 = time.time()
        st_bytes, nw = write_shard(src, ws, gen, a.seed)
        t_gen = time.time() - t0
        nw_all += nw
        line = "shard %d/%d: %d weights, safetensors %.3f GB in %.1f s" % (
            k + 1, n, nw, st_bytes / 1e9, t_gen)
        if a.no_encode:
            print(line, flush=True)
            continue
        if pending:  # shard k-1, encoded while shard k was generated
            size, rss = pending.finish(a.keep_safetensors)
            wc_bytes, peak = wc_bytes + size, max(peak, rss)
        pending = Encode(a.wcodec, src, dst, a.threads, line, nw)
        if not a.overlap:
            size, rss = pending.finish(a.keep_safetensors)
            wc_bytes, peak, pending = wc_bytes + size, max(peak, rss), None
    if pending:
        size, rss = pending.finish(a.keep_safetensors)
        wc_bytes, peak = wc_bytes + size, max(peak, rss)
    if not a.no_encode:
        with open(os.path.join(a.out, "model.wcodec.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": wc_bytes}, "weight_map": wc_map}, f, indent=2)
    print("synthetic total: weights=%d shards=%d safetensors_GB=%.2f wcodec_GB=%.2f "
          "bits_per_weight=%.3f max_encoder_rss_MB=%.0f seconds=%.0f" %
          (nw_all, n, total / 1e9, wc_bytes / 1e9, 8 * wc_bytes / max(nw_all, 1), peak / 1024,
           time.time() - t_all))


main()
