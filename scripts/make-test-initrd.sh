#!/usr/bin/env bash
# Builds the busybox initramfs the boot tests PXE-boot: a reproducible cpio
# (sorted, fixed mtimes, gzip -n) with busybox-static, the NIC, squashfs, overlay,
# loop and nbd modules of the
# test kernel (.cache/kernel, see test-kernel.sh) and an /init that
#   - mounts proc, sys, dev; loads virtio_net;
#   - runs udhcpc on eth0 (so the OS-side DHCP of the node is exercised too);
#   - prints "SHOAL-TEST-BOOT host=<name> ip=<ip> mac=<shoal.mac>" on the console;
#   - powers the machine off (QEMU -no-reboot then exits);
#   - or, with ref.image=URL on the kernel command line, does what the shoal
#     agent does the plain way (the benchmark's reference setup): wget the
#     image into a tmpfs, loop-mount it read-only under a tmpfs overlay,
#     write /etc/hostname (from DHCP) and /etc/shoal/image (ref.name=) and
#     switch_root to its /sbin/init.
# Usage: make-test-initrd.sh OUT.gz   (env KDIR, default .cache/kernel)
set -euo pipefail
out=${1:?usage: make-test-initrd.sh OUT.gz}
kdir=${KDIR:-.cache/kernel}
kver=$(cat "$kdir/KVER")
modroot=$(realpath "$kdir/root")
epoch=1700000000
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules/$kver}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
ln -sf ../bin/busybox "$root/sbin/modprobe"
for m in virtio_pci virtio_net squashfs overlay loop nbd; do
  modprobe -d "$modroot" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}' || true
done | sort -u | while read -r f; do
  rel=${f#"$modroot"}; mkdir -p "$root$(dirname "$rel")"; cp "$f" "$root$rel"
done
cp "$modroot"/lib/modules/"$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
depmod -b "$root" "$kver"
cat >"$root/etc/udhcpc.script" <<'S'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
    { echo "IP=$ip"; echo "DHCP_HOSTNAME=$hostname"; } >/run/lease ;;
esac
exit 0
S
chmod 755 "$root/etc/udhcpc.script"
cat >"$root/init" <<'S'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
MAC=; HOST=; REF=; REFNAME=
for w in $(cat /proc/cmdline); do
  case "$w" in shoal.mac=*) MAC=${w#shoal.mac=} ;; shoal.hostname=*) HOST=${w#shoal.hostname=} ;;
    ref.image=*) REF=${w#ref.image=} ;; ref.name=*) REFNAME=${w#ref.name=} ;; esac
done
modprobe -q virtio_pci; modprobe -q virtio_net
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done
ip link set lo up; ip link set eth0 up
IP=none; DHCP_HOSTNAME=
if udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /etc/udhcpc.script >/tmp/udhcpc.log 2>&1; then . /run/lease; else echo "DHCP-FAILED"; cat /tmp/udhcpc.log; fi
if [ -n "$REF" ]; then
  modprobe -q squashfs; modprobe -q loop; modprobe -q overlay
  mkdir -p /img /newroot; mount -t tmpfs tmpfs /img
  if ! wget -q -O /img/image "$REF"; then echo "REF-FETCH-FAILED $REF"; poweroff -f; fi
  mount -t tmpfs tmpfs /run; mkdir -p /run/shoal/lower /run/shoal/upper /run/shoal/work
  mount -t squashfs -o loop,ro /img/image /run/shoal/lower
  mount -t overlay overlay -o lowerdir=/run/shoal/lower,upperdir=/run/shoal/upper,workdir=/run/shoal/work /newroot
  echo "${DHCP_HOSTNAME:-$HOST}" >/newroot/etc/hostname; echo "$REFNAME" >/newroot/etc/shoal/image
  mkdir -p /newroot/run; mount --move /run /newroot/run
  umount /proc /sys 2>/dev/null; mount --move /dev /newroot/dev
  exec switch_root /newroot /sbin/init
fi
echo "SHOAL-TEST-BOOT host=${DHCP_HOSTNAME:-$HOST} ip=$IP mac=$MAC"
poweroff -f
S
chmod 755 "$root/init"
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$out"
echo "make-test-initrd: $out ($(stat -c %s "$out") bytes, modules for $kver)"
