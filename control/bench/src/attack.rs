//! The `attack` suite: what a flood costs one core's engine, in memory, engine time only
//! (`dataplane/runtime/benches/attack.rs`): SYNs answered with SYN cookies, ACKs with bad cookies,
//! FIN-ACKs to closed ports and RSTs to random 4-tuples, with software and offloaded checksums.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::run::{describe, run_json};
use crate::stats::{num, Report};
use crate::Ctx;

/// SYN cookies answered per second per core that issue 27 asks for.
const COOKIE_TARGET: f64 = 2e6;

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    const S: &str = "attack";
    let mut cmd = Command::new(ctx.bin("bench:attack"));
    cmd.env("REPEAT", ctx.repeat.to_string()).arg("--bench");
    let command = describe(&cmd, &ctx.root);
    rep.line(format!("floods against one engine in memory, engine time only ({command}):"));
    let figures =
        run_json("the attack bench", &mut cmd, &ctx.scratch.path("attack.log"), Duration::from_secs(1800), |v| {
            println!(
                "  attack: {} ({} checksums)",
                v["figure"].as_str().unwrap_or("?"),
                v["checksums"].as_str().unwrap_or("?")
            );
        })?;
    let mut cookies = None;
    for v in &figures {
        let (Some(kind), Some(checksums)) = (v["figure"].as_str(), v["checksums"].as_str()) else { continue };
        let ns: Vec<f64> =
            v["ns_per_frame"].as_array().map_or(Vec::new(), |a| a.iter().filter_map(Value::as_f64).collect());
        let rate: Vec<f64> = ns.iter().map(|n| 1e9 / n).collect();
        let what = kind.replace('_', " ");
        let med = rep.figure(
            S,
            &format!("{kind}_per_s_{checksums}"),
            &format!("{what}, {checksums} checksums, per second per core"),
            "frames/s",
            &rate,
            &command,
        );
        rep.figure(
            S,
            &format!("{kind}_ns_{checksums}"),
            &format!("{what}, {checksums} checksums, each"),
            "ns",
            &ns,
            &command,
        );
        rep.note(S, &format!("{kind}_{checksums}_run"), v.clone());
        if kind == "syn_cookies" && checksums == "software" {
            cookies = Some(med);
        }
    }
    let Some(cookies) = cookies else { bail!("the attack bench printed no SYN cookie figure ({command})") };
    rep.line(format!(
        "  SYN cookies per core (software checksums): {} /s against a target of {} /s",
        num(cookies),
        num(COOKIE_TARGET)
    ));
    Ok(())
}
