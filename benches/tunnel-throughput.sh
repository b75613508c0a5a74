#!/usr/bin/env bash
# Tunnel throughput, side by side, in one run.
#
#   sudo benches/tunnel-throughput.sh            # REPS=3 TIME=5 by default
#   sudo REPS=5 TIME=10 ONLY="wice wireguard-go" benches/tunnel-throughput.sh
#
# For each of: the plain veth, wice, current wireguard-go (built from the Go
# module proxy, newest version of golang.zx2c4.com/wireguard), Debian's
# wireguard-go, boringtun-cli and gotatun-cli (crates.io), it builds two
# network namespaces joined by a veth pair, brings the tunnel up with MTU 1420
# on both ends, and measures, REPS times each (medians printed):
#   - iperf3 TCP with 1 and 4 streams: Gbit/s and ratio to wice;
#   - CPU seconds per GB moved: utime+stime of the two tunnel processes (all
#     threads, /proc/PID/stat) plus the time of the ksoftirqd threads, over the
#     bytes iperf3 received. The kernel here is built without
#     IRQ_TIME_ACCOUNTING, so softirq work that runs in a tunnel process's own
#     context (a veth send or a TUN write processes the receiver's softirq
#     inline) is charged to that process's stime; softirq deferred to
#     ksoftirqd is added (machine-wide: an upper bound). iperf3's own time and
#     softirq that interrupts other tasks are not counted. This figure does not
#     depend on how busy the machine is; Gbit/s does;
#   - ping RTT while the 1-stream TCP run is going (median of the per-run means);
#   - iperf3 UDP at full rate (-b 0, 1392-byte datagrams): Gbit/s received and
#     loss %.
# Caches (built peers) live in PEERS_DIR (~/.cache/wice-bench), outside the repo.
#
# A peer that cannot be installed is skipped with a line that says so. All
# traffic stays inside the namespaces; everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
TIME=${TIME:-5}
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/wice-bench}
ONLY=${ONLY:-"veth wice wireguard-go wireguard-go-deb boringtun-cli gotatun-cli"}
# TCP stream counts; the table shows 1 and 4, any others are listed below it.
STREAMS=${STREAMS:-"1 4"}
# PIN=1: pin each wice's TUN reader to core 0 and UDP reader to core 1.
# PIN=split: pin both of a side's packet threads together, side a on core 0 and
# side b on core 1 (each tunnel end keeps its own core).
PIN=${PIN:-0}
# PERF=1: after wice's runs, record a perf profile (perf record -g) of both
# wice processes under one more 1-stream run and print the hottest symbols
# per thread (PERF_KEEP=path keeps perf.data). WICE_BIN=path measures that binary instead of building this tree.
PERF=${PERF:-0}
WICE_BIN=${WICE_BIN:-}

[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, TUN devices)" >&2; exit 1; }

LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
tag="tp$$"
ns_a="${tag}a"; ns_b="${tag}b"
work=$(mktemp -d)
pids=()

teardown() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  pids=()
  for ns in "$ns_a" "$ns_b"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -f /var/run/wireguard/"${tag}"*.sock
}
cleanup() { teardown; rm -rf "$work"; }
trap cleanup EXIT INT TERM

# --- tools -----------------------------------------------------------------

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v wg >/dev/null || need+=(wireguard-tools)
command -v wireguard-go >/dev/null || need+=(wireguard-go)
command -v nstat >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "could not install ${need[*]}"
fi
command -v iperf3 >/dev/null || { echo "iperf3 is required" >&2; exit 1; }

install_crate() { # crate binary -> prints the binary's path, or nothing
  local bin="$PEERS_DIR/bin/$2"
  if [ ! -x "$bin" ]; then
    echo "installing $1 from crates.io into $PEERS_DIR (once; takes minutes)..." >&2
    cargo install --quiet --locked --root "$PEERS_DIR" "$1" >&2 || true
  fi
  [ -x "$bin" ] && echo "$bin"
}

