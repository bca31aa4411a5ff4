//! What the control block sends: retransmissions, new data, the FIN, probes and ACKs, within
//! the windows (RFC 9293 §3.8.6, RFC 8985 §6.3 and §7).

use super::*;

impl Tcb {
    /// Bytes queued and not yet sent.
    pub(super) fn unsent(&self) -> u32 {
        let queued_end = self.snd_una.wrapping_add(self.tx.len() as u32);
        if lt(self.snd_nxt, queued_end) {
            queued_end.wrapping_sub(self.snd_nxt)
        } else {
            0
        }
    }

    /// What the peer's window still allows past SND.NXT.
    pub(super) fn usable_window(&self) -> u32 {
        let right = self.snd_una.wrapping_add(self.snd_wnd);
        if lt(self.snd_nxt, right) {
            right.wrapping_sub(self.snd_nxt)
        } else {
            0
        }
    }

    /// Sends what is due now: retransmissions of lost segments, new data and our FIN within the
    /// windows, probes, and an ACK or window update if nothing else carried one. `ts_now` is our
    /// timestamp clock. Returns how many segments left.
    pub fn output(&mut self, now: Instant, ts_now: u32, emit: &mut impl Emit) -> usize {
        if let Some(n) = self.output_predicted(now, ts_now, emit) {
            return n;
        }
        self.ts_clock = (now, ts_now);
        let mut n = 0;
        if self.rst_out {
            self.rst_out = false;
            if self.emit_segment(ts_now, self.acceptable_seq(), RST | ACK, 0, 0, emit) {
                n += 1;
            }
            return n;
        }
        if self.state == State::Closed {
            return 0;
        }
        let t = us(now);
        let cwnd = self.cc.cwnd();
        // Retransmissions first: segments marked lost, oldest first, within the congestion
        // window (RFC 8985 §6.3 / RFC 6675 §5 NextSeg's rule 1).
        let mut i = 0;
        while i < self.sent.len() {
            let s = self.sent[i];
            i += 1;
            if !s.lost || s.delivered {
                continue;
            }
            // RFC 9293 §3.8.6: nothing past the peer's window, retransmissions included (a peer
            // may shrink it, and Linux since 6.17 discards a segment that ends past it whole,
            // ACK field and all, while its receive queue is not empty). What fits goes now; the
            // rest stays lost in a record of its own.
            let right = self.snd_una.wrapping_add(self.snd_wnd);
            if !lt(s.seq, right) {
                break;
            }
            let end = if lt(right, s.end_seq) { right } else { s.end_seq };
            let len = end.wrapping_sub(s.seq);
            if self.pipe > 0 && self.pipe.saturating_add(len) > cwnd && !self.probe {
                break;
            }
            if !self.send_range(ts_now, s.seq, end, emit) {
                return n;
            }
            if end != s.end_seq {
                self.sent[i - 1].seq = end;
                self.sent.insert(i - 1, SentSegment { end_seq: end, ..s });
            }
            n += 1;
            self.probe = false;
            self.stats.retransmits += 1;
            if let Some(u) = self.undo.as_mut() {
                u.retrans += 1;
                u.ts.get_or_insert((ts_now, end));
            }
            let r = &mut self.sent[i - 1];
            r.lost = false;
            r.retransmitted = true;
            r.xmit_ts = t;
            self.pipe = self.pipe.saturating_add(len);
        }
        // New data, then the FIN.
        let mut sws_blocked = false;
        let mss = self.data_mss();
        loop {
            let unsent = self.unsent();
            let fin_due = self.fin_seq() == Some(self.snd_nxt);
            if unsent == 0 && !fin_due {
                break;
            }
            let window = self.usable_window();
            let len = unsent.min(mss).min(window);
            if unsent > 0 && len == 0 {
                break; // the window is shut: the persist timer probes it
            }
            let fits_cwnd = self.pipe == 0 || self.pipe.saturating_add(len.max(1)) <= cwnd;
            if !fits_cwnd && !self.probe {
                break;
            }
            // RFC 9293 §3.8.6.2.1: no small segment while more is queued, unless it is half the
            // largest window the peer offered (the persist timer below is the override timeout).
            if len < mss && len < unsent && len < self.max_snd_wnd / 2 && !self.probe {
                sws_blocked = true;
                break;
            }
            let with_fin = self.fin_queued && len == unsent;
            let start = self.snd_nxt;
            let end = start.wrapping_add(len).wrapping_add(u32::from(with_fin));
            if !self.send_range(ts_now, start, end, emit) {
                return n;
            }
            n += 1;
            self.probe = false;
            self.snd_nxt = end;
            if lt(self.snd_max, end) {
                self.snd_max = end;
            }
            self.sent.push_back(SentSegment {
                xmit_ts: t,
                seq: start,
                end_seq: end,
                retransmitted: false,
                delivered: false,
                lost: false,
            });
            self.pipe = self.pipe.saturating_add(end.wrapping_sub(start));
            if with_fin {
                break;
            }
        }
        // The persist timer: data waits, the window is shut (or too small to use, §3.8.6.2.1) and
        // nothing is in flight to bring an update (RFC 9293 §3.8.6.1).
        if self.unsent() > 0 && (self.usable_window() == 0 || sws_blocked) && self.snd_una == self.snd_max {
            if self.persist_at.is_none() {
                let rto = self.rtt.rto() * (1 << self.persist_backoff);
                self.persist_at = Some(plus(now, rto.min(Duration::from_secs(60))));
            }
        } else {
            self.persist_at = None;
        }
        // A window update when the application's reads opened the window by at least two
        // segments or half the ring (RFC 9293 §3.8.6.2.2), an ACK that is due, or a probe with
        // nothing to carry it (an ACK with an old sequence number draws the peer's ACK).
        // The window counts as far as a field can offer it (65,535 << RCV.Wind.Shift): a ring
        // wider than that is no opening (the fuzz target `tcp` found every output sending one).
        let offerable = self.rcv_wnd().min(u32::from(u16::MAX) << self.rcv_shift);
        let right = self.rcv_nxt.wrapping_add(offerable);
        let opened = right.wrapping_sub(self.rcv_adv) as i32;
        let update = opened > 0 && (opened as u32) >= (2 * self.mss).min(self.rx.capacity() as u32 / 2);
        if n == 0 && (self.ack_now || update || self.ack_probe) {
            let seq = if self.ack_probe { self.snd_una.wrapping_sub(1) } else { self.acceptable_seq() };
            if self.emit_segment(ts_now, seq, ACK, 0, 0, emit) {
                n += 1;
            }
        }
        self.ack_probe = false;
        // Keepalive: armed while nothing is outstanding (RFC 1122 §4.2.3.6), from when the peer
        // was last heard, then every interval while probes go unanswered.
        if let Some(idle) = self.cfg.keepalive {
            let quiet = self.snd_una == self.snd_max && self.unsent() == 0 && self.state != State::TimeWait;
            self.keepalive_at = match (quiet, self.keepalive_at) {
                (false, _) => None,
                (true, Some(at)) => Some(at),
                (true, None) if self.keepalive_sent == 0 => Some(plus(self.heard_at, idle)),
                (true, None) => Some(plus(now, self.cfg.keepalive_interval)),
            };
        }
        // Timers for what is in flight: the RTO (RFC 6298 §5.1) and the tail loss probe (RFC
        // 8985 §7.2), armed when nothing armed them yet. RFC 8985 §7.2 arms no probe in loss
        // recovery; the engine does in fast recovery (not after a timeout). A lost retransmission
        // followed by a lost tail, or a lost last ACK while our window is shut, otherwise waits
        // out the RTO: over a 5 % lossy wire, once every few MiB (virtual 8 MiB transfers, 5
        // seeds: RTOs 12 -> 2, time 3.9 s -> 1.8 s). A needless probe costs one segment, and its
        // D-SACK tells (RFC 8985 §7.4).
        if self.snd_una != self.snd_max {
            if self.rto_at.is_none() {
                self.rto_at = Some(plus_us(now, self.rtt.rto_us()));
            }
            if !self.rto_recovery && self.tlp_out.is_none() && self.tlp_at.is_none() {
                let segs = self.snd_max.wrapping_sub(self.snd_una).div_ceil(self.mss);
                let pto = rack::probe_timeout(self.rtt.srtt_us(), segs, PEER_ACK_DELAY_US, self.rtt.rto_us());
                self.tlp_at = Some(plus_us(now, pto.max(MIN_PTO_US)));
            }
        }
        n
    }

