//! SYN cookies (RFC 4987 §3.6): a SYN-ACK whose initial sequence number carries what the listener
//! would have kept for a half-open connection, so that a listener under a SYN flood keeps no state
//! until the client's ACK proves it is there.
//!
//! # The encoding
//! Our ISS is `t << 27 | (MAC(key, 4-tuple, client ISN, t) + mss_index) mod 2^27`:
//! - `t`, the top 5 bits, a counter of [`PERIOD`] (64 s) periods: an ACK is accepted within
//!   [`VALID_PERIODS`] periods of its SYN-ACK (64 to 128 s), so a captured cookie ages out;
//! - the MAC, SipHash-2-4 under a 128-bit secret per engine (`core::hash::SipHasher`, the keyed
//!   SipHash-2-4 of the standard library), over the 4-tuple, the client's ISN and `t`: a sender
//!   that cannot see our SYN-ACKs has a chance of 8 in 2^27 per guess;
//! - the MSS as an index into [`MSS_TABLE`] (3 bits), added to the MAC as Linux does.
//!
//! When the SYN carries timestamps, our TSval's low 6 bits carry the rest (the ACK echoes it in
//! TSecr): the window scale the client offered (4 bits, 15 = none), SACK-permitted and ECN (one
//! bit each), as Linux's `cookie_init_timestamp`. Without timestamps a cookie connection has no
//! window scaling and no SACK (as with Linux).

use std::hash::Hasher;
use std::time::Duration;

use crate::flow::FourTuple;

/// The cookie counter's period.
pub const PERIOD: Duration = Duration::from_secs(64);
/// Periods a cookie stays valid (the one it was made in and the next).
pub const VALID_PERIODS: u32 = 2;
/// MSS values a cookie can carry (Linux's IPv4 table): the largest not above the client's is
/// chosen.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

const MAC_BITS: u32 = 27;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// What a cookie carries of the client's SYN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieSyn {
    pub mss: u16,
    /// The client's window scale, SACK-permitted and ECN, when the SYN carried timestamps (the
    /// TSval's low bits carry them).
    pub wscale: Option<u8>,
    pub sack: bool,
    pub ecn: bool,
}

/// The engine's cookie secret.
#[derive(Clone, Copy, Debug)]
pub struct CookieJar {
    k0: u64,
    k1: u64,
}

impl CookieJar {
    /// A jar with a secret drawn from `seed` (the engine's random seed, from a real random source).
    pub fn new(seed: u64) -> CookieJar {
        // splitmix64, twice: two independent-looking words from one seed.
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let a = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        CookieJar { k0: mix(a), k1: mix(a.wrapping_add(0x9e37_79b9_7f4a_7c15)) }
    }

    #[allow(deprecated)] // SipHasher: the keyed SipHash-2-4 this needs, in core, "deprecated" in favour of crates
    fn mac(&self, t: &FourTuple, client_isn: u32, count: u32) -> u32 {
        let mut h = std::hash::SipHasher::new_with_keys(self.k0, self.k1);
        h.write_u32(u32::from(t.remote_ip));
        h.write_u32(u32::from(t.local_ip));
        h.write_u32((u32::from(t.remote_port) << 16) | u32::from(t.local_port));
        h.write_u32(client_isn);
        h.write_u32(count);
        h.finish() as u32
    }

    /// The ISS for a SYN with initial sequence number `client_isn` and MSS option `mss` (536 if
    /// absent) on `tuple`, at engine time `now`.
    pub fn make(&self, tuple: &FourTuple, client_isn: u32, mss: u16, now: Duration) -> u32 {
        let count = counter(now);
        let index = MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32;
        ((count & 0x1f) << MAC_BITS) | (self.mac(tuple, client_isn, count).wrapping_add(index) & MAC_MASK)
    }

    /// Checks the cookie `iss` (the ACK's acknowledgment number less one) for the client whose
    /// ISN was `client_isn` (its sequence number less one) at `now`; the MSS it carries, if valid.
    pub fn check(&self, tuple: &FourTuple, client_isn: u32, iss: u32, now: Duration) -> Option<u16> {
        let now_count = counter(now);
        let low5 = iss >> MAC_BITS;
        // The full counter whose low 5 bits the cookie carries, no later than now.
        let age = now_count.wrapping_sub(low5) & 0x1f;
        if age >= VALID_PERIODS {
            return None;
        }
        let count = now_count.wrapping_sub(age);
        let index = (iss.wrapping_sub(self.mac(tuple, client_isn, count))) & MAC_MASK;
        MSS_TABLE.get(index as usize).copied()
    }
}