install_wireguard_go() { # -> prints the binary's path, or nothing
  local bin="$PEERS_DIR/bin/wireguard"  # go install names it after the module
  if [ ! -x "$bin" ] && command -v go >/dev/null; then
    echo "building golang.zx2c4.com/wireguard@latest into $PEERS_DIR (once)..." >&2
    GOBIN="$PEERS_DIR/bin" GOPATH="$PEERS_DIR/gopath" GOCACHE="$PEERS_DIR/gocache" \
      go install golang.zx2c4.com/wireguard@latest >&2 || true
  fi
  [ -x "$bin" ] && echo "$bin"
}
wireguard_go_version() {
  GOPATH="$PEERS_DIR/gopath" GOFLAGS=-mod=mod go version -m "$1" 2>/dev/null | awk '$1=="mod"{print $3; exit}'
}

if [ -n "$WICE_BIN" ]; then
  WICE=$WICE_BIN
else
  cargo build --release --locked --quiet --bin wice
  WICE="$PWD/target/release/wice"
fi

# --- one lab -----------------------------------------------------------------

lab() {
  ip netns add "$ns_a"; ip netns add "$ns_b"
  ip -n "$ns_a" link set lo up; ip -n "$ns_b" link set lo up
  ip link add "${tag}va" netns "$ns_a" type veth peer name "${tag}vb" netns "$ns_b"
  ip -n "$ns_a" addr add 10.0.0.1/24 dev "${tag}va"
  ip -n "$ns_b" addr add 10.0.0.2/24 dev "${tag}vb"
  ip -n "$ns_a" link set "${tag}va" up
  ip -n "$ns_b" link set "${tag}vb" up
}

key_a=$("$WICE" genkey); key_b=$("$WICE" genkey)
pub_a=$(echo "$key_a" | "$WICE" pubkey); pub_b=$(echo "$key_b" | "$WICE" pubkey)

start_wice() {
  for side in a b; do
    local ns key peer me them
    if [ $side = a ]; then ns=$ns_a key=$key_a peer=$pub_b me=1 them=2; else ns=$ns_b key=$key_b peer=$pub_a me=2 them=1; fi
    cat > "$work/$side.toml" <<TOML
[interface]
name = "${tag}w$side"
private_key = "$key"
listen_port = 51820
addresses = ["10.77.0.$me/24"]
mtu = 1420
control_socket = "$work/$side.sock"
[[peer]]
public_key = "$peer"
allowed_ips = ["10.77.0.$them/32"]
endpoint = "10.0.0.$them:51820"
TOML
    chmod 600 "$work/$side.toml"  # it holds a private key: wice refuses a readable one
    ip netns exec "$ns" "$WICE" up -c "$work/$side.toml" 2> "$work/wice-$side.log" & pids+=($!)
  done
  for _ in $(seq 100); do [ -S "$work/a.sock" ] && [ -S "$work/b.sock" ] && break; sleep 0.05; done
  if [ "$PIN" = 1 ]; then
    for pid in "${pids[@]}"; do
      for task in /proc/"$pid"/task/*; do
        case $(cat "$task/comm") in
          wice-tun-rx) taskset -p -c 0 "${task##*/}" >/dev/null ;;
          wice-udp-rx) taskset -p -c 1 "${task##*/}" >/dev/null ;;
        esac
      done
    done
    echo "wice: packet threads pinned (TUN reader core 0, UDP reader core 1)"
  elif [ "$PIN" = split ]; then
    local core=0
    for pid in "${pids[@]}"; do
      for task in /proc/"$pid"/task/*; do
        case $(cat "$task/comm") in
          wice-tun-rx|wice-udp-rx) taskset -p -c "$core" "${task##*/}" >/dev/null ;;
        esac
      done
      core=$(( (core + 1) % $(nproc) ))
    done
    echo "wice: each side's packet threads pinned to a core of their own (a: 0, b: 1)"
  fi
}

