//! Fixtures for integration tests on real DPDK net_tap with real Linux clients.
//!
//! Each test makes its own network namespace, starts the appliance inside it (so the tap is born
//! there, DESIGN fact 3), gives the tap's kernel side an address from 198.18.0.0/15, and runs its
//! clients in that namespace: ordinary Linux TCP sockets on a thread that entered it with setns(2),
//! or tools such as ping through `ip netns exec`. Dropping the fixture stops the appliance by PID
//! (SIGTERM, then SIGKILL) and deletes the namespace, also when the test panics.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kernel side of every test's tap.
pub const HOST: &str = "198.18.0.1";
/// The appliance's address.
pub const APPLIANCE: [u8; 4] = [198, 18, 0, 2];

/// Fails the test, with the reason, when root, /dev/net/tun, iproute2 or the binary is missing.
/// These tests never skip.
pub fn require_environment() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root (network namespaces, net_tap): run `sudo make test`");
    assert!(PathBuf::from("/dev/net/tun").exists(), "this test needs /dev/net/tun for net_tap: `modprobe tun`");
    let ip = Command::new("ip").arg("-V").output();
    assert!(ip.is_ok_and(|o| o.status.success()), "this test needs iproute2 (`ip`): `apt-get install iproute2`");
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("running ip")
}

/// Whether `syt-...-PID` names a test process that is gone.
fn stale(name: &str) -> bool {
    let Some(pid) = name.strip_prefix("syt-").and_then(|r| r.rsplit('-').next()) else { return false };
    pid.parse::<u32>().is_ok() && !PathBuf::from(format!("/proc/{pid}")).exists()
}

