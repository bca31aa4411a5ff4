#!/usr/bin/env bash
# The embedding example: the two-port gateway (dataplane/runtime/examples/gateway.rs) between two
# namespaces. It starts in namespace gw-demo (its taps gwa and gwb are born there, DESIGN fact 3),
# then each tap's kernel side moves to a host namespace: gw-a (198.18.0.1/24) and gw-b
# (198.18.0.3/24). The gateway forwards between them and serves echo at 198.18.0.2. Ctrl-C (or
# SIGTERM) stops it and removes the namespaces.
#
# Usage: gateway-demo.sh [path/to/gateway] [gateway flags, e.g. --no-engine]
set -euo pipefail

bin=${1:-target/release/examples/gateway}
shift || true
if [ "$(id -u)" != 0 ]; then
    echo "gateway-demo: needs root (network namespaces, net_tap): run it with sudo" >&2
    exit 1
fi
for ns in gw-demo gw-a gw-b; do
    if ip netns list | grep -qw "$ns"; then
        echo "gateway-demo: namespace $ns exists (another demo running?); remove it: ip netns del $ns" >&2
        exit 1
    fi
done

pid=""
tailpid=""
log=$(mktemp /tmp/gateway-demo.XXXXXX.log)
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ -n "$tailpid" ]; then kill "$tailpid" 2>/dev/null || true; fi
    cat "$log" 2>/dev/null | grep totals || true
    rm -f "$log"
    for ns in gw-a gw-b gw-demo; do ip netns del "$ns" 2>/dev/null || true; done
    rmdir /var/run/dpdk/gateway-demo 2>/dev/null || true
    echo "gateway-demo: stopped; namespaces removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in gw-demo gw-a gw-b; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip netns exec gw-demo "$bin" --address 198.18.0.2/24 --file-prefix gateway-demo "$@" >"$log" 2>&1 &
pid=$!
# Its ports must be fully set up before the taps move: a queue set up after the move would make
# a new tap of the same name in gw-demo.
for _ in $(seq 300); do
    grep -q "^gateway: forwarding" "$log" && break
    kill -0 "$pid" 2>/dev/null || { echo "gateway-demo: the gateway exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
done
grep -q "^gateway: forwarding" "$log" || { echo "gateway-demo: the gateway did not start" >&2; exit 1; }
ip -n gw-demo link set gwa netns gw-a
ip -n gw-demo link set gwb netns gw-b
ip -n gw-a addr add 198.18.0.1/24 dev gwa
ip -n gw-a link set gwa up
ip -n gw-b addr add 198.18.0.3/24 dev gwb
ip -n gw-b link set gwb up

cat <<MSG

The gateway forwards between gw-a (198.18.0.1) and gw-b (198.18.0.3) and serves echo at 198.18.0.2.
Try, from another terminal:
    ip netns exec gw-a ping -c 3 198.18.0.3           # forwarded
    ip netns exec gw-b ping -c 3 198.18.0.2           # the embedded engine
    echo hello | ip netns exec gw-a nc -q 1 198.18.0.2 7
Ctrl-C here stops it and removes the namespaces. Its counters follow.

MSG
tail -f "$log" &
tailpid=$!
wait "$pid"
