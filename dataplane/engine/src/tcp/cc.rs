//! Congestion control: CUBIC (RFC 9438), the default, and Reno (RFC 5681), in bytes.
//!
//! Both share slow start (RFC 5681 §3.1, increments bounded by one SMSS per ACK as RFC 3465's
//! L = 1 would; RFC 9438 §4.10), the initial window of RFC 6928, the reaction to a retransmission
//! timeout (cwnd to one SMSS, RFC 5681 §3.1) and the loss window. They differ in congestion
//! avoidance and in how far a loss cuts the window: by half for Reno (RFC 5681 §3.1, eq. 4), to
//! β = 0.7 for CUBIC (RFC 9438 §4.6), which then grows along the cubic function of the time since
//! the cut, not slower than Reno would (the Reno-friendly region, §4.3).
//!
//! The caller counts loss events once per round trip (a recovery episode), as RFC 6675 and RFC
//! 8985 define them; this module only answers how the window moves.
//!
//! Times are engine microseconds (`u64`), as the control block keeps them.

/// Which algorithm a connection uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Algorithm {
    #[default]
    Cubic,
    Reno,
}

/// RFC 9438 §5: C = 0.4 and β_cubic = 0.7.
const C: f64 = 0.4;
const BETA: f64 = 0.7;

/// RFC 6928 §2: the initial window, min(10 * SMSS, max(2 * SMSS, 14600)).
pub fn initial_window(smss: u32) -> u32 {
    (10 * smss).min((2 * smss).max(14_600))
}

/// One connection's congestion state.
#[derive(Clone, Debug, PartialEq)]
pub struct Congestion {
    algorithm: Algorithm,
    smss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged in congestion avoidance not yet turned into window (Reno's and CUBIC's
    /// per-RTT increments are fractions of a segment per ACK).
    pending: f64,
    /// CUBIC: the window before the last cut (bytes), and the previous one (fast convergence).
    w_max: f64,
    w_last_max: f64,
    /// CUBIC: when the current epoch (congestion avoidance after a cut) began, engine time (µs).
    epoch_start: Option<u64>,
    /// CUBIC: time from the epoch's start to reach `w_max` again, seconds.
    k: f64,
    /// CUBIC: the Reno-friendly estimate, bytes (§4.3).
    w_est: f64,
}

impl Congestion {
    /// A connection's start: the initial window, slow start until the first loss.
    pub fn new(algorithm: Algorithm, smss: u32) -> Congestion {
        let smss = smss.max(1);
        Congestion {
            algorithm,
            smss,
            cwnd: initial_window(smss),
            ssthresh: u32::MAX,
            pending: 0.0,
            w_max: 0.0,
            w_last_max: 0.0,
            epoch_start: None,
            k: 0.0,
            w_est: 0.0,
        }
    }

    /// The congestion window, bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold, bytes.
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// `acked` new bytes were acknowledged at `now` (engine microseconds since any origin), with
    /// the connection's smoothed round trip `srtt` (microseconds). Call outside recovery only.
    pub fn on_ack(&mut self, acked: u32, now: u64, srtt: u64) {
        if acked == 0 {
            return;
        }
        if self.in_slow_start() {
            // RFC 5681 §3.1 eq. 2, at most one SMSS per ACK.
            self.cwnd = self.cwnd.saturating_add(acked.min(self.smss)).min(self.ssthresh.max(self.cwnd));
            if self.cwnd >= self.ssthresh {
                self.epoch_start = None; // CUBIC's epoch starts on the first ACK in avoidance
            }
            return;
        }
        match self.algorithm {
            Algorithm::Reno => {
                // RFC 5681 §3.1: one SMSS per round trip, counted in bytes as RFC 3465 §2.1 does
                // (a window's worth of bytes acknowledged adds one SMSS).
                self.pending += f64::from(acked);
                if self.pending >= f64::from(self.cwnd) {
                    self.pending -= f64::from(self.cwnd);
                    self.cwnd = self.cwnd.saturating_add(self.smss);
                }
                return;
            }
            Algorithm::Cubic => self.cubic_ack(acked, now, srtt),
        }
        let whole = self.pending.floor();
        if whole >= 1.0 {
            self.cwnd = self.cwnd.saturating_add(whole as u32);
            self.pending -= whole;
        }
    }

