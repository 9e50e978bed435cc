#!/usr/bin/env bash
# make demo: a throwaway lab in network namespaces. 3 shoal server nodes
# answer DHCP/TFTP/HTTP boot on a bridge; a small busybox image is imported;
# 2 QEMU machines PXE-boot diskless from it at once (the shoal agent as
# /init fetches the image into RAM from the servers and from each other)
# and print their marker; then everything is removed again.
# Needs root (namespaces, taps) and what `make deps` installs.
# Env: DEMO_VMS (default 2), DEMO_KEEP=1 keeps the logs directory.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SHOAL_BIN:-bin/shoal}
VMS=${DEMO_VMS:-2}
P=shoal-demo
NET=10.77.0
say() { printf '\033[1mdemo:\033[0m %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, tap devices): sudo make demo"
for c in ip qemu-system-x86_64 mksquashfs cpio depmod busybox curl; do
  command -v "$c" >/dev/null || die "$c is missing: run 'make deps' as root first"
done
[ -x "$BIN" ] || die "$BIN is missing: run 'make build'"
scripts/test-kernel.sh
WORK=$(mktemp -d /tmp/shoal-demo.XXXXXX)
PIDS=()
QPIDS=()
cleanup() {
  say "cleaning up: stopping processes, deleting namespaces $P-*"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do   # up to 5 s for a graceful leave
    alive=0; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done
  if [ "${DEMO_KEEP:-0}" = 1 ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done

say "building the test initrd and a 16 MiB busybox image (scripts/make-test-*.sh)"
scripts/make-test-initrd.sh "$WORK/initrd.gz" >/dev/null
BIG_MIB=16 scripts/make-test-image.sh "$WORK/image.squashfs" >/dev/null

say "network: namespace $P-lan with bridge br0 ($NET.254/24), one namespace per server node"
ip netns add $P-lan
ip -n $P-lan link set lo up
ip -n $P-lan link add br0 type bridge stp_state 0 forward_delay 0
ip -n $P-lan addr add $NET.254/24 dev br0
ip -n $P-lan link set br0 up
for i in 1 2 3; do
  ns=$P-n$i
  ip netns add $ns
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n $ns link set lo up
  ip -n $P-lan link add v$i type veth peer name eth0 netns $ns
  ip -n $P-lan link set v$i master br0 up
  ip -n $ns addr add $NET.$i/24 dev eth0
  ip -n $ns link set eth0 up
done

say "starting 3 server nodes (full DHCP on eth0, pool $NET.100-199; logs in $WORK/n*.log)"
for i in 1 2 3; do
  joins=()
  for j in 1 2 3; do [ $j = $i ] || joins+=(--join $NET.$j:7946); done
  ip netns exec $P-n$i "$BIN" server --node-name n$i --data-dir "$WORK/n$i" \
    --http-addr $NET.$i:7480 --raft-addr $NET.$i:7481 --gossip-addr $NET.$i:7946 --torrent-addr $NET.$i:7482 \
    --bootstrap-expect 3 "${joins[@]}" \
    --boot-interface eth0 --dhcp-mode full --dhcp-range $NET.100-$NET.199 >"$WORK/n$i.log" 2>&1 &
  PIDS+=($!)
done
api() { ip netns exec $P-lan "$BIN" --addr http://$NET.1:7480 "$@"; }
for _ in $(seq 1 100); do
  ip netns exec $P-lan curl -sf http://$NET.1:7480/healthz >/dev/null 2>&1 && api status >/dev/null 2>&1 && break
  sleep 0.2
done
api status | sed 's/^/    /'

say "importing the image (kernel: Debian cloud kernel; initrd: busybox with the NIC modules)"
api image import demo "$WORK/image.squashfs" --kernel .cache/kernel/vmlinuz --initrd "$WORK/initrd.gz" \
  --cmdline "console=ttyS0 panic=-1" | sed 's/^/    /'
api group add lab --image demo --boot-mode diskless-ram | sed 's/^/    /'
for v in $(seq 1 "$VMS"); do
  api client add 52:54:00:77:01:0$v --hostname pc$v --group lab | sed 's/^/    /'
done
say "waiting until every node holds the image"
for _ in $(seq 1 300); do
  n=$(ip netns exec $P-lan curl -sf http://$NET.1:7480/v1/images/demo | grep -o '"n[0-9]"' | sort -u | wc -l)
  [ "$n" -ge 3 ] && break
  sleep 0.2
done

say "booting $VMS QEMU machines at once (BIOS PXE, virtio NIC, 512 MiB, no disk)"
for v in $(seq 1 "$VMS"); do
  ip -n $P-lan tuntap add tap$v mode tap
  ip -n $P-lan link set tap$v master br0 up
  ip netns exec $P-lan timeout 300 qemu-system-x86_64 -accel tcg -machine q35 -m 512 -smp 1 -nographic -no-reboot \
    -boot n -netdev tap,id=n0,ifname=tap$v,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:77:01:0$v >"$WORK/pc$v.console" 2>&1 &
  PIDS+=($!)
  QPIDS+=($!)
done
start=$(date +%s)
# Follow the consoles: the agent's lines and the markers.
# (tail's own PID is the one to stop: grep and sed end when it does)
tail -q -n +1 -F $(for v in $(seq 1 "$VMS"); do echo "$WORK/pc$v.console"; done) 2>/dev/null > >(
  grep --line-buffered -a -E 'shoal-agent:|SHOAL-|iPXE 1|http://.*boot/ipxe' |
  sed -u -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /') &
TAILPID=$!
PIDS+=($TAILPID)
ok=0
for v in $(seq 1 "$VMS"); do
  wait "${QPIDS[$((v-1))]}" || true
done
sleep 0.3; kill $TAILPID 2>/dev/null || true
took=$(( $(date +%s) - start ))
for v in $(seq 1 "$VMS"); do
  if grep -aq "SHOAL-BOOTED host=pc$v" "$WORK/pc$v.console"; then ok=$((ok+1)); fi
done
say "last boot of pc1, as the cluster saw it:"
api client show 52:54:00:77:01:01 | sed 's/^/    /'
if [ "$ok" = "$VMS" ]; then
  say "all $VMS machines booted diskless from the swarm in ${took}s: SHOAL-BOOTED seen on every console"
else
  say "only $ok of $VMS machines printed SHOAL-BOOTED; consoles: $WORK/pc*.console"
  DEMO_KEEP=1
  exit 1
fi
