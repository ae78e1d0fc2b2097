#!/bin/sh
# Runs the libFuzzer binary for a while over the committed corpus, writing
# what it finds to a scratch folder (the committed corpus is only read).
# usage: run-fuzzer.sh FUZZER SECONDS CORPUS_DIR
set -eu
fuzzer=$1 seconds=$2 corpus=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="${TMPDIR:-/tmp}/wcodecd-" "$work" "$corpus"