    /// RFC 9438 §4.2-4.4: the window grows toward W_cubic(t + RTT), and never slower than the
    /// Reno-friendly estimate.
    fn cubic_ack(&mut self, acked: u32, now: u64, srtt: u64) {
        let smss = f64::from(self.smss);
        let cwnd = f64::from(self.cwnd);
        let start = *self.epoch_start.get_or_insert_with(|| {
            // An epoch without a preceding cut (slow start ended by ssthresh): W_max is now.
            if self.w_max < cwnd {
                self.w_max = cwnd;
                self.k = 0.0;
            }
            self.w_est = cwnd;
            now
        });
        let t = (now.saturating_sub(start) + srtt) as f64 / 1e6;
        // W_cubic(t) = C (t - K)^3 + W_max, in segments (§4.2).
        let w_cubic = (C * (t - self.k).powi(3) + self.w_max / smss) * smss;
        // §4.3: W_est grows by alpha_cubic segments per round trip.
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        self.w_est += alpha * smss * f64::from(acked) / cwnd;
        if w_cubic < self.w_est {
            self.pending += (self.w_est - cwnd).max(0.0).min(f64::from(acked));
            return;
        }
        // §4.4: the target, within [cwnd, 1.5 cwnd], approached by (target - cwnd)/cwnd per SMSS.
        let target = w_cubic.clamp(cwnd, 1.5 * cwnd);
        self.pending += (target - cwnd) / cwnd * f64::from(acked);
    }

    /// A loss was detected by fast retransmit or RACK (once per recovery episode), with `flight`
    /// bytes outstanding. RFC 5681 §3.2 eq. 4 for Reno; RFC 9438 §4.6-4.7 for CUBIC.
    pub fn on_loss(&mut self, flight: u32, now: u64) {
        let floor = 2 * self.smss;
        match self.algorithm {
            Algorithm::Reno => {
                self.ssthresh = (flight / 2).max(floor);
            }
            Algorithm::Cubic => {
                let cwnd = f64::from(self.cwnd);
                // §4.7 fast convergence: a flow whose peak fell gives up more.
                self.w_max = if cwnd < self.w_last_max { cwnd * (1.0 + BETA) / 2.0 } else { cwnd };
                self.w_last_max = cwnd;
                self.ssthresh = ((cwnd * BETA) as u32).max(floor);
                let smss = f64::from(self.smss);
                self.k = ((self.w_max / smss) * (1.0 - BETA) / C).cbrt();
                self.epoch_start = Some(now);
                self.w_est = f64::from(self.ssthresh);
            }
        }
        self.cwnd = self.ssthresh;
        self.pending = 0.0;
    }

    /// The retransmission timer expired with `flight` bytes outstanding: slow start again from
    /// one segment (RFC 5681 §3.1 eq. 4 and the loss window; RFC 9438 §4.8).
    pub fn on_timeout(&mut self, flight: u32, now: u64) {
        if self.algorithm == Algorithm::Cubic {
            self.on_loss(flight, now);
            self.epoch_start = None;
        }
        self.ssthresh = match self.algorithm {
            Algorithm::Reno => (flight / 2).max(2 * self.smss),
            Algorithm::Cubic => self.ssthresh,
        };
        self.cwnd = self.smss;
        self.pending = 0.0;
    }

    /// RFC 9438 §4.9 / RFC 8985's undo: the loss was spurious (a D-SACK or a timestamp showed the
    /// original arrived); restore the window before the cut.
    pub fn undo(&mut self, cwnd: u32, ssthresh: u32) {
        self.cwnd = self.cwnd.max(cwnd);
        self.ssthresh = ssthresh;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Microseconds of `d`, the module's unit.
    fn us(d: Duration) -> u64 {
        d.as_micros() as u64
    }

    const MSS: u32 = 1460;
    const RTT: Duration = Duration::from_millis(10);

    #[test]
    fn rfc6928_initial_window() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(9000), 18_000);
    }

    #[test]
    fn rfc5681_slow_start_doubles_per_round_trip_up_to_ssthresh() {
        for alg in [Algorithm::Cubic, Algorithm::Reno] {
            let mut cc = Congestion::new(alg, MSS);
            let w = cc.cwnd();
            // One round trip: every segment of the window acknowledged, one ACK each.
            for _ in 0..w / MSS {
                cc.on_ack(MSS, 0, us(RTT));
            }
            assert_eq!(cc.cwnd(), 2 * w, "{alg:?}");
            // A stretch ACK still adds at most one SMSS.
            cc.on_ack(10 * MSS, 0, us(RTT));
            assert_eq!(cc.cwnd(), 2 * w + MSS, "{alg:?}");
        }
    }

