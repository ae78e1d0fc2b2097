#!/bin/sh
# Checks the unit files with systemd-analyze: verify (ExecStart pointed at
# the built daemon) and the offline security exposure, which must stay at
# or below 2.0 ("OK" or better), for the unit alone (CPU backend) and with
# the GPU drop-in (wcodecd.service.d/10-gpu.conf), also in its legacy-IPC
# form. Each variant must also show the settings that make it what it is,
# so that a drop-in that was not applied cannot pass. Exit 77 (skip)
# without a usable systemd-analyze.
# usage: test_units.sh BUILT_SERVICE SOCKET_UNIT WCODECD GPU_DROPIN
set -u
service=$1 socket=$2 wcodecd=$3 dropin=$4
command -v systemd-analyze >/dev/null 2>&1 || { echo "systemd-analyze not found: skipped"; exit 77; }
systemd-analyze --version >/dev/null 2>&1 || { echo "systemd-analyze does not run here: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The installed paths do not exist in a build tree: point them at it.
sed -e "s|^\(ExecStart[A-Za-z]*=\)[^ ]*/wcodecd|\1$wcodecd|" "$service" >"$tmp/wcodecd.service"
cp "$socket" "$tmp/wcodecd.socket"
grep -q "^ExecStart=$wcodecd " "$tmp/wcodecd.service" || { echo "ExecStart not substituted"; exit 1; }

fail() { echo "FAIL ($variant): $*"; exit 1; }

# verify: prints nothing for clean units; any warning about ours fails.
verify() {
    out=$(systemd-analyze verify --man=no "$tmp/wcodecd.socket" "$tmp/wcodecd.service" 2>&1)
    rc=$?
    [ -n "$out" ] && echo "$out"
    if [ $rc -ne 0 ]; then
        # A sandbox without a usable manager is not a failure of the units.
        case $out in
            *"Failed to initialize manager"*|*"Failed to set up manager"*) echo "skipped: $out"; exit 77;;
        esac
        fail "systemd-analyze verify failed"
    fi
    if echo "$out" | grep -q "wcodecd\.\(service\|socket\)\|10-gpu\.conf"; then
        fail "systemd-analyze verify reported problems"
    fi
}

# security: the exposure (at most 2.0) and the lines each variant must show.
security() {
    sec=$(systemd-analyze security --offline=yes --no-pager "$tmp/wcodecd.service" 2>&1)
    line=$(echo "$sec" | grep "Overall exposure level")
    [ -n "$line" ] || { echo "$sec" | tail -5; fail "no exposure level printed"; }
    level=$(echo "$line" | sed 's/.*: \([0-9.]*\) .*/\1/')
    echo "$variant: $line"
    awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || fail "exposure $level is above 2.0"
    for want in "$@"; do
        echo "$sec" | grep -q -- "$want" || { echo "$sec"; fail "no line matching '$want'"; }
    done
}

variant=cpu
verify
security '✓ PrivateDevices=' '✓ MemoryDenyWriteExecute=' '✓ ProcSubset=' \
    '✓ SystemCallFilter=~@resources' '✓ RestrictAddressFamilies=~AF_NETLINK'

variant=gpu
mkdir "$tmp/wcodecd.service.d"
cp "$dropin" "$tmp/wcodecd.service.d/10-gpu.conf"
verify
# The NVIDIA majors are allowed, the rest of the sandbox stays.
security '✗ PrivateDevices=' 'DeviceAllow=.*char-195:rw' 'DeviceAllow=.*char-nvidia-uvm:rw' \
    'DeviceAllow=.*char-nvidia-caps:r' '✗ ProcSubset=' '✓ MemoryDenyWriteExecute=' \
    '✓ SystemCallFilter=~@resources' '✓ RestrictAddressFamilies=~AF_NETLINK' '✓ ProtectKernelTunables='

variant=gpu-legacy
grep -q '^#PrivateIPC=no$' "$dropin" || fail "the drop-in has no '#PrivateIPC=no' line to uncomment"
sed -e 's/^#PrivateIPC=no$/PrivateIPC=no/' "$dropin" >"$tmp/wcodecd.service.d/10-gpu.conf"
verify
security 'DeviceAllow=.*char-nvidia-uvm:rw'
echo "ok"
