//! The control block's timers: delayed ACK, RACK, tail loss probe, retransmission, persist and
//! keepalive (RFC 6298 §5, RFC 8985 §6.3 and §7.3, RFC 9293 §3.8.6, RFC 1122 §4.2.3.6).

use super::*;

impl Tcb {
    /// When this connection next needs servicing without a segment, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = earliest(self.rto_at, self.tlp_at);
        let b = earliest(self.rack_at, self.delack_at);
        earliest(earliest(a, b), earliest(self.persist_at, self.keepalive_at))
    }

    /// Runs the timers that are due (RFC 6298 §5.4-5.7, RFC 8985 §6.3 and §7.3, the delayed ACK,
    /// the persist timer).
    pub fn on_timers(&mut self, now: Instant) {
        let t = us(now);
        if self.delack_at.is_some_and(|d| d <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if self.rack_at.is_some_and(|d| d <= now) {
            self.rack_at = None;
            self.detect_losses(now);
        }
        // The probe first: RFC 8985 §7.2 schedules it no later than the RTO, and one due with it
        // is sent as a probe.
        if self.tlp_at.is_some_and(|d| d <= now) {
            self.tlp_at = None;
            // In fast recovery too (see `output`), not after a timeout.
            if !self.rto_recovery && self.tlp_out.is_none() && self.snd_una != self.snd_max {
                // RFC 8985 §7.3: new data if the window allows, else the last segment again.
                self.stats.tlp += 1;
                let unsent = self.unsent();
                if unsent == 0 || self.usable_window() == 0 {
                    if let Some(last) = self.sent.iter_mut().rev().find(|s| !s.delivered) {
                        last.lost = true;
                    }
                    self.recompute_pipe();
                }
                self.probe = true;
                self.tlp_out = Some(self.snd_max);
                // RFC 8985 §7.3: the RTO runs again from the probe.
                self.rto_at = Some(plus_us(now, self.rtt.rto_us()));
            }
        }
        if self.rto_at.is_some_and(|d| d <= now) {
            self.rto_at = None;
            if self.snd_una != self.snd_max {
                // RFC 6298 §5.5: back off; RFC 5681 §3.1: one segment; everything outstanding is
                // sent again, SACKed or not: RFC 2018 §8 lets a receiver discard what it SACKed,
                // so after a timeout the sender forgets the SACKs (as RFC 6675 §5.1 advises).
                self.stats.timeouts += 1;
                // A timeout within an episode keeps the episode's state before any cut.
                if self.recovery.is_none() || self.undo.is_none() {
                    self.begin_episode();
                }
                self.rtt.on_timeout();
                let flight = self.snd_max.wrapping_sub(self.snd_una);
                self.cc.on_timeout(flight, t);
                for s in self.sent.iter_mut() {
                    s.delivered = false;
                    s.lost = true;
                }
                self.scoreboard.clear();
                self.pipe = 0;
                self.recovery = Some(self.snd_max);
                self.rto_recovery = true;
                self.tlp_out = None;
                self.tlp_at = None;
                // RFC 9293 §3.8.6.1: a window shut with data outstanding is probed all the same
                // (the retransmission cannot go past it), or its opening may never be heard.
                if self.snd_wnd == 0 {
                    self.ack_probe = true;
                }
            }
        }
        if self.persist_at.is_some_and(|d| d <= now) {
            self.persist_at = None;
            self.persist_backoff = (self.persist_backoff + 1).min(6);
            if self.usable_window() == 0 {
                self.ack_probe = true; // a shut window: probe it
            } else {
                self.probe = true; // a small one: the override timeout, send what fits
            }
        }
        if self.keepalive_at.is_some_and(|d| d <= now) {
            self.keepalive_at = None;
            if self.keepalive_sent >= self.cfg.keepalive_probes {
                // RFC 1122 §4.2.3.6: the peer is gone.
                self.stats.keepalive_timeouts += 1;
                self.timed_out = true;
                self.abort();
            } else {
                self.keepalive_sent += 1;
                self.stats.keepalive_probes += 1;
                self.ack_probe = true;
            }
        }
    }
}
