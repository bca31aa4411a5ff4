//! Toeplitz hashing through DPDK's `rte_softrss`: the hash a NIC's RSS computes, in software.

use std::net::Ipv4Addr;

/// RSS key length for Toeplitz over IPv4 4-tuples.
pub const RSS_KEY_LEN: usize = 40;

/// A symmetric key (0x6d5a repeated): the hash of (a, b, pa, pb) equals that of (b, a, pb, pa),
/// so both directions of a flow land on the same core.
pub const SYMMETRIC_RSS_KEY: [u8; RSS_KEY_LEN] = {
    let mut k = [0u8; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Toeplitz hash of an IPv4 4-tuple, as RSS computes it for TCP/UDP (`rte_ipv4_tuple` layout).
pub fn softrss_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, key: &[u8; RSS_KEY_LEN]) -> u32 {
    let mut tuple = [u32::from(src), u32::from(dst), (u32::from(sport) << 16) | u32::from(dport)];
    // SAFETY: tuple holds 3 words as input_len says; key holds the 40 bytes a 12-byte input needs.
    unsafe { dpdk_sys::rte_softrss(tuple.as_mut_ptr(), 3, key.as_ptr()) }
}

/// Toeplitz hash of an IPv4 address pair (RSS for non-TCP/UDP IPv4).
pub fn softrss_v4_addrs(src: Ipv4Addr, dst: Ipv4Addr, key: &[u8; RSS_KEY_LEN]) -> u32 {
    let mut tuple = [u32::from(src), u32::from(dst)];
    // SAFETY: tuple holds 2 words as input_len says; the key is long enough.
    unsafe { dpdk_sys::rte_softrss(tuple.as_mut_ptr(), 2, key.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Microsoft RSS verification suite's key and first IPv4/TCP vector
    /// (66.9.149.187:2794 -> 161.142.100.80:1766, hash 0x51ccc178).
    #[test]
    fn matches_the_rss_verification_vector() {
        const MS_KEY: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca,
            0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b,
            0xbe, 0xac, 0x01, 0xfa,
        ];
        let h = softrss_v4(Ipv4Addr::new(66, 9, 149, 187), Ipv4Addr::new(161, 142, 100, 80), 2794, 1766, &MS_KEY);
        assert_eq!(h, 0x51cc_c178);
    }

    #[test]
    fn the_symmetric_key_is_symmetric() {
        let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
        for p in [1u16, 80, 40000, 65535] {
            assert_eq!(softrss_v4(a, b, p, 7, &SYMMETRIC_RSS_KEY), softrss_v4(b, a, 7, p, &SYMMETRIC_RSS_KEY));
        }
    }
}
