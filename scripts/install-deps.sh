#!/usr/bin/env bash
# Installs what the tests need on Debian. As root (CI, a fresh Debian machine)
# it apt-gets whatever is missing; otherwise it says what is missing and the
# tests that need it skip with a message.
#
# Packages, by the tests that use them:
#   build/unit:   gcc (race detector) git ca-certificates
#   integration:  iproute2 curl aria2
#   boot (PXE):   qemu-system-x86 ipxe-qemu (the NIC's iPXE ROM) ipxe (undionly.kpxe,
#                 snponly.efi for TFTP) ovmf (UEFI) busybox-static (test initrd, udhcpc)
#                 tftp-hpa (stock TFTP client) kea-admin (perfdhcp) dnsmasq-base (the
#                 reference server in the benchmark) cpio kmod squashfs-tools
# and Debian's cloud kernel (LZ4, boots ~3 s faster under TCG), unpacked, not
# installed, into .cache/kernel by scripts/test-kernel.sh.
set -euo pipefail
pkgs=(gcc git ca-certificates iproute2 curl aria2
  qemu-system-x86 ipxe-qemu ipxe ovmf busybox-static tftp-hpa kea-admin dnsmasq-base
  cpio kmod squashfs-tools nbd-client qemu-utils)  # nbd/: stock NBD clients (nbd-client -l, qemu-img/qemu-io)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: Debian packages present"
elif [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
else
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start a service on this machine (dnsmasq-base has none,
  # but be sure): policy-rc.d 101 = "action forbidden".
  prc=/usr/sbin/policy-rc.d; made_prc=0
  if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod 755 "$prc"; made_prc=1; fi
  trap '[ $made_prc = 1 ] && rm -f "$prc"' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps: installed"
fi
if [ "$(id -u)" -eq 0 ] || [ -d .cache/kernel ]; then
  scripts/test-kernel.sh
fi
