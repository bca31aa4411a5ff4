//! The engine's Ethernet layer: its neighbour table, ARP, and the device smoltcp sees.
//!
//! smoltcp keeps neighbours in a linear map of at most 1024 entries and searches it for every
//! packet received and every packet sent, so with many peers on the link each packet cost more
//! (about 1.2 µs more per request with 1000 peers), and past 1024 it evicted entries in use
//! (BENCHMARKS.md, "Neighbours on the link"). So smoltcp runs on IP medium, and the engine owns
//! the Ethernet layer ([`Ether`]):
//! - **A connection answers to the MAC its peer's last segment came from**: the peer's own on the
//!   link, the router's off it. The engine notes it on every segment (a 6-byte copy), so sending
//!   needs no lookup, whatever the number of peers.
//! - **What smoltcp sends while it receives a frame** (an RST, an ICMP echo reply) goes to that
//!   frame's sender.
//! - **A connection the engine opens itself** looks its next hop (the peer on the link, else the
//!   gateway) up in the [`Neighbors`] table. When the table has no answer, the engine asks with an
//!   ARP request (at most once a second per address) and the connection waits for an ARP frame,
//!   as it did in smoltcp. An answer older than [`LIFETIME`] is still used, and asked again.
//! - **ARP**: the engine answers requests for its addresses and learns the sender of every ARP
//!   frame aimed at it, from its own link. An ARP frame about another address (a gratuitous one)
//!   only moves a neighbour the table knows already.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr};

use crate::phy::BurstDevice;

/// How long an ARP answer is used before it is asked again (as smoltcp kept an entry).
pub const LIFETIME: Duration = Duration::from_secs(60);
/// At most one ARP request per address per this period (smoltcp's period, per interface).
pub const ASK_EVERY: Duration = Duration::from_secs(1);
/// Addresses remembered at most; past this, answers older than [`LIFETIME`] are forgotten.
const MAX_PEERS: usize = 65536;
/// Length of an Ethernet ARP frame.
pub const ARP_FRAME_LEN: usize = 14 + 28;
/// Length of an Ethernet header.
pub const ETH_LEN: usize = 14;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The answer, and when it came.
    mac: Option<([u8; 6], Instant)>,
    /// When we last asked.
    asked: Option<Instant>,
}

/// What the table says of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Its MAC; `ask` says an ARP request is due as well (the answer is old).
    Found { mac: [u8; 6], ask: bool },
    /// Not known: ask (`ask`: a request is due now) and wait.
    Missing { ask: bool },
}

/// IPv4 address → MAC, from ARP (see the module documentation). O(1) per lookup.
#[derive(Default)]
pub struct Neighbors {
    map: HashMap<Ipv4Addr, Entry, foldhash::fast::RandomState>,
    /// ARP requests that left (counted by [`Neighbors::note_asked`]).
    pub asked: u64,
    /// Answers learned (new or changed MACs).
    pub learned: u64,
    /// Addresses with an answer (kept as entries change).
    answered: usize,
    /// Entries forgotten to make room for new ones: the table holds at most 65,536 addresses.
    pub evicted: u64,
}

impl Neighbors {
    /// Notes that `ip` is at `mac`; returns whether that is news.
    pub fn learn(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) -> bool {
        self.make_room(ip, now);
        let e = self.map.entry(ip).or_insert(Entry { mac: None, asked: None });
        let news = e.mac.is_none_or(|(m, _)| m != mac);
        self.answered += usize::from(e.mac.is_none());
        e.mac = Some((mac, now));
        e.asked = None;
        self.learned += u64::from(news);
        news
    }

    /// Notes that `ip` is at `mac` if `ip` has an answer already (an ARP frame not aimed at us:
    /// it may say a known neighbour moved, and must not fill the table with every station that
    /// speaks on the link); returns whether that is news.
    pub fn update(&mut self, ip: Ipv4Addr, mac: [u8; 6], now: Instant) -> bool {
        match self.map.get(&ip) {
            Some(Entry { mac: Some(_), .. }) => self.learn(ip, mac, now),
            _ => false,
        }
    }

    /// Where `ip` is, and whether to ask. An ask counts once the request has left
    /// ([`Neighbors::note_asked`]): one that found no room is asked again on the next lookup.
    pub fn lookup(&mut self, ip: Ipv4Addr, now: Instant) -> Lookup {
        self.make_room(ip, now);
        let e = self.map.entry(ip).or_insert(Entry { mac: None, asked: None });
        let old = e.mac.is_none_or(|(_, at)| now >= at + LIFETIME);
        let ask = old && e.asked.is_none_or(|t| now >= t + ASK_EVERY);
        match e.mac {
            Some((mac, _)) => Lookup::Found { mac, ask },
            None => Lookup::Missing { ask },
        }
    }

