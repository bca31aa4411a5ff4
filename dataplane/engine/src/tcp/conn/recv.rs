//! A segment arrives (RFC 9293 §3.10.7.4, step by step), its data and FIN are taken, and the
//! window we offer (RFC 7323 §2.3, RFC 9293 §3.8.6.2.2).

use super::*;

impl Tcb {
    /// Takes a segment of this connection (RFC 9293 §3.10.7.4). `now` is the engine's clock.
    pub fn input(&mut self, now: Instant, seg: &Seg) {
        if self.state == State::Closed || self.predicted(now, seg) {
            return;
        }
        self.heard_at = now;
        self.keepalive_sent = 0;
        self.keepalive_at = None;
        let rst = seg.has(RST);
        // RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate
        // from an earlier wrap of the sequence space (an RST is judged by its number alone).
        if self.ts_on && !rst {
            if let Some((val, _)) = seg.options.ts {
                if lt(val, self.ts_recent) {
                    self.stats.paws_dropped += 1;
                    self.ack_now = true;
                    return;
                }
            }
        }
        // First, the sequence number (RFC 9293 §3.10.7.4's table of four cases).
        let wnd = self.rcv_wnd();
        let len = seg.seq_len();
        let off = seg.seq.wrapping_sub(self.rcv_nxt) as i32;
        let in_wnd = |o: i32| o >= 0 && (o as u32) < wnd;
        let acceptable = match (len, wnd) {
            (0, 0) => off == 0,
            (0, _) => in_wnd(off),
            (_, 0) => false,
            (_, _) => in_wnd(off) || in_wnd(off.wrapping_add(len as i32 - 1)),
        };
        // A zero window still takes the ACK and RST of a segment at RCV.NXT (§3.10.7.4).
        let ack_only = !acceptable && wnd == 0 && off == 0;
        if !acceptable && !ack_only {
            self.stats.out_of_window += 1;
            if !rst {
                self.ack_now = true; // and drop it
            }
            return;
        }
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
                self.ack_now = true;
            }
            return;
        }
        // Fourth, SYN in a synchronized state (RFC 5961 §4.2): a challenge ACK, nothing else.
        if seg.has(SYN) {
            self.stats.challenge_acks += 1;
            self.ack_now = true;
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
            if had_holes || self.quickacks > 0 {
                // RFC 5681 §4.2: at once when a segment fills (part of) a hole; and in quick-ACK
                // mode, while the sender's window is small.
                self.ack_now = true;
                self.quickacks = self.quickacks.saturating_sub(1);
            } else {
                self.ack_pending = self.ack_pending.saturating_add(1);
                // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: at least every second full segment.
                if self.ack_pending >= 2 {
                    self.ack_now = true;
                } else if self.delack_at.is_none() {
                    self.delack_at = Some(plus(now, self.cfg.ack_delay));
                }
            }
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
