#!/usr/bin/env bash
# Local speed of the drop-in tools against util-linux (issue 19's goal:
# within 1.3x), side by side in one run on this host, no cluster running:
#
#   version   `mount -V` alone: process start-up, nothing else
#   mount     a tmpfs mount + umount pair, in a private mount namespace
#   swap      swapon + swapoff of a 64 MiB swap file (only on a host with
#             no swap of its own: swapon is not namespaced)
#   fsck      `fsck -n` of a clean ext4 image file (util-linux's fsck and
#             ssi's both run e2fsck; the difference is the wrapper)
#
# Each operation runs N times in one shell loop per tool (the loop's own
# cost is in both); the figure is the median of R such loops, in ms per
# operation. Writes bench/results/local-tools-<date>.md.
#
# usage: bench/local-tools.sh [--ssi PATH] [--n N] [--rounds R]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cmdline="bench/local-tools.sh${*:+ $*}"
ssi=$repo/.build/release/ssi
n=200
rounds=5
while [ $# -gt 0 ]; do
    case $1 in
        --ssi) ssi=$2; shift 2 ;;
        --n) n=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        *) echo "usage: $0 [--ssi PATH] [--n N] [--rounds R]" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "$0: needs root (mounts, swap)" >&2; exit 1; }
[ -x "$ssi" ] || { echo "$0: no ssi binary at $ssi (scripts/build)" >&2; exit 1; }

work=$(mktemp -d /tmp/ssi-bench-local.XXXXXX)
cleanup() {
    swapoff "$work/swap" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# Links named like the tools, so that ssi runs as ssi-mount would.
mkdir -p "$work/bin" "$work/mnt"
for t in mount umount swapon swapoff fsck; do ln -s "$ssi" "$work/bin/$t"; done

# ms per operation for one loop of `body` run n times.
loop_ms() {
    local body=$1 start end
    start=$(date +%s%N)
    for ((i = 0; i < n; i++)); do eval "$body"; done
    end=$(date +%s%N)
    echo $(( (end - start) / n / 1000 ))   # microseconds
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# bench NAME UTIL_BODY SSI_BODY: alternates the two loops R times.
declare -A result
bench() {
    local name=$1 ubody=$2 sbody=$3 u=() s=()
    for ((r = 0; r < rounds; r++)); do
        u+=("$(loop_ms "$ubody")")
        s+=("$(loop_ms "$sbody")")
    done
    result[$name.util]=$(printf '%s\n' "${u[@]}" | median)
    result[$name.ssi]=$(printf '%s\n' "${s[@]}" | median)
}

B=$work/bin
bench version "/usr/bin/mount -V >/dev/null" "$B/mount -V >/dev/null"
bench mount \
    "/usr/bin/mount -t tmpfs none $work/mnt && /usr/bin/umount $work/mnt" \
    "$B/mount -t tmpfs none $work/mnt && $B/umount $work/mnt"
names=(version mount)

if [ "$(wc -l < /proc/swaps)" -le 1 ]; then
    dd if=/dev/zero of="$work/swap" bs=1M count=64 status=none
    chmod 600 "$work/swap"
    mkswap -q "$work/swap"
    n_saved=$n; n=$(( n / 10 > 5 ? n / 10 : 5 ))
    bench swap \
        "/usr/sbin/swapon $work/swap && /usr/sbin/swapoff $work/swap" \
        "$B/swapon $work/swap && $B/swapoff $work/swap"
    n=$n_saved
    names+=(swap)
else
    echo "swap: skipped, this host has swap of its own (swapon -a/swapoff are not namespaced)" >&2
fi

truncate -s 64M "$work/ext4.img"
mkfs.ext4 -q -F "$work/ext4.img"
n_saved=$n; n=$(( n / 4 > 5 ? n / 4 : 5 ))
bench fsck "/usr/sbin/fsck -n $work/ext4.img >/dev/null 2>&1" "$B/fsck -n $work/ext4.img >/dev/null 2>&1"
n=$n_saved
names+=(fsck)

date=$(date -u +%Y-%m-%d)
out=$repo/bench/results/local-tools-$date.md
{
    echo "# Local tools vs util-linux, $date"
    echo
    echo "Command: \`$cmdline\` (ssi: $("$ssi" --version 2>/dev/null | head -1), util-linux $(/usr/bin/mount -V | sed -n 's/.*util-linux \([0-9.]*\).*/\1/p'))."
    echo "Host: $(nproc) cores, $(uname -r). Median of $rounds loops, microseconds per operation."
    echo
    echo "| operation | util-linux (us) | ssi (us) | ssi / util-linux |"
    echo "|---|---|---|---|"
    for k in "${names[@]}"; do
        u=${result[$k.util]} s=${result[$k.ssi]}
        echo "| $k | $u | $s | $(awk -v s="$s" -v u="$u" 'BEGIN {printf "%.2f", s / u}') |"
    done
} > "$out"
cat "$out"
echo "written: $out" >&2
