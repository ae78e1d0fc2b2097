#!/bin/bash
# wcodecd on the GPU (issue 19), run on the GPU machine (the `device` tool) from the checkout's root.
# Stages:
#   rss     the daemon's peak RSS over six cold loads of the synthetic 7B-class model
#   cold    the floor, the in-process load and the cold load through wcodecd, 7B-class, one call
#   tp2     two GPUs (skipped with one): the 7B-class model (and the 70B-class one, after 70b) for
#           tp_size 2, a client per GPU asking for its rank, against one GPU loading it whole
#   70b     the SYNTHETIC 70B-class model made shard by shard (synth_shards.py), loaded cold through
#           wcodecd (time, GB/s, the daemon's peak RSS), then mapped whole by a second client
#   tests   the daemon's GPU tests (both hand-off modes) and the daemon's decode under compute-sanitizer
#   bench   the synthetic 7B-class model (SYNTHETIC: made by make_synth.py) in one call: the floor
#           (bench_floor), the in-process load (bench_gpu e2e), safetensors INT8 and bf16, and through
#           wcodecd: cold (6 times, the model evicted between), the daemon's peak RSS, warm (a new
#           process each, 5 times; VMM and legacy hand-off), single cached tensors (p50/p99)
# Carry: build-run (bench/gpu/stage.sh: stripped binaries of a `build-gpu` release build, its layout:
# libwcodec.so*, client/libwcodec-client.so*, client/wcodecctl, daemon/wcodecd, tools/wcodec,
# bench/gpu/{bench_gpu,bench_floor,bench_daemon_gpu}, tests/gpu/*), .devdeps (the Debian runtime
# libraries: libuv1 libprotobuf-c1 libcmocka0 libjson-c5 libxxhash0 libinih1 libsystemd0).
# Logs go to $OUT, a table last in $OUT/summary.txt.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/deps; done
B=${B:-build-run}
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:$PWD/$B:$PWD/$B/client
T=/tmp/wcb; mkdir -p $T; S=$OUT/summary.txt
chk() { local n=$1; shift; SECONDS=0; "$@" > $OUT/$n.log 2>&1; local rc=$?; echo "$n rc=$rc ${SECONDS}s" | tee -a $S; [ $rc = 0 ] || [ $rc = 77 ] || tail -25 $OUT/$n.log | tee -a $S; }
# start_daemon NAME ARGS...: wcodecd on $T/NAME.sock serving $T, ready when wcodecctl status answers
start_daemon() {
    local name=$1; shift
    rm -f $T/$name.sock
    "$@" -s $T/$name.sock -r $T -u '*' -l notice > $OUT/$name.log 2>&1 &
    DPID=$!
    for i in $(seq 1 300); do
        $B/client/wcodecctl -s $T/$name.sock status > /dev/null 2>&1 && return 0
        kill -0 $DPID 2>/dev/null || break
        sleep 0.05
    done
    echo "$name: wcodecd did not start" | tee -a $S; tail -5 $OUT/$name.log | tee -a $S
    return 1
}
# SIGTERM to wcodecd itself (under compute-sanitizer, its child: the tool then prints its summary)
stop_daemon() { local k=$(pgrep -P $DPID -f wcodecd); kill -TERM ${k:-$DPID} 2>/dev/null; wait $DPID 2>/dev/null; }
hwm() { grep -E 'VmHWM' /proc/$DPID/status | awk '{printf "%.1f", $2/1024}'; }
for stage in "$@"; do
case $stage in
rss)
    # the daemon's host memory over six cold loads of the synthetic 7B-class model (evicted between)
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T > $OUT/synth.log 2>&1
    [ -f $T/synth7b.wcodec ] || $B/tools/wcodec encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec
    start_daemon d_rss $B/daemon/wcodecd --backend gpu --set gpu.budget=60G || continue
    for k in 1 2 3 4 5 6; do
        $B/bench/gpu/bench_daemon_gpu cold $T/d_rss.sock $T/synth7b.wcodec | grep -oE "total_ms=[0-9.]+" | tr '\n' ' ' | tee -a $S
        echo "daemon VmHWM_MB=$(hwm) after cold $k" | tee -a $S
        $B/client/wcodecctl -s $T/d_rss.sock evict > /dev/null
    done
    stop_daemon
    ;;
san)
    $B/tools/wcodec encode -q -f examples/ppocrv4-rec/model.safetensors -o $T/example.wcodec
    start_daemon san compute-sanitizer --tool memcheck --error-exitcode 9 $B/daemon/wcodecd --backend gpu &&
    chk san_get $B/client/wcodecctl -s $T/san.sock get --device 0 $T/example.wcodec --all -- stats
    stop_daemon; echo "daemon under memcheck: $(grep -E 'ERROR SUMMARY' $OUT/san.log | tail -1)" | tee -a $S
    ;;