# Implementations that speak the UAPI and are configured with `wg`.
start_uapi() { # binary args...
  local bin=$1; shift
  for side in a b; do
    local ns key peer me them ifname
    if [ $side = a ]; then ns=$ns_a key=$key_a peer=$pub_b me=1 them=2; else ns=$ns_b key=$key_b peer=$pub_a me=2 them=1; fi
    ifname="${tag}$side"
    ip netns exec "$ns" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 WG_SUDO=1 \
      "$bin" "$@" "$ifname" > "$work/$(basename "$bin")-$side.log" 2>&1 & pids+=($!)
    for _ in $(seq 100); do [ -S "/var/run/wireguard/$ifname.sock" ] && break; sleep 0.05; done
    echo "$key" > "$work/key-$side"
    ip netns exec "$ns" wg set "$ifname" private-key "$work/key-$side" listen-port 51820 \
      peer "$peer" allowed-ips "10.77.0.$them/32" endpoint "10.0.0.$them:51820"
    ip -n "$ns" addr add "10.77.0.$me/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" mtu 1420 up
  done
}

proc_cpu_ticks() { # pids... -> utime+stime of each process (all its threads), summed, in ticks
  local total=0 pid t
  for pid in "$@"; do
    t=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo $total
}
ksoftirqd_ticks() { proc_cpu_ticks $(pgrep -x 'ksoftirqd/[0-9]+' || true); }
HZ=$(getconf CLK_TCK)
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
json_field() { python3 -c 'import json,sys
try:
    d = json.load(sys.stdin)["end"]
    print(eval(sys.argv[1]))
except Exception: print("nan")' "$1"; }

declare -A RESULT
measure() { # name target
  local name=$1 target=$2
  ip netns exec "$ns_a" ping -c 1 -w 10 "$target" >/dev/null \
    || { echo "$name: tunnel did not come up; skipped"; return 1; }
  local tunnel_pids=("${pids[@]}")
  [ "$name" = veth ] && tunnel_pids=()
  for streams in $STREAMS; do
    local rates=() cpus=() rtts=()
    for _ in $(seq "$REPS"); do
      ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
      ip netns exec "$ns_b" iperf3 -s -D >/dev/null 2>&1; sleep 0.3
      local own0 soft0 own1 soft1 out ping_out
      own0=$(proc_cpu_ticks "${tunnel_pids[@]}"); soft0=$(ksoftirqd_ticks)
      if [ "$streams" = 1 ]; then
        ip netns exec "$ns_a" ping -q -i 0.1 -w "$((TIME - 1))" "$target" > "$work/ping" 2>&1 &
        local pinger=$!
      fi
      out=$(ip netns exec "$ns_a" iperf3 -c "$target" -t "$TIME" -P "$streams" -J 2>/dev/null || true)
      own1=$(proc_cpu_ticks "${tunnel_pids[@]}"); soft1=$(ksoftirqd_ticks)
      if [ "$streams" = 1 ]; then
        wait "$pinger" || true
        rtts+=("$(awk -F'/' '/^rtt|^round-trip/{print $5}' "$work/ping")")
      fi
      local bytes
      bytes=$(echo "$out" | json_field 'd["sum_received"]["bytes"]')
      rates+=("$(echo "$out" | json_field 'd["sum_received"]["bits_per_second"]/1e9')")
      if [ ${#tunnel_pids[@]} -eq 0 ]; then cpus+=(nan); else
        cpus+=("$(awk -v o=$((own1 - own0 + soft1 - soft0)) -v hz="$HZ" -v b="$bytes" \
          'BEGIN{ if (b != "nan" && b > 0) printf "%.2f", (o / hz) / (b / 1e9); else print "nan" }')")
      fi
    done
    RESULT[$name,$streams]=$(printf '%s\n' "${rates[@]}" | median)
    RESULT[$name,$streams,cpu]=$(printf '%s\n' "${cpus[@]}" | median)
    [ "$streams" = 1 ] && RESULT[$name,rtt]=$(printf '%s\n' "${rtts[@]}" | grep -v '^$' | median)
    echo "$name, $streams stream(s): ${rates[*]} Gbit/s; CPU s/GB ${cpus[*]}" >&2
  done
  local udp_rates=() udp_loss=()
  for _ in $(seq "$REPS"); do
    ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
    ip netns exec "$ns_b" iperf3 -s -D >/dev/null 2>&1; sleep 0.3
    local out
    out=$(ip netns exec "$ns_a" iperf3 -c "$target" -u -b 0 -l 1392 -t "$TIME" -J 2>/dev/null || true)
    udp_rates+=("$(echo "$out" | json_field 'd["sum"]["bits_per_second"]*(1-d["sum"]["lost_percent"]/100)/1e9')")
    udp_loss+=("$(echo "$out" | json_field 'd["sum"]["lost_percent"]')")
  done
  RESULT[$name,udp]=$(printf '%s\n' "${udp_rates[@]}" | median)
  RESULT[$name,udp,loss]=$(printf '%s\n' "${udp_loss[@]}" | median)
  echo "$name, UDP: ${udp_rates[*]} Gbit/s, loss ${udp_loss[*]} %" >&2
  ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
  return 0
}

# Correctness at full speed: 1 GiB of random bytes through the tunnel over TCP,
# SHA-256 compared at both ends.
verify_transfer() { # name target
  local blob="$work/blob" expected got start end
  head -c 1073741824 /dev/urandom > "$blob"
  expected=$(sha256sum "$blob" | cut -d' ' -f1)
  ip netns exec "$ns_b" python3 -c '
import hashlib, socket
s = socket.create_server(("0.0.0.0", 5299)); c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())' > "$work/received" &
  local server=$!
  sleep 0.5
  start=$(date +%s.%N)
  ip netns exec "$ns_a" python3 -c '
import socket, sys
c = socket.create_connection((sys.argv[1], 5299))
with open(sys.argv[2], "rb") as f: c.sendfile(f)
c.shutdown(socket.SHUT_WR); c.recv(1)' "$2" "$blob"
  wait "$server"
  end=$(date +%s.%N)
  read -r bytes got < "$work/received"
  rm -f "$blob"
  if [ "$got" = "$expected" ] && [ "$bytes" = 1073741824 ]; then
    echo "$1: 1 GiB through the tunnel, SHA-256 identical at the far end, $(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.2f", 8.589934592/(e-s)}') Gbit/s"
  else
    echo "$1: TRANSFER CORRUPTED OR SHORT: $bytes bytes, sha256 $got, expected $expected"
  fi
}

# Where wice's CPU goes under one stream: perf samples of both processes, all
# threads, the hottest symbols per thread (self time, % of all samples).
profile_wice() { # target
  command -v perf >/dev/null || { echo "perf: not installed; no profile"; return 0; }
  ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
  ip netns exec "$ns_b" iperf3 -s -D >/dev/null 2>&1; sleep 0.3
  ip netns exec "$ns_a" iperf3 -c "$1" -t "$TIME" >/dev/null 2>&1 &
  local client=$!
  sleep 0.5
  local list; list=$(IFS=,; echo "${pids[*]}")
  perf record -q -F 499 -g -p "$list" -o "$work/perf.data" -- sleep "$((TIME - 1))" >/dev/null 2>&1 || true
  wait "$client" || true
  [ -n "${PERF_KEEP:-}" ] && cp "$work/perf.data" "$PERF_KEEP"
  echo "perf profile of wice (both ends, $((TIME - 1)) s of one TCP stream), self time by thread:"
  perf report -i "$work/perf.data" --no-children --sort comm -q --stdio -g none 2>/dev/null | grep -v '^$' | head -8 || true
  for thread in wice-tun-rx wice-udp-rx; do
    echo "  $thread, hottest symbols (% of all samples):"
    perf report -i "$work/perf.data" --no-children --comms "$thread" --sort sym -q --stdio -g none 2>/dev/null \
      | grep -v '^$' | head -12 | sed 's/^/    /' || true
  done
  ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
}

# --- the run -------------------------------------------------------------------

ran=()
for impl in $ONLY; do
  teardown; lab
  case $impl in
    veth) measure veth 10.0.0.2 && ran+=(veth) ;;
    wice)
      start_wice
      measure wice 10.77.0.2 && ran+=(wice) && verify_transfer wice 10.77.0.2
      [ "$PERF" = 1 ] && profile_wice 10.77.0.2 ;;
    wireguard-go)
      if bin=$(install_wireguard_go); then
        echo "wireguard-go: golang.zx2c4.com/wireguard $(wireguard_go_version "$bin")"
        start_uapi "$bin" -f
        measure wireguard-go 10.77.0.2 && ran+=(wireguard-go)
      else echo "wireguard-go: could not be built from the Go module proxy; skipped"; fi ;;
    wireguard-go-deb)
      if [ -x /usr/bin/wireguard-go ]; then
        echo "wireguard-go-deb: Debian $(dpkg-query -W -f '${Version}' wireguard-go 2>/dev/null)"
        start_uapi /usr/bin/wireguard-go -f
        measure wireguard-go-deb 10.77.0.2 && ran+=(wireguard-go-deb)
      else echo "wireguard-go-deb: not installed (apt-get install wireguard-go); skipped"; fi ;;
    boringtun-cli|gotatun-cli)
      binary=$impl; [ "$impl" = gotatun-cli ] && binary=gotatun
      if bin=$(install_crate "$impl" "$binary"); then
        start_uapi "$bin" -f --disable-drop-privileges
        measure "$impl" 10.77.0.2 && ran+=("$impl")
      else echo "$impl: could not be installed from crates.io; skipped"; fi ;;
  esac
