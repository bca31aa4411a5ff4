//! The `loss` suite: echo transfers through a lossy, duplicating, reordering wire, to the
//! appliance and to a Linux server behind the same wire, with the same seed (issue 26's
//! benchmark: the target is at most 1.2x Linux's time at every loss rate), and the first
//! retransmission of a reply that is never acknowledged (target: at most 250 ms).
//!
//! Side A (the client, 198.18.0.1) -- the gateway example as a faulty relay (`--no-engine`,
//! `--loss-percent L --duplicate-percent 1 --reorder-percent 5`) -- side B, a bridge holding the
//! relay's tap, the appliance's tap (198.18.0.2, its echo service) and a Linux echo server
//! (198.18.0.3, the loadgen example's `serve`). This kernel has no netem (DESIGN fact 11); the
//! relay is the user-space wire.
//!
//! - Transfers: each round moves 8 connections x 2 MiB at once, then one connection x
//!   `--loss-mib` MiB (`loadgen transfer`), to the appliance and then to the Linux server, each
//!   byte echoed back and checked; a run that does not finish in `--loss-limit-secs` counts as the
//!   limit.
//! - First retransmission: the same relay and bridge with no faults at all, so that a second copy
//!   of a segment is a retransmission, never the wire's duplicate. A client of its own on a raw
//!   socket on side A (`loadgen first-rtx`, from 198.18.0.9, an address no kernel there owns)
//!   connects, sends a 64-byte request and never acknowledges the reply: milliseconds from the
//!   reply to its first retransmission, the appliance and Linux in turn each round.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::run::{describe, json_lines, wait_for_line, Netns, Proc};
use crate::stats::Report;
use crate::Ctx;

const S: &str = "loss";
const RATES: [f64; 3] = [0.0, 1.0, 5.0];
/// The faulty wire besides its loss: frames duplicated and reordered each way, in percent.
const DUPLICATE: f64 = 1.0;
const REORDER: f64 = 5.0;
const CONNS: usize = 8;
const BYTES: usize = 2 << 20;
/// The raw client's address (on side A's subnet, no interface's).
const RAW_CLIENT: &str = "198.18.0.9";
/// How long the raw client waits for a retransmission (a run without one counts as this).
const RTX_LIMIT_SECS: u64 = 10;

const APPLIANCE: &str = "198.18.0.2:7";
const LINUX: &str = "198.18.0.3:7";

/// The namespaces, relay, appliance and Linux server; dropping it ends the processes, then
/// deletes the namespaces.
struct Wire {
    _procs: Vec<Proc>,
    a: Netns,
    _b: Netns,
    _g: Netns,
    relay_cmd: String,
}

/// The relay's faults each way, in percent, and its seed.
#[derive(Clone, Copy)]
struct Faults {
    loss: f64,
    duplicate: f64,
    reorder: f64,
    seed: u64,
}

