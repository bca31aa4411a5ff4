//! What a run creates, each thing with a guard that removes it in `Drop`: child processes
//! ([`Proc`]), network namespaces ([`Netns`]), the scratch folder and DPDK's runtime folders
//! ([`Scratch`]). An error, a panic or Ctrl-C unwinds through them; Ctrl-C (or SIGTERM) sets
//! [`STOP`], which every wait here checks and turns into an error.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::stats::Steal;

/// Set by SIGINT or SIGTERM: the run stops at its next wait, and its guards clean up.
pub static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Installs the SIGINT and SIGTERM handlers that set [`STOP`]; a second signal exits at once.
pub fn install_signal_handlers() -> Result<()> {
    let flag = STOP.get_or_init(Default::default).clone();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone()).context("signal handler")?;
        signal_hook::flag::register(sig, flag.clone()).context("signal handler")?;
    }
    Ok(())
}

/// An error if the run was asked to stop.
pub fn check_stop() -> Result<()> {
    if STOP.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps for `d`, waking early (with an error) if the run is asked to stop.
pub fn pause(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_stop()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The command line of `cmd` as a shell would take it: the variables it sets, the program, its
/// arguments; paths under `root` made relative to it.
pub fn describe(cmd: &Command, root: &Path) -> String {
    let rel = |s: &str| -> String {
        let s = s.strip_prefix(&format!("{}/", root.display())).unwrap_or(s).to_owned();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "*?'\"$;&|<>()".contains(c)) {
            format!("'{s}'")
        } else {
            s
        }
    };
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), rel(&v?.to_string_lossy()))))
        .collect();
    parts.push(rel(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| rel(&a.to_string_lossy())));
    parts.join(" ")
}

/// How long a process has between SIGTERM and SIGKILL: the appliance drains its connections for
/// up to `drain_secs` (10 s by default) before it exits.
const GRACE: Duration = Duration::from_secs(30);

