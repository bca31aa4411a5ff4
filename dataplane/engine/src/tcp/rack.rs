//! Time-based loss detection, RACK-TLP (RFC 8985).
//!
//! RACK marks a segment lost when a segment sent after it has been delivered and a reordering
//! window has passed since; the Tail Loss Probe (TLP) sends one segment when the ACKs stop, so
//! that a loss at the tail of a flight is found by RACK instead of waiting for the retransmission
//! timer. The connection keeps its sent segments (their send time, end and flags); this module
//! holds RACK's own state and decides.
//!
//! Times are engine microseconds (`u64`): every ACK runs this module, and integer arithmetic is a
//! few instructions where `Duration`'s seconds-and-nanoseconds pairs were dozens.

/// What the connection knows of one segment it sent and has not seen cumulatively acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentSegment {
    /// When it was (last) sent, engine time in microseconds.
    pub xmit_ts: u64,
    /// Its first sequence number and the one past its end.
    pub seq: u32,
    pub end_seq: u32,
    /// Sent again at least once.
    pub retransmitted: bool,
    /// Delivered (SACKed, or cumulatively acknowledged now).
    pub delivered: bool,
    /// Already marked lost (waiting for its retransmission).
    pub lost: bool,
}

/// `a` after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// RACK's state (RFC 8985 §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rack {
    /// Send time and end of the most recently sent segment that was delivered.
    xmit_ts: Option<u64>,
    end_seq: u32,
    /// The round trip of that segment, and the least seen (microseconds).
    rtt: u64,
    min_rtt: Option<u64>,
    /// The highest end of a delivered segment (RACK.fack).
    fack: u32,
    /// Reordering was seen on this connection: the window then never shrinks to zero.
    reordering_seen: bool,
    /// The reordering window's multiplier (of min_RTT / 4), raised by D-SACKs.
    reo_wnd_mult: u32,
    /// Recoveries the raised multiplier still lasts.
    reo_wnd_persist: u32,
    /// `snd_nxt` when the multiplier was last raised: one raise per round trip.
    dsack_round: Option<u32>,
}

impl Default for Rack {
    fn default() -> Self {
        Rack {
            xmit_ts: None,
            end_seq: 0,
            rtt: 0,
            min_rtt: None,
            fack: 0,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
            dsack_round: None,
        }
    }
}

/// RFC 8985 §6.2's DupThresh for the window's zero case.
const DUP_THRESH: u32 = 3;

impl Rack {
    /// RACK's state for a connection whose first unacknowledged byte is `snd_una`: RACK.fack
    /// starts there, so the first delivery is never taken for reordering, wherever the sequence
    /// space starts.
    pub fn new(snd_una: u32) -> Rack {
        Rack { fack: snd_una, ..Rack::default() }
    }

    /// Step 1 and 2 of §6.2 for each segment this ACK delivered: updates RACK.xmit_ts, end_seq and
    /// rtt from the most recently sent one, and notes reordering. `ts_ecr_before_xmit` says, for a
    /// retransmitted segment, whether the ACK's timestamp echo predates its last transmission
    /// (then the ACK is for the original, and the segment is no RTT sample).
    pub fn on_delivered(&mut self, seg: &SentSegment, now: u64, ts_ecr_before_xmit: bool) {
        let rtt = now.saturating_sub(seg.xmit_ts);
        // §6.2 step 1: a retransmitted segment whose ACK may be for the original is no sample.
        let spurious = seg.retransmitted && (ts_ecr_before_xmit || self.min_rtt.is_some_and(|m| rtt < m));
        if !spurious {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            let newer = match self.xmit_ts {
                None => true,
                Some(t) => seg.xmit_ts > t || (seg.xmit_ts == t && after(seg.end_seq, self.end_seq)),
            };
            if newer {
                self.xmit_ts = Some(seg.xmit_ts);
                self.end_seq = seg.end_seq;
                self.rtt = rtt;
            }
        }
        // §6.2 step 2: delivered below the highest delivered end: reordering.
        if after(self.fack, seg.end_seq) {
            self.reordering_seen = true;
        } else {
            self.fack = seg.end_seq;
        }
    }

