//! The `wire` suite: the fast path against Linux on a net_memif wire, and that wire's ceiling.
//!
//! 1. One process (`dataplane/runtime/benches/wire.rs`): a load-generating engine and an echo
//!    engine on either end of a memif pair, one core each, against a mio client and server over
//!    loopback, interleaved.
//! 2. Two processes, as an operator runs them: `switchyard run` (echo, busy polling, CPU 0) and
//!    `switchyard loadgen` (CPU 1), with the appliance core's busy time and frames from
//!    `switchyard ctl --json stats`; each run followed at once by the same workload on Linux (the
//!    wire bench's `KERNEL_ONLY=1`) for a paired ratio; interleaved with
//! 3. the same two-process wire driven by dpdk-testpmd at both ends (flowgen on CPU 1, macswap
//!    echo on CPU 0): the raw packet rate of the wire the appliance sits on;
//! 4. dpdk-testpmd io forwarding between both ends of a memif pair in one process, one forwarding
//!    core: the wire's rate with both ends on one core.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::run::{describe, feed, installed, json_lines, pause, run_json, sh, tail, wait_for_line, Proc, Step};
use crate::stats::{median, num, Report, Steal, StealLog};
use crate::Ctx;

const S: &str = "wire";
const SHORT_CONNS: usize = 256;
const PERSISTENT_CONNS: usize = 64;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default()
}

/// What one two-process run measured.
struct ApplianceRun {
    rate: f64,
    frames_per_s: f64,
    frames_per_busy_s: f64,
    appliance_busy: f64,
    loadgen_busy: f64,
    steal: [f64; 2],
}

/// A Linux run right after a two-process run: rate, steal on CPUs 0 and 1, command line.
type LinuxRun = (f64, [f64; 2], String);

/// The two-process wire: configurations, binaries.
struct TwoProcess<'a> {
    ctx: &'a Ctx,
    srv: std::path::PathBuf,
    cli: std::path::PathBuf,
    ctl: std::path::PathBuf,
    /// Seconds of each two-process run (at least 3: one after warm-up, one before the end).
    secs: u64,
}

