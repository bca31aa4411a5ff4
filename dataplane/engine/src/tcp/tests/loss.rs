//! Loss detection and recovery: the retransmission timer (RFC 6298), RACK-TLP (RFC 8985), the
//! congestion response once per episode (RFC 5681 §3.2, RFC 9438 §4.6), fast retransmit without
//! SACK (RFC 5681 §3.2), and the receiver's SACK blocks (RFC 2018 §4).

use super::*;

const SEG: u32 = 1448;

/// A pair after a lossless exchange: SRTT is the wire's 2 ms, the window well open.
fn warm(s: Setup) -> Pair {
    let mut p = Pair::settled(s);
    p.app[A] = App { total: 300_000, reads: true, ..App::default() };
    p.app[B].reads = true;
    p.service();
    assert!(p.run_until(Duration::from_secs(1), |p| p.app[B].got == 300_000));
    p.run_for(300 * MS);
    assert_eq!(p.tcb[A].snd_una(), p.setup.iss[A].wrapping_add(300_001));
    p
}

/// A queues `n` more full segments at once, of which the first transmissions of those at
/// `lost` (0-based) are dropped; returns the first one's sequence number.
fn burst(p: &mut Pair, n: u32, lost: &[u32]) -> u32 {
    let base = p.tcb[A].snd_una();
    for &i in lost {
        p.drop_once(A, move |r| r.len > 0 && r.seq == seg_at(base, i));
    }
    p.app[A].total += u64::from(n * SEG);
    p.service();
    base
}

fn seg_at(base: u32, i: u32) -> u32 {
    base.wrapping_add(i * SEG)
}

/// When A sent segment `seq` each time.
fn sends(p: &Pair, seq: u32) -> Vec<Duration> {
    p.data_by(A, 0).filter(|r| r.seq == seq).map(Rec::t).collect()
}

#[test]
fn rfc6298_2_4_the_rto_has_a_200_ms_floor_5_5_doubles_per_timeout_and_a_sample_ends_the_backoff() {
    for ts in [false, true] {
        rto_backoff(ts);
    }
}

/// Without timestamps (Karn's rule, RFC 6298 §3) the backoff holds until a segment sent once is
/// acknowledged; with them the echo of the retransmission is a sample (RFC 7323 §4.1) and ends
/// it at once.
fn rto_backoff(ts: bool) {
    let mut p = warm(Setup { ts, ..Setup::default() });
    assert_eq!(p.tcb[A].rtt().1, 200 * MS, "a 2 ms round trip: the floor rules");
    p.cut[A] = true;
    let base = burst(&mut p, 5, &[]);
    p.run_for(Duration::from_millis(3_100));
    let t = sends(&p, base);
    assert_eq!(t.len(), 5, "the original and four timeouts: {t:?}");
    let gaps: Vec<u128> = t.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    // The first timeout counts from the first send (RFC 6298 §5.1) or from the tail probe before
    // it (RFC 8985 §7.3): 200 ms and a few. Each later one doubles (§5.5).
    assert!((200..=250).contains(&gaps[0]), "{gaps:?}");
    assert_eq!(gaps[1..], [400, 800, 1600], "backed off");
    assert_eq!((p.tcb[A].stats.timeouts, p.tcb[A].rtt().1), (4, 3200 * MS));
    assert_eq!(p.tcb[B].rcv_nxt(), base, "nothing got through");
    // The wire heals: the next timeout's retransmission gets through.
    p.cut[A] = false;
    assert!(p.run_until(Duration::from_secs(5), |p| p.app[B].got == 300_000 + 5 * u64::from(SEG)));
    if ts {
        assert_eq!(p.tcb[A].rtt().1, 200 * MS, "the echo of a retransmission is a sample");
        return;
    }
    assert!(p.tcb[A].rtt().1 >= 3200 * MS, "retransmissions give no sample: {:?}", p.tcb[A].rtt());
    burst(&mut p, 4, &[]);
    p.run_for(100 * MS);
    assert_eq!(p.tcb[A].rtt().1, 200 * MS, "a fresh sample ends the backoff");
}

