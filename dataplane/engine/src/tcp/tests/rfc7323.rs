//! RFC 7323: window scaling (§2), timestamps and what they echo (§3, §4.3), PAWS (§5).

use super::*;

const MIB: usize = 1 << 20;

/// A sends 6 MiB into B's 4 MiB ring, which B never reads. Returns the pair when it is quiet.
fn fill_a_big_ring(wscale: bool) -> Pair {
    let s = Setup { rx: [65536, 4 * MIB], tx: [MIB, 65536], wscale, ..Setup::default() };
    let mut p = Pair::settled(s);
    p.app[A].total = 6 * MIB as u64;
    p.service();
    p.run_for(Duration::from_secs(2));
    p
}

/// The most A ever had in flight: its data segments' ends past the ACK it had when it sent them.
fn max_flight(p: &Pair) -> u32 {
    let mut acks: Vec<(Instant, u32)> =
        p.log.iter().filter(|r| r.from == B).filter_map(|r| r.arrived.map(|t| (t, r.ack))).collect();
    acks.sort_by_key(|&(t, _)| t);
    let acked_at = |t: Instant| {
        let i = acks.partition_point(|&(a, _)| a <= t);
        if i == 0 {
            ISS[A].wrapping_add(1)
        } else {
            acks[i - 1].1
        }
    };
    p.data_by(A, 0).map(|r| r.end().wrapping_sub(acked_at(r.at))).max().unwrap_or(0)
}

#[test]
fn rfc7323_2_the_window_field_is_shifted_and_the_sender_scales_it_back() {
    let p = fill_a_big_ring(true);
    let shift = crate::own::our_wscale(4 * MIB);
    assert_eq!(shift, 7);
    // B never read: its right edge stays ISS + 1 + 4 MiB, less the rounding of the shift.
    let right = ISS[A].wrapping_add(1).wrapping_add(4 * MIB as u32);
    let b: Vec<&Rec> = p.sent_by(B, 0).collect();
    assert!(u32::from(b[0].window) << shift > 4_000_000, "the first ACK offers nearly the whole ring");
    for r in &b {
        let edge = r.ack.wrapping_add(u32::from(r.window) << shift);
        assert!(right.wrapping_sub(edge) < 1 << shift, "right edge {edge} vs {right}:\n{}", dump(&[**r]));
    }
    // Filled but for less than one unit of the shift (a window field of 0 below it).
    assert!(p.tcb[B].rx.len() > 4 * MIB - (1 << shift), "the ring filled: {}", p.tcb[B].rx.len());
    assert!(max_flight(&p) > 65535, "more than 64 KiB in flight: {}", max_flight(&p));
    assert_eq!(b.last().map(|r| r.window), Some(0));
}

#[test]
fn rfc7323_2_without_scaling_the_window_is_at_most_65535() {
    let p = fill_a_big_ring(false);
    assert!(p.sent_by(B, 0).take(3).all(|r| r.window == 65535), "a 4 MiB ring offers 65535");
    assert!(max_flight(&p) <= 65535, "{}", max_flight(&p));
    assert!(p.tcb[B].rx.len() >= 4 * MIB - 65535, "it still fills, 64 KiB at a time");
}

#[test]
fn rfc7323_3_2_every_segment_carries_timestamps_from_the_senders_clock() {
    let mut p = Pair::settled(Setup::default());
    // B's clock wraps 50 ms in: the transfer spans it.
    p.run_for(30 * MS);
    p.app[A] = App { total: 1_000_000, reads: true, close_at_end: true, ..App::default() };
    p.app[B] = App { total: 1_000_000, reads: true, close_at_end: true, ..App::default() };
    p.service();
    assert!(p.run_until(Duration::from_secs(2), |p| p.closed_cleanly()));
    for r in &p.log {
        let (val, _) = r.ts.expect("timestamps on every segment");
        assert_eq!(val, clock::value(r.at, TS_OFF[r.from]), "TSval is the sender's clock");
    }
    let b_ts = |wrapped: bool| p.log.iter().any(|r| r.from == B && r.ts.is_some_and(|(v, _)| (v < 1000) == wrapped));
    assert!(b_ts(true) && b_ts(false), "B's clock wrapped during the transfer");
    assert_eq!(p.tcb[A].stats.paws_dropped + p.tcb[B].stats.paws_dropped, 0, "no PAWS drop across the wrap");
}

