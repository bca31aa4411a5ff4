//! The `loss` suite: echo transfers through a lossy, duplicating, reordering wire, to the
//! appliance and to a Linux server behind the same wire, with the same seed (issue 26's
//! benchmark: the target is at most 1.2x Linux's time at every loss rate).
//!
//! Side A (the client, 198.18.0.1) -- the gateway example as a faulty relay (`--no-engine`,
//! `--loss-percent L --duplicate-percent 1 --reorder-percent 5`) -- side B, a bridge holding the
//! relay's tap, the appliance's tap (198.18.0.2, its echo service) and a Linux echo server
//! (198.18.0.3, the loadgen example's `serve`). This kernel has no netem (DESIGN fact 11); the
//! relay is the user-space wire. Each run moves 8 connections x 2 MiB at once (`loadgen
//! transfer`), each byte echoed back and checked; a run that does not finish in its limit counts
//! as the limit.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::run::{describe, json_lines, wait_for_line, Netns, Proc};
use crate::stats::Report;
use crate::Ctx;

const S: &str = "loss";
const RATES: [f64; 3] = [0.0, 1.0, 5.0];
const CONNS: usize = 8;
const BYTES: usize = 2 << 20;
const LIMIT_SECS: u64 = 120;

/// The namespaces, relay, appliance and Linux server; dropping it ends the processes, then
/// deletes the namespaces.
struct Wire {
    _procs: Vec<Proc>,
    a: Netns,
    _b: Netns,
    _g: Netns,
    relay_cmd: String,
}

fn start(ctx: &Ctx, loss: f64, seed: u64) -> Result<Wire> {
    let pid = std::process::id();
    let g = Netns::create(&format!("sy-bench-{pid}-lg"))?;
    let a = Netns::create(&format!("sy-bench-{pid}-la"))?;
    let b = Netns::create(&format!("sy-bench-{pid}-lb"))?;
    let mut procs = Vec::new();

    let (log, out, err) = ctx.scratch.log("loss-relay.log")?;
    let mut cmd = g.exec(ctx.bin("example:gateway"));
    cmd.args(["--no-engine", "--address", "198.18.0.250/24", "--iface-a", "slra", "--iface-b", "slrb"])
        .args(["--file-prefix", &ctx.scratch.dpdk_prefix("sy-bench-loss-relay")])
        .args(["--loss-percent", &loss.to_string(), "--duplicate-percent", "1", "--reorder-percent", "5"])
        .args(["--seed", &seed.to_string()])
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
    serve.args(["serve", "--echo", "198.18.0.3:7", "--http", "198.18.0.3:80"]);
    serve.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    procs.push(Proc::spawn("the Linux echo server (loadgen example serve)", &mut serve)?);
    a.ping("198.18.0.2")?;
    a.ping("198.18.0.3")?;
    Ok(Wire { _procs: procs, a, _b: b, _g: g, relay_cmd })
}

/// One transfer run from side A to `addr`: seconds until every connection was done (the limit if
/// not), and the command line.
fn transfer(ctx: &Ctx, w: &Wire, addr: &str) -> Result<(f64, bool, String)> {
    let mut cmd = w.a.exec(ctx.bin("example:loadgen"));
    cmd.args(["transfer", "--addr", addr, "--conns", &CONNS.to_string(), "--bytes", &BYTES.to_string()])
        .args(["--limit-secs", &LIMIT_SECS.to_string()])
        .env("BENCH_JSON", "1");
    let command = describe(&cmd, &ctx.root);
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("running loadgen transfer")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = json_lines(&text).pop().with_context(|| format!("{command}: no result line in {text:?}"))?;
    let secs = v["secs"].as_f64().with_context(|| format!("{command}: no secs in {v}"))?;
    Ok((secs, v["complete"].as_bool() == Some(true), command))
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    rep.line(format!(
        "loss: {CONNS} x {} MiB echo through a faulty relay (1 % duplicated, 5 % reordered each way), seconds to the last byte \
         (limit {LIMIT_SECS} s), appliance against a Linux server behind the same relay and seed:",
        BYTES >> 20
    ));
    for (i, loss) in RATES.into_iter().enumerate() {
        let seed = 26 + i as u64;
        let w = start(ctx, loss, seed)?;
        let (mut fast, mut linux, mut ratios, mut unfinished) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let mut commands = (String::new(), String::new());
        for round in 1..=ctx.repeat {
            let (f, f_done, fc) = transfer(ctx, &w, "198.18.0.2:7")?;
            let (l, l_done, lc) = transfer(ctx, &w, "198.18.0.3:7")?;
            unfinished += usize::from(!f_done) + usize::from(!l_done);
            println!("  loss {loss} % round {round}: appliance {f:.2} s, Linux {l:.2} s ({:.1}x)", f / l);
            fast.push(f);
            linux.push(l);
            ratios.push(f / l);
            commands = (fc, lc);
        }
        let key = format!("{}pct", loss as u32);
        let note = |c: &str| format!("{}; relay: {}", c, w.relay_cmd);
        rep.figure(
            S,
            &format!("appliance_secs_{key}"),
            &format!("appliance, {loss} % loss"),
            "s",
            &fast,
            &note(&commands.0),
        );
        rep.figure(S, &format!("linux_secs_{key}"), &format!("Linux, {loss} % loss"), "s", &linux, &note(&commands.1));
        rep.figure(
            S,
            &format!("paired_ratio_{key}"),
            &format!("appliance / Linux, {loss} % loss"),
            "x",
            &ratios,
            "paired per round",
        );
        if unfinished > 0 {
            rep.line(format!(
                "  {unfinished} run(s) at {loss} % loss did not finish within {LIMIT_SECS} s (counted as the limit)"
            ));
            rep.note(S, &format!("unfinished_{key}"), json!(unfinished));
        }
        drop(w);
    }
    Ok(())
}