#[test]
fn rfc8985_7_a_tail_loss_probe_repairs_a_lost_tail_before_the_rto() {
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 10, &[7, 8, 9]);
    let t0 = p.t();
    assert!(p.run_until(Duration::from_secs(2), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
    let s = p.tcb[A].stats;
    assert_eq!((s.tlp, s.timeouts, s.fast_recoveries), (1, 0, 1), "{s:?}\n{}", dump(&p.log));
    // The probe (the last segment again) leaves one PTO after the last ACK: 2 SRTT, at least
    // 10 ms; the other two follow by RACK once the probe's ACK SACKs it.
    let probe = sends(&p, seg_at(base, 9))[1] - t0;
    assert!(probe >= 10 * MS && probe < 20 * MS, "probe after {probe:?}");
    assert!(p.t() - t0 < 30 * MS, "all repaired in {:?}", p.t() - t0);
}

#[test]
fn rfc8985_7_2_a_probe_due_with_the_rto_is_sent_as_a_probe_not_a_timeout() {
    // A lone segment is lost. Its PTO (2 SRTT + WCDelAckT) is past the RTO's expiry, so §7.2
    // schedules the probe at that expiry: a probe is sent then, not a timeout taken (which
    // would cut cwnd to one segment), and the RTO is armed again after it (§7.3).
    let mut p = warm(Setup::default());
    let cwnd = p.tcb[A].cwnd();
    let base = burst(&mut p, 1, &[0]);
    assert!(p.run_until(Duration::from_secs(2), |p| p.tcb[A].snd_una() == seg_at(base, 1)));
    let s = p.tcb[A].stats;
    assert_eq!((s.tlp, s.timeouts), (1, 0), "{s:?}: cwnd {cwnd} -> {}", p.tcb[A].cwnd());
}

#[test]
fn rfc8985_7_a_probe_repairs_the_last_segment_of_a_flight_without_a_timeout() {
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 10, &[9]);
    assert!(p.run_until(Duration::from_secs(2), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
    let s = p.tcb[A].stats;
    assert_eq!((s.tlp, s.timeouts, s.retransmits), (1, 0, 1), "{s:?}");
}

#[test]
fn rfc8985_7_3_after_a_probe_the_rto_is_armed_again_from_the_probe() {
    // The wire is cut: the probe (at one PTO) goes unanswered, and the RTO must count from it.
    let mut p = warm(Setup::default());
    p.cut[A] = true;
    let base = burst(&mut p, 5, &[]);
    p.run_for(Duration::from_millis(500));
    let probe = sends(&p, seg_at(base, 4))[1];
    let rto = sends(&p, base)[1];
    assert_eq!(p.tcb[A].stats.tlp, 1);
    assert!(rto >= probe + 200 * MS, "probe at {probe:?}, timeout at {rto:?}");
}

#[test]
fn rfc8985_6_2_rack_marks_a_segment_lost_once_a_later_one_is_sacked_and_the_window_passed() {
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 10, &[8]);
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
    let sack = p.sent_by(B, 0).find(|r| r.nsack > 0).expect("segment 10 SACKed");
    assert_eq!(sack.sack(), [(seg_at(base, 9), seg_at(base, 10))]);
    let t_sack = since_start(sack.arrived.expect("it arrived"));
    let rtx = sends(&p, seg_at(base, 8))[1];
    // One segment SACKed, no reordering seen: the window is min_RTT / 4 (about 0.5 ms here).
    let waited = rtx - t_sack;
    assert!(waited >= 400 * Duration::from_micros(1) && waited <= MS, "retransmitted {waited:?} after the SACK");
    let s = p.tcb[A].stats;
    assert_eq!((s.retransmits, s.fast_recoveries, s.tlp, s.timeouts), (1, 1, 0, 0), "{s:?}");
}

#[test]
fn rfc8985_6_2_with_three_segments_sacked_the_hole_is_lost_at_once() {
    // RFC 8985 §6.2 step 4: no reordering seen and DupThresh segments SACKed: the window is 0.
    // Both halves of the sequence space: RACK.fack must start at the ISS, not at 0.
    for iss in [1_000_000, u32::MAX - 100_000] {
        let mut p = warm(Setup { iss: [iss, ISS[B]], ..Setup::default() });
        let base = burst(&mut p, 10, &[6]);
        assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
        let third = p.sent_by(B, 0).filter(|r| r.nsack > 0).nth(2).expect("three SACKs");
        assert_eq!(third.sack(), [(seg_at(base, 7), seg_at(base, 10))]);
        let rtx = sends(&p, seg_at(base, 6))[1];
        assert_eq!(rtx, since_start(third.arrived.expect("arrived")), "ISS {iss:#x}: retransmitted late");
    }
}

#[test]
fn rfc5681_3_2_rfc9438_4_6_fast_recovery_cuts_cwnd_once_per_episode() {
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 20, &[3, 5, 7, 11]);
    let mut before = p.tcb[A].cwnd();
    let mut least = u32::MAX;
    let done = p.run_until(Duration::from_secs(1), |p| {
        if p.tcb[A].stats.fast_recoveries == 0 {
            before = p.tcb[A].cwnd();
        } else {
            least = least.min(p.tcb[A].cwnd());
        }
        p.tcb[A].snd_una() == seg_at(base, 20)
    });
    assert!(done);
    let s = p.tcb[A].stats;
    assert_eq!((s.fast_recoveries, s.timeouts, s.retransmits), (1, 0, 4), "{s:?}\n{}", dump(&p.log));
    // The ACK that starts recovery may grow the window by one segment first.
    let (lo, hi) = (f64::from(before) * 0.7, f64::from(before + SEG) * 0.7);
    assert!(f64::from(least) >= lo - 1.0 && f64::from(least) <= hi, "CUBIC's beta, once: {before} -> {least}");
}

