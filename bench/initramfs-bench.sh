#!/usr/bin/env bash
# Image build and boot benchmark (DESIGN.md section 5): `ssi mkinitrd`
# against mkinitramfs (initramfs-tools) and dracut (dracut-core), for one
# kernel version and the same module list, measured in the same run.
#
# Per generator: build wall time and peak RSS (GNU time, median of N),
# image size, whether two consecutive builds are byte-identical, and the
# guest uptime at which the root's /sbin/init runs when the image boots a
# test root under qemu (TCG), median of N boots. Prints a table with the
# peers' ratios to ssi and writes the same as Markdown to
# bench/results/initramfs-<date>.md; boot and build logs go to
# bench/out/initramfs-<date>/.
#
# usage: bench/initramfs-bench.sh [--kver VER] [--runs N] [--boots N] [--quick]
#                                 [--ssi PATH] [--timeout SECONDS] [--keep]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
prog=$(basename "$0")
cmdline="bench/$prog${*:+ $*}"

# ssi's default module list (ssi mkinitrd --help, Sources/ssi), given to
# all three generators.
MODULES=(virtio_pci virtio_blk virtio_scsi virtio_net virtio_console ahci nvme
         sd_mod ext4 nfsv4 gfs2 dlm configfs)
# dracut modules that add kernel modules of their own beyond --drivers in
# --no-hostonly mode (dm/md raid, dm-crypt and all of crypto/, nvdimm,
# virtiofs+fuse, overlayfs, qemu's ata_piix/sr_mod/virtio-rng/...).
DRACUT_OMIT="crypt dm nvdimm qemu virtiofs overlay-root"
ROOT_UUID=0b5e7c1d-55a1-4b3c-9d2e-1a2b3c4d5e6f
GENS=(ssi mkinitramfs dracut)
export SOURCE_DATE_EPOCH=1700000000
export LC_ALL=C

usage() {
    cat <<EOF
usage: $prog [options]
  --kver VER        kernel version (default: the newest in /lib/modules
                    that has /boot/vmlinuz-VER)
  --runs N          builds per generator, median reported (default 3)
  --boots N         qemu boots per generator, median reported (default 3)
  --quick           --runs 1 --boots 1
  --ssi PATH        the ssi binary (default: $repo/.build/release/ssi)
  --timeout S       limit for one qemu boot, seconds (default 240)
  --keep            keep the temporary work directory (images)
EOF
}

die() { echo "$prog: error: $*" >&2; exit 2; }

