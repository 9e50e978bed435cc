#!/usr/bin/env bash
# Unpacks Debian's cloud kernel (vmlinuz + modules) into .cache/kernel for the
# boot tests, without installing it: `apt-get download` + `dpkg -x`.
# Prints nothing when it is already there. Output:
#   .cache/kernel/vmlinuz, .cache/kernel/KVER, .cache/kernel/root/lib/modules/KVER
set -euo pipefail
dir=.cache/kernel
[ -s "$dir/vmlinuz" ] && [ -s "$dir/KVER" ] && exit 0
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$pkg" ] || { echo "test-kernel: apt knows no linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
kver=${pkg#linux-image-}
echo "test-kernel: downloading $pkg"
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
(cd "$dir.tmp" && apt-get -o APT::Sandbox::User=root download -qq "$pkg" && dpkg -x "$pkg"_*.deb root && rm -f ./*.deb)
depmod -b "$dir.tmp/root" "$kver"
cp "$dir.tmp/root/boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
echo "$kver" >"$dir.tmp/KVER"
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "test-kernel: $kver in $dir"
