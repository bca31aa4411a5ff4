//! RFC 5961: blind in-window attacks. An RST must hit RCV.NXT exactly (§3.2), a SYN never resets
//! (§4.2), an ACK outside what was sent is answered and dropped (§5.2).

use super::*;

/// A settled pair after a small exchange, so both sides have data acknowledged.
fn warm() -> Pair {
    let mut p = Pair::settled(Setup::default());
    p.app[A] = App { total: 20_000, reads: true, ..App::default() };
    p.app[B] = App { total: 20_000, reads: true, ..App::default() };
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[A].got == 20_000 && p.app[B].got == 20_000));
    p.run_for(100 * MS);
    p
}

/// Longer than RFC 5961 §7's throttle between ACKs to segments that did not fit.
const THROTTLE: Duration = Duration::from_millis(600);

/// The one segment `side` sent in reply to an injected one: a bare ACK of its numbers as they
/// stand, and nothing else.
fn challenge_ack(p: &Pair, side: usize, mark: usize) {
    let sent: Vec<&Rec> = p.sent_by(side, mark).collect();
    assert_eq!(sent.len(), 1, "one ACK:\n{}", dump(&p.log[mark..]));
    let r = sent[0];
    assert_eq!((r.flags, r.len), (ACK, 0));
    assert_eq!((r.seq, r.ack), (ISS[side].wrapping_add(20_001), p.tcb[side].rcv_nxt()));
}

#[test]
fn rfc5961_3_2_an_in_window_rst_off_rcv_nxt_draws_a_challenge_ack_not_a_reset() {
    let mut p = warm();
    for off in [1u32, 1000, 30_000] {
        p.run_for(THROTTLE); // each its own challenge ACK (§7 allows one per half second)
        let mark = p.log.len();
        let mut rst = p.forge(A, RST | ACK);
        rst.seq = rst.seq.wrapping_add(off);
        let before = p.tcb[A].stats.challenge_acks;
        p.inject(A, &rst);
        assert!(!p.tcb[A].reset && p.tcb[A].state == State::Established, "offset {off}");
        assert_eq!(p.tcb[A].stats.challenge_acks, before + 1);
        challenge_ack(&p, A, mark);
    }
    // The connection carries on.
    p.app[B].total += 10_000;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[A].got == 30_000));
}

#[test]
fn rfc5961_3_2_an_rst_exactly_at_rcv_nxt_resets() {
    let mut p = warm();
    let mark = p.log.len();
    let rst = p.forge(A, RST);
    p.inject(A, &rst);
    assert!(p.tcb[A].reset && p.tcb[A].state == State::Closed);
    assert_eq!(p.sent_by(A, mark).count(), 0, "no answer to an RST");
}

#[test]
fn rfc5961_3_2_an_rst_outside_the_window_is_dropped_silently() {
    let mut p = warm();
    for seq in [p.tcb[A].rcv_nxt().wrapping_sub(1), p.tcb[A].rcv_nxt().wrapping_add(70_000)] {
        let mark = p.log.len();
        let rst = Out { seq, ..p.forge(A, RST) };
        p.inject(A, &rst);
        assert!(!p.tcb[A].reset && p.tcb[A].state == State::Established);
        assert_eq!(p.sent_by(A, mark).count(), 0, "silently:\n{}", dump(&p.log[mark..]));
    }
}

#[test]
fn rfc5961_4_2_any_syn_draws_a_challenge_ack_whatever_its_sequence_number() {
    let mut p = warm();
    let nxt = p.tcb[A].rcv_nxt();
    for seq in [nxt, nxt.wrapping_add(500), nxt.wrapping_sub(1), nxt.wrapping_add(1 << 30)] {
        let mark = p.log.len();
        for flags in [SYN, SYN | ACK] {
            p.run_for(THROTTLE);
            let syn = Out { seq, data: [b"x", b""], ..p.forge(A, flags) };
            p.inject(A, &syn);
        }
        assert!(!p.tcb[A].reset && p.tcb[A].state == State::Established, "seq {seq}");
        assert_eq!(p.tcb[A].rcv_nxt(), nxt, "a SYN's data is not taken");
        let acks: Vec<&Rec> = p.sent_by(A, mark).collect();
        assert_eq!(acks.len(), 2, "seq +{}: an ACK each\n{}", seq.wrapping_sub(nxt), dump(&p.log[mark..]));
        assert!(acks.iter().all(|r| r.flags == ACK && r.ack == nxt));
    }
}

