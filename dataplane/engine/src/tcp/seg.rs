//! TCP segments on the wire for the engine's own TCP: a parser that reads a received frame in
//! place (header prediction's short way for the usual timestamp-only layout, a full option walk
//! otherwise), and a writer of whole Ethernet/IPv4/TCP frames from a connection's [`Path`].
//!
//! Options follow RFC 9293 §3.1 (MSS, kind 2), RFC 7323 (window scale, kind 3; timestamps, kind
//! 8) and RFC 2018 (SACK-permitted, kind 4; SACK, kind 5). A malformed option list makes the
//! segment unreadable: it is dropped and counted, never half-read.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::checksum;

/// TCP header flags (RFC 9293 §3.1).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// SACK blocks one segment carries at most (four fit 40 bytes of options; three beside
/// timestamps, RFC 2018 §3).
pub const MAX_SACK: usize = 4;

/// The options of a segment that the engine reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr), RFC 7323 §3.
    pub ts: Option<(u32, u32)>,
    /// SACK blocks as `[left, right)`, the first `nsack` valid.
    pub sack: [(u32, u32); MAX_SACK],
    pub nsack: u8,
}

impl Options {
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..usize::from(self.nsack)]
    }
}

/// A received TCP segment, read in place.
#[derive(Clone, Copy, Debug)]
pub struct Seg<'a> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The window field as sent (unscaled).
    pub window: u16,
    pub options: Options,
    pub payload: &'a [u8],
}

impl Seg<'_> {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space it occupies: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(SYN)) + u32::from(self.has(FIN))
    }
}

/// Reads the TCP segment of an Ethernet/IPv4 frame that [`crate::flow::classify`] found to be
/// one (so the Ethernet and IPv4 headers are there and the IPv4 total length fits the frame).
/// `None` for a TCP header or option list that is malformed. Checksums are not checked here.
#[inline]
pub fn parse(frame: &[u8]) -> Option<Seg<'_>> {
    let ip = frame.get(14..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let tcp = ip.get(ihl..total)?;
    // The fixed header as an array: its fields are read without bounds checks.
    let (h, rest) = tcp.split_first_chunk::<20>()?;
    let data_off = usize::from(h[12] >> 4) * 4;
    let opts = rest.get(..data_off.checked_sub(20)?)?;
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    // Header prediction (RFC 9293 §3.10.7.4's usual case): timestamps alone, NOP NOP TS.
    let options = if let Some(&[1, 1, 8, 10, v0, v1, v2, v3, e0, e1, e2, e3]) =
        opts.first_chunk::<12>().filter(|_| opts.len() == 12)
    {
        Options {
            ts: Some((u32::from_be_bytes([v0, v1, v2, v3]), u32::from_be_bytes([e0, e1, e2, e3]))),
            ..Options::default()
        }
    } else if opts.is_empty() {
        Options::default()
    } else {
        parse_options(opts)?
    };
    Some(Seg {
        seq: word(4),
        ack: word(8),
        flags: h[13],
        window: u16::from_be_bytes([h[14], h[15]]),
        options,
        payload: &rest[data_off - 20..],
    })
}

/// Walks an option list (RFC 9293 §3.2: kind 0 ends it, kind 1 pads, every other kind has a
/// length byte counting itself and the kind).
fn parse_options(mut o: &[u8]) -> Option<Options> {
    let mut r = Options::default();
    while let Some(&kind) = o.first() {
        match kind {
            0 => break,
            1 => {
                o = &o[1..];
                continue;
            }
            _ => {}
        }
        let len = usize::from(*o.get(1)?);
        if len < 2 || len > o.len() {
            return None;
        }
        let body = &o[2..len];
        match (kind, body.len()) {
            (2, 2) => r.mss = Some(u16::from_be_bytes([body[0], body[1]])),
            // RFC 7323 §2.3: a shift above 14 is used as 14.
            (3, 1) => r.wscale = Some(body[0].min(14)),
            (4, 0) => r.sack_permitted = true,
            (5, n) if n % 8 == 0 && n > 0 => {
                for b in body.chunks_exact(8).take(MAX_SACK) {
                    let l = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    let rt = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                    r.sack[usize::from(r.nsack)] = (l, rt);
                    r.nsack += 1;
                }
            }
            (8, 8) => {
                let v = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let e = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                r.ts = Some((v, e));
            }
            // A known kind with the wrong length is malformed; unknown kinds are skipped.
            (2..=5 | 8, _) => return None,
            _ => {}
        }
        o = &o[len..];
    }
    Some(r)
}

