# The two commands of the README, and their parts.
#   make run   builds the appliance and runs the built-in demo (net_tap in namespace sy-demo)
#   make test  checks formatting and lints, then runs every test (unit, DPDK, net_tap integration)
#              and each fuzz target for a few seconds
# Both install what is missing first (control/scripts/deps.sh).

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo

.PHONY: run test deps build check doc bench gateway-demo fuzz fuzz-smoke

deps:
	@control/scripts/deps.sh

build: deps
	$(CARGO) build --release --locked -p switchyard-control

run: build
	control/scripts/demo.sh target/release/switchyard

check: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) fmt --manifest-path dataplane/fuzz/Cargo.toml -- --check
	$(CARGO) fmt --manifest-path control/fuzz/Cargo.toml -- --check

doc: deps
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

# The engine crate first, with pkg-config finding no DPDK at all: its tests need none (it must not
# depend on dpdk-sys, which cargo tree checks), then everything else.
# Then each fuzz target for a few seconds (fuzz-smoke, below). Ends with one line summing every
# test binary's result ("tests: N passed, N failed").
test: check doc
	@mkdir -p target
	@if $(CARGO) tree -p switchyard-engine -e normal,dev,build --locked | grep -q dpdk; then \
		echo "switchyard-engine depends on DPDK:"; $(CARGO) tree -p switchyard-engine -i dpdk-sys; exit 1; fi
	set -o pipefail; PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH=/nonexistent \
		$(CARGO) test -p switchyard-engine --locked 2>&1 | tee target/test.log
	set -o pipefail; $(CARGO) test --workspace --exclude switchyard-engine --locked 2>&1 | tee -a target/test.log
	$(MAKE) --no-print-directory fuzz-smoke
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

# The fuzz targets (docs/fuzzing.md): cargo-fuzz's libFuzzer on stable Rust, no sanitizer;
# cargo-fuzz is installed when missing. `make fuzz` runs each target for FUZZ_EXECS executions
# (default 10 million) or FUZZ_SECS seconds, whichever comes first; `make fuzz-smoke` (in
# `make test`) runs each for FUZZ_SMOKE_SECS seconds on a quicker-to-build unoptimised build.
# Both fail, naming the target and the crashing input, when an input crashes one.
FUZZ_EXECS ?= 10000000
FUZZ_SECS ?= 0
FUZZ_SMOKE_SECS ?= 10

fuzz: deps
	FUZZ_EXECS=$(FUZZ_EXECS) FUZZ_SECS=$(FUZZ_SECS) control/scripts/fuzz.sh $(FUZZ_TARGETS)

# From the seeds alone (a fresh corpus), so that its time does not grow with earlier runs'.
fuzz-smoke: deps
	rm -rf target/fuzz/smoke-corpus
	FUZZ_EXECS=0 FUZZ_SECS=$(FUZZ_SMOKE_SECS) FUZZ_BUILD=dev FUZZ_CORPUS=target/fuzz/smoke-corpus \
		control/scripts/fuzz.sh $(FUZZ_TARGETS)

# The embedding example: a two-port gateway with an embedded echo engine between two namespaces.
gateway-demo: deps
	$(CARGO) build --release --locked -p switchyard-runtime --example gateway
	control/scripts/gateway-demo.sh target/release/examples/gateway

# The benchmarks (root; about half an hour; figures recorded in BENCHMARKS.md), by one driver
# (control/bench): the engine in memory (ns/request vs connections, short connections, refusals,
# memory) and its instructions per request (callgrind, when valgrind is installed), the fast path
# against Linux on memif with the wire's testpmd ceilings, the embedding gateway's forwarding with
# and without its engine, and the proxy against a direct connection. It prints a summary and
# writes every figure to target/bench/summary.json. Settings go in BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--secs 2 --repeat 1 --max-conns 10000 --only engine,wire"
bench: deps
	$(CARGO) run --release --locked -p switchyard-bench --bin bench -- $(BENCH_ARGS)