/// A child process this run started. Dropping it ends it by its PID (SIGTERM, then SIGKILL after
/// [`GRACE`]) unless it has exited.
pub struct Proc {
    name: String,
    child: std::process::Child,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its standard input, if it was piped.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until it exits, at most `limit` (then ends it: an error).
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().with_context(|| format!("waiting for {}", self.name))? {
                return Ok(status);
            }
            check_stop()?;
            if start.elapsed() > limit {
                self.terminate();
                bail!("{} did not finish within {} s", self.name, limit.as_secs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until it exits (at most `limit`) and checks that it succeeded; `log` is where its
    /// output went, quoted in the error.
    pub fn finish(&mut self, limit: Duration, log: &Path) -> Result<()> {
        let status = self.wait(limit)?;
        if !status.success() {
            check_stop()?; // Ctrl-C reached it too
            bail!("{} failed ({status}); the end of its output ({}):\n{}", self.name, log.display(), tail(log, 20));
        }
        Ok(())
    }

    /// Ends it: SIGTERM by its PID, SIGKILL if it is still there [`GRACE`] later.
    pub fn terminate(&mut self) {
        if !self.running() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a PID this process spawned and has not reaped yet (`try_wait` above
        // found it running), so the PID still names that child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < GRACE {
            if !self.running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} (pid {pid}) still running {} s after SIGTERM: SIGKILL", self.name, GRACE.as_secs());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The JSON objects among the lines of `text` (the bench programs' `BENCH_JSON=1` output; DPDK
/// may print its own lines beside them).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Runs `cmd` to its end (at most `limit`) with `BENCH_JSON=1`, its standard output read line by
/// line: returns its JSON objects, each handed to `each` as it arrives (for progress). Its
/// standard error goes to `log`, quoted if it fails.
pub fn run_json(
    name: &str,
    cmd: &mut Command,
    log: &Path,
    limit: Duration,
    mut each: impl FnMut(&Value),
) -> Result<Vec<Value>> {
    let err = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.env("BENCH_JSON", "1").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
    let mut proc = Proc::spawn(name, cmd)?;
    let out = proc.child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut found = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(v) = json_lines(&line).pop() {
                    each(&v);
                    found.push(v);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        check_stop()?;
        if start.elapsed() > limit {
            proc.terminate();
            bail!("{name} did not finish within {} s", limit.as_secs());
        }
    }
    let _ = reader.join();
    proc.finish(limit.saturating_sub(start.elapsed()).max(Duration::from_secs(10)), log)?;
    Ok(found)
}

/// Runs a short command to its end; an error with its output if it fails.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` is on PATH.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A network namespace this run created; dropping it deletes it. Created only under a name
/// that is free (a namespace of that name that exists already is not this run's: an error).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        if Path::new("/var/run/netns").join(name).exists() {
            bail!("network namespace {name} exists already: it is not this run's, so it is left alone");
        }
        sh("ip", &["netns", "add", name])?;
        let ns = Netns { name: name.to_owned() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all).map(drop)
    }

    /// Adds `cidr` (which must lie in 198.18.0.0/15, the benchmarking range) to `dev`.
    pub fn add_address(&self, cidr: &str, dev: &str) -> Result<()> {
        let ip: Ipv4Addr = cidr.split('/').next().unwrap_or_default().parse().with_context(|| format!("{cidr:?}"))?;
        if u32::from(ip) >> 17 != u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17 {
            bail!("{cidr}: outside 198.18.0.0/15, the only addresses the benchmarks use");
        }
        self.ip(&["addr", "add", cidr, "dev", dev])
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it: the PID is
    /// the program's).
    pub fn exec(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Pings `to` from inside the namespace until it answers (at most ten tries).
    pub fn ping(&self, to: &str) -> Result<()> {
        for _ in 0..10 {
            if sh("ip", &["netns", "exec", &self.name, "ping", "-c", "1", "-W", "1", to]).is_ok() {
                return Ok(());
            }
            check_stop()?;
        }
        bail!("{to} does not answer ping from namespace {}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = sh("ip", &["netns", "del", &self.name]) {
            eprintln!("bench: deleting namespace {}: {e:#}", self.name);
        }
    }
}

/// The run's scratch folder (configurations, sockets, logs) and the DPDK file prefixes its
/// processes used; dropping it removes the folder and those prefixes' folders under
/// /var/run/dpdk.
pub struct Scratch {
    pub dir: PathBuf,
    prefixes: std::sync::Mutex<Vec<String>>,
}

impl Scratch {
    pub fn create() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("sy-bench-{}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch { dir, prefixes: Default::default() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A DPDK file prefix of this run (`NAME-PID`), its runtime folder removed at the end.
    pub fn dpdk_prefix(&self, name: &str) -> String {
        let prefix = format!("{name}-{}", std::process::id());
        let mut all = self.prefixes.lock().expect("not poisoned");
        if !all.contains(&prefix) {
            all.push(prefix.clone());
        }
        prefix
    }

    /// Writes `text` to the file `name` in the scratch folder.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }

    /// A new file for a process's output (stdout and stderr both).
    pub fn log(&self, name: &str) -> Result<(PathBuf, Stdio, Stdio)> {
        let p = self.path(name);
        let f = File::create(&p).with_context(|| format!("creating {}", p.display()))?;
        let g = f.try_clone()?;
        Ok((p, f.into(), g.into()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for p in self.prefixes.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(p));
        }
    }
}

/// 2 MiB hugepages reserved for a suite; dropping it gives back what was there before.
pub struct HugePages {
    before: String,
}

impl HugePages {
    const PATH: &'static str = "/proc/sys/vm/nr_hugepages";

    pub fn reserve(n: u64) -> Result<HugePages> {
        let before = std::fs::read_to_string(Self::PATH).with_context(|| format!("reading {}", Self::PATH))?;
        let guard = HugePages { before: before.trim().to_owned() };
        std::fs::write(Self::PATH, n.to_string()).with_context(|| format!("writing {} (root)", Self::PATH))?;
        let got = std::fs::read_to_string(Self::PATH).unwrap_or_default();
        println!("  {} hugepages reserved for this suite (asked {n})", got.trim());
        Ok(guard)
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        match std::fs::write(Self::PATH, &self.before) {
            Ok(()) => println!("  hugepages back to {}", self.before),
            Err(e) => eprintln!("bench: giving the hugepages back ({} to {}): {e}", self.before, Self::PATH),
        }
    }
}

/// One step of an interactive session fed to a program's standard input (dpdk-testpmd's).
pub enum Step {
    Sleep(f64),
    Send(&'static str),
    /// Take a steal sample (returned in order by [`feed`]).
    Mark,
}

/// Feeds `steps` to `stdin` on a thread; the thread returns the steal samples of the `Mark`s. It
/// stops early (closing the input) if the run is asked to stop.
pub fn feed(mut stdin: ChildStdin, steps: Vec<Step>) -> std::thread::JoinHandle<Result<Vec<Steal>>> {
    std::thread::spawn(move || {
        let mut marks = Vec::new();
        for step in steps {
            match step {
                Step::Sleep(s) => pause(Duration::from_secs_f64(s))?,
                Step::Send(line) => {
                    // A program that exited early: its output says why, the caller reads it.
                    let _ = writeln!(stdin, "{line}");
                }
                Step::Mark => marks.push(Steal::now()?),
            }
        }
        Ok(marks)
    })
}

/// Waits until `path` holds a line for which `ready` is true, at most `limit`, while `proc` runs.
pub fn wait_for_line(proc: &mut Proc, path: &Path, limit: Duration, ready: impl Fn(&str) -> bool) -> Result<()> {
    let start = Instant::now();
    loop {
        if std::fs::read_to_string(path).unwrap_or_default().lines().any(&ready) {
            return Ok(());
        }
        if !proc.running() {
            bail!("{} exited before it was ready; the end of its output:\n{}", proc.name, tail(path, 20));
        }
        if start.elapsed() > limit {
            bail!(
                "{} was not ready within {} s; the end of its output:\n{}",
                proc.name,
                limit.as_secs(),
                tail(path, 20)
            );
        }
        pause(Duration::from_millis(100))?;
    }
}