/// Where a connection's segments go: both ends' link and network addresses and ports. IPv4
/// today; the writer is the one place an IPv6 path would add its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// The options of a SYN-ACK the engine writes itself (a SYN cookie's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: u16,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
}

impl SynOptions {
    /// Bytes they take beside timestamps: MSS 4, SACK-permitted 4 (2 when it shares the
    /// timestamps' padding), window scale 4.
    fn len(&self, ts: bool) -> usize {
        let sack = if self.sack_permitted && !ts { 4 } else { 0 };
        4 + sack + if self.wscale.is_some() { 4 } else { 0 }
    }
}

/// A segment to send.
#[derive(Clone, Copy, Debug)]
pub struct Out<'a> {
    /// SYN options (a SYN-ACK the engine writes itself), if any.
    pub syn: Option<SynOptions>,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// (TSval, TSecr) when the connection uses timestamps.
    pub ts: Option<(u32, u32)>,
    pub sack: &'a [(u32, u32)],
    /// The payload, in up to two pieces (a ring's two ends).
    pub data: [&'a [u8]; 2],
}

impl Out<'_> {
    /// TCP header length with options (padded to 4 bytes).
    pub fn header_len(&self) -> usize {
        let ts = if self.ts.is_some() { 12 } else { 0 };
        let sack = if self.sack.is_empty() { 0 } else { 4 + 8 * self.sack.len() };
        let syn = self.syn.map_or(0, |s| s.len(self.ts.is_some()));
        20 + ts + sack + syn
    }

    pub fn data_len(&self) -> usize {
        self.data[0].len() + self.data[1].len()
    }

    /// The Ethernet frame's length.
    pub fn frame_len(&self) -> usize {
        14 + 20 + self.header_len() + self.data_len()
    }
}

