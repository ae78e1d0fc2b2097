#!/bin/bash
# The whole-model load beside its floor (issue 21, part 2), run on the GPU machine (the `device` tool)
# from the checkout's root. Stages:
#   tests   the GPU decoder's tests after a change of the pipeline: test_gpu (the real slice),
#           test_gpu_file, test_gpu_io and test_gpu_shard where carried
#   load    the SYNTHETIC 7B-class model (make_synth.py; encoded with default options) in one call:
#           bench_floor (pread and pinned H2D GB/s, floor_s), bench_gpu e2e with record checksums on
#           and off (3 runs each), one traced load of each (WCODEC_GPU_TRACE: $OUT/trace_*.txt)
# Carry: build-run (stripped binaries of a `build-gpu` release build, in its layout), .devdeps,
# .gpudata/slice_mixed.safetensors. Logs in $OUT, a table last in $OUT/summary.txt.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/deps; done
B=build-run
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:$PWD/$B:$PWD/$B/client
T=/tmp/wcb; mkdir -p $T; S=$OUT/summary.txt
chk() { local n=$1; shift; SECONDS=0; "$@" > $OUT/$n.log 2>&1; local rc=$?; echo "$n rc=$rc ${SECONDS}s" | tee -a $S; [ $rc = 0 ] || [ $rc = 77 ] || tail -25 $OUT/$n.log | tee -a $S; }
for stage in "$@"; do
case $stage in
tests)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
    chk test_gpu timeout 400 $B/tests/gpu/test_gpu .gpudata/slice_mixed.safetensors
    [ -x $B/tests/gpu/test_gpu_file ] && chk test_gpu_file $B/tests/gpu/test_gpu_file
    [ -x $B/tests/gpu/test_gpu_io ] && chk test_gpu_io $B/tests/gpu/test_gpu_io
    # tensor-parallel shards on the device against the CPU reference (issue 22)
    [ -x $B/tests/gpu/test_gpu_shard ] && chk test_gpu_shard timeout 240 $B/tests/gpu/test_gpu_shard
    # the record-hash kernels against XXH3_64bits (issue 21, part 2; where the build has them)
    [ -x $B/tests/gpu/test_gpu_hash ] && chk test_gpu_hash timeout 240 $B/tests/gpu/test_gpu_hash
    # and their speed: a slot's 56 MiB as 16 MiB records, and as one record (the longest scan)
    if [ -x $B/bench/gpu/bench_hash ]; then
        $B/bench/gpu/bench_hash 56 16 | tee -a $S
        $B/bench/gpu/bench_hash 56 56 | tee -a $S
    fi
    ;;
load)
    SECONDS=0
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T ${SYNTH_ARGS:---bf16} > $OUT/synth.log 2>&1
    echo "synth (SYNTHETIC 7B-class) made in ${SECONDS}s" | tee -a $S
    SECONDS=0
    [ -f $T/synth7b.wcodec ] || $B/tools/wcodec encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec
    echo "encoded in ${SECONDS}s: $(ls -l $T/synth7b.wcodec | awk '{print $5}') bytes" | tee -a $S
    F=$T/synth7b.wcodec
    $B/bench/gpu/bench_floor $F 14 3 --both | tee -a $S
    for v in 1 0; do $B/bench/gpu/bench_gpu e2e $F 3 0 0 $v | tee -a $S; done
    for v in 1 0; do
        rm -f $OUT/trace_v$v.txt
        WCODEC_GPU_TRACE=$OUT/trace_v$v.txt $B/bench/gpu/bench_gpu e2e $F 1 0 0 $v > /dev/null
        grep summary $OUT/trace_v$v.txt | tail -1 | sed "s/^/checksums=$v /" | tee -a $S
    done
    $B/bench/gpu/bench_floor $F 14 3 --both | tee -a $S
    ;;
esac
done
echo "==== summary"; cat $S
