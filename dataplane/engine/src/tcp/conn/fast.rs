//! Header prediction: the short path for the two segments an established connection mostly
//! receives, in-order data and an ACK of new data (Van Jacobson's header prediction, as in 4.4BSD
//! `tcp_input` and Linux's `tcp_rcv_established` fast path).
//!
//! RFC 9293 §3.10.7.4 processes a segment in eight steps. For a segment that passes every test
//! below, each step's outcome is known before it runs: the sequence number is acceptable (it is
//! RCV.NXT, inside a window the data fits), there is no RST, SYN, URG or FIN to act on, the ACK is
//! acceptable (RFC 5961 §5.2) and changes nothing but SND.UNA, and the data goes at the end of the
//! receive ring with nothing out of order to join. So the short path does only what those steps
//! would change, with no option walk, no reassembly and no loss recovery; any segment that fails
//! a test takes the full path ([`Tcb::input`]'s), which gives the same result for one that would
//! have passed (`tcp::tests::prediction` compares the two on whole exchanges).
//!
//! The output side has a short path too ([`Tcb::output_predicted`]): with nothing in flight,
//! nothing lost or owed, and all queued data fitting one segment, the windows and the congestion
//! window, [`Tcb::output`]'s general steps (the retransmission scan, the send loop, the
//! silly-window test, the persist timer, the window update and keepalive) each have a known
//! outcome, so the segment goes straight from the header template and only the timers a segment
//! in flight arms are armed. A request's reply is that case.

use super::*;

