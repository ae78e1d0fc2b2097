#!/bin/bash
# Runs on the GPU machine (the `device` tool), from the checkout's root, with
# build-gpu, .devdeps and .gpudata carried. Stages: test (the GPU tests and
# checkasm's GPU level, also under memcheck), sanitize, kernel, ab, abbits, ncu,
# abn, abenc, ncusrc, synth, synthk, ncusynth, synthbench, sizes, synthmin, e2e (E2E_CFGS picks its
# configurations). A call brings back at most 8 files of $OUT: the stages keep
# their logs in /tmp and put a short table last in $OUT/summary.txt.
# Optional carries: build-alt/bench_gpu_* (earlier builds' bench_gpu, for `ab`) and
# build-warm1/tests/gpu/test_gpu (`meson setup build-warm1 -Dcuda=enabled -Dbuildtype=release
# -Dcuda_args=-DWC_AVG_WARM=1 && ninja -C build-warm1 tests/gpu/test_gpu`, for `test`), and
# .gpudata/stockfish_16384.wcodec (`wcodec encode --ints-as-float --tile-weights 16384
# ../shared/weights/stockfish15_nnue_int.safetensors`: GPL weights, never committed; `ab` decodes it,
# and `test` compares it tile by tile: the real case of the top and narrow prediction kernels). The
# working tree and the carries together must stay under 64 MiB.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/deps; done
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export PATH=/usr/local/cuda/bin:$PATH
B=build-gpu
W=.gpudata
T=/tmp/wcb
mkdir -p $T
summary=$OUT/summary.txt
# ab_kernels FILE:SETS...: the kernel benchmark of every build (build-alt/bench_gpu_*, then this
# one's) on each file that exists, in the same call, one line each
ab_kernels() {
    local f bin
    for f in "$@"; do
        [ -f ${f%%:*} ] || continue
        for bin in build-alt/bench_gpu_* $B/bench/gpu/bench_gpu; do
            echo "$bin $(basename ${f%%:*}) x${f##*:}: $($bin kernel ${f%%:*} 20 ${f##*:} | grep -oE 'time_ms=[0-9.]+|GBps=[0-9.]+|ratio[a-z_]*=[0-9.]+' | tr '\n' ' ')" | tee -a $summary
        done
    done
}
for stage in "$@"; do
case $stage in
test)
    # logs stay in /tmp (a call brings back 8 files at most); a failure prints its log's tail
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee -a $summary
    L=/tmp/logs; mkdir -p $L
    check() {
        local name=$1; shift
        "$@" > $L/$name.log 2>&1
        local rc=$?
        echo "$name rc=$rc" | tee -a $summary
        [ $rc = 0 ] || { grep -E "FAIL|ERROR|Assert|differ|error|pass [0-9]" $L/$name.log | head -20; tail -15 $L/$name.log; } | tee -a $summary
    }
    SECONDS=0
    check test_gpu timeout 400 $B/tests/gpu/test_gpu $W/slice_mixed.safetensors
    echo "test_gpu took ${SECONDS} s" | tee -a $summary
    check test_nodev env CUDA_VISIBLE_DEVICES= $B/tests/gpu/test_gpu --nodev
    # built with -Dcuda_args=-DWC_AVG_WARM=1 (carried when there): the avg prediction's guesses mostly
    # wrong, so that its recomputation runs
    [ -x build-warm1/tests/gpu/test_gpu ] && check test_gpu_avg_warm1 timeout 300 build-warm1/tests/gpu/test_gpu $W/none
    check test_gpu_shared_dev $B/tests/gpu/test_gpu_shared_dev $B/tests/gpu/example.wcodec
    check test_gpu_shared_nodev env CUDA_VISIBLE_DEVICES= $B/tests/gpu/test_gpu_shared $B/tests/gpu/example.wcodec
    check test_gpu_io $B/tests/gpu/test_gpu_io
    # the GPU kernel as a checkasm level, and once more under memcheck (damaged streams included)
    [ -f $W/stockfish_16384.wcodec ] &&
        check test_gpu_stockfish env WCT_GPU_ONLY=test_real timeout 200 $B/tests/gpu/test_gpu $W/stockfish_16384.wcodec
    check checkasm $B/tests/checkasm/checkasm --real=$W/slice_mixed.safetensors
    grep -E "gpu|all ok|FAILED" $L/checkasm.log | tee -a $summary
    check checkasm_memcheck timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 \
        $B/tests/checkasm/checkasm --test=rans_decode --real=$W/slice_mixed.safetensors
    grep -E "ERROR SUMMARY|rans_decode +gpu" $L/checkasm_memcheck.log | tee -a $summary
    ;;
sanitize)
    for tool in memcheck racecheck; do
        WCT_GPU_QUICK=1 timeout 500 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 $B/tests/gpu/test_gpu $W/none \
            > $OUT/sanitizer_$tool.log 2>&1
        echo "compute-sanitizer $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/sanitizer_$tool.log | tail -1)" | tee -a $summary
    done
    ;;
