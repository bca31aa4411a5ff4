//! Ingress: each frame the device holds, decided by the demux and handed to its connection, its
//! listener, the TIME_WAIT table, smoltcp's empty set (an RST, an ICMP answer) or the ARP code.

use smoltcp::phy::TxToken;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use crate::demux::Demux;
use crate::flow::{FourTuple, Frame, Segment};
use crate::neighbor::{self, Ether};
use crate::phy::BurstDevice;
use crate::slot::Phase;
use crate::time_wait::{self, TimeWaitAction};
use crate::upper::{End, Service};
use crate::{reclaim, Engine};

impl<S: Service> Engine<S> {
    /// Decides about one frame and hands it on.
    ///
    /// `src` is the frame's source MAC: what smoltcp sends while it takes a frame no connection owns
    /// (an RST, an ICMP echo reply) goes back there; its answer to a connection's segment goes to
    /// that connection's peer.
    ///
    /// Leaves the frame where it is and returns its 4-tuple if it is a new SYN on the 4-tuple of
    /// a connection that ended in this burst (its last ACK or an RST came before it, and the
    /// service phase has not released it yet), unless that is `reopened` (the one that waited
    /// last). The peer opens again at once, as a Linux client does when its TIME_WAIT table is
    /// full. The ended connection's socket would answer with an RST; after the service phase,
    /// which releases that connection, the SYN meets TIME_WAIT's rules and the listener.
    pub(crate) fn ingress<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        class: Frame,
        src: [u8; 6],
        reopened: Option<FourTuple>,
    ) -> Option<FourTuple> {
        match self.demux(now, &class, device) {
            Demux::Flow(id) => {
                let slot = &mut self.slots[id as usize];
                let Frame::Tcp(seg) = class else { unreachable!("only TCP segments have a flow") };
                let f = seg.flags;
                if f.syn && !f.ack && !f.rst && slot.ended() && reopened != Some(seg.tuple) {
                    self.stats.frames -= 1; // counted again when it is taken
                    return Some(seg.tuple);
                }
                if slot.tcb.is_some() {
                    self.own_ingress(now, device, id, &seg);
                    return None;
                }
                if slot.in_handshake() {
                    if let Some(frame) = device.peek() {
                        self.note_handshake(id, frame);
                    }
                }
                let slot = &mut self.slots[id as usize];
                // The next in-order byte, read at most once for the checks below. The two before the
                // SYN's note read it only after the handshake, when the initial sequence number it
                // counts from no longer moves; the reclaim note reads it after that.
                let mut nxt = None;
                if seg.src_mac != slot.peer_mac && slot.peer_moved_to(&seg, self.rx_buffer, &mut nxt) {
                    slot.peer_mac = seg.src_mac; // where the peer is now (the router's, off the link)
                }
                // The peer is heard from when it sends what a sender that cannot see the
                // connection can only guess: a segment in the receive window (or it completes the
                // handshake, see `service`). Only a connection that waits for its peer uses it.
                if slot.waiting.is_some()
                    && !slot.in_handshake()
                    && seg.in_window(slot.rcv_nxt_once(&mut nxt), self.rx_buffer)
                {
                    slot.heard(now);
                }
                if seg.flags.syn && !seg.flags.rst && slot.in_handshake() {
                    slot.irs = seg.seq; // a SYN-ACK (or a retransmitted SYN: the same)
                    slot.ooo_until = None;
                }
                if slot.buf != 0 {
                    reclaim::note_segment(slot, &seg, self.rx_buffer, &mut nxt);
                }
                // What smoltcp answers at once goes where the connection's peer is, not to whoever
                // sent this frame.
                let dst = if slot.peer_mac == [0; 6] { src } else { slot.peer_mac };
                if self.handshake_ack(now, device, id, &seg) {
                    // The handshake completed with this segment, and the engine's TCP took both.
                    self.mark_dirty(id);
                    return None;
                }
                let slot = &mut self.slots[id as usize];
                self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, dst), &mut slot.set);
                if slot.in_handshake()
                    && matches!(slot.socket().state(), tcp::State::Established | tcp::State::CloseWait)
                {
                    // The handshake completed with this segment: the engine's TCP takes over at
                    // once, so that the data right behind it in this burst reaches the control
                    // block, not a smoltcp socket about to be dropped with what it holds.
                    self.take_over(now, id);
                    self.mark_dirty(id);
                    return None;
                }
                if seg.flags.rst || seg.flags.fin {
                    // Noted only when smoltcp took it (its state says so): one with numbers it
                    // refused, whoever sent it, neither makes a clean close look reset nor sets
                    // what TIME_WAIT re-ACKs.
                    let state = slot.socket().state();
                    slot.rst_seen |= seg.flags.rst && state == tcp::State::Closed;
                    let fin_taken = matches!(
                        state,
                        tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
                    );
                    if seg.flags.fin && fin_taken && slot.peer_fin_end.is_none() {
                        slot.peer_fin_end = Some(seg.seq_end());
                    }
                }
                self.mark_dirty(id);
            }
            Demux::Listener(li) => {
                let Frame::Tcp(seg) = class else { unreachable!("only SYNs reach a listener") };
                self.syn(now, device, li, seg);
            }
            Demux::Cookie(li) => {
                let Frame::Tcp(seg) = class else { unreachable!("only SYNs get a cookie") };
                self.send_cookie(now, device, li, seg);
            }
            Demux::CookieAck(li) => {
                let Frame::Tcp(seg) = class else { unreachable!("only ACKs carry a cookie") };
                if !self.cookie_ack(now, device, li, seg) {
                    // No cookie: refused as a segment nobody wants (an RST), as before cookies.
                    self.stats.no_listener += 1;
                    self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, src), &mut self.empty);
                }
            }
            Demux::TimeWait(TimeWaitAction::ReAck) => {
                let Frame::Tcp(seg) = class else { unreachable!() };
                device.skip();
                if let Some(tok) = device.transmit(now) {
                    tok.consume(time_wait::ACK_FRAME_LEN, |buf| time_wait::write_ack(buf, self.mac, &seg));
                }
            }
            Demux::TimeWait(_) | Demux::Drop => device.skip(),
            Demux::Refuse => {
                self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, src), &mut self.empty);
            }
            Demux::Other if matches!(class, Frame::Arp) => self.arp(now, device),
            Demux::Other => {
                // IPv4 for one of the engine's addresses (ICMP, UDP, a fragment) goes to smoltcp;
                // the rest is not ours (smoltcp takes any destination when the engine has extra
                // addresses).
                if matches!(class, Frame::OtherIp) {
                    self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, src), &mut self.empty);
                } else {
                    device.skip();
                }
            }
        }
        None
    }

    /// A SYN for listener `li`, which has room: an armed LISTEN socket takes it.
    pub(crate) fn syn<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, li: usize, seg: Segment) {
        let id = match self.listeners[li].ring.pop_front() {
            Some(id) => id,
            None => self.arm(li),
        };
        self.slots[id as usize].hs = Default::default();
        if let Some(frame) = device.peek() {
            self.note_handshake(id, frame);
        }
        let slot = &mut self.slots[id as usize];
        self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, seg.src_mac), &mut slot.set);
        if slot.socket().state() == tcp::State::Listen {
            // Not taken (a bad checksum, say): it stays armed.
            self.listeners[li].ring.push_front(id);
            return;
        }
        slot.tuple = Some(seg.tuple);
        slot.peer_mac = seg.src_mac;
        slot.heard_at = now;
        slot.irs = seg.seq;
        slot.ooo_until = None;
        slot.phase = Phase::HalfOpen;
        self.next_stamp = self.next_stamp.wrapping_add(1);
        slot.syn_stamp = self.next_stamp;
        self.flows.insert(seg.tuple, id);
        let l = &mut self.listeners[li];
        l.stats.half_open += 1;
        l.half_open.push_back((id, self.next_stamp));
        if l.half_open.len() > 2 * l.stats.half_open + 64 {
            // Entries of connections that completed or ended pile up behind a long-lived one:
            // keep the live ones (amortised: this runs once per that many SYNs).
            let slots = &self.slots;
            l.half_open.retain(|&(id, stamp)| {
                let s = &slots[id as usize];
                matches!(s.phase, Phase::HalfOpen) && s.syn_stamp == stamp
            });
        }
        self.stats.open += 1;
        self.mark_dirty(id); // its SYN-ACK goes out on egress
        self.rearm(li);
    }

    /// Gives up listener `li`'s oldest half-open connection to make room for a new SYN (see
    /// [`crate::listener::Admission`]): its slot goes back to the pool without an RST (a
    /// spoofed source would only get backscatter; a real client that is still there sends its SYN
    /// again).
    ///
    /// Only a connection still in SYN-RECEIVED gives way: one whose handshake completed in this
    /// burst (its last ACK came, the service phase has not run) is passed over. Returns whether
    /// one gave way.
    pub(crate) fn evict_oldest_half_open(&mut self, now: Instant, li: usize) -> bool {
        while let Some((id, stamp)) = self.listeners[li].half_open.pop_front() {
            let slot = &mut self.slots[id as usize];
            if !matches!(slot.phase, Phase::HalfOpen) || slot.syn_stamp != stamp {
                continue; // completed or ended since
            }
            if slot.state() != tcp::State::SynReceived {
                continue; // completed in this burst: it will be queued
            }
            // CLOSED at once; the RST smoltcp would send leaves only with an egress poll, and
            // the slot is re-armed (reset) before it gets one.
            slot.abort();
            slot.ended_by_engine = Some(End::Aborted);
            self.listeners[li].stats.syn_evicted += 1;
            self.release(now, id, false);
            return true;
        }
        false
    }

    /// An ARP frame: learn its sender if it is aimed at us from our link, and answer a request
    /// for one of our addresses (see [`neighbor`]). An ARP frame about another address (a
    /// gratuitous one, a request to another host) only moves a neighbour we already know, as
    /// Linux does.
    pub(crate) fn arp<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D) {
        let arp = device.peek().and_then(neighbor::parse_arp);
        device.skip();
        let Some(a) = arp else { return };
        if a.sender_mac[0] & 1 == 1 || !self.on_link(a.sender_ip) {
            return;
        }
        if !self.addresses.contains(&a.target_ip) {
            self.neighbors.update(a.sender_ip, a.sender_mac, now);
            return;
        }
        self.neighbors.learn(a.sender_ip, a.sender_mac, now);
        self.wake_neighbor_waiters();
        // Counted once it has left, as every ARP frame the engine sends.
        if a.request
            && self.arp_replies
            && neighbor::send_arp(device, now, self.mac, a.target_ip, a.sender_ip, Some(a.sender_mac))
        {
            self.stats.arp_replies += 1;
        }
    }
}