#[test]
fn rfc7323_4_3_the_echo_is_of_the_earliest_unacknowledged_segment_then_of_the_one_filling_a_hole() {
    let mut p = Pair::settled(Setup::default());
    let tsval_of = |p: &Pair, seq_off: u32| {
        let seq = ISS[A].wrapping_add(1 + seq_off);
        p.log.iter().rev().find(|r| r.from == A && r.seq == seq && r.len > 0).and_then(|r| r.ts).expect("sent").0
    };
    // (A) Delayed ACKs: two small segments 10 ms apart draw one ACK echoing the first.
    p.tcb[A].send(&[1; 100]);
    p.service();
    p.run_for(10 * MS);
    p.tcb[A].send(&[2; 100]);
    let mark = p.log.len();
    p.service();
    p.run_for(5 * MS);
    let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
    assert_eq!(acks.len(), 1, "\n{}", dump(&p.log));
    assert_eq!(acks[0].ack, ISS[A].wrapping_add(201));
    assert_eq!(acks[0].ts.expect("ts").1, tsval_of(&p, 0), "the earlier TSval");
    // (B) A hole: segment 2 of 3 is lost; the ACKs of segment 3 echo segment 1 (the last in
    // order), the ACK of the retransmission echoes the retransmission.
    p.run_for(100 * MS);
    p.drop_once(A, |r| r.seq == ISS[A].wrapping_add(301));
    for i in 0..3u8 {
        p.tcb[A].send(&[i; 100]);
        p.service();
        p.run_for(MS);
    }
    let mark = p.log.len();
    p.run_for(Duration::from_millis(300));
    let ooo = p.sent_by(B, 0).find(|r| r.nsack > 0).expect("a SACK for segment 3");
    assert_eq!(ooo.ts.expect("ts").1, tsval_of(&p, 200), "the segment before the hole");
    let filled = p.sent_by(B, mark).find(|r| r.ack == ISS[A].wrapping_add(501)).expect("the hole filled");
    assert_eq!(filled.ts.expect("ts").1, tsval_of(&p, 300), "the retransmission's TSval");
}

#[test]
fn rfc7323_5_3_paws_drops_a_segment_with_an_old_tsval_and_acknowledges() {
    let mut p = Pair::settled(Setup::default());
    p.app[A].total = 10_000;
    p.service();
    p.run_for(200 * MS);
    let nxt = p.tcb[B].rcv_nxt();
    let mark = p.log.len();
    // TS.Recent at B: the TSval of the last of A's segments that arrived.
    let recent = p.log.iter().rev().find(|r| r.from == A && r.arrived.is_some()).and_then(|r| r.ts).expect("ts").0;
    let mut old = Out { data: [b"stale", b""], ..p.forge(B, ACK | seg::PSH) };
    let ecr = old.ts.expect("ts").1;
    old.ts = Some((recent.wrapping_sub(1), ecr));
    p.inject(B, &old);
    assert_eq!(p.tcb[B].rcv_nxt(), nxt, "not taken");
    assert_eq!(p.tcb[B].stats.paws_dropped, 1);
    let acks: Vec<&Rec> = p.sent_by(B, mark).collect();
    assert!(acks.len() == 1 && acks[0].ack == nxt, "an ACK in reply:\n{}", dump(&p.log[mark..]));
    // The same segment with a TSval equal to TS.Recent is current and taken.
    let fresh = Out { ts: Some((recent, ecr)), ..old };
    p.inject(B, &fresh);
    assert_eq!(p.tcb[B].rcv_nxt(), nxt.wrapping_add(5));
}

#[test]
fn rfc7323_5_3_a_duplicate_ack_overtaken_by_a_later_one_is_not_a_paws_drop() {
    // A sends to B; one of B's duplicate ACKs (with its SACK block) arrives after a later ACK:
    // its TSval is older than TS.Recent, but it carries no data, only the ACK A wants.
    let mut p = Pair::settled(Setup::default());
    p.app[A].total = 10_000;
    p.service();
    p.run_for(200 * MS);
    let recent = p.log.iter().rev().find(|r| r.from == B && r.arrived.is_some()).expect("B's last");
    let (window, ts) = (recent.window, recent.ts.expect("ts"));
    let una = p.tcb[A].snd_una();
    let dup = Out { ack: una, window, ts: Some((ts.0.wrapping_sub(2), ts.1)), ..p.forge(A, ACK) };
    p.inject(A, &dup);
    assert_eq!(p.tcb[A].stats.paws_dropped, 0, "a disordered duplicate ACK passes");
    // With data, or far older than an RTO, it is dropped as before.
    let stale = Out { ts: Some((ts.0.wrapping_sub(10_000), ts.1)), ..dup };
    p.inject(A, &stale);
    assert_eq!(p.tcb[A].stats.paws_dropped, 1);
}

#[test]
fn rfc7323_2_3_a_1_gib_ring_offers_a_1_gib_window_at_shift_14() {
    // 100 ms round trip at 10 Gbit/s: 125 MB in flight fill the path. B's ring is 1 GiB (the
    // largest window RFC 7323 allows, shift 14); A sends 40 MiB from slow start.
    let net = Net { delay: Duration::from_millis(50), rate: 10_000_000_000, ..Net::default() };
    let s = Setup { rx: [65536, 1 << 30], tx: [64 * MIB, 65536], net, ..Setup::default() };
    assert_eq!(crate::own::our_wscale(1 << 30), 14);
    let mut p = Pair::settled(s);
    p.app[A].total = 40 * MIB as u64;
    p.app[B].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(10), |p| p.app[B].got == 40 * MIB as u64));
    let first = p.sent_by(B, 0).next().expect("B's ACK");
    assert_eq!(first.window, u16::MAX, "the field at its largest");
    assert_eq!(u64::from(first.window) << 14, (1 << 30) - (1 << 14), "1 GiB less one unit");
    // More than 8 MiB in flight at once (slow start with delayed ACKs gets to 14 MB): beyond any
    // window a shift below 8 could offer.
    assert!(max_flight(&p) > 8 * MIB as u32, "{} in flight at most", max_flight(&p));
    assert_eq!((p.app[B].bad, p.tcb[A].stats.retransmits), (None, 0));
}