#[test]
fn rfc5681_3_2_without_sack_the_third_duplicate_ack_retransmits_at_once() {
    // A congestion-limited sender (B's ring is large) without SACK: three duplicate ACKs must
    // bring the lost segment again within a round trip, not at the RTO.
    let mib = 1 << 20;
    let s = Setup { sack: false, rx: [65536, 8 * mib], tx: [8 * mib, 65536], ..Setup::default() };
    let mut p = warm(s);
    let base = p.tcb[A].snd_una();
    p.drop_once(A, move |r| r.len > 0 && r.seq == seg_at(base, 120));
    p.app[A].total += 4 * mib as u64;
    p.service();
    assert!(p.run_until(Duration::from_secs(10), |p| p.app[B].got == p.app[A].total));
    let t = sends(&p, seg_at(base, 120));
    let dupacks = p.sent_by(B, 0).filter(|r| r.ack == seg_at(base, 120)).nth(3).expect("dup ACKs");
    let third = since_start(dupacks.arrived.expect("arrived"));
    let s = p.tcb[A].stats;
    assert!(t[1] - third < 10 * MS, "retransmitted {:?} after the third dup ACK; {s:?}", t[1] - third);
    assert_eq!((s.fast_recoveries, s.timeouts), (1, 0), "{s:?}");
}

#[test]
fn rfc6675_5_entering_recovery_retransmits_the_first_lost_segment_at_once() {
    // RFC 6675 §5 step (4.3), and PRR's first ACK in recovery (RFC 6937): the segment found lost
    // leaves on the ACK that starts recovery, congestion-limited sender or not.
    let mib = 1 << 20;
    let s = Setup { rx: [65536, 8 * mib], tx: [8 * mib, 65536], ..Setup::default() };
    let mut p = warm(s);
    let base = p.tcb[A].snd_una();
    p.drop_once(A, move |r| r.len > 0 && r.seq == seg_at(base, 120));
    p.app[A].total += 4 * mib as u64;
    p.service();
    let mut entered = None;
    let done = p.run_until(Duration::from_secs(10), |p| {
        if entered.is_none() && p.tcb[A].stats.fast_recoveries == 1 {
            entered = Some(p.t());
        }
        p.app[B].got == p.app[A].total
    });
    assert!(done);
    let rtx = sends(&p, seg_at(base, 120))[1];
    let entered = entered.expect("recovery");
    let between = |a: Instant| (entered..=rtx).contains(&since_start(a));
    let sacks = p.sent_by(B, 0).filter(|r| r.nsack > 0 && r.arrived.is_some_and(between)).count();
    assert_eq!(rtx, entered, "retransmitted {:?} and {sacks} SACKs after recovery began", rtx - entered);
}