impl TwoProcess<'_> {
    /// The appliance core's (busy µs, elapsed µs, rx+tx frames) from its control socket.
    fn core_counters(&self) -> Result<(f64, f64, f64)> {
        let out = sh(
            &self.ctx.bin("bin:switchyard").to_string_lossy(),
            &["ctl", "--socket", &self.ctl.to_string_lossy(), "--json", "stats"],
        )?;
        let v: Value = serde_json::from_str(&out).context("switchyard ctl --json stats")?;
        let c = &v["cores"][0];
        let frames: f64 = c["lanes"]
            .as_array()
            .context("ctl stats: no lanes")?
            .iter()
            .map(|l| l["rx_frames"].as_f64().unwrap_or(0.0) + l["tx_frames"].as_f64().unwrap_or(0.0))
            .sum();
        Ok((c["busy_us"].as_f64().unwrap_or(0.0), c["elapsed_us"].as_f64().unwrap_or(0.0), frames))
    }

    /// One loadgen run against a fresh appliance, measured over a window inside it (from one
    /// second after traffic starts to one second before the load generator's end, timed by the
    /// core's own clock).
    fn appliance_run(&self, mode: &str, conns: usize) -> Result<(ApplianceRun, String)> {
        let sy = self.ctx.bin("bin:switchyard");
        let (log, out, err) = self.ctx.scratch.log("appliance.log")?;
        let mut server = Command::new(sy);
        server.arg("run").arg("--config").arg(&self.srv).stdin(Stdio::null()).stdout(out).stderr(err);
        let mut server = Proc::spawn("switchyard run (the appliance)", &mut server)?;
        wait_for_line(&mut server, &log, Duration::from_secs(30), |l| l.contains("switchyard ready"))?;
        let start = Instant::now();
        while !self.ctl.exists() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("the appliance is ready but its control socket {} is not there", self.ctl.display());
            }
            pause(Duration::from_millis(50))?;
        }
        let idle = self.core_counters()?;
        let lg_out = self.ctx.scratch.path("loadgen.out");
        let mut lg = Command::new(sy);
        lg.arg("loadgen")
            .arg("--config")
            .arg(&self.cli)
            .args(["--target", "198.18.0.2:7", "--mode", mode, "--conns", &conns.to_string()])
            .args(["--secs", &self.secs.to_string(), "--json"]);
        let command = describe(&lg, &self.ctx.root).replace(&format!("{}/", self.ctx.scratch.dir.display()), "");
        let f = std::fs::File::create(&lg_out)?;
        lg.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        let mut lg = Proc::spawn("switchyard loadgen", &mut lg)?;
        let start = Instant::now();
        while self.core_counters()?.2 <= idle.2 + 10_000.0 && start.elapsed() < Duration::from_secs(10) {
            pause(Duration::from_millis(100))?;
        }
        pause(Duration::from_secs(1))?;
        let (s0, before) = (Steal::now()?, self.core_counters()?);
        pause(Duration::from_secs(self.secs - 2))?;
        let (after, s1) = (self.core_counters()?, Steal::now()?);
        lg.finish(Duration::from_secs(self.secs + 60), &lg_out)?;
        server.terminate();
        let line = json_lines(&std::fs::read_to_string(&lg_out)?)
            .pop()
            .with_context(|| format!("switchyard loadgen printed no result; its output:\n{}", tail(&lg_out, 20)))?;
        let (busy, elapsed, frames) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
        if elapsed <= 0.0 || busy <= 0.0 {
            bail!("two processes, {mode}: the appliance's core counted no busy time over the window ({command})");
        }
        let run = ApplianceRun {
            rate: line["rate"].as_f64().unwrap_or(f64::NAN),
            frames_per_s: frames * 1e6 / elapsed,
            frames_per_busy_s: frames * 1e6 / busy,
            appliance_busy: 100.0 * busy / elapsed,
            loadgen_busy: 100.0 * line["busy"].as_f64().unwrap_or(f64::NAN),
            steal: s1.two_since(&s0),
        };
        println!(
            "  two processes, {mode}: {} /s; appliance {} frames/s, busy {:.1}%, {} frames per busy second; load generator busy {:.1}%; steal {:.1}% / {:.1}%",
            num(run.rate),
            num(run.frames_per_s),
            run.appliance_busy,
            num(run.frames_per_busy_s),
            run.loadgen_busy,
            run.steal[0],
            run.steal[1]
        );
        Ok((run, command))
    }

    /// The same workload on Linux right after a two-process run: (rate, steal, command).
    fn linux_run(&self, mode: &str, conns: usize) -> Result<LinuxRun> {
        let mut cmd = Command::new(self.ctx.bin("bench:wire"));
        cmd.env("KERNEL_ONLY", "1")
            .env("REPEAT", "1")
            .env("ONLY", mode)
            .env("SECS", self.secs.to_string())
            .env(if mode == "short" { "SHORT_CONNS" } else { "PERSISTENT_CONNS" }, conns.to_string())
            .arg("--bench");
        let command = describe(&cmd, &self.ctx.root);
        let lines =
            run_json("the wire bench (Linux)", &mut cmd, &self.ctx.scratch.path("linux.log"), self.limit(), |_| {})?;
        let v = lines.iter().find(|v| v["figure"] == "linux").context("the wire bench printed no Linux run")?;
        let steal = floats(&v["steal_percent"]);
        let rate = v["rate"].as_f64().unwrap_or(f64::NAN);
        println!("  Linux right after, {mode}: {} /s", num(rate));
        Ok((rate, [steal.first().copied().unwrap_or(0.0), steal.get(1).copied().unwrap_or(0.0)], command))
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.secs + 60)
    }
}

/// The rx and tx packets per second of the last `show port stats all` blocks in testpmd's output:
/// every `Rx-pps:` and `Tx-pps:` value, in order.
fn pps(out: &str) -> (Vec<f64>, Vec<f64>) {
    let grab = |key: &str| -> Vec<f64> {
        out.lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                it.by_ref().find(|w| *w == key)?;
                it.next()?.parse().ok()
            })
            .collect()
    };
    (grab("Rx-pps:"), grab("Tx-pps:"))
}

