//! The ACK field of a segment: SND.UNA moves, records are delivered, SACK blocks are taken,
//! RACK detects losses and recovery starts and ends (RFC 5961 §5.2, RFC 2018, RFC 8985, RFC 5681,
//! RFC 6582, RFC 6298).

use super::*;

impl Tcb {
    /// The ACK field (RFC 9293 §3.10.7.4 fifth step, RFC 5961 §5.2). Returns whether to go on
    /// with the segment.
    pub(super) fn on_ack(&mut self, now: Instant, seg: &Seg) -> bool {
        let ack = seg.ack;
        // RFC 5961 §5.2: acceptable from SND.UNA - MAX.SND.WND to SND.NXT (our highest sent).
        let floor = self.snd_una.wrapping_sub(self.max_snd_wnd);
        if lt(ack, floor) || lt(self.snd_max, ack) {
            self.stats.challenge_acks += 1;
            self.oow_ack(now, seg);
            return false;
        }
        let advanced = lt(self.snd_una, ack);
        let prior_una = self.snd_una;
        let old_wnd = self.snd_wnd;
        // The send window, from the most recent segment: RFC 9293 §3.10.7.4 tells it by SND.WL1
        // and SND.WL2. An ACK that moves SND.UNA is news of the window too, whatever its sequence
        // number (as Linux's `tcp_may_update_window`): a peer's retransmission of old data
        // carries an old SEG.SEQ and its current, often smaller, window. Were it ignored, the old
        // SND.WND would count from the new SND.UNA: the right edge would slide past what the
        // peer offered, we would send beyond it, and a peer that discards such segments whole
        // (Linux since 6.17, while its receive queue is not empty) would never see the ACKs
        // they carry.
        if advanced || lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && le(self.snd_wl2, ack)) {
            self.snd_wnd = u32::from(seg.window) << self.snd_shift;
            if lt(self.snd_wl1, seg.seq) {
                self.snd_wl1 = seg.seq;
            }
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        }
        if self.snd_wnd > 0 {
            self.persist_at = None;
        }
        if self.snd_wnd > 0 || advanced {
            self.persist_backoff = 0; // the peer moved: probing starts afresh
        }
        let t = us(now);
        let tsecr = seg.options.ts.filter(|_| self.ts_on).map(|(_, ecr)| ecr);
        let fin_acked = advanced && self.acknowledge(now, ack, tsecr);
        let blocks = if self.sack_on { seg.options.sack_blocks() } else { &[] };
        let mut sacked_now = false;
        let mut dsack_seen = false;
        if !blocks.is_empty() {
            let u = self.scoreboard.on_ack(self.snd_una, self.snd_max, blocks);
            dsack_seen = u.dsack;
            if u.dsack {
                self.rack.on_dsack(self.snd_una, self.snd_nxt);
            }
            sacked_now = self.mark_sacked(t, blocks);
        } else if advanced {
            self.scoreboard.on_ack(self.snd_una, self.snd_max, &[]);
        }
        // RFC 5681 §3.2 for a peer without SACK: the third duplicate ACK starts fast retransmit.
        let duplicate = !advanced
            && seg.payload.is_empty()
            && !seg.has(FIN)
            && self.snd_wnd == old_wnd
            && self.snd_una != self.snd_max;
        if advanced {
            self.dupacks = 0;
        } else if duplicate && !self.sack_on {
            self.dupacks += 1;
            // Each duplicate ACK says a segment left the network (RFC 5681 §3.2 inflates the
            // window for it; here the flight shrinks instead).
            self.pipe = self.pipe.saturating_sub(self.mss);
            if self.dupacks == 3 && self.recovery.is_none() {
                if let Some(first) = self.sent.front_mut() {
                    first.lost = true;
                }
                self.recompute_pipe();
                self.enter_recovery(t);
            }
        }
        if self.sack_on && (sacked_now || (advanced && self.recovery.is_some())) {
            self.detect_losses(now);
        } else if !self.sack_on && advanced && self.recovery.is_some_and(|p| lt(self.snd_una, p)) {
            // RFC 6582 §3.2 step 3: a partial ACK in recovery: the next segment is lost too.
            if let Some(first) = self.sent.front_mut() {
                if !first.retransmitted || first.lost {
                    first.lost = true;
                }
            }
            self.recompute_pipe();
        }
        let dsack = !blocks.is_empty() && dsack_seen;
        self.judge_episode(prior_una, tsecr, blocks, dsack);
        if self.recovery.is_some_and(|p| le(p, self.snd_una)) {
            self.recovery = None;
            self.rto_recovery = false;
            self.rack.on_recovery_end();
        }
        // Our FIN acknowledged: FIN-WAIT-1 to FIN-WAIT-2, CLOSING to TIME-WAIT, LAST-ACK to
        // CLOSED (RFC 9293 §3.10.7.4).
        if fin_acked {
            self.state = match self.state {
                State::FinWait1 => State::FinWait2,
                State::Closing => State::TimeWait,
                State::LastAck => State::Closed,
                s => s,
            };
        }
        true
    }

    /// SND.UNA moves to `ack`: the acknowledged bytes leave the ring, their records are delivered,
    /// the round trip is sampled and the window grows (RFC 6298 §5.3: the timer restarts).
    /// Returns whether this acknowledged our FIN. `tsecr`, the ACK's timestamp echo when the
    /// connection uses timestamps, gives the round trip when no segment it acknowledged does.
    pub(super) fn acknowledge(&mut self, now: Instant, ack: u32, tsecr: Option<u32>) -> bool {
        let t = us(now);
        let bytes = ack.wrapping_sub(self.snd_una);
        // The FIN's sequence number is no byte of the ring.
        let fin_acked = self.fin_seq().is_some_and(|f| lt(f, ack));
        let data = bytes - u32::from(fin_acked);
        self.tx.consume((data as usize).min(self.tx.len()));
        self.fin_acked |= fin_acked;
        let mut sample = None;
        while let Some(s) = self.sent.front_mut() {
            if le(s.end_seq, ack) {
                let s = self.sent.pop_front().expect("front exists");
                if !s.delivered && !s.lost {
                    self.pipe = self.pipe.saturating_sub(s.end_seq.wrapping_sub(s.seq));
                }
                if !s.delivered {
                    self.rack.on_delivered(&s, t, false);
                    if !s.retransmitted {
                        sample = Some(t.saturating_sub(s.xmit_ts));
                    }
                }
            } else if lt(s.seq, ack) {
                // Partly acknowledged: the rest stays.
                let gone = ack.wrapping_sub(s.seq);
                if !s.delivered && !s.lost {
                    self.pipe = self.pipe.saturating_sub(gone);
                }
                s.seq = ack;
                break;
            } else {
                break;
            }
        }
        self.snd_una = ack;
        if lt(self.snd_nxt, ack) {
            self.snd_nxt = ack;
        }
        // RFC 7323 §4.1: a timestamp echo measures the round trip even of a retransmitted
        // segment, where Karn's rule leaves the segments no sample (RFC 6298 §3); it ends a
        // timeout's backoff (§5.7), which otherwise lasts until new data is acknowledged.
        // Read only when no segment gave a sample (the common ACK has one).
        let ts_clock = self.ts_clock;
        let from_ts = || {
            let ecr = tsecr?;
            let (at, val) = ts_clock;
            let clock = val.wrapping_add(((now - at).total_millis()) as u32);
            let ms = clock.wrapping_sub(ecr);
            (ecr != 0 && ms < 1 << 30).then(|| u64::from(ms) * 1000)
        };
        if let Some(r) = sample.or_else(from_ts) {
            self.rtt.sample_us(r);
        }
        if self.tlp_out.is_some_and(|e| le(e, ack)) {
            self.tlp_out = None;
        }
        if self.recovery.is_none() || self.rto_recovery {
            let srtt = self.rtt.srtt_us().unwrap_or(1000);
            self.cc.on_ack(bytes, t, srtt);
        }
        // RFC 6298 §5.2/5.3: off when all is acknowledged, else restarted.
        self.rto_at = if self.snd_una == self.snd_max { None } else { Some(plus_us(now, self.rtt.rto_us())) };
        self.tlp_at = None;
        fin_acked
    }

    /// Marks delivered the records a SACK block covers whole; returns whether any was.
    pub(super) fn mark_sacked(&mut self, t: u64, blocks: &[(u32, u32)]) -> bool {
        let mut any = false;
        for &(l, r) in blocks {
            let first = self.sent.partition_point(|s| le(s.end_seq, l));
            for i in first..self.sent.len() {
                let s = self.sent[i];
                if !lt(s.seq, r) {
                    break;
                }
                if s.delivered || lt(s.seq, l) || lt(r, s.end_seq) {
                    continue;
                }
                if !s.lost {
                    self.pipe = self.pipe.saturating_sub(s.end_seq.wrapping_sub(s.seq));
                }
                let rec = &mut self.sent[i];
                rec.delivered = true;
                rec.lost = false;
                let rec = *rec;
                self.rack.on_delivered(&rec, t, false);
                any = true;
            }
        }
        any
    }

    /// RACK's loss detection (RFC 8985 §6.2 step 5), and entry into recovery when it finds a loss.
    pub(super) fn detect_losses(&mut self, now: Instant) {
        let t = us(now);
        let srtt = self.rtt.srtt_us().unwrap_or(1000);
        // Two walks of the records: the SACKed ones counted, then RACK's (which counts what it
        // marks lost).
        let sacked = self.sent.iter().filter(|s| s.delivered).count() as u32;
        let reo = self.rack.reo_wnd(self.recovery.is_some(), sacked, srtt);
        let (timeout, marked) = self.rack.detect_losses(t, reo, self.sent.make_contiguous());
        self.rack_at = timeout.map(|d| plus_us(now, d));
        if marked > 0 {
            self.recompute_pipe();
            if self.recovery.is_none() {
                self.enter_recovery(t);
            }
        }
    }

    pub(super) fn enter_recovery(&mut self, t: u64) {
        self.stats.fast_recoveries += 1;
        self.begin_episode();
        // RFC 6675 §5 (4.3), and PRR's (RFC 6937) at least one: the first lost segment goes at
        // once, whatever the flight.
        self.probe = true;
        let flight = self.snd_max.wrapping_sub(self.snd_una);
        self.cc.on_loss(flight, t);
        self.recovery = Some(self.snd_max);
    }

    /// A loss episode begins: what it is about to cut is kept for an undo.
    pub(super) fn begin_episode(&mut self) {
        self.undo = Some(Undo {
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            marker: self.snd_una,
            retrans: 0,
            ts: None,
        });
    }

    /// Judges the last loss episode on an ACK: spurious when the ACK that covers its first
    /// retransmission echoes a timestamp older than that retransmission (RFC 3522 §2: the
    /// original arrived), or when every retransmission came back as a D-SACK (RFC 2883 §4).
    /// A spurious episode is undone: the window before the cut (RFC 4015 §2), recovery over, and
    /// nothing left marked lost (RACK marks again what is still missing).
    fn judge_episode(&mut self, prior_una: u32, tsecr: Option<u32>, blocks: &[(u32, u32)], dsack: bool) {
        let Some(u) = self.undo.as_mut() else { return };
        let mut spurious = false;
        if dsack && u.retrans > 0 {
            let end = blocks[0].1;
            if le(end, prior_una) && lt(u.marker, end) {
                u.retrans -= 1;
                spurious = u.retrans == 0;
            }
        }
        if let Some((rts, end)) = u.ts {
            // The first ACK that covers the first retransmission echoes the timestamp of
            // whichever copy made it in order.
            if le(end, self.snd_una) {
                u.ts = None;
                spurious |= tsecr.is_some_and(|ecr| lt(ecr, rts));
            }
        }
        if !spurious {
            return;
        }
        let u = self.undo.take().expect("judged above");
        self.stats.undos += 1;
        self.cc.undo(u.cwnd, u.ssthresh);
        self.recovery = None;
        self.rto_recovery = false;
        self.rack.on_recovery_end();
        for s in self.sent.iter_mut() {
            s.lost = false;
        }
        self.recompute_pipe();
    }

    /// Bytes in flight, counted again from the records.
    pub(super) fn recompute_pipe(&mut self) {
        self.pipe = self.sent.iter().filter(|s| !s.delivered && !s.lost).map(|s| s.end_seq.wrapping_sub(s.seq)).sum();
    }
}
