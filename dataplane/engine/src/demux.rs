//! The demux: for each frame, one decision ([`Demux`]) from a few header reads and table lookups,
//! O(1) whatever the number of connections (see the crate documentation); and [`Verdict`], the
//! same reading for a gateway that asks whether a frame is the engine's at all.

use crate::flow::{self, Frame};
use crate::listener::{Admission, OnFull};
use crate::phy::{self, BurstDevice};
use crate::time_wait::TimeWaitAction;
use smoltcp::time::Instant;

use crate::upper::Service;
use crate::{Engine, SynCookies};

/// What the demux decided for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demux {
    /// An open connection's segment.
    Flow(u32),
    /// A SYN for a listener with room.
    Listener(usize),
    /// A SYN the listener answers with a SYN cookie.
    Cookie(usize),
    /// An ACK for a listener's port that matches no connection: it may carry a cookie.
    CookieAck(usize),
    /// A segment for a 4-tuple in TIME_WAIT.
    TimeWait(TimeWaitAction),
    /// Answered with an RST (full listener with `on_full = refuse`, or nothing wants it).
    Refuse,
    /// Dropped unseen (full listener with `on_full = drop`, or a TIME_WAIT segment with a bad
    /// checksum).
    Drop,
    /// Not TCP for us: ARP (the engine answers and learns), other IPv4 (smoltcp decides: an ICMP
    /// echo is answered), anything else (dropped).
    Other,
}

/// Whether a frame is for the engine, and why ([`Engine::classify`]): what a gateway that owns
/// the port asks before handing a frame in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A segment of an open connection, or of one in TIME_WAIT.
    Connection,
    /// A segment for a port with a listener.
    Listener,
    /// TCP for our address on a port with nothing: the engine answers it with an RST.
    ClosedPort,
    /// ARP asking for our address or answering us.
    Arp,
    /// Another IPv4 protocol for our address (ICMP echo is answered).
    OtherIp,
    /// Not for the engine (another address, another ethertype, ARP about someone else).
    NotOurs,
}

impl Verdict {
    /// Whether to hand the frame to the engine.
    pub fn is_ours(self) -> bool {
        !matches!(self, Verdict::NotOurs)
    }
}

impl<S: Service> Engine<S> {
    /// Says whether `frame` is for this engine, reading only its headers and the engine's tables
    /// (a few dozen nanoseconds; nothing changes). A gateway hands the engine the frames for which
    /// [`Verdict::is_ours`] holds and forwards the others.
    pub fn classify(&self, frame: &[u8]) -> Verdict {
        use smoltcp::wire::{ArpPacket, EthernetFrame};
        match flow::classify(frame, &self.addresses) {
            Frame::Tcp(seg) => {
                if self.flows.contains_key(&seg.tuple) || self.time_wait.contains(&seg.tuple) {
                    Verdict::Connection
                } else if self.by_port.contains_key(&seg.tuple.local_port) {
                    Verdict::Listener
                } else {
                    Verdict::ClosedPort
                }
            }
            Frame::Arp => {
                let Ok(eth) = EthernetFrame::new_checked(frame) else { return Verdict::NotOurs };
                match ArpPacket::new_checked(eth.payload()) {
                    Ok(arp) if self.addresses.iter().any(|a| a.octets() == arp.target_protocol_addr()) => Verdict::Arp,
                    _ => Verdict::NotOurs,
                }
            }
            Frame::OtherIp => Verdict::OtherIp,
            Frame::Other => Verdict::NotOurs,
        }
    }

    /// The demux decision for a classified frame (counts what it decides).
    pub(crate) fn demux<D: BurstDevice + ?Sized>(&mut self, now: Instant, class: &Frame, device: &mut D) -> Demux {
        let Frame::Tcp(seg) = class else { return Demux::Other };
        if let Some(&id) = self.flows.get(&seg.tuple) {
            return Demux::Flow(id);
        }
        if self.time_wait.contains(&seg.tuple) {
            // Act only on segments that are what they claim. The engine answers these itself, so
            // it checks what smoltcp would have checked on this device: what a port's receive
            // offload verified (or found intact, as virtio does for a local sender's segment whose
            // checksum it left to offload) is not checked again.
            let (ip, tcp) = (self.csum.ipv4.rx(), self.csum.tcp.rx());
            if !device.peek().is_some_and(|f| phy::checksums_ok(f, ip, tcp)) {
                return Demux::Drop;
            }
            match self.time_wait.on_segment(seg) {
                TimeWaitAction::Reuse => {} // the entry is gone: a new connection
                action => return Demux::TimeWait(action),
            }
        }
        let f = seg.flags;
        if f.syn && !f.ack && !f.rst {
            if let Some(&li) = self.by_port.get(&seg.tuple.local_port) {
                let l = &mut self.listeners[li];
                l.stats.syns += 1;
                if let Some(queued) = l.service.queued() {
                    l.stats.queued = queued; // B1: queued until the layer above takes it
                }
                if self.draining {
                    l.stats.refused += 1;
                    return Demux::Refuse;
                }
                if self.stats.open >= self.max_connections {
                    self.stats.over_max_connections += 1; // then as a full listener does
                } else {
                    match l.stats.admission(l.policy, self.syn_backlog) {
                        Admission::Admit if self.syn_cookies == SynCookies::Always => return Demux::Cookie(li),
                        Admission::Admit => return Demux::Listener(li),
                        // RFC 4987 §3.6: the half-open budget (`syn_backlog`) is used up; a cookie
                        // keeps nothing. (A policy that counts half-open connections in its queue
                        // limit is full, not out of budget, when they reach it: L4 refuses then.)
                        Admission::EvictOldest
                            if self.syn_cookies != SynCookies::Never && l.stats.half_open >= self.syn_backlog =>
                        {
                            return Demux::Cookie(li)
                        }
                        // Full after all if no half-open connection can give way (those whose
                        // handshake completed in this burst count as half-open until serviced).
                        Admission::EvictOldest if self.evict_oldest_half_open(now, li) => return Demux::Listener(li),
                        Admission::EvictOldest | Admission::Full => {}
                    }
                }
                let l = &mut self.listeners[li];
                l.service.rejected(l.on_full);
                return match l.on_full {
                    OnFull::Refuse => {
                        l.stats.refused += 1;
                        Demux::Refuse
                    }
                    OnFull::Drop => {
                        l.stats.dropped += 1;
                        Demux::Drop
                    }
                };
            }
        }
        if f.ack && !f.syn && !f.rst && self.syn_cookies != SynCookies::Never {
            if let Some(&li) = self.by_port.get(&seg.tuple.local_port) {
                return Demux::CookieAck(li);
            }
        }
        if !f.rst {
            self.stats.no_listener += 1;
        }
        Demux::Refuse
    }
}