/// testpmd's common arguments: no hugepages, no PCI, the prefix's runtime folder.
fn testpmd(ctx: &Ctx, prefix: &str) -> Command {
    let mut cmd = Command::new("dpdk-testpmd");
    cmd.args(["--no-huge", "-m", "1024", "--no-pci", "--log-level=warning"])
        .arg(format!("--file-prefix={}", ctx.scratch.dpdk_prefix(prefix)))
        .stdin(Stdio::piped());
    cmd
}

/// The two-process testpmd wire: flowgen (CPU 1) sends 64 B frames as fast as it can and drops
/// what comes back; macswap (CPU 0, where the appliance runs) echoes each frame. Returns the echo
/// side's rx+tx packets/s over the measured window, and the steal over it.
fn testpmd_pair(ctx: &Ctx, secs: u64, round: usize) -> Result<(f64, [f64; 2], String)> {
    let sock = ctx.scratch.path("pair.sock");
    let _ = std::fs::remove_file(&sock);
    let (a_log, a_out, a_err) = ctx.scratch.log("pair-a.out")?;
    let mut a = testpmd(ctx, "sy-pair-a");
    a.args(["-l", "0,1", "--main-lcore", "1"])
        .arg(format!("--vdev=net_memif0,role=server,socket={},id=0", sock.display()))
        .args(["--", "-i", "--total-num-mbufs=32768", "--forward-mode=macswap", "--port-topology=loop"]);
    let command = describe(&a, &ctx.root).replace(&format!("{}/", ctx.scratch.dir.display()), "");
    a.stdout(a_out).stderr(a_err);
    let mut a = Proc::spawn("dpdk-testpmd (macswap echo)", &mut a)?;
    let a_feed = feed(
        a.stdin().expect("piped"),
        vec![
            Step::Sleep(3.0),
            Step::Send("start"),
            Step::Sleep(2.0),
            Step::Send("show port stats all"),
            Step::Mark,
            Step::Sleep(secs as f64),
            Step::Mark,
            Step::Send("show port stats all"),
            Step::Sleep(1.0),
            Step::Send("stop"),
            Step::Sleep(1.0),
            Step::Send("quit"),
            Step::Sleep(1.0),
        ],
    );
    pause(Duration::from_secs(1))?;
    let (b_log, b_out, b_err) = ctx.scratch.log("pair-b.out")?;
    let mut b = testpmd(ctx, "sy-pair-b");
    b.args(["-l", "0,1", "--main-lcore", "0"])
        .arg(format!("--vdev=net_memif0,role=client,socket={},id=0", sock.display()))
        .args(["--", "-i", "--total-num-mbufs=32768", "--forward-mode=flowgen", "--port-topology=loop"])
        .stdout(b_out)
        .stderr(b_err);
    let mut b = Proc::spawn("dpdk-testpmd (flowgen)", &mut b)?;
    let b_feed = feed(
        b.stdin().expect("piped"),
        vec![
            Step::Sleep(2.0),
            Step::Send("start"),
            Step::Sleep(secs as f64 + 3.0),
            Step::Send("stop"),
            Step::Sleep(1.0),
            Step::Send("quit"),
            Step::Sleep(1.0),
        ],
    );
    let limit = Duration::from_secs(secs + 60);
    b.finish(limit, &b_log)?;
    a.finish(limit, &a_log)?;
    let marks = a_feed.join().expect("feeder thread")?;
    b_feed.join().expect("feeder thread")?;
    let (rx, tx) = pps(&std::fs::read_to_string(&a_log)?);
    let (rx, tx) = (rx.last().copied().unwrap_or(0.0), tx.last().copied().unwrap_or(0.0));
    if rx + tx <= 0.0 {
        bail!(
            "the two-process testpmd ceiling, round {round}, moved no packets (echo side rx {rx} + tx {tx} packets/s): \
             no ratio against it; the end of the echo side's output ({}):\n{}",
            a_log.display(),
            tail(&a_log, 30)
        );
    }
    let steal = marks[1].two_since(&marks[0]);
    println!("  testpmd pair (flowgen CPU 1 -> macswap CPU 0): {} packets/s (echo side rx + tx)", num(rx + tx));
    Ok((rx + tx, steal, command))
}