    /// Notes that an ARP request for `ip` left now: the next is not sent before [`ASK_EVERY`].
    pub fn note_asked(&mut self, ip: Ipv4Addr, now: Instant) {
        if let Some(e) = self.map.get_mut(&ip) {
            e.asked = Some(now);
        }
        self.asked += 1;
    }

    /// Before `ip` is added to a full table: forget what is unanswered or older than
    /// [`LIFETIME`], and everything if that is not enough (a rare, O(n) pass).
    fn make_room(&mut self, ip: Ipv4Addr, now: Instant) {
        if self.map.len() >= MAX_PEERS && !self.map.contains_key(&ip) {
            let before = self.map.len();
            self.map.retain(|_, e| e.mac.is_some_and(|(_, at)| now < at + LIFETIME));
            if self.map.len() >= MAX_PEERS {
                self.map.clear();
            }
            self.evicted += (before - self.map.len()) as u64;
            self.answered = self.map.len(); // only answered entries are left
        }
    }

    /// Addresses with an answer.
    pub fn len(&self) -> usize {
        self.answered
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An ARP frame, as far as the engine reads one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub request: bool,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// Reads an Ethernet/IPv4 ARP frame; `None` if it is not one or is malformed.
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    match ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).ok()?).ok()? {
        ArpRepr::EthernetIpv4 {
            operation, source_hardware_addr, source_protocol_addr, target_protocol_addr, ..
        } => Some(Arp {
            request: operation == ArpOperation::Request,
            sender_mac: source_hardware_addr.0,
            sender_ip: source_protocol_addr,
            target_ip: target_protocol_addr,
        }),
        _ => None,
    }
}

/// Writes an ARP frame from `(our_mac, us)`: a request for `peer` (broadcast), or, with
/// `reply_to` set, a reply telling that MAC where `us` is.
pub fn write_arp(buf: &mut [u8], our_mac: [u8; 6], us: Ipv4Addr, peer: Ipv4Addr, reply_to: Option<[u8; 6]>) {
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..ARP_FRAME_LEN]);
    EthernetRepr {
        src_addr: EthernetAddress(our_mac),
        dst_addr: reply_to.map_or(EthernetAddress::BROADCAST, EthernetAddress),
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut frame);
    ArpRepr::EthernetIpv4 {
        operation: if reply_to.is_some() { ArpOperation::Reply } else { ArpOperation::Request },
        source_hardware_addr: EthernetAddress(our_mac),
        source_protocol_addr: us,
        target_hardware_addr: EthernetAddress(reply_to.unwrap_or([0; 6])),
        target_protocol_addr: peer,
    }
    .emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
}

/// The ARP frame [`write_arp`] writes, in a vector of its own (tests).
#[cfg(any(test, feature = "testing"))]
pub fn test_arp_frame(our_mac: [u8; 6], us: Ipv4Addr, peer: Ipv4Addr, reply_to: Option<[u8; 6]>) -> Vec<u8> {
    let mut buf = vec![0u8; ARP_FRAME_LEN];
    write_arp(&mut buf, our_mac, us, peer, reply_to);
    buf
}

/// Sends the ARP frame [`write_arp`] writes through `device`; `false` if it had no room.
pub fn send_arp<D: phy::Device + ?Sized>(
    device: &mut D,
    now: Instant,
    our_mac: [u8; 6],
    us: Ipv4Addr,
    peer: Ipv4Addr,
    reply_to: Option<[u8; 6]>,
) -> bool {
    use phy::TxToken;
    let Some(tok) = device.transmit(now) else { return false };
    tok.consume(ARP_FRAME_LEN, |buf| write_arp(buf, our_mac, us, peer, reply_to));
    true
}

/// Whether an Ethernet frame's destination is `mac`, broadcast or multicast (what smoltcp's
/// Ethernet layer took).
pub fn addressed_to(frame: &[u8], mac: [u8; 6]) -> bool {
    frame.len() >= ETH_LEN && (frame[..6] == mac || frame[0] & 1 == 1)
}

/// The device smoltcp sees: IPv4 packets over the engine's Ethernet device. Received frames lose
/// their Ethernet header; sent packets get one, from `mac` to `dst`, which the engine sets before
/// each call into smoltcp. It notes the sequence numbers of the last TCP segment sent through it
/// ([`Ether::sent`]).
pub struct Ether<'d, D: ?Sized> {
    dev: &'d mut D,
    mac: [u8; 6],
    dst: [u8; 6],
    sent: Option<SentTcp>,
}

impl<'d, D: BurstDevice + ?Sized> Ether<'d, D> {
    pub fn new(dev: &'d mut D, mac: [u8; 6], dst: [u8; 6]) -> Self {
        Ether { dev, mac, dst, sent: None }
    }