    /// §6.2 step 3: a D-SACK arrived with the connection at `snd_una`/`snd_nxt`. Raises the
    /// reordering window's multiplier, at most once per round trip, for the next 16 recoveries.
    pub fn on_dsack(&mut self, snd_una: u32, snd_nxt: u32) {
        if self.dsack_round.is_some_and(|r| !after(r, snd_una)) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult += 1;
            self.reo_wnd_persist = 16;
        }
    }

    /// A recovery (fast or by timeout) ended: the raised multiplier lasts one fewer.
    pub fn on_recovery_end(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 1;
            }
        }
    }

    /// §6.2 step 4: the reordering window: zero until reordering is seen when in recovery or when
    /// `DupThresh` segments are SACKed (RACK then acts as fast retransmit would), else
    /// min(mult * min_RTT / 4, SRTT).
    pub fn reo_wnd(&self, in_recovery: bool, segs_sacked: u32, srtt: u64) -> u64 {
        if !self.reordering_seen && (in_recovery || segs_sacked >= DUP_THRESH) {
            return 0;
        }
        let quarter = self.min_rtt.unwrap_or(0) / 4;
        quarter.saturating_mul(u64::from(self.reo_wnd_mult)).min(srtt)
    }

    /// §6.2 step 5: marks lost each undelivered segment sent before the most recently delivered
    /// one whose time (its send time + RACK.rtt + `reo_wnd`) has passed. Returns when to look
    /// again (the RACK reordering timer) if some such segment's time has not come yet, and how
    /// many it marked.
    pub fn detect_losses(&self, now: u64, reo_wnd: u64, segments: &mut [SentSegment]) -> (Option<u64>, usize) {
        let Some(rack_ts) = self.xmit_ts else { return (None, 0) };
        let mut timeout: Option<u64> = None;
        let mut marked = 0;
        for s in segments.iter_mut().filter(|s| !s.delivered && !s.lost) {
            let sent_before = s.xmit_ts < rack_ts || (s.xmit_ts == rack_ts && after(self.end_seq, s.end_seq));
            if !sent_before {
                continue;
            }
            let due = s.xmit_ts + self.rtt + reo_wnd;
            if due <= now {
                s.lost = true;
                marked += 1;
            } else {
                let left = due - now;
                timeout = Some(timeout.map_or(left, |t| t.max(left)));
            }
        }
        (timeout, marked)
    }

    /// The least round trip seen, if any (microseconds).
    pub fn min_rtt(&self) -> Option<u64> {
        self.min_rtt
    }
}

