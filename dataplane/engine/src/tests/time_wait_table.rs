//! TIME_WAIT (SEMANTICS T1, T2), and what 100k connections leave behind.

use super::*;

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
    // Bounded by the pool, not by the 100k connections that passed through it: a slot files a new
    // entry only for a deadline earlier than the one it has filed, and a connection of the
    // engine's own TCP has at most a few (delayed ACK, probe, retransmission), each fired or
    // passed over within its RTO.
    assert!(
        p.engine.pending_timers() <= 4 * st.slots,
        "{} timer entries for {} slots",
        p.engine.pending_timers(),
        st.slots
    );
    assert_eq!(p.engine.time_wait_stats().live, 0, "the client closed first: no TIME_WAIT on the engine");
    assert!(st.slots <= PARALLEL + 2 * 2 + 8, "the pool grew to {} slots for {PARALLEL} at a time", st.slots);
    assert_eq!(st.free_slots, st.slots - 2 * 2, "every slot but the armed ones is free");
}

/// A TIME_WAIT flood (issue 27): short connections the server closes first each leave an entry,
/// up to `max_time_wait`; past it a closing connection skips TIME_WAIT, counted, and the table
/// stays at its bound however many more close. The connections themselves still end cleanly.
#[test]
fn t1_a_time_wait_flood_holds_the_table_at_its_cap() {
    let mut cfg = config();
    cfg.max_time_wait = 64;
    let mut p = Pair::new(&cfg);
    for i in 0..200u16 {
        let h = close_from_the_server(&mut p, 30000 + i);
        assert!(p.run_until(1000, |p| p.sock(h).state() == tcp::State::Closed), "connection {i} ended");
        p.sockets.remove(h);
    }
    assert!(p.run_until(1000, |p| p.engine.stats().open == 0));
    let tw = p.engine.time_wait_stats();
    assert_eq!((tw.entered, tw.live, tw.overflow), (200, 64, 136), "{tw:?}");
    assert!(p.engine.stats().slots <= 8, "the pool stayed small: {:?}", p.engine.stats());
}
