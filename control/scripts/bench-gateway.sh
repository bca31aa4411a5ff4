#!/usr/bin/env bash
# The cost of embedding: forwarding rate of the example gateway (dataplane/runtime/examples/gateway.rs)
# with its embedded engine idle and busy, in the same run, and as plain l2fwd (--no-engine).
#
# Topology as in gateway-demo.sh: side A (198.18.0.1) -- gateway (198.18.0.2) -- side B
# (198.18.0.3), each tap a net_tap port, each side a namespace. A Linux UDP sender on side A sends
# SIZE-byte datagrams to side B as fast as it can for SECS seconds; a counter on side B reports
# what arrived. "busy": at the same time, echo clients on both sides (CONNS each) ping-pong 64-byte
# messages with the embedded engine. Phases are interleaved REPEAT times; min/median/max printed,
# with the hypervisor's steal on CPUs 0 and 1 over each round (control/scripts/steal.sh).
#
# Usage (root): control/scripts/bench-gateway.sh      SECS=5 REPEAT=3 SIZE=64 CONNS=4
set -euo pipefail
. "$(dirname "$0")/steal.sh"
SECS=${SECS:-5}
REPEAT=${REPEAT:-3}
SIZE=${SIZE:-64}
CONNS=${CONNS:-4}
[ "$(id -u)" = 0 ] || { echo "bench-gateway: needs root (namespaces, net_tap)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --examples -p switchyard-runtime -p switchyard-control >&2
gw=target/release/examples/gateway
lg=target/release/examples/loadgen
G=sybg-g A=sybg-a B=sybg-b
pid="" log=$(mktemp /tmp/bench-gateway.XXXXXX.log)
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
    pid=""
    for ns in $A $B $G; do ip netns del "$ns" 2>/dev/null || true; done
    rmdir /var/run/dpdk/bench-gateway 2>/dev/null || true
}
steal_log=$(mktemp /tmp/bench-gateway.XXXXXX.steal)
trap 'cleanup; rm -f "$log" "$steal_log" "$steal_log.plain"' EXIT

start() { # start [gateway flags]
    cleanup
    for ns in $G $A $B; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip netns exec $G "$gw" --address 198.18.0.2/24 --file-prefix bench-gateway "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -q "^gateway: forwarding" "$log" && break; sleep 0.1; done
    grep -q "^gateway: forwarding" "$log" || { cat "$log" >&2; exit 1; }
    ip -n $G link set gwa netns $A; ip -n $G link set gwb netns $B
    ip -n $A addr add 198.18.0.1/24 dev gwa; ip -n $A link set gwa up
    ip -n $B addr add 198.18.0.3/24 dev gwb; ip -n $B link set gwb up
    ip netns exec $A ping -c 1 -W 2 198.18.0.3 >/dev/null
}

phase() { # phase busy|idle -> prints datagrams/s received on side B
    # Each phase has its own files: the caller reads the printed line through a process
    # substitution and starts the next phase while this one may still be cleaning up (with one
    # fixed name per script, that clean-up once removed the next phase's counter output).
    local busy=$1 port=$((9000 + RANDOM % 1000)) d
    d=$(mktemp -d /tmp/bench-gateway.phase.XXXXXX)
    ip netns exec $B "$lg" udp-count --bind 198.18.0.3:$port --secs $((SECS + 2)) >"$d/count" &
    local counter=$!
    local loads=()
    if [ "$busy" = busy ]; then
        ip netns exec $A "$lg" echo --addr 198.18.0.2:7 --conns "$CONNS" --secs "$SECS" >"$d/echo-a" &
        loads+=($!)
        ip netns exec $B "$lg" echo --addr 198.18.0.2:7 --conns "$CONNS" --secs "$SECS" >"$d/echo-b" &
        loads+=($!)
    fi
    sleep 0.3
    ip netns exec $A "$lg" udp-send --addr 198.18.0.3:$port --secs "$SECS" --size "$SIZE" >"$d/send"
    for l in "${loads[@]}"; do wait "$l"; done
    wait "$counter"
    local line
    line="$(awk '{print $(NF)}' "$d/count" | tr -d '/s') $(awk '{print $3}' "$d/send")"
    if [ "$busy" = busy ]; then
        line="$line $(awk '{print $3}' "$d/echo-a") $(awk '{print $3}' "$d/echo-b")"
    fi
    rm -rf "$d"
    echo "$line"
}

stats() { # min median max of the numbers on stdin
    sort -n | awk '{v[NR]=$1} END {printf "min %.0f  median %.0f  max %.0f", v[1], v[int((NR+1)/2)], v[NR]}'
}

idle=() busy=() plain=() echo_rt=()
start
for r in $(seq "$REPEAT"); do
    s0=$(steal_now)
    read -r got sent < <(phase idle); idle+=("$got")
    echo "round $r idle: $got datagrams/s forwarded ($sent/s sent)" >&2
    read -r got sent ea eb < <(phase busy); busy+=("$got"); echo_rt+=("$(awk -v a="$ea" -v b="$eb" 'BEGIN {print a + b}')")
    echo "round $r busy: $got datagrams/s forwarded ($sent/s sent), echo $ea + $eb round trips/s; host steal over the round CPU 0 / CPU 1: $(steal_record "$steal_log" "$s0" "$(steal_now)")" >&2
done
start --no-engine
for r in $(seq "$REPEAT"); do
    s0=$(steal_now)
    read -r got sent < <(phase idle); plain+=("$got")
    echo "round $r plain l2fwd: $got datagrams/s forwarded ($sent/s sent); host steal CPU 0 / CPU 1: $(steal_record "$steal_log.plain" "$s0" "$(steal_now)")" >&2
done
cleanup

mi=$(printf '%s\n' "${idle[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
mb=$(printf '%s\n' "${busy[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
mp=$(printf '%s\n' "${plain[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
echo
echo "gateway forwarding, $SIZE-byte UDP A -> B over net_tap, $SECS s x $REPEAT (datagrams/s received on side B):"
echo "  plain l2fwd (--no-engine):       $(printf '%s\n' "${plain[@]}" | stats)"
echo "  engine embedded, idle:           $(printf '%s\n' "${idle[@]}" | stats)"
echo "  engine embedded, serving echo:   $(printf '%s\n' "${busy[@]}" | stats)   (echo: $(printf '%s\n' "${echo_rt[@]}" | stats) round trips/s, both sides)"
awk -v i="$mi" -v b="$mb" -v p="$mp" 'BEGIN {printf "  ratios of medians: idle/plain %.3f, busy/idle %.3f\n", i / p, b / i}'
echo "  host steal, medians (max): engine rounds $(steal_summary < "$steal_log"); plain rounds $(steal_summary < "$steal_log.plain")"