/// testpmd io forwarding between both ends of a memif pair in one process, one forwarding core:
/// packets/s received on both ports over the measured window, and the steal over it.
fn testpmd_one(ctx: &Ctx, secs: u64, round: usize) -> Result<(f64, [f64; 2], String)> {
    let sock = ctx.scratch.path("ceiling.sock");
    let _ = std::fs::remove_file(&sock);
    let (log, out, err) = ctx.scratch.log("ceiling.out")?;
    let mut cmd = testpmd(ctx, "sy-ceiling");
    cmd.args(["-l", "0-1"])
        .arg(format!("--vdev=net_memif0,role=server,socket={},id=0", sock.display()))
        .arg(format!("--vdev=net_memif1,role=client,socket={},id=0", sock.display()))
        .args(["--", "-i", "--total-num-mbufs=32768", "--forward-mode=io"]);
    let command = describe(&cmd, &ctx.root).replace(&format!("{}/", ctx.scratch.dir.display()), "");
    cmd.stdout(out).stderr(err);
    let mut p = Proc::spawn("dpdk-testpmd (io forwarding)", &mut cmd)?;
    // testpmd's pps is the rate since the previous "show port stats": sample once after start,
    // again SECS later, and read the second sample.
    let fed = feed(
        p.stdin().expect("piped"),
        vec![
            Step::Sleep(3.0),
            Step::Send("start tx_first"),
            Step::Sleep(1.0),
            Step::Send("show port stats all"),
            Step::Mark,
            Step::Sleep(secs as f64),
            Step::Mark,
            Step::Send("show port stats all"),
            Step::Sleep(1.0),
            Step::Send("stop"),
            Step::Sleep(1.0),
            Step::Send("quit"),
            Step::Sleep(1.0),
        ],
    );
    p.finish(Duration::from_secs(secs + 60), &log)?;
    let marks = fed.join().expect("feeder thread")?;
    let (rx, _) = pps(&std::fs::read_to_string(&log)?);
    let rate: f64 = rx.iter().rev().take(2).sum();
    if rx.len() < 4 || rate <= 0.0 {
        bail!(
            "the one-process testpmd ceiling, round {round}, moved no packets ({} packets/s received on both ports): \
             no ratio against it; the end of its output ({}):\n{}",
            rate,
            log.display(),
            tail(&log, 30)
        );
    }
    println!("  testpmd one process (io forwarding, one core): {} packets/s (rx, both ports)", num(rate));
    Ok((rate, marks[1].two_since(&marks[0]), command))
}

