#!/usr/bin/env bash
# The fast path against Linux on a DPDK wire, and that wire's ceiling, in one run:
#  1. cargo bench --bench wire: load generator engine -> echo engine over a memif pair (one core
#     each) vs the same workloads on Linux loopback (mio, one core each), interleaved;
#  2. two processes, as an operator runs them: `switchyard run` (echo, CPU 0) and
#     `switchyard loadgen` (CPU 1) on a net_memif wire, with the appliance's own count of its
#     core's busy time (`switchyard ctl stats`), each run followed by the same workload on Linux
#     (the wire bench's mio server and client, `KERNEL_ONLY=1`) for a paired ratio, interleaved with
#  3. the same two-process memif wire driven by dpdk-testpmd at both ends (flowgen on CPU 1,
#     macswap echo on CPU 0): the raw packet rate of the wire the appliance sits on;
#  4. dpdk-testpmd io forwarding between both ends of a memif pair inside one process, one
#     forwarding core (no cross-core traffic): the wire's rate with both ends on one core.
# Every run also reports the hypervisor's steal on CPUs 0 and 1 over its measured window
# (control/scripts/steal.sh says what it does and does not tell).
# Needs root. SECS, REPEAT, SHORT_CONNS, PERSISTENT_CONNS, CHECKSUMS as the wire bench takes them:
# by default both ends of the memif wire send and check no IPv4/TCP checksums (`checksums =
# "none"`, a trusted memory wire, as Linux's loopback skips them); CHECKSUMS=port has smoltcp
# compute and check them.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench-wire: needs root (DPDK memif)" >&2; exit 1; }
control/scripts/deps.sh
. control/scripts/steal.sh

