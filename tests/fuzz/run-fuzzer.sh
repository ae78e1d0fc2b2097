#!/bin/sh
# Runs a libFuzzer binary for a while over a committed corpus, writing what it
# finds to a scratch folder (the committed corpus is only read).
# usage: run-fuzzer.sh FUZZER SECONDS CORPUS_DIR
set -eu
fuzzer=$1 seconds=$2 corpus=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="${TMPDIR:-/tmp}/" "$work" "$corpus"
