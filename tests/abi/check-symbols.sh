#!/bin/sh
# The symbols a shared library exports against the committed list: a symbol
# added or removed is a deliberate change of the ABI (docs/ABI.md).
# usage: check-symbols.sh NM LIBRARY LIST
set -u
nm=$1 lib=$2 list=$3
# Defined dynamic symbols by name; the sanitizers' own (an ASan build's
# __asan_*, __odr_asan.*, __ubsan_*, __sancov_*) are the toolchain's.
got=$("$nm" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' |
      grep -v -e '^__asan' -e '^__odr_asan' -e '^__ubsan' -e '^__sancov' -e '^__lsan' | LC_ALL=C sort -u) || exit 1
if [ -z "$got" ]; then
    echo "FAIL: $nm found no exported symbols in $lib"
    exit 1
fi
want=$(LC_ALL=C sort -u "$list") || exit 1
if [ "$got" = "$want" ]; then
    echo "ok: $(echo "$got" | wc -l) symbols of $(basename "$lib") as listed in $list"
    exit 0
fi
echo "FAIL: the symbols $(basename "$lib") exports differ from $list"
echo "(< listed only, > exported only):"
printf '%s\n' "$want" > "${TMPDIR:-/tmp}/wcodec-abi-want.$$"
printf '%s\n' "$got" | diff "${TMPDIR:-/tmp}/wcodec-abi-want.$$" -
rm -f "${TMPDIR:-/tmp}/wcodec-abi-want.$$"
cat <<MSG
A new symbol is a deliberate change: add it to the public header with
WC_API / WC_CLIENT_API, bump the minor version in meson.build, and update the
list (the same with and without CUDA):
  $nm -D --defined-only $lib | awk 'NF >= 3 { print \$3 }' | LC_ALL=C sort -u > $list
A symbol removed or changed incompatibly needs a new soname (the major
version in meson.build). An internal function that shows up here lacks
-fvisibility=hidden or carries WC_API by mistake.
MSG
exit 1