# Everything this script creates, removed on any exit: one trap for the whole script.
tmp=$(mktemp -d)
srv_pid=""
stop_server() { if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null && wait "$srv_pid" 2>/dev/null; srv_pid=""; fi; }
pair_pid=""
cleanup() {
    stop_server
    if [ -n "$pair_pid" ]; then kill -TERM "$pair_pid" 2>/dev/null; wait "$pair_pid" 2>/dev/null; fi
    rm -rf "$tmp" /var/run/dpdk/sy-{bw-srv,bw-cli,ceiling,pair-a,pair-b}-$$
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo bench --locked -q -p switchyard-runtime --bench wire 2>&1 | grep -v '^EAL:\|^TELEMETRY' | tee "$tmp/inproc"

# The same workloads across two processes, as an operator would run them: the appliance
# (`switchyard run`, busy polling on CPU 0) and `switchyard loadgen` (CPU 1) on a net_memif wire.
cargo build --locked -q --release -p switchyard-control --bin switchyard
bin=$PWD/target/release/switchyard
msock=$tmp/memif.sock
checksums=none
[ "${CHECKSUMS:-none}" = port ] && checksums=port
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
checksums = "$checksums"
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
checksums = "$checksums"
CFG
cat >> "$tmp/srv.toml" <<CFG
[control]
socket = "$tmp/ctl.sock"
[metrics]
listen = ""
CFG

secs=${SECS:-5}
[ "$secs" -ge 3 ] || { echo "bench-wire: SECS must be at least 3" >&2; exit 1; }
# Busy time and frames of the appliance's core, from its control socket: "busy_us elapsed_us frames"
# (python3 reads the JSON; Debian's dpdk package depends on it).
core_counters() {
    "$bin" ctl --socket "$tmp/ctl.sock" --json stats |
        python3 -c 'import json,sys; c=json.load(sys.stdin)["cores"][0]; print(c["busy_us"], c["elapsed_us"], sum(l["rx_frames"]+l["tx_frames"] for l in c["lanes"]))'
}
# One loadgen run against a fresh appliance; prints loadgen's line and the appliance core's load
# over a window inside the run (from one second after traffic starts to one second before loadgen's
# SECS end, timed by the core's own clock), and appends "rate frames_per_s frames_per_busy_s
# appliance_busy_% loadgen_busy_% steal0_% steal1_%" to $tmp/$1 (loadgen's own core over its
# window, from its line; the host's steal on each CPU over the appliance's window).
appliance_run() {
    local mode=$1 conns=$2
    # Emptied here, not by the background job's redirection: that runs asynchronously, and the
    # wait below once found the previous appliance's "ready" in the old log.
    : > "$tmp/srv.log"
    "$bin" run --config "$tmp/srv.toml" >> "$tmp/srv.log" 2>&1 &
    srv_pid=$!
    for _ in $(seq 300); do
        grep -q "switchyard ready" "$tmp/srv.log" && [ -S "$tmp/ctl.sock" ] && break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "switchyard ready" "$tmp/srv.log"; then
        echo "bench-wire: the appliance did not become ready within 30 s (pid $srv_pid); its log:" >&2
        tail -20 "$tmp/srv.log" >&2
        exit 1
    fi
    local idle before after s0 s1
    idle=$(core_counters)
    "$bin" loadgen --config "$tmp/cli.toml" --target 198.18.0.2:7 --mode "$mode" --conns "$conns" --secs "$secs" 2>/dev/null |
        grep '^loadgen' > "$tmp/line" &
    local lg=$!
    for _ in $(seq 100); do
        [ "$(core_counters | awk '{ print $3 }')" -gt $(($(echo "$idle" | awk '{ print $3 }') + 10000)) ] && break
        sleep 0.1
    done
    sleep 1
    s0=$(steal_now)
    before=$(core_counters)
    sleep $((secs - 2))
    after=$(core_counters)
    s1=$(steal_now)
    wait "$lg"
    stop_server
    cat "$tmp/line"
    read -r b0 e0 f0 <<< "$before"
    read -r b1 e1 f1 <<< "$after"
    awk -v r="$(awk '{ print $3 }' "$tmp/line")" -v lb="$(sed -n 's/.* busy \([0-9.]*\)%$/\1/p' "$tmp/line")" \
        -v b=$((b1 - b0)) -v e=$((e1 - e0)) -v f=$((f1 - f0)) -v st="$(steal_share "$s0" "$s1")" -v out="$tmp/$mode" 'BEGIN {
        split(st, h, " ")
        printf "  appliance core over %.1f s inside the run: %.0f frames/s (rx+tx), busy %.1f%%, %.0f frames per busy second; load generator core busy %s%%; host steal CPU 0 %s%%, CPU 1 %s%%\n", e / 1e6, f * 1e6 / e, 100 * b / e, f * 1e6 / b, lb, h[1], h[2]
        printf "%s %.0f %.0f %.1f %s %s\n", r, f * 1e6 / e, f * 1e6 / b, 100 * b / e, lb, st >> out }'
}
# The same workload on Linux right after a two-process run (the wire bench's mio server on CPU 0,
# client on CPU 1): prints its line and appends the rate to $tmp/linux-$1, and the host's steal on
# each CPU over the run (from the line) to $tmp/steal-linux-$1.
linux_run() {
    local mode=$1 line
    line=$(ONLY=$mode KERNEL_ONLY=1 REPEAT=1 SECS="$secs" cargo bench --locked -q -p switchyard-runtime --bench wire 2>/dev/null | grep "^linux ")
    echo "$line"
    echo "$line" | sed -n 's/.* B): \([0-9]*\) .*/\1/p' >> "$tmp/linux-$mode"
    echo "$line" | sed -n 's/.*CPU 1: \([0-9.]*\)% \/ \([0-9.]*\)%$/\1 \2/p' >> "$tmp/steal-linux-$mode"
}
# The same wire between two testpmd processes: flowgen (CPU 1) sends 64 B frames as fast as it can
# and drops what comes back; macswap (CPU 0, where the appliance runs) echoes each frame. Prints
# the echo side's rx+tx packets/s (what the appliance's port would carry) and appends it to
# $tmp/ceiling2, and the host's steal over the measured window to $tmp/steal-ceiling2.
testpmd_pair() {
    local sock=$tmp/pair.sock samples=""
    rm -f "$sock"
    local ask="sleep 3; echo start; sleep 2; echo 'show port stats all'; steal_now > $tmp/s0; sleep $secs; steal_now > $tmp/s1; echo 'show port stats all'; sleep 1; echo stop; sleep 1; echo quit; sleep 1"
    bash -c "$ask" | timeout 60 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix="sy-pair-a-$$" -l 0,1 --main-lcore 1 \
        --vdev="net_memif0,role=server,socket=$sock,id=0" --log-level=warning -- \
        -i --total-num-mbufs=32768 --forward-mode=macswap --port-topology=loop > "$tmp/pair-a.out" 2>&1 &
    pair_pid=$!
    sleep 1
    bash -c "sleep 2; echo start; sleep $((secs + 3)); echo stop; sleep 1; echo quit; sleep 1" |
        timeout 60 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix="sy-pair-b-$$" -l 0,1 --main-lcore 0 \
            --vdev="net_memif0,role=client,socket=$sock,id=0" --log-level=warning -- \
            -i --total-num-mbufs=32768 --forward-mode=flowgen --port-topology=loop > "$tmp/pair-b.out" 2>&1
    wait "$pair_pid" || true
    pair_pid=""
    samples=$(awk '/Rx-pps:/ { rx = $2 } /Tx-pps:/ { tx = $2 } END { print rx, tx }' "$tmp/pair-a.out")
    read -r rx tx <<< "$samples"
    echo "testpmd pair (flowgen on CPU 1 -> macswap on CPU 0, 64 B): echo side ${rx} rx + ${tx} tx = $((rx + tx)) packets/s; host steal CPU 0 / CPU 1: $(steal_record "$tmp/steal-ceiling2" "$(cat "$tmp/s0")" "$(cat "$tmp/s1")")"
    echo $((rx + tx)) >> "$tmp/ceiling2"
}

echo "two processes on a net_memif wire (checksums = \"$checksums\" at both ends), ${secs} s each, interleaved:"
echo "  switchyard run (echo, busy polling, CPU 0) <- switchyard loadgen (CPU 1); dpdk-testpmd macswap (CPU 0) <- flowgen (CPU 1)"
echo "  each followed by the same workload on Linux (loopback, mio server on CPU 0, client on CPU 1)"
for _ in $(seq "${REPEAT:-3}"); do
    appliance_run short "${SHORT_CONNS:-256}"
    linux_run short
    appliance_run persistent "${PERSISTENT_CONNS:-64}"
    linux_run persistent
    testpmd_pair
