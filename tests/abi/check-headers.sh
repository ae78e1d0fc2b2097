#!/bin/sh
# Compiles each public header on its own, as an application includes it:
# C99 and, when a C++ compiler is given, C++11, pedantic, warnings as errors,
# with nothing but the header (twice: its include guard) in the unit.
# usage: check-headers.sh CC CXX|- INCLUDE_DIR... -- HEADER...
set -u
cc=$1 cxx=$2
shift 2
incs=
while [ $# -gt 0 ] && [ "$1" != -- ]; do incs="$incs -I$1"; shift; done
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
for h in "$@"; do
    # (the typedef: C forbids a unit that declares nothing)
    printf '#include <%s>\n#include <%s>\ntypedef int unit_not_empty;\n' "$h" "$h" > "$tmp/unit.c"
    cp "$tmp/unit.c" "$tmp/unit.cpp"
    # shellcheck disable=SC2086
    if $cc -std=c99 -pedantic-errors -Wall -Wextra -Werror $incs -fsyntax-only "$tmp/unit.c"; then
        echo "ok: $h (C99)"
    else
        echo "FAIL: $h does not compile on its own as C99"; fail=1
    fi
    [ "$cxx" = - ] && continue
    # shellcheck disable=SC2086
    if $cxx -std=c++11 -pedantic-errors -Wall -Wextra -Werror $incs -fsyntax-only "$tmp/unit.cpp"; then
        echo "ok: $h (C++11)"
    else
        echo "FAIL: $h does not compile on its own as C++11"; fail=1
    fi
done
exit $fail
