#!/bin/bash
# The Python loader's GPU tests and the warm mapping through wcodecd (issues 20, 22), run on the GPU
# machine from the checkout's root. Carry: build-run (bench/gpu/stage.sh: stripped libwcodec.so*, client/,
# daemon/wcodecd, tools/wcodec of a `build-gpu` release build), .devdeps. Logs in $OUT, a table last.
#   tests   py_load_cuda (loads on the GPU against the CPU's, and torch's peak), py_tp_cuda (tensor-parallel shards on the GPU against the CPU's), test_hf_llama (logits
#           and greedy tokens, in-process and through a wcodecd with its GPU backend)
#   map     the SYNTHETIC 7B-class model resident in wcodecd: bench_map.py, the warm mapping alone
set -u
OUT=${OUT:-/tmp/out}
mkdir -p /tmp/deps "$OUT"
for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/deps; done
B=${B:-build-run}
export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:$PWD/$B:$PWD/$B/client
export WCODEC_LIBRARY=$PWD/$B/libwcodec.so.1 WCODEC_CLIENT_LIBRARY=$PWD/$B/client/libwcodec-client.so.1
export WCODEC_BIN=$PWD/$B/tools/wcodec WCODECD=$PWD/$B/daemon/wcodecd WCODECCTL=$PWD/$B/client/wcodecctl
export PYTHONPATH=python:tests/python PYTHONDONTWRITEBYTECODE=1
T=/tmp/wcb; mkdir -p $T; S=$OUT/summary.txt
M=examples/ppocrv4-rec/model.safetensors
chk() { local n=$1; shift; SECONDS=0; "$@" > $OUT/$n.log 2>&1; local rc=$?; echo "$n rc=$rc ${SECONDS}s" | tee -a $S; [ $rc = 0 ] || [ $rc = 77 ] || tail -20 $OUT/$n.log | tee -a $S; }
for stage in "$@"; do
case $stage in
tests)
    chk py_load_cuda timeout 200 python3 tests/python/test_load.py --cuda $M
    chk py_tp_cuda timeout 120 python3 tests/python/test_tp.py --cuda $M
    chk py_hf_llama timeout 300 python3 tests/python/test_hf_llama.py
    grep -E "via=" $OUT/py_hf_llama.log | tee -a $S
    ;;
map)
    [ -f $T/synth7b_int8.safetensors ] || PYTHONUNBUFFERED=1 python3 bench/gpu/make_synth.py $T > $OUT/synth.log 2>&1
    [ -f $T/synth7b.wcodec ] || $WCODEC_BIN encode -q -f $T/synth7b_int8.safetensors -o $T/synth7b.wcodec
    rm -f $T/map.sock
    $WCODECD --backend gpu -s $T/map.sock -r $T -l notice > $OUT/map_daemon.log 2>&1 &
    D=$!
    for i in $(seq 1 200); do $WCODECCTL -s $T/map.sock status > /dev/null 2>&1 && break; sleep 0.05; done
    python3 bench/python/bench_map.py $T/synth7b.wcodec $T/map.sock 20 cuda 2>&1 | tail -4 | tee -a $S
    # second processes, as serving processes would map it (the first load's phases), and the arenas
    for k in 1 2 3 4 5; do
        python3 bench/python/bench_map.py $T/synth7b.wcodec $T/map.sock 5 cuda 2>&1 | grep "first load" | tee -a $S
    done
    BENCH_MAP_PROFILE=$OUT/map_profile.txt python3 bench/python/bench_map.py $T/synth7b.wcodec $T/map.sock 5 cuda > /dev/null 2>&1
    echo "arenas: $($WCODECCTL -s $T/map.sock arenas | tee $OUT/arenas.txt | wc -l) lines" | tee -a $S
    kill -TERM $D; wait $D
    ;;
esac
done
echo "==== summary"; cat $S
