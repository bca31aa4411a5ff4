//! The engine against a plain smoltcp client over an in-memory link, on a virtual clock.

use std::net::Ipv4Addr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::*;
use crate::listener::{BacklogPolicy, OnFull};
use crate::phy::{MemoryDevice, MemoryLink};
use crate::pool::ARMED;
use crate::services::{HttpConfig, ServiceKind};
use crate::testing::*;

#[test]
fn echo_round_trip_of_one_mib_has_equal_sha256() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40000);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::new());
    let ok = p.run_until(100_000, |p| {
        let s = p.sock(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        p.recv_all(h, &mut got);
        got.len() == data.len()
    });
    assert!(ok, "echoed {} of {} bytes", got.len(), data.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    assert_eq!(p.engine.stats().established, 1);
}

/// A client whose TIME_WAIT table is full (Linux keeps 131,072 entries per namespace, then closes
/// without one) can open a new connection on a 4-tuple at once: its last ACK of the old connection
/// and the new SYN reach the engine in one burst. The SYN is a new connection for the listener,
/// not a segment for the old connection's socket, which smoltcp has just closed and which would
/// answer with an RST ("Connection refused", seen from a load generator's short connections).
#[test]
fn a_syn_right_behind_the_last_ack_on_its_four_tuple_opens_a_new_connection() {
    let mut p = Pair::new(&config());
    let old = p.connect(7, 40002);
    assert!(p.run_until(100, |p| p.sock(old).may_send()));
    p.sock(old).set_ack_delay(None); // its ACK of the engine's FIN leaves with the next poll
    p.sock(old).send_slice(b"ping").unwrap();
    p.sock(old).close();
    // The client's data and FIN go; the echo service answers and closes: the engine's FIN waits
    // in the client's inbound queue.
    p.client_poll();
    p.engine_poll();
    assert!(p.cdev.pending() > 0, "the engine answered");
    // The old socket takes the engine's FIN and sends its last ACK; the new socket's SYN, on the
    // same 4-tuple, leaves in the same client poll, behind it. The engine gets both in one burst.
    let new = p.connect(7, 40002);
    p.client_poll();
    assert_eq!(p.sock(old).state(), tcp::State::TimeWait);
    assert_eq!(p.edev.pending(), 2, "the last ACK and the new SYN");
    p.sockets.remove(old); // the client forgets it, as Linux does without a TIME_WAIT entry
    assert!(p.run_until(100, |p| p.sock(new).state() != tcp::State::SynSent), "the new SYN got an answer");
    assert_eq!(p.sock(new).state(), tcp::State::Established, "the new connection is accepted, not reset");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.syns, st.completed, st.refused), (2, 2, 0), "{st:?}");
    assert_eq!(p.engine.stats().no_listener, 0);
    let (open, closed) = (p.engine.stats().open, p.engine.stats().closed);
    assert_eq!((open, closed), (1, 1), "the old connection ended, the new one is open");
    // And the new connection works.
    p.sock(new).send_slice(b"pong").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(100, |p| {
        p.recv_all(new, &mut got);
        got == b"pong"
    }));
}

#[test]
fn echo_closes_after_peer_fin_and_frees_the_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40001);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"ping").unwrap();
    p.sock(h).close();
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        matches!(p.sock(h).state(), tcp::State::TimeWait | tcp::State::Closed)
    }));
    assert_eq!(got, b"ping");
    // The engine frees the socket once smoltcp reports it closed (LAST_ACK -> CLOSED).
    assert!(p.run_until(1000, |p| p.engine.stats().open == 0));
    assert_eq!(p.engine.stats().closed, 1);
}

#[test]
fn http_keep_alive_serves_many_requests_on_one_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(80, 40002);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    let mut got = Vec::new();
    for i in 0..200 {
        p.sock(h).send_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let want = (i + 1) * b"hello\n".len();
        assert!(p.run_until(1000, |p| {
            p.recv_all(h, &mut got);
            got.windows(6).filter(|w| w == b"hello\n").count() * 6 == want
        }));
    }
    assert_eq!(p.engine.stats().established, 1);
    assert!(p.sock(h).is_active());
}

/// Slow senders on the HTTP service: a client that trickles a request head, one that sends
/// nothing, and one idle after its response are each answered 408 and closed once the header
/// timeout has passed since the connection started (or its last response was queued); a client
/// that completes its head in time is served.
#[test]
fn http_header_timeout_closes_slow_and_silent_clients() {
    let mut cfg = config();
    let http = HttpConfig::new(b"hello\n", "text/plain").with_header_timeout(std::time::Duration::from_secs(5));
    cfg.listeners[1].service = ServiceKind::Http(Arc::new(http));
    let mut p = Pair::new(&cfg);
    let (slow, silent, served) = (p.connect(80, 47000), p.connect(80, 47001), p.connect(80, 47002));
    assert!(p.run_until(100, |p| [slow, silent, served].iter().all(|&h| p.sock(h).may_send())));
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    for (i, piece) in [&b"GET / H"[..], b"TTP/1.1\r\n", b"Host: t\r\n"].iter().enumerate() {
        p.sock(slow).send_slice(piece).unwrap();
        if i == 0 {
            p.sock(served).send_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        }
        p.step_by(Duration::from_millis(1500));
    }
    p.recv_all(served, &mut got[2]);
    assert!(got[2].ends_with(b"hello\n"), "served in time: {:?}", String::from_utf8_lossy(&got[2]));
    assert!(p.sock(slow).may_recv() && p.sock(silent).may_recv(), "nothing closed before the timeout");
    // 4.5 s in; the served response left at 1.5 s: both timeouts pass by 6.5 s.
    p.run_until(3000, |_| false);
    for (i, h) in [slow, silent, served].into_iter().enumerate() {
        p.recv_all(h, &mut got[i]);
        assert!(!p.sock(h).may_recv(), "client {i} closed by the engine");
    }
    for g in &got[..2] {
        assert!(g.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{:?}", String::from_utf8_lossy(g));
    }
    let idle = String::from_utf8_lossy(&got[2]);
    assert!(idle.contains("hello\nHTTP/1.1 408 Request Timeout\r\n"), "the idle one: {idle:?}");
}

#[test]
fn syn_to_a_closed_port_is_refused() {
    let mut p = Pair::new(&config());
    let h = p.connect(9, 40003);
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::Closed), "RST closes the client at once");
    assert_eq!(p.engine.stats().established, 0);
}

#[test]
fn a_burst_of_syns_beyond_the_backlog_is_all_served() {
    // 20 clients connect in the same instant; the listener keeps only a couple of LISTEN sockets
    // armed and re-arms after each SYN (DESIGN fact 6), so none is refused.
    let mut p = Pair::new(&config());
    let handles: Vec<_> = (0..20).map(|i| p.connect(7, 41000 + i)).collect();
    let mut done = vec![false; handles.len()];
    let ok = p.run_until(5_000, |p| {
        for (i, h) in handles.iter().enumerate() {
            let s = p.sock(*h);
            assert_ne!(s.state(), tcp::State::Closed, "client {i} was refused");
            if s.may_send() && s.send_queue() == 0 && s.recv_queue() == 0 && !done[i] {
                let _ = s.send_slice(b"x");
            }
            if s.can_recv() {
                let mut b = [0u8; 16];
                if s.recv_slice(&mut b).unwrap() > 0 {
                    done[i] = true;
                }
            }
        }
        done.iter().all(|d| *d)
    });
    assert!(ok, "served {} of 20", done.iter().filter(|d| **d).count());
    assert_eq!(p.engine.stats().established, 20);
}

#[test]
fn config_errors_name_what_is_wrong() {
    let mut link = MemoryLink::new();
    let now = Instant::from_millis(0);
    let mut c = config();
    c.listeners.push(listener(7, ServiceKind::Echo, 1));
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::DuplicatePort(7)));
    let mut c = config();
    c.gateway = Some(Ipv4Addr::new(198, 19, 0, 1));
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::GatewayOffLink { .. })));
    let mut c = config();
    c.prefix_len = 33;
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadPrefix(33)));
    let mut c = config();
    c.time_wait = std::time::Duration::from_secs(301);
    assert_eq!(
        Engine::new(&c, &mut link.b, now).err(),
        Some(EngineError::TimeWaitOutOfRange(std::time::Duration::from_secs(301)))
    );
    c.time_wait = std::time::Duration::from_secs(300);
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 300 s is the upper edge");
    c.time_wait = std::time::Duration::ZERO;
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 0 s is the lower edge");
    let mut c = config();
    c.mac = [1, 0, 0, 0, 0, 1];
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadMac(_))));
}

