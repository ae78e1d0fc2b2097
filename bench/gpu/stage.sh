#!/bin/bash
# Stage a `build-gpu` release build for the GPU machine: the binaries that bench/gpu/*_run.sh and
# bench/peers/run.sh run, stripped, in the build folder's layout, under DEST (default build-run), so
# that a `device` call can carry them (64 MiB a call, the checkout included).
#   usage: bash bench/gpu/stage.sh [BUILD [DEST]]
set -eu
B=${1:-build-gpu}
D=${2:-build-run}
[ -f "$B/build.ninja" ] || { echo "stage.sh: $B is not a meson build folder" >&2; exit 2; }
ninja -C "$B" > /dev/null
rm -rf "$D"
V=$(meson introspect --projectinfo "$B" | python3 -c "import json,sys; print(json.load(sys.stdin)['version'])")
files="libwcodec.so.$V client/libwcodec-client.so.$V client/wcodecctl daemon/wcodecd tools/wcodec
       bench/gpu/bench_gpu bench/gpu/bench_floor bench/gpu/bench_daemon_gpu
       tests/gpu/test_gpu tests/gpu/test_gpu_shard tests/gpu/test_gpu_share tests/gpu/unit_sandbox
       tests/daemon/test_daemon_gpu"
for f in $files; do
    [ -f "$B/$f" ] || { echo "stage.sh: $B/$f is missing (configured with -Dcuda=enabled?)" >&2; exit 2; }
    mkdir -p "$D/$(dirname $f)"
    strip --strip-unneeded -o "$D/$f" "$B/$f"
done
# and those that only some branches build
for f in tests/gpu/test_gpu_hash bench/gpu/bench_hash; do
    [ -f "$B/$f" ] || continue
    mkdir -p "$D/$(dirname $f)"
    strip --strip-unneeded -o "$D/$f" "$B/$f"
done
ln -s libwcodec.so.$V "$D/libwcodec.so.1"
ln -s libwcodec-client.so.$V "$D/client/libwcodec-client.so.1"
du -sh "$D"
