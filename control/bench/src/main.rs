//! `bench`: Switchyard's benchmark driver. It builds the bench programs, runs every suite, sets up
//! and removes what they need, prints a human summary and writes every figure to
//! `target/bench/summary.json`.
//!
//! ```text
//! sudo make bench                                   # every default suite, default settings
//! sudo target/release/bench --secs 2 --repeat 1 --max-conns 10000 --only engine,wire
//! ```
//!
//! # Suites
//! - `engine`: the engine in memory, server time only (`dataplane/runtime/benches/engine.rs`):
//!   ns per request with 1k..`--max-conns` established connections, each step interleaved with an
//!   engine holding 1k; short connections; refusals; memory per connection.
//! - `attack`: floods against one engine in memory, engine time only
//!   (`dataplane/runtime/benches/attack.rs`): SYNs answered with SYN cookies, ACKs with bad
//!   cookies, FIN-ACKs to closed ports and RSTs on random 4-tuples, frames per second per core and
//!   ns per frame, with software and offloaded checksums (issue 27's target: 2M cookies a second
//!   per core).
//! - `instructions`: callgrind on the engine bench (when `valgrind` is installed):
//!   `ONLY=requests MAX_CONNS=1000` with `ROUNDS=150` less `ROUNDS=50`, counting inside
//!   `Engine::poll` only, over the 100,000 requests between them.
//! - `wire`: the fast path against Linux on a net_memif wire, in one process
//!   (`dataplane/runtime/benches/wire.rs`) and in two (`switchyard run` and `switchyard loadgen`,
//!   each run followed by the same workload on Linux), and the wire's dpdk-testpmd ceilings.
//! - `flood`: floods on the memif wire, one process (`dataplane/runtime/benches/flood.rs`): a
//!   flood generator (spoofed SYNs from 198.19.0.0/16 paced to 1M a second, then SYNs,
//!   bad-cookie ACKs and RSTs as fast as the wire takes them) and ordinary clients 20 ms away on
//!   one core, a listening engine on the other with `syn_cookies` `auto` and, in the same round,
//!   `never`, and the clients alone as the baseline: SYNs and cookies a second, frames per core
//!   second, the clients' success and connect times, resident memory over each window.
//! - `gateway`: the embedding example's forwarding rate with its engine idle, busy and absent.
//! - `proxy`: the `proxy` service against a direct connection and the appliance's echo.
//! - `loss`: 8 x 2 MiB and 1 x 100 MiB echo transfers through a faulty relay (the gateway
//!   example, 0, 1 and 5 % loss, 1 % duplication, 5 % reordering each way) to the appliance and
//!   to a Linux server behind the same relay and seed; seconds to the last byte, and their paired
//!   ratio. And the first retransmission of a reply the client never acknowledges, through the
//!   same relay without faults (a sub-millisecond RTT), in milliseconds.
//! - `tap` (only with `--only tap`): the appliance over net_tap against Linux, and its idle CPU.
//!
//! Every suite but `engine`, `attack` and `instructions` needs root (DPDK memif, namespaces, net_tap). The
//! driver creates its own namespaces (`sy-bench-PID-*`, never one that exists already), uses
//! addresses in 198.18.0.0/15 only, and ends only the processes it started, by PID; all of it is
//! removed when it finishes, fails or is stopped with Ctrl-C.
//!
//! # Knobs
//! `--secs` (per run, 5), `--repeat` (runs of each figure, 3), `--only SUITE[,SUITE]`,
//! `--max-conns` (the engine bench's largest step, 1,000,000), `--hugepages N` (reserved for the
//! engine suite, given back after), `--loss-mib` (the loss suite's single transfer, 100) and
//! `--loss-limit-secs` (its limit per transfer, 120). The bench programs keep their own
//! environment knobs (`ONLY`, `CKSUM`, `KERNEL_ONLY`, ...) for profiling by hand.
//!
//! # How to read the figures
//! - **The machines are shared VMs whose speed moves up to threefold within the hour**, so no
//!   absolute figure carries from one run to the next, and no figure is a pass/fail check. The
//!   targets are ratios within one run.
//! - **Paired ratios.** `short_conns_per_s_ratio` and `requests_per_s_ratio` are medians of
//!   paired ratios from the two-process wire runs: each `switchyard run` + `switchyard loadgen`
//!   run divided by the Linux run made moments after it, so both see the same moment of the
//!   machine. Quote these; the ratio of medians is also recorded.
//! - **Min, median, max.** Every figure in `suites` keeps its runs (in run order), their min,
//!   median and max, its unit and the command line that produced it. A wide spread says the
//!   machine moved during the run, not that the code did.
//! - **Steal** is the share of wall time the hypervisor ran something else while a vCPU had work
//!   (from /proc/stat): recorded per run window and over the whole run (`machine.steal_percent`).
//!   A run with a large stolen share was slowed from outside. Other processes inside the VM do
//!   not show there: `machine.loadavg_before` and `loadavg_after` (1, 5 and 15 minutes) do, and
//!   a core's busy share well under 100 % on both sides of the wire says the same.
//! - **Busy share and frames per busy second.** A busy-polling core is always at 100 % in `top`;
//!   the appliance counts the loop turns that moved a frame. The core near 100 % busy bounded the
//!   run. `engine_share_of_wire_ceiling` is the appliance's frames (rx+tx) per busy second in the
//!   persistent-request runs over what dpdk-testpmd forwards on the same memif wire with one core
//!   in one process: what the engine's core would carry saturated, against what the wire carries
//!   with no TCP at all. A ceiling run that moved no packets stops the run with an error naming it.
//! - **`per_packet_1m_over_1k`** is engine time per request with 1M established connections over
//!   the time with 1k, from interleaved runs (null when `--max-conns` is not 1,000,000; the ratio
//!   at the largest step is in `suites.engine.per_packet_ratio`).
//! - **`instructions_per_request`** does not move with the machine's speed: a change too small to
//!   see in wall time (under about 10 % here) shows there. Null when valgrind is not installed.
//! - A key is null when its suite did not run (`--only`) or failed (`error` says why).

