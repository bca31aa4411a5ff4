//! The engine's own TCP inside the engine: a connection is taken over from smoltcp when its
//! handshake completes ([`Engine::take_over`]), its segments go to its control block
//! ([`Engine::own_ingress`]), what the control block sends goes out through the device
//! ([`Engine::own_egress`]), and when it ends its slot's buffers go back to a smoltcp socket for
//! the slot's next handshake ([`Engine::give_back`]).
//!
//! The hand-over needs what the handshake settled, which smoltcp keeps private: the engine reads
//! it from the handshake's segments as they pass ([`Engine::note_handshake`]: the peer's SYN or
//! SYN-ACK options, its last window and timestamp) and from what it knows of smoltcp's side (our
//! ISS, read off the SYN or SYN-ACK it sent; the window scale it offers, which follows from the
//! receive buffer's size as smoltcp's `reset` computes it; SACK-permitted and timestamps, which
//! it offers on a SYN and echoes on a SYN-ACK).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use smoltcp::phy::TxToken;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::flow::Segment;
use crate::phy::{self, BurstDevice};
use crate::slot::Phase;
use crate::tcp::conn::{Handshake, Tcb};
use crate::tcp::csum;
use crate::tcp::hdr::Template;
use crate::tcp::ring::Ring;
use crate::tcp::seg::{self, Out, Path, SYN};
use crate::upper::Service;
use crate::Engine;

/// Our MSS: a 1500-byte MTU less the IPv4 and TCP headers (what smoltcp advertises, and a SYN
/// cookie's SYN-ACK).
pub(crate) const OUR_MSS: u16 = 1460;
/// The MSS assumed of a peer that sent none (RFC 9293 §3.7.1).
const DEFAULT_MSS: u16 = 536;

/// The window scale smoltcp offers for a receive buffer of `cap` bytes: the shift that makes the
/// buffer fit 16 bits (its `reset`).
pub(crate) fn our_wscale(cap: usize) -> u8 {
    let log2 = usize::BITS - cap.leading_zeros();
    log2.saturating_sub(16).min(14) as u8
}

/// A connection the engine's own TCP runs: its control block and its prebuilt headers, in one
/// allocation. When the connection ends it is kept for a later one ([`Engine::own`]): the pool
/// grows to the most connections owned at once, and hand-overs then allocate nothing.
pub(crate) struct Owned {
    pub(crate) tcb: Tcb,
    pub(crate) hdr: Template,
}

impl Deref for Owned {
    type Target = Tcb;
    fn deref(&self) -> &Tcb {
        &self.tcb
    }
}

impl DerefMut for Owned {
    fn deref_mut(&mut self) -> &mut Tcb {
        &mut self.tcb
    }
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.tcb.fmt(f)
    }
}

impl<S: Service> Engine<S> {
    /// The engine's own TCP runs connection `id` from now on, from `hs`, over `tx` and `rx`: a
    /// pooled control block is renewed (or, while the pool is empty, one is made), with the
    /// headers of the slot's 4-tuple and peer.
    pub(crate) fn own(&mut self, id: u32, hs: &Handshake, tx: Ring, rx: Ring, now: Instant) {
        let slot = &mut self.slots[id as usize];
        let t = slot.tuple.expect("an owned connection has its 4-tuple");
        let hdr = Template::new(&Path {
            src_mac: self.mac,
            dst_mac: slot.peer_mac,
            src_ip: t.local_ip,
            dst_ip: t.remote_ip,
            src_port: t.local_port,
            dst_port: t.remote_port,
        });
        let owned = match self.spare.pop() {
            Some(mut o) => {
                o.tcb.renew(hs, self.tcp, tx, rx, now);
                o.hdr = hdr;
                o
            }
            None => Box::new(Owned { tcb: Tcb::new(hs, self.tcp, tx, rx, now), hdr }),
        };
        slot.tcb = Some(owned);
    }

    /// Notes a segment of a handshake in progress, before smoltcp takes it: the options of the
    /// peer's SYN or SYN-ACK, and the window, numbers and timestamp of its latest segment.
    pub(crate) fn note_handshake(&mut self, id: u32, frame: &[u8]) {
        let Some(s) = seg::parse(frame) else { return };
        let hs = &mut self.slots[id as usize].hs;
        if s.has(SYN) {
            hs.peer = s.options;
        }
        hs.window = s.window;
        hs.window_is_syn = s.has(SYN);
        hs.seq = s.seq;
        hs.ack = s.ack;
        if let Some((val, _)) = s.options.ts {
            hs.tsval = Some(val);
        }
    }

