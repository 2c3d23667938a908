#!/bin/bash
# Build a small ext4 root file system image for VM tests and benchmarks,
# without mounting anything: a staging directory is filled and handed to
# `mkfs.ext4 -d`.
#
# Content: a static busybox at /usr/bin/busybox, merged-usr symlinks
# (bin, sbin, lib -> usr/...), empty /proc /sys /dev /run /tmp /etc /root,
# and /sbin/init, by default the marker script init.sh next to this file.
#
# usage: mkroot.sh IMG [--uuid UUID] [--label LABEL] [--init FILE]
#                      [--init-not-executable] [--size SIZE]
#                      [--busybox PATH] [--add SRC:DEST]...
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=$(basename "$0")

usage() {
    cat >&2 <<EOF
usage: $prog IMG [options]
  IMG                    the image file to write (overwritten)
  --uuid UUID            file system UUID (default: random)
  --label LABEL          file system label (default: ssi-testroot)
  --init FILE            script or program to install as /sbin/init
                         (default: $here/init.sh)
  --init-not-executable  install /sbin/init with mode 0644 (an error test)
  --size SIZE            image size for mkfs.ext4 (default: 64M)
  --busybox PATH         static busybox to install (default: /usr/bin/busybox)
  --add SRC:DEST         also copy the file SRC to DEST (absolute) in the root
EOF
}

# shellcheck source=options.sh
. "$here/options.sh"

img=""
uuid=""
label="ssi-testroot"
init="$here/init.sh"
init_mode=0755
size="64M"
busybox=/usr/bin/busybox
adds=()

while [ $# -gt 0 ]; do
    case "$1" in
        --uuid) need_arg "$@"; uuid=$2; shift 2 ;;
        --label) need_arg "$@"; label=$2; shift 2 ;;
        --init) need_arg "$@"; init=$2; shift 2 ;;
        --init-not-executable) init_mode=0644; shift ;;
        --size) need_arg "$@"; size=$2; shift 2 ;;
        --busybox) need_arg "$@"; busybox=$2; shift 2 ;;
        --add) need_arg "$@"; adds+=("$2"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option: $1" ;;
        *)
            [ -z "$img" ] || die "more than one image path: '$img' and '$1'"
            img=$1; shift ;;
    esac
done

[ -n "$img" ] || { usage; die "missing IMG"; }
# Absolute, because the script changes directory before mkfs runs.
case "$img" in /*) ;; *) img="$PWD/$img" ;; esac
[ -f "$init" ] || die "init file not found: $init"
[ -f "$busybox" ] || die "busybox not found: $busybox"
if [ -n "$uuid" ] && ! [[ "$uuid" =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]]; then
    die "not a UUID: $uuid"
fi
[ ${#label} -le 16 ] || die "ext4 labels have at most 16 bytes: $label"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (install e2fsprogs)"
if file_out=$(LC_ALL=C file -b "$busybox" 2>/dev/null) && [[ "$file_out" == *dynamically* ]]; then
    die "$busybox is dynamically linked; the test root needs a static busybox (busybox-static)"
fi

staging=$(mktemp -d "${TMPDIR:-/tmp}/ssi-mkroot.XXXXXX")
trap 'rm -rf "$staging"' EXIT

cd "$staging"
mkdir -p usr/bin usr/sbin usr/lib proc sys dev run tmp etc root var
chmod 1777 tmp
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
install -m 0755 "$busybox" usr/bin/busybox
install -m "$init_mode" "$init" usr/sbin/init
echo "root:x:0:0:root:/root:/bin/sh" > etc/passwd
echo "root:x:0:" > etc/group
echo "ssi-testroot" > etc/hostname

for spec in "${adds[@]}"; do
    src=${spec%%:*}
    dest=${spec#*:}
    [ "$src" != "$spec" ] && [ -n "$src" ] && [ "${dest#/}" != "$dest" ] \
        || die "--add wants SRC:/ABSOLUTE/DEST, got: $spec"
    [ -e "$src" ] || die "--add source not found: $src"
    mkdir -p "$staging/$(dirname "$dest")"
    cp -a "$src" "$staging/$dest"
done
cd /

args=(-q -F -d "$staging" -L "$label")
[ -z "$uuid" ] || args+=(-U "$uuid")
rm -f "$img"
: > "$img"   # an existing file keeps mke2fs from saying "Creating regular file"
mkfs.ext4 "${args[@]}" "$img" "$size"
