//! What the engine's fuzz targets share: the reader of a fuzz input, the operations the `frames`
//! target decodes from it (and the seed generator encodes), and the frame builders they use; the
//! `tcp` target's input in [`tcp`].
//!
//! An input of `frames` is a setup byte, then operations, each a tag byte and its fields
//! ([`Op::decode`], [`Op::encode`]). Fields missing at the input's end read as zeros, so every
//! input decodes.

use std::net::Ipv4Addr;

pub mod tcp;

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Packet, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};

/// The engine's MAC and address in every target.
pub const ENGINE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const ENGINE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The real client's MAC (`engine::testing::Pair`'s client).
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A fuzz input, read front to back.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `n` bytes (fewer at the input's end).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = start + n;
        self.data[start..end].to_vec()
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Setup byte of a `frames` input: both ends leave checksums to an absent NIC
/// (`Pair::offloaded`), so smoltcp neither computes nor verifies them.
pub const SETUP_OFFLOADED: u8 = 1;
/// Setup byte: buffer reclaim on (`buffer_idle` 1 s).
pub const SETUP_RECLAIM: u8 = 2;
/// Setup byte: the HTTP listener has a request head timeout (2 s).
pub const SETUP_HEADER_TIMEOUT: u8 = 4;
/// Setup byte: the engine has a gateway (198.18.0.254), so off-link peers are routed.
pub const SETUP_GATEWAY: u8 = 8;

/// A TCP segment toward the engine, built field by field ([`Op::Segment`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    /// Below 0x80: one of the 4-tuples the engine has sent on (in the order first seen; the live
    /// connection's first), and `seq`/`ack` count from what the engine expects next on it.
    /// Otherwise a peer of its own: 198.18.0.(10 + bits 0-1), port 40000 + bits 2-6.
    pub peer: u8,
    /// The engine's port for a peer of its own: 7 (echo), 80 (HTTP), 9 (hold), 5 (none), or
    /// this byte times 257.
    pub port: u8,
    /// TCP flags, as on the wire (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    pub flags: u8,
    /// Added to the next sequence number the engine expects from this peer (0 if none).
    pub seq: u32,
    /// Added to the engine's next sequence number toward this peer (0 if none).
    pub ack: u32,
    pub window: u16,
    /// TCP options, padded to a multiple of 4 bytes (at most 40).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// One operation of a `frames` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A frame as it is; with `fix`, its IPv4, TCP, UDP and ICMP checksums are recomputed first.
    Raw { fix: bool, frame: Vec<u8> },
    /// A TCP segment with right checksums.
    Segment(Seg),
    /// An ARP frame: `op` (1 request, 2 reply), from 02:00:00:00:00:`sender_mac` (bit 0 of the
    /// first byte set when `flags` bit 2) at 198.18.0.`sender_ip` (198.19.0.x, off the link, when
    /// `flags` bit 1), about the engine's address (`flags` bit 0) or 198.18.0.`target`; to the
    /// engine's MAC, or broadcast when `flags` bit 3.
    Arp { op: u16, sender_mac: u8, sender_ip: u8, target: u8, flags: u8 },
    /// An IPv4 packet of protocol `proto` from the client's address to the engine's; `frag` bit 0
    /// sets more-fragments, the rest is the fragment offset.
    Ip { proto: u8, frag: u8, payload: Vec<u8> },
    /// Both ends run for `amount` ms (tenths of seconds when `long`), polled every 200 ms at most.
    Step { long: bool, amount: u8 },
    /// The engine alone runs `amount` ms later (tenths of seconds when `long`): its peers are
    /// silent.
    Silent { long: bool, amount: u8 },
    /// The real client sends `data` on the live connection.
    Send { data: Vec<u8> },
    /// The real client acts: 0 closes the live connection, 1 aborts it, 2-4 opens one more to
    /// port 7, 80 or 9, 5 sends an HTTP request on the last one opened, 6 closes that one.
    Client { action: u8 },
}

/// The most operations of one input decoded.
pub const MAX_OPS: usize = 64;

impl Op {
    /// The next operation, if the input has one.
    pub fn decode(inp: &mut Input) -> Option<Op> {
        if inp.is_empty() {
            return None;
        }
        let tag = inp.byte();
        let long = tag & 8 != 0;
        Some(match tag & 7 {
            0 => {
                let len = usize::from(inp.u16()).min(1600);
                Op::Raw { fix: long, frame: inp.bytes(len) }
            }
            1 => {
                let peer = inp.byte();
                let port = inp.byte();
                let flags = inp.byte();
                let seq = inp.u32();
                let ack = inp.u32();
                let window = inp.u16();
                let opt_len = usize::from(inp.byte() % 11) * 4;
                let options = inp.bytes(opt_len);
                let len = usize::from(inp.u16()).min(1400);
                let payload = inp.bytes(len);
                Op::Segment(Seg { peer, port, flags, seq, ack, window, options, payload })
            }
            2 => Op::Arp {
                op: u16::from(inp.byte()),
                sender_mac: inp.byte(),
                sender_ip: inp.byte(),
                target: inp.byte(),
                flags: inp.byte(),
            },
            3 => {
                let proto = inp.byte();
                let frag = inp.byte();
                let len = usize::from(inp.byte());
                Op::Ip { proto, frag, payload: inp.bytes(len) }
            }
            4 => Op::Step { long, amount: inp.byte() },
            5 => Op::Silent { long, amount: inp.byte() },
            6 => {
                let len = usize::from(inp.byte());
                Op::Send { data: inp.bytes(len) }
            }
            _ => Op::Client { action: inp.byte() },
        })
    }

