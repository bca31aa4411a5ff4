#!/usr/bin/env bash
# The proxy service against a direct connection, in one run: Linux clients in a namespace ->
# the appliance on net_tap (fast path) -> its proxy -> an upstream echo server on the kernel path
# (loopback of the namespace), against the same clients talking to that upstream directly.
# A third column is the same clients against the appliance's own echo service: the tap and the
# engine without the proxy, i.e. the part of the cost that is the wire.
# Bulk: one connection echoing as fast as it can (Mbit/s each way). Short: 16 clients doing
# connect, 64 B, echo, close (connections/s). Interleaved REPEAT times; min/median/max printed,
# with the hypervisor's steal on CPUs 0 and 1 over each round (control/scripts/steal.sh).
#
# Usage (root): control/scripts/bench-proxy.sh      SECS=5 REPEAT=3
set -euo pipefail
. "$(dirname "$0")/steal.sh"
SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
[ "$(id -u)" = 0 ] || { echo "bench-proxy: needs root (a namespace, net_tap)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p switchyard-control --bin switchyard --example loadgen >&2
sy=$PWD/target/release/switchyard
lg=$PWD/target/release/examples/loadgen
ns=sybp tap=sybp0
tmp=$(mktemp -d)
app="" up=""
cleanup() {
    for p in $app $up; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    ip netns del $ns 2>/dev/null || true
    rm -rf "$tmp" /var/run/dpdk/bench-proxy
}
trap cleanup EXIT
ip netns add $ns
ip -n $ns link set lo up
cat > "$tmp/proxy.toml" <<CFG
[eal]
file_prefix = "bench-proxy"
memory_mb = 256
[engine]
drain_secs = 0
[metrics]
listen = ""
[control]
socket = "$tmp/ctl.sock"
[[port]]
profile = "net_tap"
devargs = "iface=$tap"
address = "198.18.0.2/24"
[[service]]
kind = "proxy"
port = 8080
upstreams = ["127.0.0.1:5101"]
[[service]]
kind = "echo"
port = 7
CFG
ip netns exec $ns "$lg" serve --echo 127.0.0.1:5101 --http 127.0.0.1:5102 >/dev/null 2>&1 &
up=$!
ip netns exec $ns "$sy" run --config "$tmp/proxy.toml" >"$tmp/app.log" 2>&1 &
app=$!
for _ in $(seq 300); do grep -q "proxy listening" "$tmp/app.log" && break; sleep 0.1; done
ip -n $ns addr add 198.18.0.1/24 dev $tap
# Sources for the short connections to the appliance: each one the clients close holds its tuple
# for a minute in TIME_WAIT (Linux reuses such tuples only on loopback), so one source address
# runs out of ports after about 28,000 connections a minute to the same service.
for i in $(seq 11 18); do ip -n $ns addr add 198.18.0.$i/24 dev $tap; done
sources=(--from 198.18.0.11 --sources 8)
ip -n $ns link set $tap up
ip netns exec $ns ping -c 1 -W 2 198.18.0.2 >/dev/null

num() { awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) {print $i; exit}}'; }
stats() { sort -n | awk '{v[NR]=$1} END {printf "min %.0f  median %.0f  max %.0f", v[1], v[int((NR+1)/2)], v[NR]}'; }
med() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
pb=() db=() eb=() ps=() ds=() es=()
for r in $(seq "$REPEAT"); do
    s0=$(steal_now)
    pb+=("$(ip netns exec $ns "$lg" bulk --addr 198.18.0.2:8080 --secs "$SECS" | num)")
    db+=("$(ip netns exec $ns "$lg" bulk --addr 127.0.0.1:5101 --secs "$SECS" | num)")
    eb+=("$(ip netns exec $ns "$lg" bulk --addr 198.18.0.2:7 --secs "$SECS" | num)")
    ps+=("$(ip netns exec $ns "$lg" short --addr 198.18.0.2:8080 --conns 16 --secs "$SECS" "${sources[@]}" | num)")
    ds+=("$(ip netns exec $ns "$lg" short --addr 127.0.0.1:5101 --conns 16 --secs "$SECS" | num)")
    es+=("$(ip netns exec $ns "$lg" short --addr 198.18.0.2:7 --conns 16 --secs "$SECS" "${sources[@]}" | num)")
    echo "round $r: bulk proxy ${pb[-1]} / direct ${db[-1]} / appliance echo ${eb[-1]} Mbit/s; short proxy ${ps[-1]} / direct ${ds[-1]} / appliance echo ${es[-1]} conns/s; host steal CPU 0 / CPU 1: $(steal_record "$tmp/steal" "$s0" "$(steal_now)")" >&2
done
echo
echo "proxy (client -> net_tap -> appliance proxy -> kernel loopback -> echo) vs direct (client -> loopback -> echo)"
echo "vs the appliance's own echo (client -> net_tap -> engine), $SECS s x $REPEAT:"
echo "  bulk, Mbit/s each way:  proxy $(printf '%s\n' "${pb[@]}" | stats);  direct $(printf '%s\n' "${db[@]}" | stats);  appliance echo $(printf '%s\n' "${eb[@]}" | stats)"
echo "  short conns/s (64 B):   proxy $(printf '%s\n' "${ps[@]}" | stats);  direct $(printf '%s\n' "${ds[@]}" | stats);  appliance echo $(printf '%s\n' "${es[@]}" | stats)"
awk -v a="$(printf '%s\n' "${pb[@]}" | med)" -v b="$(printf '%s\n' "${db[@]}" | med)" -v e="$(printf '%s\n' "${eb[@]}" | med)" \
    -v c="$(printf '%s\n' "${ps[@]}" | med)" -v d="$(printf '%s\n' "${ds[@]}" | med)" -v f="$(printf '%s\n' "${es[@]}" | med)" \
    'BEGIN {printf "  ratios of medians: proxy/direct bulk %.3f, short %.3f; proxy/appliance echo bulk %.3f, short %.3f\n", a / b, c / d, a / e, c / f}'
echo "  host steal over the rounds, medians (max): $(steal_summary < "$tmp/steal")"
"$sy" ctl --socket "$tmp/ctl.sock" listeners
