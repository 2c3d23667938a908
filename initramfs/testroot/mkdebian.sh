#!/bin/bash
# Build the Debian 12 root the VM tests hand off to: debootstrap minbase
# with systemd and the cluster's run-time libraries (cached in CACHE, built
# when missing: about a minute from Debian's mirror), then an ext4 image of
# it made without mounting (mkfs.ext4 -d) with the test's changes:
#   - root logs in on the serial console by itself (the tests type there);
#   - ssi-test-marker.service prints "SSI-TEST multi-user" on the console
#     when multi-user.target is reached;
#   - no /etc/hostname and an empty machine-id: the hostname comes from
#     ssi-init (the cluster node's name), the machine-id is made at boot.
# kmod (modprobe) is there as on any Debian machine: the CFS test's
# intruder loads the NFS client with it. make and gcc build a real C tree
# (Lua, SourceTree.swift) in the load-leveling test.
# The distro's corosync package is installed and its service enabled, as an
# administrator's would be: ssi-init must keep it from starting a second
# corosync. The CFS init node's services come from the distro too: the
# kernel NFS server (nfs-kernel-server) and dnsmasq (dnsmasq-base: the
# program without a system-wide service).
#
# The cache is rebuilt when it is missing or was made with another package
# list (a stamp file beside it holds the list).
#
# usage: mkdebian.sh IMG [--cache DIR] [--uuid UUID] [--label LABEL] [--size SIZE]
#                        [--copy SRC:DEST]...   (host file or folder SRC to DEST in the image)
#                        [--deb FILE]...        (install the package FILE in the image: dpkg -i in a chroot)
set -euo pipefail

prog=$(basename "$0")
die() { echo "$prog: error: $*" >&2; exit 2; }

img=""; cache=/var/cache/ssi-test; uuid=""; label=ssi-debian; size=2G; copies=(); debs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --cache) cache=${2:?--cache needs a value}; shift 2 ;;
        --uuid) uuid=${2:?--uuid needs a value}; shift 2 ;;
        --label) label=${2:?--label needs a value}; shift 2 ;;
        --size) size=${2:?--size needs a value}; shift 2 ;;
        --copy) case "${2:?--copy needs SRC:DEST}" in *:/*) copies+=("$2") ;; *) die "--copy $2: want SRC:/DEST" ;; esac; shift 2 ;;
        --deb) [ -f "${2:?--deb needs a FILE}" ] || die "--deb $2: no such file"; debs+=("$(realpath "$2")"); shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        -*) die "unknown option: $1" ;;
        *) [ -z "$img" ] || die "more than one image path"; img=$1; shift ;;
    esac
done
[ -n "$img" ] || die "missing IMG"
case "$img" in /*) ;; *) img="$PWD/$img" ;; esac
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (apt-get install e2fsprogs)"

root="$cache/debian-root"
packages=systemd,systemd-sysv,udev,kmod,libkmod2,libblkid1,libcpg4,libquorum5,libvotequorum8,libcmap4,libzstd1,liblzma5,procps,iproute2,corosync,nfs-kernel-server,dnsmasq-base,gfs2-utils,criu,libsodium23,make,gcc,libc6-dev
stamp="$root.packages"
# Tests that may run side by side (two runs on one machine, a test's
# chroot copy, the VM suite): one builds the cache while the others wait (exclusive),
# and copies of it (shared) keep the Lua reference build made inside it
# (SourceTree.swift, exclusive) out of their images.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -x "$root/lib/systemd/systemd" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$packages" ]; then
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    rm -rf "$root.tmp"
    echo "$prog: building the Debian root in $root (debootstrap, about a minute)" >&2
    debootstrap --variant=minbase --include="$packages" bookworm "$root.tmp" >&2 \
        || die "debootstrap failed (see above)"
    rm -rf "$root"
    mv "$root.tmp" "$root"
    echo "$packages" > "$stamp"
fi

staging=$(mktemp -d)
bound=()
cleanup() {
    local m
    for m in "${bound[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -rf --one-file-system "$staging"
}
trap cleanup EXIT
flock -s 9
cp -a "$root/." "$staging/"
flock -u 9
rm -f "$staging/etc/hostname"
: > "$staging/etc/machine-id"
mkdir -p "$staging/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$staging/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I linux
UNIT
# No device timeout of its own: on a shared root ssi-init writes one
# (/run/systemd/system.conf.d/50-ssi-shared-root.conf), which the CFS test checks.
cat > "$staging/etc/systemd/system/ssi-test-marker.service" <<'UNIT'
[Unit]
Description=Tell the VM test that multi-user.target was reached
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "SSI-TEST multi-user $(cut -d" " -f1 /proc/uptime)" > /dev/console'
[Install]
WantedBy=multi-user.target
UNIT
ln -sf ../ssi-test-marker.service "$staging/etc/systemd/system/multi-user.target.wants/ssi-test-marker.service"
# init= for a plain machine on the cluster network (the CFS test's
# intruder): this Debian with the tools, none of the cluster's files (the
# copy is a qemu snapshot: nothing reaches the image), a root shell on the
# console after "SSI-TEST plain".
mkdir -p "$staging/usr/local/sbin"
cat > "$staging/usr/local/sbin/ssi-test-plain" <<'SCRIPT'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
# Debian's initramfs moved /proc, /sys, /dev and /run here already.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -o remount,rw /
mountpoint -q /run || mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
rm -rf /etc/ssi /srv/ssi /etc/corosync/authkey
hostname intruder
ip link set lo up
echo "SSI-TEST plain"
# -w: when setsid must fork (init leads its process group), init waits
# for the shell instead of exiting (the kernel panics when init exits).
exec setsid -w -c /bin/bash -i <>/dev/ttyS0 >&0 2>&1
SCRIPT
chmod 755 "$staging/usr/local/sbin/ssi-test-plain"
# A quiet prompt the harness can type after, and no bracketed-paste escapes
# around command output (they would glue onto the harness's marker lines).
echo 'PS1="# "' >> "$staging/root/.bashrc"
echo 'set enable-bracketed-paste off' > "$staging/root/.inputrc"
for c in "${copies[@]}"; do
    src=${c%%:/*}; dest=/${c#*:/}
    [ -e "$src" ] || die "--copy $c: $src does not exist"
    mkdir -p "$staging$(dirname "$dest")"
    cp -a "$src" "$staging$dest"
done

# Packages (the ssi .deb): dpkg -i in the staging root, /proc and /dev
# bound for the maintainer scripts, then unbound before the image is made.
if [ ${#debs[@]} -gt 0 ]; then
    for m in proc dev; do mount --bind "/$m" "$staging/$m"; bound+=("$staging/$m"); done
    mkdir -p "$staging/tmp/debs"
    cp "${debs[@]}" "$staging/tmp/debs/"
    chroot "$staging" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
        sh -c 'dpkg -i /tmp/debs/*.deb' >&2 || die "dpkg -i ${debs[*]} failed in the test root (see above)"
    rm -rf "$staging/tmp/debs"
    for m in "${bound[@]}"; do umount "$m"; done
    bound=()
fi

args=(-q -F -d "$staging" -L "$label")
[ -z "$uuid" ] || args+=(-U "$uuid")
rm -f "$img"
: > "$img"
mkfs.ext4 "${args[@]}" "$img" "$size"
