#!/bin/busybox sh
# /sbin/init of the VM test root (see mkroot.sh). It reports, on the
# console, what the initramfs handed over, as lines starting "SSI-TEST ",
# then either powers the guest off or, with `ssi.test.shell` on the kernel
# command line, runs an interactive shell on the console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
bb=/usr/bin/busybox

echo "SSI-TEST real-init pid=$$"

if $bb cat /proc/self/stat >/dev/null 2>&1; then
    echo "SSI-TEST proc=yes"
else
    echo "SSI-TEST proc=no"
    $bb mount -t proc proc /proc
fi

if [ -c /dev/console ]; then
    echo "SSI-TEST devconsole=yes"
else
    echo "SSI-TEST devconsole=no"
    $bb mount -t devtmpfs devtmpfs /dev
fi
[ -d /sys/kernel ] || $bb mount -t sysfs sysfs /sys

rootline=""
while read -r dev mnt rest; do
    [ "$mnt" = "/" ] && rootline="$dev $mnt $rest"
done < /proc/mounts
echo "SSI-TEST rootmount=$rootline"

read -r up idle < /proc/uptime
echo "SSI-TEST uptime=$up"

cmdline=$($bb cat /proc/cmdline)
echo "SSI-TEST cmdline=$cmdline"

case " $cmdline " in
    *" ssi.test.shell "*)
        echo "SSI-TEST shell"
        exec $bb setsid $bb cttyhack $bb sh -l
        ;;
esac

echo "SSI-TEST poweroff"
$bb sync
exec $bb poweroff -f
