//! Building blocks of the engine's own TCP for established connections (issue 26): each one a
//! piece of an RFC, pure and tested on its own, before the connection path that will use them.
//!
//! - [`cc`]: congestion control, CUBIC (RFC 9438) and Reno (RFC 5681), the initial window of RFC
//!   6928.
//! - [`rack`]: time-based loss detection and the tail loss probe, RACK-TLP (RFC 8985).
//! - [`rtt`]: the retransmission timer's estimator (RFC 6298) with a configurable floor.
//! - [`sack`]: the sender's SACK scoreboard (RFC 2018, RFC 6675's IsLost and NextSeg, RFC 2883's
//!   D-SACK).

pub mod cc;
pub mod clock;
pub mod conn;
pub mod cookie;
pub mod csum;
pub mod hdr;
pub mod rack;
pub mod reasm;
pub mod ring;
pub mod rtt;
pub mod sack;
pub mod seg;
#[cfg(test)]
mod tests;