fn counter(now: Duration) -> u32 {
    (now.as_secs() / PERIOD.as_secs()) as u32
}

/// Our TSval for a cookie SYN-ACK: the clock's value with its low 6 bits carrying the client's
/// options (see the module documentation).
pub fn encode_ts(ts_now: u32, syn: &CookieSyn) -> u32 {
    let ws = u32::from(syn.wscale.unwrap_or(15).min(15));
    let bits = ws | (u32::from(syn.sack) << 4) | (u32::from(syn.ecn) << 5);
    // Never later than the clock (RFC 7323 §5.4 wants TSvals to grow): take 64 off if needed.
    let base = ts_now & !0x3f;
    let v = base | bits;
    if v > ts_now {
        v.wrapping_sub(64)
    } else {
        v
    }
}

/// The options a cookie's TSecr carries back.
pub fn decode_ts(tsecr: u32) -> (Option<u8>, bool, bool) {
    let ws = (tsecr & 0xf) as u8;
    let wscale = if ws == 15 { None } else { Some(ws.min(14)) };
    (wscale, tsecr & 0x10 != 0, tsecr & 0x20 != 0)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            remote_ip: Ipv4Addr::new(198, 18, 0, 1),
            local_ip: Ipv4Addr::new(198, 18, 0, 2),
            remote_port: port,
            local_port: 80,
        }
    }

    #[test]
    fn rfc4987_a_cookie_checks_out_for_its_own_client_within_its_validity() {
        let jar = CookieJar::new(7);
        let t0 = Duration::from_secs(1000);
        let iss = jar.make(&tuple(40000), 12345, 1460, t0);
        assert_eq!(jar.check(&tuple(40000), 12345, iss, t0), Some(1460));
        assert_eq!(jar.check(&tuple(40000), 12345, iss, t0 + PERIOD), Some(1460), "the next period");
        assert_eq!(jar.check(&tuple(40000), 12345, iss, t0 + 2 * PERIOD), None, "aged out");
        assert_eq!(jar.check(&tuple(40001), 12345, iss, t0), None, "another 4-tuple");
        assert_eq!(jar.check(&tuple(40000), 12346, iss, t0), None, "another client ISN");
        assert_eq!(CookieJar::new(8).check(&tuple(40000), 12345, iss, t0), None, "another secret");
    }

    #[test]
    fn the_mss_is_the_largest_of_the_table_not_above_the_clients() {
        let jar = CookieJar::new(1);
        let t = Duration::from_secs(5);
        for (mss, want) in [(1460, 1460), (1450, 1440), (1400, 1300), (536, 536), (100, 536), (9000, 1460)] {
            let iss = jar.make(&tuple(1), 1, mss, t);
            assert_eq!(jar.check(&tuple(1), 1, iss, t), Some(want), "mss {mss}");
        }
    }

    #[test]
    fn random_guesses_rarely_pass() {
        let jar = CookieJar::new(3);
        let t = Duration::from_secs(5);
        let mut x = 0x1234_5678u32;
        let mut passed = 0;
        for i in 0..200_000u32 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            passed += u32::from(jar.check(&tuple(i as u16), i, x, t).is_some());
        }
        // 8 valid indexes of 2^27 for two periods of 32: about 200,000 * 8 / 2^27 / 16 = 0.0007.
        assert!(passed <= 2, "{passed} random cookies passed");
    }

    #[test]
    fn the_timestamp_carries_the_clients_options_and_never_runs_ahead_of_the_clock() {
        for syn in [
            CookieSyn { mss: 1460, wscale: Some(7), sack: true, ecn: false },
            CookieSyn { mss: 1460, wscale: None, sack: false, ecn: true },
        ] {
            for now in [1000u32, 1023, 1024, 64] {
                let v = encode_ts(now, &syn);
                assert!(v <= now, "{v} > {now}");
                assert_eq!(decode_ts(v), (syn.wscale, syn.sack, syn.ecn));
            }
        }
    }
}
