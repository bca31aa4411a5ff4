//! The service phase: each connection that had something happen this turn is run once, in named
//! steps: the end of its handshake ([`Engine::complete_handshake`]), its deadlines
//! ([`Engine::enforce_deadlines`]), its session ([`Engine::run_session`]), egress
//! ([`Engine::egress`]) and its next timer or its release ([`Engine::schedule`]).

use std::net::SocketAddrV4;

use smoltcp::iface::PollResult;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::neighbor::{self, Ether};
use crate::phy::BurstDevice;
use crate::slot::{Phase, Wait, SMOLTCP_MIN_RTO};
use crate::stream::{TcbStream, TcpStream};
use crate::upper::{Accept, ConnId, End, Progress, Service, Session};
use crate::{earliest, timer, Engine};

impl<S: Service> Engine<S> {
    /// Runs a connection that had something happen: handshake completion, its session, egress,
    /// its next timer, or its end.
    pub(crate) fn service<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, id: u32) {
        self.touch(id);
        let slot = &mut self.slots[id as usize];
        slot.dirty = false;
        if let Some(t) = &mut slot.tcb {
            t.on_timers(now);
        }
        let state = slot.state();
        if !slot.send_pending() {
            slot.in_flight_since = None; // all acknowledged (the session has not queued more yet)
        }
        if !self.complete_handshake(now, id, state) {
            return;
        }
        self.enforce_deadlines(now, id);
        self.run_session(now, id, state);
        let (emitted, poll_at) = self.egress(now, device, id);
        self.schedule(now, id, emitted, poll_at);
    }

    /// The end of a handshake, either way: a passive one hands the connection to its listener's
    /// service (SEMANTICS B4), an active one tells its session. Returns `false` when the
    /// connection is over (released).
    #[inline]
    fn complete_handshake(&mut self, now: Instant, id: u32, state: tcp::State) -> bool {
        let slot = &mut self.slots[id as usize];
        match &mut slot.phase {
            Phase::HalfOpen if state == tcp::State::Listen => {
                // An RST in SYN-RECEIVED returns smoltcp's socket to LISTEN (RFC 9293 §3.10.7.4,
                // passive open): for the engine that connection is over. Without this the slot
                // would stay half-open for ever, counted against the backlog.
                slot.socket().abort();
                slot.ended_by_engine = Some(End::Reset);
                self.release(now, id, false);
                return false;
            }
            Phase::HalfOpen if !matches!(state, tcp::State::SynReceived | tcp::State::Closed) => {
                self.take_over(now, id);
                self.accept(now, id);
            }
            Phase::Client { established, session }
                if !*established && !matches!(state, tcp::State::SynSent | tcp::State::Closed) =>
            {
                *established = true;
                session.established(now);
                slot.connect_deadline = None;
                slot.established_at = Some(now);
                self.stats.connected += 1;
                slot.heard(now);
                self.take_over(now, id);
            }
            _ => {}
        }
        true
    }

    /// A passive handshake completed: the listener's service accepts the connection, leaves it
    /// queued (B1), or has no room for it after all.
    fn accept(&mut self, now: Instant, id: u32) {
        let slot = &mut self.slots[id as usize];
        let l = &mut self.listeners[slot.listener];
        l.stats.half_open -= 1;
        l.stats.completed += 1;
        slot.established_at = Some(now);
        slot.heard(now);
        self.stats.established += 1;
        if l.closed {
            // The listener went away while this handshake was in flight: reset it.
            l.stats.queued += 1;
            slot.abort();
            slot.ended_by_engine = Some(End::Aborted);
            slot.phase = Phase::Queued;
            return;
        }
        let t = slot.tuple.expect("a half-open connection has its 4-tuple");
        let (local, remote) =
            (SocketAddrV4::new(t.local_ip, t.local_port), SocketAddrV4::new(t.remote_ip, t.remote_port));
        slot.phase = match l.service.accept(ConnId(id), local, remote, now) {
            Accept::Session(session) => {
                l.stats.accepted += 1;
                Phase::Accepted(session)
            }
            Accept::Queue => {
                l.stats.queued += 1;
                Phase::Queued
            }
            Accept::Refuse(session) => {
                l.stats.refused += 1;
                slot.abort();
                slot.ended_by_engine = Some(End::Aborted);
                Phase::Accepted(session)
            }
        };
    }

    /// Ends a connection whose time is up: a handshake past its connect deadline, a peer silent
    /// past `tcp_timeout` while the connection waits for it, or a session that asked for a reset.
    #[inline]
    fn enforce_deadlines(&mut self, now: Instant, id: u32) {
        let slot = &mut self.slots[id as usize];
        if let Some(deadline) = slot.connect_deadline {
            if now >= deadline {
                // The handshake did not complete in time: ETIMEDOUT, or EHOSTUNREACH if not even
                // the SYN could leave (no ARP answer).
                slot.connect_deadline = None;
                slot.ended_by_engine = Some(if slot.emitted { End::TimedOut } else { End::Unreachable });
                slot.abort();
            }
        }
        if slot.give_up(self.tcp_timeout).is_some_and(|t| now >= t) && slot.ended_by_engine.is_none() {
            // Waited for the peer, which stayed silent, for `tcp_timeout`: reset.
            if let Some(t) = &slot.tcb {
                tracing::warn!(tuple = ?slot.tuple, tcb = ?t, "the peer stayed silent for tcp_timeout: reset");
            }
            slot.ended_by_engine = Some(End::TimedOut);
            slot.abort();
        }
        if slot.ended_by_engine.is_none() && slot.session().is_some_and(|s| s.abort_requested()) {
            slot.ended_by_engine = Some(End::Aborted);
            slot.abort();
        }
    }

    /// Drives the connection's session while the connection is open, and queues our FIN when the
    /// session is done. `state` is the TCP state read at the start of the service.
    #[inline]
    fn run_session(&mut self, now: Instant, id: u32, state: tcp::State) {
        let slot = &mut self.slots[id as usize];
        // Every abort above says why in `ended_by_engine`: without one, the state is as read.
        // A state read after the handshake completed (and a take-over) or an abort: the one now.
        let state = if slot.ended_by_engine.is_some() || slot.tcb.is_some() { slot.state() } else { state };
        let handshaking = matches!(state, tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived);
        let ended = state == tcp::State::Closed || (state == tcp::State::TimeWait && !slot.unread_for_session());
        if !slot.closing && !handshaking && !ended {
            let close = match (&mut slot.phase, &mut slot.tcb) {
                (Phase::Accepted(session) | Phase::Client { session, .. }, Some(tcb)) => {
                    session.drive(now, &mut TcbStream(tcb, &mut slot.bytes)) == Progress::Close
                }
                (Phase::Accepted(session) | Phase::Client { session, .. }, None) => {
                    let sock = slot.set.get_mut::<tcp::Socket>(slot.handle);
                    session.drive(now, &mut TcpStream(sock, &mut slot.bytes)) == Progress::Close
                }
                // A queued connection whose peer has gone leaves the queue.
                (Phase::Queued, _) => state == tcp::State::CloseWait,
                _ => false,
            };
            if close {
                match &mut slot.tcb {
                    Some(t) => t.close(),
                    None => {
                        let sock = slot.set.get_mut::<tcp::Socket>(slot.handle);
                        sock.close();
                        // The ACK of the peer's FIN must leave before the socket is recycled into
                        // the TIME_WAIT table (smoltcp delays it 10 ms otherwise).
                        sock.set_ack_delay(None);
                    }
                }
                slot.closing = true;
            }
        }
    }

    /// Sends what smoltcp has for the connection. Returns whether anything left, and the next
    /// poll if egress already knows it (`Some(None)`: never; `None`: ask smoltcp).
    #[inline]
    fn egress<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        id: u32,
    ) -> (bool, Option<Option<Instant>>) {
        if self.slots[id as usize].tcb.is_some() {
            return self.own_egress(now, device, id);
        }
        let slot = &mut self.slots[id as usize];
        // smoltcp sends at most one segment per call. After each, its `poll_at` (which mirrors
        // the start of its dispatch) says whether another is due now; asking it is cheaper than a
        // call that sends nothing, and its answer is needed below anyway. An open connection
        // whose segment carried the last byte queued needs no asking (see `Slot::sent_all`).
        let open = matches!(slot.socket().state(), tcp::State::Established | tcp::State::CloseWait);
        let mut emitted = false;
        let mut poll_at = None;
        if slot.peer_mac == [0; 6] && matches!(slot.phase, Phase::Client { .. }) {
            // A connection the engine opened that has not heard its peer yet: its next hop's MAC.
            let t = slot.tuple.expect("an outgoing connection has its 4-tuple");
            match self.resolve(now, device, &t) {
                Some(mac) => self.slots[id as usize].peer_mac = mac,
                // Wait for an ARP frame, or ask again in a second.
                None => poll_at = Some(Some(now + neighbor::ASK_EVERY)),
            }
        }
        let slot = &mut self.slots[id as usize];
        let dst = slot.peer_mac;
        let mut dev = Ether::new(device, self.mac, dst);
        while dst != [0; 6] && self.iface.poll_egress(now, &mut dev, &mut slot.set) == PollResult::SocketStateChanged {
            emitted = true;
            let sent = dev.sent();
            if let Some(s) = sent.filter(|s| s.syn) {
                slot.iss = s.seq;
                slot.hs.syn_sent_at.get_or_insert(now);
                slot.hs.syn_sends = slot.hs.syn_sends.saturating_add(1);
            }
            // The retransmission timer started no earlier than the data in flight did: this
            // segment's, or older data's that another timer firing since (a delayed ACK's, say)
            // has not moved. Once that is a second old, smoltcp is asked.
            let rto_at = slot.in_flight_since.unwrap_or(now) + SMOLTCP_MIN_RTO;
            if open && rto_at > now && slot.sent_all(sent) {
                let at = earliest(slot.timer_at, Some(rto_at));
                debug_assert!(
                    self.iface.poll_at(now, &slot.set).is_none_or(|t| t > now && Some(t) >= at),
                    "smoltcp's next poll is before the engine's"
                );
                poll_at = Some(at);
                break;
            }
            let at = self.iface.poll_at(now, &slot.set);
            if at.is_none_or(|t| t > now) {
                poll_at = Some(at);
                break;
            }
        }
        slot.emitted |= emitted;
        (emitted, poll_at)
    }

    /// After egress: releases an ended connection, or notes what it waits for and files its next
    /// timer (the earliest of smoltcp's poll, the connect deadline and the give-up time).
    #[inline]
    fn schedule(&mut self, now: Instant, id: u32, emitted: bool, poll_at: Option<Option<Instant>>) {
        let slot = &mut self.slots[id as usize];
        let state = slot.state();
        // A connection in TIME_WAIT whose session has yet to read what came before the peer's FIN
        // stays until it has (`Slot::unread_for_session`); the layer above wakes it.
        if state == tcp::State::Closed || (state == tcp::State::TimeWait && !slot.unread_for_session()) {
            self.release(now, id, state == tcp::State::TimeWait);
            return;
        }
        let queued = slot.send_pending();
        slot.in_flight_since = if queued { Some(slot.in_flight_since.unwrap_or(now)) } else { None };
        let wants_to_send = queued
            || matches!(
                state,
                tcp::State::SynSent
                    | tcp::State::SynReceived
                    | tcp::State::FinWait1
                    | tcp::State::Closing
                    | tcp::State::LastAck
            );
        slot.waiting = match (slot.waiting, wants_to_send) {
            (Some(Wait::Answer { asked_at }), true) => {
                Some(Wait::Answer { asked_at: asked_at.or(emitted.then_some(now)) })
            }
            (_, true) => Some(Wait::Answer { asked_at: emitted.then_some(now) }),
            (Some(w @ Wait::PeerFin { .. }), false) if state == tcp::State::FinWait2 => Some(w),
            (_, false) if state == tcp::State::FinWait2 => Some(Wait::PeerFin { since: now }),
            (_, false) => None,
        };
        let give_up = slot.give_up(self.tcp_timeout);
        let poll_at = poll_at.unwrap_or_else(|| self.iface.poll_at(now, &slot.set));
        let wake = if slot.closing { None } else { slot.session().and_then(|s| s.deadline()) };
        let at = earliest(earliest(poll_at, slot.connect_deadline), earliest(give_up, wake));
        if !emitted && wants_to_send && !slot.neighbor_wait {
            // Maybe blocked on ARP: poll it again when an ARP frame arrives.
            slot.neighbor_wait = true;
            self.neighbor_wait.push(id);
        }
        slot.timer_at = at;
        if let Some(at) = at {
            // One live entry per slot: add one only if none is filed at or before this deadline.
            if slot.wheel_tick.is_none_or(|t| timer::tick_of(at) < t) {
                slot.wheel_tick = Some(self.timers.insert(id, at));
            }
        }
    }

    /// Returns an ended connection's slot to the pool; a connection in TIME_WAIT leaves an entry.
    pub(crate) fn release(&mut self, now: Instant, id: u32, time_wait: bool) {
        let slot = &mut self.slots[id as usize];
        if let Some(t) = &slot.tcb {
            if t.timed_out && slot.ended_by_engine.is_none() {
                slot.ended_by_engine = Some(End::TimedOut); // keepalive probes unanswered
            }
            slot.rst_seen |= t.reset;
            if t.peer_fin() {
                slot.peer_fin_end = Some(t.rcv_nxt());
            }
        }
        let end = match slot.ended_by_engine.take() {
            Some(e) => e,
            None if slot.rst_seen => End::Reset,
            None if time_wait || slot.peer_fin_end.is_some() => End::Graceful,
            None if slot.emitted => End::TimedOut,
            None => End::Unreachable,
        };
        if end != End::Graceful {
            if let Some(t) = &slot.tcb {
                tracing::debug!(tuple = ?slot.tuple, ?end, tcb = ?t, "a connection of the engine's TCP ended");
            }
        }
        if let Some(t) = slot.tuple.take() {
            self.flows.remove(&t);
            if time_wait {
                self.time_wait.insert(t, slot.peer_fin_end.unwrap_or(0), now);
            }
        }
        match std::mem::replace(&mut slot.phase, Phase::Free) {
            Phase::HalfOpen => self.listeners[slot.listener].stats.half_open -= 1,
            Phase::Queued => self.listeners[slot.listener].stats.queued -= 1,
            Phase::Accepted(mut session) => session.closed(true, end),
            Phase::Client { mut session, established } => {
                if !established {
                    self.stats.connect_failed += 1;
                }
                session.closed(established, end);
            }
            Phase::Armed | Phase::Free => unreachable!("only connections are released"),
        }
        self.stats.open -= 1;
        self.stats.closed += 1;
        slot.peer_fin_end = None;
        slot.peer_mac = [0; 6];
        slot.closing = false;
        slot.rst_seen = false;
        slot.emitted = false;
        slot.connect_deadline = None;
        slot.waiting = None;
        slot.established_at = None;
        slot.bytes = [0; 2];
        slot.in_flight_since = None;
        slot.ooo_until = None;
        // `neighbor_wait` stays: the slot may still be in the list (it is skipped while free).
        slot.timer_at = None; // a wheel entry still filed for it fires and is ignored
        slot.hs = Default::default();
        self.give_back(id);
        self.free.push(id);
    }
}
