//! The Internet checksum (RFC 1071) eight bytes at a time, for the engine's own segments.
//!
//! RFC 1071 §2: the ones'-complement sum is the same whatever the width of the words added (a
//! carry out of bit 16, 32 or 64 goes back in at bit 0 once folded), and in either byte order
//! (§2 (B): a sum of byte-swapped words is the byte-swapped sum). So the sum here adds 64-bit
//! native-endian words into a 128-bit accumulator and folds once at the end, where smoltcp's
//! `checksum::data` adds 16-bit words: about a quarter of the instructions on a 64-byte payload.

/// A running ones'-complement sum: add pieces with [`Sum::add_bytes`] (every piece but the last of an
/// even length, so that each byte keeps its place in its 16-bit word), then [`Sum::fold`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(u128);

impl Sum {
    /// Adds the bytes of `data`, as 16-bit words in network order (an odd last byte is padded
    /// with a zero, RFC 1071 §1).
    #[inline]
    pub fn add_bytes(self, data: &[u8]) -> Sum {
        let (blocks, rest) = data.as_chunks::<32>();
        let mut acc = self.0;
        for b in blocks {
            let w = |i: usize| u128::from(u64::from_ne_bytes(b[i..i + 8].try_into().expect("eight bytes")));
            acc += (w(0) + w(8)) + (w(16) + w(24));
        }
        let (words, rest) = rest.as_chunks::<8>();
        for w in words {
            acc += u128::from(u64::from_ne_bytes(*w));
        }
        // The last bytes, each at its place in a 16-bit word (an odd one is a word's first byte).
        let mut tail = 0u64;
        let mut rest = rest;
        if let Some((four, r)) = rest.split_first_chunk::<4>() {
            tail += u64::from(u32::from_ne_bytes(*four));
            rest = r;
        }
        if let Some((two, r)) = rest.split_first_chunk::<2>() {
            tail += u64::from(u16::from_ne_bytes(*two));
            rest = r;
        }
        if let Some(&last) = rest.first() {
            tail += u64::from(u16::from_ne_bytes([last, 0]));
        }
        Sum(acc + u128::from(tail))
    }

    /// Adds one 16-bit word given in host order (a length, a protocol number).
    #[inline]
    pub fn add_u16(self, v: u16) -> Sum {
        // Its two bytes in network order, read as the sum reads every word.
        Sum(self.0 + u128::from(u16::from_ne_bytes(v.to_be_bytes())))
    }

    /// The sum folded to 16 bits, in host order (not complemented).
    #[inline]
    pub fn fold(self) -> u16 {
        let s = self.0;
        let s = (s as u64 as u128) + (s >> 64);
        let s = (s as u64 as u128) + (s >> 64); // the carry of the first fold
        let s = s as u64;
        let s = (s & 0xffff_ffff) + (s >> 32);
        let s = (s & 0xffff_ffff) + (s >> 32);
        let s = (s & 0xffff) + (s >> 16);
        let s = (s & 0xffff) + (s >> 16);
        // The folded native-endian sum, laid out in memory, is the network-order sum.
        u16::from_be_bytes((s as u16).to_ne_bytes())
    }

    /// The checksum field's value for what was summed (the field itself counted as zero).
    #[inline]
    pub fn checksum(self) -> u16 {
        !self.fold()
    }
}

/// Whether an IPv4 header (`ip`, its options included) and, when `tcp` is given, the TCP segment
/// it carries (header and payload) have the right checksums. The sum over a header or segment
/// whose checksum field is right is all ones (RFC 1071 §1).
#[inline]
pub fn ipv4_tcp_ok(ip: &[u8], tcp: Option<&[u8]>) -> bool {
    if Sum::default().add_bytes(ip).fold() != 0xffff {
        return false;
    }
    tcp.is_none_or(|tcp| tcp_ok(ip, tcp))
}

/// Whether the TCP segment `tcp` (header and payload) that the IPv4 header `ip` carries has the
/// right checksum: with the pseudo-header (RFC 9293 §3.1: addresses, protocol, TCP length) the
/// sum is all ones.
#[inline]
pub fn tcp_ok(ip: &[u8], tcp: &[u8]) -> bool {
    let pseudo = Sum::default().add_bytes(&ip[12..20]).add_u16(6).add_u16(tcp.len() as u16);
    pseudo.add_bytes(tcp).fold() == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::checksum;

    /// A splitmix64 stream of bytes.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                (z ^ (z >> 27)) as u8
            })
            .collect()
    }

    #[test]
    fn rfc1071_the_wide_sum_equals_smoltcps_word_sum_for_every_length() {
        for n in 0..300 {
            for seed in 0..4 {
                let d = bytes(seed * 1000 + n as u64, n);
                assert_eq!(Sum::default().add_bytes(&d).fold(), checksum::data(&d), "{n} bytes, seed {seed}");
            }
        }
        // All ones, and carries out of every width.
        let ones = vec![0xffu8; 1500];
        assert_eq!(Sum::default().add_bytes(&ones).fold(), checksum::data(&ones));
    }

    #[test]
    fn rfc9293_3_1_a_written_segment_checks_and_any_flipped_bit_fails() {
        let path = crate::tcp::seg::Path {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: std::net::Ipv4Addr::new(198, 18, 0, 2),
            dst_ip: std::net::Ipv4Addr::new(198, 19, 3, 4),
            src_port: 80,
            dst_port: 40001,
        };
        let data = bytes(3, 101);
        let out = crate::tcp::seg::Out {
            syn: None,
            seq: 1,
            ack: 2,
            flags: crate::tcp::seg::ACK,
            window: 3,
            ts: Some((4, 5)),
            sack: &[],
            data: [&data, &[]],
        };
        let mut f = vec![0u8; out.frame_len()];
        crate::tcp::seg::write(&mut f, &path, &out, &smoltcp::phy::ChecksumCapabilities::default());
        assert!(ipv4_tcp_ok(&f[14..34], Some(&f[34..])));
        for at in 14..f.len() {
            let mut g = f.clone();
            g[at] ^= 0x10;
            let ok = ipv4_tcp_ok(&g[14..34], Some(&g[34..]));
            assert!(!ok, "byte {at} flipped");
        }
    }

    #[test]
    fn rfc1071_pieces_of_even_length_add_up_to_the_whole() {
        let d = bytes(7, 133);
        let whole = Sum::default().add_bytes(&d).fold();
        for cut in (0..133).step_by(2) {
            assert_eq!(Sum::default().add_bytes(&d[..cut]).add_bytes(&d[cut..]).fold(), whole, "cut at {cut}");
        }
    }
}