    /// The last TCP segment smoltcp sent through this device, if any.
    pub fn sent(&self) -> Option<SentTcp> {
        self.sent
    }
}

/// Where a TCP segment smoltcp sent sits in sequence space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentTcp {
    pub seq: u32,
    /// The sequence number just past it: payload, plus one each for SYN and FIN.
    pub end: u32,
    pub syn: bool,
}

impl SentTcp {
    /// Reads it from an IPv4 packet smoltcp wrote (smoltcp writes no IPv4 options); `None` for
    /// anything but a TCP segment without RST. Fixed offsets rather than smoltcp's `Ipv4Packet` and
    /// `TcpPacket`, whose bounds checks cost 42 more instructions per request (on every segment
    /// sent): 0 version and header length, 2 total length, 9 protocol; the TCP header at 20, its
    /// sequence number at 24, data offset at 32, flags at 33.
    fn of(ip: &[u8]) -> Option<SentTcp> {
        if ip.len() < 40 || ip[0] != 0x45 || ip[9] != 6 || ip[33] & 0x04 != 0 {
            return None;
        }
        let payload = u32::from(u16::from_be_bytes([ip[2], ip[3]])).wrapping_sub(20 + u32::from(ip[32] >> 4) * 4);
        let (syn, fin) = (u32::from(ip[33] >> 1) & 1, u32::from(ip[33]) & 1);
        let seq = u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]);
        Some(SentTcp { seq, end: seq.wrapping_add(payload + syn + fin), syn: syn == 1 })
    }
}

impl<D: BurstDevice + ?Sized> phy::Device for Ether<'_, D> {
    type RxToken<'a>
        = EtherRx<D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = EtherTx<'a, D::TxToken<'a>>
    where
        Self: 'a;

    #[inline]
    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (mac, dst) = (self.mac, self.dst);
        let (rx, tx) = self.dev.receive(now)?;
        Some((EtherRx(rx), EtherTx { tok: tx, mac, dst, sent: &mut self.sent }))
    }

    #[inline]
    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        let (mac, dst) = (self.mac, self.dst);
        let sent = &mut self.sent;
        self.dev.transmit(now).map(|tok| EtherTx { tok, mac, dst, sent })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.dev.capabilities();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = caps.max_transmission_unit.saturating_sub(ETH_LEN);
        caps
    }
}

pub struct EtherRx<T>(T);

impl<T: phy::RxToken> phy::RxToken for EtherRx<T> {
    #[inline]
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        self.0.consume(|frame| f(frame.get(ETH_LEN..).unwrap_or(&[])))
    }
}

pub struct EtherTx<'a, T> {
    tok: T,
    mac: [u8; 6],
    dst: [u8; 6],
    sent: &'a mut Option<SentTcp>,
}

impl<T: phy::TxToken> phy::TxToken for EtherTx<'_, T> {
    #[inline]
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let (mac, dst, sent) = (self.mac, self.dst, self.sent);
        self.tok.consume(len + ETH_LEN, |frame| {
            frame[..6].copy_from_slice(&dst);
            frame[6..12].copy_from_slice(&mac);
            frame[12..14].copy_from_slice(&[0x08, 0x00]); // IPv4: the only protocol smoltcp sends
            let r = f(&mut frame[ETH_LEN..]);
            *sent = SentTcp::of(&frame[ETH_LEN..]);
            r
        })
    }
}