done
teardown

ratio() { awk -v r="$1" -v b="$2" 'BEGIN{ if (b+0 > 0 && r != "nan" && r != "") printf "%.2fx", r/b; else print "-" }'; }
echo
echo "$(date -u +%F) $(uname -r); $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average before the run: $LOAD_BEFORE"
echo "veth pair, tunnel MTU 1420, median of $REPS x ${TIME}s; CPU = s of tunnel processes + ksoftirqd per GB received"
printf '%-16s | %7s %6s | %7s %6s | %7s %6s | %7s %6s | %7s | %7s %6s\n' \
  "" "1 TCP" "vs" "4 TCP" "vs" "CPU/GB" "vs" "CPU/GB" "vs" "ping" "UDP" "UDP"
printf '%-16s | %7s %6s | %7s %6s | %7s %6s | %7s %6s | %7s | %7s %6s\n' \
  "" "Gbit/s" "wice" "Gbit/s" "wice" "1 TCP" "wice" "4 TCP" "wice" "ms" "Gbit/s" "loss%"
for impl in "${ran[@]}"; do
  printf '%-16s | %7.2f %6s | %7.2f %6s | %7s %6s | %7s %6s | %7s | %7.2f %6s\n' "$impl" \
    "${RESULT[$impl,1]}" "$(ratio "${RESULT[$impl,1]}" "${RESULT[wice,1]:-}")" \
    "${RESULT[$impl,4]}" "$(ratio "${RESULT[$impl,4]}" "${RESULT[wice,4]:-}")" \
    "${RESULT[$impl,1,cpu]}" "$(ratio "${RESULT[$impl,1,cpu]}" "${RESULT[wice,1,cpu]:-}")" \
    "${RESULT[$impl,4,cpu]}" "$(ratio "${RESULT[$impl,4,cpu]}" "${RESULT[wice,4,cpu]:-}")" \
    "${RESULT[$impl,rtt]:-nan}" "${RESULT[$impl,udp]}" "$(printf "%.1f" "${RESULT[$impl,udp,loss]}")"
done
for streams in $STREAMS; do
  case $streams in 1|4) continue ;; esac
  for impl in "${ran[@]}"; do
    echo "$impl, $streams TCP streams: ${RESULT[$impl,$streams]} Gbit/s, ${RESULT[$impl,$streams,cpu]} CPU s/GB"
  done
done