    /// Appends the bytes [`Op::decode`] reads back as this operation.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Raw { fix, frame } => {
                out.push(if *fix { 8 } else { 0 });
                out.extend_from_slice(&(frame.len() as u16).to_le_bytes());
                out.extend_from_slice(frame);
            }
            Op::Segment(s) => {
                out.extend_from_slice(&[1, s.peer, s.port, s.flags]);
                out.extend_from_slice(&s.seq.to_le_bytes());
                out.extend_from_slice(&s.ack.to_le_bytes());
                out.extend_from_slice(&s.window.to_le_bytes());
                assert!(s.options.len() % 4 == 0 && s.options.len() <= 40);
                out.push((s.options.len() / 4) as u8);
                out.extend_from_slice(&s.options);
                out.extend_from_slice(&(s.payload.len() as u16).to_le_bytes());
                out.extend_from_slice(&s.payload);
            }
            Op::Arp { op, sender_mac, sender_ip, target, flags } => {
                out.extend_from_slice(&[2, *op as u8, *sender_mac, *sender_ip, *target, *flags]);
            }
            Op::Ip { proto, frag, payload } => {
                out.extend_from_slice(&[3, *proto, *frag, payload.len() as u8]);
                out.extend_from_slice(payload);
            }
            Op::Step { long, amount } => out.extend_from_slice(&[4 | if *long { 8 } else { 0 }, *amount]),
            Op::Silent { long, amount } => out.extend_from_slice(&[5 | if *long { 8 } else { 0 }, *amount]),
            Op::Send { data } => {
                out.extend_from_slice(&[6, data.len() as u8]);
                out.extend_from_slice(data);
            }
            Op::Client { action } => out.extend_from_slice(&[7, *action]),
        }
    }
}

/// An Ethernet/IPv4 frame around `payload`, of protocol `proto`, header checksum right.
pub fn ipv4_frame(
    src: ([u8; 6], Ipv4Addr),
    dst: ([u8; 6], Ipv4Addr),
    proto: u8,
    frag: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + payload_len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_version(4);
    ip.set_header_len(20);
    ip.set_total_len((20 + payload_len) as u16);
    ip.set_ident(0x1234);
    ip.clear_flags();
    ip.set_more_frags(frag & 1 != 0);
    ip.set_frag_offset(u16::from(frag >> 1) * 8);
    ip.set_hop_limit(64);
    ip.set_next_header(IpProtocol::from(proto));
    ip.set_src_addr(src.1);
    ip.set_dst_addr(dst.1);
    ip.fill_checksum();
    f
}

/// A whole Ethernet/IPv4/TCP frame for `seg` with absolute `seq` and `ack`, checksums right.
pub fn tcp_frame(
    src: ([u8; 6], Ipv4Addr, u16),
    dst: ([u8; 6], Ipv4Addr, u16),
    seg: &Seg,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let opts = seg.options.len().min(40) / 4 * 4;
    let tcp_len = 20 + opts + seg.payload.len();
    let mut f = ipv4_frame((src.0, src.1), (dst.0, dst.1), 6, 0, tcp_len);
    let mut t = TcpPacket::new_unchecked(&mut f[34..]);
    t.set_src_port(src.2);
    t.set_dst_port(dst.2);
    t.set_seq_number(smoltcp::wire::TcpSeqNumber(seq as i32));
    t.set_ack_number(smoltcp::wire::TcpSeqNumber(ack as i32));
    t.set_header_len((20 + opts) as u8);
    // Flags are the 13th byte (the header length's byte keeps its upper nibble).
    t.set_window_len(seg.window);
    let raw = t.into_inner();
    raw[13] = seg.flags;
    raw[20..20 + opts].copy_from_slice(&seg.options[..opts]);
    raw[20 + opts..].copy_from_slice(&seg.payload);
    let mut t = TcpPacket::new_unchecked(&mut f[34..]);
    t.fill_checksum(&IpAddress::Ipv4(src.1), &IpAddress::Ipv4(dst.1));
    f
}

/// An Ethernet ARP frame, field by field.
pub fn arp_frame(eth_dst: [u8; 6], op: u16, sender: ([u8; 6], Ipv4Addr), target: ([u8; 6], Ipv4Addr)) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[0..6].copy_from_slice(&eth_dst);
    f[6..12].copy_from_slice(&sender.0);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&sender.0);
    f[28..32].copy_from_slice(&sender.1.octets());
    f[32..38].copy_from_slice(&target.0);
    f[38..42].copy_from_slice(&target.1.octets());
    f
}

/// Recomputes the IPv4 header checksum of an Ethernet/IPv4 frame, and its TCP, UDP or ICMP
/// checksum when it is not a fragment, as far as the frame can be read.
pub fn fix_checksums(frame: &mut [u8]) {
    let Ok(eth) = EthernetFrame::new_checked(&mut *frame) else { return };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[14..]) else { return };
    if ip.header_len() < 20 {
        return;
    }
    ip.fill_checksum();
    if ip.more_frags() || ip.frag_offset() != 0 {
        return;
    }
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let proto = ip.next_header();
    let payload = ip.payload_mut();
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(payload) {
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(payload) {
                u.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Icmp => {
            if let Ok(mut i) = Icmpv4Packet::new_checked(payload) {
                i.fill_checksum();
            }
        }
        _ => {}
    }
}