/// Deletes `syt-*-PID` namespaces left by test processes that no longer exist (a run killed
/// before its clean-up), and the EAL runtime folders such processes leave (an in-process EAL
/// removes its telemetry socket only at exit, after the test's own clean-up; a killed one never
/// does). Nothing of a live process is touched.
fn remove_stale_namespaces() {
    if let Ok(dirs) = std::fs::read_dir("/var/run/dpdk") {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if stale(&name) {
                let _ = std::fs::remove_dir_all(d.path()); // a dead test process's EAL files
            }
        }
    }
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        if stale(name) {
            eprintln!("removing namespace {name}, left by a test process that is gone");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A network namespace, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        remove_stale_namespaces();
        let name = format!("syt-{tag}-{}", std::process::id());
        let _ = ip(&["netns", "del", &name]); // a leftover of a killed run of this same pid
        let out = ip(&["netns", "add", &name]);
        assert!(out.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&out.stderr));
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        let out = ip(&full);
        assert!(out.status.success(), "ip {}: {}", full.join(" "), String::from_utf8_lossy(&out.stderr));
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has entered the namespace: its sockets are the namespace's.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("client thread panicked")
    }

    /// Starts `f` on a thread inside the namespace.
    pub fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: fd is an open namespace file; setns changes only this thread's network
            // namespace, which ends with the thread.
            let ret = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns into {path}: {}", std::io::Error::last_os_error());
            f()
        })
    }

    pub fn link_exists(&self, dev: &str) -> bool {
        ip(&["-n", &self.name, "link", "show", dev]).status.success()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = ip(&["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!("ip netns del {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The appliance running in a namespace, stopped on drop (through its [`Process`]), then its
/// config file and EAL runtime folder removed.
pub struct Appliance {
    /// Declared first: dropped (the process stopped) before the files below go.
    process: Option<Process>,
    config: PathBuf,
    /// EAL's runtime folder for this appliance's file prefix.
    runtime_dir: PathBuf,
    pub tap: String,
}

impl Appliance {
    /// Starts `switchyard run` inside `ns` with net_tap `tap`, echo on 7 and HTTP on 80, then
    /// addresses the tap's kernel side and waits until the echo port answers.
    pub fn start(ns: &NetNs, tap: &str) -> Appliance {
        Self::start_with(ns, tap, "")
    }

    /// As [`Appliance::start`], with more config text appended.
    pub fn start_with(ns: &NetNs, tap: &str, extra: &str) -> Appliance {
        Self::start_cores(ns, tap, 1, extra)
    }

    /// As [`Appliance::start_with`], with `cores` engines (each EAL lcore floating on CPUs 0-1).
    pub fn start_cores(ns: &NetNs, tap: &str, cores: u16, extra: &str) -> Appliance {
        Self::start_config(ns, tap, cores, 0, extra)
    }

    /// As [`Appliance::start_cores`], draining for `drain_secs` on SIGTERM (0: stop at once).
    pub fn start_config(ns: &NetNs, tap: &str, cores: u16, drain_secs: u64, extra: &str) -> Appliance {
        Self::start_env(ns, tap, cores, drain_secs, extra, &[])
    }

    /// As [`Appliance::start_config`], with these variables in the appliance's environment (and
    /// only in its own: the test process's environment is left alone, since tests run on
    /// threads side by side).
    pub fn start_env(
        ns: &NetNs,
        tap: &str,
        cores: u16,
        drain_secs: u64,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Appliance {
        Self::start_tuned(ns, tap, cores, drain_secs, "", extra, env)
    }

    /// As [`Appliance::start_env`], with `engine` lines added to the `[engine]` table
    /// (`max_connections = 16`, say).
    pub fn start_tuned(
        ns: &NetNs,
        tap: &str,
        cores: u16,
        drain_secs: u64,
        engine: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Appliance {
        let dir = std::env::temp_dir();
        let config = dir.join(format!("{}.toml", ns.name));
        let log = dir.join(format!("{}.log", ns.name));
        let lcores: Vec<String> = (0..cores).map(|c| format!("{c}@(0-1)")).collect();
        let text = format!(
            r#"[eal]
lcores = "{lcores}"
memory_mb = 128
file_prefix = "{prefix}"

[engine]
cores = {cores}
drain_secs = {drain_secs}
{engine}
[[port]]
profile = "net_tap"
devargs = "iface={tap}"
address = "198.18.0.2/24"
gateway = "{HOST}"

[[service]]
kind = "echo"
port = 7

[[service]]
kind = "http"
port = 80
body = "hello from the test\n"
{extra}"#,
            prefix = ns.name,
            lcores = lcores.join(",")
        );
        std::fs::write(&config, text).expect("writing the test config");
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_switchyard"));
        cmd.args(["run", "--config"]).arg(&config).envs(env.iter().copied());
        // `ip netns exec` execs the program: the child's PID is the appliance's.
        let process = Process::spawn(cmd, log);
        let runtime_dir = PathBuf::from("/var/run/dpdk").join(&ns.name);
        let mut app = Appliance { process: Some(process), config, runtime_dir, tap: tap.to_owned() };
        app.wait_for(Duration::from_secs(30), "the tap to appear", |a| {
            a.check_alive();
            ns.link_exists(tap)
        });
        ns.ip(&["addr", "add", &format!("{HOST}/24"), "dev", tap]);
        ns.ip(&["link", "set", tap, "up"]);
        let addr = SocketAddr::from((APPLIANCE, 7));
        app.wait_for(Duration::from_secs(30), "the echo port to answer", |a| {
            a.check_alive();
            ns.run(move || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
        });
        app
    }

    fn wait_for(&mut self, limit: Duration, what: &str, mut ready: impl FnMut(&mut Self) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; appliance log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn process(&mut self) -> &mut Process {
        self.process.as_mut().expect("the appliance runs until stopped")
    }

    fn check_alive(&mut self) {
        self.process().check_alive();
    }

    pub fn log_text(&self) -> String {
        self.process.as_ref().map(Process::log_text).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status and the log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.process.take().expect("the appliance runs until stopped").stop()
    }

    /// Waits up to `limit` for the appliance to exit by itself (it was signalled already), then
    /// stops it; returns the exit status and the log.
    pub fn stop_waiting(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut p = self.process.take().expect("the appliance runs until stopped");
        p.wait_exit(limit);
        p.stop()
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").child.id()
    }

    /// Waits until the appliance's log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        self.process().wait_for_log(needle, limit);
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        drop(self.process.take()); // stopped by PID, its log reported on panic and removed
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_dir(&self.runtime_dir); // empty once the process has gone
    }
}

/// A namespace with the appliance in it; dropped appliance first, then the namespace.
pub struct Fixture {
    pub app: Appliance,
    pub ns: NetNs,
}

impl Fixture {
    /// `tag` names the namespace; `tap` (at most 15 bytes) the tap.
    pub fn new(tag: &str, tap: &str) -> Fixture {
        require_environment();
        let ns = NetNs::new(tag);
        let app = Appliance::start(&ns, tap);
        Fixture { app, ns }
    }

    pub fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((APPLIANCE, port))
    }
}

/// A connection to the appliance's `port`, with 20 s read and write timeouts. Call it on a thread
/// inside the namespace.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect_timeout(&Fixture::addr(port), Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Sends `data` to the echo service (port 7), half-closes, and returns everything echoed back.
pub fn echo(data: Vec<u8>) -> Vec<u8> {
    let s = connect(7);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&s).read_to_end(&mut back).expect("reading the echo");
    writer.join().unwrap();
    back
}

/// A process started by a test, stopped by PID (SIGTERM, then SIGKILL) when dropped; its output goes
/// to a log file that is removed with it.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Process {
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("dup");
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("spawning a test process");
        Process { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the process exited ({status}); its log:\n{}", self.log_text());
        }
    }

    /// Waits until the log contains `needle`; fails with the log if the process exits or time runs
    /// out.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log_text().contains(needle) {
            self.check_alive();
            assert!(start.elapsed() < limit, "no {needle:?} after {limit:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait (SIGKILL after 10 s); returns the exit status and the log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let status = self.terminate();
        (status, self.log_text())
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        // SAFETY: kill on the PID of our own child, which has not been reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().expect("reaping")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let status = self.terminate();
        if std::thread::panicking() {
            eprintln!("process exited with {status}; log:\n{}", self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Runs `switchyard ctl --socket SOCKET ARGS...`: (success, stdout, stderr).
pub fn ctl(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("ctl")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("running switchyard ctl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `switchyard ctl --json CMD`, parsed; fails the test if it fails or is not JSON.
pub fn ctl_json(socket: &Path, cmd: &str) -> serde_json::Value {
    let (ok, out, err) = ctl(socket, &["--json", cmd]);
    assert!(ok, "ctl --json {cmd} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl --json {cmd}: not JSON ({e}):\n{out}"))
}