#[test]
fn rfc2018_4_sack_blocks_report_the_most_recent_segment_first() {
    for ts in [true, false] {
        let mut p = warm(Setup { ts, ..Setup::default() });
        let seg = if ts { SEG } else { SEG + 12 };
        let base = p.tcb[A].snd_una();
        for i in [1, 3, 5, 7] {
            p.drop_once(A, move |r| r.len > 0 && r.seq == base.wrapping_add(i * seg));
        }
        p.app[A].total += u64::from(10 * seg);
        p.service();
        p.run_for(100 * MS);
        let blk = |i: u32, j: u32| (base.wrapping_add(i * seg), base.wrapping_add(j * seg));
        let acks: Vec<Vec<(u32, u32)>> =
            p.sent_by(B, 0).filter(|r| r.nsack > 0).take(4).map(|r| r.sack().to_vec()).collect();
        // Segments 3, 5, 7, 9 arrive beyond holes (1-based: 2, 4, 6, 8 lost), then 10 joins 9.
        let mut want = vec![
            vec![blk(2, 3)],
            vec![blk(4, 5), blk(2, 3)],
            vec![blk(6, 7), blk(4, 5), blk(2, 3)],
            vec![blk(8, 9), blk(6, 7), blk(4, 5), blk(2, 3)],
        ];
        if ts {
            want[3].pop(); // three blocks beside timestamps
        }
        assert_eq!(acks, want, "timestamps {ts}\n{}", dump(&p.log));
        let last = p.sent_by(B, 0).filter(|r| r.nsack > 0).nth(4).expect("a fifth SACK");
        assert_eq!(last.sack()[0], blk(8, 10), "segment 10 extends the most recent block");
        assert_eq!(p.app[B].got, 300_000 + u64::from(10 * seg), "all arrived");
    }
}

#[test]
fn rfc2018_4_data_segments_make_room_for_the_sack_blocks_while_a_hole_is_open() {
    // B sends data of its own (an echo, say) while A's data has a hole at B: B's data segments
    // are A's only ACKs, and they must carry the blocks; each gives up 4 + 8 bytes per block.
    let mut p = warm(Setup::default());
    let base = p.tcb[A].snd_una();
    p.drop_once(A, move |r| r.len > 0 && r.seq == base.wrapping_add(SEG));
    p.app[A].total += u64::from(10 * SEG);
    p.app[B].total += 100_000;
    p.service();
    p.run_for(100 * MS);
    let hole = (base.wrapping_add(SEG), base.wrapping_add(2 * SEG));
    let during: Vec<&Rec> =
        p.sent_by(B, 0).filter(|r| r.len > 0 && r.ack == hole.0 && r.seq != p.tcb[A].rcv_nxt()).collect();
    assert!(!during.is_empty(), "B sent data while the hole was open\n{}", dump(&p.log));
    for r in &during {
        assert_eq!((r.nsack, r.len), (1, SEG - 12), "a block, and room for it\n{}", dump(&p.log));
        assert_eq!(r.sack()[0].0, hole.1);
    }
    assert_eq!(p.app[B].got, 300_000 + u64::from(10 * SEG), "all arrived");
    assert_eq!(p.app[A].got, 100_000);
}

#[test]
fn rfc8985_7_a_tail_lost_during_fast_recovery_is_probed_not_timed_out() {
    // Segment 3 is lost (recovery begins), then its retransmission, and the last of the burst:
    // nothing sent after them can show RACK their loss. A probe repairs it at the PTO; the RTO does not fire. (RFC 8985
    // §7.2 arms no probe in recovery; over a lossy wire that left a lost tail to the 200 ms RTO
    // once every few MiB, so the engine probes during fast recovery too, not after a timeout.)
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 20, &[3, 19]);
    // The retransmission of segment 3 is lost too: nothing A sends after it arrives.
    p.drop_once(A, move |r| r.len > 0 && r.seq == seg_at(base, 3));
    let start = p.t();
    assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == seg_at(base, 20)), "\n{}", dump(&p.log));
    let s = p.tcb[A].stats;
    assert_eq!((s.fast_recoveries, s.timeouts), (1, 0), "{s:?}\n{}", dump(&p.log));
    assert!(s.tlp >= 1, "{s:?}");
    assert!(p.t() - start < 50 * MS, "repaired after {:?}", p.t() - start);
}

#[test]
fn on_timers_leaves_no_deadline_due_at_the_instant_it_ran() {
    // The timer contract (house style 2): after `on_timers(now)`, `next_deadline()` is later
    // than `now`, or the engine would service the connection again and again at `now`. The RACK
    // timer of a one-segment SACK waits min_RTT / 4, which has a fraction of a microsecond when
    // the round trip is not a multiple of 4 µs.
    for delay_us in 1000..1004 {
        let net = Net { delay: Duration::from_micros(delay_us), ..Net::default() };
        let mut p = warm(Setup { net, ..Setup::default() });
        let base = burst(&mut p, 10, &[8]);
        assert!(p.run_until(Duration::from_secs(1), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
        assert_eq!(p.stale_deadlines, 0, "one-way delay {delay_us} us");
    }
}
