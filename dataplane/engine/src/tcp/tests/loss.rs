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
    let mut p = warm(Setup::default());
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
    // The wire heals: the next timeout's retransmission gets through; the backoff holds until
    // a segment sent once is acknowledged (Karn), then the RTO is back at the floor.
    p.cut[A] = false;
    assert!(p.run_until(Duration::from_secs(5), |p| p.app[B].got == 300_000 + 5 * u64::from(SEG)));
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
fn rfc8985_7_a_probe_repairs_the_last_segment_of_a_flight_without_a_timeout() {
    let mut p = warm(Setup::default());
    let base = burst(&mut p, 10, &[9]);
    assert!(p.run_until(Duration::from_secs(2), |p| p.tcb[A].snd_una() == seg_at(base, 10)));
    let s = p.tcb[A].stats;
    assert_eq!((s.tlp, s.timeouts, s.retransmits), (1, 0, 1), "{s:?}");
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
