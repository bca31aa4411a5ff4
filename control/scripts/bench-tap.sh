#!/usr/bin/env bash
# Measures the appliance over DPDK net_tap with ordinary Linux clients, against the same workload
# on the Linux TCP stack (a threaded server on the tap's kernel-side address, in the same
# namespace), in one run, runs interleaved. Also the appliance's CPU use when idle, with and without
# busy polling. Needs root. Everything it creates (namespace, tap, processes) is removed on exit.
#
# Usage: control/scripts/bench-tap.sh          (SECS=5 RUNS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${SECS:-5}
runs=${RUNS:-3}
[ "$(id -u)" = 0 ] || { echo "bench: needs root (namespace, net_tap)" >&2; exit 1; }
control/scripts/deps.sh
cargo build --release --locked -q -p switchyard-control --bin switchyard --example loadgen
bin=$PWD/target/release/switchyard
lg=$PWD/target/release/examples/loadgen

ns=sy-bench-$$
tap=sybench
tmp=$(mktemp -d)
app_pid=""
kern_pid=""
cleanup() {
    trap - EXIT INT TERM
    for p in $app_pid $kern_pid; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rmdir "/var/run/dpdk/$ns" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
# The kernel baseline lives on the namespace's loopback (the tap comes and goes with the appliance).
ip -n "$ns" addr add 198.18.1.1/24 dev lo

start_appliance() { # busy_poll
    cat > "$tmp/cfg.toml" <<CFG
[eal]
lcores = "0@(0-1)"
file_prefix = "$ns"
[engine]
busy_poll = $1
[[port]]
profile = "net_tap"
devargs = "iface=$tap"
address = "198.18.0.2/24"
[[service]]
kind = "echo"
port = 7
[[service]]
kind = "http"
port = 80
CFG
    ip netns exec "$ns" "$bin" run --config "$tmp/cfg.toml" 2>"$tmp/app.log" &
    app_pid=$!
    for _ in $(seq 300); do ip -n "$ns" link show "$tap" >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$ns" addr add 198.18.0.1/24 dev "$tap"
    ip -n "$ns" link set "$tap" up
    for _ in $(seq 50); do ip netns exec "$ns" ping -c1 -W1 198.18.0.2 >/dev/null 2>&1 && break; done
}

stop_appliance() {
    kill -TERM "$app_pid"; wait "$app_pid" || true; app_pid=""
}

# CPU use of a process over N seconds, in percent of one core.
cpu_pct() {
    local pid=$1 n=$2 hz a b
    hz=$(getconf CLK_TCK)
    a=$(awk '{print $14+$15}' "/proc/$pid/stat")
    sleep "$n"
    b=$(awk '{print $14+$15}' "/proc/$pid/stat")
    awk -v a="$a" -v b="$b" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", 100*(b-a)/hz/n }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
rate() { awk '{print $3}'; }

ip netns exec "$ns" "$lg" serve --echo 198.18.1.1:7007 --http 198.18.1.1:8080 &
kern_pid=$!

echo "== idle CPU of the appliance (${secs} s each, % of one core)"
start_appliance false
sleep 1
idle_backoff=$(cpu_pct "$app_pid" "$secs")
echo "busy_poll = false: ${idle_backoff}%"
stop_appliance
start_appliance true
sleep 1
idle_busy=$(cpu_pct "$app_pid" "$secs")
echo "busy_poll = true:  ${idle_busy}%"
stop_appliance

for busy in false true; do
    start_appliance "$busy"
    declare -A r=()
    for i in $(seq "$runs"); do
        r[echo_app]+=" $(ip netns exec "$ns" "$lg" echo --addr 198.18.0.2:7 --secs "$secs" | rate)"
        r[echo_kern]+=" $(ip netns exec "$ns" "$lg" echo --addr 198.18.1.1:7007 --secs "$secs" | rate)"
        r[http_app]+=" $(ip netns exec "$ns" "$lg" http --addr 198.18.0.2:80 --conns 4 --secs "$secs" | rate)"
        r[http_kern]+=" $(ip netns exec "$ns" "$lg" http --addr 198.18.1.1:8080 --conns 4 --secs "$secs" | rate)"
    done
    stop_appliance
    echo "== busy_poll = $busy: ${runs} runs of ${secs} s each, interleaved; median (all runs)"
    for k in echo http; do
        a=$(echo "${r[${k}_app]}" | median)
        b=$(echo "${r[${k}_kern]}" | median)
        unit=$([ $k = echo ] && echo "round trips/s, 1 conn, 64 B" || echo "requests/s, 4 keep-alive conns")
        printf '%-5s appliance (net_tap) %8s  kernel (loopback in ns) %8s  ratio %s   [%s]\n' \
            "$k" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a/b }')" "$unit"
        echo "      appliance runs:${r[${k}_app]}   kernel runs:${r[${k}_kern]}"
    done
    unset r
done