fn hold_config(backlog: usize, policy: BacklogPolicy, on_full: OnFull) -> EngineConfig {
    let mut c = config();
    c.listeners = vec![ListenerSpec { port: 9000, service: ServiceKind::Hold, backlog, policy, on_full }];
    c
}

/// Connects one client after the other to the hold listener until one is refused; returns how
/// many got a completed handshake.
fn queued_before_refusal(p: &mut Pair, max: u16) -> usize {
    for i in 0..max {
        let h = p.connect(9000, 43000 + i);
        let done = p.run_until(2000, |p| matches!(p.sock(h).state(), tcp::State::Established | tcp::State::Closed));
        assert!(done, "client {i} neither connected nor was refused");
        if p.sock(h).state() == tcp::State::Closed {
            return i as usize;
        }
    }
    max as usize
}

/// B2 row by row, seen from outside: a `hold` listener queues exactly the table's number of
/// connections; the next SYN is refused (L4).
#[test]
fn b2_backlog_tables_seen_from_a_client() {
    let rows = [
        (BacklogPolicy::Bsd, [1, 2, 4, 5, 7, 8]),
        (BacklogPolicy::Solaris, [0, 1, 2, 3, 4, 5]),
        (BacklogPolicy::Exact, [0, 1, 2, 3, 4, 5]),
        (BacklogPolicy::Linux, [1, 2, 3, 4, 5, 6]),
    ];
    for (policy, limits) in rows {
        for (backlog, want) in limits.into_iter().enumerate() {
            let mut p = Pair::new(&hold_config(backlog, policy, OnFull::Refuse));
            let got = queued_before_refusal(&mut p, 12);
            assert_eq!(got, want, "{policy} backlog {backlog}");
            let st = p.engine.listener_stats(9000).unwrap();
            assert_eq!((st.queued, st.refused, st.limit), (want, 1, want), "{policy} backlog {backlog}: {st:?}");
        }
    }
}

/// L4: a full backlog refuses at once with an RST; the listener's accept event (a service
/// session) is never involved, and the refused connection is counted.
#[test]
fn l4_full_backlog_refuses_with_rst_at_once() {
    let mut p = Pair::new(&hold_config(2, BacklogPolicy::Bsd, OnFull::Refuse));
    assert_eq!(queued_before_refusal(&mut p, 4), 4);
    let h = p.connect(9000, 44000);
    let start = p.now;
    assert!(p.run_until(50, |p| p.sock(h).state() == tcp::State::Closed), "refusal must not wait for a retransmission");
    assert!(p.now - start < Duration::from_millis(10), "refused after {}", p.now - start);
    let st = p.engine.listener_stats(9000).unwrap();
    assert_eq!((st.syns, st.completed, st.queued, st.accepted, st.refused, st.dropped), (5, 4, 4, 0, 1, 0));
}

/// B3: with `on_full = drop` the SYN is ignored: the client keeps retransmitting and gets in
/// once a queued connection leaves.
#[test]
fn b3_drop_policy_lets_a_retransmitted_syn_in_later() {
    let mut p = Pair::new(&hold_config(1, BacklogPolicy::Exact, OnFull::Drop));
    let first = p.connect(9000, 45000);
    assert!(p.run_until(100, |p| p.sock(first).state() == tcp::State::Established));
    let second = p.connect(9000, 45001);
    assert!(!p.run_until(500, |p| p.sock(second).state() != tcp::State::SynSent), "dropped SYN: no answer at all");
    assert!(p.engine.listener_stats(9000).unwrap().dropped >= 1);
    // The first client leaves; hold closes its queued connection and the queue has room again.
    p.sock(first).close();
    assert!(p.run_until(10_000, |p| p.sock(second).state() == tcp::State::Established), "retransmitted SYN got in");
    let st = p.engine.listener_stats(9000).unwrap();
    assert_eq!((st.queued, st.completed, st.refused), (1, 2, 0));
}

/// B4, B1: a connection counts as queued (TCP accepted it) only once the third segment of its
/// handshake has arrived; until then it is half-open, and nothing is handed to the service.
#[test]
fn b4_a_connection_is_queued_only_once_the_third_segment_arrives() {
    let mut p = Pair::new(&hold_config(4, BacklogPolicy::Exact, OnFull::Refuse));
    let h = p.connect(9000, 44000);
    // ARP, the SYN and the SYN-ACK, until the client is established: its ACK then waits on the
    // engine's wire.
    for _ in 0..100 {
        p.client_poll();
        if p.sock(h).state() == tcp::State::Established {
            break;
        }
        p.engine_poll();
    }
    assert_eq!(p.sock(h).state(), tcp::State::Established);
    let ack = p.edev.take_inbound().expect("the client's ACK");
    p.engine_poll();
    let st = p.engine.listener_stats(9000).unwrap();
    assert_eq!((st.half_open, st.completed, st.queued), (1, 0, 0), "before the third segment: {st:?}");
    p.edev.inject(ack);
    p.engine_poll();
    let st = p.engine.listener_stats(9000).unwrap();
    assert_eq!((st.half_open, st.completed, st.queued), (0, 1, 1), "after it: {st:?}");
}

/// Bounded state: past `max_connections` a SYN meets its listener's `on_full` (here refused at once,
/// L4), counted apart, and the engine's own connects fail with ENOBUFS (C4); the flow table was
/// sized for the bound at start and never grows.
#[test]
fn max_connections_bounds_passive_and_active_opens() {
    let mut cfg = hold_config(16, BacklogPolicy::Exact, OnFull::Refuse);
    cfg.max_connections = 3;
    let mut p = Pair::new(&cfg);
    let capacity = p.engine.memory().flow_capacity;
    assert!(capacity >= 3);
    assert_eq!(queued_before_refusal(&mut p, 8), 3, "three connections, then the bound");
    let st = p.engine.stats();
    assert_eq!((st.open, st.over_max_connections), (3, 1), "{st:?}");
    assert_eq!(p.engine.listener_stats(9000).unwrap().refused, 1);
    let remote = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 7);
    let session = crate::services::Session::Echo(crate::services::Echo::new());
    assert_eq!(p.engine.connect(remote, session).unwrap_err(), ConnectError::TooMany(3));
    assert_eq!(p.engine.memory().flow_capacity, capacity, "the flow table never grew");
}

/// B1 under a SYN flood: spoofed SYNs that never complete use up the half-open budget
/// (`syn_backlog`), and from then on each new SYN makes the oldest half-open connection give way
/// (counted), so a real client arriving in the middle of the flood completes its handshake and is
/// never refused; the flood leaves no more than the budget behind.
#[test]
fn b1_a_syn_flood_turns_over_half_open_connections_and_never_refuses_a_client() {
    use crate::flow::{plain_tcp, test_tcp_frame};
    use smoltcp::wire::TcpControl;
    let mut cfg = config();
    cfg.syn_backlog = 64;
    let mut p = Pair::new(&cfg);
    let spoofed = |i: u32| {
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i);
        let tcp = plain_tcp((40000 + (i % 20000) as u16, 7), TcpControl::Syn, i.wrapping_mul(7919), None, 1000, &[]);
        test_tcp_frame(([2, 0, 0, 0, 0, 1], src), ([2, 0, 0, 0, 0, 2], SERVER), &tcp)
    };
    // 5 SYNs a millisecond (5,000/s): a half-open connection lasts about 13 ms before its turn to
    // give way comes, some ten round trips of this link.
    for i in 0..200 {
        p.edev.inject(spoofed(i));
    }
    p.engine_poll();
    let real = p.connect(7, 45000);
    for i in 200..600 {
        p.edev.inject(spoofed(i));
        if i % 5 == 0 {
            p.step();
        }
    }
    assert!(p.run_until(200, |p| p.sock(real).state() == tcp::State::Established), "the real client got in");
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!(st.refused, 0, "{st:?}");
    assert!(st.half_open <= 64, "{st:?}");
    assert!(st.syn_evicted >= 600 - 64, "{st:?}");
    assert_eq!(echo(&mut p, real, b"still served"), b"still served");
}

