//! Outgoing connections (SEMANTICS C1, C4): the engine as a client of another engine on a virtual clock.

use super::*;

/// C1: the engine opens connections itself; 2000 short connections (64 B request, 64 B
/// response, close), 50 at a time, from 8 source addresses, all complete; nothing is left open.
#[test]
fn c1_engine_opens_short_connections_to_another_engine() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::ZERO);
    let (spec, stats) = load(64, LoadMode::Short);
    let remote = std::net::SocketAddrV4::new(SERVER, 7);
    let mut opened = 0;
    for _ in 0..20_000 {
        while d.client.stats().open < 50 && opened < 2000 {
            d.client.connect(remote, Session::LoadGen(LoadGen::new(spec.clone()))).unwrap();
            opened += 1;
        }
        d.step();
        if stats.get(&stats.ended) == 2000 {
            break;
        }
    }
    assert_eq!(stats.get(&stats.completed), 2000);
    assert_eq!((stats.get(&stats.failed), stats.get(&stats.cut)), (0, 0));
    for _ in 0..100 {
        d.step();
    }
    assert_eq!((d.client.stats().open, d.server.stats().open), (0, 0));
    assert_eq!(d.client.stats().connected, 2000);
    assert_eq!(d.server.stats().established, 2000);
    assert_eq!(d.client.time_wait_stats().entered, 2000, "the client closed first");
    for e in [&d.client, &d.server] {
        assert!(
            e.neighbor_waiters() <= e.stats().slots,
            "{} waiters for {} slots",
            e.neighbor_waiters(),
            e.stats().slots
        );
    }
}

/// Persistent connections: 10 connections each carry many request/response pairs.
#[test]
fn persistent_connections_carry_many_requests() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::from_secs(240));
    let (spec, stats) = load(64, LoadMode::Persistent);
    let remote = std::net::SocketAddrV4::new(SERVER, 7);
    for _ in 0..10 {
        d.client.connect(remote, Session::LoadGen(LoadGen::new(spec.clone()))).unwrap();
    }
    for _ in 0..200 {
        d.step();
    }
    assert_eq!(stats.get(&stats.connected), 10);
    assert!(stats.get(&stats.completed) > 10 * 100, "{} responses", stats.get(&stats.completed));
    assert_eq!(d.server.stats().open, 10);
}

/// Responses that straddle the end of the 4 KiB receive ring (100 B each: every 41st wraps) are
/// taken whole at once: the load generator drops what it received in both pieces, so no response
/// waits for a timer to be noticed. 200 request/response pairs on one connection take well under
/// 10 ms of virtual time, and every byte is counted once.
#[test]
fn persistent_responses_across_the_ring_end_are_taken_at_once() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::ZERO);
    let (spec, stats) = load(100, LoadMode::Persistent);
    d.client.connect(std::net::SocketAddrV4::new(SERVER, 7), Session::LoadGen(LoadGen::new(spec))).unwrap();
    let start = d.now;
    while stats.get(&stats.completed) < 200 && d.now - start < Duration::from_secs(2) {
        d.tick(Duration::from_micros(10));
    }
    assert!(d.now - start < Duration::from_millis(10), "200 requests took {}", d.now - start);
    let received: u64 = d.client.connections(d.now, 10).iter().map(|c| c.bytes_in).sum();
    let whole = stats.get(&stats.completed) * 100;
    assert!((whole..whole + 100).contains(&received), "{received} bytes received for {whole} in whole responses");
}

/// C4: a connect to a port with no listener fails (RST) and is counted, not leaked; a zero
/// remote is rejected at once.
#[test]
fn c4_refused_connect_is_counted_and_freed() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::ZERO);
    let (spec, stats) = load(64, LoadMode::Short);
    d.client.connect(std::net::SocketAddrV4::new(SERVER, 9), Session::LoadGen(LoadGen::new(spec.clone()))).unwrap();
    for _ in 0..10 {
        d.step();
    }
    assert_eq!((stats.get(&stats.failed), stats.get(&stats.ended)), (1, 1));
    assert_eq!((d.client.stats().connect_failed, d.client.stats().open), (1, 0));
    let zero = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7);
    assert_eq!(
        d.client.connect(zero, Session::LoadGen(LoadGen::new(spec))).unwrap_err(),
        ConnectError::BadRemote(zero)
    );
}

/// Flow affinity: with an affinity rule the engine only picks 4-tuples the rule accepts.
#[test]
fn connect_picks_only_ports_the_affinity_rule_accepts() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::ZERO);
    d.client.set_affinity(|t| t.local_port % 2 == 1);
    let (spec, _) = load(64, LoadMode::Persistent);
    let remote = std::net::SocketAddrV4::new(SERVER, 7);
    for _ in 0..100 {
        let id = d.client.connect(remote, Session::LoadGen(LoadGen::new(spec.clone()))).unwrap();
        let t = d.client.slots[id.0 as usize].tuple.unwrap();
        assert_eq!(t.local_port % 2, 1, "{t:?}");
    }
}

/// Back-to-back requests on one persistent connection never wait for a timer (delayed ACK,
/// retransmission): 100 request/response pairs in well under 10 ms of virtual time.
#[test]
fn persistent_requests_do_not_wait_for_timers() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::new(std::time::Duration::ZERO);
    let (spec, stats) = load(64, LoadMode::Persistent);
    d.client.connect(std::net::SocketAddrV4::new(SERVER, 7), Session::LoadGen(LoadGen::new(spec))).unwrap();
    let start = d.now;
    let mut log = Vec::new();
    while stats.get(&stats.completed) < 100 && d.now - start < Duration::from_secs(2) {
        d.tick(Duration::from_micros(10));
        if log.len() < 12 && stats.get(&stats.completed) as usize > log.len() {
            log.push(d.now - start);
        }
    }
    assert!(
        d.now - start < Duration::from_millis(10),
        "100 requests took {}; first completions at {log:?}",
        d.now - start
    );
}

/// A server learns each client address from its SYN: 8 connections from 8 source addresses that
/// never ARPed the server all complete a request within 100 ms (smoltcp alone would resolve the
/// addresses one per second).
#[test]
fn a_server_learns_client_addresses_from_their_syns() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut d = Duo::with_announce(std::time::Duration::ZERO, false);
    // The client learns the server's MAC once (one ARP), as any client does first.
    let (spec, stats) = load(64, LoadMode::Persistent);
    for _ in 0..8 {
        d.client.connect(std::net::SocketAddrV4::new(SERVER, 7), Session::LoadGen(LoadGen::new(spec.clone()))).unwrap();
    }
    for _ in 0..100 {
        d.step();
    }
    assert_eq!(stats.get(&stats.connected), 8, "all 8 source addresses connected within 100 ms");
    assert!(stats.get(&stats.completed) >= 8);
}