mod attack;
mod engine;
mod flood;
mod gateway;
mod loss;
mod proxy;
mod report;
mod run;
mod stats;
mod tap;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Map, Value};

use run::Scratch;
use stats::{Report, Steal};

/// Every suite, in the order they run; `default` ones run without `--only`.
const SUITES: [(&str, bool); 9] = [
    ("engine", true),
    ("attack", true),
    ("instructions", true),
    ("wire", true),
    ("flood", true),
    ("gateway", true),
    ("proxy", true),
    ("loss", true),
    ("tap", false),
];

/// The headline figures: top-level keys of summary.json, null until measured.
const HEADLINE: [&str; 7] = [
    "short_conns_per_s_ratio",
    "requests_per_s_ratio",
    "engine_share_of_wire_ceiling",
    "instructions_per_request",
    "per_packet_1m_over_1k",
    "syn_cookies_per_core_s_wire",
    "clients_served_under_flood_percent",
];

#[derive(Parser)]
#[command(name = "bench", about = "Runs Switchyard's benchmarks and writes target/bench/summary.json")]
struct Cli {
    /// Seconds per measured run (the two-process wire runs take at least 3).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    secs: u64,
    /// Runs of each figure (min, median and max are over them).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    repeat: u64,
    /// Suites to run, comma-separated: engine, attack, instructions, wire, flood, gateway, proxy, loss, tap
    /// (default: all but tap).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Established connections at the engine bench's largest step.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1000..=1_000_000))]
    max_conns: u32,
    /// The `loss` suite's single transfer, in MiB (beside its 8 x 2 MiB).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1024))]
    loss_mib: u64,
    /// The `loss` suite's limit per transfer, in seconds: a run not done by then counts as this.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    loss_limit_secs: u64,
    /// Reserve this many 2 MiB hugepages for the engine suite and give them back after (root);
    /// its connection buffers then come from hugepages.
    #[arg(long)]
    hugepages: Option<u64>,
    /// Where to write the summary (default: the workspace's target/bench/summary.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run nothing: print BENCHMARKS.md's tables (Markdown) from the summary at `--out`.
    #[arg(long)]
    report: bool,
}

/// What the suites share: the workspace, the settings, the built programs, the scratch folder.
pub struct Ctx {
    pub root: PathBuf,
    pub secs: u64,
    pub repeat: usize,
    pub max_conns: u32,
    pub hugepages: Option<u64>,
    pub loss_mib: u64,
    pub loss_limit_secs: u64,
    bins: BTreeMap<String, PathBuf>,
    pub scratch: Scratch,
}

impl Ctx {
    /// A built program: `bench:NAME`, `bin:NAME` or `example:NAME`.
    pub fn bin(&self, key: &str) -> &Path {
        self.bins.get(key).unwrap_or_else(|| panic!("{key} was not built for this run"))
    }
}

