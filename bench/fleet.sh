#!/usr/bin/env bash
# bench/fleet.sh -- how long until every client of a fleet holds a verified
# copy of an image: shoal (one server node, every client runs
# `shoal agent sync --seed`) against one central HTTP server (nginx + curl),
# and against the lower bound image_bits / link_rate.
#
# The fleet is emulated on this machine with network namespaces: one switch
# (a bridge in its own namespace), a server host and N client hosts, each
# with a veth whose both ends are shaped with htb (= upload and download of
# the host).  No traffic leaves the namespaces made here.  Run as root.
#
# Usage:  bench/fleet.sh [run]     the sweep (default)
#         bench/fleet.sh down      remove whatever a crashed run left behind
#
# Environment (defaults in brackets):
#   FLEET_NS          fleet sizes to sweep                          ["5 10 20"]
#   FLEET_BASELINE    1 = also run the central HTTP baseline; 0 = skip  [1]
#                     (it takes N x image_bits / server_rate: ~7.5 min at N=20)
#   FLEET_SIZE        root image size (head -c syntax)              [256M]
#   FLEET_RATE        per-client link rate, each way                [100mbit]
#   FLEET_SERVER_RATE server link rate, each way                    [FLEET_RATE]
#   FLEET_QUEUE_MS    tail-drop buffer per port, ms of line rate    [50]
#   FLEET_GSO_KB      cap on GSO super-packets, KiB (0 = kernel's)  [16]
#   FLEET_ROOT        images and run directories                    [/tmp/shoal-fleet]
#   FLEET_TIMEOUT     per-run limit in s [shoal: 10 x bound + 60; HTTP: 2 x central + 90]
#   FLEET_KEEP        1 = keep client copies after a run            [0]
#   FLEET_PREFIX      namespace prefix                              [sfl]
#   FLEET_SUBNET      first three octets of the fleet's /24         [10.89.0]
#   SHOAL_BIN         the binary under test                         [<repo>/bin/shoal]
#   FLEET_CPUPROFILE  1 = CPU profile of the shoal server and of every agent  [0]
#                     (n<N>-shoal/srv/cpu.pprof, c<I>/cpu.pprof; go tool pprof -top)
#
# Gotchas that matter for the numbers (details in bench/README.md):
# * the kernel's ARP table is shared by all namespaces and capped by the
#   root namespace's gc_thresh3 (1024): an all-to-all swarm overflows it
#   around N=30 and SYNs vanish silently.  Every host pair gets a permanent
#   (cap-exempt) ARP entry here.
# * GSO super-packets are capped (FLEET_GSO_KB) so one tail drop in a port
#   buffer loses ~16 KiB, not 44 segments at once.
# * on 2 cores the emulation itself (veth + bridge + 2 htb per hop, and the
#   clients' user space) saturates the CPU around N=20 at 100 Mbit/s: read
#   the CPU columns before trusting a number.
set -u -o pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SHOAL_BIN=${SHOAL_BIN:-$HERE/../bin/shoal}
ROOT=${FLEET_ROOT:-/tmp/shoal-fleet}
NS_LIST=${FLEET_NS:-5 10 20}
BASELINE=${FLEET_BASELINE:-1}
SIZE=${FLEET_SIZE:-256M}
RATE=${FLEET_RATE:-100mbit}
SRATE=${FLEET_SERVER_RATE:-$RATE}
QUEUE_MS=${FLEET_QUEUE_MS:-50}
GSO_KB=${FLEET_GSO_KB:-16}
KEEP=${FLEET_KEEP:-0}
PROFILE=${FLEET_CPUPROFILE:-0}
P=${FLEET_PREFIX:-sfl}
SUBNET=${FLEET_SUBNET:-10.89.0}
SW=$P-sw            # namespace holding the bridge (the "switch")
SRV=$P-srv          # the server host
BR=${P}br0
SIP=$SUBNET.1
IMAGE_NAME=fleet    # catalogue name of the image in shoal

log() { printf '[fleet %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cns() { echo "$P-c$1"; }
cip() { echo "$SUBNET.$((10 + $1))"; }
# Polling sleeps fork `sleep` on purpose: bash 5.2 aborts ("longjmp causes
# uninitialized stack frame") when a trap exits the shell during `read -t`,
# and that would skip the cleanup.  Only the monitor (no traps) uses read -t.
fsleep() { sleep "$1"; }
# wait_until SECS CMD...: run CMD every 0.2 s until it succeeds; 1 on timeout
wait_until() {
  local end=$((SECONDS + $1)); shift
  until "$@" > /dev/null 2>&1; do
    ((SECONDS >= end)) && return 1
    fsleep 0.2
  done
}
# rate string ("100mbit", "1gbit", "500kbit") -> bits per second
rate_bps() {
  local r=${1,,} n u
  n=${r%%[a-z]*}; u=${r#"$n"}
  case $u in
    gbit) echo $((n * 1000000000)) ;; mbit) echo $((n * 1000000)) ;;
    kbit) echo $((n * 1000)) ;; bit | "") echo "$n" ;;
    *) die "unsupported rate unit in '$1' (use kbit/mbit/gbit)" ;;
  esac
}

