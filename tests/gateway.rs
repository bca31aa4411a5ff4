//! The embedding example (`dataplane/runtime/examples/gateway.rs`) on two net_tap ports: a gateway that
//! owns its DPDK loop, forwards between its ports like l2fwd and hands the frames for its own
//! address to an embedded engine serving echo.
//!
//! Each test makes three namespaces: the gateway starts in one (its taps are born there), then
//! each tap's kernel side moves to a host namespace, side A (198.18.0.1) and side B (198.18.0.3);
//! the gateway's address is 198.18.0.2. Everything is removed on drop, also when a test fails.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{require_environment, NetNs, Process};
use sha2::{Digest, Sha256};

const A: &str = "198.18.0.1";
const B: &str = "198.18.0.3";
const GW: &str = "198.18.0.2";

/// The example binary, built by `cargo test` (or here, when only this test was asked for).
fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(|d| d.parent()).unwrap().join("examples/gateway");
    if !bin.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "gateway", "-p", "switchyard-runtime"])
            .status();
        assert!(built.is_ok_and(|s| s.success()), "building the gateway example");
    }
    bin
}

/// The gateway and its three namespaces; the process is stopped (by PID) before they go.
struct Fixture {
    process: Option<Process>,
    side_a: NetNs,
    side_b: NetNs,
    gw: NetNs,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        require_environment();
        let gw = NetNs::new(&format!("{tag}g"));
        let side_a = NetNs::new(&format!("{tag}a"));
        let side_b = NetNs::new(&format!("{tag}b"));
        let id = std::process::id() % 100_000;
        let (tap_a, tap_b) = (format!("ga{tag}{id}"), format!("gb{tag}{id}"));
        let mut cmd = gw.command(gateway_binary().to_str().unwrap());
        cmd.args(["--address", "198.18.0.2/24", "--iface-a", &tap_a, "--iface-b", &tap_b]);
        cmd.args(["--file-prefix", &gw.name]);
        let log = std::env::temp_dir().join(format!("{}.log", gw.name));
        let mut process = Process::spawn(cmd, log);
        // The ports must be fully set up before the taps move (a queue set up later would make a
        // new tap of the same name).
        process.wait_for_log("gateway: forwarding", Duration::from_secs(30));
        for (tap, ns, addr) in [(&tap_a, &side_a, A), (&tap_b, &side_b, B)] {
            gw.ip(&["link", "set", tap, "netns", &ns.name]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", tap]);
            ns.ip(&["link", "set", tap, "up"]);
        }
        let f = Fixture { process: Some(process), side_a, side_b, gw };
        // Ready when side A reaches the engine's echo port.
        let ready = f.side_a.run(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if TcpStream::connect_timeout(&addr(GW, 7), Duration::from_millis(500)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        assert!(ready, "the gateway's echo never answered; its log:\n{}", f.log());
        f
    }

    fn log(&self) -> String {
        self.process.as_ref().map(Process::log_text).unwrap_or_default()
    }

    /// Stops the gateway; returns its log (with the totals line).
    fn stop(mut self) -> String {
        let (status, log) = self.process.take().unwrap().stop();
        assert!(status.success(), "the gateway exited with {status}:\n{log}");
        log
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.process.take()); // stopped by PID before the namespaces go
        let _ = std::fs::remove_dir(format!("/var/run/dpdk/{}", self.gw.name));
        let _ = (&self.side_a, &self.side_b);
    }
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

fn data(seed: u32, len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8).collect()
}

/// An echo round trip of `payload` through `to`, from the current thread's namespace.
fn echo_through(to: SocketAddr, payload: Vec<u8>) -> Vec<u8> {
    let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&payload).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&s).read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    back
}

/// A Linux echo server on side B, for one connection.
fn server_on_b(f: &Fixture, port: u16) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = f.side_b.spawn(move || {
        let l = TcpListener::bind(addr(B, port)).unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    rx.recv().unwrap();
    h
}

#[test]
fn gateway_forwards_between_sides_while_both_use_its_embedded_echo() {
    let f = Fixture::new("f");
    // 1 MiB from A to B and back, through the gateway's forwarding path.
    let server = server_on_b(&f, 5001);
    let bulk = data(1, 1 << 20);
    let want = Sha256::digest(&bulk);
    let through = f.side_a.spawn(move || echo_through(addr(B, 5001), bulk));
    // Meanwhile hosts on both sides use the embedded echo service.
    let echoes: Vec<_> = [&f.side_a, &f.side_b]
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            ns.spawn(move || {
                for round in 0..10 {
                    let d = data(100 + i as u32 * 10 + round, 64 * 1024);
                    let h = Sha256::digest(&d);
                    assert_eq!(Sha256::digest(echo_through(addr(GW, 7), d)), h, "side {i} echo round {round}");
                }
            })
        })
        .collect();
    for e in echoes {
        e.join().expect("echo clients on both sides");
    }
    assert_eq!(Sha256::digest(through.join().unwrap()), want, "1 MiB A -> B -> A through the gateway");
    server.join().unwrap();
    // ICMP: the engine answers for its address; the hosts answer each other through it.
    for (ns, to) in [(&f.side_a, GW), (&f.side_b, GW), (&f.side_a, B), (&f.side_b, A)] {
        let out = ns.command("ping").args(["-c", "1", "-W", "2", to]).output().unwrap();
        assert!(out.status.success(), "ping {to} from {}: {}", ns.name, String::from_utf8_lossy(&out.stdout));
    }
    let log = f.stop();
    let totals = log.lines().find(|l| l.contains("totals")).unwrap_or_else(|| panic!("no totals:\n{log}"));
    let number = |key: &str| -> u64 {
        totals
            .split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or(0)
    };
    assert!(number("established ") >= 21, "20 echo connections and the readiness probe: {totals}");
}

#[test]
fn gateway_engine_resets_an_unknown_port_while_forwarded_traffic_is_untouched() {
    let f = Fixture::new("r");
    let server = server_on_b(&f, 5002);
    let bulk = data(7, 1 << 20);
    let want = Sha256::digest(&bulk);
    let through = f.side_a.spawn(move || echo_through(addr(B, 5002), bulk));
    // A port of the gateway's address with nothing on it: the engine's RST, at once.
    let refused = f.side_a.run(|| {
        (0..20)
            .map(|_| {
                let t = Instant::now();
                let e = TcpStream::connect_timeout(&addr(GW, 9), Duration::from_secs(3)).expect_err("refused");
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                t.elapsed()
            })
            .max()
            .unwrap()
    });
    assert!(refused < Duration::from_millis(500), "RST at once, slowest {refused:?}");
    assert_eq!(Sha256::digest(through.join().unwrap()), want, "the forwarded transfer is untouched");
    server.join().unwrap();
    let log = f.stop();
    let totals = log.lines().find(|l| l.contains("totals")).unwrap_or_else(|| panic!("no totals:\n{log}"));
    let refused: u64 = totals
        .split("refused ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused >= 20, "the engine answered the 20 connects to port 9: {totals}");
}
