#!/usr/bin/env bash
# The fast path against Linux on a DPDK wire, and that wire's ceiling, in one run:
#  1. cargo bench --bench wire: load generator engine -> echo engine over a memif pair (one core
#     each) vs the same workloads on Linux loopback (mio, one core each), interleaved;
#  2. dpdk-testpmd forwarding between the two ends of the same kind of memif pair (io mode,
#     started with tx_first), one forwarding core: the raw packet rate of the wire.
# Needs root. SECS, REPEAT, SHORT_CONNS, PERSISTENT_CONNS as the wire bench takes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench-wire: needs root (DPDK memif)" >&2; exit 1; }
control/scripts/deps.sh

# Everything this script creates, removed on any exit: one trap for the whole script.
tmp=$(mktemp -d)
srv_pid=""
stop_server() { if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null; srv_pid=""; fi; }
cleanup() {
    stop_server
    rm -rf "$tmp" "/var/run/dpdk/sy-bw-srv-$$" "/var/run/dpdk/sy-bw-cli-$$" "/var/run/dpdk/sy-ceiling-$$"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo bench --locked -q -p switchyard-dataplane --bench wire 2>&1 | grep -v '^EAL:\|^TELEMETRY'

# The same workloads across two processes, as an operator would run them: the appliance
# (`switchyard run`, busy polling on CPU 0) and `switchyard loadgen` (CPU 1) on a net_memif wire.
cargo build --locked -q --release -p switchyard-control --bin switchyard
bin=$PWD/target/release/switchyard
msock=$tmp/memif.sock
cat > "$tmp/srv.toml" <<CFG
[eal]
lcores = "0@0"
memory_mb = 512
file_prefix = "sy-bw-srv-$$"
[engine]
busy_poll = true
tcp_rx_buffer = 2048
tcp_tx_buffer = 2048
[[port]]
profile = "net_memif"
devargs = "role=server,socket=$msock,id=0"
address = "198.18.0.2/24"
[[service]]
kind = "echo"
port = 7
CFG
cat > "$tmp/cli.toml" <<CFG
[eal]
lcores = "0@1"
memory_mb = 512
file_prefix = "sy-bw-cli-$$"
[engine]
time_wait_secs = 0
tcp_rx_buffer = 2048
tcp_tx_buffer = 2048
[[port]]
profile = "net_memif"
devargs = "role=client,socket=$msock,id=0"
address = "198.18.0.1/24"
CFG
"$bin" run --config "$tmp/srv.toml" > "$tmp/srv.log" 2>&1 &
srv_pid=$!
for _ in $(seq 100); do grep -q "switchyard ready" "$tmp/srv.log" && break; sleep 0.1; done
echo "two processes (switchyard run on CPU 0, switchyard loadgen on CPU 1, net_memif), ${SECS:-5} s each:"
for mode in short persistent; do
    conns=$([ $mode = short ] && echo "${SHORT_CONNS:-256}" || echo "${PERSISTENT_CONNS:-64}")
    for _ in $(seq "${REPEAT:-3}"); do
        "$bin" loadgen --config "$tmp/cli.toml" --target 198.18.0.2:7 --mode $mode --conns "$conns" --secs "${SECS:-5}" 2>/dev/null | grep '^loadgen'
    done
done
stop_server

prefix=sy-ceiling-$$
sock=$tmp/ceiling.sock
# testpmd's pps is the rate since the previous "show port stats": sample once after start, again
# SECS later, and read the second sample.
out=$( (sleep 3; echo "start tx_first"; sleep 1; echo "show port stats all"; sleep "${SECS:-5}"; echo "show port stats all"; sleep 1; echo "stop"; sleep 1; echo "quit"; sleep 1) |
    timeout 60 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix="$prefix" -l 0-1 \
        --vdev="net_memif0,role=server,socket=$sock,id=0" --vdev="net_memif1,role=client,socket=$sock,id=0" \
        --log-level=warning -- -i --total-num-mbufs=32768 --forward-mode=io 2>&1)
pps=$(echo "$out" | awk '/Rx-pps:/ { v[++n] = $2 } END { print v[n-1] + v[n] }')
echo "ceiling: dpdk-testpmd io forwarding over the memif pair, one forwarding core: ${pps} pps received (both ports)"