fn start(ctx: &Ctx, f: Faults) -> Result<Wire> {
    let pid = std::process::id();
    let g = Netns::create(&format!("sy-bench-{pid}-lg"))?;
    let a = Netns::create(&format!("sy-bench-{pid}-la"))?;
    let b = Netns::create(&format!("sy-bench-{pid}-lb"))?;
    let mut procs = Vec::new();

    let (log, out, err) = ctx.scratch.log("loss-relay.log")?;
    let mut cmd = g.exec(ctx.bin("example:gateway"));
    cmd.args(["--no-engine", "--address", "198.18.0.250/24", "--iface-a", "slra", "--iface-b", "slrb"])
        .args(["--file-prefix", &ctx.scratch.dpdk_prefix("sy-bench-loss-relay")])
        .args(["--loss-percent", &f.loss.to_string(), "--duplicate-percent", &f.duplicate.to_string()])
        .args(["--reorder-percent", &f.reorder.to_string()])
        .args(["--seed", &f.seed.to_string()])
        .env("BENCH_JSON", "1");
    let relay_cmd = describe(&cmd, &ctx.root);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut relay = Proc::spawn("the faulty relay (gateway example)", &mut cmd)?;
    wait_for_line(&mut relay, &log, Duration::from_secs(30), |l| l.contains(r#""event":"forwarding""#))?;
    procs.push(relay);
    g.ip(&["link", "set", "slra", "netns", &a.name])?;
    g.ip(&["link", "set", "slrb", "netns", &b.name])?;
    a.add_address("198.18.0.1/24", "slra")?;
    a.ip(&["link", "set", "slra", "up"])?;

    // Side B: the appliance, born here with its tap, bridged with the relay's tap.
    let config = ctx.scratch.write(
        "loss.toml",
        &format!(
            "[eal]\nfile_prefix = \"{}\"\nmemory_mb = 256\n[engine]\ndrain_secs = 0\n[metrics]\nlisten = \"\"\n\
             [control]\nsocket = \"{}\"\n[[port]]\nprofile = \"net_tap\"\ndevargs = \"iface=slap\"\n\
             address = \"198.18.0.2/24\"\n[[service]]\nkind = \"echo\"\nport = 7\n",
            ctx.scratch.dpdk_prefix("sy-bench-loss-app"),
            ctx.scratch.path("loss-ctl.sock").display()
        ),
    )?;
    let (log, out, err) = ctx.scratch.log("loss-appliance.log")?;
    let mut app = b.exec(ctx.bin("bin:switchyard"));
    app.arg("run").arg("--config").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err);
    let mut appliance = Proc::spawn("switchyard run (loss)", &mut app)?;
    wait_for_line(&mut appliance, &log, Duration::from_secs(30), |l| l.contains("switchyard ready"))?;
    procs.push(appliance);
    // net_tap gives the port the tap's own MAC: the bridge would take frames for the appliance as
    // its own. The kernel side gets another one.
    b.ip(&["link", "set", "slap", "address", "02:00:00:00:5e:01"])?;
    b.ip(&["link", "add", "slbr", "type", "bridge"])?;
    for dev in ["slrb", "slap"] {
        b.ip(&["link", "set", dev, "master", "slbr"])?;
        b.ip(&["link", "set", dev, "up"])?;
    }
    b.add_address("198.18.0.3/24", "slbr")?;
    b.ip(&["link", "set", "slbr", "up"])?;
    let mut serve = b.exec(ctx.bin("example:loadgen"));
    serve.args(["serve", "--echo", LINUX, "--http", "198.18.0.3:80"]);
    serve.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    procs.push(Proc::spawn("the Linux echo server (loadgen example serve)", &mut serve)?);
    a.ping("198.18.0.2")?;
    a.ping("198.18.0.3")?;
    Ok(Wire { _procs: procs, a, _b: b, _g: g, relay_cmd })
}

/// One run of the loadgen example from side A (`BENCH_JSON=1`): its last result line, and the
/// command line.
fn loadgen(ctx: &Ctx, w: &Wire, args: &[&str]) -> Result<(serde_json::Value, String)> {
    let mut cmd = w.a.exec(ctx.bin("example:loadgen"));
    cmd.args(args).env("BENCH_JSON", "1");
    let command = describe(&cmd, &ctx.root);
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("running the loadgen example")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = json_lines(&text).pop().with_context(|| format!("{command}: no result line in {text:?}"))?;
    Ok((v, command))
}

/// One transfer run from side A to `addr`, `conns` x `bytes`: seconds until every connection was
/// done (the limit if not), whether they all were, and the command line.
fn transfer(ctx: &Ctx, w: &Wire, addr: &str, conns: usize, bytes: usize) -> Result<(f64, bool, String)> {
    let (conns, bytes, limit) = (conns.to_string(), bytes.to_string(), ctx.loss_limit_secs.to_string());
    let args = ["transfer", "--addr", addr, "--conns", &conns, "--bytes", &bytes, "--limit-secs", &limit];
    let (v, command) = loadgen(ctx, w, &args)?;
    let secs = v["secs"].as_f64().with_context(|| format!("{command}: no secs in {v}"))?;
    Ok((secs, v["complete"].as_bool() == Some(true), command))
}

/// One first-retransmission run from side A's raw client to `addr`: milliseconds (the wait's
/// limit if none came), whether one came, and the command line.
fn first_rtx(ctx: &Ctx, w: &Wire, addr: &str) -> Result<(f64, bool, String)> {
    let limit = RTX_LIMIT_SECS.to_string();
    let args = ["first-rtx", "--iface", "slra", "--from", RAW_CLIENT, "--addr", addr, "--limit-secs", &limit];
    let (v, command) = loadgen(ctx, w, &args)?;
    let ms = v["ms"].as_f64().with_context(|| format!("{command}: no ms in {v}"))?;
    Ok((ms, v["complete"].as_bool() == Some(true), command))
}

/// The runs of one paired figure: the appliance's, Linux's, their ratios, the runs that did not
/// finish, and the last command lines.
#[derive(Default)]
struct Paired {
    fast: Vec<f64>,
    linux: Vec<f64>,
    ratios: Vec<f64>,
    unfinished: usize,
    commands: (String, String),
}

impl Paired {
    /// Runs `one` against the appliance, then against Linux, and keeps both.
    fn round(&mut self, mut one: impl FnMut(&str) -> Result<(f64, bool, String)>) -> Result<(f64, f64)> {
        let (f, f_done, fc) = one(APPLIANCE)?;
        let (l, l_done, lc) = one(LINUX)?;
        self.unfinished += usize::from(!f_done) + usize::from(!l_done);
        self.fast.push(f);
        self.linux.push(l);
        self.ratios.push(f / l);
        self.commands = (fc, lc);
        Ok((f, l))
    }

    /// Records the figures `keys` (the appliance's, Linux's, their paired ratios) of `what`, and
    /// `unfinished_key` when some run did not finish within `limit`.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        rep: &mut Report,
        keys: [&str; 3],
        what: &str,
        unit: &str,
        relay: &str,
        unfinished_key: &str,
        limit: &str,
    ) {
        let note = |c: &str| format!("{c}; relay: {relay}");
        rep.figure(S, keys[0], &format!("appliance, {what}"), unit, &self.fast, &note(&self.commands.0));
        rep.figure(S, keys[1], &format!("Linux, {what}"), unit, &self.linux, &note(&self.commands.1));
        rep.figure(S, keys[2], &format!("appliance / Linux, {what}"), "x", &self.ratios, "paired per round");
        if self.unfinished > 0 {
            rep.line(format!("  {} run(s), {what}: not done within {limit} (counted as the limit)", self.unfinished));
            rep.note(S, unfinished_key, json!(self.unfinished));
        }
    }
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let (mib, limit) = (ctx.loss_mib, ctx.loss_limit_secs);
    let single = (mib as usize) << 20;
    rep.line(format!(
        "loss: {CONNS} x {} MiB and 1 x {mib} MiB echo through a faulty relay ({DUPLICATE} % duplicated, {REORDER} % \
         reordered each way), seconds to the last byte (limit {limit} s), appliance against a Linux server behind the \
         same relay and seed:",
        BYTES >> 20
    ));
    rep.note(S, "single_transfer_mib", json!(mib));
    rep.note(S, "limit_secs", json!(limit));
    for (i, loss) in RATES.into_iter().enumerate() {
        let seed = 26 + i as u64;
        let w = start(ctx, Faults { loss, duplicate: DUPLICATE, reorder: REORDER, seed })?;
        let (mut many, mut one) = (Paired::default(), Paired::default());
        for round in 1..=ctx.repeat {
            let (f, l) = many.round(|addr| transfer(ctx, &w, addr, CONNS, BYTES))?;
            let (f1, l1) = one.round(|addr| transfer(ctx, &w, addr, 1, single))?;
            println!(
                "  loss {loss} % round {round}: {CONNS} x {} MiB appliance {f:.2} s, Linux {l:.2} s ({:.1}x); \
                 1 x {mib} MiB appliance {f1:.2} s, Linux {l1:.2} s ({:.1}x)",
                BYTES >> 20,
                f / l,
                f1 / l1
            );
        }
        let key = format!("{}pct", loss as u32);
        let limit_text = format!("{limit} s");
        many.record(
            rep,
            [&format!("appliance_secs_{key}"), &format!("linux_secs_{key}"), &format!("paired_ratio_{key}")],
            &format!("{CONNS} x {} MiB, {loss} % loss", BYTES >> 20),
            "s",
            &w.relay_cmd,
            &format!("unfinished_{key}"),
            &limit_text,
        );
        one.record(
            rep,
            [
                &format!("appliance_secs_single_{key}"),
                &format!("linux_secs_single_{key}"),
                &format!("paired_ratio_single_{key}"),
            ],
            &format!("1 x {mib} MiB, {loss} % loss"),
            "s",
            &w.relay_cmd,
            &format!("unfinished_single_{key}"),
            &limit_text,
        );
        drop(w);
    }

    // The first retransmission, on the same relay without faults.
    rep.line(format!(
        "loss: first retransmission of a reply never acknowledged, same relay without faults (sub-millisecond RTT), \
         milliseconds (limit {RTX_LIMIT_SECS} s):"
    ));
    let w = start(ctx, Faults { loss: 0.0, duplicate: 0.0, reorder: 0.0, seed: 26 })?;
    let mut rtx = Paired::default();
    for round in 1..=ctx.repeat {
        let (f, l) = rtx.round(|addr| first_rtx(ctx, &w, addr))?;
        println!("  first retransmission round {round}: appliance {f:.1} ms, Linux {l:.1} ms ({:.1}x)", f / l);
    }
    rtx.record(
        rep,
        ["first_rtx_ms_appliance", "first_rtx_ms_linux", "first_rtx_paired_ratio"],
        "first retransmission",
        "ms",
        &w.relay_cmd,
        "unfinished_first_rtx",
        &format!("{RTX_LIMIT_SECS} s"),
    );
    Ok(())
}
