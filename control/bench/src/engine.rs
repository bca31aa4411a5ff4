//! The `engine` suite (the engine in memory, `dataplane/runtime/benches/engine.rs`) and the
//! `instructions` suite (callgrind on the same bench).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::run::{describe, installed, run_json, HugePages, Proc};
use crate::stats::{num, Report};
use crate::Ctx;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default()
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    // Connection buffers come from hugepages when there are some (CI and the default path use none).
    let _hugepages = ctx.hugepages.map(HugePages::reserve).transpose()?;
    let mut cmd = Command::new(ctx.bin("bench:engine"));
    cmd.env("MAX_CONNS", ctx.max_conns.to_string()).env("REPEAT", ctx.repeat.to_string()).arg("--bench");
    let command = describe(&cmd, &ctx.root);
    let pages = ctx.hugepages.map(|n| format!(", {n} hugepages reserved")).unwrap_or_default();
    rep.line(format!("engine in memory, server time only ({command}{pages}):"));
    let figures =
        run_json("the engine bench", &mut cmd, &ctx.scratch.path("engine.log"), Duration::from_secs(3600), |v| {
            if let Some(f) = v["figure"].as_str() {
                println!("  engine: {f}{}", v.get("established").map(|e| format!(" at {e}")).unwrap_or_default());
            }
        })?;
    const S: &str = "engine";
    for v in &figures {
        match v["figure"].as_str().unwrap_or_default() {
            "short_connections" => {
                let ns = floats(&v["ns_per_connection"]);
                rep.figure(S, "short_connection_ns", "short connection, engine time each", "ns", &ns, &command);
                let rate: Vec<f64> = ns.iter().map(|n| 1e9 / n).collect();
                rep.figure(
                    S,
                    "short_conns_per_s",
                    "short connections per second of engine time",
                    "conns/s",
                    &rate,
                    &command,
                );
            }
            "refusals" => {
                let rate: Vec<f64> = floats(&v["ns_per_refusal"]).iter().map(|n| 1e9 / n).collect();
                rep.figure(S, "refusals_per_s", "refusals (SYN to a full backlog)", "refusals/s", &rate, &command);
                rep.line(format!(
                    "  refusals' memory: RSS {} -> {} MiB, pool slots {} -> {}",
                    num(v["rss_mib_before"].as_f64().unwrap_or(f64::NAN)),
                    num(v["rss_mib_after"].as_f64().unwrap_or(f64::NAN)),
                    v["slots_before"],
                    v["slots_after"]
                ));
                rep.note(S, "refusals_memory", v.clone());
            }
            "classify" => rep.note(S, "classify", v.clone()),
            "requests" => {
                let n = v["established"].as_u64().unwrap_or(0);
                rep.figure(
                    S,
                    &format!("request_ns_{n}_established"),
                    &format!("request with {n} established, engine time"),
                    "ns",
                    &floats(&v["ns_per_request"]),
                    &command,
                );
                rep.note(S, &format!("request_step_{n}_established"), v.clone());
            }
            "per_packet_ratio" => {
                let (n, ratio) = (v["established"].as_u64().unwrap_or(0), v["ratio"].as_f64());
                rep.line(format!(
                    "  per request, {n} established over 1k (medians of interleaved runs): {}",
                    ratio.map(num).unwrap_or_default()
                ));
                rep.note(S, "per_packet_ratio", v.clone());
                if n == 1_000_000 {
                    rep.headline.insert("per_packet_1m_over_1k", ratio);
                }
            }
            "memory" => {
                rep.line(format!(
                    "  memory: {} B per connection at {} connections",
                    num(v["bytes_per_connection"].as_f64().unwrap_or(f64::NAN)),
                    v["open"]
                ));
                rep.note(S, "memory", v.clone());
            }
            "memory_1m_established" | "memory_1m_after_one_request" | "memory_1m_after_idle" => {
                let f = v["figure"].as_str().unwrap_or_default();
                rep.line(format!(
                    "  {}: {} GiB resident",
                    f.replace('_', " "),
                    num(v["resident_gib"].as_f64().unwrap_or(f64::NAN))
                ));
                rep.note(S, f, v.clone());
            }
            _ => {}
        }
    }
    if !figures.iter().any(|v| v["figure"] == "per_packet_ratio") {
        bail!("the engine bench printed no per-packet ratio ({command})");
    }
    Ok(())
}

/// Rounds of the two callgrind runs: their difference is 100 rounds on 1,000 connections.
const ROUNDS: [u32; 2] = [50, 150];
const REQUESTS: f64 = 1000.0 * (ROUNDS[1] - ROUNDS[0]) as f64;

/// Instructions per request from callgrind: `ONLY=requests MAX_CONNS=1000` with `ROUNDS=150` less
/// `ROUNDS=50`, counting only inside `Engine::poll`, over the 100,000 requests between them.
pub fn instructions(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    const S: &str = "instructions";
    if !installed("valgrind") {
        rep.line("instructions: valgrind is not installed: not measured (apt-get install valgrind)");
        rep.note(S, "instructions_per_request", json!({ "skipped": "valgrind is not installed" }));
        return Ok(());
    }
    let mut counts = Vec::new();
    let mut commands = Vec::new();
    for rounds in ROUNDS {
        let out = ctx.scratch.path(&format!("callgrind.out.{rounds}"));
        let mut cmd = Command::new("valgrind");
        cmd.env("ONLY", "requests")
            .env("MAX_CONNS", "1000")
            .env("ROUNDS", rounds.to_string())
            .env("REPEAT", "1")
            .args(["--tool=callgrind", "--toggle-collect=*Engine*poll*"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(ctx.bin("bench:engine"))
            .arg("--bench");
        commands.push(describe(&cmd, &ctx.root).replace(&format!("{}/", ctx.scratch.dir.display()), ""));
        println!("  instructions: callgrind, ROUNDS={rounds}");
        let log = ctx.scratch.path(&format!("callgrind.{rounds}.log"));
        let f = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f);
        Proc::spawn("valgrind", &mut cmd)?.finish(Duration::from_secs(1800), &log)?;
        counts.push(total_instructions(&out)?);
    }
    let per_request = (counts[1] - counts[0]) as f64 / REQUESTS;
    rep.line(format!("instructions per request in Engine::poll (callgrind): {}", num(per_request)));
    rep.note(
        S,
        "instructions_per_request",
        json!({
            "value": per_request,
            "instructions": { "rounds_50": counts[0], "rounds_150": counts[1] },
            "requests": REQUESTS,
            "commands": commands,
        }),
    );
    rep.headline.insert("instructions_per_request", Some(per_request));
    Ok(())
}

/// The instructions a callgrind output file counted (its `summary:` or `totals:` line).
fn total_instructions(path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{}: no summary line", path.display()))
}