/// Writes `out` along `path` into the first [`Out::frame_len`] bytes of `buf` and returns that
/// length. Checksums are computed where `caps` says software sends them; otherwise they are left
/// zero for the port (its offload, or a wire that needs none).
pub fn write(buf: &mut [u8], path: &Path, out: &Out, caps: &ChecksumCapabilities) -> usize {
    let tcp_len = out.header_len() + out.data_len();
    let len = 14 + 20 + tcp_len;
    let buf = &mut buf[..len];
    buf[0..6].copy_from_slice(&path.dst_mac);
    buf[6..12].copy_from_slice(&path.src_mac);
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut buf[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    // RFC 6864 §4.1: an atomic datagram (DF set) needs no unique identification.
    ip[4..6].copy_from_slice(&[0, 0]);
    ip[6..8].copy_from_slice(&[0x40, 0x00]);
    ip[8] = 64;
    ip[9] = 6;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&path.src_ip.octets());
    ip[16..20].copy_from_slice(&path.dst_ip.octets());
    if caps.ipv4.tx() {
        let c = !checksum::data(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let tcp = &mut buf[34..];
    tcp[0..2].copy_from_slice(&path.src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&path.dst_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&out.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&out.ack.to_be_bytes());
    let hl = out.header_len();
    tcp[12] = ((hl / 4) as u8) << 4;
    tcp[13] = out.flags;
    tcp[14..16].copy_from_slice(&out.window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0, 0, 0, 0]);
    let mut at = 20;
    if let Some(s) = out.syn {
        tcp[at..at + 4].copy_from_slice(&[2, 4, (s.mss >> 8) as u8, s.mss as u8]);
        at += 4;
        if s.sack_permitted && out.ts.is_none() {
            tcp[at..at + 4].copy_from_slice(&[1, 1, 4, 2]);
            at += 4;
        }
        if let Some(w) = s.wscale {
            tcp[at..at + 4].copy_from_slice(&[1, 3, 3, w]);
            at += 4;
        }
    }
    if let Some((val, ecr)) = out.ts {
        // With SACK-permitted on a SYN, it takes the timestamps' two bytes of padding.
        let lead = if out.syn.is_some_and(|s| s.sack_permitted) { [4, 2] } else { [1, 1] };
        tcp[at..at + 2].copy_from_slice(&lead);
        tcp[at + 2..at + 4].copy_from_slice(&[8, 10]);
        tcp[at + 4..at + 8].copy_from_slice(&val.to_be_bytes());
        tcp[at + 8..at + 12].copy_from_slice(&ecr.to_be_bytes());
        at += 12;
    }
    if !out.sack.is_empty() {
        tcp[at..at + 4].copy_from_slice(&[1, 1, 5, (2 + 8 * out.sack.len()) as u8]);
        at += 4;
        for &(l, r) in out.sack {
            tcp[at..at + 4].copy_from_slice(&l.to_be_bytes());
            tcp[at + 4..at + 8].copy_from_slice(&r.to_be_bytes());
            at += 8;
        }
    }
    debug_assert_eq!(at, hl);
    let (a, b) = (out.data[0].len(), out.data[1].len());
    tcp[hl..hl + a].copy_from_slice(out.data[0]);
    tcp[hl + a..hl + a + b].copy_from_slice(out.data[1]);
    if caps.tcp.tx() {
        let pseudo =
            checksum::pseudo_header_v4(&path.src_ip, &path.dst_ip, smoltcp::wire::IpProtocol::Tcp, tcp_len as u32);
        let c = !checksum::combine(&[pseudo, checksum::data(tcp)]);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, TcpPacket};

    fn path() -> Path {
        Path {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(198, 18, 0, 2),
            dst_ip: Ipv4Addr::new(198, 18, 0, 1),
            src_port: 80,
            dst_port: 40000,
        }
    }

    #[test]
    fn a_written_segment_parses_back_and_its_checksums_hold() {
        let sack = [(1000, 2000), (3000, 4000)];
        let out = Out {
            syn: None,
            seq: 7,
            ack: 900,
            flags: ACK | PSH,
            window: 512,
            ts: Some((11, 22)),
            sack: &sack,
            data: [b"hel", b"lo"],
        };
        let mut buf = vec![0u8; out.frame_len()];
        let n = write(&mut buf, &path(), &out, &ChecksumCapabilities::default());
        assert_eq!(n, buf.len());
        assert!(crate::phy::checksums_ok(&buf, true, true));
        let seg = parse(&buf).unwrap();
        assert_eq!((seg.seq, seg.ack, seg.flags, seg.window), (7, 900, ACK | PSH, 512));
        assert_eq!(seg.payload, b"hello");
        assert_eq!(seg.options.ts, Some((11, 22)));
        assert_eq!(seg.options.sack_blocks(), &sack);
        let ip = smoltcp::wire::Ipv4Packet::new_checked(&buf[14..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let p = path();
        assert!(tcp.verify_checksum(&IpAddress::Ipv4(p.src_ip), &IpAddress::Ipv4(p.dst_ip)));
    }

    #[test]
    fn a_timestamp_only_segment_takes_the_short_way_and_equals_the_long_one() {
        let out =
            Out { syn: None, seq: 1, ack: 2, flags: ACK, window: 3, ts: Some((4, 5)), sack: &[], data: [b"", b""] };
        let mut buf = vec![0u8; out.frame_len()];
        write(&mut buf, &path(), &out, &ChecksumCapabilities::default());
        let short = parse(&buf).unwrap().options;
        let long = parse_options(&buf[54..66]).unwrap();
        assert_eq!(short, long);
    }

    #[test]
    fn a_syn_ack_carries_its_options_whole() {
        for (ts, sack, ws) in [(true, true, Some(7)), (false, true, Some(0)), (true, false, None), (false, false, None)]
        {
            let out = Out {
                syn: Some(SynOptions { mss: 1460, wscale: ws, sack_permitted: sack }),
                seq: 1,
                ack: 2,
                flags: SYN | ACK,
                window: 65535,
                ts: ts.then_some((4, 5)),
                sack: &[],
                data: [b"", b""],
            };
            assert_eq!(out.header_len() % 4, 0);
            let mut buf = vec![0u8; out.frame_len()];
            write(&mut buf, &path(), &out, &ChecksumCapabilities::default());
            let o = parse(&buf).unwrap().options;
            assert_eq!((o.mss, o.wscale, o.sack_permitted, o.ts), (Some(1460), ws, sack, ts.then_some((4, 5))));
        }
    }

    #[test]
    fn malformed_options_make_the_segment_unreadable() {
        for bad in [&[2u8, 4, 1][..], &[3, 2], &[8, 9, 0, 0, 0, 0, 0, 0, 0], &[5, 9, 0, 0, 0, 0, 0, 0, 0], &[7]] {
            assert_eq!(parse_options(bad), None, "{bad:?}");
        }
        let o = parse_options(&[2, 4, 5, 180, 1, 3, 3, 20, 4, 2, 0, 99]).unwrap();
        assert_eq!((o.mss, o.wscale, o.sack_permitted), (Some(1460), Some(14), true));
    }
}