    /// The handshake of connection `id` completed (smoltcp's socket is ESTABLISHED or
    /// CLOSE-WAIT): the engine's own TCP takes it over. The socket is dropped (its borrow of the
    /// buffers ends); the bytes it received stay where they are, at the start of the receive ring.
    pub(crate) fn take_over(&mut self, now: Instant, id: u32) {
        if !self.engine_tcp {
            return;
        }
        let client = matches!(self.slots[id as usize].phase, Phase::Client { .. });
        let slot = &mut self.slots[id as usize];
        if slot.tcb.is_some() {
            return;
        }
        let rx_start = slot.rx_region.start();
        let sock = slot.socket();
        let state = sock.state();
        if !matches!(state, tcp::State::Established | tcp::State::CloseWait) {
            return;
        }
        let received = sock.recv_queue();
        // smoltcp's ring was cleared when the socket was armed, so what it received starts at the
        // buffer's first byte; copied out if not (it never happens, but costs nothing to check).
        let in_place =
            received == 0 || sock.peek(received).is_ok_and(|b| b.len() == received && b.as_ptr() == rx_start);
        let moved = if in_place {
            None
        } else {
            let mut v = vec![0; received];
            let n = sock.recv_slice(&mut v).unwrap_or(0);
            v.truncate(n);
            Some(v)
        };
        slot.set.remove(slot.handle);
        // SAFETY: the socket that borrowed the regions is gone (removed and dropped above); the
        // rings are their only users until `give_back` ends them.
        let (mut rx, tx) = unsafe {
            (Ring::with_data(slot.rx_region, if in_place { received } else { 0 }), Ring::new(slot.tx_region))
        };
        let received = match moved {
            Some(v) => rx.push(&v),
            None => received,
        };
        let hs = self.handshake(id, now, received, state == tcp::State::CloseWait, client);
        self.own(id, &hs, tx, rx, now);
    }

    /// What the handshake of connection `id` settled, from its notes: `received` bytes already in
    /// the receive ring, the peer's FIN taken with them, and whether we opened it (`client`: the
    /// SYN-ACK still needs our ACK).
    fn handshake(&self, id: u32, now: Instant, received: usize, fin_received: bool, client: bool) -> Handshake {
        let slot = &self.slots[id as usize];
        let n = slot.hs;
        let peer_mss = match n.peer.mss {
            Some(0) | None => DEFAULT_MSS,
            Some(m) => m,
        };
        let wscale = n.peer.wscale.map(|peer| (peer, our_wscale(slot.rx_region.len())));
        let snd_shift = wscale.map_or(0, |w| w.0);
        // RFC 7323 §2.2: the window of a SYN-ACK is never scaled.
        let window = if n.window_is_syn { u32::from(n.window) } else { u32::from(n.window) << snd_shift };
        Handshake {
            iss: slot.iss,
            irs: slot.irs,
            mss: peer_mss.min(OUR_MSS),
            wscale,
            sack: n.peer.sack_permitted,
            ts_recent: n.peer.ts.map(|(v, _)| n.tsval.unwrap_or(v)),
            window,
            wl1: n.seq,
            wl2: n.ack,
            rtt: match (n.syn_sends, n.syn_sent_at) {
                (1, Some(at)) => Some(Duration::from_micros((now - at).total_micros())),
                _ => None,
            },
            received,
            fin_received,
            ack_now: client,
        }
    }

