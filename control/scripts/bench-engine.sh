#!/usr/bin/env bash
# The engine benchmark in memory (server time only): ns/request with 1k..1M established
# connections, handshakes, short connections, refusals, and memory per connection.
#
# Usage: control/scripts/bench-engine.sh
#   MAX_CONNS=1000000 ROUNDS=200 REPEAT=3 RX_BUF=2048 TX_BUF=2048   bench settings (defaults)
#   HUGEPAGES=N   reserve N 2 MiB hugepages for the run (root), give them back after; connection
#                 buffers then come from hugepages (CI and the default path use none)
set -euo pipefail
cd "$(dirname "$0")/../.."
control/scripts/deps.sh

restore=""
if [ -n "${HUGEPAGES:-}" ]; then
    [ "$(id -u)" = 0 ] || { echo "bench-engine: HUGEPAGES needs root" >&2; exit 1; }
    restore=$(cat /proc/sys/vm/nr_hugepages)
    trap 'echo "$restore" > /proc/sys/vm/nr_hugepages; echo "bench-engine: hugepages back to $restore"' EXIT
    echo "$HUGEPAGES" > /proc/sys/vm/nr_hugepages
    echo "bench-engine: $(cat /proc/sys/vm/nr_hugepages) hugepages reserved for this run (asked $HUGEPAGES)"
fi
cargo bench --locked -q -p switchyard-runtime --bench engine
