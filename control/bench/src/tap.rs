//! The `tap` suite (not in the default set: `--only tap`): the appliance over net_tap with
//! ordinary Linux clients, against the same workload on the Linux TCP stack (the loadgen example's
//! threaded server on the namespace's loopback, 198.18.1.1), runs interleaved, with and without
//! busy polling; and the appliance's CPU use when idle, both ways. Over net_tap every frame costs
//! a system call on the tap, so this measures the tap and the machine more than the engine.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::run::{describe, pause, run_json, Netns, Proc};
use crate::stats::{num, Report};
use crate::Ctx;

const S: &str = "tap";

/// CPU time (user + system) of a process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command's closing parenthesis; utime and stime are the 14th and 15th
    // of the whole line.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    Ok(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
}

fn start(ctx: &Ctx, ns: &Netns, busy_poll: bool) -> Result<(Proc, u32)> {
    let config = ctx.scratch.write(
        "tap.toml",
        &format!(
            r#"[eal]
lcores = "0@(0-1)"
file_prefix = "{}"
[engine]
busy_poll = {busy_poll}
[control]
socket = "{}"
[metrics]
listen = ""
[[port]]
profile = "net_tap"
devargs = "iface=sybench"
address = "198.18.0.2/24"
[[service]]
kind = "echo"
port = 7
[[service]]
kind = "http"
port = 80
"#,
            ctx.scratch.dpdk_prefix("sy-bench-tap"),
            ctx.scratch.path("tap-ctl.sock").display()
        ),
    )?;
    let (_, out, err) = ctx.scratch.log("tap-appliance.log")?;
    let mut cmd = ns.exec(ctx.bin("bin:switchyard"));
    cmd.arg("run").arg("--config").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err);
    let mut p = Proc::spawn("switchyard run (net_tap)", &mut cmd)?;
    for _ in 0..300 {
        if ns.ip(&["link", "show", "sybench"]).is_ok() {
            break;
        }
        anyhow::ensure!(
            p.running(),
            "the appliance exited: {}",
            crate::run::tail(&ctx.scratch.path("tap-appliance.log"), 20)
        );
        pause(Duration::from_millis(100))?;
    }
    ns.add_address("198.18.0.1/24", "sybench")?;
    ns.ip(&["link", "set", "sybench", "up"])?;
    ns.ping("198.18.0.2")?;
    let pid = p.pid();
    Ok((p, pid))
}

pub fn run(ctx: &Ctx, rep: &mut Report) -> Result<()> {
    let ns = Netns::create(&format!("sy-bench-{}-tap", std::process::id()))?;
    // The kernel baseline lives on the namespace's loopback (the tap comes and goes with the
    // appliance).
    ns.add_address("198.18.1.1/24", "lo")?;
    let mut serve = ns.exec(ctx.bin("example:loadgen"));
    serve.args(["serve", "--echo", "198.18.1.1:7007", "--http", "198.18.1.1:8080"]).stdout(Stdio::null());
    let _kernel = Proc::spawn("the kernel baseline (loadgen example serve)", &mut serve)?;
    // SAFETY: sysconf reads a constant of the system; it takes no pointer.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;

    rep.line(format!("the appliance over net_tap vs Linux on the namespace's loopback, {} s runs:", ctx.secs));
    for busy_poll in [false, true] {
        let (p, pid) = start(ctx, &ns, busy_poll)?;
        pause(Duration::from_secs(1))?;
        let t0 = cpu_ticks(pid)?;
        pause(Duration::from_secs(ctx.secs))?;
        let idle = 100.0 * (cpu_ticks(pid)? - t0) as f64 / hz / ctx.secs as f64;
        drop(p);
        rep.line(format!("  idle CPU of the appliance, busy_poll = {busy_poll}: {idle:.1}% of one core"));
        rep.note(S, &format!("idle_cpu_percent_busy_poll_{busy_poll}"), json!(idle));
    }
    for busy_poll in [false, true] {
        let (p, _) = start(ctx, &ns, busy_poll)?;
        let runs = [
            ("echo_appliance", vec!["echo", "--addr", "198.18.0.2:7"]),
            ("echo_kernel", vec!["echo", "--addr", "198.18.1.1:7007"]),
            ("http_appliance", vec!["http", "--addr", "198.18.0.2:80", "--conns", "4"]),
            ("http_kernel", vec!["http", "--addr", "198.18.1.1:8080", "--conns", "4"]),
        ];
        let mut rates = vec![Vec::new(); runs.len()];
        let mut commands = vec![String::new(); runs.len()];
        for _ in 0..ctx.repeat {
            for (i, (_, args)) in runs.iter().enumerate() {
                let mut cmd = ns.exec(ctx.bin("example:loadgen"));
                cmd.args(args).args(["--secs", &ctx.secs.to_string()]);
                commands[i] = describe(&cmd, &ctx.root);
                let v = run_json(
                    "the loadgen example",
                    &mut cmd,
                    &ctx.scratch.path("tap-client.log"),
                    Duration::from_secs(ctx.secs + 60),
                    |_| {},
                )?;
                rates[i].push(v.last().and_then(|v| v["rate"].as_f64()).context("no result")?);
            }
        }
        drop(p);
        let mut med = Vec::new();
        for (i, (key, _)) in runs.iter().enumerate() {
            let unit = if key.starts_with("echo") { "round trips/s" } else { "requests/s" };
            let label = format!("{}, busy_poll = {busy_poll}", key.replace('_', " "));
            med.push(rep.figure(S, &format!("{key}_busy_poll_{busy_poll}"), &label, unit, &rates[i], &commands[i]));
        }
        rep.line(format!(
            "  appliance / kernel, busy_poll = {busy_poll}: echo {}, http {}",
            num(med[0] / med[1]),
            num(med[2] / med[3])
        ));
        rep.note(S, &format!("echo_ratio_busy_poll_{busy_poll}"), json!(med[0] / med[1]));
        rep.note(S, &format!("http_ratio_busy_poll_{busy_poll}"), json!(med[2] / med[3]));
    }
    Ok(())
}
