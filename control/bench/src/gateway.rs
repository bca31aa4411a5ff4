//! The `gateway` suite: the embedding example's (`dataplane/runtime/examples/gateway.rs`)
//! forwarding rate with its engine idle, busy and absent.
//!
//! Side A (198.18.0.1) -- gateway (198.18.0.2) -- side B (198.18.0.3), each side a namespace, the
//! gateway's two net_tap ports born in a third and moved to A and B. A Linux UDP sender on side A
//! sends 64-byte datagrams to side B as fast as it can; a counter on side B reports what arrived.
//! "Busy": at the same time echo clients on both sides (4 each) ping-pong 64-byte messages with
//! the embedded engine. "Plain": the gateway with `--no-engine` (l2fwd).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::run::{describe, json_lines, pause, wait_for_line, Netns, Proc};
use crate::stats::{Report, Steal, StealLog};
use crate::Ctx;

const S: &str = "gateway";
const SIZE: usize = 64;
const CONNS: usize = 4;

/// The three namespaces and the gateway between them; dropping it ends the gateway, then deletes
/// the namespaces.
struct Topology {
    gateway: Proc,
    a: Netns,
    b: Netns,
    _g: Netns,
    command: String,
}

fn start(ctx: &Ctx, flags: &[&str]) -> Result<Topology> {
    let pid = std::process::id();
    let g = Netns::create(&format!("sy-bench-{pid}-gw"))?;
    let a = Netns::create(&format!("sy-bench-{pid}-a"))?;
    let b = Netns::create(&format!("sy-bench-{pid}-b"))?;
    let (log, out, err) = ctx.scratch.log("gateway.log")?;
    let mut cmd = g.exec(ctx.bin("example:gateway"));
    cmd.args(["--address", "198.18.0.2/24", "--file-prefix", &ctx.scratch.dpdk_prefix("sy-bench-gateway")])
        .args(flags)
        .env("BENCH_JSON", "1");
    let command = describe(&cmd, &ctx.root);
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut gateway = Proc::spawn("the gateway example", &mut cmd)?;
    wait_for_line(&mut gateway, &log, Duration::from_secs(30), |l| l.contains(r#""event":"forwarding""#))?;
    g.ip(&["link", "set", "gwa", "netns", &a.name])?;
    g.ip(&["link", "set", "gwb", "netns", &b.name])?;
    a.add_address("198.18.0.1/24", "gwa")?;
    a.ip(&["link", "set", "gwa", "up"])?;
    b.add_address("198.18.0.3/24", "gwb")?;
    b.ip(&["link", "set", "gwb", "up"])?;
    a.ping("198.18.0.3")?;
    Ok(Topology { gateway, a, b, _g: g, command })
}

/// The rate a loadgen example run printed (its `BENCH_JSON=1` line).
fn rate(ctx: &Ctx, out: &str) -> Result<f64> {
    let path = ctx.scratch.path(out);
    let text = std::fs::read_to_string(&path)?;
    json_lines(&text)
        .pop()
        .and_then(|v| v["rate"].as_f64())
        .with_context(|| format!("{out}: no result line in {text:?}"))
}

/// One phase: datagrams/s received on side B, sent from A; with `busy`, the echo round trips/s
/// of both sides' clients.
fn phase(ctx: &Ctx, t: &mut Topology, busy: bool, round: usize) -> Result<(f64, f64, Option<f64>)> {
    let lg = ctx.bin("example:loadgen");
    let port = 9000 + (std::process::id() as usize + round * 7 + usize::from(busy)) % 1000;
    let secs = ctx.secs.to_string();
    let spawn = |ns: &Netns, name: &str, out: &str, args: &[&str]| -> Result<Proc> {
        let f = std::fs::File::create(ctx.scratch.path(out))?;
        let mut cmd = ns.exec(lg);
        cmd.args(args).env("BENCH_JSON", "1").stdin(Stdio::null()).stdout(f).stderr(Stdio::null());
        Proc::spawn(name, &mut cmd)
    };
    let count_secs = (ctx.secs + 2).to_string();
    let mut counter = spawn(
        &t.b,
        "loadgen udp-count",
        "count.out",
        &["udp-count", "--bind", &format!("198.18.0.3:{port}"), "--secs", &count_secs],
    )?;
    let mut loads = Vec::new();
    if busy {
        for (ns, out) in [(&t.a, "echo-a.out"), (&t.b, "echo-b.out")] {
            loads.push((
                out,
                spawn(
                    ns,
                    "loadgen echo",
                    out,
                    &["echo", "--addr", "198.18.0.2:7", "--conns", &CONNS.to_string(), "--secs", &secs],
                )?,
            ));
        }
    }
    pause(Duration::from_millis(300))?;
    let limit = Duration::from_secs(ctx.secs + 30);
    spawn(
        &t.a,
        "loadgen udp-send",
        "send.out",
        &["udp-send", "--addr", &format!("198.18.0.3:{port}"), "--secs", &secs, "--size", &SIZE.to_string()],
    )?
    .finish(limit, &ctx.scratch.path("send.out"))?;
    for (out, l) in &mut loads {
        l.finish(limit, &ctx.scratch.path(out))?;
    }
    counter.finish(limit, &ctx.scratch.path("count.out"))?;
    if !t.gateway.running() {
        anyhow::bail!(
            "the gateway exited during the run; its output:\n{}",
            crate::run::tail(&ctx.scratch.path("gateway.log"), 20)
        );
    }
    let echo = if busy { Some(rate(ctx, "echo-a.out")? + rate(ctx, "echo-b.out")?) } else { None };
    Ok((rate(ctx, "count.out")?, rate(ctx, "send.out")?, echo))
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let (mut idle, mut busy, mut plain, mut echo) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut steal, mut steal_plain) = (StealLog::default(), StealLog::default());
    let mut t = start(ctx, &[])?;
    let engine_cmd = t.command.clone();
    for round in 1..=ctx.repeat {
        let s0 = Steal::now()?;
        let (got, sent, _) = phase(ctx, &mut t, false, round)?;
        idle.push(got);
        println!("  gateway round {round} idle: {got:.0} datagrams/s forwarded ({sent:.0}/s sent)");
        let (got, sent, rt) = phase(ctx, &mut t, true, round)?;
        busy.push(got);
        echo.push(rt.unwrap_or(f64::NAN));
        steal.push(Steal::now()?.two_since(&s0));
        println!(
            "  gateway round {round} busy: {got:.0} datagrams/s forwarded ({sent:.0}/s sent), echo {:.0} round trips/s",
            rt.unwrap_or(0.0)
        );
    }
    drop(t);
    let mut t = start(ctx, &["--no-engine"])?;
    let plain_cmd = t.command.clone();
    for round in 1..=ctx.repeat {
        let s0 = Steal::now()?;
        let (got, sent, _) = phase(ctx, &mut t, false, round)?;
        plain.push(got);
        steal_plain.push(Steal::now()?.two_since(&s0));
        println!("  gateway round {round} plain l2fwd: {got:.0} datagrams/s forwarded ({sent:.0}/s sent)");
    }
    drop(t);

    rep.line(format!(
        "gateway forwarding, {SIZE}-byte UDP A -> B over net_tap, {} s runs, datagrams/s received on side B:",
        ctx.secs
    ));
    let cmd_note =
        |c: &str| format!("{c}; loadgen example udp-send / udp-count (and echo, {CONNS} conns a side, when busy)");
    let p = rep.figure(S, "plain_l2fwd", "plain l2fwd (--no-engine)", "datagrams/s", &plain, &cmd_note(&plain_cmd));
    let i = rep.figure(S, "engine_idle", "engine embedded, idle", "datagrams/s", &idle, &cmd_note(&engine_cmd));
    let b = rep.figure(S, "engine_busy", "engine embedded, serving echo", "datagrams/s", &busy, &cmd_note(&engine_cmd));
    rep.figure(S, "echo_round_trips", "echo while busy, both sides", "round trips/s", &echo, &cmd_note(&engine_cmd));
    rep.line(format!("  ratios of medians: idle / plain {:.3}, busy / idle {:.3}", i / p, b / i));
    rep.note(S, "idle_over_plain", json!(i / p));
    rep.note(S, "busy_over_idle", json!(b / i));
    rep.line(format!("  host steal over the rounds: engine {}; plain {}", steal.human(), steal_plain.human()));
    rep.note(S, "steal", json!({ "engine_rounds": steal.json(), "plain_rounds": steal_plain.json() }));
    Ok(())
}
