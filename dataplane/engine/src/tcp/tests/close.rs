//! Connection termination, RFC 9293 §3.6 and the state changes of §3.10.7.4's eighth step and of
//! the ACK processing of FIN-WAIT-1, CLOSING and LAST-ACK; RFC 9293 §3.10.5 (ABORT).

use super::*;
use State::*;

/// `first` sends `bytes` and closes; the other reads it all and closes once it has the FIN.
/// The rules in `lose` pick segments to drop. Returns the pair once both are closed.
fn close_in_order(first: usize, bytes: u64, lose: impl FnOnce(&mut Pair)) -> Pair {
    let second = 1 - first;
    let mut p = Pair::settled(Setup::default());
    lose(&mut p);
    p.app[first] = App { total: bytes, close_at_end: true, reads: true, ..App::default() };
    p.app[second].reads = true;
    p.service();
    assert_eq!(p.tcb[first].state, FinWait1, "close() with data queued: FIN-WAIT-1 at once");
    let got_fin = p.run_until(Duration::from_secs(10), |p| p.tcb[second].peer_fin());
    assert!(got_fin, "no FIN arrived:\n{}", dump(&p.log));
    assert_eq!(p.tcb[second].state, CloseWait);
    assert_eq!(p.app[second].got, bytes, "every byte before the FIN");
    p.tcb[second].close();
    p.service();
    assert!(p.run_until(Duration::from_secs(10), |p| p.closed_cleanly()), "not closed:\n{}", dump(&p.log));
    p
}

#[test]
fn rfc9293_3_6_active_close_fin_wait_1_fin_wait_2_time_wait_and_passive_close_wait_last_ack() {
    for first in [A, B] {
        let p = close_in_order(first, 30_000, |_| {});
        assert_eq!(p.states[first], [Established, FinWait1, FinWait2, TimeWait], "active closer {first}");
        assert_eq!(p.states[1 - first], [Established, CloseWait, LastAck, Closed], "passive closer {first}");
        assert_eq!(p.tcb[A].stats.retransmits + p.tcb[B].stats.retransmits, 0);
        // The FINs sit right after the data: the closer's at ISS + 1 + bytes.
        let fin = p.log.iter().find(|r| r.from == first && r.has(FIN)).expect("a FIN");
        assert_eq!(fin.end(), ISS[first].wrapping_add(30_002), "\n{}", dump(&p.log));
    }
}

#[test]
fn rfc9293_3_6_both_close_orders_survive_losing_each_fin_and_the_last_ack() {
    for first in [A, B] {
        let second = 1 - first;
        let p = close_in_order(first, 5_000, |p| {
            p.drop_once(first, |r| r.has(FIN));
            p.drop_once(second, |r| r.has(FIN));
            // The closer's ACK of the second FIN: the FIN is sent again and TIME-WAIT answers it.
            p.drop_once(first, |r| r.len == 0 && !r.has(FIN) && r.ack == ISS[1 - r.from].wrapping_add(2));
        });
        assert_eq!(p.states[first], [Established, FinWait1, FinWait2, TimeWait], "closer {first}\n{}", dump(&p.log));
        assert_eq!(p.states[second], [Established, CloseWait, LastAck, Closed], "closer {first}");
        let fins = |side: usize| p.log.iter().filter(|r| r.from == side && r.has(FIN)).count();
        assert!(fins(first) >= 2 && fins(second) >= 3, "each FIN sent again:\n{}", dump(&p.log));
        let last_fin = p.log.iter().rev().find(|r| r.from == second && r.has(FIN)).expect("a FIN");
        let answer = p.log.iter().find(|r| r.from == first && r.at >= last_fin.arrived.expect("it arrived"));
        assert!(answer.is_some_and(|r| r.ack == last_fin.end()), "TIME-WAIT acknowledges the FIN again");
    }
}

#[test]
fn rfc9293_3_6_simultaneous_close_goes_through_closing_to_time_wait() {
    let mut p = Pair::settled(Setup::default());
    for side in [A, B] {
        p.app[side] = App { total: 3_000, close_at_end: true, reads: true, ..App::default() };
    }
    p.service();
    assert!(p.run_until(Duration::from_secs(5), |p| p.closed_cleanly()), "\n{}", dump(&p.log));
    for side in [A, B] {
        assert_eq!(p.states[side], [Established, FinWait1, Closing, TimeWait], "side {side}\n{}", dump(&p.log));
        assert_eq!(p.app[side].got, 3_000);
    }
}