fn main() -> ExitCode {
    match main_inner() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace's root and target folder, from `cargo metadata`.
fn workspace(cargo: &str) -> Result<(PathBuf, PathBuf)> {
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo} metadata"))?;
    if !out.status.success() {
        bail!("{cargo} metadata failed ({})", out.status);
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("cargo metadata's output")?;
    let path = |k: &str| v[k].as_str().map(PathBuf::from).with_context(|| format!("cargo metadata: no {k}"));
    Ok((path("workspace_root")?, path("target_directory")?))
}

/// Builds what `suites` run (release profile) and returns each program's path.
fn build(cargo: &str, root: &Path, suites: &[&str]) -> Result<BTreeMap<String, PathBuf>> {
    let wants = |s: &[&str]| suites.iter().any(|x| s.contains(x));
    let mut runs: Vec<Vec<&str>> = Vec::new();
    let mut benches = Vec::new();
    if wants(&["engine", "instructions"]) {
        benches.extend(["--bench", "engine"]);
    }
    if wants(&["wire"]) {
        benches.extend(["--bench", "wire"]);
    }
    if wants(&["attack"]) {
        benches.extend(["--bench", "attack"]);
    }
    if wants(&["flood"]) {
        benches.extend(["--bench", "flood"]);
    }
    if !benches.is_empty() {
        runs.push([&["bench", "--no-run", "-p", "switchyard-runtime"][..], &benches].concat());
    }
    let mut targets = Vec::new();
    if wants(&["wire", "proxy", "tap", "loss"]) {
        targets.extend(["-p", "switchyard-control", "--bin", "switchyard"]);
    }
    if wants(&["gateway", "proxy", "tap", "loss"]) {
        targets.extend(["-p", "switchyard-control", "--example", "loadgen"]);
    }
    if wants(&["gateway", "loss"]) {
        targets.extend(["-p", "switchyard-runtime", "--example", "gateway"]);
    }
    if !targets.is_empty() {
        runs.push([&["build", "--release"][..], &targets].concat());
    }
    let mut bins = BTreeMap::new();
    for args in runs {
        println!("bench: cargo {} --locked", args.join(" "));
        let out = Command::new(cargo)
            .args(&args)
            .args(["--locked", "--message-format=json-render-diagnostics"])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {cargo}"))?;
        if !out.status.success() {
            bail!("cargo {} failed ({})", args.join(" "), out.status);
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            let (Some(exe), Some(name), Some(kind)) =
                (v["executable"].as_str(), v["target"]["name"].as_str(), v["target"]["kind"][0].as_str())
            else {
                continue;
            };
            bins.insert(format!("{kind}:{name}"), PathBuf::from(exe));
        }
    }
    Ok(bins)
}

/// What the machine is: CPU model and count, kernel, and (filled in later) the steal over the run.
fn machine() -> Map<String, Value> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()));
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).ok();
    let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0 / 1024.0)
    });
    let hugepages =
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let mut m = Map::new();
    m.insert("cpu_model".into(), json!(model));
    m.insert("cpus".into(), json!(cpus));
    m.insert("kernel".into(), json!(kernel));
    m.insert("memory_gib".into(), json!(mem_gib));
    m.insert("hugepages".into(), json!(hugepages));
    m
}

/// The 1, 5 and 15 minute load averages (/proc/loadavg): other processes on the machine's CPUs,
/// which the hypervisor's steal does not show.
fn loadavg() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!(text.split_whitespace().take(3).filter_map(|x| x.parse::<f64>().ok()).collect::<Vec<_>>())
}

/// The commit the run measured, and whether the work tree had changes.
fn commit(root: &Path) -> Value {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    json!({
        "id": git(&["rev-parse", "HEAD"]),
        "dirty": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
    })
}

