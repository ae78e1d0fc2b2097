#!/bin/sh
# The CPU daemon inside wcodecd.service's seccomp rules (tests/gpu/unit_sandbox:
# SystemCallFilter=, MemoryDenyWriteExecute=, RestrictAddressFamilies=AF_UNIX,
# LockPersonality=, NoNewPrivileges=): it serves a whole model, every tensor
# with the same bytes (xxh64) as the same daemon outside the sandbox, and
# stops cleanly on SIGTERM.
# usage: test_unit_sandbox.sh UNIT_SANDBOX WCODECD WCODECCTL MODEL.wcodec
set -u
sandbox=$1 wcodecd=$2 wcodecctl=$3 model=$4
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir "$tmp/models"
cp "$model" "$tmp/models/m.wcodec"
# LeakSanitizer needs ptrace, which the filter refuses (as the unit does).
export ASAN_OPTIONS=detect_leaks=0

# serve NAME [PREFIX...]: start the daemon (under PREFIX), take every tensor,
# stop it; the listing goes to $tmp/NAME.out.
serve() {
    name=$1
    shift
    rm -f "$tmp/s.sock"
    "$@" "$wcodecd" --root "$tmp/models" --socket "$tmp/s.sock" --budget 256M --log-level warning \
        2>"$tmp/$name.log" &
    pid=$!
    i=0
    while [ ! -S "$tmp/s.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -S "$tmp/s.sock" ] || { cat "$tmp/$name.log"; echo "FAIL ($name): no socket after 10 s"; exit 1; }
    "$wcodecctl" -s "$tmp/s.sock" open "$tmp/models/m.wcodec" -- get 1 --all >"$tmp/$name.out" \
        || { cat "$tmp/$name.out" "$tmp/$name.log"; echo "FAIL ($name): wcodecctl failed"; exit 1; }
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    pid=
    [ $rc -eq 0 ] || { cat "$tmp/$name.log"; echo "FAIL ($name): daemon exited $rc after SIGTERM"; exit 1; }
}

serve plain
serve sandboxed "$sandbox"
n=$(grep -c xxh64 "$tmp/plain.out")
[ "$n" -gt 0 ] || { cat "$tmp/plain.out"; echo "FAIL: no tensor listed"; exit 1; }
cmp -s "$tmp/plain.out" "$tmp/sandboxed.out" || { diff "$tmp/plain.out" "$tmp/sandboxed.out" | head; echo "FAIL: the sandboxed daemon served other bytes"; exit 1; }
echo "ok: $n tensors, the same bytes inside the unit's seccomp rules"