/// L4 with B2's table: the last ACK of a handshake and the next client's SYN in one burst. The
/// connection that ACK completes is not given up for the SYN (its handshake is done, only the
/// service phase has not run yet): the listener is full, and the SYN is refused at once.
#[test]
fn l4_a_handshake_completed_in_the_same_burst_is_kept_and_the_next_syn_refused() {
    let mut p = Pair::new(&hold_config(2, BacklogPolicy::Bsd, OnFull::Refuse)); // limit 4
    assert_eq!(queued_before_refusal(&mut p, 3), 3);
    let fourth = p.connect(9000, 44100);
    for _ in 0..100 {
        p.client_poll();
        if p.sock(fourth).state() == tcp::State::Established {
            break;
        }
        p.engine_poll();
    }
    let ack = p.edev.take_inbound().expect("the fourth client's ACK");
    let fifth = p.connect(9000, 44101);
    p.client_poll();
    let syn = p.edev.take_inbound().expect("the fifth client's SYN");
    p.edev.inject(ack);
    p.edev.inject(syn);
    p.engine_poll();
    assert!(p.run_until(100, |p| p.sock(fifth).state() == tcp::State::Closed), "the fifth is refused (L4)");
    let st = p.engine.listener_stats(9000).unwrap();
    assert_eq!((st.queued, st.half_open, st.refused, st.syn_evicted), (4, 0, 1, 0), "{st:?}");
    assert_eq!(p.sock(fourth).state(), tcp::State::Established);
}

/// A retransmitted SYN (its SYN-ACK was lost) reaches the half-open connection it created, not
/// a fresh LISTEN socket.
#[test]
fn b4_retransmitted_syn_reaches_its_half_open_connection() {
    let mut p = Pair::new(&config());
    p.edev.drop_next(1); // the first SYN-ACK
    let h = p.connect(7, 46000);
    assert!(p.run_until(10_000, |p| p.sock(h).state() == tcp::State::Established));
    let st = p.engine.listener_stats(7).unwrap();
    assert_eq!((st.syns, st.completed, st.half_open), (1, 1, 0), "{st:?}");
    assert_eq!(p.engine.stats().open, 1);
}

/// Client side of a server-initiated close: an HTTP request with `Connection: close` makes the
/// engine close first, so its side ends in TIME_WAIT.
fn close_from_the_server(p: &mut Pair, local_port: u16) -> SocketHandle {
    let h = p.connect(80, local_port);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        p.sock(h).state() == tcp::State::CloseWait
    }));
    p.sock(h).close();
    h
}

/// T1/T2: the engine's side of an actively closed connection becomes a compact TIME_WAIT entry
/// (socket back in the pool), a retransmitted FIN is re-ACKed, and the entry expires after the
/// configured delay.
#[test]
fn t2_time_wait_entry_lifecycle() {
    let mut p = Pair::new(&config());
    let h = close_from_the_server(&mut p, 47000);
    // Lose the engine's ACK of the client's FIN (the next frame it sends): the client retransmits
    // its FIN into TIME_WAIT.
    p.edev.drop_next(1);
    let mut entered = None;
    assert!(p.run_until(20_000, |p| {
        if entered.is_none() && p.engine.time_wait_stats().live == 1 {
            entered = Some(p.now);
        }
        p.sock(h).state() == tcp::State::Closed
    }));
    let entered = entered.expect("the engine entered TIME_WAIT");
    let tw = p.engine.time_wait_stats();
    assert_eq!((tw.entered, tw.live), (1, 1), "{tw:?}");
    assert!(tw.reacked >= 1, "the retransmitted FIN was re-ACKed: {tw:?}");
    assert_eq!(p.engine.stats().open, 0, "the socket went back to the pool");
    // Expiry at the default 240 s, not before.
    while p.now - entered < Duration::from_secs(239) {
        p.step_by(Duration::from_secs(1));
    }
    assert_eq!(p.engine.time_wait_stats().live, 1);
    p.step_by(Duration::from_secs(2));
    assert_eq!(p.engine.time_wait_stats().live, 0);
    assert_eq!(p.engine.time_wait_stats().expired, 1);
}

/// T2 on a port with receive checksum offload: a retransmitted FIN whose checksums were left to
/// offload (zero on the wire, as virtio delivers a local sender's segment) is re-ACKed, as smoltcp
/// would have taken it. The engine checks only what the device leaves to software.
#[test]
fn t2_time_wait_re_acks_a_fin_whose_checksums_were_left_to_offload() {
    let mut p = Pair::offloaded(&config());
    let h = close_from_the_server(&mut p, 47050);
    p.edev.drop_next(1); // the engine's ACK of the client's FIN: the client retransmits its FIN
    assert!(p.run_until(20_000, |p| p.sock(h).state() == tcp::State::Closed));
    let tw = p.engine.time_wait_stats();
    assert_eq!((tw.entered, tw.live), (1, 1), "{tw:?}");
    assert!(tw.reacked >= 1, "the retransmitted FIN was re-ACKed: {tw:?}");
}

/// T1 edges: 0 s keeps no entry; 300 s keeps it 300 s.
#[test]
fn t1_time_wait_edges_zero_and_300_seconds() {
    let mut c = config();
    c.time_wait = std::time::Duration::ZERO;
    let mut p = Pair::new(&c);
    let h = close_from_the_server(&mut p, 47100);
    assert!(p.run_until(5000, |p| p.sock(h).state() == tcp::State::Closed));
    assert!(p.run_until(100, |p| p.engine.time_wait_stats().entered == 1));
    assert_eq!(p.engine.time_wait_stats().live, 0);

    let mut c = config();
    c.time_wait = std::time::Duration::from_secs(300);
    let mut p = Pair::new(&c);
    let h = close_from_the_server(&mut p, 47200);
    assert!(p.run_until(5000, |p| p.sock(h).state() == tcp::State::Closed && p.engine.time_wait_stats().live == 1));
    let entered = p.now;
    while p.now - entered < Duration::from_secs(299) {
        p.step_by(Duration::from_secs(1));
    }
    assert_eq!(p.engine.time_wait_stats().live, 1);
    p.step_by(Duration::from_secs(2));
    assert_eq!(p.engine.time_wait_stats().live, 0);
}

/// T2: while the entry lives, a SYN reusing the 4-tuple with an old sequence number is ignored.
#[test]
fn t2_time_wait_holds_the_four_tuple() {
    let mut p = Pair::new(&config());
    let h = close_from_the_server(&mut p, 47300);
    assert!(p.run_until(5000, |p| p.sock(h).state() == tcp::State::Closed && p.engine.time_wait_stats().live == 1));
    p.sockets.remove(h);
    // Same 4-tuple again: smoltcp's random ISN is either past the old connection (reuse, RFC
    // 6191) or not (ignored, the client retransmits). Either way the tuple is never confused.
    let again = p.connect(80, 47300);
    let established = p.run_until(5000, |p| p.sock(again).state() == tcp::State::Established);
    let tw = p.engine.time_wait_stats();
    if established {
        assert_eq!((tw.reused, tw.live), (1, 0), "established only through the RFC 6191 rule: {tw:?}");
    } else {
        assert!(tw.ignored >= 1 && tw.live == 1, "an old-sequence SYN is ignored while the entry lives: {tw:?}");
        assert_eq!(p.sock(again).state(), tcp::State::SynSent);
    }
}

/// 100k connections opened and closed leave no connection, flow, timer or TIME_WAIT entry behind,
/// and the socket pool does not grow past the peak concurrency.
#[test]
fn hundred_thousand_connections_leave_nothing_behind() {
    let mut c = config();
    c.tcp_rx_buffer = 1024;
    c.tcp_tx_buffer = 1024;
    let mut p = Pair::new(&c);
    const TOTAL: u32 = 100_000;
    const PARALLEL: usize = 50;
    let mut started = 0u32;
    let mut finished = 0u32;
    let mut live: Vec<(SocketHandle, bool)> = Vec::new();
    while finished < TOTAL {
        while live.len() < PARALLEL && started < TOTAL {
            let port = 10_000 + (started % 50_000) as u16;
            live.push((p.connect_with(7, port, 1024), false));
            started += 1;
        }
        p.step();
        let mut i = 0;
        while i < live.len() {
            let (h, sent) = live[i];
            let s = p.sock(h);
            if !sent && s.may_send() {
                s.send_slice(b"x").unwrap();
                live[i].1 = true;
            }
            if s.can_recv() {
                let mut b = [0u8; 4];
                s.recv_slice(&mut b).unwrap();
                s.close();
            }
            if matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                p.sockets.remove(h);
                live.swap_remove(i);
                finished += 1;
                continue;
            }
            i += 1;
        }
    }
    p.run_until(5000, |p| p.engine.stats().open == 0);
    let st = p.engine.stats();
    assert_eq!(st.open, 0, "{st:?}");
    assert_eq!(st.established, u64::from(TOTAL));
    assert_eq!(st.closed, u64::from(TOTAL));
    // Bounded by the pool, not by the 100k connections that passed through it.
    assert!(
        p.engine.pending_timers() <= 2 * st.slots,
        "{} timer entries for {} slots",
        p.engine.pending_timers(),
        st.slots
    );
    assert_eq!(p.engine.time_wait_stats().live, 0, "the client closed first: no TIME_WAIT on the engine");
    assert!(st.slots <= PARALLEL + 2 * 2 + 8, "the pool grew to {} slots for {PARALLEL} at a time", st.slots);
    assert_eq!(st.free_slots, st.slots - 2 * 2, "every slot but the armed ones is free");
}