#[test]
fn rfc9293_3_6_simultaneous_close_with_a_lost_fin_still_ends_in_time_wait() {
    for lose in [A, B] {
        let mut p = Pair::settled(Setup::default());
        p.drop_once(lose, |r| r.has(FIN));
        for side in [A, B] {
            p.app[side] = App { total: 3_000, close_at_end: true, reads: true, ..App::default() };
        }
        p.service();
        assert!(p.run_until(Duration::from_secs(5), |p| p.closed_cleanly()), "\n{}", dump(&p.log));
        // The side whose FIN was lost takes the peer's FIN in FIN-WAIT-1 (CLOSING); the peer had
        // its FIN acknowledged first (FIN-WAIT-2).
        assert_eq!(p.states[lose], [Established, FinWait1, Closing, TimeWait], "lost {lose}");
        assert_eq!(p.states[1 - lose], [Established, FinWait1, FinWait2, TimeWait], "lost {lose}");
    }
}

#[test]
fn rfc9293_3_6_a_half_closed_connection_carries_the_other_direction() {
    let mut p = Pair::settled(Setup::default());
    p.tcb[A].close();
    p.app[A].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].state == FinWait2));
    assert_eq!(p.tcb[A].send(b"more"), 0, "nothing may be queued after close");
    p.drop_once(B, |r| r.len > 0);
    p.app[B] = App { total: 300_000, close_at_end: true, ..App::default() };
    p.service();
    assert!(p.run_until(Duration::from_secs(10), |p| p.closed_cleanly()), "\n{}", dump(&p.log));
    assert_eq!((p.app[A].got, p.app[A].bad), (300_000, None));
    assert_eq!(p.states[A], [Established, FinWait1, FinWait2, TimeWait]);
}

#[test]
fn rfc9293_3_10_5_abort_sends_a_reset_the_peer_takes() {
    let mut p = Pair::settled(Setup::default());
    p.app[A].total = 50_000;
    p.app[B].reads = true;
    p.service();
    // Everything acknowledged, so the RST's sequence number is exactly the peer's RCV.NXT.
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[B].got == 50_000
        && p.tcb[A].snd_una() == ISS[A].wrapping_add(50_001)));
    let mark = p.log.len();
    p.tcb[A].abort();
    p.service();
    assert_eq!(p.tcb[A].state, Closed);
    let rst: Vec<&Rec> = p.sent_by(A, mark).collect();
    assert_eq!(rst.len(), 1, "one RST and nothing else:\n{}", dump(&p.log[mark..]));
    assert!(rst[0].has(RST));
    p.run_for(50 * MS);
    assert!(p.tcb[B].reset && p.tcb[B].state == Closed, "{:?}", p.tcb[B].state);
    assert_eq!(p.sent_by(A, mark + 1).count(), 0, "a closed block sends nothing more");
}

#[test]
fn rfc9293_3_10_7_4_a_handshake_that_brought_data_and_a_fin_starts_in_close_wait() {
    let hs = Handshake {
        iss: 1000,
        irs: 5000,
        mss: 1460,
        wscale: None,
        sack: false,
        ts_recent: None,
        window: 65535,
        wl1: 5001,
        wl2: 1001,
        rtt: None,
        received: 300,
        fin_received: true,
        ack_now: false,
    };
    let mut rx = ring(4096);
    rx.push(&[7; 300]);
    let mut t = Tcb::new(&hs, TcpConfig::default(), ring(4096), rx, at(Duration::ZERO));
    assert_eq!((t.state, t.peer_fin(), t.rcv_nxt()), (CloseWait, true, 5000 + 1 + 300 + 1));
    let mut acks = Vec::new();
    t.output(at(Duration::ZERO), 0, &mut |o: &Out| {
        acks.push((o.seq, o.ack, o.flags));
        true
    });
    assert_eq!(acks, [(1001, 5302, ACK)], "the FIN is acknowledged at once");
    t.close();
    assert_eq!(t.state, LastAck);
}
