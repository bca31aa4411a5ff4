//! Frame classification: the few header fields the engine's demux needs, read in place; and the
//! one writer of whole Ethernet/IPv4/TCP frames for segments the engine answers itself.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

/// A TCP connection's identity, from this engine's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FourTuple {
    pub remote_ip: Ipv4Addr,
    pub local_ip: Ipv4Addr,
    pub remote_port: u16,
    pub local_port: u16,
}

impl Hash for FourTuple {
    /// Exactly the 12 bytes of the tuple, as two words (the flow table's hasher is keyed).
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(u32::from(self.remote_ip)) << 32) | u64::from(u32::from(self.local_ip)));
        h.write_u32((u32::from(self.remote_port) << 16) | u32::from(self.local_port));
    }
}

/// TCP header flags the demux looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// A received TCP segment for our address, as the demux sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub tuple: FourTuple,
    pub flags: Flags,
    pub seq: u32,
    pub ack: u32,
    /// Sequence space the segment occupies: payload, plus one each for SYN and FIN.
    pub seq_len: u32,
    pub src_mac: [u8; 6],
}

impl Segment {
    /// The sequence number just past this segment.
    pub fn seq_end(&self) -> u32 {
        self.seq.wrapping_add(self.seq_len)
    }

    /// Whether its sequence numbers fall in a receive window of `capacity` bytes from `rcv_nxt`,
    /// or exactly at `rcv_nxt` when it carries none.
    pub fn in_window(&self, rcv_nxt: u32, capacity: usize) -> bool {
        let start = i64::from(self.seq.wrapping_sub(rcv_nxt) as i32);
        let end = start + i64::from(self.seq_len);
        (end > 0 || (self.seq_len == 0 && start == 0)) && start < capacity as i64
    }
}

/// What kind of frame this is, for the demux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A TCP segment (unfragmented IPv4) for `local`.
    Tcp(Segment),
    /// ARP: may answer a neighbour some connection waits for.
    Arp,
    /// Other IPv4 for `local` (ICMP, UDP, a fragment, a malformed segment): smoltcp decides.
    OtherIp,
    /// Not ours: another protocol, another address, or too malformed to read.
    Other,
}

/// Reads the headers of an Ethernet frame; `local` are our addresses. Checksums are not verified
/// here: smoltcp verifies the frames it processes, and the engine verifies the ones it answers
/// itself.
///
/// Inlined into the demux: the 4-tuple then goes from the frame to the flow table's hash in
/// registers. Called, it came back through memory, written field by field and read back as whole
/// words (a store the CPU cannot forward to the load), and the flow lookup waited on it. Inlining
/// cut the time per request by 13-18 % with a million connections open and by 7-9 % with a
/// thousand, for 1 % fewer instructions (BENCHMARKS.md, "The demux's classify, inlined").
#[inline]
pub fn classify(frame: &[u8], local: &[Ipv4Addr]) -> Frame {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Frame::Other;
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => return Frame::Arp,
        EthernetProtocol::Ipv4 => {}
        _ => return Frame::Other,
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Frame::Other;
    };
    if !local.contains(&ip.dst_addr()) {
        return Frame::Other;
    }
    if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return Frame::OtherIp;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return Frame::OtherIp;
    };
    let flags = Flags { syn: tcp.syn(), ack: tcp.ack(), fin: tcp.fin(), rst: tcp.rst() };
    let payload = tcp.payload().len() as u32;
    Frame::Tcp(Segment {
        tuple: FourTuple {
            remote_ip: ip.src_addr(),
            local_ip: ip.dst_addr(),
            remote_port: tcp.src_port(),
            local_port: tcp.dst_port(),
        },
        flags,
        seq: tcp.seq_number().0 as u32,
        ack: tcp.ack_number().0 as u32,
        seq_len: payload + u32::from(flags.syn) + u32::from(flags.fin),
        src_mac: eth.src_addr().0,
    })
}

/// `a` is after `b` in sequence space (RFC 1982 comparison).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A TCP header with no options, from `ports` (source, destination): the segments the engine and
/// its tests and bench write themselves.
pub fn plain_tcp(
    ports: (u16, u16),
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    window_len: u16,
    payload: &[u8],
) -> TcpRepr<'_> {
    TcpRepr {
        src_port: ports.0,
        dst_port: ports.1,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    }
}

/// Length of the Ethernet/IPv4/TCP frame [`write_tcp_frame`] builds for `tcp`.
pub fn tcp_frame_len(tcp: &TcpRepr) -> usize {
    14 + 20 + tcp.buffer_len()
}

/// Writes `tcp` from `src` to `dst` (MAC and IPv4 address each) into the first
/// [`tcp_frame_len`] bytes of `buf`, checksums computed, and returns that length.
pub fn write_tcp_frame(buf: &mut [u8], src: ([u8; 6], Ipv4Addr), dst: ([u8; 6], Ipv4Addr), tcp: &TcpRepr) -> usize {
    let len = tcp_frame_len(tcp);
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..len]);
    EthernetRepr {
        src_addr: EthernetAddress(src.0),
        dst_addr: EthernetAddress(dst.0),
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut frame);
    let ip = Ipv4Repr {
        src_addr: src.1,
        dst_addr: dst.1,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut ipp = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut ipp, &caps);
    tcp.emit(&mut TcpPacket::new_unchecked(ipp.payload_mut()), &IpAddress::Ipv4(src.1), &IpAddress::Ipv4(dst.1), &caps);
    len
}

/// A whole Ethernet/IPv4/TCP SYN from `src:sport` (MAC 02:00:00:00:00:01) to `dst:dport` (MAC
/// 02:00:00:00:00:02), checksums right: the frame tests of steering and devices start from.
#[cfg(any(test, feature = "testing"))]
pub fn test_syn_frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let tcp = plain_tcp((sport, dport), TcpControl::Syn, 1, None, 1000, &[]);
    test_tcp_frame(([2, 0, 0, 0, 0, 1], src), ([2, 0, 0, 0, 0, 2], dst), &tcp)
}

/// The frame [`write_tcp_frame`] writes, in a vector of its own (tests).
#[cfg(any(test, feature = "testing"))]
pub fn test_tcp_frame(src: ([u8; 6], Ipv4Addr), dst: ([u8; 6], Ipv4Addr), tcp: &TcpRepr) -> Vec<u8> {
    let mut buf = vec![0u8; tcp_frame_len(tcp)];
    write_tcp_frame(&mut buf, src, dst, tcp);
    buf
}