tests)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
    $B/tools/wcodec encode -q -f examples/ppocrv4-rec/model.safetensors -o $T/example.wcodec
    export WDT_WCODECD=$PWD/$B/daemon/wcodecd WDT_MODEL=$PWD/examples/ppocrv4-rec/model.safetensors
    chk test_daemon_gpu timeout 400 $B/tests/daemon/test_daemon_gpu
    grep -E "^ok|FAIL|map" $OUT/test_daemon_gpu.log | head -20 | tee -a $S
    chk test_gpu_share $B/tests/gpu/test_gpu_share $T/example.wcodec
    # the same inside wcodecd.service's seccomp rules, and with the PTX JIT forced
    chk gpu_share_unit_sandbox env ASAN_OPTIONS=detect_leaks=0 $B/tests/gpu/unit_sandbox $B/tests/gpu/test_gpu_share $T/example.wcodec
    chk gpu_share_unit_sandbox_jit env ASAN_OPTIONS=detect_leaks=0 CUDA_FORCE_PTX_JIT=1 $B/tests/gpu/unit_sandbox $B/tests/gpu/test_gpu_share $T/example.wcodec
    # the daemon's decode under memcheck: a whole model through it, compared by a client
    start_daemon san compute-sanitizer --tool memcheck --error-exitcode 9 $B/daemon/wcodecd --backend gpu &&
    chk san_get $B/client/wcodecctl -s $T/san.sock get --device 0 $T/example.wcodec --all -- stats
    grep -E "cuda|backend|GPU" $OUT/san_get.log | head -4 | tee -a $S
    stop_daemon; echo "daemon under memcheck: $(grep -E 'ERROR SUMMARY' $OUT/san.log | tail -1)" | tee -a $S
    ;;
bench)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a $S
    SECONDS=0
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T --bf16 > $OUT/synth.log 2>&1
    echo "synth (SYNTHETIC 7B-class) made in ${SECONDS}s" | tee -a $S
    [ -f $T/synth7b.wcodec ] || /usr/bin/time -f "encode_s=%e encode_rss_MB=%M" $B/tools/wcodec encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec 2>&1 | tee -a $S
    F=$T/synth7b.wcodec
    ls -l $F | tee -a $S
    $B/bench/gpu/bench_floor $F 14 3 | tee -a $S
    $B/bench/gpu/bench_gpu e2e $F 3 | tee -a $S
    python3 bench/gpu/st_load.py $T/synth7b_int8.safetensors 3 | tee -a $S
    # wcodecd on the GPU: cold 6 times (the model evicted between: the daemon stays warm)
    for ipc in vmm legacy; do
        start_daemon d_$ipc $B/daemon/wcodecd --backend gpu --set gpu.ipc=$ipc --set gpu.budget=60G || continue
        if [ $ipc = vmm ]; then
            for k in 1 2 3 4 5 6; do
                $B/bench/gpu/bench_daemon_gpu cold $T/d_$ipc.sock $F | tee -a $S
                echo "daemon peak RSS after cold $k: VmHWM_MB=$(hwm)" | tee -a $S
                [ $k = 6 ] || $B/client/wcodecctl -s $T/d_$ipc.sock evict > /dev/null
            done
        else
            $B/bench/gpu/bench_daemon_gpu cold $T/d_$ipc.sock $F | tee -a $S
        fi
        for k in 1 2 3 4 5; do $B/bench/gpu/bench_daemon_gpu warm $T/d_$ipc.sock $F | tee -a $S; done
        $B/bench/gpu/bench_daemon_gpu single $T/d_$ipc.sock $F 2000 | tee -a $S
        $B/client/wcodecctl -s $T/d_$ipc.sock stats > $OUT/stats_$ipc.txt 2>&1
        echo "daemon $ipc VmHWM_MB=$(hwm)" | tee -a $S
        stop_daemon
    done
    python3 bench/gpu/st_load.py $T/synth7b_bf16.safetensors 3 | tee -a $S
    ;;
cold)
    # issue 19's first point, short: the floor, the in-process load and the cold load through
    # wcodecd of the synthetic 7B-class model, in one call (no safetensors: see `bench`)
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T > $OUT/synth.log 2>&1
    [ -f $T/synth7b.wcodec ] || $B/tools/wcodec encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec
    F=$T/synth7b.wcodec
    # the floor as issue 21 defines it, and reads and copies at once (--both)
    $B/bench/gpu/bench_floor $F 14 3 --both | tee -a $S
    $B/bench/gpu/bench_gpu e2e $F 3 | tee -a $S
    start_daemon d_cold $B/daemon/wcodecd --backend gpu --set gpu.budget=60G || continue
    for k in 1 2 3 4 5; do
        $B/bench/gpu/bench_daemon_gpu cold $T/d_cold.sock $F | grep -oE "total_ms=[0-9.]+|GBps=[0-9.]+" | tr '\n' ' ' | tee -a $S
        echo "VmHWM_MB=$(hwm)" | tee -a $S
        $B/client/wcodecctl -s $T/d_cold.sock evict > /dev/null
    done
    stop_daemon
    $B/bench/gpu/bench_gpu e2e $F 3 | tee -a $S
    $B/bench/gpu/bench_floor $F 14 3 --both | tee -a $S
    ;;
