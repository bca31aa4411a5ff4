//! Listener backlog on the fast path, seen by real Linux clients (SEMANTICS B2, B3, L4): the
//! appliance on net_tap in a namespace with a `hold` service, which never accepts.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Appliance, Fixture, NetNs};

fn hold_fixture(tag: &str, tap: &str, backlog: usize, policy: &str, on_full: &str) -> Fixture {
    common::require_environment();
    let ns = NetNs::new(tag);
    let extra = format!(
        "\n[[service]]\nkind = \"hold\"\nport = 9000\nbacklog = {backlog}\npolicy = \"{policy}\"\non_full = \"{on_full}\"\n"
    );
    let app = Appliance::start_with(&ns, tap, &extra);
    Fixture { app, ns }
}

/// L4 and B2 (bsd, backlog 2 → 4 queued): four Linux clients complete their handshake; the
/// fifth connect fails with ECONNREFUSED at once, well inside the first SYN retransmission (1 s).
#[test]
fn l4_full_backlog_refuses_a_linux_client_at_once() {
    let f = hold_fixture("l4", "sytl4", 2, "bsd", "refuse");
    let (held, refused, latency) = f.ns.run(|| {
        let held: Vec<TcpStream> = (0..4)
            .map(|i| {
                TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("client {i} of 4 should be queued: {e}"))
            })
            .collect();
        let start = Instant::now();
        let e = TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_secs(5))
            .expect_err("the 5th must be refused");
        (held.len(), e.kind(), start.elapsed())
    });
    assert_eq!(held, 4);
    assert_eq!(refused, ErrorKind::ConnectionRefused);
    eprintln!("L4 refusal seen by a Linux client after {latency:?}");
    assert!(latency < Duration::from_secs(1), "refused after {latency:?}: not at once");
}

/// B3: with `on_full = "drop"` the SYN is ignored: the client is not refused, its connect is
/// still pending when it gives up; once a queued client leaves, a new one gets in.
#[test]
fn b3_drop_policy_leaves_a_linux_client_waiting() {
    let f = hold_fixture("b3", "sytb3", 1, "exact", "drop");
    f.ns.run(|| {
        let first = TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_secs(5)).expect("first is queued");
        let e = TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_millis(1500)).expect_err("queue full");
        assert_eq!(e.kind(), ErrorKind::TimedOut, "a dropped SYN is not refused: {e}");
        drop(first); // FIN: hold closes the queued connection, the queue has room again
        let start = Instant::now();
        loop {
            match TcpStream::connect_timeout(&Fixture::addr(9000), Duration::from_secs(5)) {
                Ok(_) => break,
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("retrying after {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no room after the first client left: {e}"),
            }
        }
    });
}
