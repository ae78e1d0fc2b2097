#!/bin/sh
# Checks the unit files with systemd-analyze: verify (ExecStart pointed at
# the built daemon) and the offline security exposure, which must stay at
# or below 2.0 ("OK" or better). Exit 77 (skip) without a usable
# systemd-analyze.
# usage: test_units.sh BUILT_SERVICE SOCKET_UNIT WCODECD
set -u
service=$1 socket=$2 wcodecd=$3
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found: skipped"; exit 77; }
systemd-analyze --version >/dev/null 2>&1 || { echo "systemd-analyze does not run here: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The installed paths do not exist in a build tree: point them at it.
sed -e "s|^\(ExecStart[A-Za-z]*=\)[^ ]*/wcodecd|\1$wcodecd|" "$service" >"$tmp/wcodecd.service"
cp "$socket" "$tmp/wcodecd.socket"
grep -q "^ExecStart=$wcodecd " "$tmp/wcodecd.service" || { echo "ExecStart not substituted"; exit 1; }

out=$(systemd-analyze verify --man=no "$tmp/wcodecd.socket" "$tmp/wcodecd.service" 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then
    # A sandbox without a usable manager is not a failure of the units.
    case $out in
        *"Failed to initialize manager"*|*"Failed to set up manager"*) echo "skipped: $out"; exit 77;;
    esac
    echo "systemd-analyze verify failed"
    exit 1
fi
# verify prints nothing for clean units; any warning about ours fails.
if echo "$out" | grep -q "wcodecd\.\(service\|socket\)"; then
    echo "systemd-analyze verify reported problems"
    exit 1
fi

sec=$(systemd-analyze security --offline=yes --no-pager "$tmp/wcodecd.service" 2>&1)
line=$(echo "$sec" | grep "Overall exposure level")
echo "$line"
[ -n "$line" ] || { echo "$sec" | tail -5; echo "no exposure level printed"; exit 1; }
level=$(echo "$line" | sed 's/.*: \([0-9.]*\) .*/\1/')
awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || { echo "exposure $level is above 2.0"; exit 1; }
echo "ok: exposure $level"