tp2)
    # issue 22 on two GPUs (nvidia-h200-x2 or more): the SYNTHETIC 7B-class model for tp_size 2, a
    # client process per GPU asking for its rank at once, against one GPU loading it whole, three
    # times each (evicted between); the daemon's bytes read (rchar of /proc/PID/io) counted; then
    # the 70B-class files (the 70b stage's, if made in this call) the same way
    ngpu=$(nvidia-smi -L | wc -l)
    [ "$ngpu" -ge 2 ] || { echo "tp2: $ngpu GPU: skipped" | tee -a $S; continue; }
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T > $OUT/synth.log 2>&1
    [ -f $T/synth7b.wcodec ] || $B/tools/wcodec encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec
    start_daemon d_tp $B/daemon/wcodecd --backend gpu --set gpu.budget=125G || continue
    rchar() { awk '/^rchar/{print $2}' /proc/$DPID/io; }
    tp_round() { # NAME FILES...: one GPU whole, then ranks 0 and 1 on GPUs 0 and 1 at once
        local name=$1; shift
        for k in 1 2 3; do
            local r0=$(rchar)
            $B/bench/gpu/bench_daemon_gpu cold $T/d_tp.sock "$@" 0 > $OUT/${name}_whole_$k.log
            local r1=$(rchar)
            $B/client/wcodecctl -s $T/d_tp.sock evict > /dev/null
            $B/bench/gpu/bench_daemon_gpu cold -t 0/2 $T/d_tp.sock "$@" 0 > $OUT/${name}_r0_$k.log &
            $B/bench/gpu/bench_daemon_gpu cold -t 1/2 $T/d_tp.sock "$@" 1 > $OUT/${name}_r1_$k.log &
            wait
            local r2=$(rchar)
            $B/client/wcodecctl -s $T/d_tp.sock evict > /dev/null
            # the last line with total_ms of each log: the whole model's (or the file's, for one file)
            w=$(grep -h "total_ms" $OUT/${name}_whole_$k.log | tail -1 | grep -oE "total_ms=[0-9.]+")
            a=$(grep -h "total_ms" $OUT/${name}_r0_$k.log | tail -1 | grep -oE "total_ms=[0-9.]+")
            b=$(grep -h "total_ms" $OUT/${name}_r1_$k.log | tail -1 | grep -oE "total_ms=[0-9.]+")
            echo "$name round $k: one GPU whole $w read_MB=$(( (r1 - r0) >> 20 )); tp 2: rank 0 $a, rank 1 $b" \
                 "read_MB=$(( (r2 - r1) >> 20 )) (ready on both: the larger)" | tee -a $S
        done
    }
    tp_round tp7b $T/synth7b.wcodec
    [ -d $T/w70 ] && ls $T/w70/model-*.wcodec > /dev/null 2>&1 && tp_round tp70b $T/w70/model-*.wcodec
    echo "daemon VmHWM_MB=$(hwm)" | tee -a $S
    stop_daemon
    ;;
70b)
    # issue 21 part 3: the SYNTHETIC 70B-class model, one .wcodec per shard (docs/OPERATIONS.md,
    # "Models larger than the disk"), generated and encoded shard by shard (in /dev/shm where it
    # has room for two shards: no disk for them, and the next generated while one is encoded);
    # then through wcodecd: cold (every file in turn, one connection), the daemon's peak RSS, and
    # a second client mapping the whole model
    W=$T/w70; mkdir -p $W
    df -h $T /dev/shm | tee -a $S
    shm=$(df -B1G --output=avail /dev/shm | tail -1 | tr -d ' ')
    opts=""; [ "${shm:-0}" -ge 12 ] && opts="--tmp /dev/shm --overlap"
    SECONDS=0
    PYTHONUNBUFFERED=1 timeout ${SYNTH_S:-450} python3 bench/gpu/synth_shards.py $W --shape 70b \
        --wcodec $B/tools/wcodec --resume $opts > $OUT/synth70.log 2>&1
    rc=$?; echo "synth_shards 70b $opts rc=$rc ${SECONDS}s" | tee -a $S; tail -2 $OUT/synth70.log | tee -a $S
    [ $rc = 0 ] || continue
    files=$(ls $W/model-*.wcodec)
    start_daemon d70 $B/daemon/wcodecd --backend gpu --set gpu.budget=125G || continue
    $B/bench/gpu/bench_daemon_gpu cold $T/d70.sock $files > $OUT/cold70.log 2>&1
    echo "cold70 rc=$?" | tee -a $S; tail -2 $OUT/cold70.log | tee -a $S
    echo "daemon VmHWM_MB=$(hwm) after the cold load" | tee -a $S
    for k in 1 2; do
        $B/bench/gpu/bench_daemon_gpu warm $T/d70.sock $files > $OUT/warm70_$k.log 2>&1
        echo "warm70 rc=$?" | tee -a $S; tail -2 $OUT/warm70_$k.log | tee -a $S
    done
    $B/client/wcodecctl -s $T/d70.sock stats > $OUT/stats70.txt 2>&1
    echo "daemon VmHWM_MB=$(hwm) at the end" | tee -a $S
    stop_daemon
    ;;
esac
done
echo "==== summary"; cat $S