# ------------------------------------------------------------------ setup
ensure_deps() {
  local need=() p
  command -v ip > /dev/null && command -v tc > /dev/null || need+=(iproute2)
  command -v curl > /dev/null || need+=(curl)
  command -v openssl > /dev/null || need+=(openssl)
  command -v ping > /dev/null || need+=(iputils-ping)
  command -v flock > /dev/null && command -v setsid > /dev/null || need+=(util-linux)
  command -v inotifywait > /dev/null || need+=(inotify-tools)
  if [[ $BASELINE == 1 ]] && ! command -v nginx > /dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    need+=(nginx-light)
  fi
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    # Debian starts nginx on *:80 in the root namespace right after install;
    # we run our own instance in the server namespace, so keep the service down.
    local guard=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
    p=$?
    ((guard)) && rm -f /usr/sbin/policy-rc.d
    ((p == 0)) || die "apt-get install ${need[*]} failed"
  fi
  for p in veth bridge sch_htb; do modprobe -q "$p" 2> /dev/null || true; done
}

# shape egress of $dev in namespace $ns to $rate: htb class + tail-drop byte
# fifo of QUEUE_MS of line rate, like a switch port buffer.  No netem here, so
# there is no added delay: the RTT is ~0.1 ms.
shape() {
  local ns=$1 dev=$2 rate=$3 qbytes
  qbytes=$(($(rate_bps "$rate") / 8 * QUEUE_MS / 1000))
  ((qbytes < 131072)) && qbytes=131072
  ip netns exec "$ns" tc qdisc replace dev "$dev" root handle 1: htb default 10
  ip netns exec "$ns" tc class add dev "$dev" parent 1: classid 1:10 htb \
    rate "$rate" ceil "$rate" burst 64k cburst 64k quantum 60000
  ip netns exec "$ns" tc qdisc add dev "$dev" parent 1:10 handle 10: bfifo limit "$qbytes"
}

# one host = namespace + veth (eth0 inside, $swdev on the bridge)
add_host() {
  local ns=$1 ip=$2 swdev=$3 rate=$4
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add "$swdev" netns "$SW" type veth peer name eth0 netns "$ns"
  ip -n "$SW" link set "$swdev" master "$BR"
  ip -n "$SW" link set "$swdev" up
  ip -n "$ns" addr add "$ip/24" brd + dev eth0
  ip -n "$ns" link set eth0 up
  if ((GSO_KB > 0)); then
    ip -n "$ns" link set dev eth0 gso_max_size $((GSO_KB * 1024))
    ip -n "$SW" link set dev "$swdev" gso_max_size $((GSO_KB * 1024))
  fi
  shape "$ns" eth0 "$rate"     # host upload
  shape "$SW" "$swdev" "$rate" # host download (switch port egress)
}

