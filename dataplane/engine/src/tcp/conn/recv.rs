//! A segment arrives (RFC 9293 §3.10.7.4, step by step), its data and FIN are taken, and the
//! window we offer (RFC 7323 §2.3, RFC 9293 §3.8.6.2.2).

use super::*;

impl Tcb {
    /// Takes a segment of this connection (RFC 9293 §3.10.7.4). `now` is the engine's clock.
    pub fn input(&mut self, now: Instant, seg: &Seg) {
        if self.state == State::Closed || self.predicted(now, seg) {
            return;
        }
        let rst = seg.has(RST);
        // RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate
        // from an earlier wrap of the sequence space (an RST is judged by its number alone).
        if self.ts_on && !rst {
            if let Some((val, _)) = seg.options.ts {
                if lt(val, self.ts_recent) && !self.disordered_ack(seg, val) {
                    self.stats.paws_dropped += 1;
                    self.oow_ack(now, seg);
                    return;
                }
            }
        }
        // First, the sequence number (RFC 9293 §3.10.7.4's table of four cases).
        let wnd = self.rcv_wnd();
        let len = seg.seq_len();
        let off = seg.seq.wrapping_sub(self.rcv_nxt) as i32;
        let in_wnd = |o: i32| o >= 0 && (o as u32) < wnd;
        // A segment without data may also sit exactly at the right edge, one past the table's
        // bound (as Linux's `tcp_sequence` allows): a peer that filled our window sends its next
        // ACK there, and when that ACK overtakes the data it follows, the strict test throws away
        // the only news that our data arrived, and we wait out an RTO.
        let acceptable = match (len, wnd) {
            (0, 0) => off == 0,
            (0, _) => off >= 0 && (off as u32) <= wnd,
            (_, 0) => false,
            (_, _) => in_wnd(off) || in_wnd(off.wrapping_add(len as i32 - 1)),
        };
        // A zero window still takes the ACK and RST of a segment at RCV.NXT (§3.10.7.4).
        let ack_only = !acceptable && wnd == 0 && off == 0;
        if !acceptable && !ack_only {
            self.stats.out_of_window += 1;
            // RFC 2883 §4: data we already hold is reported in the ACK's first block (a
            // D-SACK), so the sender can tell its retransmission was not needed.
            let end = seg.seq.wrapping_add(seg.payload.len() as u32);
            if !seg.payload.is_empty() && !rst && le(end, self.rcv_nxt) {
                self.dsack = Some((seg.seq, end));
            }
            if !rst {
                self.oow_ack(now, seg); // and drop it
            }
            return;
        }
        // The peer is heard only from a segment that fits: a blind sender's forged ones do not
        // keep a dead peer's connection alive against keepalive.
        self.heard_at = now;
        self.keepalive_sent = 0;
        self.keepalive_at = None;
        if ack_only && !seg.payload.is_empty() && !rst {
            // RFC 9293 §3.8.6.1: a probe of our zero window draws an ACK with the window.
            self.ack_now = true;
        }
        // Second, RST (RFC 5961 §3.2): exactly at RCV.NXT it resets; elsewhere in the window it
        // draws a challenge ACK.
        if rst {
            if off == 0 {
                self.reset = true;
                self.state = State::Closed;
            } else {
                self.stats.challenge_acks += 1;
                self.oow_ack(now, seg);
            }
            return;
        }
        // Fourth, SYN in a synchronized state (RFC 5961 §4.2): a challenge ACK, nothing else.
        if seg.has(SYN) {
            self.stats.challenge_acks += 1;
            self.oow_ack(now, seg);
            return;
        }
        // Fifth, ACK: a segment without one is dropped.
        if !seg.has(ACK) {
            return;
        }
        // RFC 7323 §4.3: TS.Recent is taken from a segment that covers Last.ACK.sent.
        if let Some((val, _)) = seg.options.ts {
            if self.ts_on && le(seg.seq, self.last_ack_sent) {
                self.ts_recent = val;
            }
        }
        if !self.on_ack(now, seg) {
            return;
        }
        // Sixth (URG) is not acted on: urgent data is delivered in line with the rest.
        // Seventh, the data.
        if !ack_only && matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            self.on_data(now, seg, off);
        }
        // Eighth, FIN: taken when it is next in order.
        if seg.has(FIN) && !ack_only {
            let fin = seg.seq.wrapping_add(seg.payload.len() as u32);
            self.pending_fin = Some(fin);
            self.ack_now = true;
        }
        self.take_fin();
    }

    /// A duplicate ACK that was merely overtaken by a later one (its timestamp older than
    /// TS.Recent by less than an RTO): PAWS guards against old data, and this carries none, only
    /// SACK blocks worth having in recovery. Linux's `tcp_disordered_ack` exempts it the same way.
    fn disordered_ack(&self, seg: &Seg, val: u32) -> bool {
        seg.payload.is_empty()
            && seg.flags & (SYN | FIN | RST) == 0
            && seg.has(ACK)
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_una
            && u32::from(seg.window) << self.snd_shift == self.snd_wnd
            && u128::from(self.ts_recent.wrapping_sub(val)) <= self.rtt.rto().as_millis()
    }

    /// An ACK owed to a segment that did not fit: out of the window, too old for PAWS, or one
    /// that calls for a challenge ACK. RFC 5961 §7 asks for a throttle, or forged segments make
    /// the connection send an ACK each to the real peer (and two endpoints that disagree can loop
    /// on them): one such ACK per [`OOW_ACK_INTERVAL`] per connection, as Linux's
    /// `tcp_invalid_ratelimit`. A segment with data is always answered (as Linux does too): it is
    /// no part of an ACK loop, and the peer needs the ACK to stop sending it again. So is a probe
    /// (keepalive or zero window: an ACK at exactly RCV.NXT - 1), which no blind sender can aim.
    pub(super) fn oow_ack(&mut self, now: Instant, seg: &Seg) {
        let probe = seg.seq == self.rcv_nxt.wrapping_sub(1) && seg.payload.len() <= 1;
        if (!seg.payload.is_empty() || probe) && !seg.has(SYN) {
            self.ack_now = true;
            return;
        }
        if self.last_oow_ack.is_some_and(|t| now < plus(t, OOW_ACK_INTERVAL)) {
            self.stats.acks_throttled += 1;
            return;
        }
        self.last_oow_ack = Some(now);
        self.ack_now = true;
    }

    /// In-order data arrived: when to ACK it. RFC 5681 §4.2: at once when it fills (part of) a
    /// hole, and in quick-ACK mode while the sender's window is small; else RFC 9293 §3.8.6.3: at
    /// least every second full segment, or after the delay.
    pub(super) fn ack_in_order(&mut self, now: Instant, filled_hole: bool) {
        if filled_hole || self.quickacks > 0 {
            self.ack_now = true;
            self.quickacks = self.quickacks.saturating_sub(1);
        } else {
            self.ack_pending = self.ack_pending.saturating_add(1);
            if self.ack_pending >= 2 {
                self.ack_now = true;
            } else if self.delack_at.is_none() {
                self.delack_at = Some(plus(now, self.cfg.ack_delay));
            }
        }
    }

    /// The peer's FIN, if it is next: RFC 9293 §3.10.7.4's eighth step.
    pub(super) fn take_fin(&mut self) {
        let Some(fin) = self.pending_fin else { return };
        if fin != self.rcv_nxt || self.peer_fin {
            return;
        }
        self.pending_fin = None;
        self.peer_fin = true;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.ack_now = true;
        self.state = match self.state {
            State::Established => State::CloseWait,
            // Our FIN not yet acknowledged: simultaneous close.
            State::FinWait1 => State::Closing,
            State::FinWait2 => State::TimeWait,
            s => s,
        };
    }

    /// In-window data at `off` from RCV.NXT (RFC 9293 §3.10.7.4 seventh step).
    pub(super) fn on_data(&mut self, now: Instant, seg: &Seg, off: i32) {
        let mut data = seg.payload;
        let mut off = off;
        if seg.has(SYN) {
            return;
        }
        if off < 0 {
            // Starts before RCV.NXT: its old part is a duplicate.
            let skip = (-(off as i64)) as usize;
            self.dsack = Some((seg.seq, seg.seq.wrapping_add(skip.min(data.len()) as u32)));
            if skip >= data.len() {
                if !data.is_empty() {
                    self.ack_now = true; // a retransmission we hold: the peer missed our ACK
                }
                return;
            }
            data = &data[skip..];
            off = 0;
        }
        let off = off as usize;
        let room = self.rx.free();
        if off >= room {
            return;
        }
        let data = &data[..data.len().min(room - off)];
        if data.is_empty() {
            return;
        }
        let _ = seg.has(PSH);
        if off == 0 {
            let had_holes = !self.ooo.is_empty();
            let at = self.rx.len();
            self.rx.write_at(at, data);
            self.rx.extend(data.len());
            let joined = self.ooo.advance(data.len() as u32);
            self.rx.extend(joined as usize);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(data.len() as u32 + joined);
            self.ack_in_order(now, had_holes);
        } else {
            // Out of order: kept in the ring past its end if the store has room; ACKed at once
            // either way (RFC 5681 §4.2), with SACK blocks.
            if self.ooo.add(off as u32, data.len() as u32) {
                let at = self.rx.len() + off;
                self.rx.write_at(at, data);
            } else {
                self.stats.ooo_rejected += 1;
            }
            self.ack_now = true;
            self.quickacks = QUICKACKS; // the sender is recovering: its window is small
        }
    }

    /// The window to offer now, as the field (RFC 7323 §2.3: scaled, at most 16 bits) and in
    /// bytes. Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): the right edge moves on
    /// only by at least min(MSS, half the ring); short of that, the last offer's edge stays.
    pub(super) fn offer(&self) -> (u16, u32) {
        let free = self.rcv_wnd();
        let grew = self.rcv_nxt.wrapping_add(free).wrapping_sub(self.rcv_adv) as i32;
        let step = self.mss.min(self.rx.capacity() as u32 / 2);
        let wnd = if grew > 0 && (grew as u32) < step {
            let kept = self.rcv_adv.wrapping_sub(self.rcv_nxt) as i32;
            (kept.max(0) as u32).min(free)
        } else {
            free
        };
        let field = (wnd >> self.rcv_shift).min(u32::from(u16::MAX));
        // The edge kept is the exact one (`rcv_adv`), not the field's rounding of it: rounded
        // again at each offer, it would creep down.
        (field as u16, wnd.min(u32::from(u16::MAX) << self.rcv_shift))
    }
}
