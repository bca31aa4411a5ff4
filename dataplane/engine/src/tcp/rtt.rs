//! The retransmission timer's estimator, RFC 6298.
//!
//! The engine's clock counts microseconds, so the clock granularity G of RFC 6298 §2 is 1 µs and
//! plays no part. Where RFC 6298 §2.4 rounds the RTO up to one second, the floor here is
//! configurable ([`RttEstimator::new`]), 200 ms by default as Linux's `tcp_rto_min`: on a LAN with
//! sub-millisecond round trips a one-second floor makes every tail loss cost a second (smoltcp's
//! constant). The initial RTO is one second (§2.1) until the first sample; the handshake's own
//! round trip is the first sample when it was not retransmitted (§3, Karn's rule).

use std::time::Duration;

/// The RTO before any sample (RFC 6298 §2.1).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The default floor (Linux's `tcp_rto_min`).
pub const DEFAULT_MIN_RTO: Duration = Duration::from_millis(200);
/// The ceiling (RFC 6298 §2.5 allows one of at least 60 s).
pub const MAX_RTO: Duration = Duration::from_secs(60);

/// SRTT, RTTVAR and the RTO of one connection, with its exponential backoff (RFC 6298 §5.5). The
/// figures are microseconds (`u64`), as the control block reads them on every ACK and send; the
/// `Duration` accessors are for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    /// Smoothed round-trip time, microseconds (`None` before the first sample).
    srtt_us: Option<u64>,
    /// Round-trip time variation, microseconds.
    rttvar_us: u64,
    /// The RTO as §2.2/§2.3 compute it, floor and ceiling applied, before backoff.
    base_us: u64,
    /// Timeouts since the last sample: the RTO is doubled this many times (§5.5).
    backoff: u32,
    min_us: u64,
    /// The RTO in force: `base_us` with the backoff, changed only by a sample or a timeout.
    rto_us: u64,
}

/// [`MAX_RTO`] in microseconds.
const MAX_RTO_US: u64 = 60_000_000;

impl RttEstimator {
    /// An estimator whose RTO is never below `min_rto` (clamped to at most [`MAX_RTO`]).
    pub fn new(min_rto: Duration) -> RttEstimator {
        let min_us = (min_rto.min(MAX_RTO).as_micros() as u64).max(1);
        let mut e = RttEstimator {
            srtt_us: None,
            rttvar_us: 0,
            base_us: (INITIAL_RTO.as_micros() as u64).max(min_us),
            backoff: 0,
            min_us,
            rto_us: 0,
        };
        e.refresh();
        e
    }

    /// The RTO in force from the figures: the estimate doubled once per timeout since the last
    /// sample, up to the ceiling.
    fn refresh(&mut self) {
        let us = self.base_us.saturating_mul(1u64.checked_shl(self.backoff).unwrap_or(u64::MAX));
        self.rto_us = us.min(MAX_RTO_US);
    }

    /// Takes a round-trip sample `r`: from a segment that was not retransmitted (Karn, §3), or
    /// from a timestamp echo (RFC 7323 §4), which is valid either way. Ends any backoff.
    pub fn sample(&mut self, r: Duration) {
        self.sample_us(r.as_micros() as u64);
    }

    /// [`RttEstimator::sample`] of `r` microseconds.
    pub fn sample_us(&mut self, r: u64) {
        let r = r.max(1);
        match self.srtt_us {
            // §2.2: the first measurement.
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            // §2.3: RTTVAR first (with the old SRTT), beta = 1/4, alpha = 1/8.
            Some(srtt) => {
                self.rttvar_us = (3 * self.rttvar_us + srtt.abs_diff(r)) / 4;
                self.srtt_us = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt_us.expect("set above");
        // RTO = SRTT + max(G, K * RTTVAR), K = 4, G = 1 us; §2.4's floor; §2.5's ceiling.
        let rto = srtt + (4 * self.rttvar_us).max(1);
        self.base_us = rto.clamp(self.min_us, MAX_RTO_US);
        self.backoff = 0;
        self.refresh();
    }

    /// The retransmission timer expired (§5.5): the next RTO is twice this one, up to the ceiling.
    pub fn on_timeout(&mut self) {
        if self.rto_us < MAX_RTO_US {
            self.backoff += 1;
            self.refresh();
        }
    }

    /// The RTO in force: the estimate, doubled once per timeout since the last sample.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(self.rto_us)
    }

    /// [`RttEstimator::rto`] in microseconds.
    pub fn rto_us(&self) -> u64 {
        self.rto_us
    }

    /// The smoothed round trip, once there has been a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }

    /// [`RttEstimator::srtt`] in microseconds.
    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us
    }

    /// The round-trip variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar_us)
    }

    /// Timeouts since the last sample.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new(DEFAULT_MIN_RTO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rfc6298_2_1_the_rto_is_one_second_before_any_sample() {
        let e = RttEstimator::default();
        assert_eq!((e.rto(), e.srtt()), (INITIAL_RTO, None));
        // A floor above a second raises even the initial RTO.
        assert_eq!(RttEstimator::new(Duration::from_secs(2)).rto(), Duration::from_secs(2));
    }

    #[test]
    fn rfc6298_2_2_the_first_sample_sets_srtt_and_half_of_it_as_rttvar() {
        let mut e = RttEstimator::new(Duration::from_millis(1));
        e.sample(100 * MS);
        assert_eq!((e.srtt(), e.rttvar()), (Some(100 * MS), 50 * MS));
        assert_eq!(e.rto(), 300 * MS, "SRTT + 4 RTTVAR");
    }

    #[test]
    fn rfc6298_2_3_later_samples_smooth_with_one_eighth_and_one_quarter() {
        let mut e = RttEstimator::new(Duration::from_millis(1));
        e.sample(100 * MS);
        e.sample(180 * MS);
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 180| = 57.5; SRTT = 7/8 * 100 + 1/8 * 180 = 110.
        assert_eq!(e.rttvar(), Duration::from_micros(57_500));
        assert_eq!(e.srtt(), Some(110 * MS));
        assert_eq!(e.rto(), 340 * MS);
        // A steady round trip shrinks RTTVAR towards zero and the RTO towards SRTT.
        for _ in 0..200 {
            e.sample(110 * MS);
        }
        assert!(e.rto() < 111 * MS, "{:?}", e.rto());
    }

    #[test]
    fn rfc6298_2_4_the_floor_holds_for_sub_millisecond_round_trips() {
        let mut e = RttEstimator::default();
        for _ in 0..10 {
            e.sample(Duration::from_micros(80));
        }
        assert_eq!(e.rto(), DEFAULT_MIN_RTO, "200 ms, where a one-second floor would wait 1 s");
    }

    #[test]
    fn rfc6298_5_5_each_timeout_doubles_the_rto_up_to_the_ceiling_and_a_sample_ends_it() {
        let mut e = RttEstimator::default();
        e.sample(Duration::from_micros(80));
        e.on_timeout();
        assert_eq!(e.rto(), 400 * MS);
        e.on_timeout();
        assert_eq!(e.rto(), 800 * MS);
        for _ in 0..20 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), MAX_RTO);
        assert!(e.backoff() < 20, "no doubling past the ceiling");
        e.sample(Duration::from_micros(80));
        assert_eq!((e.rto(), e.backoff()), (DEFAULT_MIN_RTO, 0));
    }
}
