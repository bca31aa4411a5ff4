//! The load generator on the engine against the appliance in another process, over a net_memif
//! wire (shared memory: no network traffic leaves the processes). Both are `switchyard` processes:
//! `run` with a memif server port and the echo service, `loadgen` with the client port.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::Process;

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
    let id = std::process::id();
    let tmp = std::env::temp_dir();
    let sock = tmp.join(format!("sy-memif-{id}.sock"));
    let (srv_cfg, cli_cfg) = (tmp.join(format!("sy-memif-srv-{id}.toml")), tmp.join(format!("sy-memif-cli-{id}.toml")));
    let (srv_prefix, cli_prefix) = (format!("sy-memif-srv-{id}"), format!("sy-memif-cli-{id}"));
    let _files = Files(vec![
        sock.clone(),
        srv_cfg.clone(),
        cli_cfg.clone(),
        PathBuf::from("/var/run/dpdk").join(&srv_prefix),
        PathBuf::from("/var/run/dpdk").join(&cli_prefix),
    ]);
    let port = |role: &str, addr: &str| {
        format!(
            "[[port]]\nprofile = \"net_memif\"\ndevargs = \"role={role},socket={},id=0\"\naddress = \"{addr}\"\n",
            sock.display()
        )
    };
    std::fs::write(
        &srv_cfg,
        format!(
            "[eal]\nlcores = \"0@(0-1)\"\nmemory_mb = 256\nfile_prefix = \"{srv_prefix}\"\n{}[[service]]\nkind = \"echo\"\nport = 7\n",
            port("server", "198.18.0.2/24")
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

    for (mode, conns) in [("short", "32"), ("persistent", "16")] {
        let out = Command::new(bin)
            .args(["loadgen", "--config"])
            .arg(&cli_cfg)
            .args(["--target", "198.18.0.2:7", "--mode", mode, "--conns", conns, "--secs", "1", "--sources", "4"])
            .output()
            .expect("running switchyard loadgen");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "loadgen {mode} failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.starts_with("loadgen")).expect("a result line");
        eprintln!("{line}");
        assert!(field(line, "completed") > 100, "{mode}: {line}");
        assert_eq!((field(line, "failed"), field(line, "cut")), (0, 0), "{mode}: {line}");
    }
    let (status, log) = server.stop();
    assert!(status.success(), "appliance exit {status}:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
}
