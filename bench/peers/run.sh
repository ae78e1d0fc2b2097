#!/bin/bash
# Runs bench_dietgpu on the GPU machine (bench/peers/README.md), from the
# checkout's root, with build-peers/bin, .devdeps and .gpudata carried.
# Fetches nothing. The whole report goes to stdout and to $OUT/peers.txt.
#
#   bash bench/peers/run.sh [INPUT[:SETS[:ENC+ENC...]] ...]
#
# Without inputs: the real slice (.gpudata/slice_mixed.safetensors) once and
# x100 in one go (x100 also with two candidate encodings), PP-OCRv4
# (.gpudata/ppocrv4_onnx_fp32.safetensors, where carried) once and x400, a
# 4-layer synthetic model of Llama-2-7B shapes (1.07 G weights: LLM-shaped
# and mid-sized) and the synthetic 7B-class model, both made here by
# bench/gpu/make_synth.py (in /tmp/wcb4l and /tmp/wcb, kept between calls
# on a warm machine). SYNTH=0 leaves the synthetic models out, REAL=0 the
# real weights: two calls where one would pass the 10 minutes a call has.
# Environment:
#   ENC    encoder configurations, one --enc each (default "iaf=1 iaf=1,tw=262144": the
#          library's defaults and its old fixed 256K-weight tiles, integer matrices
#          quantized like float ones as in issue 21's figures)
#   ARGS   more options for bench_dietgpu (--iters, --prob-bits, --piece, --batch, ...)
#   BIN    the benchmark (default build-peers/bin/bench_dietgpu)
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
BIN=${BIN:-build-peers/bin/bench_dietgpu}
[ -x "$BIN" ] || { echo "run.sh: no $BIN: build it with bench/peers/prepare.sh and carry build-peers/bin" >&2; exit 1; }
missing=$(ldd "$BIN" | grep 'not found')
[ -z "$missing" ] || { echo "run.sh: $BIN lacks libraries (carry .devdeps): $missing" >&2; exit 1; }

inputs=("$@")
if [ ${#inputs[@]} = 0 ]; then
    W=.gpudata
    # x100 also with 8K tiles and with 12-bit tables, at most 4 (packed on the GPU): candidates
    [ "${REAL:-1}" = 1 ] && [ -f $W/slice_mixed.safetensors ] && inputs+=($W/slice_mixed.safetensors:1
        $W/slice_mixed.safetensors:100:iaf=1+iaf=1,tw=262144+iaf=1,tw=8192+iaf=1,pb=12,mt=4)
    [ "${REAL:-1}" = 1 ] && [ -f $W/ppocrv4_onnx_fp32.safetensors ] && inputs+=($W/ppocrv4_onnx_fp32.safetensors:1 $W/ppocrv4_onnx_fp32.safetensors:400)
    if [ "${SYNTH:-1}" = 1 ]; then
        for spec in "/tmp/wcb4l --layers 4" "/tmp/wcb"; do
            read -r d layers <<< "$spec"
            if [ ! -f $d/synth7b_int8.safetensors ]; then
                PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $d $layers > /tmp/make_synth.log 2>&1 ||
                    { tail -5 /tmp/make_synth.log; echo "run.sh: make_synth.py $d $layers failed" >&2; exit 1; }
                tail -1 /tmp/make_synth.log
            fi
            inputs+=($d/synth7b_int8.safetensors:1)
        done
    fi
fi
[ ${#inputs[@]} -gt 0 ] || { echo "run.sh: no inputs (nothing in .gpudata, or REAL=0 SYNTH=0)" >&2; exit 1; }
enc=()
for e in ${ENC:-iaf=1 iaf=1,tw=262144}; do enc+=(--enc "$e"); done
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee "$OUT/peers.txt"
"$BIN" "${enc[@]}" ${ARGS:-} "${inputs[@]}" 2>&1 | tee -a "$OUT/peers.txt"
rc=${PIPESTATUS[0]}
echo "bench_dietgpu rc=$rc" | tee -a "$OUT/peers.txt"
exit $rc