/// Two engines back to back on a virtual clock: a load generator (198.18.0.1 and 7 more source
/// addresses) against an echo server (198.18.0.2).
struct Duo {
    now: Instant,
    server: Engine,
    sdev: MemoryDevice,
    client: Engine,
    cdev: MemoryDevice,
}

impl Duo {
    fn new(client_time_wait: std::time::Duration) -> Duo {
        Duo::with_announce(client_time_wait, true)
    }

    fn with_announce(client_time_wait: std::time::Duration, announce: bool) -> Duo {
        let MemoryLink { a: mut cdev, b: mut sdev } = MemoryLink::new();
        let now = Instant::from_millis(0);
        let server = Engine::new(&config(), &mut sdev, now).unwrap();
        let mut c = EngineConfig::new([0x02, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), 24);
        c.extra_addresses = (10..17).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
        c.tcp_rx_buffer = 4096;
        c.tcp_tx_buffer = 4096;
        c.random_seed = 3;
        c.time_wait = client_time_wait;
        let mut client = Engine::new(&c, &mut cdev, now).unwrap();
        if announce {
            client.announce_to(now, &mut cdev, SERVER);
        }
        Duo { now, server, sdev, client, cdev }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        for _ in 0..8 {
            self.cdev.refill();
            self.client.poll(self.now, &mut self.cdev);
            self.sdev.refill();
            self.server.poll(self.now, &mut self.sdev);
            if self.cdev.pending() == 0 && self.sdev.pending() == 0 {
                break;
            }
        }
    }

    /// Advances the clock by `dt` and polls each engine once (frames cross one hop per tick).
    fn tick(&mut self, dt: Duration) {
        self.now += dt;
        self.cdev.refill();
        self.client.poll(self.now, &mut self.cdev);
        self.sdev.refill();
        self.server.poll(self.now, &mut self.sdev);
    }
}

fn load(size: usize, mode: crate::services::LoadMode) -> (crate::services::LoadSpec, Arc<crate::services::LoadStats>) {
    let stats = Arc::new(crate::services::LoadStats::default());
    (crate::services::LoadSpec { size, mode, stats: stats.clone() }, stats)
}

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

/// Malformed and hostile frames (random bytes, truncations, mutated headers, bad checksums,
/// flag soup, frames for TIME_WAIT tuples) never panic the engine, and it keeps serving a real
/// client afterwards.
#[test]
fn hostile_frames_never_break_the_engine() {
    let mut p = Pair::new(&config());
    // A real exchange first, to capture valid frames as mutation seeds.
    let h = p.connect(7, 48000);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"seed").unwrap();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for _ in 0..20 {
        p.now += Duration::from_millis(1);
        p.cdev.refill();
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
        while let Some(f) = p.edev.peek_owned() {
            seeds.push(f.clone());
            p.edev.refill();
            p.engine.poll(p.now, &mut p.edev);
        }
    }
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..20_000 {
        let mut f = seeds[rng.below(seeds.len())].clone();
        match i % 4 {
            0 => f.truncate(rng.below(f.len() + 1)),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(f.len());
                    f[at] = rng.next_u64() as u8;
                }
            }
            2 => f = (0..rng.below(1600)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                // keep Ethernet/IP intact, scramble TCP flags and ports (checksums now wrong)
                if f.len() > 14 + 20 + 14 {
                    f[14 + 20 + 13] = rng.next_u64() as u8;
                    f[14 + 20 + 2] = rng.next_u64() as u8;
                }
            }
        }
        p.edev.inject(f);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
        p.now += Duration::from_micros(100);
    }
    // Still serving: a fresh connection gets its echo.
    let h = p.connect(7, 48001);
    assert!(p.run_until(2000, |p| p.sock(h).may_send()), "a new client still connects");
    p.sock(h).send_slice(b"after").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(2000, |p| {
        p.recv_all(h, &mut got);
        got == b"after"
    }));
}

/// The frames a gateway would ask about, built by the client's smoltcp and by hand.
#[test]
fn classify_tells_a_gateway_which_frames_are_the_engines() {
    let mut p = Pair::new(&config());
    let client_poll = |p: &mut Pair| {
        p.now += Duration::from_millis(1);
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    };
    // The client's first frame toward the engine is an ARP request for the engine's address.
    let h = p.connect(7, 40300);
    client_poll(&mut p);
    let arp = p.edev.peek_owned().expect("an ARP request");
    assert_eq!(p.engine.classify(&arp), Verdict::Arp);
    // Once resolved, its SYN is for a listener; then the connection's segments are a connection's.
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"x").unwrap();
    client_poll(&mut p);
    let seg = p.edev.peek_owned().expect("a data segment");
    assert_eq!(p.engine.classify(&seg), Verdict::Connection);
    p.step();
    let h2 = p.connect(7, 40301);
    client_poll(&mut p);
    assert_eq!(p.engine.classify(&p.edev.peek_owned().unwrap()), Verdict::Listener);
    p.step();
    let _ = h2;
    // A port with nothing: the engine would answer with an RST.
    let h3 = p.connect(9, 40302);
    client_poll(&mut p);
    assert_eq!(p.engine.classify(&p.edev.peek_owned().unwrap()), Verdict::ClosedPort);
    p.step();
    let _ = h3;
    // ARP about someone else, and IPv4 for another address, are not the engine's.
    let (asker, asked) = (Ipv4Addr::new(198, 18, 0, 9), Ipv4Addr::new(198, 18, 0, 3));
    let buf = neighbor::test_arp_frame([2, 0, 0, 0, 0, 9], asker, asked, None);
    assert_eq!(p.engine.classify(&buf), Verdict::NotOurs);
    let mut ip_other = seg.clone();
    ip_other[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 3]); // destination address
    assert_eq!(p.engine.classify(&ip_other), Verdict::NotOurs);
    let mut icmp = seg.clone();
    icmp[14 + 9] = 1; // protocol ICMP
    assert_eq!(p.engine.classify(&icmp), Verdict::OtherIp);
    assert_eq!(p.engine.classify(&[0u8; 10]), Verdict::NotOurs, "runt");
}

/// A peer that resets its connection during the handshake (a port scanner, a client that gave up)
/// leaves nothing behind: smoltcp returns the socket to LISTEN, the engine frees the slot.
#[test]
fn a_handshake_reset_by_the_peer_frees_its_half_open_slot() {
    let mut p = Pair::new(&hold_config(4, BacklogPolicy::Bsd, OnFull::Refuse));
    let before = p.engine.stats();
    for i in 0..5u16 {
        let h = p.connect(9000, 42000 + i);
        // The SYN reaches the engine and its SYN-ACK is on the way back...
        assert!(p.run_until(100, |p| p.engine.listener_stats(9000).unwrap().half_open == 1 || p.sock(h).may_send()));
        // ...and the client gives up: an RST.
        p.sock(h).abort();
        assert!(p.run_until(200, |p| p.engine.stats().open == before.open), "connection {i} left open");
        p.sockets.remove(h);
    }
    let l = p.engine.listener_stats(9000).unwrap();
    assert_eq!((l.half_open, l.queued), (0, 0), "{l:?}");
    assert_eq!(p.engine.stats().open, 0);
}

// Buffer page reclaim (`reclaim`): an idle connection gives its buffer pages back, and never
// data it holds.

fn reclaim_config() -> EngineConfig {
    let mut c = config();
    c.buffer_idle = Some(std::time::Duration::from_secs(1));
    c
}

