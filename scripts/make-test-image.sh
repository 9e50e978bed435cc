#!/usr/bin/env bash
# Builds the small root image the diskless tests and `make demo` boot: a
# squashfs with busybox-static and an /sbin/init that
#   - prints "SHOAL-BOOTED host=<hostname> image=<name>@<version>" (from
#     /etc/hostname and /etc/shoal/image, which the shoal agent writes);
#   - proves the root is writable (a tmpfs overlay) while the image below it
#     (/run/shoal/lower) is read-only: "SHOAL-ROOT overlay=rw lower=ro";
#   - with shoal.readbig=N: waits N s, reads all of /big and checks its md5
#     ("SHOAL-READ big=ok");
#   - powers off, unless the kernel command line says shoal.stay=1.
# /big holds BIG_MIB MiB of random bytes (default 16), so the image has
# enough pieces for machines booting together to trade them.
# Usage: make-test-image.sh OUT.squashfs
set -euo pipefail
out=${1:?usage: make-test-image.sh OUT.squashfs}
big=${BIG_MIB:-16}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,etc/shoal,proc,sys,dev,run,tmp,root}
cp /bin/busybox "$root/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
for a in poweroff reboot halt; do ln -sf ../bin/busybox "$root/sbin/$a"; done
head -c "$((big << 20))" /dev/urandom >"$root/big"
md5sum <"$root/big" | cut -d' ' -f1 >"$root/etc/big.md5"
echo "shoal test image, built $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$root/etc/issue"
cat >"$root/sbin/init" <<'S'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc 2>/dev/null; mount -t sysfs sysfs /sys 2>/dev/null
host=$(cat /etc/hostname 2>/dev/null); image=$(cat /etc/shoal/image 2>/dev/null)
rw=no; ro=no
echo ok >/written-by-init 2>/dev/null && [ "$(cat /written-by-init)" = ok ] && rw=rw
touch /run/shoal/lower/x 2>/dev/null || ro=ro
echo "SHOAL-ROOT overlay=$rw lower=$ro root=$(awk '$2=="/"{print $3}' /proc/mounts | tail -1)"
echo "SHOAL-BOOTED host=${host:-unknown} image=${image:-unknown}"
# shoal.readbig=N: wait N s (a test kills a server meanwhile), then read all of /big
for w in $(cat /proc/cmdline); do case "$w" in shoal.readbig=*)
  echo "SHOAL-WAIT ${w#shoal.readbig=}s"; sleep "${w#shoal.readbig=}"
  t0=$(cut -d' ' -f1 /proc/uptime); sum=$(md5sum /big | cut -d' ' -f1); t1=$(cut -d' ' -f1 /proc/uptime)
  [ "$sum" = "$(cat /etc/big.md5)" ] && r=ok || r=bad
  echo "SHOAL-READ big=$r from=$t0 to=$t1" ;; esac
done
grep -q 'shoal.stay=1' /proc/cmdline && exec sh
sleep 1
poweroff -f
S
chmod 755 "$root/sbin/init"
rm -f "$out"
mksquashfs "$root" "$out" -all-root -noappend -quiet -comp gzip >/dev/null
echo "make-test-image: $out ($(stat -c %s "$out") bytes)"