/// RFC 8985 §7.2: the Probe Timeout. Twice SRTT (one second before any sample); with one segment
/// in flight, plus the peer's worst delayed-ACK time; never past the RTO. All in microseconds.
pub fn probe_timeout(srtt: Option<u64>, flight_segments: u32, max_ack_delay: u64, rto: u64) -> u64 {
    let pto = match srtt {
        Some(s) => {
            let p = 2 * s;
            if flight_segments == 1 {
                p + max_ack_delay
            } else {
                p
            }
        }
        None => 1_000_000,
    };
    pto.min(rto)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A millisecond in microseconds.
    const MS: u64 = 1000;

    fn seg(i: u32, sent_ms: u64) -> SentSegment {
        SentSegment {
            xmit_ts: sent_ms * MS,
            seq: i * 1000,
            end_seq: (i + 1) * 1000,
            retransmitted: false,
            delivered: false,
            lost: false,
        }
    }

    #[test]
    fn rfc8985_6_2_a_segment_sent_before_a_delivered_one_is_lost_after_the_window() {
        let mut r = Rack::default();
        let mut segs: Vec<SentSegment> = (0..4).map(|i| seg(i, u64::from(i))).collect();
        // Segment 3 (sent at 3 ms) is SACKed at 13 ms: RTT 10 ms. 0, 1 and 2 are not delivered.
        segs[3].delivered = true;
        r.on_delivered(&segs[3], 13 * MS, false);
        assert_eq!(r.min_rtt(), Some(10 * MS));
        let wnd = r.reo_wnd(false, 1, 10 * MS);
        assert_eq!(wnd, 2_500, "min_RTT / 4, no reordering seen, 1 SACKed");
        // At 13 ms: segment 0 was due at 0 + 10 + 2.5 = 12.5 ms: lost; 1 is due at 13.5 ms.
        let (t, marked) = r.detect_losses(13 * MS, wnd, &mut segs);
        assert_eq!(segs.iter().map(|s| s.lost).collect::<Vec<_>>(), [true, false, false, false]);
        assert_eq!(marked, 1);
        assert_eq!(t, Some(1_500), "the timer for segment 2 (due 14.5 ms)");
        r.detect_losses(15 * MS, wnd, &mut segs);
        assert!(segs[1].lost && segs[2].lost && !segs[3].lost);
    }

    #[test]
    fn rfc8985_6_2_the_window_is_zero_in_recovery_until_reordering_is_seen() {
        let mut r = Rack::default();
        let a = SentSegment { delivered: true, ..seg(5, 0) };
        r.on_delivered(&a, 8 * MS, false);
        assert_eq!(r.reo_wnd(true, 0, 8 * MS), 0);
        assert_eq!(r.reo_wnd(false, 3, 8 * MS), 0, "DupThresh SACKed");
        // A segment delivered below the highest delivered one: reordering.
        let b = SentSegment { delivered: true, ..seg(2, 1) };
        r.on_delivered(&b, 9 * MS, false);
        assert_eq!(r.reo_wnd(true, 3, 8 * MS), 2 * MS, "min_RTT / 4 from now on");
    }

    #[test]
    fn rfc8985_6_2_a_dsack_widens_the_window_once_per_round_for_sixteen_recoveries() {
        let mut r = Rack::default();
        r.on_delivered(&SentSegment { delivered: true, ..seg(0, 0) }, 8 * MS, false);
        r.on_dsack(0, 10_000);
        r.on_dsack(5_000, 10_000); // same round trip: no second raise
        assert_eq!(r.reo_wnd(false, 0, 100 * MS), 4 * MS, "2 * min_RTT / 4");
        r.on_dsack(10_000, 20_000); // next round
        assert_eq!(r.reo_wnd(false, 0, 100 * MS), 6 * MS);
        assert_eq!(r.reo_wnd(false, 0, 5 * MS), 5 * MS, "never past SRTT");
        for _ in 0..16 {
            r.on_recovery_end();
        }
        assert_eq!(r.reo_wnd(false, 0, 100 * MS), 2 * MS, "back to one quarter");
    }

    #[test]
    fn rfc8985_6_2_a_retransmission_acked_too_soon_is_no_rtt_sample() {
        let mut r = Rack::default();
        r.on_delivered(&SentSegment { delivered: true, ..seg(0, 0) }, 10 * MS, false);
        // Segment 1 was retransmitted at 20 ms; its ACK at 21 ms is for the original.
        let s = SentSegment { delivered: true, retransmitted: true, ..seg(1, 20) };
        r.on_delivered(&s, 21 * MS, false);
        assert_eq!(r.min_rtt(), Some(10 * MS), "1 ms < min_RTT: not a sample");
        let s = SentSegment { delivered: true, retransmitted: true, ..seg(2, 20) };
        r.on_delivered(&s, 40 * MS, true);
        assert_eq!(r.rtt, 10 * MS, "the timestamp echo says the original was acknowledged");
    }

    #[test]
    fn rfc8985_7_2_probe_timeout() {
        let rto = 200 * MS;
        assert_eq!(probe_timeout(Some(10 * MS), 5, 200 * MS, rto), 20 * MS);
        assert_eq!(probe_timeout(Some(10 * MS), 1, 40 * MS, rto), 60 * MS, "plus the delayed ACK");
        assert_eq!(probe_timeout(Some(150 * MS), 5, 200 * MS, rto), rto, "never past the RTO");
        assert_eq!(probe_timeout(None, 5, 200 * MS, 3_000 * MS), 1_000 * MS);
    }
}