/// The slot of the one open connection, and its buffer pages resident now.
fn the_connection(p: &Pair) -> (usize, usize) {
    let id = *p.engine.flows.values().next().expect("a connection") as usize;
    let slot = &p.engine.slots[id];
    assert_ne!(slot.buf, 0, "buffers on normal pages, reclaim on");
    (id, crate::mem::resident_pages(slot.buf, p.engine.buf_stride))
}

/// Sends `data` on `h` and waits for all of it to come back (the echo service).
fn echo(p: &mut Pair, h: SocketHandle, data: &[u8]) -> Vec<u8> {
    let (mut sent, mut got) = (0, Vec::new());
    let ok = p.run_until(10_000, |p| {
        let s = p.sock(h);
        if sent < data.len() && s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        p.recv_all(h, &mut got);
        got.len() >= data.len()
    });
    assert!(ok, "echoed {} of {} bytes", got.len(), data.len());
    got
}

#[test]
fn an_idle_connection_gives_its_buffer_pages_back_and_carries_on() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44000);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(echo(&mut p, h, &data), data);
    let (id, before) = the_connection(&p);
    assert!(before >= 2, "the rings' first pages were written: {before} resident");
    assert_eq!(p.engine.reclaim_stats().holding, 1, "only the connection was ever serviced");
    // Idle for two periods and a bit: the sweep gives the pages back.
    for _ in 0..250 {
        p.step_by(Duration::from_millis(10));
    }
    let (_, after) = the_connection(&p);
    assert_eq!(after, 0, "no buffer page left resident");
    let r = p.engine.reclaim_stats();
    assert!(r.releases >= 1 && r.released_bytes >= p.engine.buf_stride as u64, "{r:?}");
    assert!(!p.engine.slots[id].resident);
    // It carries on: the next bytes land on fresh pages and come back intact.
    let more: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 1) as u8).collect();
    assert_eq!(echo(&mut p, h, &more), more);
    assert!(p.engine.slots[id].resident);
    assert!(the_connection(&p).1 >= 2);
}

#[test]
fn a_connection_in_use_keeps_its_pages() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44001);
    echo(&mut p, h, b"first");
    let (id, _) = the_connection(&p);
    // A request every 300 ms for 5 s, with a 1 s idle period: never idle for a whole pass. The
    // pass takes the whole period even with a handful of slots.
    for i in 0..16 {
        for _ in 0..30 {
            p.step_by(Duration::from_millis(10));
        }
        assert!(p.engine.slots[id].resident, "released while in use, before request {i}");
        assert_eq!(echo(&mut p, h, format!("request {i}").as_bytes()), format!("request {i}").as_bytes());
    }
    // Idle for less than one period: kept. Then for two: given back.
    for _ in 0..90 {
        p.step_by(Duration::from_millis(10));
    }
    assert!(p.engine.slots[id].resident, "released after 0.9 s idle, with a 1 s period");
    for _ in 0..120 {
        p.step_by(Duration::from_millis(10));
    }
    assert!(!p.engine.slots[id].resident, "kept after 2.1 s idle");
}

#[test]
fn unread_data_keeps_its_pages() {
    // `hold` never accepts: what a client sends waits in the receive ring.
    let mut c = hold_config(4, BacklogPolicy::Exact, OnFull::Refuse);
    c.buffer_idle = Some(std::time::Duration::from_secs(1));
    let mut p = Pair::new(&c);
    let h = p.connect(9000, 44002);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(&[0x5a; 1000]).unwrap();
    assert!(p.run_until(100, |p| p.sock(h).send_queue() == 0), "acknowledged");
    for _ in 0..300 {
        p.step_by(Duration::from_millis(10));
    }
    let (id, resident) = the_connection(&p);
    assert!(p.engine.slots[id].resident && resident >= 1, "waiting data kept its page");
    assert_eq!(p.engine.slots[id].socket().recv_queue(), 1000);
}

/// smoltcp keeps a segment that arrives beyond a hole in the free part of its receive ring and says
/// nothing of it. Giving that page back would turn the segment into zeros once the hole is filled.
#[test]
fn out_of_order_data_keeps_its_pages_until_the_hole_is_filled() {
    let mut p = Pair::new(&reclaim_config());
    let h = p.connect(7, 44003);
    echo(&mut p, h, b"warm");
    p.sock(h).set_nagle_enabled(false);
    let first: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8 + 1).collect();
    let second: Vec<u8> = (0..700u32).map(|i| (i % 241) as u8 + 1).collect();
    // Two segments on the wire; the first one is held back.
    p.sock(h).send_slice(&first).unwrap();
    p.now += Duration::from_millis(1);
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    p.sock(h).send_slice(&second).unwrap();
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    assert_eq!(p.edev.pending(), 2, "two data segments on the wire");
    let held = p.edev.take_inbound().unwrap();
    // The engine alone runs for 3 s (the client would retransmit the missing segment).
    for _ in 0..300 {
        p.now += Duration::from_millis(10);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
    }
    let (id, resident) = the_connection(&p);
    assert_eq!(p.engine.slots[id].socket().recv_queue(), 0, "nothing in order to read");
    assert!(p.engine.slots[id].ooo_until.is_some());
    assert!(p.engine.slots[id].resident && resident >= 1, "the page with the out-of-order segment stays");
    // The hole is filled: both segments come back as sent.
    p.edev.inject(held);
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        got.len() >= first.len() + second.len()
    }));
    let sent = [first, second].concat();
    let differ = got.iter().zip(&sent).position(|(a, b)| a != b);
    assert!(got.len() == sent.len() && differ.is_none(), "echo differs from byte {differ:?} on");
    // And then, idle, the pages go.
    for _ in 0..250 {
        p.step_by(Duration::from_millis(10));
    }
    assert_eq!(p.engine.slots[id].ooo_until, None);
    assert_eq!(the_connection(&p).1, 0);
}

#[test]
fn reclaim_off_leaves_buffers_alone_and_its_range_is_checked() {
    let mut c = config();
    c.buffer_idle = None;
    let mut p = Pair::new(&c);
    let h = p.connect(7, 44004);
    echo(&mut p, h, b"x");
    for _ in 0..100 {
        p.step_by(Duration::from_secs(1));
    }
    assert!(p.engine.slots.iter().all(|s| s.buf == 0));
    assert_eq!(p.engine.reclaim_stats(), ReclaimStats::default());
    let mut link = MemoryLink::new();
    for bad in [std::time::Duration::from_millis(9), std::time::Duration::from_secs(86401)] {
        c.buffer_idle = Some(bad);
        assert_eq!(Engine::new(&c, &mut link.b, p.now).err(), Some(EngineError::BadBufferIdle(bad)));
    }
}

/// smoltcp's own timeout ends a connection whose peer is merely quiet, silently; the engine's ends
/// only one that waits for its peer.
#[test]
fn an_idle_connection_outlives_the_tcp_timeout() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 44100);
    echo(&mut p, h, b"hello");
    for _ in 0..200 {
        p.step_by(Duration::from_secs(1)); // tcp_timeout is 60 s
    }
    assert_eq!(p.engine.stats().open, 1, "the engine kept it");
    assert_eq!(p.sock(h).state(), tcp::State::Established);
    assert_eq!(echo(&mut p, h, b"still here"), b"still here");
}

/// An engine with a 20 s TCP timeout whose client, on `local_port`, sent one more request after an
/// echo and vanished: the engine waits for the ACK of that echo, which never comes.
fn vanished_client(local_port: u16) -> Pair {
    let mut c = config();
    c.tcp_timeout = std::time::Duration::from_secs(20);
    let mut p = Pair::new(&c);
    let h = p.connect(7, local_port);
    echo(&mut p, h, b"hello");
    p.sock(h).send_slice(b"are you there").unwrap();
    p.step();
    p
}

/// Polls the engine alone every 10 ms for up to 30 s, calling `each` with the turn first; returns
/// how long until it held no connection, if it came to that.
fn time_to_close(p: &mut Pair, mut each: impl FnMut(&mut Pair, u32)) -> Option<Duration> {
    let start = p.now;
    for i in 0..3000u32 {
        p.now += Duration::from_millis(10);
        each(p, i);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
        if p.engine.stats().open == 0 {
            return Some(p.now - start);
        }
    }
    None
}

