//! The load generator on the engine against the appliance in another process, over a net_memif
//! wire (shared memory: no network traffic leaves the processes). Both are `switchyard` processes:
//! `run` with a memif server port and the echo service, `loadgen` with the client port. When the
//! load generator is done, the appliance holds no connection and no more mbufs than before it came.
//! It runs twice: with the checksums smoltcp computes and checks, then with both ends set to
//! `checksums = "none"` (a trusted memory wire: none sent, none checked).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ctl_json, Process};

/// Files this test writes, removed at the end whatever happens.
struct Files(Vec<PathBuf>);

impl Drop for Files {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = if f.is_dir() { std::fs::remove_dir_all(f) } else { std::fs::remove_file(f) };
        }
    }
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

#[test]
fn loadgen_drives_the_appliance_over_memif() {
    common::require_environment();
    for checksums in ["port", "none"] {
        drive_over_memif(checksums);
    }
}

fn drive_over_memif(checksums: &str) {
    eprintln!("checksums = {checksums:?}");
    let id = format!("{}-{checksums}", std::process::id());
    let tmp = std::env::temp_dir();
    let sock = tmp.join(format!("sy-memif-{id}.sock"));
    let ctl_sock = tmp.join(format!("sy-memif-{id}.ctl"));
    let (srv_cfg, cli_cfg) = (tmp.join(format!("sy-memif-srv-{id}.toml")), tmp.join(format!("sy-memif-cli-{id}.toml")));
    let (srv_prefix, cli_prefix) = (format!("sy-memif-srv-{id}"), format!("sy-memif-cli-{id}"));
    let _files = Files(vec![
        sock.clone(),
        ctl_sock.clone(),
        srv_cfg.clone(),
        cli_cfg.clone(),
        PathBuf::from("/var/run/dpdk").join(&srv_prefix),
        PathBuf::from("/var/run/dpdk").join(&cli_prefix),
    ]);
    let port = |role: &str, addr: &str| {
        format!(
            "[[port]]\nprofile = \"net_memif\"\ndevargs = \"role={role},socket={},id=0\"\naddress = \"{addr}\"\n\
             checksums = \"{checksums}\"\n",
            sock.display()
        )
    };
    std::fs::write(
        &srv_cfg,
        format!(
            "[eal]\nlcores = \"0@(0-1)\"\nmemory_mb = 256\nfile_prefix = \"{srv_prefix}\"\n{}[[service]]\nkind = \"echo\"\nport = 7\n\
             [control]\nsocket = \"{}\"\n[metrics]\nlisten = \"\"\n",
            port("server", "198.18.0.2/24"),
            ctl_sock.display()
        ),
    )
    .unwrap();
    std::fs::write(
        &cli_cfg,
        format!(
            "[eal]\nlcores = \"0@(0-1)\"\nmemory_mb = 256\nfile_prefix = \"{cli_prefix}\"\n[engine]\ntime_wait_secs = 0\n{}",
            port("client", "198.18.0.1/24")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"]).arg(&srv_cfg);
    let mut server = Process::spawn(cmd, tmp.join(format!("sy-memif-srv-{id}.log")));
    server.wait_for_log("switchyard ready", Duration::from_secs(30));
    // Mbufs the appliance holds at rest (none in flight): what it must come back to.
    let mbufs = |stats: &serde_json::Value| stats["ports"][0]["mbufs_in_use"].as_u64().expect("mbufs_in_use");
    let at_rest = mbufs(&ctl_json(&ctl_sock, "stats"));
    // net_memif offloads no checksum: with "port" smoltcp does them all.
    let mode = if checksums == "none" { "none" } else { "software" };
    assert_eq!(ctl_json(&ctl_sock, "status")["ports"][0]["checksums"], mode, "checksums = {checksums:?}");

    // Short connections for 5 s (thousands of them, each its own handshake, echo and close), then
    // persistent ones.
    for (mode, conns, secs) in [("short", "32", "5"), ("persistent", "16", "1")] {
        let out = Command::new(bin)
            .args(["loadgen", "--config"])
            .arg(&cli_cfg)
            .args(["--target", "198.18.0.2:7", "--mode", mode, "--conns", conns, "--secs", secs, "--sources", "4"])
            .output()
            .expect("running switchyard loadgen");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "loadgen {mode} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.starts_with("loadgen")).expect("a result line");
        eprintln!("{line}");
        assert!(field(line, "completed") > 100, "{mode}: {line}");
        assert_eq!((field(line, "failed"), field(line, "cut")), (0, 0), "{mode}: {line}");
        // The load generator's own core: busy polling, with traffic in every millisecond or so.
        let busy: f64 = line.rsplit_once("busy ").and_then(|(_, v)| v.strip_suffix('%')?.parse().ok()).expect(line);
        assert!(busy > 1.0 && busy <= 100.0, "{mode}: the load generator's core busy {busy}%: {line}");
    }
    // Every connection ended (the client closed first: no TIME_WAIT on the appliance) and every
    // mbuf went back to the pool.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = ctl_json(&ctl_sock, "stats");
        let lane = &stats["cores"][0]["lanes"][0];
        let (open, time_wait) = (lane["open"].as_u64().unwrap(), lane["time_wait"].as_u64().unwrap());
        let closed = lane["closed"].as_u64().unwrap();
        if open == 0 && time_wait == 0 && mbufs(&stats) == at_rest {
            eprintln!("{closed} connections closed; mbufs in use {at_rest} before, {} after", mbufs(&stats));
            assert!(closed > 1000, "{stats}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the load: {open} open, {time_wait} in TIME_WAIT, mbufs {} (at rest {at_rest}):\n{stats}\n{}",
            mbufs(&stats),
            ctl_json(&ctl_sock, "conns")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, log) = server.stop();
    assert!(status.success(), "appliance exit {status}:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
}
