# Sourced by the bench scripts: the hypervisor's steal on CPUs 0 and 1, from /proc/stat, that is the
# time the host ran something else while our vCPU had work to do. The machines are VMs on shared
# hosts, and a stolen share slows a run from outside, whatever the code does. A process that
# blocks halts its vCPU whenever it waits, and a halted vCPU can wait long to be run again: the
# wire bench's Linux baseline busy-polls for that reason, as the fast path does (BENCHMARKS.md,
# "The host's steal").
# The benches' Rust side reads the same counters with `dataplane::lcore::HostSteal`.

# "ticks0 ticks1 seconds": the steal so far on CPUs 0 and 1 (clock ticks) and the time. Exported
# for the command feeders the benches run in `bash -c`.
steal_now() { awk -v t="$(date +%s.%N)" '/^cpu0 / { a = $9 } /^cpu1 / { b = $9 } END { print a, b, t }' /proc/stat; }
export -f steal_now

# steal_share A B: "cpu0% cpu1%", the share of the wall time between samples A and B stolen from
# each CPU.
steal_share() {
    echo "$1 $2" | awk -v hz="$(getconf CLK_TCK)" '{ w = $6 - $3; printf "%.1f %.1f\n", 100 * ($4 - $1) / hz / w, 100 * ($5 - $2) / hz / w }'
}

# steal_record FILE A B: appends the share stolen between samples A and B ("cpu0% cpu1%") to FILE,
# where steal_summary reads it later, and prints it as "cpu0% / cpu1%" for the run's own line.
steal_record() {
    local share
    share=$(steal_share "$2" "$3")
    echo "$share" >> "$1"
    echo "${share% *}% / ${share#* }%"
}

# Median (max) of column $1 of the "cpu0% cpu1%" lines on stdin.
steal_column() { awk -v c="$1" '{ print $c }' | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f%% (max %.1f)", v[int((NR + 1) / 2)], v[NR] }'; }

# Median (max) of each column of the "cpu0% cpu1%" lines on stdin.
steal_summary() {
    local lines
    lines=$(cat)
    echo "CPU 0 $(echo "$lines" | steal_column 1), CPU 1 $(echo "$lines" | steal_column 2)"
}