kver=""
runs=3
boots=3
ssi="$repo/.build/release/ssi"
boot_timeout=240
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --kver) [ $# -ge 2 ] || die "--kver needs a value"; kver=$2; shift 2 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; runs=$2; shift 2 ;;
        --boots) [ $# -ge 2 ] || die "--boots needs a value"; boots=$2; shift 2 ;;
        --quick) runs=1; boots=1; shift ;;
        --ssi) [ $# -ge 2 ] || die "--ssi needs a value"; ssi=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; boot_timeout=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer"
[[ "$boots" =~ ^[1-9][0-9]*$ ]] || die "--boots wants a positive integer"
[[ "$boot_timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout wants a positive integer"

# ---- tools -----------------------------------------------------------------
missing=()
need() { # program package
    if [ "${1#/}" != "$1" ]; then [ -x "$1" ] || missing+=("$1 (apt-get install $2)")
    else command -v "$1" >/dev/null || missing+=("$1 (apt-get install $2)"); fi
}
need mkinitramfs initramfs-tools
need dracut dracut-core
need qemu-system-x86_64 qemu-system-x86
need /usr/bin/time time
need mkfs.ext4 e2fsprogs
need /usr/bin/busybox busybox-static
need zstd zstd
need cpio cpio
need cmp diffutils
need timeout coreutils
need depmod kmod
need column bsdextrautils
if [ ${#missing[@]} -gt 0 ]; then
    echo "$prog: missing tools:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "(scripts/setup --bench installs all of them)" >&2
    exit 1
fi
[ -x "$ssi" ] || die "ssi binary not found: $ssi
  build it: cd $repo && scripts/build"
[ -x "$repo/initramfs/testroot/mkroot.sh" ] || die "missing $repo/initramfs/testroot/mkroot.sh"

if [ -z "$kver" ]; then
    for v in $(ls -1 /lib/modules 2>/dev/null | sort -rV); do
        if [ -f "/boot/vmlinuz-$v" ]; then kver=$v; break; fi
    done
    [ -n "$kver" ] || die "no kernel with both /lib/modules/VER and /boot/vmlinuz-VER (apt-get install linux-image-amd64)"
fi
kernel=/boot/vmlinuz-$kver
[ -f "$kernel" ] || die "no $kernel"
[ -d "/lib/modules/$kver" ] || die "no /lib/modules/$kver"

# ---- work space --------------------------------------------------------------
stamp=$(date +%Y-%m-%d-%H%M%S)
results_dir="$here/results"
results_md="$results_dir/initramfs-$stamp.md"
logdir="$here/out/initramfs-$stamp"
mkdir -p "$results_dir" "$logdir"
work=$(mktemp -d "${TMPDIR:-/tmp}/ssi-initramfs-bench.XXXXXX")
cleanup() {
    if [ "$keep" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/tmp" "$work/img"
export TMPDIR="$work/tmp"   # mkinitramfs' and dracut's scratch space

start_s=$SECONDS
modlist_csv=$(IFS=,; echo "${MODULES[*]}")
modlist_sp="${MODULES[*]}"

log() { echo "== $*" >&2; }

# initramfs-tools: its own configuration directory, MODULES=list.
itconf="$work/initramfs-tools"
mkdir -p "$itconf/conf.d" "$itconf/scripts" "$itconf/hooks"
cat > "$itconf/initramfs.conf" <<EOF
MODULES=list
BUSYBOX=auto
KEYMAP=n
COMPRESS=zstd
DEVICE=
NFSROOT=auto
RUNSIZE=10%
FSTYPE=auto
EOF
printf '%s\n' "${MODULES[@]}" > "$itconf/modules"

# dracut: an empty configuration instead of /etc/dracut.conf{,.d}.
: > "$work/dracut.conf"
mkdir -p "$work/dracut.conf.d"

# The build commands, as an argv in CMD (run under GNU time, and printed
# into the results).
set_cmd() { # gen out
    case "$1" in
        ssi) CMD=("$ssi" mkinitrd -o "$2" --kver "$kver" --no-default-modules
                  --add-modules "$modlist_csv" --force -q) ;;
        mkinitramfs) CMD=(mkinitramfs -d "$itconf" -o "$2" "$kver") ;;
        dracut) CMD=(dracut -q --conf "$work/dracut.conf" --confdir "$work/dracut.conf.d"
                     --no-hostonly --drivers "$modlist_sp" --omit "$DRACUT_OMIT"
                     --compress zstd --reproducible --force --kver "$kver" "$2") ;;
    esac
}
build_cmd() { # gen out -> the command, shell-quoted
    set_cmd "$1" "$2"
    local a out=""
    for a in "${CMD[@]}"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./,=:@%+-]+$ ]]; then out+="$a "; else out+="'$a' "; fi
    done
    out=${out% }
    echo "${out//$work/\$WORK}"
}

median() { # numbers... -> median, or "-" when none
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{a[NR]=$1}
        END { if (NR == 0) print "-";
              else if (NR % 2) print a[(NR + 1) / 2];
              else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
ratio() { # a b -> a/b as "N.NNx", or "n/a"
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "n/a";
        else printf "%.2fx\n", a / b }'
}
mib() { awk -v b="$1" 'BEGIN { if (b == "-" || b == "") print "-"; else printf "%.2f\n", b / 1048576 }'; }

# GNU time into a file; "ELAPSED MAXRSS_KB USER SYS" is its last line even after a
# "Command exited with non-zero status" line.
timed() { # timefile logfile cmd...
    local tf=$1 lf=$2; shift 2
    /usr/bin/time -o "$tf" -f '%e %M %U %S' "$@" >"$lf" 2>&1
}

# ---- builds ------------------------------------------------------------------
declare -A T RSS CPU SIZE BUILD_OK REPRO IMG
for g in "${GENS[@]}"; do T[$g]=""; RSS[$g]=""; CPU[$g]=""; BUILD_OK[$g]=1; done
nbuilds=$runs; [ "$nbuilds" -ge 2 ] || nbuilds=2    # two builds for cmp
for ((r = 1; r <= nbuilds; r++)); do
    for g in "${GENS[@]}"; do        # interleaved: load drift hits all alike
        [ "${BUILD_OK[$g]}" = 1 ] || continue
        out="$work/img/$g-$r.img"
        log "build $r/$nbuilds: $g"
        set_cmd "$g" "$out"
        if ! timed "$work/time" "$logdir/build-$g-$r.log" "${CMD[@]}" || [ ! -s "$out" ]; then
            echo "$prog: $g build $r failed; log: $logdir/build-$g-$r.log" >&2
            tail -n 20 "$logdir/build-$g-$r.log" >&2 || true
            BUILD_OK[$g]=0
            continue
        fi
        if [ "$r" -le "$runs" ]; then
            read -r e m u sy < <(tail -n 1 "$work/time")
            T[$g]+="$e "; RSS[$g]+="$m "
            CPU[$g]+="$(awk -v u="$u" -v s="$sy" 'BEGIN { printf "%.2f", u + s }') "
        fi
        [ -s "$logdir/build-$g-$r.log" ] || rm -f "$logdir/build-$g-$r.log"
    done
done
for g in "${GENS[@]}"; do
    if [ "${BUILD_OK[$g]}" = 1 ]; then
        IMG[$g]="$work/img/$g-1.img"
        SIZE[$g]=$(stat -c %s "${IMG[$g]}")
        if cmp -s "$work/img/$g-1.img" "$work/img/$g-2.img"; then REPRO[$g]=yes; else REPRO[$g]=no; fi
    else
        IMG[$g]=""; SIZE[$g]="-"; REPRO[$g]="-"
    fi
done

# What each image holds, read with `ssi mkinitrd --list` (any generator's).
declare -A ARCH FILES KOS CONTENT
for g in "${GENS[@]}"; do
    ARCH[$g]="-"; FILES[$g]="-"; KOS[$g]="-"; CONTENT[$g]="-"
    [ -n "${IMG[$g]}" ] || continue
    "$ssi" mkinitrd --list "${IMG[$g]}" > "$logdir/list-$g.txt" 2>&1 || continue
    read -r "ARCH[$g]" "FILES[$g]" "KOS[$g]" "CONTENT[$g]" < <(awk '
        /^# archive/ { n++; split($0, p, ": "); split(p[2], q, ","); comp = comp (comp ? "+" : "") q[1]; next }
        /^-/ { f++; bytes += $2; if ($3 ~ /\.ko(\.(xz|zst|gz))?$/) k++ }
        END { printf "%d:%s %d %d %d\n", n, comp, f, k, bytes }' "$logdir/list-$g.txt")
done

# ssi at other zstd levels (informative: how much of its build time is
# compression). Same command plus --compress/--compress-level.
declare -A LV_T LV_S
ssi_levels=("none" 3 9)
for lv in "${ssi_levels[@]}"; do
    LV_T[$lv]=""; LV_S[$lv]="-"
    for ((r = 1; r <= runs; r++)); do
        out="$work/img/ssi-level-$lv.img"
        if [ "$lv" = none ]; then extra=(--compress none); else extra=(--compress-level "$lv"); fi
        log "build $r/$runs: ssi ${extra[*]}"
        if timed "$work/time" "$work/lv.log" "$ssi" mkinitrd -o "$out" --kver "$kver" \
                --no-default-modules --add-modules "$modlist_csv" --force -q "${extra[@]}"; then
            read -r e _ < <(tail -n 1 "$work/time")
            LV_T[$lv]+="$e "; LV_S[$lv]=$(stat -c %s "$out")
        fi
    done
    rm -f "$work/img/ssi-level-$lv.img"
done
# Only the two images per generator compared are needed from here on.
for g in "${GENS[@]}"; do
    for ((r = 2; r <= nbuilds; r++)); do rm -f "$work/img/$g-$r.img"; done
done

# ---- boots -------------------------------------------------------------------
# The floor (issue 19: ssi's hand-off within 1.5x of it): a busybox-only
# initramfs whose /init prints the uptime at once and powers off. Its figure
# is the kernel's own start and the unpacking of a 1 MB archive, nothing
# an initramfs generator could save; it boots with the same qemu command.
floordir=$work/floor
mkdir -p "$floordir/bin" "$floordir/dev" "$floordir/proc"
cp /usr/bin/busybox "$floordir/bin/busybox"    # busybox-static: no libraries
mknod "$floordir/dev/console" c 5 1
cat > "$floordir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read -r up idle < /proc/uptime
echo "SSI-TEST uptime=$up"
exec /bin/busybox poweroff -f
EOF
chmod 755 "$floordir/init"
(cd "$floordir" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | zstd -q -3 > "$work/img/floor.img"
IMG[floor]=$work/img/floor.img
BOOTED=("${GENS[@]}" floor)

# A test root with an os-release file: systemd in dracut's image refuses to
# switch to a root without one ("not an OS tree").
printf 'ID=ssi-testroot\nNAME="ssi test root"\nPRETTY_NAME="ssi test root"\n' > "$work/os-release"
log "test root (mkroot.sh)"
"$repo/initramfs/testroot/mkroot.sh" "$work/root.img" --uuid "$ROOT_UUID" \
    --add "$work/os-release:/usr/lib/os-release" >"$logdir/mkroot.log" 2>&1 \
    || { cat "$logdir/mkroot.log" >&2; die "mkroot.sh failed"; }

qemu_cmd() { # img root log
    echo qemu-system-x86_64 -machine q35 -accel tcg -m 512 -nodefaults -no-reboot \
        -display none -serial "file:$3" -kernel "$kernel" -initrd "$1" \
        -append "'console=ttyS0 root=UUID=$ROOT_UUID ro quiet panic=-1'" \
        -drive "file=$2,format=raw,if=virtio"
}
declare -A UP BOOT_OK BOOT_NOTE
for g in "${BOOTED[@]}"; do UP[$g]=""; BOOT_OK[$g]=0; BOOT_NOTE[$g]=""; done
for ((b = 1; b <= boots; b++)); do
    for g in "${BOOTED[@]}"; do
        [ -n "${IMG[$g]}" ] || continue
        bl="$logdir/boot-$g-$b.log"
        cp --sparse=always "$work/root.img" "$work/root-boot.img"   # fresh root each boot
        log "boot $b/$boots: $g"
        rc=0
        timeout --kill-after=10 "$boot_timeout" qemu-system-x86_64 -machine q35 -accel tcg \
            -m 512 -nodefaults -no-reboot -display none -serial "file:$bl" \
            -kernel "$kernel" -initrd "${IMG[$g]}" \
            -append "console=ttyS0 root=UUID=$ROOT_UUID ro quiet panic=-1" \
            -drive "file=$work/root-boot.img,format=raw,if=virtio" \
            </dev/null >"$work/qemu.out" 2>&1 || rc=$?
        up=$(tr -d '\r' < "$bl" 2>/dev/null | sed -n 's/.*SSI-TEST uptime=\([0-9.][0-9.]*\).*/\1/p' | head -n 1)
        if [ -n "$up" ]; then
            UP[$g]+="$up "; BOOT_OK[$g]=$((BOOT_OK[$g] + 1))
        else
            if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then why="timeout ${boot_timeout}s"
            else why="qemu exit $rc, no marker"; fi
            BOOT_NOTE[$g]+="boot $b: $why (log $bl); "
            cat "$work/qemu.out" >> "$bl" 2>/dev/null || true
            echo "$prog: $g boot $b failed ($why); log kept: $bl" >&2
        fi
    done
done
rm -f "$work/root-boot.img"

# ---- report ------------------------------------------------------------------
declare -A MT MR MU MC
# shellcheck disable=SC2086
MU[floor]=$(median ${UP[floor]})
for g in "${GENS[@]}"; do
    # shellcheck disable=SC2086
    MT[$g]=$(median ${T[$g]})
    # shellcheck disable=SC2086
    MR[$g]=$(median ${RSS[$g]})
    # shellcheck disable=SC2086
    MU[$g]=$(median ${UP[$g]})
    # shellcheck disable=SC2086
    MC[$g]=$(median ${CPU[$g]})
done
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
ncpu=$(nproc)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
load=$(cut -d' ' -f1-3 /proc/loadavg)
qemu_ver=$(qemu-system-x86_64 --version | head -n 1)
ssi_ver=$("$ssi" --version 2>/dev/null || echo "?")
it_ver=$(dpkg-query -W -f='${Version}' initramfs-tools 2>/dev/null || echo "?")
dr_ver=$(dpkg-query -W -f='${Version}' dracut-core 2>/dev/null || echo "?")
git_rev=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if (cd "$repo" && ! git diff --quiet HEAD -- Sources Package.swift 2>/dev/null); then git_rev+=" (+ uncommitted changes in Sources/ or Package.swift)"; fi
ssi_bin_info="sha256 $(sha256sum "$ssi" | cut -c1-12), built $(date -u -r "$ssi" +'%Y-%m-%d %H:%M UTC')"
elapsed=$((SECONDS - start_s))

boot_cell() { # gen
    local g=$1
    if [ -z "${IMG[$g]}" ]; then echo "not built"
    elif [ "${BOOT_OK[$g]}" = 0 ]; then echo "FAILED (0/$boots)"
    elif [ "${BOOT_OK[$g]}" -lt "$boots" ]; then echo "${MU[$g]} (${BOOT_OK[$g]}/$boots ok)"
    else echo "${MU[$g]}"; fi
}
build_cell() { if [ "${BUILD_OK[$1]}" = 1 ]; then echo "${MT[$1]}"; else echo "FAILED"; fi; }
label() {
    case "$1" in
        ssi) echo "ssi mkinitrd $ssi_ver" ;;
        mkinitramfs) echo "mkinitramfs (initramfs-tools $it_ver)" ;;
        dracut) echo "dracut (dracut-core $dr_ver)" ;;
    esac
}
rss_mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f\n", k / 1024 }'; }

# Goals checked: >= 20x faster than the faster peer, smallest image, boot < 3.0 s,
# the hand-off within 1.5x of the floor.
goal_lines=()
fastest_peer="-"
for g in mkinitramfs dracut; do
    [ "${BUILD_OK[$g]}" = 1 ] || continue
    if [ "$fastest_peer" = "-" ] || awk -v a="${MT[$g]}" -v b="$fastest_peer" 'BEGIN { exit !(a < b) }'; then
        fastest_peer=${MT[$g]}
    fi
done
if [ "${BUILD_OK[ssi]}" = 1 ] && [ "$fastest_peer" != "-" ]; then
    sp=$(awk -v p="$fastest_peer" -v s="${MT[ssi]}" 'BEGIN { printf "%.2f", p / s }')
    met=$(awk -v x="$sp" 'BEGIN { print (x >= 20 ? "MET" : "NOT MET") }')
    goal_lines+=("build >= 20x faster than the faster peer: $met (faster peer ${fastest_peer} s / ssi ${MT[ssi]} s = ${sp}x)")
fi
if [ "${BUILD_OK[ssi]}" = 1 ]; then
    smallest=yes
    for g in mkinitramfs dracut; do
        [ "${SIZE[$g]}" = "-" ] && continue
        [ "${SIZE[ssi]}" -lt "${SIZE[$g]}" ] || smallest=no
    done
    goal_lines+=("smallest image: $([ $smallest = yes ] && echo MET || echo "NOT MET") (ssi $(mib "${SIZE[ssi]}") MiB; mkinitramfs $(mib "${SIZE[mkinitramfs]}") MiB; dracut $(mib "${SIZE[dracut]}") MiB)")
fi
if [ "${MU[ssi]}" != "-" ]; then
    met=$(awk -v x="${MU[ssi]}" 'BEGIN { print (x < 3.0 ? "MET" : "NOT MET") }')
    goal_lines+=("boot to real init < 3.0 s: $met (median ${MU[ssi]} s)")
else
    goal_lines+=("boot to real init < 3.0 s: NOT MET (ssi image did not boot)")
fi
if [ "${MU[ssi]}" != "-" ] && [ "${MU[floor]}" != "-" ]; then
    fr=$(ratio "${MU[ssi]}" "${MU[floor]}")
    met=$(awk -v a="${MU[ssi]}" -v b="${MU[floor]}" 'BEGIN { print (a <= 1.5 * b ? "MET" : "NOT MET") }')
    goal_lines+=("hand-off within 1.5x of the floor (a busybox-only initramfs's /init): $met (ssi ${MU[ssi]} s / floor ${MU[floor]} s = $fr)")
else
    goal_lines+=("hand-off within 1.5x of the floor: NOT MEASURED (ssi ${MU[ssi]} s, floor ${MU[floor]} s)")
fi

emit() { # fmt: text|md
    local fmt=$1 g
    local hdr=("generator" "build s" "peak RSS MiB" "image MiB" "reproducible" "boot to init s"
               "build / ssi" "size / ssi" "boot / ssi")
    rows=()
    for g in "${GENS[@]}"; do
        local bt br bs bb
        if [ "$g" = ssi ]; then bt="1"; bs="1"; bb="1"
        else
            bt=$(ratio "${MT[$g]}" "${MT[ssi]}"); bs=$(ratio "${SIZE[$g]}" "${SIZE[ssi]}")
            bb=$(ratio "${MU[$g]}" "${MU[ssi]}")
        fi
        rows+=("$(label "$g")|$(build_cell "$g")|$(rss_mib "${MR[$g]}")|$(mib "${SIZE[$g]}")|${REPRO[$g]}|$(boot_cell "$g")|$bt|$bs|$bb")
    done
    if [ "$fmt" = md ]; then
        echo "# initramfs build and boot benchmark, $(date -u +'%Y-%m-%d %H:%M UTC')"
        echo
        echo "Command: \`$cmdline\` (whole run: ${elapsed} s)"
        echo
        echo "- machine: $ncpu CPUs ($cpu), $mem RAM; load average at the end: $load"
        echo "- kernel: $kver ($kernel); qemu: $qemu_ver, TCG"
        echo "- ssi: $ssi_ver, binary $ssi_bin_info; git $git_rev"
        echo "- modules (all three): $modlist_sp"
        echo "- builds: median of $runs, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH; boots: median of $boots"
        echo
        local line="|"; for h in "${hdr[@]}"; do line+=" $h |"; done; echo "$line"
        line="|"; for h in "${hdr[@]}"; do line+="---|"; done; echo "$line"
        for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
    else
        echo
        echo "initramfs build and boot benchmark — kernel $kver"
        echo "machine: $ncpu CPUs, $cpu, $mem; load average now: $load"
        echo "builds: median of $runs; boots: median of $boots (guest uptime at the root's /sbin/init, qemu TCG)"
        echo
        ( IFS='|'; echo "${hdr[*]}"; printf '%s\n' "${rows[@]}" ) | column -t -s '|'
    fi
}

emit_details() { # fmt
    local fmt=$1 g lv
    local bq='`'; [ "$fmt" = md ] || bq=""
    echo
    if [ "$fmt" = md ]; then
        echo "Goals:"
        echo
        for l in "${goal_lines[@]}"; do echo "- $l"; done
        echo
        echo "What the images hold (read back with \`ssi mkinitrd --list\`):"
        echo
        echo "| generator | archives | regular files | .ko modules | unpacked bytes |"
        echo "|---|---|---|---|---|"
        for g in "${GENS[@]}"; do echo "| $g | ${ARCH[$g]} | ${FILES[$g]} | ${KOS[$g]} | ${CONTENT[$g]} |"; done
        echo
        echo "ssi at other compression settings (same command plus the option; median of $runs; not booted):"
        echo
        echo "| ssi option | build s | image MiB |"
        echo "|---|---|---|"
        echo "| (default: zstd level 3) | ${MT[ssi]} | $(mib "${SIZE[ssi]}") |"
        for lv in "${ssi_levels[@]}"; do
            # shellcheck disable=SC2086
            if [ "$lv" = none ]; then o="--compress none"; else o="--compress-level $lv"; fi
            echo "| \`$o\` | $(median ${LV_T[$lv]}) | $(mib "${LV_S[$lv]}") |"
        done
    else
        echo "goals:"
        for l in "${goal_lines[@]}"; do echo "  $l"; done
        echo
        echo "image contents (ssi mkinitrd --list): archives / regular files / .ko / unpacked bytes"
        for g in "${GENS[@]}"; do printf '  %-12s %-14s %6s files %5s .ko %12s bytes\n' "$g" "${ARCH[$g]}" "${FILES[$g]}" "${KOS[$g]}" "${CONTENT[$g]}"; done
        echo
        echo "ssi at other compression settings (build s / image MiB):"
        printf '  %-22s %8s s %8s MiB\n' "default (zstd 3)" "${MT[ssi]}" "$(mib "${SIZE[ssi]}")"
        for lv in "${ssi_levels[@]}"; do
            if [ "$lv" = none ]; then o="--compress none"; else o="--compress-level $lv"; fi
            # shellcheck disable=SC2086
            printf '  %-22s %8s s %8s MiB\n' "$o" "$(median ${LV_T[$lv]})" "$(mib "${LV_S[$lv]}")"
        done
    fi
    echo
    if [ "$fmt" = md ]; then
        echo "Samples (in run order):"
        echo
        echo "| generator | build wall s | build CPU s (user+sys), median | boot to init s |"
        echo "|---|---|---|---|"
        for g in "${GENS[@]}"; do echo "| $g | ${T[$g]% } | ${MC[$g]} | ${UP[$g]% } |"; done
        echo "| floor (busybox-only initramfs, its /init) | - | - | ${UP[floor]% } |"
    else
        echo "samples: build wall s | build CPU s (user+sys, median) | boot to init s"
        for g in "${GENS[@]}"; do printf '  %-12s %-20s | %-6s | %s\n' "$g" "${T[$g]% }" "${MC[$g]}" "${UP[$g]% }"; done
        printf '  %-12s %-20s | %-6s | %s\n' floor - - "${UP[floor]% }"
    fi
    echo
    for g in "${BOOTED[@]}"; do
        if [ -n "${BOOT_NOTE[$g]}" ]; then echo "${bq}$g${bq} boot failures: ${BOOT_NOTE[$g]}"; echo; fi
    done
    if [ "$fmt" = md ]; then
        echo "Commands (\$WORK, IMG, ROOT and LOG are temporary; the same qemu command for all three):"
        echo
        echo '```'
        for g in "${GENS[@]}"; do build_cmd "$g" IMG; done
        qemu_cmd IMG ROOT LOG
        echo '```'
        echo
        echo "Notes: build s and peak RSS are GNU time's %e and %M (%M is the largest"
        echo "single process of the tree, not a sum). Reproducible = two consecutive builds"
        echo "compare equal with cmp. Boot to init = the \`SSI-TEST uptime=\` line the test"
        echo "root's /sbin/init prints (initramfs/testroot/init.sh): guest uptime from kernel"
        echo "start to the real init running, under TCG. Compression as each tool does it"
        echo "by default: ssi zstd level 3 on all CPUs in-process; mkinitramfs \`zstd -q -9\`,"
        echo "one thread (it drops -T0 when SOURCE_DATE_EPOCH is set); dracut \`zstd -15 -q -T0\`."
        echo "mkinitramfs uses its own config dir (MODULES=list with the list in CONFDIR/modules,"
        echo "COMPRESS=zstd, BUSYBOX=auto). dracut runs with an empty config, \`--drivers\` and"
        echo "\`--omit '$DRACUT_OMIT'\`: with \`--drivers\` alone its other"
        echo "modules still add dm/md raid, all of crypto/, nvdimm, fuse/virtiofs, overlay,"
        echo "ata_piix, sr_mod, virtio-rng (189 .ko instead of 51 on 6.1.0-56). The test root"
        echo "carries /usr/lib/os-release for all three: systemd in dracut's image refuses to"
        echo "switch root without it (initrd-switch-root.service fails, emergency shell)."
        echo "Logs: bench/out/initramfs-$stamp/."
    fi
}

report_text=$(emit text; emit_details text)
echo "$report_text"
{ emit md; emit_details md; } > "$results_md"
echo
echo "whole run: ${elapsed} s"
echo "markdown: $results_md"
echo "logs: $logdir"
