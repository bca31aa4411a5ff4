//! SYN cookies in the engine (RFC 4987 §3.6; the encoding is [`crate::tcp::cookie`]'s): a
//! listener whose half-open budget is used up (or every listener, with `syn_cookies = always`)
//! answers a SYN with a SYN-ACK the engine writes itself and keeps nothing
//! ([`Engine::send_cookie`]); an ACK for the listener's port that matches no connection is
//! checked for a cookie, and a valid one makes an established connection of the engine's own TCP
//! at once, queued to the listener like any other (SEMANTICS B1, B4) with the data the ACK carried
//! ([`Engine::cookie_ack`]). A bad cookie makes nothing: counted, answered with an RST.

use smoltcp::phy::TxToken;
use smoltcp::time::Instant;

use crate::flow::Segment;
use crate::listener::{Admission, OnFull};
use crate::own::{our_wscale, OUR_MSS};
use crate::phy::BurstDevice;
use crate::slot::Phase;
use crate::tcp::conn::{dur as since_origin, Handshake};
use crate::tcp::cookie::{decode_ts, encode_ts, CookieSyn};
use crate::tcp::ring::Ring;
use crate::tcp::seg::{self, Out, Path, SynOptions, ACK, SYN};
use crate::upper::Service;
use crate::Engine;

impl<S: Service> Engine<S> {
    /// Answers the SYN the device holds with a SYN cookie's SYN-ACK, for listener `li`.
    pub(crate) fn send_cookie<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        li: usize,
        seg: Segment,
    ) {
        let syn = device.peek().and_then(seg::parse).map(|s| (s.seq, s.options));
        device.skip();
        let Some((syn_seq, o)) = syn else { return };
        let mss = o.mss.filter(|&m| m != 0).unwrap_or(536);
        let iss = self.cookies.make(&seg.tuple, syn_seq, mss, since_origin(now));
        // Without timestamps the cookie cannot carry window scaling or SACK: both are off then.
        let ts = o.ts.map(|(val, _)| {
            let c = CookieSyn { mss, wscale: o.wscale, sack: o.sack_permitted, ecn: false };
            (encode_ts(self.ts_now, &c), val)
        });
        let opts = SynOptions {
            mss: OUR_MSS,
            wscale: o.wscale.filter(|_| ts.is_some()).map(|_| our_wscale(self.rx_buffer)),
            sack_permitted: o.sack_permitted && ts.is_some(),
        };
        let out = Out {
            syn: Some(opts),
            seq: iss,
            ack: syn_seq.wrapping_add(1),
            flags: SYN | ACK,
            window: self.rx_buffer.min(usize::from(u16::MAX)) as u16,
            ts,
            sack: &[],
            data: [&[], &[]],
        };
        let t = seg.tuple;
        let path = Path {
            src_mac: self.mac,
            dst_mac: seg.src_mac,
            src_ip: t.local_ip,
            dst_ip: t.remote_ip,
            src_port: t.local_port,
            dst_port: t.remote_port,
        };
        let caps = device.capabilities().checksum;
        if let Some(tok) = device.transmit(now) {
            tok.consume(out.frame_len(), |buf| seg::write(buf, &path, &out, &caps));
            self.listeners[li].stats.cookies_sent += 1;
        }
    }

    /// An ACK for listener `li`'s port that matches no connection: a valid cookie makes the
    /// connection; anything else is refused with an RST (as before cookies), counted. Returns
    /// whether the frame was taken (else the caller refuses it).
    pub(crate) fn cookie_ack<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        li: usize,
        class: Segment,
    ) -> bool {
        let Some(frame) = device.peek() else { return false };
        let Some(s) = seg::parse(frame) else { return false };
        let t = class.tuple;
        let (client_isn, iss) = (s.seq.wrapping_sub(1), s.ack.wrapping_sub(1));
        let Some(mss) = self.cookies.check(&t, client_isn, iss, since_origin(now)) else {
            self.listeners[li].stats.cookies_invalid += 1;
            return false;
        };
        // The listener's queue and the engine's bound hold for a cookie's connection too (L4).
        // Where half-open connections share the backlog (B1's policies but Linux's), a completed
        // handshake takes the place of the oldest half-open one, as a SYN would.
        let admission = {
            let l = &self.listeners[li];
            l.stats.admission(l.policy, usize::MAX)
        };
        let room = match admission {
            Admission::Admit => true,
            Admission::Full => false,
            Admission::EvictOldest => self.evict_oldest_half_open(now, li),
        };
        let l = &mut self.listeners[li];
        if self.draining || self.stats.open >= self.max_connections || !room {
            l.stats.refused += u64::from(l.on_full == OnFull::Refuse);
            l.stats.dropped += u64::from(l.on_full == OnFull::Drop);
            if l.on_full == OnFull::Drop {
                device.skip();
                return true;
            }
            return false;
        }
        // What the SYN offered, from the TSecr our cookie's TSval carries back.
        let (wscale, sack, ts_recent) = match s.options.ts {
            Some((val, ecr)) => {
                let (ws, sack, _ecn) = decode_ts(ecr);
                (ws.map(|peer| (peer, our_wscale(self.rx_buffer))), sack, Some(val))
            }
            None => (None, false, None),
        };
        let peer_shift = wscale.map_or(0, |w| w.0);
        let hs = Handshake {
            iss,
            irs: client_isn,
            mss,
            wscale,
            sack,
            ts_recent,
            window: u32::from(s.window) << peer_shift,
            wl1: s.seq,
            wl2: s.ack,
            rtt: None,
            received: 0,
            fin_received: false,
            ack_now: false,
        };
        let id = self.take_slot();
        let slot = &mut self.slots[id as usize];
        slot.set.remove(slot.handle);
        // SAFETY: the slot's socket, the regions' only other user, was just removed and dropped;
        // `give_back` makes a new one when the connection ends.
        let (tx, rx) = unsafe { (Ring::new(slot.tx_region), Ring::new(slot.rx_region)) };
        slot.tuple = Some(t);
        slot.peer_mac = class.src_mac;
        self.own(id, &hs, tx, rx, now);
        let slot = &mut self.slots[id as usize];
        let tcb = slot.tcb.as_mut().expect("just owned");
        tcb.input(now, &s); // the ACK's own data and FIN, if any
        device.skip();
        slot.heard_at = now;
        slot.irs = client_isn;
        slot.iss = iss;
        slot.listener = li;
        slot.phase = Phase::HalfOpen; // completed: the service phase queues it (B4)
        self.flows.insert(t, id);
        let l = &mut self.listeners[li];
        l.stats.half_open += 1;
        l.stats.cookies_accepted += 1;
        self.stats.open += 1;
        self.mark_dirty(id);
        true
    }
}