#[test]
fn rfc5961_5_2_an_ack_beyond_snd_nxt_or_too_old_is_answered_and_its_data_dropped() {
    let mut p = warm();
    let nxt = p.tcb[A].rcv_nxt();
    let snd_nxt = ISS[A].wrapping_add(20_001);
    // SND.UNA - MAX.SND.WND is the oldest acceptable: the window was 64 KiB at most.
    for ack in [snd_nxt.wrapping_add(1), snd_nxt.wrapping_add(100_000), snd_nxt.wrapping_sub(70_000)] {
        p.run_for(THROTTLE);
        let mark = p.log.len();
        let seg = Out { ack, data: [b"hello", b""], ..p.forge(A, ACK | seg::PSH) };
        p.inject(A, &seg);
        assert_eq!(p.tcb[A].rcv_nxt(), nxt, "ack {ack}: the data was taken");
        assert_eq!(p.tcb[A].snd_una(), snd_nxt);
        challenge_ack(&p, A, mark);
    }
    // At the edges the ACK is acceptable and the data taken.
    let mark = p.log.len();
    let seg = Out { ack: snd_nxt, data: [b"hello", b""], ..p.forge(A, ACK | seg::PSH) };
    p.inject(A, &seg);
    assert_eq!(p.tcb[A].rcv_nxt(), nxt.wrapping_add(5));
    p.run_for(100 * MS);
    assert!(p.sent_by(A, mark).any(|r| r.ack == nxt.wrapping_add(5)));
}

#[test]
fn rfc5961_7_acks_to_forged_segments_are_throttled_but_data_and_probes_are_answered() {
    let mut p = warm();
    p.run_for(THROTTLE);
    let nxt = p.tcb[A].rcv_nxt();
    let mark = p.log.len();
    let before = p.tcb[A].stats;
    // A blind flood within 100 ms: RSTs in the window off RCV.NXT, SYNs, bare ACKs past it.
    for i in 0..20u32 {
        p.inject(A, &Out { seq: nxt.wrapping_add(1 + i * 100), ..p.forge(A, RST) });
        p.inject(A, &Out { seq: nxt.wrapping_add(i), ..p.forge(A, SYN) });
        p.inject(A, &Out { seq: nxt.wrapping_add(1 << 30), ..p.forge(A, ACK) });
        p.run_for(5 * MS);
    }
    let s = p.tcb[A].stats;
    assert_eq!(p.sent_by(A, mark).count(), 1, "one ACK for the lot:\n{}", dump(&p.log[mark..]));
    assert_eq!(s.challenge_acks - before.challenge_acks, 40);
    assert_eq!(s.acks_throttled - before.acks_throttled, 59);
    assert!(!p.tcb[A].reset && p.tcb[A].state == State::Established);
    // Within the same half second: an old duplicate with data, and a keepalive probe (an ACK at
    // RCV.NXT - 1), are answered each.
    let mark = p.log.len();
    p.inject(A, &Out { seq: nxt.wrapping_sub(5), data: [b"hello", b""], ..p.forge(A, ACK) });
    p.inject(A, &Out { seq: nxt.wrapping_sub(1), ..p.forge(A, ACK) });
    assert_eq!(p.sent_by(A, mark).count(), 2, "\n{}", dump(&p.log[mark..]));
    // Half a second on, the next forged segment is answered again.
    p.run_for(THROTTLE);
    let mark = p.log.len();
    p.inject(A, &Out { seq: nxt.wrapping_add(1 << 30), ..p.forge(A, ACK) });
    assert_eq!(p.sent_by(A, mark).count(), 1);
}

#[test]
fn rfc1122_4_2_3_6_forged_segments_do_not_keep_a_dead_peer_alive() {
    // Keepalive after 2 s idle, probes 1 s apart, 3 unanswered end it. B vanishes; a blind
    // sender keeps hitting A's 4-tuple with segments outside its window.
    let cfg = TcpConfig {
        keepalive: Some(Duration::from_secs(2)),
        keepalive_interval: Duration::from_secs(1),
        keepalive_probes: 3,
        ..TcpConfig::default()
    };
    let mut p = Pair::settled(Setup { cfg, ..Setup::default() });
    p.cut = [true, true];
    let nxt = p.tcb[A].rcv_nxt();
    for i in 0..100u32 {
        p.inject(A, &Out { seq: nxt.wrapping_add(1 << 30).wrapping_add(i), ..p.forge(A, ACK) });
        p.run_for(100 * MS);
    }
    assert!(p.tcb[A].state == State::Closed && p.tcb[A].stats.keepalive_timeouts == 1, "{:?}", p.tcb[A].stats);
}
