#!/bin/bash
# Build a disk that boots through GRUB (BIOS, i386-pc), as a node with its
# own disk does: an MBR partition table, GRUB's boot sector and core image
# in the gap before the first partition, and one ext4 partition holding the
# test root (mkroot.sh) with /boot/vmlinuz-VERSION, /boot/ssi-initrd.img-VERSION
# and /boot/grub/grub.cfg.
#
# grub.cfg is what update-grub would write from the package's entry:
# Debian's /etc/grub.d/00_header, then the package's debian/grub.d-ssi
# (/etc/grub.d/09_ssi), run as grub-mkconfig runs them. Nothing of the
# host's boot is read or written: grub-mkconfig itself probes the host's
# root, so the two scripts are run with the settings it would export, with
# /boot on a private tmpfs mount (unshare -m) so that GRUB's relative path
# of it is /boot, as on the disk.
#
# GRUB goes on without grub-install: that needs a partitioned loop device
# mounted, and the test hosts' /dev (devtmpfs in a container) gets no
# partition nodes. grub-mkimage writes the core image with its own sector
# list filled in (it follows the boot sector at sector 1, where boot.img
# looks by default), so the boot sector is boot.img's first 440 bytes (the
# partition table stays) and the core image is written at sector 1: what
# grub-bios-setup does for a disk with an MBR gap.
#
# usage: mkgrubdisk.sh DISK --kernel VMLINUZ --image SSI_IMAGE --version VERSION
#                      [--uuid UUID] [--label LABEL] [--cmdline ARGS]
#                      [--grub-lib DIR] [--entry SCRIPT]
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # sfdisk, for a non-login shell

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=$(basename "$0")

# shellcheck source=options.sh
. "$here/options.sh"

disk=""
kernel=""
image=""
version=""
uuid=$(cat /proc/sys/kernel/random/uuid)
label="ssi-grubroot"
cmdline="console=ttyS0 panic=-1"
grub_lib=/usr/lib/grub/i386-pc
entry="$here/../../debian/grub.d-ssi"

while [ $# -gt 0 ]; do
    case "$1" in
        --kernel) need_arg "$@"; kernel=$2; shift 2 ;;
        --image) need_arg "$@"; image=$2; shift 2 ;;
        --version) need_arg "$@"; version=$2; shift 2 ;;
        --uuid) need_arg "$@"; uuid=$2; shift 2 ;;
        --label) need_arg "$@"; label=$2; shift 2 ;;
        --cmdline) need_arg "$@"; cmdline=$2; shift 2 ;;
        --grub-lib) need_arg "$@"; grub_lib=$2; shift 2 ;;
        --entry) need_arg "$@"; entry=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option: $1" ;;
        *) [ -z "$disk" ] || die "more than one disk path: '$disk' and '$1'"; disk=$1; shift ;;
    esac
done
[ -n "$disk" ] || die "missing DISK"
[ -f "$kernel" ] || die "--kernel: no such file: '$kernel'"
[ -f "$image" ] || die "--image: no such file: '$image'"
[ -n "$version" ] || die "--version is needed (the kernel's version, as in /boot/vmlinuz-VERSION)"
[ -f "$grub_lib/boot.img" ] || die "no $grub_lib/boot.img: install grub-pc-bin (scripts/setup does)"
[ -x /etc/grub.d/00_header ] || die "no /etc/grub.d/00_header: install grub-common"
[ -f "$entry" ] || die "the package's GRUB entry script is not at $entry"
for tool in grub-mkimage sfdisk unshare mkfs.ext4; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/setup installs grub-pc-bin, fdisk, util-linux, e2fsprogs)"
done
case "$disk" in /*) ;; *) disk="$PWD/$disk" ;; esac
kernel=$(readlink -f "$kernel")
image=$(readlink -f "$image")
entry=$(readlink -f "$entry")

work=$(mktemp -d "${TMPDIR:-/tmp}/ssi-mkgrubdisk.XXXXXX")
trap 'rm -rf "$work"' EXIT

# grub.cfg, as update-grub would write it on the node.
mkdir "$work/root"
env PATH=/usr/sbin:/usr/bin:/sbin:/bin pkgdatadir=/usr/share/grub \
    GRUB_DEVICE=/dev/vda1 GRUB_DEVICE_UUID="$uuid" GRUB_DISTRIBUTOR=Debian \
    GRUB_TIMEOUT=0 GRUB_TIMEOUT_STYLE=menu GRUB_DEFAULT=0 \
    GRUB_TERMINAL_INPUT=serial GRUB_TERMINAL_OUTPUT=serial \
    GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200" \
    GRUB_CMDLINE_LINUX="$cmdline" GRUB_CMDLINE_LINUX_DEFAULT="" \
  unshare -m sh -c '
    set -e
    mount -t tmpfs none "$1"
    mkdir "$1/boot"
    ln -s "$2" "$1/boot/vmlinuz-$4"
    ln -s "$3" "$1/boot/ssi-initrd.img-$4"
    export SSI_GRUB_BOOT="$1/boot"
    /etc/grub.d/00_header
    sh "$5"
  ' sh "$work/root" "$kernel" "$image" "$version" "$entry" > "$work/grub.cfg" 2> "$work/grub.err" \
    || { cat "$work/grub.err" >&2; die "writing grub.cfg failed"; }
grep -q "^menuentry .*(ssi)" "$work/grub.cfg" || { cat "$work/grub.err" >&2; die "the entry script wrote no ssi entry"; }

# The root partition's file system.
"$here/mkroot.sh" "$work/fs.img" --uuid "$uuid" --label "$label" --size 64M \
    --add "$kernel:/boot/vmlinuz-$version" --add "$image:/boot/ssi-initrd.img-$version" \
    --add "$work/grub.cfg:/boot/grub/grub.cfg" >/dev/null

# GRUB's core image: every module the configuration uses is in it (the
# disk has no /boot/grub/i386-pc to load more from).
grub-mkimage -O i386-pc -d "$grub_lib" -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux gzio echo serial terminal test boot search configfile
core_size=$(stat -c %s "$work/core.img")
[ "$core_size" -lt $((2047 * 512)) ] || die "GRUB's core image ($core_size bytes) does not fit the 1 MiB gap"

# The disk: 1 MiB gap, then the partition.
rm -f "$disk"
truncate -s $((1048576 + $(stat -c %s "$work/fs.img"))) "$disk"
echo "start=2048, type=83, bootable" | sfdisk -q "$disk"
dd if="$work/fs.img" of="$disk" bs=1M seek=1 conv=notrunc status=none
dd if="$grub_lib/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=1 conv=notrunc status=none
echo "$prog: $disk: GRUB, partition 1 ext4 UUID=$uuid with /boot/vmlinuz-$version and /boot/ssi-initrd.img-$version"
