#!/usr/bin/env bash
# Installs the Debian packages the tests need. As root (CI, a fresh Debian
# machine) it apt-gets whatever is missing; otherwise it says what is missing.
set -euo pipefail
pkgs=(gcc git ca-certificates iproute2 curl aria2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "deps: Debian packages present"; exit 0; }
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