kernel)
    for tw in 262144 65536 16384 4096; do
        $B/tools/wcodec encode -q -f --tile-weights $tw $W/slice_mixed.safetensors -o $T/slice_$tw.wcodec
        $B/bench/gpu/bench_gpu kernel $T/slice_$tw.wcodec 50 1 | tee -a $summary
        $B/bench/gpu/bench_gpu kernel $T/slice_$tw.wcodec 20 100 | tee -a $summary
    done
    $B/bench/gpu/bench_gpu e2e $T/slice_16384.wcodec 5 | tee -a $summary
    ;;
abbits)
    # the same as ab on files coded with 11-, 12- and 13-bit tables (--prob-bits; 13 is the default):
    # the real slice at 16K tiles, and PP-OCRv4 where .gpudata has ppocr_16384_pb11/12.wcodec
    for pb in 11 12 13; do
        $B/tools/wcodec encode -q -f --tile-weights 16384 --prob-bits $pb $W/slice_mixed.safetensors -o $T/slice_16384_pb$pb.wcodec
    done
    cp $W/ppocr_16384.wcodec $T/ppocr_16384_pb13.wcodec
    for pb in 11 12; do [ -f $W/ppocr_16384_pb$pb.wcodec ] && cp $W/ppocr_16384_pb$pb.wcodec $T/; done
    ab_kernels $T/slice_16384_pb11.wcodec:100 $T/slice_16384_pb12.wcodec:100 $T/slice_16384_pb13.wcodec:100 \
               $T/ppocr_16384_pb11.wcodec:50 $T/ppocr_16384_pb12.wcodec:50 $T/ppocr_16384_pb13.wcodec:50
    ;;
ncu)
    ncu --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis --section LaunchStats -k regex:wc_decode -c 1 \
        $B/bench/gpu/bench_gpu kernel $T/slice_16384.wcodec 1 100 > $OUT/ncu.txt 2>&1
    grep -E "Duration|Throughput|Achieved Occupancy|Registers|Theoretical Occ|Issue Slots|Eligible|No Eligible|Stall|Block Limit" $OUT/ncu.txt | head -40
    ;;
ncuall)
    # every kernel of a resident run of the real slice x 100 (decode, prediction), one line each
    ncu --section SpeedOfLight --section Occupancy --section LaunchStats -k regex:wc_ -c 4 \
        $B/bench/gpu/bench_gpu kernel $T/slice_16384.wcodec 1 100 > $OUT/ncu_all.txt 2>&1
    grep -E "^  wc_|Duration|Achieved Occupancy|Grid Size|Compute \(SM\) Throughput|Memory Throughput" $OUT/ncu_all.txt | tee -a $summary
    ;;
synth)
    PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T --bf16 2>&1 | tee -a $summary
    PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T --sizes 2>&1 | tee -a $summary
    for tw in 262144 16384; do
        /usr/bin/time -f "encode_s=%e rss_MB=%M" $B/tools/wcodec encode -q -f --tile-weights $tw $T/synth7b_int8.safetensors -o $T/synth7b_$tw.wcodec 2>&1 | tee -a $summary
        $B/tools/wcodec info $T/synth7b_$tw.wcodec | tail -3 >> $summary
    done
    $B/tools/wcodec encode -q -f --tile-weights 16384 $T/sizes.safetensors -o $T/sizes.wcodec
    ls -la $T | tee -a $summary
    ;;
synthbench)
    for tw in 16384 262144; do
        $B/bench/gpu/bench_gpu kernel $T/synth7b_$tw.wcodec 10 | tee -a $summary
        $B/bench/gpu/bench_gpu e2e $T/synth7b_$tw.wcodec 3 | tee -a $summary
    done
    python3 bench/gpu/st_load.py $T/synth7b_int8.safetensors 3 | tee -a $summary
    python3 bench/gpu/st_load.py $T/synth7b_bf16.safetensors 3 | tee -a $summary
    $B/bench/gpu/bench_gpu sizes $T/sizes.wcodec | tee -a $summary
    ;;
synthk)
    # synthetic model (no bf16 copy), both tile sizes, kernel throughput only
    PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T 2>&1 | tail -2 | tee -a $summary
    for tw in 16384 262144; do
        $B/tools/wcodec encode -q -f --tile-weights $tw $T/synth7b_int8.safetensors -o $T/synth7b_$tw.wcodec
        $B/bench/gpu/bench_gpu kernel $T/synth7b_$tw.wcodec 10 | tee -a $summary
    done
    ;;
