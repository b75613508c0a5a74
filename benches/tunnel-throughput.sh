#!/usr/bin/env bash
# Tunnel throughput, side by side, in one run.
#
#   sudo benches/tunnel-throughput.sh            # REPS=5 TIME=5 by default
#   sudo REPS=7 TIME=10 benches/tunnel-throughput.sh
#
# For each of: the plain veth, wice, wireguard-go (Debian, configured with wg),
# boringtun-cli and gotatun-cli (crates.io), it builds two network namespaces
# joined by a veth pair, brings the tunnel up with MTU 1420 on both ends, and
# runs iperf3 TCP with 1 and 4 streams, REPS times each. It prints one table of
# medians: Gbit/s, ratio to wice, machine CPU use during the runs (of 100 % =
# every core busy), and UDP receive-buffer drops in the two namespaces.
#
# A peer that cannot be installed is skipped with a line that says so. All
# traffic stays inside the namespaces; everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
TIME=${TIME:-5}
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/wice-bench}
ONLY=${ONLY:-"veth wice wireguard-go boringtun-cli gotatun-cli"}

[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, TUN devices)" >&2; exit 1; }

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

cargo build --release --locked --quiet --bin wice
WICE="$PWD/target/release/wice"

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
    ip netns exec "$ns" "$WICE" up -c "$work/$side.toml" 2> "$work/wice-$side.log" & pids+=($!)
  done
  for _ in $(seq 100); do [ -S "$work/a.sock" ] && [ -S "$work/b.sock" ] && break; sleep 0.05; done
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

cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
udp_drops() {
  local total=0 n
  for ns in "$ns_a" "$ns_b"; do
    n=$(ip netns exec "$ns" nstat -az UdpRcvbufErrors 2>/dev/null | awk '/UdpRcvbufErrors/{print $2}')
    total=$((total + ${n:-0}))
  done
  echo $total
}
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A RESULT
measure() { # name target
  local name=$1 target=$2
  ip netns exec "$ns_a" ping -c 1 -w 10 "$target" >/dev/null \
    || { echo "$name: tunnel did not come up; skipped"; return 1; }
  for streams in 1 4; do
    local rates=() cpus=() drops_before drops_after
    drops_before=$(udp_drops)
    for _ in $(seq "$REPS"); do
      ip netns exec "$ns_b" pkill -x iperf3 2>/dev/null || true
      ip netns exec "$ns_b" iperf3 -s -D >/dev/null 2>&1; sleep 0.3
      read -r busy0 total0 < <(cpu_busy)
      local out
      out=$(ip netns exec "$ns_a" iperf3 -c "$target" -t "$TIME" -P "$streams" -J 2>/dev/null || true)
      read -r busy1 total1 < <(cpu_busy)
      rates+=("$(echo "$out" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)
except Exception: print("nan")')")
      cpus+=("$(awk -v b=$((busy1-busy0)) -v t=$((total1-total0)) 'BEGIN{printf "%.0f", t ? 100*b/t : 0}')")
    done
    drops_after=$(udp_drops)
    RESULT[$name,$streams]=$(printf '%s\n' "${rates[@]}" | median)
    RESULT[$name,$streams,cpu]=$(printf '%s\n' "${cpus[@]}" | median)
    RESULT[$name,$streams,drops]=$((drops_after - drops_before))
    echo "$name, $streams stream(s): ${rates[*]} Gbit/s" >&2
  done
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

# --- the run -------------------------------------------------------------------

ran=()
for impl in $ONLY; do
  teardown; lab
  case $impl in
    veth) measure veth 10.0.0.2 && ran+=(veth) ;;
    wice) start_wice; measure wice 10.77.0.2 && ran+=(wice) && verify_transfer wice 10.77.0.2 ;;
    wireguard-go)
      if command -v wireguard-go >/dev/null; then
        start_uapi "$(command -v wireguard-go)" -f
        measure wireguard-go 10.77.0.2 && ran+=(wireguard-go)
      else echo "wireguard-go: not installed (apt-get install wireguard-go); skipped"; fi ;;
    boringtun-cli|gotatun-cli)
      binary=$impl; [ "$impl" = gotatun-cli ] && binary=gotatun
      if bin=$(install_crate "$impl" "$binary"); then
        start_uapi "$bin" -f --disable-drop-privileges
        measure "$impl" 10.77.0.2 && ran+=("$impl")
      else echo "$impl: could not be installed from crates.io; skipped"; fi ;;
  esac
done
teardown

echo
echo "iperf3 TCP through a veth pair, tunnel MTU 1420, median of $REPS x ${TIME}s; $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-14s | %9s %8s %5s %7s | %9s %8s %5s %7s\n' "" "1 stream" "vs wice" "CPU" "drops" "4 streams" "vs wice" "CPU" "drops"
printf '%-14s | %9s %8s %5s %7s | %9s %8s %5s %7s\n' "" "Gbit/s" "" "%" "UDP rx" "Gbit/s" "" "%" "UDP rx"
for impl in "${ran[@]}"; do
  line=$(printf '%-14s |' "$impl")
  for streams in 1 4; do
    rate=${RESULT[$impl,$streams]:-nan}
    base=${RESULT[wice,$streams]:-nan}
    ratio=$(awk -v r="$rate" -v b="$base" 'BEGIN{ if (b+0 > 0 && r != "nan") printf "%.2fx", r/b; else print "-" }')
    line+=$(printf ' %9.2f %8s %5s %7s |' "$rate" "$ratio" "${RESULT[$impl,$streams,cpu]:-}" "${RESULT[$impl,$streams,drops]:-}")
  done
  echo "${line% |}"
done