    #[test]
    fn rfc5681_reno_halves_on_loss_and_adds_a_segment_per_round_trip() {
        let mut cc = Congestion::new(Algorithm::Reno, MSS);
        cc.on_loss(40 * MSS, 0);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (20 * MSS, 20 * MSS));
        for _ in 0..20 {
            cc.on_ack(MSS, 0, us(RTT));
        }
        assert_eq!(cc.cwnd(), 21 * MSS, "one SMSS per window acknowledged");
        cc.on_loss(MSS, 0);
        assert_eq!(cc.ssthresh(), 2 * MSS, "never below two segments");
    }

    #[test]
    fn rfc9438_cubic_cuts_to_beta_then_regrows_to_w_max_after_k() {
        // A long round trip (100 ms), where the cubic function rules rather than the
        // Reno-friendly estimate (42 round trips in K add only 22 segments to that one).
        const RTT: Duration = Duration::from_millis(100);
        let mut cc = Congestion::new(Algorithm::Cubic, MSS);
        // Leave slow start at 100 segments.
        cc.cwnd = 100 * MSS;
        cc.ssthresh = 100 * MSS;
        cc.on_loss(100 * MSS, 0);
        assert_eq!(cc.cwnd(), 70 * MSS, "beta_cubic = 0.7");
        // K = cbrt(W_max (1 - beta) / C) = cbrt(100 * 0.3 / 0.4) = 4.22 s.
        assert!((cc.k - 4.217).abs() < 0.01, "K = {}", cc.k);
        // ACK a window per RTT for K seconds: cwnd comes back near W_max, not much beyond.
        let mut now = Duration::ZERO;
        while now < Duration::from_secs_f64(4.2) {
            now += RTT;
            for _ in 0..cc.cwnd() / MSS {
                cc.on_ack(MSS, us(now), us(RTT));
            }
        }
        let w = cc.cwnd() / MSS;
        assert!((95..=106).contains(&w), "{w} segments at t = K");
        // The plateau: slow around W_max, then convex growth beyond it.
        let at_k = cc.cwnd();
        while now < Duration::from_secs_f64(8.0) {
            now += RTT;
            for _ in 0..cc.cwnd() / MSS {
                cc.on_ack(MSS, us(now), us(RTT));
            }
        }
        assert!(cc.cwnd() > at_k + 10 * MSS, "probing beyond W_max: {}", cc.cwnd() / MSS);
    }

    #[test]
    fn rfc9438_4_7_fast_convergence_lowers_w_max_when_the_peak_falls() {
        let mut cc = Congestion::new(Algorithm::Cubic, MSS);
        cc.cwnd = 100 * MSS;
        cc.on_loss(100 * MSS, 0);
        cc.cwnd = 80 * MSS; // the next loss comes below the last peak
        cc.on_loss(80 * MSS, 1_000_000);
        assert!((cc.w_max / f64::from(MSS) - 68.0).abs() < 0.01, "80 * (1 + 0.7) / 2");
    }

    #[test]
    fn rfc9438_4_3_the_reno_friendly_region_grows_no_slower_than_reno() {
        // Short round trips keep CUBIC in its Reno-friendly region: it must grow at least as
        // fast as Reno with the same cut would (alpha_cubic segments per round trip).
        let mut cubic = Congestion::new(Algorithm::Cubic, MSS);
        cubic.cwnd = 20 * MSS;
        cubic.on_loss(20 * MSS, 0);
        let start = cubic.cwnd();
        let rtt = Duration::from_micros(200);
        let mut now = Duration::ZERO;
        for _ in 0..50 {
            now += rtt;
            for _ in 0..cubic.cwnd() / MSS {
                cubic.on_ack(MSS, us(now), us(rtt));
            }
        }
        // 50 round trips at alpha = 0.53 segment each: about 26 segments more.
        let grown = (cubic.cwnd() - start) / MSS;
        assert!(grown >= 20, "grew {grown} segments in 50 round trips");
    }

    #[test]
    fn rfc5681_a_timeout_restarts_from_one_segment() {
        for alg in [Algorithm::Cubic, Algorithm::Reno] {
            let mut cc = Congestion::new(alg, MSS);
            cc.cwnd = 50 * MSS;
            cc.on_timeout(50 * MSS, 0);
            assert_eq!(cc.cwnd(), MSS, "{alg:?}");
            assert!(cc.ssthresh() >= 2 * MSS && cc.ssthresh() <= 35 * MSS, "{alg:?}: {}", cc.ssthresh());
            assert!(cc.in_slow_start());
        }
    }
}