    /// The payload of a new data segment: the MSS (less timestamps), less room for the SACK
    /// blocks owed while out-of-order data is held. RFC 2018 §4 wants them on every ACK then, and
    /// a peer whose data we echo hears our ACKs mostly on full data segments: without the blocks
    /// it cannot tell what arrived, and sends again what we hold (Linux's `tcp_current_mss`
    /// makes the same room).
    pub(super) fn data_mss(&self) -> u32 {
        if !self.sack_on || (self.ooo.is_empty() && self.dsack.is_none()) {
            return self.mss;
        }
        let max = if self.ts_on { 3 } else { 4 };
        let blocks = (self.ooo.len() + usize::from(self.dsack.is_some())).min(max) as u32;
        self.mss.saturating_sub(4 + 8 * blocks).max(1)
    }

    /// The sequence number of a segment without data: SND.NXT, or the right edge of the peer's
    /// window if SND.NXT is past it (the peer shrank it). The peer's acceptance test (RFC 9293
    /// §3.10.7.4, first step) discards a segment that starts past its window, and with it the ACK
    /// it carries.
    pub(super) fn acceptable_seq(&self) -> u32 {
        let right = self.snd_una.wrapping_add(self.snd_wnd);
        if lt(right, self.snd_nxt) {
            right
        } else {
            self.snd_nxt
        }
    }