#[test]
fn data_unacknowledged_for_the_tcp_timeout_resets_the_connection() {
    let mut p = vanished_client(44101);
    let closed = p.engine.stats().closed;
    let ended = time_to_close(&mut p, |_, _| {}).expect("reset within 30 s");
    assert!(ended >= Duration::from_secs(19), "after the 20 s timeout, not before: {ended}");
    assert_eq!(p.engine.stats().closed, closed + 1);
    // The peer is told: the last frame the engine sent is an RST.
    let mut last = None;
    while let Some(f) = p.cdev.take_inbound() {
        last = Some(f);
    }
    let last = last.expect("frames to the client");
    assert_eq!(last[14 + 20 + 13] & 0x04, 0x04, "an RST");
}

/// A sender that cannot see the connection but knows its 4-tuple keeps sending it segments out of
/// its window, from another MAC, while the engine waits for the vanished peer's ACK: the engine
/// still resets it after `tcp_timeout`.
#[test]
fn a_blind_sender_does_not_keep_a_waiting_connection_alive() {
    use smoltcp::wire::TcpControl;
    let mut p = vanished_client(44102);
    let blind = |seq: u32| {
        let tcp = flow::plain_tcp((44102, 7), TcpControl::Psh, seq, Some(7), 65535, &[0x5a; 8]);
        flow::test_tcp_frame(([0x02, 1, 0, 0, 0, 0x66], CLIENT), ([0x02, 0, 0, 0, 0, 2], SERVER), &tcp)
    };
    let ended = time_to_close(&mut p, |p, i| {
        if i % 100 == 0 {
            p.edev.inject(blind(0x8000_0000u32.wrapping_add(i)));
        }
    })
    .expect("reset within 30 s, blind segments or not");
    assert!(ended >= Duration::from_secs(19), "after the 20 s timeout, not before: {ended}");
}

/// A peer whose receive window is shut keeps answering the engine's window probes: the engine
/// waits (its data cannot leave) but hears the peer, so it does not time the connection out.
#[test]
fn a_peer_that_answers_window_probes_is_not_timed_out() {
    let mut c = config();
    c.tcp_timeout = std::time::Duration::from_secs(20);
    let mut p = Pair::new(&c);
    let h = p.connect_with(7, 44103, 1024);
    echo(&mut p, h, b"hello");
    // The client stops reading: its window closes, then the engine's echo buffer fills.
    let data = vec![0x5a; 64 * 1024];
    let mut sent = 0;
    for _ in 0..2000 {
        if p.sock(h).can_send() {
            sent += p.sock(h).send_slice(&data[sent..]).unwrap();
        }
        p.step_by(Duration::from_millis(50));
    }
    assert!(sent < data.len(), "the engine's echo backed up ({sent} bytes taken)");
    assert_eq!(p.sock(h).recv_queue(), 1024, "the client's window is shut");
    assert_eq!(p.engine.stats().open, 1, "alive after 100 s of window probes");
    let mut got = Vec::new();
    p.recv_all(h, &mut got);
    assert_eq!(p.sock(h).state(), tcp::State::Established);
}

/// The engine does not ask smoltcp when to poll a connection after a segment that carried all
/// it had queued (`Slot::sent_all`); it sets its timer [`super::SMOLTCP_MIN_RTO`] ahead, the
/// soonest smoltcp's retransmission timer can fire. This pins that figure: a lost echo is sent
/// again one second after it left, not before (a longer minimum in smoltcp would trip the debug
/// assertion in `service` first) and not later (a longer engine timer).
#[test]
fn a_lost_response_is_sent_again_after_a_second() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 44104);
    echo(&mut p, h, b"hello");
    p.sock(h).send_slice(b"lost echo").unwrap();
    p.step(); // the client sends; the engine echoes, and the echo is lost
    let lost = sent_frames(&mut p);
    assert_eq!(lost.len(), 1, "one segment: the echo");
    let left = p.now;
    let (at, f) = engine_alone_until_it_sends(&mut p, Duration::from_millis(10), Duration::from_secs(3))
        .expect("sent again within 3 s");
    let after = at - left;
    assert!(after >= Duration::from_secs(1) && after <= Duration::from_millis(1010), "after {after}");
    assert_eq!(&f[f.len() - 9..], b"lost echo", "the same data");
    p.cdev.inject(f);
    p.step();
    let mut got = Vec::new();
    p.recv_all(h, &mut got);
    assert_eq!(got, b"lost echo", "the client takes it");
    assert_eq!(echo(&mut p, h, b"and on"), b"and on", "and the connection carries on");
}

/// Injects `f`, steps, and reads each frame the engine sent with `read` (its Ethernet frame and the
/// IPv4 packet inside).
fn answers<T>(
    p: &mut Pair,
    f: Vec<u8>,
    read: impl Fn(&smoltcp::wire::EthernetFrame<&[u8]>, &smoltcp::wire::Ipv4Packet<&[u8]>) -> T,
) -> Vec<T> {
    p.edev.inject(f);
    p.step();
    sent_frames(p)
        .iter()
        .map(|f| {
            let eth = smoltcp::wire::EthernetFrame::new_checked(&f[..]).unwrap();
            let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
            read(&eth, &ip)
        })
        .collect()
}

/// The engine owns its neighbours (see [`neighbor`]): 2000 clients on its link (more than the
/// 1024 smoltcp's neighbour cache held), each from its own address and MAC, none of them ever
/// ARPing, all complete a handshake and then get their echo, each at its own MAC, and the engine
/// sends no ARP at all. With smoltcp's cache, the echoes to the first ~1000 waited for ARP.
#[test]
fn two_thousand_peers_on_the_link_are_answered_at_their_own_mac() {
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpControl, TcpPacket};
    let mut cfg = config();
    cfg.prefix_len = 16;
    cfg.listeners[0].backlog = 4096;
    cfg.max_backlog = 4096;
    (cfg.tcp_rx_buffer, cfg.tcp_tx_buffer) = (1024, 1024);
    let mut p = Pair::new(&cfg);
    let peer = |i: u32| {
        (Ipv4Addr::new(198, 18, 10 + (i / 250) as u8, 1 + (i % 250) as u8), [2, 1, 0, 0, (i >> 8) as u8, i as u8])
    };
    let server_mac = [0x02, 0, 0, 0, 0, 2];
    let frame = |i: u32, control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]| {
        let tcp = flow::plain_tcp((40000, 7), control, seq, ack, 65535, payload);
        flow::test_tcp_frame((peer(i).1, peer(i).0), (server_mac, SERVER), &tcp)
    };
    // What came back to each peer: (dst MAC right, SYN-ACK's sequence number, echoed bytes).
    let check = |frames: Vec<Vec<u8>>, synacks: &mut HashMap<u32, u32>, echoed: &mut usize| {
        for f in frames {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(eth.ethertype(), smoltcp::wire::EthernetProtocol::Ipv4, "no ARP");
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            let o = ip.dst_addr().octets();
            let i = u32::from(o[2] - 10) * 250 + u32::from(o[3] - 1);
            assert_eq!(eth.dst_addr().0, peer(i).1, "peer {i} answered at its own MAC");
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            if tcp.syn() {
                synacks.insert(i, tcp.seq_number().0 as u32);
            }
            *echoed += tcp.payload().len();
        }
    };
    let (mut synacks, mut echoed) = (HashMap::new(), 0);
    for i in 0..2000 {
        p.edev.inject(frame(i, TcpControl::Syn, 1, None, &[]));
        if i % 16 == 15 {
            p.step();
            check(sent_frames(&mut p), &mut synacks, &mut echoed);
        }
    }
    assert_eq!(synacks.len(), 2000, "every SYN answered");
    for i in 0..2000 {
        p.edev.inject(frame(i, TcpControl::Psh, 2, Some(synacks[&i] + 1), &[0x5a; 64]));
        if i % 16 == 15 {
            p.step();
            check(sent_frames(&mut p), &mut synacks, &mut echoed);
        }
    }
    for _ in 0..5 {
        p.step();
        check(sent_frames(&mut p), &mut synacks, &mut echoed);
    }
    assert_eq!(echoed, 2000 * 64, "every peer got its echo");
    assert_eq!(p.engine.stats().established, 2000);
    assert_eq!(p.engine.stats().arp_requests, 0);
}

