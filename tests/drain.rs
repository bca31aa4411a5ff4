//! Graceful drain on SIGTERM (`engine.drain_secs`): listeners refuse at once, open connections go
//! on until they end or the deadline passes, then what is left is reset and the appliance exits.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Appliance, Fixture, NetNs};

fn draining_fixture(tag: &str, tap: &str, drain_secs: u64) -> Fixture {
    common::require_environment();
    let ns = NetNs::new(tag);
    let app = Appliance::start_config(&ns, tap, 1, drain_secs, "");
    Fixture { app, ns }
}

fn sigterm(f: &Fixture) {
    let pid = f.app.pid();
    // SAFETY: kill on the PID of the appliance this test started (not reaped yet).
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
}

fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    back
}

#[test]
fn drain_refuses_new_connections_lets_open_ones_finish_then_exits() {
    let mut f = draining_fixture("drn", "sytdrn", 20);
    let mut open = f.ns.run(|| {
        let mut s = common::connect(7);
        assert_eq!(round_trip(&mut s, b"before"), b"before");
        s
    });
    sigterm(&f);
    f.app.wait_for_log("draining", Duration::from_secs(5));
    // New connections: refused at once. The open one: still served.
    let refused = f.ns.run(|| {
        let t = Instant::now();
        let e = TcpStream::connect_timeout(&Fixture::addr(7), Duration::from_secs(3)).expect_err("refused");
        (e.kind(), t.elapsed())
    });
    assert_eq!(refused.0, ErrorKind::ConnectionRefused);
    assert!(refused.1 < Duration::from_millis(500), "refused at once: {:?}", refused.1);
    assert_eq!(round_trip(&mut open, b"during the drain"), b"during the drain");
    // It ends: the appliance exits soon after, long before the 20 s deadline.
    let t = Instant::now();
    drop(open);
    std::thread::sleep(Duration::from_secs(1));
    let conns = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--socket", &format!("/run/switchyard/{}.sock", f.ns.name), "conns"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (status, log) = f.app.stop_waiting(Duration::from_secs(10));
    assert!(status.success(), "still open:\n{conns}\n{log}");
    assert!(t.elapsed() < Duration::from_secs(5), "exited {:?} after the last connection", t.elapsed());
    assert!(log.contains("drained: no connection left"), "{log}");
}

#[test]
fn drain_deadline_resets_what_is_left() {
    let f = draining_fixture("drd", "sytdrd", 2);
    let mut open = f.ns.run(|| {
        let mut s = common::connect(7);
        assert_eq!(round_trip(&mut s, b"x"), b"x");
        s
    });
    let t = Instant::now();
    sigterm(&f);
    let (status, log) = f.app.stop_waiting(Duration::from_secs(10));
    let took = t.elapsed();
    assert!(status.success(), "{log}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "exited after {took:?}, deadline 2 s"
    );
    assert!(log.contains("drain deadline"), "{log}");
    // The client hears of it: a reset, not silence.
    open.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let e = open.read(&mut [0u8; 4]).expect_err("reset");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
}
