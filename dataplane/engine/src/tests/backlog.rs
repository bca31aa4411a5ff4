//! Listeners and their backlog (SEMANTICS B1-B5, L4), the bounds on connections and half-open ones, and hostile frames.

use super::*;

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
    cfg.syn_cookies = crate::SynCookies::Never; // with cookies, past the budget SYNs get one
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