# Permanent ARP entries for every host pair: the neighbour table is one for
# all namespaces and capped by the root namespace's gc_thresh3; permanent
# entries are exempt (see the header).
static_arp() {
  local n=$1 i j batch=$ROOT/arp.batch
  local -a NS IP MAC
  NS=("$SRV"); IP=("$SIP")
  for ((i = 1; i <= n; i++)); do NS+=("$(cns "$i")"); IP+=("$(cip "$i")"); done
  for ((i = 0; i < ${#NS[@]}; i++)); do
    MAC[i]=$(ip -n "${NS[i]}" -br link show dev eth0 | awk '{print $3}')
  done
  for ((i = 0; i < ${#NS[@]}; i++)); do
    : > "$batch"
    for ((j = 0; j < ${#NS[@]}; j++)); do
      ((i == j)) || echo "neigh replace ${IP[j]} lladdr ${MAC[j]} dev eth0 nud permanent" >> "$batch"
    done
    ip -n "${NS[i]}" -batch "$batch" || die "static ARP in ${NS[i]} failed"
  done
  rm -f "$batch"
}

our_namespaces() { ip netns list | awk '{print $1}' | grep -E "^$P-(sw|srv|c[0-9]+)\$"; }

# kill every process inside our namespaces (by PID)
kill_ns_procs() {
  local sig ns pids
  for sig in TERM KILL; do
    for ns in $(our_namespaces); do
      pids=$(ip netns pids "$ns" 2> /dev/null | tr '\n' ' ')
      [[ -n ${pids// /} ]] && kill "-$sig" $pids 2> /dev/null
    done
    [[ $sig == TERM ]] && fsleep 0.5
  done
  return 0
}

topo_down() {
  local ns
  kill_ns_procs
  for ns in $(our_namespaces); do ip netns del "$ns" 2> /dev/null; done
  return 0
}

topo_up() {
  local n=$1 i
  topo_down
  log "topology: switch $BR in $SW, server $SRV ($SIP, $SRATE), $n clients ($RATE), ${QUEUE_MS} ms port buffers"
  ip netns add "$SW"
  ip -n "$SW" link set lo up
  # bridged frames need not go through iptables in the switch namespace
  ip netns exec "$SW" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2> /dev/null || true
  ip -n "$SW" link add "$BR" type bridge stp_state 0 forward_delay 0
  ip -n "$SW" link set "$BR" up
  add_host "$SRV" "$SIP" s-srv "$SRATE"
  for ((i = 1; i <= n; i++)); do add_host "$(cns "$i")" "$(cip "$i")" "s-c$i" "$RATE"; done
  static_arp "$n"
  wait_until 10 ip netns exec "$(cns "$n")" ping -c1 -W1 "$SIP" || die "client $n cannot reach the server"
}

# ------------------------------------------------------------------ image
make_image() {
  IMGDIR=$ROOT/images
  mkdir -p "$IMGDIR"; chmod 755 "$ROOT" "$IMGDIR"
  IMG=$IMGDIR/rootfs-$SIZE.img KERNEL=$IMGDIR/vmlinuz INITRD=$IMGDIR/initrd.img
  local f sz
  for f in "$IMG:$SIZE" "$KERNEL:4M" "$INITRD:16M"; do
    sz=${f##*:}; f=${f%:*}
    if [[ ! -s $f || ! -s $f.sha256 ]]; then
      log "creating $f ($sz random bytes)"
      head -c "$sz" /dev/urandom > "$f.tmp" && mv "$f.tmp" "$f" || die "cannot write $f"
      openssl dgst -sha256 -r "$f" | awk '{print $1}' > "$f.sha256"
      chmod 644 "$f" "$f.sha256"
    fi
  done
  IMG_SHA=$(< "$IMG.sha256")
  IMG_BYTES=$(stat -c %s "$IMG")
}

# ------------------------------------------------------------------ CPU
# Own CPU: this script joins a cgroup (v1 cpuacct or v2) before starting
# anything; every server and client inherits it.  /proc/stat = whole machine.
CG=""
cg_setup() {
  if [[ -w /sys/fs/cgroup/cpuacct/cgroup.procs ]]; then
    CG=/sys/fs/cgroup/cpuacct/shoal-fleet-$$
  elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    CG=/sys/fs/cgroup/shoal-fleet-$$
  else
    return 0
  fi
  mkdir -p "$CG" 2> /dev/null && echo "$BASHPID" > "$CG/cgroup.procs" 2> /dev/null || CG=""
}
cg_remove() {
  [[ -n $CG && -d $CG ]] || return 0
  echo "$BASHPID" > "${CG%/*}/cgroup.procs" 2> /dev/null
  rmdir "$CG" 2> /dev/null || true
}
cg_usage_ns() {
  if [[ -r $CG/cpuacct.usage ]]; then cat "$CG/cpuacct.usage"
  elif [[ -r $CG/cpu.stat ]]; then awk '$1 == "usage_usec" {printf "%d\n", $2 * 1000}' "$CG/cpu.stat"
  else echo 0; fi
}
# once a second: "epoch own_ns <aggregate cpu line of /proc/stat>" to $1 and
# the byte counters of every switch port to $2 ("epoch port rx tx"; a port's
# rx is what its host sent, tx what it received)
monitor() {
  local line u t sfd
  exec {sfd}<> <(:)
  while :; do
    read -r line < /proc/stat
    u=0
    if [[ -r $CG/cpuacct.usage ]]; then read -r u < "$CG/cpuacct.usage"
    elif [[ -n $CG ]]; then u=$(cg_usage_ns); fi
    t=$EPOCHREALTIME
    printf '%s %s %s\n' "$t" "$u" "$line" >&3
    ip -n "$SW" -s -o link show 2> /dev/null | awk -v t="$t" '$2 ~ /^s-/ {
      n = $2; sub(/@.*/, "", n); sub(/^s-/, "", n)
      for (i = 1; i <= NF; i++) { if ($i == "RX:") rx = $(i + 8); if ($i == "TX:") tx = $(i + 8) }
      print t, n, rx, tx }'
    read -r -t 1 -u "$sfd" || true
  done 3> "$1" > "$2"
}
# net.txt -> per-host totals and a 5 s timeline of the traffic
net_summary() {
  awk '{ if (!($2 in r0)) { r0[$2] = $3; x0[$2] = $4 }; r[$2] = $3; x[$2] = $4; if (!t0) t0 = $1
         b = int(($1 - t0) / 5); if (b > nb) nb = b
         bd[b, $2] = $4; br[b, $2] = $3; hosts[$2] = 1 }
    END {
      printf "host   sent_MiB  received_MiB\n"
      for (h in hosts) printf "%-6s %8.1f  %12.1f\n", h, (r[h] - r0[h]) / 1048576, (x[h] - x0[h]) / 1048576 | "sort -V"
      close("sort -V")
      printf "\n5 s buckets: Mbit/s received by all clients, sent by the server, sent by all clients\n"
      for (b = 1; b <= nb; b++) { d = 0; su = 0; cu = 0
        for (h in hosts) { dd = bd[b, h] - bd[b - 1, h]; uu = br[b, h] - br[b - 1, h]
          if (h == "srv") su += uu; else { d += dd; cu += uu } }
        printf "%4d-%-4d s  down %7.1f  srv-up %6.1f  clients-up %7.1f\n", 5 * (b - 1), 5 * b, d * 8 / 5e6, su * 8 / 5e6, cu * 8 / 5e6 } }' "$1"
}
# -> "machine_avg machine_max own_avg own_max" in % of all cores
cpu_summary() {
  awk -v ncpu="$(nproc)" '
    { t = $1; u = $2; tot = 0; for (i = 4; i <= 11; i++) tot += $i; idle = $7 + $8
      if (NR > 1 && tot > pt && t > pT) {
        b = 100 * (1 - (idle - pidle) / (tot - pt)); o = 100 * (u - pu) / 1e9 / (t - pT) / ncpu
        n++; sb += b; so += o; if (b > mb) mb = b; if (o > mo) mo = o }
      pT = t; pu = u; pt = tot; pidle = idle }
    END { if (n) printf "%.0f %.0f %.0f %.0f\n", sb / n, mb, so / n, mo; else print "nan nan nan nan" }' "$1"
}
# CPU seconds (user+sys) of the live processes named $2 in namespaces matching $1
ns_cpu_seconds() {
  local re=$1 comm=$2 ns pid tot=0 hz; hz=$(getconf CLK_TCK)
  for ns in $(our_namespaces | grep -E "$re"); do
    for pid in $(ip netns pids "$ns" 2> /dev/null); do
      [[ $(cat "/proc/$pid/comm" 2> /dev/null) == "$comm" ]] || continue
      tot=$((tot + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2> /dev/null || echo 0)))
    done
  done
  awk -v t="$tot" -v hz="$hz" 'BEGIN {printf "%.1f", t / hz}'
}

# ------------------------------------------------------------------ one run
# Per-client wrapper, a session leader inside the client namespace: runs
# cmd.sh; "downloaded" = cmd.sh exited (curl) or the done file exists (the
# shoal agent, which keeps seeding); then checks the sha256 of the copy
# itself and writes "t_done t_verified ok rc" to result.  cmd.sh keeps
# running (seeding) until the harness kills the group.
write_wrapper() {
  cat > "$1/wrapper.sh" << 'EOF'
#!/usr/bin/env bash
export LC_ALL=C
dir=$1 out=$2 want=$3
exec {sfd}<> <(:)
cd "$dir" || exit 1
( bash "$dir/cmd.sh" > "$dir/client.log" 2>&1; echo $? > "$dir/cmd.rc" ) &
cpid=$!
# Wait for cmd.rc or DONE. With inotifywait the wrapper sleeps until a file
# appears in $dir (20 bash loops polling 10 times a second took ~4 % of the
# two cores in a CPU-bound run); the 1 s timeout only covers the moment
# before the watch is set up.
if command -v inotifywait > /dev/null; then
  exec {ev}< <(exec inotifywait -m -q -e create -e moved_to --format x "$dir" 2> /dev/null)
  evpid=$!
  while [[ ! -e $dir/cmd.rc && ! -e $dir/DONE ]]; do read -r -t 1 -u $ev _ || true; done
  kill $evpid 2> /dev/null
else
  while [[ ! -e $dir/cmd.rc && ! -e $dir/DONE ]]; do read -r -t 0.1 -u $sfd || true; done
fi
t_done=$EPOCHREALTIME
rc=$(cat "$dir/cmd.rc" 2> /dev/null || echo running)
got=$(openssl dgst -sha256 -r "$out" 2> /dev/null | awk '{print $1}')
t_ver=$EPOCHREALTIME
ok=0; [[ $got == "$want" ]] && ok=1
printf '%s %s %s %s\n' "$t_done" "$t_ver" "$ok" "$rc" > "$dir/result.tmp"
mv "$dir/result.tmp" "$dir/result"
wait $cpid
EOF
}

# start the server command (run dir's srv/cmd.sh) in the server namespace
start_server() {
  ip netns exec "$SRV" setsid bash "$RUN/srv/cmd.sh" > "$RUN/srv/server.log" 2>&1 < /dev/null 9>&- &
  SPID=$!
}

srv_curl() { ip netns exec "$SRV" curl -sf --max-time 5 "$@"; }
blob_complete() { srv_curl "http://$SIP:7480/v1/blobs" | tr -d ' \n' | grep -o '"complete":\[[^]]*\]' | grep -q "$1"; }

try_import() {
  ip netns exec "$SRV" "$SHOAL_BIN" --addr "http://$SIP:7480" image import "$IMAGE_NAME" "$IMG" \
    --kernel "$KERNEL" --initrd "$INITRD" --format raw --local --json > "$RUN/srv/import.json" 2> "$RUN/srv/import.err"
}

# shoal: one server node, the image imported locally and seeding; untimed
prepare_shoal() {
  local penv=""
  [[ $PROFILE == 1 ]] && penv="SHOAL_CPUPROFILE=$RUN/srv/cpu.pprof "
  cat > "$RUN/srv/cmd.sh" << EOF
${penv}exec "$SHOAL_BIN" server --node-name s1 --data-dir "$RUN/srv/data" \\
  --http-addr $SIP:7480 --raft-addr $SIP:7481 --gossip-addr $SIP:7946 \\
  --torrent-addr $SIP:7482 --import-dir "$IMGDIR"
EOF
  start_server
  wait_until 30 srv_curl -o /dev/null "http://$SIP:7480/healthz" || { log "shoal server not healthy after 30 s"; return 1; }
  # the single-node cluster elects itself; a write before that gets a 503: retry
  wait_until 60 try_import || { log "image import failed: $(tail -c 300 "$RUN/srv/import.err")"; return 1; }
  local ver
  ver=$(sed -n 's/.*"version": *"\([0-9a-f]*\)".*/\1/p' "$RUN/srv/import.json")
  [[ $ver == "$IMG_SHA" ]] || { log "import failed or version '$ver' != image sha256 (see $RUN/srv/import.*)"; return 1; }
  wait_until 120 blob_complete "$ver" || { log "server never listed blob $ver as complete"; return 1; }
}

# central HTTP: nginx (sendfile, 1 worker) in the server namespace
prepare_http() {
  if command -v nginx > /dev/null || [[ -x /usr/sbin/nginx ]]; then
    local ngx; ngx=$(command -v nginx || echo /usr/sbin/nginx)
    cat > "$RUN/srv/nginx.conf" << EOF2
worker_processes 1;
pid $RUN/srv/nginx.pid;
error_log $RUN/srv/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_timeout 5;
  client_body_temp_path $RUN/srv; proxy_temp_path $RUN/srv; fastcgi_temp_path $RUN/srv;
  uwsgi_temp_path $RUN/srv; scgi_temp_path $RUN/srv;
  server { listen $SIP:80; root $IMGDIR; }
}
EOF2
    echo "exec $ngx -p $RUN/srv -c $RUN/srv/nginx.conf -g 'daemon off;'" > "$RUN/srv/cmd.sh"
    HTTP_SERVER=nginx
  else
    echo "cd $IMGDIR && exec python3 -m http.server 80 --bind $SIP" > "$RUN/srv/cmd.sh"
    HTTP_SERVER=python-http.server
  fi
  start_server
  wait_until 30 srv_curl -o /dev/null -r 0-0 "http://$SIP/${IMG##*/}" || { log "HTTP server not ready after 30 s"; return 1; }
}

client_cmd() { # system idx
  local dir=$RUN/c$2
  case $1 in
    shoal) [[ $PROFILE == 1 ]] && printf 'export SHOAL_CPUPROFILE=%s/cpu.pprof\n' "$dir"
           echo "exec \"$SHOAL_BIN\" agent sync --server http://$SIP:7480 --image $IMAGE_NAME --target $dir/image" \
                "--listen $(cip "$2"):7482 --seed --done-file $dir/DONE --json" ;;
    http) echo "exec curl -sS --fail -o $dir/image http://$SIP/${IMG##*/}" ;;
  esac
}

# run_one SYSTEM N: one measurement on a fresh topology.  Appends a row to
# $SWEEP/results.csv; the run's files stay in $SWEEP/n<N>-<system>/.
CSV_HEAD=system,n,image_bytes,rate,server_rate,ok,failed,first_verified_s,median_verified_s,last_done_s,last_verified_s,bound_s,central_bound_s,server_ready_s,cpu_machine_avg,cpu_machine_max,cpu_own_avg,cpu_own_max,server_cpu_s,clients_cpu_s,webseed_bytes,server_sent_copies,tail_drops,run_dir
run_one() {
  local sys=$1 n=$2 i
  RUN=$SWEEP/n$n-$sys
  mkdir -p "$RUN/srv"
  for ((i = 1; i <= n; i++)); do mkdir -p "$RUN/c$i"; done
  write_wrapper "$RUN"
  local rate_bps srate_bps bound central timeout
  rate_bps=$(rate_bps "$RATE"); srate_bps=$(rate_bps "$SRATE")
  bound=$(awk -v b="$IMG_BYTES" -v r="$rate_bps" -v s="$srate_bps" 'BEGIN {r = r < s ? r : s; printf "%.1f", 8 * b / r}')
  central=$(awk -v b="$IMG_BYTES" -v n="$n" -v s="$srate_bps" 'BEGIN {printf "%.1f", 8 * b * n / s}')
  case $sys in
    shoal) timeout=${FLEET_TIMEOUT:-$(awk -v b="$bound" 'BEGIN {printf "%d", 10 * b + 60}')} ;;
    http) timeout=${FLEET_TIMEOUT:-$(awk -v c="$central" 'BEGIN {printf "%d", 2 * c + 90}')} ;;
  esac
  # server (untimed) -------------------------------------------------------
  SPID=""
  cat "$IMG" > /dev/null # same page-cache state for every system
  local t_s0=$SECONDS
  if ! "prepare_$sys"; then
    log "[$sys N=$n] server did not come up; logs in $RUN/srv"
    kill_ns_procs; wait 2> /dev/null
    echo "$sys,$n,$IMG_BYTES,$RATE,$SRATE,0,$n,nan,nan,nan,nan,$bound,$central,nan,nan,nan,nan,nan,nan,nan,nan,nan,nan,$RUN" >> "$SWEEP/results.csv"
    FAILED=1; return 1
  fi
  local ready=$((SECONDS - t_s0))
  # clients: all at once ----------------------------------------------------
  for ((i = 1; i <= n; i++)); do client_cmd "$sys" "$i" > "$RUN/c$i/cmd.sh"; done
  local T0 cpids=()
  monitor "$RUN/cpu.txt" "$RUN/net.txt" 9>&- & MPID=$!
  log "[$sys N=$n] server ready after ${ready}s; starting $n clients (timeout ${timeout}s, lower bound ${bound}s)"
  T0=$EPOCHREALTIME
  for ((i = 1; i <= n; i++)); do
    ip netns exec "$(cns "$i")" setsid bash "$RUN/wrapper.sh" "$RUN/c$i" "$RUN/c$i/image" "$IMG_SHA" \
      < /dev/null > /dev/null 2>&1 9>&- &
    cpids+=($!)
  done
  local done_n
  while :; do
    done_n=0
    for ((i = 1; i <= n; i++)); do [[ -e $RUN/c$i/result ]] && ((done_n++)); done
    ((done_n == n)) && break
    if ((EPOCHSECONDS - ${T0%.*} > timeout)); then
      log "[$sys N=$n] TIMEOUT after ${timeout}s: $done_n/$n clients done"; FAILED=1; break
    fi
    fsleep 0.2
  done
  kill "$MPID" 2> /dev/null; wait "$MPID" 2> /dev/null; MPID=""
  # CPU seconds of the processes still alive (shoal agents seed until killed)
  local scpu ccpu
  case $sys in
    shoal) scpu=$(ns_cpu_seconds "^$SRV\$" shoal); ccpu=$(ns_cpu_seconds "^$P-c[0-9]+\$" shoal) ;;
    http) scpu=$(ns_cpu_seconds "^$SRV\$" nginx); ccpu=nan ;;
  esac
  # stop everything of this run ----------------------------------------------
  local p
  for p in "${cpids[@]}" $SPID; do kill -TERM -- "-$p" 2> /dev/null; done
  fsleep 0.5
  [[ $sys == shoal && $PROFILE == 1 ]] && fsleep 2 # let the profiles be written
  for p in "${cpids[@]}" $SPID; do kill -KILL -- "-$p" 2> /dev/null; done
  # tail drops in the port buffers (switch side = downloads, host side = uploads)
  {
    echo "# switch ports (host downloads)"; ip netns exec "$SW" tc -s qdisc show
    for ((i = 0; i <= n; i++)); do
      ((i == 0)) && p=$SRV || p=$(cns "$i")
      echo "# $p eth0 (upload)"; ip netns exec "$p" tc -s qdisc show dev eth0
    done
  } > "$RUN/qdisc.txt" 2>&1
  kill_ns_procs
  wait 2> /dev/null
  # results -----------------------------------------------------------------
  local stats cpu webseed td tv ok rc ws
  : > "$RUN/clients.txt"
  for ((i = 1; i <= n; i++)); do
    if [[ -e $RUN/c$i/result ]]; then read -r td tv ok rc < "$RUN/c$i/result"
    else td=nan tv=nan ok=0 rc=timeout; fi
    ws=$(sed -n 's/.*"bytes_from_web_seeds": *\([0-9]*\).*/\1/p' "$RUN/c$i/DONE" 2> /dev/null)
    awk -v i="$i" -v td="$td" -v tv="$tv" -v T0="$T0" -v ok="$ok" -v rc="$rc" -v ws="${ws:-nan}" \
      'BEGIN {if (td == "nan") printf "c%d nan nan %s %s %s\n", i, ok, rc, ws; else printf "c%d %.2f %.2f %s %s %s\n", i, td - T0, tv - T0, ok, rc, ws}'
  done > "$RUN/clients.txt"
  # ok failed first median last_done last_verified
  stats=$(awk '$4 == 1 {d[++k] = $2; v[k] = $3} END {
      n = k; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) { if (v[j] < v[i]) {t = v[i]; v[i] = v[j]; v[j] = t}; if (d[j] < d[i]) {t = d[i]; d[i] = d[j]; d[j] = t} }
      if (n) printf "%d %d %.2f %.2f %.2f %.2f", n, NR - n, v[1], v[int((n + 1) / 2)], d[n], v[n]; else printf "0 %d nan nan nan nan", NR }' "$RUN/clients.txt")
  webseed=$(awk '$6 ~ /^[0-9]+$/ {s += $6; k++} END {if (k) print s; else print "nan"}' "$RUN/clients.txt")
  cpu=$(cpu_summary "$RUN/cpu.txt")
  net_summary "$RUN/net.txt" > "$RUN/net-summary.txt"
  local copies drops
  copies=$(awk -v b="$IMG_BYTES" '$2 == "srv" {if (r0 == "") r0 = $3; r = $3} END {printf "%.2f", (r - r0) / b}' "$RUN/net.txt")
  drops=$(awk '$1 == "Sent" && $0 ~ /dropped/ && prev ~ /^qdisc bfifo/ {d = $7; sub(/,/, "", d); s += d} {prev = $0} END {print s + 0}' "$RUN/qdisc.txt")
  local row
  row="$sys,$n,$IMG_BYTES,$RATE,$SRATE,${stats// /,},$bound,$central,$ready,${cpu// /,},$scpu,$ccpu,$webseed,$copies,$drops,$RUN"
  echo "$row" >> "$SWEEP/results.csv"
  { echo "$CSV_HEAD"; echo "$row"; } > "$RUN/summary.csv"
  local f=(${stats})
  ((f[1] > 0)) && { log "[$sys N=$n] ${f[1]} client(s) FAILED (see $RUN/clients.txt, $RUN/c*/client.log)"; FAILED=1; }
  log "[$sys N=$n] ok=${f[0]}/$n first=${f[2]}s median=${f[3]}s last=${f[5]}s (downloaded ${f[4]}s) bound=${bound}s server sent ${copies} copies, ${drops} tail drops; cpu own avg/max=$(awk '{print $3"/"$4}' <<< "$cpu")% machine=$(awk '{print $1"/"$2}' <<< "$cpu")%"
  [[ $KEEP == 1 ]] || rm -rf "$RUN"/c*/image "$RUN/srv/data"
  return 0
}

# ------------------------------------------------------------------ report
col() { awk -F, -v s="$1" -v n="$2" -v c="$3" 'NR > 1 && $1 == s && $2 == n {v = $c} END {print (v == "" ? "nan" : v)}' "$SWEEP/results.csv"; }
report() {
  local n
  echo
  echo "shoal fleet benchmark: $(awk -v b="$IMG_BYTES" 'BEGIN {printf "%g MiB", b / 1048576}') random image, clients $RATE each way, server $SRATE"
  echo "seconds until the LAST client holds a copy whose sha256 the harness checked; bound = image_bits / link rate"
  echo
  echo "|   N | bound s | shoal s | shoal/bound |  HTTP s | HTTP/shoal | shoal first/median s | shoal CPU own/machine % | HTTP CPU own/machine % | shoal cpu-s srv/agents | srv sent copies |"
  echo "|----:|--------:|--------:|------------:|--------:|-----------:|---------------------:|------------------------:|-----------------------:|-----------------------:|----------------:|"
  for n in $NS_LIST; do
    awk -F, -v n="$n" -v base="$BASELINE" '
      NR > 1 && $2 == n { for (i = 1; i <= NF; i++) r[$1, i] = $i; has[$1] = 1 }
      function v(s, i) { return ((s, i) in r && r[s, i] != "") ? r[s, i] : "nan" }
      function cpu(s) { return has[s] ? sprintf("%s/%s avg, %s/%s max", v(s, 17), v(s, 15), v(s, 18), v(s, 16)) : "-" }
      END {
        b = has["shoal"] ? v("shoal", 12) : v("http", 12); sl = v("shoal", 11); hl = v("http", 11)
        if (!has["http"]) hl = (base == 1 ? "nan" : "skipped")
        r1 = (sl + 0 > 0) ? sprintf("%.2fx", sl / b) : "-"
        r2 = (sl + 0 > 0 && hl + 0 > 0) ? sprintf("%.1fx", hl / sl) : "-"
        printf "| %3d | %7s | %7s | %11s | %7s | %10s | %20s | %23s | %22s | %22s | %15s |\n", n, b, sl, r1, hl, r2,
          v("shoal", 8) "/" v("shoal", 9), cpu("shoal"), cpu("http"), v("shoal", 19) "/" v("shoal", 20), v("shoal", 22) }' "$SWEEP/results.csv"
  done
  echo
  echo "CPU: own = everything this script started (cgroup), machine = /proc/stat; 1 s samples, % of all $(nproc) cores."
  echo "machine much above own = other load on the box (or softirq work charged to no process)."
  echo "shoal cpu-s = CPU seconds (user+sys) of the shoal server / of all agents; srv sent copies = server upload / image size."
  # the project's goal is stated at N=20
  local big=20 sl b hl
  if ! grep -qw 20 <<< "$NS_LIST"; then echo "goal (stated at N=20: shoal <= 1.5x bound, >= 8x faster than central HTTP): N=20 not run"; return 0; fi
  sl=$(col shoal "$big" 11); b=$(col shoal "$big" 12); hl=$(col http "$big" 11)
  awk -v n="$big" -v b="$b" -v sl="$sl" -v hl="$hl" -v base="$BASELINE" 'BEGIN {
    if (sl + 0 <= 0) { printf "goal at N=%d: no shoal result\n", n; exit }
    r = sl / b; printf "goal at N=%d: shoal within 1.5x bound: %.2fx %s", n, r, (r <= 1.5 ? "PASS" : "FAIL")
    if (base == 1 && hl + 0 > 0) { s = hl / sl; printf "; >= 8x faster than central HTTP: %.1fx %s", s, (s >= 8 ? "PASS" : "FAIL") }
    printf "\n" }'
}

# ------------------------------------------------------------------ main
cleanup() {
  trap - EXIT INT TERM
  [[ -n ${MPID:-} ]] && kill "$MPID" 2> /dev/null
  topo_down
  wait 2> /dev/null
  rm -f "$ROOT/arp.batch"
  cg_remove
}

cmd_run() {
  [[ -x $SHOAL_BIN ]] || die "no shoal binary at $SHOAL_BIN (make build, or set SHOAL_BIN)"
  SHOAL_BIN=$(cd "$(dirname "$SHOAL_BIN")" && pwd)/$(basename "$SHOAL_BIN")
  ensure_deps
  mkdir -p "$ROOT"
  # fd 9 = the lock; long-lived children are started with 9>&- so that a
  # stray process can never keep the lock
  exec 9> "$ROOT/.lock"
  flock -n 9 || die "another fleet.sh run holds $ROOT/.lock"
  trap cleanup EXIT
  trap 'log "interrupted: cleaning up"; exit 130' INT TERM
  cg_setup
  make_image
  SWEEP=$ROOT/runs/$(date +%Y%m%d-%H%M%S)
  mkdir -p "$SWEEP"
  echo "$CSV_HEAD" > "$SWEEP/results.csv"
  {
    echo "date: $(date -Is)"
    echo "shoal: $SHOAL_BIN, commit $(git -C "$HERE/.." rev-parse --short HEAD 2> /dev/null || echo unknown)" \
      "($(git -C "$HERE/.." status --porcelain 2> /dev/null | wc -l) files modified in the tree)"
    echo "kernel: $(uname -r), cores: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "FLEET_NS=\"$NS_LIST\" FLEET_BASELINE=$BASELINE FLEET_SIZE=$SIZE FLEET_RATE=$RATE FLEET_SERVER_RATE=$SRATE FLEET_QUEUE_MS=$QUEUE_MS FLEET_GSO_KB=$GSO_KB"
  } > "$SWEEP/config.txt"
  log "sweep N=($NS_LIST) baseline=$BASELINE; logs and results in $SWEEP"
  FAILED=0
  local n
  for n in $NS_LIST; do
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "bad N '$n' in FLEET_NS"
    topo_up "$n"
    run_one shoal "$n"
    topo_down
    if [[ $BASELINE == 1 ]]; then
      log "[http N=$n] central HTTP takes about $(awk -v b="$IMG_BYTES" -v n="$n" -v s="$(rate_bps "$SRATE")" 'BEGIN {printf "%.0f", 1.05 * 8 * b * n / s}') s"
      topo_up "$n"
      run_one http "$n"
      topo_down
    fi
  done
  topo_down
  report | tee "$SWEEP/table.md"
  echo
  echo "results: $SWEEP/results.csv, table: $SWEEP/table.md; per run: $SWEEP/n<N>-<system>/ (srv/server.log, c<I>/client.log, clients.txt, cpu.txt)"
  return $FAILED
}

[[ $EUID -eq 0 ]] || die "run as root (network namespaces, tc)"
case ${1:-run} in
  run) cmd_run ;;
  down)
    mkdir -p "$ROOT"; exec 9> "$ROOT/.lock"
    flock -n 9 || die "a run is in progress (it holds $ROOT/.lock)"
    topo_down; log "namespaces $P-* removed" ;;
  *) sed -n '2,30p' "$0"; exit 2 ;;
esac
