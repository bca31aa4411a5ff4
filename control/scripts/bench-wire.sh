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

cargo bench --locked -q -p switchyard-dataplane --bench wire 2>&1 | grep -v '^EAL:\|^TELEMETRY'

prefix=sy-ceiling-$$
sock=/tmp/$prefix.sock
cleanup() { rm -f "$sock"; rm -rf "/var/run/dpdk/$prefix"; }
trap cleanup EXIT
# testpmd's pps is the rate since the previous "show port stats": sample once after start, again
# SECS later, and read the second sample.
out=$( (sleep 3; echo "start tx_first"; sleep 1; echo "show port stats all"; sleep "${SECS:-5}"; echo "show port stats all"; sleep 1; echo "stop"; sleep 1; echo "quit"; sleep 1) |
    timeout 60 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix="$prefix" -l 0-1 \
        --vdev="net_memif0,role=server,socket=$sock,id=0" --vdev="net_memif1,role=client,socket=$sock,id=0" \
        --log-level=warning -- -i --total-num-mbufs=32768 --forward-mode=io 2>&1)
pps=$(echo "$out" | awk '/Rx-pps:/ { v[++n] = $2 } END { print v[n-1] + v[n] }')
echo "ceiling: dpdk-testpmd io forwarding over the memif pair, one forwarding core: ${pps} pps received (both ports)"