fn main_inner() -> Result<ExitCode> {
    let cli = Cli::parse();
    if cli.report {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = match &cli.out {
            Some(o) => o.clone(),
            None => workspace(&cargo)?.1.join("bench/summary.json"),
        };
        report::print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    run::install_signal_handlers()?;
    let suites: Vec<&str> = if cli.only.is_empty() {
        SUITES.iter().filter(|s| s.1).map(|s| s.0).collect()
    } else {
        for s in &cli.only {
            if !SUITES.iter().any(|(n, _)| n == s) {
                bail!(
                    "--only {s}: no such suite (engine, attack, instructions, wire, flood, gateway, proxy, loss, tap)"
                );
            }
        }
        SUITES.iter().map(|s| s.0).filter(|n| cli.only.iter().any(|o| o == n)).collect()
    };
    // SAFETY: geteuid takes no argument and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    let mut privileged: Vec<&str> =
        suites.iter().copied().filter(|s| !["engine", "attack", "instructions"].contains(s)).collect();
    if cli.hugepages.is_some() && suites.contains(&"engine") {
        privileged.push("engine (with --hugepages)");
    }
    if !root_user && !privileged.is_empty() {
        bail!(
            "the {} suite(s) need root (DPDK memif, network namespaces, net_tap): run as root, or --only engine,attack,instructions",
            privileged.join(", ")
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let (root, target) = workspace(&cargo)?;
    let out = cli.out.clone().unwrap_or_else(|| target.join("bench/summary.json"));
    let command: Vec<String> = std::env::args().collect();
    let started = (Steal::now()?, Instant::now());
    let load_before = loadavg();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());

    let bins = build(&cargo, &root, &suites)?;
    let ctx = Ctx {
        root: root.clone(),
        secs: cli.secs,
        repeat: cli.repeat as usize,
        max_conns: cli.max_conns,
        hugepages: cli.hugepages,
        loss_mib: cli.loss_mib,
        loss_limit_secs: cli.loss_limit_secs,
        bins,
        scratch: Scratch::create()?,
    };
    let mut rep = Report::default();
    for k in HEADLINE {
        rep.headline.insert(k, None);
    }
    let mut error = None;
    for suite in &suites {
        println!("bench: suite {suite}");
        let t = Instant::now();
        let result = match *suite {
            "engine" => engine::run(&ctx, &mut rep),
            "attack" => attack::run(&ctx, &mut rep),
            "instructions" => engine::instructions(&ctx, &mut rep),
            "wire" => wire::run(&ctx, &mut rep),
            "flood" => flood::run(&ctx, &mut rep),
            "gateway" => gateway::run(&ctx, &mut rep),
            "proxy" => proxy::run(&ctx, &mut rep),
            "loss" => loss::run(&ctx, &mut rep),
            "tap" => tap::run(&ctx, &mut rep),
            _ => unreachable!("suites are checked above"),
        };
        rep.note(suite, "wall_secs", json!(t.elapsed().as_secs_f64()));
        if let Err(e) = result {
            error = Some(format!("suite {suite}: {e:#}"));
            break;
        }
    }
    drop(ctx); // processes are gone by now; removes the scratch folder and DPDK's runtime folders

    let mut m = machine();
    let steal = Steal::now()?.percent_since(&started.0);
    m.insert(
        "steal_percent".into(),
        json!(steal.iter().enumerate().map(|(i, s)| (format!("cpu{i}"), json!(s))).collect::<Map<_, _>>()),
    );
    m.insert("wall_secs".into(), json!(started.1.elapsed().as_secs_f64()));
    m.insert("loadavg_before".into(), load_before);
    m.insert("loadavg_after".into(), loadavg());
    let mut summary = Map::new();
    for (k, v) in &rep.headline {
        summary.insert((*k).to_owned(), json!(v.filter(|x| x.is_finite())));
    }
    summary.insert("command".into(), json!(command.join(" ")));
    summary.insert(
        "settings".into(),
        json!({
            "secs": cli.secs,
            "repeat": cli.repeat,
            "max_conns": cli.max_conns,
            "hugepages": cli.hugepages,
            "loss_mib": cli.loss_mib,
            "loss_limit_secs": cli.loss_limit_secs,
            "suites": suites,
        }),
    );
    summary.insert("commit".into(), commit(&root));
    summary.insert("started_unix".into(), json!(started_unix));
    summary.insert("machine".into(), Value::Object(m.clone()));
    summary.insert("suites".into(), json!(rep.suites));
    summary.insert("error".into(), json!(error));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&Value::Object(summary))? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;

    println!();
    println!("summary ({}, {} s runs, {} each):", command.join(" "), cli.secs, cli.repeat);
    for l in &rep.lines {
        println!("{l}");
    }
    println!("headline (paired medians; see the bench crate's doc):");
    for (k, v) in &rep.headline {
        println!("  {k}: {}", v.map(stats::num).unwrap_or_else(|| "null".into()));
    }
    println!(
        "machine: {}, {} CPUs; host steal over the run: {}; load average before {}, after {}",
        m["cpu_model"].as_str().unwrap_or("unknown CPU"),
        m["cpus"],
        steal.iter().enumerate().map(|(i, s)| format!("CPU {i} {s:.1}%")).collect::<Vec<_>>().join(", "),
        m["loadavg_before"],
        m["loadavg_after"]
    );
    println!("written to {}", out.display());
    if let Some(e) = error {
        eprintln!("bench: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
