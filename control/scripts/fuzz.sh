#!/usr/bin/env bash
# Runs the fuzz targets (docs/fuzzing.md) with cargo-fuzz's libFuzzer, without a sanitizer (stable
# Rust), each from its committed seeds plus a working corpus in target/fuzz/corpus/TARGET.
#
#   control/scripts/fuzz.sh [TARGET...]      default: every target
#   FUZZ_EXECS   executions per target (0: no bound; default 10000000)
#   FUZZ_SECS    seconds per target (0: no bound; default 0)
#   FUZZ_BUILD   release (default) or dev: dev builds in a fraction of the time and runs slower
#   FUZZ_CORPUS  where the working corpora grow (default target/fuzz/corpus)
#
# Prints one line per target ("fuzz: TARGET: N executions in S s, 0 crashes"); on a crash, the
# input, its libFuzzer report and the command that reproduces it, and exits 1 once every target ran.
set -euo pipefail
cd "$(dirname "$0")/../.."

execs=${FUZZ_EXECS:-10000000}
secs=${FUZZ_SECS:-0}
build=${FUZZ_BUILD:-release}
all=(frames arp http tcp config profile ctl)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

crate_of() {
    case "$1" in
        frames | arp | http | tcp) echo dataplane/fuzz ;;
        config | profile | ctl) echo control/fuzz ;;
        *)
            echo "fuzz: unknown target $1 (targets: ${all[*]})" >&2
            exit 2
            ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

out=target/fuzz
mode=()
bin=$out/x86_64-unknown-linux-gnu/release
if [ "$build" = dev ]; then
    mode=(--dev)
    bin=$out/x86_64-unknown-linux-gnu/debug
fi

# Build each crate's targets once, with its lock file as committed (as CI's --locked).
built=()
for t in "${targets[@]}"; do
    crate=$(crate_of "$t")
    [[ " ${built[*]} " == *" $crate "* ]] && continue
    cargo metadata --locked --format-version 1 --manifest-path "$crate/Cargo.toml" >/dev/null
    cargo fuzz build --fuzz-dir "$crate" --sanitizer none "${mode[@]}" --target-dir "$out" >"$out-build.log" 2>&1 || {
        cat "$out-build.log"
        echo "fuzz: building $crate failed"
        exit 1
    }
    built+=("$crate")
done

failed=()
total=0
for t in "${targets[@]}"; do
    crate=$(crate_of "$t")
    corpus=${FUZZ_CORPUS:-$out/corpus}/$t
    artifacts=$out/artifacts/$t
    log=$out/logs/$t.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    args=(-max_len=4096 -print_final_stats=1 -artifact_prefix="$artifacts/")
    ((execs > 0)) && args+=(-runs="$execs")
    ((secs > 0)) && args+=(-max_total_time="$secs")
    start=$(date +%s)
    set +e
    nice -n 10 "$bin/$t" "${args[@]}" "$corpus" "$crate/seeds/$t" >"$log" 2>&1
    rc=$?
    set -e
    took=$(($(date +%s) - start))
    # libFuzzer's final count, or (after a crash) the last progress line's.
    n=$(awk '/^stat::number_of_executed_units:/ { n = $2 } END { print n }' "$log")
    n=${n:-$(awk '/^#[0-9]+/ { n = substr($1, 2) } END { print n }' "$log")}
    total=$((total + ${n:-0}))
    if ((rc != 0)); then
        crash=$(awk '/Test unit written to / { f = $NF } END { print f }' "$log")
        echo "fuzz: $t: CRASH after ${n:-?} executions in ${took} s (exit $rc)"
        # The panic and its message, or libFuzzer's own error (a leak, a timeout, out of memory).
        awk '/panicked at/ { p = 1 } /^stack backtrace|^note: / { p = 0 } (p || /ERROR: libFuzzer/) && k++ < 8 {
            print "fuzz:   " $0 }' "$log"
        echo "fuzz:   input: ${crash:-see $log}"
        echo "fuzz:   reproduce: cargo fuzz run --fuzz-dir $crate -s none --target-dir $out $t ${crash:-INPUT}"
        failed+=("$t")
    else
        echo "fuzz: $t: ${n:-?} executions in ${took} s, 0 crashes"
    fi
done
echo "fuzz: ${#targets[@]} targets, $total executions, ${#failed[@]} crashed${failed:+: ${failed[*]}}"
((${#failed[@]} == 0))