/// A connection the engine opens to a neighbour that never answers ARP: the engine asks once a
/// second (no SYN leaves), and the connection ends unreachable at its deadline; one that answers
/// gets the SYN at once, at its MAC.
#[test]
fn a_connection_to_a_silent_neighbour_asks_once_a_second_then_ends_unreachable() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut p = Pair::new(&config());
    let (spec, stats) = load(64, LoadMode::Short);
    let silent = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 7);
    let timeout = Some(std::time::Duration::from_millis(3500));
    p.engine.connect_from(p.now, None, silent, timeout, Session::LoadGen(LoadGen::new(spec))).unwrap();
    let mut arps = 0;
    for _ in 0..4000 {
        p.step();
        for f in sent_frames(&mut p) {
            let a = neighbor::parse_arp(&f).expect("only ARP leaves");
            assert_eq!((a.request, a.target_ip), (true, *silent.ip()));
            arps += 1;
        }
    }
    assert_eq!(arps, 4, "asked at 0, 1, 2 and 3 s");
    assert_eq!((p.engine.stats().arp_requests, p.engine.stats().neighbors), (4, 0));
    assert_eq!((stats.get(&stats.ended), stats.get(&stats.failed)), (1, 1));
    assert_eq!(p.engine.stats().open, 0);

    // The smoltcp client answers ARP: the engine learns it and sends its SYN there.
    let (spec, _) = load(64, LoadMode::Short);
    let client = std::net::SocketAddrV4::new(CLIENT, 7);
    p.engine.connect_from(p.now, None, client, timeout, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10)); // the engine asks
    let asked = sent_frames(&mut p);
    assert_eq!(neighbor::parse_arp(&asked[0]).map(|a| a.target_ip), Some(CLIENT));
    for f in asked {
        p.cdev.inject(f);
    }
    p.step_by(Duration::from_micros(10)); // the client answers; the SYN leaves
    let syn = sent_frames(&mut p).into_iter().find(|f| f[12..14] == [0x08, 0x00]).expect("a SYN");
    assert_eq!(&syn[..6], &[0x02, 0, 0, 0, 0, 1], "at the client's MAC");
    assert_eq!((p.engine.stats().arp_requests, p.engine.stats().neighbors), (5, 1));
}

/// A neighbour that moves and says so with a gratuitous ARP (its own address, asked of everyone)
/// is followed: the engine's next connection to it goes to the new MAC, without asking. An ARP
/// frame about a station the engine does not know adds nothing.
#[test]
fn a_gratuitous_arp_moves_a_known_neighbour() {
    use crate::services::{LoadGen, LoadMode, Session};
    let mut p = Pair::new(&config());
    let h = p.connect(7, 48000); // the smoltcp client ARPs for the engine, which learns it
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::Established));
    assert_eq!(p.engine.stats().neighbors, 1);
    let moved = [0x02, 0, 0, 0, 0, 0x99];
    p.edev.inject(neighbor::test_arp_frame(moved, CLIENT, CLIENT, None));
    p.edev.inject(neighbor::test_arp_frame([0x02, 0, 0, 0, 0, 0x77], Ipv4Addr::new(198, 18, 0, 77), CLIENT, None));
    p.step_by(Duration::from_micros(10));
    assert_eq!(p.engine.stats().neighbors, 1, "the other station was not added");
    sent_frames(&mut p);
    let (spec, _) = load(64, LoadMode::Short);
    let remote = std::net::SocketAddrV4::new(CLIENT, 7);
    p.engine.connect_from(p.now, None, remote, None, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10));
    let out = sent_frames(&mut p);
    assert_eq!(out.len(), 1, "a SYN and no ARP");
    assert_eq!(&out[0][..6], &moved, "at the new MAC");
    assert_eq!(p.engine.stats().arp_requests, 0);
}

/// With several cores on a port every engine sees every ARP frame. One that was told not to answer
/// ([`Engine::set_arp_replies`]) stays silent on a request for its address, and still learns the
/// asker; the same request to an engine that answers gets one reply, at the asker's MAC.
#[test]
fn an_engine_told_not_to_answer_arp_learns_the_asker_and_stays_silent() {
    let asker = [0x02, 0, 0, 0, 0, 0x42];
    let request = || neighbor::test_arp_frame(asker, CLIENT, SERVER, None);
    let mut p = Pair::new(&config());
    p.engine.set_arp_replies(false);
    p.edev.inject(request());
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no reply");
    assert_eq!((p.engine.stats().arp_replies, p.engine.stats().neighbors), (0, 1));

    p.engine.set_arp_replies(true);
    p.edev.inject(request());
    p.step_by(Duration::from_micros(10));
    let out = sent_frames(&mut p);
    assert_eq!(out.len(), 1, "one reply");
    let a = neighbor::parse_arp(&out[0]).expect("an ARP reply");
    assert_eq!((a.request, a.sender_ip, a.target_ip), (false, SERVER, CLIENT));
    assert_eq!(&out[0][..6], &asker, "at the asker's MAC");
    assert_eq!(p.engine.stats().arp_replies, 1);
}

/// Every ARP frame the engine sends counts once it has left. With no room to send, a request for
/// the engine's address gets no reply and counts none (the asker is still learned), and neither
/// the ARP request for a connection's next hop nor one of [`Engine::announce_to`] counts. With room
/// again, the connection's next try asks, and each frame that leaves counts once.
#[test]
fn arp_frames_count_when_they_leave() {
    use crate::services::{LoadGen, LoadMode, Session};
    let asker = [0x02, 0, 0, 0, 0, 0x42];
    let request = neighbor::test_arp_frame(asker, CLIENT, SERVER, None);
    let silent = std::net::SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 7);
    let mut p = Pair::new(&config());
    p.edev.set_full(true);
    p.edev.inject(request.clone());
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no room for the reply");
    let (spec, _) = load(64, LoadMode::Short);
    p.engine.connect_from(p.now, None, silent, None, Session::LoadGen(LoadGen::new(spec))).unwrap();
    p.step_by(Duration::from_micros(10));
    assert!(sent_frames(&mut p).is_empty(), "no room for the next hop's ARP request");
    p.engine.announce_to(p.now, &mut p.edev, *silent.ip());
    assert!(sent_frames(&mut p).is_empty(), "no room for the announcement");
    let s = p.engine.stats();
    assert_eq!((s.arp_replies, s.arp_requests, s.neighbors), (0, 0, 1), "the asker learned, nothing counted");

    p.edev.set_full(false);
    p.step_by(Duration::from_millis(1002)); // the connection's next try, a second later
    let asked: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(asked.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(true, *silent.ip())]);
    assert_eq!(p.engine.stats().arp_requests, 1);
    p.engine.announce_to(p.now, &mut p.edev, *silent.ip());
    let announced: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(announced.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(true, *silent.ip())]);
    p.edev.inject(request);
    p.step_by(Duration::from_micros(10));
    let replied: Vec<_> = sent_frames(&mut p).iter().filter_map(|f| neighbor::parse_arp(f)).collect();
    assert_eq!(replied.iter().map(|a| (a.request, a.target_ip)).collect::<Vec<_>>(), [(false, CLIENT)]);
    let s = p.engine.stats();
    assert_eq!((s.arp_replies, s.arp_requests), (1, 2));
}

/// A sender that has a connection's 4-tuple but not its sequence numbers changes nothing. Its
/// segments (data, RST, FIN, SYN) from another MAC, outside the receive window, do not move the
/// connection's traffic there, do not mark it reset, do not set the FIN end TIME_WAIT would use,
/// and do not change the peer's initial sequence number; smoltcp's challenge ACKs to them go to
/// the peer, not to that sender (they carry the numbers it lacks). The peer's own segment from a
/// new MAC, in the window, moves the connection's traffic there.
#[test]
fn a_blind_sender_with_the_four_tuple_moves_nothing() {
    use smoltcp::wire::{TcpControl, TcpPacket};
    let mut p = Pair::new(&config());
    let peer_ip = Ipv4Addr::new(198, 18, 0, 50);
    let (peer, other) = ([0x02, 1, 0, 0, 0, 1], [0x02, 1, 0, 0, 0, 0x66]);
    let server_mac = [0x02, 0, 0, 0, 0, 2];
    let frame = |mac: [u8; 6], control: TcpControl, seq: u32, ack: Option<u32>, payload: &[u8]| {
        let tcp = flow::plain_tcp((40000, 7), control, seq, ack, 65535, payload);
        flow::test_tcp_frame((mac, peer_ip), (server_mac, SERVER), &tcp)
    };
    // (destination MAC, sequence number, payload length) of each segment the engine sent.
    let sent = |p: &mut Pair, f: Vec<u8>| {
        answers(p, f, |eth, ip| {
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            (eth.dst_addr().0, tcp.seq_number().0 as u32, tcp.payload().len())
        })
    };
    let synack = sent(&mut p, frame(peer, TcpControl::Syn, 1000, None, &[]));
    assert_eq!(synack.len(), 1);
    let iss = synack[0].1;
    assert!(sent(&mut p, frame(peer, TcpControl::None, 1001, Some(iss + 1), &[])).is_empty());

    let far = 1001 + 1_000_000;
    for control in [TcpControl::Psh, TcpControl::Rst, TcpControl::Fin, TcpControl::Syn] {
        let blind = sent(&mut p, frame(other, control, far, Some(iss + 1), &[0x5a; 8]));
        assert!(blind.iter().all(|s| s.0 == peer), "{control:?}: answered at the peer's MAC: {blind:?}");
    }
    let slot = p.engine.slots.iter().find(|s| s.tuple.is_some()).expect("the connection");
    assert_eq!((slot.rst_seen, slot.peer_fin_end, slot.irs), (false, None, 1000));
    assert_eq!(p.engine.stats().open, 1);
    let echo = sent(&mut p, frame(peer, TcpControl::Psh, 1001, Some(iss + 1), &[0x5a; 64]));
    assert_eq!(echo, [(peer, iss + 1, 64)], "the connection stayed with its peer");

    let moved = sent(&mut p, frame(other, TcpControl::Psh, 1065, Some(iss + 65), &[0x5a; 64]));
    assert_eq!(moved, [(other, iss + 65, 64)], "the peer's in-window segment from its new MAC moved it");
}

