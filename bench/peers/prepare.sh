#!/bin/bash
# Builds bench_dietgpu (bench/peers/README.md): copies the DietGPU sources it
# needs from the user's copy of DietGPU into an ignored build folder, beside
# our stand-in for glog's CHECK macros, and compiles them with nvcc alone
# (no CMake, glog or PyTorch) with our benchmark, against the static
# libraries of a wcodec CUDA build tree. Runs on the development machine;
# fetches nothing.
#
#   bench/peers/prepare.sh DIETGPU_DIR [WCODEC_BUILD]
#
# DIETGPU_DIR: a checkout of https://github.com/facebookresearch/dietgpu (the
#   folder holding dietgpu/ans and dietgpu/utils; tested at a4d70a1).
# WCODEC_BUILD: a wcodec build folder made with CUDA (default: build), e.g.
#   `meson setup build --native-file scripts/cuda.ini && ninja -C build`.
# Environment: OUT (default build-peers), NVCC (default
#   /usr/local/cuda/bin/nvcc), ARCH (default 90: sm_90, the H100/H200).
# Output: $OUT/bin/bench_dietgpu (carry $OUT/bin to the GPU machine),
#   $OUT/src (the copied DietGPU sources and its LICENSE.md), $OUT/obj.
set -eu
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
[ "$1" = -h ] || [ "$1" = --help ] && usage
DG=$1
WB=${2:-build}
OUT=${OUT:-build-peers}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
ARCH=${ARCH:-90}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

[ -f "$DG/dietgpu/ans/GpuANSCodec.h" ] && [ -d "$DG/dietgpu/utils" ] ||
    { echo "prepare.sh: $DG has no dietgpu/ans/GpuANSCodec.h: give the root of a DietGPU checkout" >&2; exit 1; }
for a in cuda/libwcodec_gpu.a codec/libwcodec_core.a include/wcodec/version.h; do
    [ -f "$WB/$a" ] || { echo "prepare.sh: $WB/$a missing: give a wcodec build folder made with CUDA, built" >&2; exit 1; }
done
[ -x "$NVCC" ] || { echo "prepare.sh: no nvcc at $NVCC (set NVCC)" >&2; exit 1; }

# DietGPU's sources: the ANS codec and the utilities it includes, nothing else
rm -rf "$OUT/src" "$OUT/obj" "$OUT/bin"
mkdir -p "$OUT/src/dietgpu/ans" "$OUT/src/dietgpu/utils" "$OUT/src/glog" "$OUT/obj" "$OUT/bin"
cp "$DG"/dietgpu/ans/GpuANS*.cu "$DG"/dietgpu/ans/GpuANS*.cuh "$DG"/dietgpu/ans/GpuANSCodec.h \
   "$DG"/dietgpu/ans/GpuChecksum.cuh "$DG"/dietgpu/ans/BatchPrefixSum.cuh "$DG"/dietgpu/ans/BatchProvider.cuh \
   "$OUT/src/dietgpu/ans/"
cp "$DG"/dietgpu/utils/*.h "$DG"/dietgpu/utils/*.cuh "$DG"/dietgpu/utils/*.cpp "$OUT/src/dietgpu/utils/"
cp "$DG/LICENSE.md" "$OUT/src/LICENSE.md"
cp "$HERE/glog_standin.h" "$OUT/src/glog/logging.h"
DGC=$(git -C "$DG" rev-parse --short HEAD 2>/dev/null || echo "unknown (not a git checkout)")
WCC=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo +changes)
echo "$DGC" > "$OUT/src/DIETGPU_COMMIT"
# the host side of our decoder (descriptors, io threads) is timed too: say how it was built
BT=$(python3 -c "import json,sys; print(next(o['value'] for o in json.load(open(sys.argv[1])) if o['name'] == 'buildtype'))" \
     "$WB/meson-info/intro-buildoptions.json" 2>/dev/null || echo unknown)
[ "$BT" = release ] || echo "prepare.sh: warning: $WB is a '$BT' build; figures want a release build" >&2
WCC="$WCC, $BT build"

FLAGS=(-O3 -std=c++17 "-gencode=arch=compute_$ARCH,code=sm_$ARCH" -lineinfo -I"$OUT/src")
WCFLAGS=(-Iinclude -I"$WB/include" -Icuda -I"$HERE" "-DWCB_DIETGPU_COMMIT=\"$DGC\"" "-DWCB_WCODEC_COMMIT=\"$WCC\"")
pids=()
compile() { # SRC OBJ FLAGS...: in the background, two at a time (nvcc is slow on templates)
    local src=$1 obj=$2; shift 2
    while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
    "$NVCC" "${FLAGS[@]}" "$@" -c "$src" -o "$obj" &
    pids+=($!)
}
# -DNDEBUG: DietGPU's default CMake build (RelWithDebInfo) defines it, which
# takes the device asserts out of its decode kernel (and leaves a variable
# unused: warning 177)
for s in "$OUT"/src/dietgpu/ans/GpuANS{Decode,Encode,Info}.cu "$OUT"/src/dietgpu/utils/*.cpp; do
    compile "$s" "$OUT/obj/dg_$(basename "${s%.*}").o" -DNDEBUG -diag-suppress=177
done
for s in bench_dietgpu side_dietgpu side_wcodec peers_common; do
    compile "$HERE/$s.cu" "$OUT/obj/$s.o" "${WCFLAGS[@]}"
done
for p in "${pids[@]}"; do wait "$p" || { echo "prepare.sh: a compile failed" >&2; exit 1; }; done

# our static libraries, as bench/gpu/bench_gpu links them: through -Xlinker, so
# that nvcc hands them to the host linker only (CUDA runtime static)
libs=(-Xlinker=--start-group "-Xlinker=$WB/cuda/libwcodec_gpu.a" "-Xlinker=$WB/codec/libwcodec_core.a")
for a in "$WB"/codec/libwcodec_avx2.a "$WB"/codec/libwcodec_avx512.a; do [ -f "$a" ] && libs+=("-Xlinker=$a"); done
libs+=(-Xlinker=--end-group)
"$NVCC" "-gencode=arch=compute_$ARCH,code=sm_$ARCH" -o "$OUT/bin/bench_dietgpu" "$OUT"/obj/*.o "${libs[@]}" \
    -cudart static -ljson-c -lxxhash -lpthread -ldl -lrt -lm
# host debug information off (2.6 MB of the call's 64 MiB); symbols stay for backtraces
strip --strip-debug "$OUT/bin/bench_dietgpu"
echo "built $OUT/bin/bench_dietgpu, $(stat -c %s "$OUT/bin/bench_dietgpu") bytes (DietGPU $DGC, wcodec $WCC)"