done

# testpmd's pps is the rate since the previous "show port stats": sample once after start, again
# SECS later, and read the second sample.
: > "$tmp/ceiling1"
for _ in $(seq "${REPEAT:-3}"); do
    out=$( (sleep 3; echo "start tx_first"; sleep 1; echo "show port stats all"; steal_now > "$tmp/s0"; sleep "$secs"; steal_now > "$tmp/s1"; echo "show port stats all"; sleep 1; echo "stop"; sleep 1; echo "quit"; sleep 1) |
        timeout 60 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix="sy-ceiling-$$" -l 0-1 \
            --vdev="net_memif0,role=server,socket=$tmp/ceiling.sock,id=0" --vdev="net_memif1,role=client,socket=$tmp/ceiling.sock,id=0" \
            --log-level=warning -- -i --total-num-mbufs=32768 --forward-mode=io 2>&1)
    pps=$(echo "$out" | awk '/Rx-pps:/ { v[++n] = $2 } END { print v[n-1] + v[n] }')
    echo "one process: dpdk-testpmd io forwarding between both ends of a memif pair, one forwarding core: ${pps} packets/s received (both ports); host steal CPU 0 / CPU 1: $(steal_record "$tmp/steal-ceiling1" "$(cat "$tmp/s0")" "$(cat "$tmp/s1")")"
    echo "$pps" >> "$tmp/ceiling1"
done

# Medians (min, max) of a column of a file.
mmm() { sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { printf "%.0f (min %.0f, max %.0f)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
med() { sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'; }
echo
echo "summary, medians of ${REPEAT:-3} (min, max):"
echo "  short connections/s, two processes: $(mmm "$tmp/short" 1)"
echo "  requests/s, two processes: $(mmm "$tmp/persistent" 1)"
echo "  appliance frames/s (rx+tx), persistent requests: $(mmm "$tmp/persistent" 2); per busy second: $(mmm "$tmp/persistent" 3)"
echo "  cores busy, persistent requests: appliance $(mmm "$tmp/persistent" 4) %, load generator $(mmm "$tmp/persistent" 5) %"
echo "  cores busy, short connections: appliance $(mmm "$tmp/short" 4) %, load generator $(mmm "$tmp/short" 5) %"
echo "  ceiling, same two-process wire (testpmd echo side rx+tx): $(mmm "$tmp/ceiling2" 1)"
echo "  ceiling, one process, one core for both ends (testpmd io, rx both ports): $(mmm "$tmp/ceiling1" 1)"
echo "  host steal over the measured windows, medians (max):"
echo "    appliance, persistent requests: $(awk '{ print $6, $7 }' "$tmp/persistent" | steal_summary); short connections: $(awk '{ print $6, $7 }' "$tmp/short" | steal_summary)"
echo "    Linux right after, persistent requests: $(steal_summary < "$tmp/steal-linux-persistent"); short connections: $(steal_summary < "$tmp/steal-linux-short")"
echo "    testpmd pair: $(steal_summary < "$tmp/steal-ceiling2"); testpmd one process: $(steal_summary < "$tmp/steal-ceiling1")"
# Against the Linux runs made right after each two-process run: the ratio of the medians, and the
# median (min, max) of the paired ratios, each run over the Linux run moments after it.
paired() { paste -d' ' <(cut -d' ' -f1 "$tmp/$1") "$tmp/linux-$1" | awk '{ print $1 / $2 }' > "$tmp/paired-$1"; }
paired short
paired persistent
pmm() { sort -g "$tmp/paired-$1" | awk '{ v[NR] = $1 } END { printf "%.1fx (min %.1f, max %.1f)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
echo "  Linux right after each, same workloads: $(mmm "$tmp/linux-short" 1) conns/s, $(mmm "$tmp/linux-persistent" 1) req/s"
awk -v s="$(med "$tmp/short" 1)" -v r="$(med "$tmp/persistent" 1)" -v ls="$(med "$tmp/linux-short" 1)" -v lr="$(med "$tmp/linux-persistent" 1)" 'BEGIN {
    printf "  two processes against Linux, medians: short connections %.1fx, requests %.1fx\n", s / ls, r / lr }'
echo "  two processes against Linux, paired runs: short connections $(pmm short), requests $(pmm persistent)"
awk -v f="$(med "$tmp/persistent" 2)" -v fb="$(med "$tmp/persistent" 3)" -v c2="$(med "$tmp/ceiling2" 1)" -v c1="$(med "$tmp/ceiling1" 1)" 'BEGIN {
    printf "  engine / two-process wire ceiling: %.1f%% measured, %.1f%% per busy second\n", 100 * f / c2, 100 * fb / c2
    printf "  engine / one-process ceiling: %.1f%% measured, %.1f%% per busy second\n", 100 * f / c1, 100 * fb / c1 }'
