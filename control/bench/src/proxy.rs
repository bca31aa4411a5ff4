//! The `proxy` suite: Linux clients in a namespace -> the appliance on net_tap (fast path) -> its
//! `proxy` service -> an upstream echo server on the namespace's loopback, against the same
//! clients talking to that upstream directly, and against the appliance's own echo service (the
//! tap and the engine without the proxy: the part of the cost that is the wire).
//!
//! Bulk: one connection echoing as fast as it can (Mbit/s each way). Short: 16 clients doing
//! connect, 64 B, echo, close (connections/s), from eight source addresses to the appliance: each
//! connection they close holds its tuple for a minute in TIME_WAIT (Linux reuses such tuples only
//! on loopback), so one address runs out of ports after about 28,000 connections a minute.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::run::{describe, run_json, sh, wait_for_line, Netns, Proc};
use crate::stats::{Report, Steal, StealLog};
use crate::Ctx;

const S: &str = "proxy";

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let ns = Netns::create(&format!("sy-bench-{}-proxy", std::process::id()))?;
    let ctl = ctx.scratch.path("proxy-ctl.sock");
    let config = ctx.scratch.write(
        "proxy.toml",
        &format!(
            r#"[eal]
file_prefix = "{}"
memory_mb = 256
[engine]
drain_secs = 0
[metrics]
listen = ""
[control]
socket = "{}"
[[port]]
profile = "net_tap"
devargs = "iface=sybp0"
address = "198.18.0.2/24"
[[service]]
kind = "proxy"
port = 8080
upstreams = ["127.0.0.1:5101"]
[[service]]
kind = "echo"
port = 7
"#,
            ctx.scratch.dpdk_prefix("sy-bench-proxy"),
            ctl.display()
        ),
    )?;
    let lg = ctx.bin("example:loadgen");
    let sy = ctx.bin("bin:switchyard");
    let mut up = ns.exec(lg);
    up.args(["serve", "--echo", "127.0.0.1:5101", "--http", "127.0.0.1:5102"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _upstream = Proc::spawn("the upstream (loadgen example serve)", &mut up)?;
    let (log, out, err) = ctx.scratch.log("proxy-appliance.log")?;
    let mut app = ns.exec(sy);
    app.arg("run").arg("--config").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err);
    let appliance_cmd = describe(&app, &ctx.root).replace(&format!("{}/", ctx.scratch.dir.display()), "");
    let mut appliance = Proc::spawn("switchyard run (proxy)", &mut app)?;
    wait_for_line(&mut appliance, &log, Duration::from_secs(30), |l| l.contains("proxy listening"))?;
    ns.add_address("198.18.0.1/24", "sybp0")?;
    for i in 11..=18 {
        ns.add_address(&format!("198.18.0.{i}/24"), "sybp0")?;
    }
    ns.ip(&["link", "set", "sybp0", "up"])?;
    ns.ping("198.18.0.2")?;

    let secs = ctx.secs.to_string();
    let client = |args: &[&str]| -> Result<(f64, String)> {
        let mut cmd = ns.exec(lg);
        cmd.args(args).args(["--secs", &secs]);
        let command = describe(&cmd, &ctx.root);
        let lines = run_json(
            "the loadgen example",
            &mut cmd,
            &ctx.scratch.path("proxy-client.log"),
            Duration::from_secs(ctx.secs + 60),
            |_| {},
        )?;
        let rate = lines.last().and_then(|v| v["rate"].as_f64()).with_context(|| format!("{command}: no result"))?;
        Ok((rate, command))
    };
    let sources = ["--from", "198.18.0.11", "--sources", "8"];
    // (key, label, unit, arguments)
    let runs: [(&str, &str, &str, Vec<&str>); 6] = [
        ("bulk_proxy", "bulk, proxy", "Mbit/s", vec!["bulk", "--addr", "198.18.0.2:8080"]),
        ("bulk_direct", "bulk, direct", "Mbit/s", vec!["bulk", "--addr", "127.0.0.1:5101"]),
        ("bulk_appliance_echo", "bulk, appliance echo", "Mbit/s", vec!["bulk", "--addr", "198.18.0.2:7"]),
        (
            "short_proxy",
            "short connections, proxy",
            "conns/s",
            [&["short", "--addr", "198.18.0.2:8080", "--conns", "16"][..], &sources].concat(),
        ),
        (
            "short_direct",
            "short connections, direct",
            "conns/s",
            vec!["short", "--addr", "127.0.0.1:5101", "--conns", "16"],
        ),
        (
            "short_appliance_echo",
            "short connections, appliance echo",
            "conns/s",
            [&["short", "--addr", "198.18.0.2:7", "--conns", "16"][..], &sources].concat(),
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut commands = vec![String::new(); runs.len()];
    let mut steal = StealLog::default();
    for round in 1..=ctx.repeat {
        let s0 = Steal::now()?;
        let mut line = Vec::new();
        for (i, (key, _, _, args)) in runs.iter().enumerate() {
            let (rate, command) = client(args)?;
            rates[i].push(rate);
            commands[i] = command;
            line.push(format!("{key} {rate:.0}"));
        }
        steal.push(Steal::now()?.two_since(&s0));
        println!("  proxy round {round}: {}", line.join(", "));
    }
    if !appliance.running() {
        anyhow::bail!("the appliance exited during the run; its output:\n{}", crate::run::tail(&log, 20));
    }
    let listeners: Value = serde_json::from_str(&sh(
        &sy.to_string_lossy(),
        &["ctl", "--socket", &ctl.to_string_lossy(), "--json", "listeners"],
    )?)
    .unwrap_or(Value::Null);
    drop(appliance);

    rep.line(format!(
        "proxy (client -> net_tap -> appliance proxy -> loopback -> echo) vs direct (client -> loopback -> echo) vs the appliance's echo, {} s runs ({appliance_cmd}):",
        ctx.secs
    ));
    let mut med = Vec::new();
    for (i, (key, label, unit, _)) in runs.iter().enumerate() {
        med.push(rep.figure(S, key, label, unit, &rates[i], &commands[i]));
    }
    let ratios = json!({
        "bulk_proxy_over_direct": med[0] / med[1],
        "short_proxy_over_direct": med[3] / med[4],
        "bulk_proxy_over_appliance_echo": med[0] / med[2],
        "short_proxy_over_appliance_echo": med[3] / med[5],
    });
    rep.line(format!(
        "  ratios of medians: proxy / direct bulk {:.3}, short {:.3}; proxy / appliance echo bulk {:.3}, short {:.3}",
        med[0] / med[1],
        med[3] / med[4],
        med[0] / med[2],
        med[3] / med[5]
    ));
    rep.note(S, "ratios_of_medians", ratios);
    rep.line(format!("  host steal over the rounds: {}", steal.human()));
    rep.note(S, "steal", steal.json());
    rep.note(S, "appliance", json!({ "command": appliance_cmd, "listeners_after": listeners }));
    Ok(())
}