/// The appliance's and the load generator's configurations for the two-process wire.
fn configs(ctx: &Ctx) -> Result<TwoProcess<'_>> {
    let sock = ctx.scratch.path("memif.sock");
    let ctl = ctx.scratch.path("ctl.sock");
    let srv = ctx.scratch.write(
        "srv.toml",
        &format!(
            r#"[eal]
lcores = "0@0"
memory_mb = 512
file_prefix = "{}"
[engine]
busy_poll = true
tcp_rx_buffer = 2048
tcp_tx_buffer = 2048
[[port]]
profile = "net_memif"
devargs = "role=server,socket={},id=0"
address = "198.18.0.2/24"
checksums = "none"
[[service]]
kind = "echo"
port = 7
[control]
socket = "{}"
[metrics]
listen = ""
"#,
            ctx.scratch.dpdk_prefix("sy-bw-srv"),
            sock.display(),
            ctl.display()
        ),
    )?;
    let cli = ctx.scratch.write(
        "cli.toml",
        &format!(
            r#"[eal]
lcores = "0@1"
memory_mb = 512
file_prefix = "{}"
[engine]
time_wait_secs = 0
tcp_rx_buffer = 2048
tcp_tx_buffer = 2048
[[port]]
profile = "net_memif"
devargs = "role=client,socket={},id=0"
address = "198.18.0.1/24"
checksums = "none"
"#,
            ctx.scratch.dpdk_prefix("sy-bw-cli"),
            sock.display()
        ),
    )?;
    Ok(TwoProcess { ctx, srv, cli, ctl, secs: ctx.secs.max(3) })
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    if !installed("dpdk-testpmd") {
        bail!("dpdk-testpmd is not installed (Debian's dpdk package: control/scripts/deps.sh installs it)");
    }
    // 1. One process.
    let mut cmd = Command::new(ctx.bin("bench:wire"));
    cmd.env("SECS", ctx.secs.to_string()).env("REPEAT", ctx.repeat.to_string()).arg("--bench");
    let command = describe(&cmd, &ctx.root);
    let limit = Duration::from_secs((ctx.secs + 30) * 4 * ctx.repeat as u64 + 120);
    let lines = run_json("the wire bench (one process)", &mut cmd, &ctx.scratch.path("wire.log"), limit, |v| {
        if v["figure"] == "one_process" {
            println!("  one process, {}: done", v["workload"].as_str().unwrap_or_default());
        }
    })?;
    rep.line(format!("one process, fast path (memif pair) vs Linux (loopback), checksums none ({command}):"));
    for v in lines.iter().filter(|v| v["figure"] == "one_process") {
        let w = v["workload"].as_str().unwrap_or_default();
        let key = if w.starts_with("short") { "short" } else { "persistent" };
        let unit = v["unit"].as_str().unwrap_or_default();
        let fast = rep.figure(
            S,
            &format!("one_process_{key}_fast"),
            &format!("{w}, fast"),
            unit,
            &floats(&v["fast"]),
            &command,
        );
        let linux = rep.figure(
            S,
            &format!("one_process_{key}_linux"),
            &format!("{w}, Linux"),
            unit,
            &floats(&v["linux"]),
            &command,
        );
        rep.figure(
            S,
            &format!("one_process_{key}_paired_ratio"),
            &format!("{w}, fast over Linux, paired"),
            "x",
            &floats(&v["paired_ratios"]),
            &command,
        );
        rep.note(S, &format!("one_process_{key}_ratio_of_medians"), json!(fast / linux));
        rep.note(S, &format!("one_process_{key}_runs"), v.clone());
    }
    if let Some(t) = lines.iter().find(|v| v["figure"] == "totals") {
        rep.note(S, "one_process_totals", t.clone());
    }

    // 2 and 3, interleaved: two processes, each followed by Linux; the testpmd pair.
    let two = configs(ctx)?;
    let (mut appliance, mut appliance_p) = (Vec::new(), Vec::new());
    let (mut linux, mut linux_p): (Vec<LinuxRun>, Vec<LinuxRun>) = Default::default();
    let mut pair = Vec::new();
    for round in 1..=ctx.repeat {
        println!("  two processes, round {round} of {}", ctx.repeat);
        appliance.push(two.appliance_run("short", SHORT_CONNS)?);
        linux.push(two.linux_run("short", SHORT_CONNS)?);
        appliance_p.push(two.appliance_run("persistent", PERSISTENT_CONNS)?);
        linux_p.push(two.linux_run("persistent", PERSISTENT_CONNS)?);
        pair.push(testpmd_pair(ctx, ctx.secs, round)?);
    }
    // 4. One process, one core.
    let mut one = Vec::new();
    for round in 1..=ctx.repeat {
        one.push(testpmd_one(ctx, ctx.secs, round)?);
    }

    rep.line(format!(
        "two processes on a net_memif wire, {} s runs: switchyard run (CPU 0) <- switchyard loadgen (CPU 1), each followed by Linux:",
        two.secs
    ));
    let mut paired_medians = [None, None];
    for (i, (key, unit, runs, after)) in
        [("short", "conns/s", &appliance, &linux), ("persistent", "req/s", &appliance_p, &linux_p)]
            .into_iter()
            .enumerate()
    {
        let cmd = &runs[0].1;
        let lcmd = &after[0].2;
        let rate: Vec<f64> = runs.iter().map(|r| r.0.rate).collect();
        let lin: Vec<f64> = after.iter().map(|r| r.0).collect();
        let label = if key == "short" { "short connections" } else { "persistent requests" };
        rep.figure(S, &format!("two_process_{key}"), &format!("{label}, fast path"), unit, &rate, cmd);
        rep.figure(
            S,
            &format!("two_process_{key}_linux_after"),
            &format!("{label}, Linux right after"),
            unit,
            &lin,
            lcmd,
        );
        let paired: Vec<f64> = rate.iter().zip(&lin).map(|(f, l)| f / l).collect();
        let of_medians = median(&rate).unwrap_or(f64::NAN) / median(&lin).unwrap_or(f64::NAN);
        rep.note(S, &format!("two_process_{key}_ratio_of_medians"), json!(of_medians));
        rep.line(format!("  {label}, fast over Linux, ratio of medians: {} x", num(of_medians)));
        paired_medians[i] = Some(rep.figure(
            S,
            &format!("two_process_{key}_paired_ratio"),
            &format!("{label}, fast over Linux, paired"),
            "x",
            &paired,
            &format!("{cmd}; then {lcmd}"),
        ));
        let fps: Vec<f64> = runs.iter().map(|r| r.0.frames_per_s).collect();
        let fpb: Vec<f64> = runs.iter().map(|r| r.0.frames_per_busy_s).collect();
        let ab: Vec<f64> = runs.iter().map(|r| r.0.appliance_busy).collect();
        let lb: Vec<f64> = runs.iter().map(|r| r.0.loadgen_busy).collect();
        rep.figure(
            S,
            &format!("two_process_{key}_appliance_frames_per_s"),
            &format!("{label}, appliance frames (rx+tx)"),
            "frames/s",
            &fps,
            cmd,
        );
        rep.figure(
            S,
            &format!("two_process_{key}_appliance_frames_per_busy_s"),
            &format!("{label}, appliance frames per busy second"),
            "frames/s",
            &fpb,
            cmd,
        );
        rep.figure(
            S,
            &format!("two_process_{key}_appliance_busy"),
            &format!("{label}, appliance core busy"),
            "%",
            &ab,
            cmd,
        );
        rep.figure(
            S,
            &format!("two_process_{key}_loadgen_busy"),
            &format!("{label}, load generator core busy"),
            "%",
            &lb,
            cmd,
        );
        let (mut st, mut lst) = (StealLog::default(), StealLog::default());
        runs.iter().for_each(|r| st.push(r.0.steal));
        after.iter().for_each(|r| lst.push(r.1));
        rep.line(format!("  {label}, host steal: fast runs {}; Linux runs {}", st.human(), lst.human()));
        rep.note(S, &format!("two_process_{key}_steal"), json!({ "fast": st.json(), "linux": lst.json() }));
    }
    rep.headline.insert("short_conns_per_s_ratio", paired_medians[0]);
    rep.headline.insert("requests_per_s_ratio", paired_medians[1]);

    rep.line("wire ceilings (dpdk-testpmd, 64 B):");
    let pair_rates: Vec<f64> = pair.iter().map(|r| r.0).collect();
    let one_rates: Vec<f64> = one.iter().map(|r| r.0).collect();
    let c2 = rep.figure(
        S,
        "ceiling_two_process",
        "two processes, flowgen -> macswap, echo side rx+tx",
        "packets/s",
        &pair_rates,
        &pair[0].2,
    );
    let c1 = rep.figure(
        S,
        "ceiling_one_process",
        "one process, io forwarding, one core, rx both ports",
        "packets/s",
        &one_rates,
        &one[0].2,
    );
    let (mut ps, mut os) = (StealLog::default(), StealLog::default());
    pair.iter().for_each(|r| ps.push(r.1));
    one.iter().for_each(|r| os.push(r.1));
    rep.line(format!("  host steal: testpmd pair {}; one process {}", ps.human(), os.human()));
    rep.note(S, "ceiling_steal", json!({ "two_process": ps.json(), "one_process": os.json() }));

    let fps = median(&appliance_p.iter().map(|r| r.0.frames_per_s).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let fpb = median(&appliance_p.iter().map(|r| r.0.frames_per_busy_s).collect::<Vec<_>>()).unwrap_or(f64::NAN);
    let share = json!({
        "measured_over_two_process": fps / c2,
        "per_busy_second_over_two_process": fpb / c2,
        "measured_over_one_process": fps / c1,
        "per_busy_second_over_one_process": fpb / c1,
        "frames": "appliance rx+tx frames in the persistent-request runs (medians)",
    });
    rep.line(format!(
        "  engine / two-process ceiling: {:.1}% measured, {:.1}% per busy second; / one-process ceiling: {:.1}% measured, {:.1}% per busy second",
        100.0 * fps / c2,
        100.0 * fpb / c2,
        100.0 * fps / c1,
        100.0 * fpb / c1
    ));
    rep.note(S, "engine_share_of_ceiling", share);
    rep.headline.insert("engine_share_of_wire_ceiling", Some(fpb / c1));
    Ok(())
}
