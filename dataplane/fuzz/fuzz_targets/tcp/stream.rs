//! The two byte streams of the `tcp` target: the peer's and our application's.

use std::sync::OnceLock;

/// The streams' bytes: a block of prime length, repeated (a misplaced byte shows unless it moved
/// by a multiple of the period); the peer's stream starts at its 0, ours 7919 bytes in. Stored
/// twice over, so any run of up to a period is one slice.
const PERIOD: usize = 65_521;
pub const PEER: u32 = 0;
pub const OURS: u32 = 7919;

fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let block: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        [&block[..], &block[..]].concat()
    })
}

/// `n` bytes of a stream (`PEER` or `OURS`) from offset `off`, appended to `out`.
pub fn stream(side: u32, off: u32, n: usize, out: &mut Vec<u8>) {
    let p = pattern();
    let mut done = 0;
    while done < n {
        // Offsets count modulo 2^32 (a sequence number's): a run stops at the wrap.
        let cur = off.wrapping_add(done as u32);
        let at = (u64::from(side) + u64::from(cur)) as usize % PERIOD;
        let k = (n - done).min(PERIOD).min((1u64 << 32).wrapping_sub(u64::from(cur)) as usize);
        out.extend_from_slice(&p[at..at + k]);
        done += k;
    }
}

/// Whether `bytes` are the stream's from offset `off`; if not, the first that differs.
pub fn differs(side: u32, off: u32, bytes: &[u8]) -> Option<usize> {
    let p = pattern();
    let mut done = 0;
    while done < bytes.len() {
        let cur = off.wrapping_add(done as u32);
        let at = (u64::from(side) + u64::from(cur)) as usize % PERIOD;
        let k = (bytes.len() - done).min(PERIOD).min((1u64 << 32).wrapping_sub(u64::from(cur)) as usize);
        if bytes[done..done + k] != p[at..at + k] {
            return (0..k).find(|&i| bytes[done + i] != p[at + i]).map(|i| done + i);
        }
        done += k;
    }
    None
}
