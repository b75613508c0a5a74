#!/usr/bin/env bash
# Resident memory of `wice up` with 1, 100 and 1,000 static peers, and the
# slope per added peer.
#
#   sudo benches/peer-memory.sh                  # COUNTS="1 100 1000" SETTLE=3
#
# Each run starts `wice up` in its own network namespace (only `lo`, so nothing
# leaves it) with N peers: random public keys (any 32 bytes are an X25519
# public key), one /32 each inside the interface's /16 (so no routes), no
# endpoint and no signaling (nothing is sent). After SETTLE seconds it reads
# VmRSS and RssAnon from /proc/PID/status. Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"1 100 1000"}
SETTLE=${SETTLE:-3}
[ "$(id -u)" -eq 0 ] || { echo "needs root (network namespaces, TUN devices)" >&2; exit 1; }

cargo build --release --locked --quiet --bin wice
WICE="$PWD/target/release/wice"
ns="pm$$"
work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
key=$("$WICE" genkey)

declare -A RSS ANON
for n in $COUNTS; do
  python3 - "$n" "$key" "$work" "$ns" > "$work/wice.toml" <<'PY'
import base64, os, sys
n, key, work, ns = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
print(f'[interface]\nname = "{ns}w"\nprivate_key = "{key}"\nlisten_port = 0\n'
      f'addresses = ["10.100.0.1/16"]\ncontrol_socket = "{work}/wice.sock"\n')
for i in range(n):
    pub = base64.b64encode(os.urandom(32)).decode()
    print(f'[[peer]]\npublic_key = "{pub}"\nallowed_ips = ["10.100.{1 + i // 250}.{1 + i % 250}/32"]\n')
PY
  chmod 600 "$work/wice.toml"  # it holds a private key: wice refuses a readable one
  ip netns exec "$ns" "$WICE" up -c "$work/wice.toml" 2> "$work/wice.log" & pid=$!
  for _ in $(seq 200); do [ -S "$work/wice.sock" ] && break; sleep 0.05; done
  [ -S "$work/wice.sock" ] || { cat "$work/wice.log" >&2; exit 1; }
  sleep "$SETTLE"
  RSS[$n]=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  ANON[$n]=$(awk '/^RssAnon/{print $2}' "/proc/$pid/status")
  echo "$n peers: VmRSS ${RSS[$n]} KiB, RssAnon ${ANON[$n]} KiB" >&2
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
  rm -f "$work/wice.sock"
done

echo
echo "wice up, static peers, RSS after ${SETTLE}s ($(date -u +%F), $(uname -r))"
printf '%8s | %10s | %12s\n' peers "VmRSS KiB" "RssAnon KiB"
for n in $COUNTS; do printf '%8s | %10s | %12s\n' "$n" "${RSS[$n]}" "${ANON[$n]}"; done
read -r first last <<< "$(echo "$COUNTS" | awk '{print $1, $NF}')"
awk -v a="${RSS[$first]}" -v b="${RSS[$last]}" -v n0="$first" -v n1="$last" \
  'BEGIN{ printf "slope: %.1f KiB resident per added peer (%s -> %s peers)\n", (b-a)/(n1-n0), n0, n1 }'