    /// Sends `[start, end)`: bytes of the ring, and the FIN if `end` is one past it.
    pub(super) fn send_range(&mut self, ts_now: u32, start: u32, end: u32, emit: &mut impl Emit) -> bool {
        let fin = self.fin_seq().is_some_and(|f| f.wrapping_add(1) == end);
        let len = end.wrapping_sub(start) - u32::from(fin);
        let mut flags = ACK;
        if fin {
            flags |= FIN;
        }
        if len > 0 {
            flags |= PSH;
        }
        let off = start.wrapping_sub(self.snd_una) as usize;
        self.emit_segment(ts_now, start, flags, off, len as usize, emit)
    }

    /// Emits one segment from `seq` with `flags` and `len` bytes of the ring from `off`, carrying
    /// our ACK, window, timestamps and SACK blocks (RFC 2018 §4: on every segment while
    /// out-of-order data is held).
    pub(super) fn emit_segment(
        &mut self,
        ts_now: u32,
        seq: u32,
        flags: u8,
        off: usize,
        len: usize,
        emit: &mut impl Emit,
    ) -> bool {
        let mut blocks = [(0u32, 0u32); MAX_SACK];
        // SACK blocks take 4 bytes and 8 per block of the segment's room (the MSS less
        // timestamps): new data leaves room for them ([`Tcb::data_mss`]); a full-sized
        // retransmission carries none.
        let room = (self.mss as usize).saturating_sub(len);
        let fit = if room >= 12 { (room - 4) / 8 } else { 0 };
        let max = if self.ts_on { 3 } else { 4 }.min(fit);
        let mut nb = 0;
        let mut dsack_sent = false;
        if self.sack_on && flags & RST == 0 && max > 0 {
            // The D-SACK block first (RFC 2883 §4), then the out-of-order ranges.
            if let Some(d) = self.dsack {
                blocks[0] = d;
                nb = 1;
                dsack_sent = true;
            }
            if !self.ooo.is_empty() {
                nb += self.ooo.blocks(self.rcv_nxt, &mut blocks[nb..max]);
            }
        }
        // The offer is read once: sending changes neither RCV.NXT nor the ring.
        let (window, offered) = self.offer();
        let out = Out {
            syn: None,
            seq,
            ack: self.rcv_nxt,
            flags,
            window,
            ts: self.ts_on.then_some((ts_now, self.ts_recent)),
            sack: &blocks[..nb],
            data: self.tx.get(off, len),
        };
        if !emit.emit(&out) {
            return false;
        }
        if dsack_sent {
            self.dsack = None;
        }
        self.sent_ack(offered);
        true
    }

    /// An ACK of RCV.NXT that offered `offered` bytes left: nothing is owed any more.
    pub(super) fn sent_ack(&mut self, offered: u32) {
        self.ack_now = false;
        self.ack_pending = 0;
        self.delack_at = None;
        self.last_ack_sent = self.rcv_nxt;
        self.rcv_adv = self.rcv_nxt.wrapping_add(offered);
    }
}
