//! A connection's prebuilt headers: its Ethernet, IPv4 and TCP headers (with the timestamp
//! option's layout when the connection uses timestamps), laid out once when the engine takes the
//! connection over. Each segment copies them and fills in only what moves: the IPv4 total length
//! and checksum, the TCP sequence and acknowledgment numbers, header length, flags, window,
//! timestamps, SACK blocks, payload and checksum. The bytes are those [`super::seg::write`] writes
//! (a test compares them); the IPv4 checksum is the template's sum plus the length, the TCP one a
//! sum over the segment from the pseudo-header's prebuilt sum.

use super::csum::Sum;
use super::seg::{Out, Path};

/// Ethernet (14), IPv4 (20) and TCP (20) headers.
const BASE: usize = 54;
/// With the timestamp option (NOP, NOP, kind 8, length 10, TSval, TSecr; RFC 7323 Appendix A).
const WITH_TS: usize = BASE + 12;

/// The prebuilt headers of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    bytes: [u8; WITH_TS],
    /// The IPv4 header's sum with a total length and checksum of zero.
    ip_sum: u16,
    /// The TCP pseudo-header's sum without the TCP length (RFC 9293 §3.1: addresses, protocol).
    pseudo_sum: u16,
}

impl Template {
    /// The headers of the segments along `path`.
    pub fn new(path: &Path) -> Template {
        let mut b = [0u8; WITH_TS];
        b[0..6].copy_from_slice(&path.dst_mac);
        b[6..12].copy_from_slice(&path.src_mac);
        b[12..14].copy_from_slice(&[0x08, 0x00]);
        // IPv4: version 4, 20 bytes, DF (RFC 6864 §4.1: an atomic datagram needs no
        // identification), TTL 64, TCP.
        b[14] = 0x45;
        b[20] = 0x40;
        b[22] = 64;
        b[23] = 6;
        b[26..30].copy_from_slice(&path.src_ip.octets());
        b[30..34].copy_from_slice(&path.dst_ip.octets());
        b[34..36].copy_from_slice(&path.src_port.to_be_bytes());
        b[36..38].copy_from_slice(&path.dst_port.to_be_bytes());
        b[BASE..BASE + 4].copy_from_slice(&[1, 1, 8, 10]);
        let ip_sum = Sum::default().add_bytes(&b[14..34]).fold();
        let pseudo_sum = Sum::default().add_bytes(&b[26..34]).add_u16(6).fold();
        Template { bytes: b, ip_sum, pseudo_sum }
    }

    /// Where the segments go on the link.
    pub fn dst_mac(&self) -> [u8; 6] {
        self.bytes[0..6].try_into().expect("six bytes")
    }

    /// The peer is behind another MAC now.
    pub fn set_dst_mac(&mut self, mac: [u8; 6]) {
        self.bytes[0..6].copy_from_slice(&mac);
    }

    /// Writes `out`, which has no SYN options, into the first [`Out::frame_len`] bytes of `buf`
    /// and returns that length. The IPv4 checksum is filled in when `ip_csum`, the TCP one when
    /// `tcp_csum`; otherwise they are left zero for the port's offload.
    #[inline]
    pub fn write(&self, buf: &mut [u8], out: &Out, ip_csum: bool, tcp_csum: bool) -> usize {
        debug_assert!(out.syn.is_none(), "SYN options are written by seg::write");
        let hl = out.header_len();
        let tcp_len = hl + out.data_len();
        let len = 34 + tcp_len;
        let buf = &mut buf[..len];
        let head = if out.ts.is_some() { WITH_TS } else { BASE };
        buf[..head].copy_from_slice(&self.bytes[..head]);
        let total = (20 + tcp_len) as u16;
        buf[16..18].copy_from_slice(&total.to_be_bytes());
        if ip_csum {
            let c = Sum::default().add_u16(self.ip_sum).add_u16(total).checksum();
            buf[24..26].copy_from_slice(&c.to_be_bytes());
        }
        let tcp = &mut buf[34..];
        tcp[4..8].copy_from_slice(&out.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&out.ack.to_be_bytes());
        tcp[12] = ((hl / 4) as u8) << 4;
        tcp[13] = out.flags;
        tcp[14..16].copy_from_slice(&out.window.to_be_bytes());
        let mut at = 20;
        if let Some((val, ecr)) = out.ts {
            tcp[24..28].copy_from_slice(&val.to_be_bytes());
            tcp[28..32].copy_from_slice(&ecr.to_be_bytes());
            at = 32;
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
        if tcp_csum {
            let sum = Sum::default().add_u16(self.pseudo_sum).add_u16(tcp_len as u16);
            let c = sum.add_bytes(tcp).checksum();
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use smoltcp::phy::{Checksum, ChecksumCapabilities};

    use super::*;
    use crate::tcp::seg::{self, ACK, FIN, PSH, RST};

    fn path() -> Path {
        Path {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(198, 18, 0, 2),
            dst_ip: Ipv4Addr::new(198, 19, 7, 1),
            src_port: 80,
            dst_port: 40000,
        }
    }

    #[test]
    fn the_template_writes_what_the_general_writer_writes() {
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 7 + 3) as u8).collect();
        let sacks = [(1000u32, 2000u32), (3000, 4000), (5000, 6000), (7000, 8000)];
        let tpl = Template::new(&path());
        let mut none = ChecksumCapabilities::ignored();
        none.ipv4 = Checksum::None;
        none.tcp = Checksum::None;
        for (caps, on) in [(ChecksumCapabilities::default(), true), (none, false)] {
            for ts in [None, Some((0x0102_0304, 0xfffe_fdfc))] {
                for nsack in 0..=if ts.is_some() { 3 } else { 4 } {
                    for (a, b) in [(0, 0), (1, 0), (64, 0), (63, 1), (700, 701), (1400, 0)] {
                        let out = Out {
                            syn: None,
                            seq: 0xdead_beef,
                            ack: 0x0bad_f00d,
                            flags: if a == 1 {
                                ACK | FIN | PSH
                            } else if a == 0 {
                                ACK | RST
                            } else {
                                ACK | PSH
                            },
                            window: 0x1234,
                            ts,
                            sack: &sacks[..nsack],
                            data: [&data[..a], &data[a..a + b]],
                        };
                        let mut want = vec![0u8; out.frame_len()];
                        let mut got = vec![0xaau8; out.frame_len()];
                        assert_eq!(seg::write(&mut want, &path(), &out, &caps), want.len());
                        assert_eq!(tpl.write(&mut got, &out, on, on), got.len());
                        assert_eq!(got, want, "ts {ts:?}, {nsack} SACK blocks, {a}+{b} bytes, checksums {on}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_new_peer_mac_goes_into_the_template() {
        let mut tpl = Template::new(&path());
        tpl.set_dst_mac([2, 9, 9, 9, 9, 9]);
        let mut p = path();
        p.dst_mac = [2, 9, 9, 9, 9, 9];
        assert_eq!(tpl, Template::new(&p));
        assert_eq!(tpl.dst_mac(), p.dst_mac);
    }
}
