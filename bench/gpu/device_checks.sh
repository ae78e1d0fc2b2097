#!/bin/bash
# Runs on the GPU machine (the `device` tool) from the checkout's root: the checks after a change of
# host code, in two calls of at most a few minutes.
#   tests   every device test, checkasm's GPU level (also under memcheck), test_gpu_share, and the
#           kernel and file-to-GPU A/B of build-alt/bench_gpu_OLD against this build, two rounds
#   python  the Python suite on the machine's PyTorch and transformers, and test_gpu under memcheck
# Carry (64 MiB in all): build-run (binaries of a `build-gpu` release build, in the build folder's
# layout: libwcodec.so*, tools/wcodec, tests/gpu/*, tests/checkasm/checkasm, bench/gpu/bench_gpu,
# bench/bench_dsp; `strip --strip-unneeded` keeps them small), build-alt/bench_gpu_* (the build to
# compare with), .gpudata/slice_mixed.safetensors (from ../shared/weights) and .devdeps
# (../shared/device/fetch-runtime-libs libjson-c5 libxxhash0 libinih1 libsystemd0).
# Logs go to $OUT, a table last in $OUT/summary.txt.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu
B=build-run; T=/tmp/wcb; mkdir -p $T; S=$OUT/summary.txt
chk() { local n=$1; shift; SECONDS=0; "$@" > $OUT/$n.log 2>&1; local rc=$?; echo "$n rc=$rc ${SECONDS}s" | tee -a $S; [ $rc = 0 ] || [ $rc = 77 ] || tail -25 $OUT/$n.log | tee -a $S; }
for stage in "$@"; do
case $stage in
tests)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee -a $S
chk test_gpu timeout 400 $B/tests/gpu/test_gpu .gpudata/slice_mixed.safetensors
chk test_nodev env CUDA_VISIBLE_DEVICES= $B/tests/gpu/test_gpu --nodev
chk shared_dev $B/tests/gpu/test_gpu_shared_dev $B/tests/gpu/example.wcodec
chk shared_nodev env CUDA_VISIBLE_DEVICES= $B/tests/gpu/test_gpu_shared $B/tests/gpu/example.wcodec
chk gpu_io $B/tests/gpu/test_gpu_io
chk gpu_share $B/tests/gpu/test_gpu_share $B/tests/gpu/example.wcodec
grep -E "refused|imported|equal" $OUT/gpu_share.log | tee -a $S
chk checkasm $B/tests/checkasm/checkasm --real=.gpudata/slice_mixed.safetensors
grep -E "gpu|all ok" $OUT/checkasm.log | tee -a $S
chk checkasm_memcheck timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $B/tests/checkasm/checkasm --test=rans_decode --real=.gpudata/slice_mixed.safetensors
grep -E "ERROR SUMMARY" $OUT/checkasm_memcheck.log | tee -a $S
for tw in 16384 4096; do $B/tools/wcodec encode -q -f --tile-weights $tw .gpudata/slice_mixed.safetensors -o $T/slice_$tw.wcodec; done
$B/tools/wcodec encode -q -f .gpudata/slice_mixed.safetensors -o $T/slice_def.wcodec
for round in 1 2; do
for f in slice_16384:100 slice_4096:100 slice_def:100; do
  for bin in build-alt/bench_gpu_* $B/bench/gpu/bench_gpu; do
    echo "r$round $bin ${f%%:*} x${f##*:}: $($bin kernel $T/${f%%:*}.wcodec 20 ${f##*:} | grep -oE 'time_ms=[0-9.]+|GBps=[0-9.]+|ratio[a-z_]*=[0-9.]+' | tr '\n' ' ')" | tee -a $S
  done
done
done
for bin in build-alt/bench_gpu_* $B/bench/gpu/bench_gpu; do
  echo "$bin e2e slice_16384: $($bin e2e $T/slice_16384.wcodec 5 2>&1 | tail -2 | tr '\n' ' ')" | tee -a $S
done
    ;;
python)
python3 -c "import torch, transformers, numpy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)" | tee -a $S
export WCODEC_LIBRARY=$B/libwcodec.so.1 WCODEC_BIN=$B/tools/wcodec PYTHONPATH=python:tests/python PYTHONDONTWRITEBYTECODE=1
M=examples/ppocrv4-rec/model.safetensors
chk py_binding timeout 200 python3 tests/python/test_binding.py $M
chk py_load timeout 200 python3 tests/python/test_load.py $M
chk py_load_cuda timeout 200 python3 tests/python/test_load.py --cuda $M
chk py_safe_open timeout 200 python3 tests/python/test_safe_open.py $M
chk py_folder timeout 200 python3 tests/python/test_folder.py
chk py_hf timeout 200 python3 tests/python/test_hf.py
chk py_hf_llama timeout 300 python3 tests/python/test_hf_llama.py
tail -8 $OUT/py_hf_llama.log | tee -a $S
chk memcheck_test_gpu env WCT_GPU_QUICK=1 timeout 240 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 $B/tests/gpu/test_gpu .gpudata/none
grep -E "ERROR SUMMARY|PASSED|FAILED" $OUT/memcheck_test_gpu.log | tee -a $S
    ;;
esac
done
echo "==== summary"; cat $S