/// smoltcp holds only the port's address and takes any destination when the engine has extra
/// ones; the engine decides what is addressed to it. A ping and a SYN to an extra address are
/// answered from that address; a ping and a SYN to an address in the prefix that is not the
/// engine's get nothing.
#[test]
fn extra_addresses_are_answered_and_other_addresses_are_not() {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetFrame, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    };
    let extra = Ipv4Addr::new(198, 18, 0, 3);
    let stranger = Ipv4Addr::new(198, 18, 0, 99);
    let mut cfg = config();
    cfg.extra_addresses = vec![extra];
    let mut p = Pair::new(&cfg);
    let (peer_mac, peer_ip, server_mac) = ([0x02, 1, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 50), [0x02, 0, 0, 0, 0, 2]);
    let ping = |dst: Ipv4Addr| {
        let icmp = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data: b"switchyard" };
        let ip = Ipv4Repr {
            src_addr: peer_ip,
            dst_addr: dst,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: 64,
        };
        let mut f = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_src_addr(smoltcp::wire::EthernetAddress(peer_mac));
        eth.set_dst_addr(smoltcp::wire::EthernetAddress(server_mac));
        eth.set_ethertype(smoltcp::wire::EthernetProtocol::Ipv4);
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &caps);
        icmp.emit(&mut Icmpv4Packet::new_unchecked(packet.payload_mut()), &caps);
        f
    };
    let syn = |dst: Ipv4Addr| {
        let tcp = flow::plain_tcp((40000, 7), TcpControl::Syn, 1000, None, 65535, &[]);
        flow::test_tcp_frame((peer_mac, peer_ip), (server_mac, dst), &tcp)
    };
    // (source address, protocol, ICMP echo reply or TCP SYN-ACK) of each frame the engine sent.
    let sent = |p: &mut Pair, f: Vec<u8>| {
        answers(p, f, |_, ip| {
            let answer = match ip.next_header() {
                IpProtocol::Icmp => {
                    Icmpv4Packet::new_checked(ip.payload()).unwrap().msg_type()
                        == smoltcp::wire::Icmpv4Message::EchoReply
                }
                _ => TcpPacket::new_checked(ip.payload()).is_ok_and(|t| t.syn() && t.ack()),
            };
            (ip.src_addr(), ip.next_header(), answer)
        })
    };
    assert_eq!(sent(&mut p, ping(SERVER)), [(SERVER, IpProtocol::Icmp, true)]);
    assert_eq!(sent(&mut p, ping(extra)), [(extra, IpProtocol::Icmp, true)]);
    assert_eq!(sent(&mut p, syn(extra)), [(extra, IpProtocol::Tcp, true)]);
    assert!(sent(&mut p, ping(stranger)).is_empty(), "a ping to another address is not answered");
    assert!(sent(&mut p, syn(stranger)).is_empty(), "a SYN to another address is not answered");
}

/// What the engine's echo sends back at once for `len` bytes a client sends in one flight (the
/// client without congestion control, so all of it arrives together): the server's first flight,
/// as the client finds it in its next poll, before it acknowledges any of it. Then the rest is
/// echoed and the client closes.
fn first_echo_flight(p: &mut Pair, local_port: u16, len: usize) -> usize {
    let h = p.connect(7, local_port);
    p.sock(h).set_congestion_control(tcp::CongestionControl::None);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    let data = vec![0x5a; len];
    assert_eq!(p.sock(h).send_slice(&data).unwrap(), len);
    p.step(); // the client sends it all; the engine takes it in and echoes what its window allows
    p.now += Duration::from_millis(1);
    p.cdev.refill();
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    let first = p.sock(h).recv_queue();
    let mut got = Vec::new();
    assert!(p.run_until(10_000, |p| {
        p.recv_all(h, &mut got);
        got.len() == len
    }));
    p.sock(h).close();
    assert!(p.run_until(10_000, |p| p.engine.stats().open == 0), "the connection on {local_port} ended");
    p.sockets.remove(h);
    first
}

#[test]
fn a_pooled_socket_starts_each_connection_with_a_fresh_congestion_window() {
    // smoltcp's reset (listen and connect on a closed socket) keeps the congestion controller's
    // state; the engine reuses its sockets, so each connection must get a fresh controller or it
    // starts with the window (or the loss history) of the socket's last connection.
    let mut p = Pair::new(&config());
    let fresh = first_echo_flight(&mut p, 45000, 12 * 1024);
    assert!(fresh <= 4096, "a first connection starts in slow start: {fresh} bytes at once");
    // Grow every pooled socket's window with a long echo each.
    for i in 0..2 * ARMED as u16 + 2 {
        let h = p.connect(7, 45100 + i);
        let data = vec![0xa5; 256 * 1024];
        let (mut sent, mut got) = (0, Vec::new());
        assert!(p.run_until(100_000, |p| {
            let s = p.sock(h);
            if s.can_send() && sent < data.len() {
                sent += s.send_slice(&data[sent..]).unwrap();
            }
            p.recv_all(h, &mut got);
            got.len() == data.len()
        }));
        p.sock(h).close();
        assert!(p.run_until(10_000, |p| p.engine.stats().open == 0));
        p.sockets.remove(h);
    }
    for i in 0..2 * ARMED as u16 + 2 {
        let again = first_echo_flight(&mut p, 45200 + i, 12 * 1024);
        assert_eq!(again, fresh, "connection {i} on a reused socket sent {again} bytes at once, a fresh one {fresh}");
    }
}

/// A client that stops reading and goes on sending (pipelined requests whose answers it does not
/// read yet) closes its window while the engine has nothing in flight; the next echo waits behind
/// the closed window. smoltcp then sends a zero-window probe at once (its probe timer starts from
/// time zero when data is queued on an idle connection) and probes again twice its retransmission
/// timeout later: the engine's timer must not be set past smoltcp's next probe, nor the connection
/// stall once the client reads again.
#[test]
fn a_zero_window_probe_keeps_the_engines_timer_in_step_with_smoltcp() {
    let mut p = Pair::new(&config());
    let h = p.connect_with(7, 44200, 1024);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    // Past smoltcp's first retransmission timeout, so that a probe timer from time zero is due.
    p.step_by(Duration::from_secs(2));
    // The client sends its receive buffer's worth and reads nothing: the echo fills it.
    p.sock(h).send_slice(&[b'a'; 1024]).unwrap();
    assert!(p.run_until(200, |p| p.sock(h).recv_queue() == 1024), "the echo fills the client's buffer");
    for _ in 0..20 {
        p.step(); // the engine hears the closed window, with everything acknowledged
    }
    // One more byte: its echo waits behind the closed window.
    p.sock(h).send_slice(b"z").unwrap();
    for _ in 0..3000 {
        p.step();
    }
    let mut got = Vec::new();
    assert!(p.run_until(5000, |p| {
        p.recv_all(h, &mut got);
        got.len() == 1025
    }));
    assert_eq!(got[1024], b'z', "the last byte came once the client read");
}