/// A MAC address as people write it (`02:00:00:00:00:01`).
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::MemoryLink;
    use phy::{Device, RxToken, TxToken};

    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    #[test]
    fn an_unknown_address_is_asked_once_a_second_until_it_answers() {
        let mut n = Neighbors::default();
        let t0 = Instant::from_secs(100);
        assert_eq!(n.lookup(PEER, t0), Lookup::Missing { ask: true });
        assert_eq!(n.lookup(PEER, t0), Lookup::Missing { ask: true }, "not asked until it left");
        n.note_asked(PEER, t0);
        assert_eq!(n.lookup(PEER, t0 + Duration::from_millis(999)), Lookup::Missing { ask: false });
        assert_eq!(n.lookup(PEER, t0 + Duration::from_secs(1)), Lookup::Missing { ask: true });
        n.note_asked(PEER, t0 + Duration::from_secs(1));
        assert!(n.learn(PEER, [2, 0, 0, 0, 0, 1], t0 + Duration::from_secs(2)));
        assert!(!n.learn(PEER, [2, 0, 0, 0, 0, 1], t0 + Duration::from_secs(3)), "no news");
        assert_eq!(n.lookup(PEER, t0 + Duration::from_secs(3)), Lookup::Found { mac: [2, 0, 0, 0, 0, 1], ask: false });
        assert_eq!((n.asked, n.learned, n.len()), (2, 1, 1));
    }

    #[test]
    fn arp_about_others_moves_known_neighbours_only() {
        let mut n = Neighbors::default();
        let t0 = Instant::from_secs(100);
        assert!(!n.update(PEER, [2, 0, 0, 0, 0, 1], t0), "unknown: not added");
        assert_eq!(n.len(), 0);
        n.learn(PEER, [2, 0, 0, 0, 0, 1], t0);
        assert!(n.update(PEER, [2, 0, 0, 0, 0, 9], t0), "known: moved");
        assert_eq!(n.lookup(PEER, t0), Lookup::Found { mac: [2, 0, 0, 0, 0, 9], ask: false });
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn an_old_answer_is_used_while_it_is_asked_again() {
        let mut n = Neighbors::default();
        let t0 = Instant::from_secs(100);
        n.learn(PEER, [2, 0, 0, 0, 0, 1], t0);
        let later = t0 + LIFETIME;
        assert_eq!(n.lookup(PEER, later), Lookup::Found { mac: [2, 0, 0, 0, 0, 1], ask: true });
        n.note_asked(PEER, later);
        assert_eq!(n.lookup(PEER, later), Lookup::Found { mac: [2, 0, 0, 0, 0, 1], ask: false });
        assert!(n.learn(PEER, [2, 0, 0, 0, 0, 9], later + Duration::from_millis(5)), "the peer moved");
        assert_eq!(n.lookup(PEER, later), Lookup::Found { mac: [2, 0, 0, 0, 0, 9], ask: false });
    }

    #[test]
    fn a_full_table_forgets_old_answers_first() {
        let mut n = Neighbors::default();
        let t0 = Instant::from_secs(100);
        for i in 0..MAX_PEERS as u32 {
            n.learn(Ipv4Addr::from(0xc612_0000 + i), [2, 0, 0, 0, 0, 1], t0);
        }
        n.learn(Ipv4Addr::new(198, 19, 0, 1), [2, 0, 0, 0, 0, 2], t0 + LIFETIME);
        assert_eq!(n.len(), 1, "the old answers made room");
    }

    #[test]
    fn arp_requests_and_replies_parse_back() {
        let mut buf = [0u8; ARP_FRAME_LEN];
        write_arp(&mut buf, [2, 0, 0, 0, 0, 2], US, PEER, None);
        assert_eq!(&buf[..6], &[0xff; 6], "a request is broadcast");
        let a = parse_arp(&buf).unwrap();
        assert_eq!(a, Arp { request: true, sender_mac: [2, 0, 0, 0, 0, 2], sender_ip: US, target_ip: PEER });
        write_arp(&mut buf, [2, 0, 0, 0, 0, 2], US, PEER, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(&buf[..6], &[2, 0, 0, 0, 0, 1]);
        assert!(!parse_arp(&buf).unwrap().request);
        assert_eq!(parse_arp(&buf[..30]), None, "truncated");
        assert_eq!(parse_arp(&crate::flow::test_syn_frame(PEER, 40000, US, 7)), None, "not ARP");
    }

    #[test]
    fn smoltcp_sees_ip_packets_and_sends_them_framed() {
        let MemoryLink { a: mut left, b: mut right } = MemoryLink::new();
        let syn = crate::flow::test_syn_frame(PEER, 40000, US, 7);
        right.inject(syn.clone());
        right.refill();
        let mut e = Ether::new(&mut right, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 7]);
        assert_eq!(e.capabilities().medium, Medium::Ip);
        assert_eq!(e.capabilities().max_transmission_unit, 1500);
        let (rx, _) = e.receive(Instant::ZERO).unwrap();
        rx.consume(|ip| assert_eq!(ip, &syn[ETH_LEN..]));
        e.transmit(Instant::ZERO).unwrap().consume(20, |ip| ip.fill(0x45));
        left.refill();
        let sent = BurstDevice::peek(&mut left).unwrap();
        assert_eq!(&sent[..14], &[2, 0, 0, 0, 0, 7, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        assert_eq!(&sent[14..], &[0x45; 20]);
    }

    #[test]
    fn frames_for_us_broadcast_and_multicast_are_taken() {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        assert!(addressed_to(&f, [2, 0, 0, 0, 0, 2]));
        f[..6].copy_from_slice(&[0xff; 6]);
        assert!(addressed_to(&f, [2, 0, 0, 0, 0, 2]));
        f[..6].copy_from_slice(&[0x01, 0, 0x5e, 0, 0, 1]);
        assert!(addressed_to(&f, [2, 0, 0, 0, 0, 2]));
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 3]);
        assert!(!addressed_to(&f, [2, 0, 0, 0, 0, 2]));
        assert!(!addressed_to(&f[..10], [2, 0, 0, 0, 0, 2]));
    }
}