ncusrc)
    # where a kernel's issue slots go, per SASS instruction (synthetic model, 16K tiles; real slice x 100);
    # NCU_K: the kernel (a regex; wc_decode unless set)
    for f in synth7b_16384:1 slice_16384:100; do
        name=${f%%:*}
        [ -f $T/$name.wcodec ] || continue
        ncu --section InstructionStats --section WarpStateStats --section SourceCounters --section SpeedOfLight \
            --section Occupancy --section LaunchStats -k regex:${NCU_K:-wc_decode} -c 1 -f -o $T/prof_$name \
            $B/bench/gpu/bench_gpu kernel $T/$name.wcodec 1 ${f##*:} > /dev/null 2>&1
        ncu -i $T/prof_$name.ncu-rep > $OUT/ncu_$name.txt 2>&1
        ncu -i $T/prof_$name.ncu-rep --page source --csv --print-source sass | gzip > $OUT/src_$name.csv.gz
        grep -E "wc_[a-z_]*kernel|Duration|Executed Instructions  |Registers Per|Achieved Occ|Theoretical Occ" $OUT/ncu_$name.txt | tee -a $summary
    done
    cuobjdump -sass $B/cuda/libwcodec_gpu.a.p/rans_decode.cu.o $B/cuda/libwcodec_gpu.a.p/predictor_reconstruct.cu.o 2>&1 | gzip > $OUT/sass.txt.gz
    ;;
ab)
    # each build's kernel on the same files in the same call: build-alt/bench_gpu_* (bench_gpu of
    # earlier commits, copied there by hand) beside this build's; the synthetic model if synthk made it
    for tw in 16384 4096; do
        [ -f $T/slice_$tw.wcodec ] || $B/tools/wcodec encode -q -f --tile-weights $tw $W/slice_mixed.safetensors -o $T/slice_$tw.wcodec
    done
    ab_kernels $T/slice_16384.wcodec:100 $T/slice_4096.wcodec:100 $W/ppocr_16384.wcodec:50 $W/ppocr_4096.wcodec:50 \
               $W/stockfish_16384.wcodec:32 \
               $T/synth7b_16384.wcodec:1
    ;;
abn)
    # ab_kernels over AB_FILES (FILE:SETS ..., paths from the checkout's root or /tmp/wcb), e.g. more
    # sets of the real slice than `ab` takes, to see what part of its time is the last wave
    ab_kernels ${AB_FILES:-}
    ;;
abenc)
    # ab_kernels on files encoded here with other table options: ABENC="SRC:TILE_WEIGHTS:PROB_BITS:MAX_TABLES:SETS ..."
    # (SRC: a safetensors file; synth = the synthetic model of synthk)
    for spec in ${ABENC:-}; do
        IFS=: read -r src tw pb mt sets <<< "$spec"
        [ "$src" = synth ] && src=$T/synth7b_int8.safetensors
        o=$T/$(basename ${src%.safetensors})_${tw}_b${pb}_t${mt}.wcodec
        $B/tools/wcodec encode -q -f --tile-weights $tw --prob-bits $pb --max-tables $mt $src -o $o
        echo "$(basename $o): $(stat -c %s $o) bytes" | tee -a $summary
        ab_kernels $o:$sets
    done
    ;;
ncusynth)
    # NCU_FILES: "FILE:SETS ..." to profile (default: NCU_FILE, else the synthetic model at 16K tiles, one
    # set); the whole report of each goes to $OUT/ncu_NAME_xSETS.txt
    for f in ${NCU_FILES:-${NCU_FILE:-$T/synth7b_16384.wcodec}:1}; do
        [ -f ${f%%:*} ] || continue
        name=$(basename ${f%%:*} .wcodec)_x${f##*:}
        ncu --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
            --section LaunchStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
            -k regex:wc_decode -c 1 $B/bench/gpu/bench_gpu kernel ${f%%:*} 1 ${f##*:} > $OUT/ncu_$name.txt 2>&1
        echo "ncu $name" | tee -a $summary
        grep -E "Duration|Throughput|Achieved Occupancy|Registers|Theoretical Occ|Issue Slots|Eligible|No Eligible|Stall|Block Limit|Executed Ipc|Bank|Wavefronts" $OUT/ncu_$name.txt | head -50 | tee -a $summary
    done
    ;;
sizes)
    # decode time against tensor size, 64 KB .. 1 GB (synthetic rows, 16K tiles): $OUT/sizes.txt for plot_sizes.py
    PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T --sizes 2>&1 | tail -1 | tee -a $summary
    $B/tools/wcodec encode -q -f --tile-weights 16384 $T/sizes.safetensors -o $T/sizes.wcodec
    $B/bench/gpu/bench_gpu sizes $T/sizes.wcodec | tee $OUT/sizes.txt | tee -a $summary
    ;;
synthmin)
    PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T 2>&1 | tee -a $summary
    $B/tools/wcodec encode -q -f --tile-weights 262144 $T/synth7b_int8.safetensors -o $T/synth7b_262144.wcodec
    ;;
e2e)
    f=$T/synth7b_262144.wcodec
    # ring MiB, io threads, checksums; E2E_CFGS overrides (;-separated)
    IFS=';' read -ra cfgs <<< "${E2E_CFGS:-256 8 1;256 12 1;256 12 0;384 14 1;384 14 0}"
    for cfg in "${cfgs[@]}"; do
        set -- $cfg
        $B/bench/gpu/bench_gpu e2e $f 3 $1 $2 $3 | tee -a $summary
    done
    python3 bench/gpu/st_load.py $T/synth7b_int8.safetensors 3 | tee -a $summary
    ;;
esac
done
echo "==== summary"; cat $summary
