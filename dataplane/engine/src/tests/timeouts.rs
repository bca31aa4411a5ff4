//! The TCP timeout, retransmission, and what keeps a waiting connection alive.

use super::*;

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

/// RFC 6298 §2.4 with the engine's 200 ms floor (smoltcp's was one second), and RFC 8985 §7.2's
/// probe timeout for a lone segment (2 SRTT plus the peer's worst delayed ACK, never past the
/// RTO): on a sub-millisecond round trip a lost echo is sent again 200 ms after it left, not
/// later than 250 ms (issue 26's target; Linux's first retransmission came after 204 ms).
#[test]
fn a_lost_response_is_sent_again_after_the_rto_floor() {
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
    assert!(after >= Duration::from_millis(200) && after <= Duration::from_millis(250), "after {after}");
    assert_eq!(&f[f.len() - 9..], b"lost echo", "the same data");
    // The engine's counters show it while the connection is still open.
    let tcp = p.engine.stats().tcp;
    assert!(tcp.retransmits >= 1 && tcp.tlp + tcp.timeouts >= 1, "{tcp:?}");
    p.cdev.inject(f);
    p.step();
    let mut got = Vec::new();
    p.recv_all(h, &mut got);
    assert_eq!(got, b"lost echo", "the client takes it");
    assert_eq!(echo(&mut p, h, b"and on"), b"and on", "and the connection carries on");
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

fn keepalive_config() -> EngineConfig {
    let mut c = config();
    c.tcp.keepalive = Some(std::time::Duration::from_secs(10));
    c.tcp.keepalive_interval = std::time::Duration::from_secs(1);
    c.tcp.keepalive_probes = 3;
    c
}

/// RFC 1122 §4.2.3.6 (keepalive, off by default: see `an_idle_connection_outlives_the_tcp_timeout`):
/// an idle connection whose peer vanished is probed after the idle time, then every interval, and
/// reset once the probes go unanswered; the engine counts it.
#[test]
fn keepalive_resets_an_idle_connection_whose_peer_vanished() {
    let mut p = Pair::new(&keepalive_config());
    let h = p.connect(7, 44110);
    echo(&mut p, h, b"hello");
    for _ in 0..100 {
        p.step(); // the client acknowledges the echo: nothing is outstanding
    }
    let _ = h; // the client vanishes: from now on only the engine runs
    let took = time_to_close(&mut p, |p, _| drop(sent_frames(p))).expect("closed within 30 s");
    // 10 s idle (from the last segment heard, before the vanishing), three probes a second apart,
    // the reset at the fourth turn.
    assert!(took >= Duration::from_millis(12_800) && took <= Duration::from_millis(13_100), "closed after {took}");
    let t = p.engine.stats().tcp;
    assert_eq!((t.keepalive_probes, t.keepalive_timeouts), (3, 1));
}

/// A peer that answers the probes keeps its idle connection, however long.
#[test]
fn keepalive_keeps_a_connection_whose_peer_answers() {
    let mut p = Pair::new(&keepalive_config());
    let h = p.connect(7, 44111);
    echo(&mut p, h, b"hello");
    for _ in 0..60 {
        p.step_by(Duration::from_secs(1));
    }
    assert_eq!(p.engine.stats().open, 1, "still open after a minute of probes");
    assert!(p.engine.stats().tcp.keepalive_probes >= 4, "counted while the connection is open");
    assert_eq!(echo(&mut p, h, b"still here"), b"still here");
}
