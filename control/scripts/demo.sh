#!/usr/bin/env bash
# The built-in demo: creates network namespace sy-demo, starts the appliance inside it on net_tap
# (so the tap sy0 is born there; no hugepages), puts the tap's kernel side at 198.18.0.1/24 and
# prints how to reach the appliance at 198.18.0.2. Ctrl-C stops the appliance and removes the
# namespace.
#
# Usage: demo.sh [path/to/switchyard]
set -euo pipefail

bin=${1:-target/release/switchyard}
ns=sy-demo
tap=sy0
host=198.18.0.1/24
app=198.18.0.2

if [ "$(id -u)" != 0 ]; then
    echo "demo: needs root (a network namespace and a tap device): run 'sudo make run'" >&2
    exit 1
fi
if ip netns list | grep -qw "$ns"; then
    echo "demo: namespace $ns already exists (is another demo running?); remove it with: ip netns del $ns" >&2
    exit 1
fi

pid=""
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
    # EAL leaves its runtime folder for the demo's file prefix behind, empty: remove it.
    rmdir /var/run/dpdk/switchyard 2>/dev/null || true
    echo "demo: stopped; namespace $ns removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
# `ip netns exec` execs the appliance, so $! is its PID. No --config: the built-in default.
ip netns exec "$ns" "$bin" run &
pid=$!

for _ in $(seq 300); do
    ip -n "$ns" link show "$tap" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "demo: the appliance exited before its tap appeared" >&2; exit 1; }
    sleep 0.1
done
ip -n "$ns" addr add "$host" dev "$tap"
ip -n "$ns" link set "$tap" up
for _ in $(seq 50); do
    ip netns exec "$ns" ping -c 1 -W 1 "$app" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "demo: the appliance exited" >&2; exit 1; }
done

cat <<MSG

Switchyard is running in network namespace $ns at $app (the tap's kernel side is ${host}).
Try, from another terminal:
    ip netns exec $ns curl http://$app/
    ip netns exec $ns ping -c 3 $app
    echo hello | ip netns exec $ns nc -q 1 $app 7
    $bin ctl listeners                                # live state: status, listeners, conns, stats
    ip netns exec $ns curl -s http://127.0.0.1:9464/metrics | head
Ctrl-C here stops it (a graceful drain) and removes the namespace.

MSG
wait "$pid"