impl Tcb {
    /// Takes `seg` by the short path if it is predicted; returns `false`, having changed nothing,
    /// if it is not.
    #[inline]
    pub(super) fn predicted(&mut self, now: Instant, seg: &Seg) -> bool {
        // ESTABLISHED only: the closing states change on a FIN or an ACK of ours (§3.10.7.4
        // fifth and eighth steps), which the full path follows.
        if self.state != State::Established || !self.cfg.header_prediction {
            return false;
        }
        // ACK, and PSH at most (RFC 9293 §3.1): no RST (second step), SYN (fourth), URG (sixth)
        // or FIN (eighth) to act on.
        if seg.flags & !PSH != ACK || seg.seq != self.rcv_nxt {
            return false;
        }
        // Options: the timestamps alone when both sides use them (RFC 7323 §3.2: then on every
        // segment), none otherwise; no SACK blocks (RFC 2018 §3) for the scoreboard. RFC 7323
        // §5.3 PAWS: a TSval older than TS.Recent takes the full path (which drops the segment).
        let ts = match (self.ts_on, seg.options.ts) {
            (true, Some((val, ecr))) if !lt(val, self.ts_recent) => Some((val, ecr)),
            (false, None) => None,
            _ => return false,
        };
        if seg.options.nsack != 0 || self.pending_fin.is_some() {
            return false;
        }
        // The same send window (RFC 9293 §3.10.7.4 fifth step: SND.WND does not change, whatever
        // SND.WL1 and SND.WL2 say).
        if u32::from(seg.window) << self.snd_shift != self.snd_wnd {
            return false;
        }
        // The ACK between SND.UNA and the highest sequence number sent (RFC 9293 §3.10.7.4 fifth
        // step: neither a duplicate of an old one nor of something not yet sent).
        let acked = seg.ack.wrapping_sub(self.snd_una);
        if acked > self.snd_max.wrapping_sub(self.snd_una) {
            return false;
        }
        let len = seg.payload.len();
        if len == 0 {
            // A pure ACK must acknowledge new data: a duplicate one counts towards fast
            // retransmit (RFC 5681 §3.2), or is a window update or a keepalive.
            if acked == 0 {
                return false;
            }
        } else if !self.ooo.is_empty() || len > self.rx.free() {
            // In-order data that fits the ring whole, with no hole to fill (RFC 9293
            // §3.10.7.4 seventh step: RCV.NXT moves past it and nothing else joins it).
            return false;
        }
        // An ACK of new data during recovery goes through RACK and the end of recovery (RFC 8985
        // §6.2, RFC 6582 §3.2).
        if acked != 0 && self.recovery.is_some() {
            return false;
        }
        self.stats.predicted += 1;
        self.heard_at = now;
        self.keepalive_sent = 0;
        self.keepalive_at = None;
        // RFC 7323 §4.3: SEG.SEQ is RCV.NXT, so no later than Last.ACK.sent.
        if let Some((val, _)) = ts {
            if le(seg.seq, self.last_ack_sent) {
                self.ts_recent = val;
            }
        }
        // Fifth step: SND.WL1 and SND.WL2 follow the most recent segment.
        if lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && le(self.snd_wl2, seg.ack)) {
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
        }
        if self.snd_wnd > 0 {
            self.persist_at = None;
        }
        if self.snd_wnd > 0 || acked != 0 {
            self.persist_backoff = 0;
        }
        if acked != 0 {
            // ESTABLISHED: our FIN is not queued, so this acknowledges data only.
            self.acknowledge(now, seg.ack, ts.map(|(_, ecr)| ecr));
            self.scoreboard.advance(self.snd_una); // as `on_ack` with no blocks
            self.dupacks = 0;
        }
        if len > 0 {
            // Seventh step: the data joins the ring; an ACK at once in quick-ACK mode, else at
            // least every second segment (RFC 9293 §3.8.6.3, RFC 5681 §4.2) or after the delay.
            self.rx.push(seg.payload);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(len as u32);
            self.ack_in_order(now, false); // nothing was out of order
        }
        true
    }

    /// Sends the queued data by the short path if it is predicted: ESTABLISHED or CLOSE-WAIT with
    /// no RST, FIN or probe due, not in recovery, nothing in flight (so nothing to retransmit, no SACK scoreboard
    /// and no FIN to send), no keepalive, and all queued bytes within one segment (less the room
    /// for SACK blocks owed), the peer's window and the congestion window. Returns `None`, having
    /// changed nothing, if it is not: [`Tcb::output`]'s full path then runs. On a predicted
    /// output the full path would send exactly this one segment and arm exactly these timers
    /// (`tcp::tests::prediction` compares the two).
    #[inline]
    pub(super) fn output_predicted(&mut self, now: Instant, ts_now: u32, emit: &mut impl Emit) -> Option<usize> {
        if !self.cfg.header_prediction
            || !matches!(self.state, State::Established | State::CloseWait)
            || self.rst_out
            || self.probe
            || self.ack_probe
            || self.cfg.keepalive.is_some()
            || self.recovery.is_some()
            || !self.sent.is_empty()
            || self.snd_una != self.snd_max
            || self.snd_nxt != self.snd_una
        {
            return None;
        }
        // In ESTABLISHED and CLOSE-WAIT our FIN is not queued (`close` leaves both): the queue is
        // all data, and none of it is sent.
        let len = self.tx.len() as u32;
        if len == 0 || len > self.data_mss() || len > self.snd_wnd {
            return None;
        }
        if self.pipe != 0 && self.pipe.saturating_add(len) > self.cc.cwnd() {
            return None;
        }
        self.ts_clock = (now, ts_now);
        let start = self.snd_nxt;
        let end = start.wrapping_add(len);
        if !self.emit_segment(ts_now, start, ACK | PSH, 0, len as usize, emit) {
            return Some(0); // the device is full: as the full path, nothing else changes
        }
        self.stats.predicted_out += 1;
        self.snd_nxt = end;
        self.snd_max = end;
        self.sent.push_back(SentSegment {
            xmit_ts: us(now),
            seq: start,
            end_seq: end,
            retransmitted: false,
            delivered: false,
            lost: false,
        });
        self.pipe = self.pipe.saturating_add(len);
        // Nothing is left unsent: no persist timer. One segment in flight: the RTO and the tail
        // loss probe (RFC 6298 §5.1, RFC 8985 §7.2), where none is armed yet (out of recovery,
        // the full path's test for the probe comes to this).
        self.persist_at = None;
        if self.rto_at.is_none() {
            self.rto_at = Some(plus_us(now, self.rtt.rto_us()));
        }
        if self.tlp_out.is_none() && self.tlp_at.is_none() {
            let pto = rack::probe_timeout(self.rtt.srtt_us(), 1, PEER_ACK_DELAY_US, self.rtt.rto_us());
            self.tlp_at = Some(plus_us(now, pto.max(MIN_PTO_US)));
        }
        Some(1)
    }
}