    /// The ACK that completes a passive handshake, taken by the engine itself (RFC 9293
    /// §3.10.7.4: in SYN-RECEIVED, an ACK of our SYN moves the connection to ESTABLISHED).
    /// smoltcp's socket is dropped without seeing it, the control block is made from the
    /// handshake's notes (which [`Engine::note_handshake`] took from this segment too), and the
    /// segment, with its data and FIN if any, goes to the control block, as a SYN cookie's ACK
    /// does. Returns `false`, having changed nothing, unless the segment is exactly that ACK: ACK
    /// without SYN or RST, SEG.SEQ = IRS + 1, SEG.ACK = ISS + 1 after our SYN-ACK left, smoltcp's
    /// socket in SYN-RECEIVED with nothing received, and the checksums right. Anything else goes
    /// to smoltcp as before. smoltcp's processing of this segment was about half of its receive
    /// work per short connection.
    pub(crate) fn handshake_ack<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        id: u32,
        class: &Segment,
    ) -> bool {
        let f = class.flags;
        let slot = &mut self.slots[id as usize];
        if !self.engine_tcp
            || !matches!(slot.phase, Phase::HalfOpen)
            || slot.tcb.is_some()
            || !f.ack
            || f.syn
            || f.rst
            || slot.hs.syn_sends == 0
            || class.ack != slot.iss.wrapping_add(1)
            || class.seq != slot.irs.wrapping_add(1)
        {
            return false;
        }
        let sock = slot.socket();
        if sock.state() != tcp::State::SynReceived || sock.recv_queue() != 0 {
            return false;
        }
        let (check_ip, check_tcp) = (self.csum.ipv4.rx(), self.csum.tcp.rx());
        let Some(frame) = device.peek() else { return false };
        if (check_ip || check_tcp) && !own_checksums_ok(frame, check_ip, check_tcp) {
            return false; // smoltcp drops it, as before
        }
        let Some(s) = seg::parse(frame) else { return false };
        slot.set.remove(slot.handle);
        // SAFETY: the socket that borrowed the regions is gone (removed and dropped above); the
        // rings are their only users until `give_back` ends them.
        let (rx, tx) = unsafe { (Ring::new(slot.rx_region), Ring::new(slot.tx_region)) };
        let hs = self.handshake(id, now, 0, false, false);
        self.own(id, &hs, tx, rx, now);
        let tcb = self.slots[id as usize].tcb.as_mut().expect("just owned");
        tcb.input(now, &s);
        device.skip();
        self.stats.handshake_acks += 1;
        true
    }

    /// A segment for a connection the engine's own TCP runs: checked, parsed and handed to its
    /// control block. A segment whose checksum is wrong (where the port did not check it) or whose
    /// header cannot be read is dropped and counted.
    pub(crate) fn own_ingress<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        id: u32,
        class: &Segment,
    ) {
        let (check_ip, check_tcp) = (self.csum.ipv4.rx(), self.csum.tcp.rx());
        let Some(frame) = device.peek() else { return };
        if (check_ip || check_tcp) && !own_checksums_ok(frame, check_ip, check_tcp) {
            device.skip();
            self.stats.tcp_bad_segments += 1;
            return;
        }
        let Some(s) = seg::parse(frame) else {
            device.skip();
            self.stats.tcp_bad_segments += 1;
            return;
        };
        let slot = &mut self.slots[id as usize];
        let tcb = slot.tcb.as_mut().expect("an owned connection has its control block");
        let in_window = class.in_window(tcb.rcv_nxt(), self.rx_buffer);
        if class.src_mac != slot.peer_mac && in_window {
            slot.peer_mac = class.src_mac; // where the peer is now (the router's, off the link)
        }
        tcb.input(now, &s);
        if slot.waiting.is_some() && in_window {
            slot.heard(now);
        }
        device.skip();
        self.mark_dirty(id);
    }

    /// Sends what the control block of connection `id` has to send. Returns whether anything
    /// left, and its next deadline.
    pub(crate) fn own_egress<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        id: u32,
    ) -> (bool, Option<Option<Instant>>) {
        let slot = &mut self.slots[id as usize];
        let (ip_csum, tcp_csum) = (self.csum.ipv4.tx(), self.csum.tcp.tx());
        let owned = slot.tcb.as_mut().expect("an owned connection has its control block");
        let Owned { tcb, hdr } = &mut **owned;
        if hdr.dst_mac() != slot.peer_mac {
            hdr.set_dst_mac(slot.peer_mac); // the peer is behind another MAC now
        }
        let mut full = false;
        let mut emit = |out: &Out| match device.transmit(now) {
            Some(tok) => {
                debug_assert!(out.frame_len() <= phy::MAX_FRAME, "a {}-byte frame", out.frame_len());
                tok.consume(out.frame_len(), |buf| hdr.write(buf, out, ip_csum, tcp_csum));
                true
            }
            None => {
                full = true;
                false
            }
        };
        let sent = tcb.output(now, self.ts_now, &mut emit);
        slot.emitted |= sent > 0;
        // The device had no room: try again on the next poll.
        let next = if full { Some(now) } else { tcb.next_deadline() };
        (sent > 0, Some(next))
    }

    /// Connection `id` ended: its control block's counters join the engine's, and the slot's
    /// buffers go back to a new smoltcp socket for the slot's next handshake.
    pub(crate) fn give_back(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        let Some(mut owned) = slot.tcb.take() else { return };
        self.stats.tcp += owned.stats;
        // The rings end here; the control block is kept for a later connection.
        let _ = owned.take_rings();
        self.spare.push(owned);
        // SAFETY: the rings over the regions were just dropped; the socket is their only user
        // until the next `take_over` removes it.
        let (rx, tx) = unsafe { (slot.rx_region.slice(), slot.tx_region.slice()) };
        slot.handle = slot.set.add(tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx)));
    }
}

/// Whether a frame of an owned connection has the right IPv4 header checksum (when `ip`) and TCP
/// checksum (when `tcp`). [`crate::flow::classify`] found it an unfragmented IPv4 TCP segment whose
/// total length fits the frame; a header too short to say passes, for `seg::parse` to refuse.
#[inline]
fn own_checksums_ok(frame: &[u8], ip: bool, tcp: bool) -> bool {
    let Some(hdr) = frame.get(14..34) else { return true };
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let (Some(ip_hdr), Some(segment)) = (frame.get(14..14 + ihl), frame.get(14 + ihl..14 + total)) else {
        return true;
    };
    match (ip, tcp) {
        (true, true) => csum::ipv4_tcp_ok(ip_hdr, Some(segment)),
        (true, false) => csum::ipv4_tcp_ok(ip_hdr, None),
        (false, true) => csum::tcp_ok(ip_hdr, segment),
        (false, false) => true,
    }
}
