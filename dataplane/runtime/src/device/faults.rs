//! A faulty wire, for tests and benchmarks: frames lost, duplicated, reordered and delayed on
//! purpose, each way, from a seed.
//!
//! This kernel has no netem (DESIGN fact 11), so a lossy link between real Linux clients and the
//! appliance over net_tap is made here, in the port device: [`Faults`] sits on a queue's receive
//! and send paths (one [`FaultPlan`] each) and decides for every frame, from its own seeded
//! generator, whether it is lost, whether a copy follows it, and whether it is held back so that
//! later frames overtake it. Every frame can also be delayed by a fixed time. The same seed gives
//! the same decisions for the same sequence of frames.
//!
//! Held frames are bounded ([`MAX_HELD`]); a frame that finds the hold full is passed at once,
//! never dropped for lack of room (the counters say how often).

use std::collections::VecDeque;
use std::time::Duration;

/// Frames held back (reordered or delayed) at most, per direction.
pub const MAX_HELD: usize = 4096;

/// How long a reordered frame is held back at least: long enough for the next frames of a burst
/// to overtake it.
pub const REORDER_HOLD: Duration = Duration::from_micros(500);

/// What a faulty wire does to the frames going one way. Probabilities are fractions in 0..=1.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Frames lost.
    pub loss: f64,
    /// Frames followed by a copy of themselves.
    pub duplicate: f64,
    /// Frames held back for [`REORDER_HOLD`] beyond `delay`, so that later ones overtake them.
    pub reorder: f64,
    /// Every frame's extra latency.
    pub delay: Duration,
}

impl FaultPlan {
    /// Whether the plan changes anything.
    pub fn is_active(&self) -> bool {
        self.loss > 0.0 || self.duplicate > 0.0 || self.reorder > 0.0 || !self.delay.is_zero()
    }
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub passed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Frames that found the hold full and passed without their delay or reordering.
    pub hold_full: u64,
    /// Copies that could not be made (no buffer).
    pub copy_failed: u64,
}

/// One direction of a faulty wire over frames of type `T` (mbufs on a port, byte vectors in
/// tests).
#[derive(Debug)]
pub struct Faults<T> {
    plan: FaultPlan,
    rng: u64,
    /// Frames held back, with when they may go (microseconds on the caller's clock), in the order
    /// they came; released in due order.
    held: VecDeque<(i64, T)>,
    stats: FaultStats,
}

impl<T> Faults<T> {
    pub fn new(plan: FaultPlan, seed: u64) -> Faults<T> {
        Faults { plan, rng: seed | 1, held: VecDeque::new(), stats: FaultStats::default() }
    }

    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Frames held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The next draw in 0..1 (xorshift64*).
    fn draw(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Takes one frame at `now_us`: hands what may go now to `out` (the frame, its copy), holds
    /// the rest. `copy` makes a copy of a frame (`None`: none could be made).
    pub fn push(&mut self, frame: T, now_us: i64, copy: impl FnOnce(&T) -> Option<T>, out: &mut impl FnMut(T)) {
        if self.draw() < self.plan.loss {
            self.stats.lost += 1;
            return;
        }
        let twin = if self.draw() < self.plan.duplicate {
            let c = copy(&frame);
            match c {
                Some(_) => self.stats.duplicated += 1,
                None => self.stats.copy_failed += 1,
            }
            c
        } else {
            None
        };
        let reorder = self.draw() < self.plan.reorder;
        let mut hold = self.plan.delay.as_micros() as i64;
        if reorder {
            hold += REORDER_HOLD.as_micros() as i64;
            self.stats.reordered += 1;
        }
        for f in std::iter::once(frame).chain(twin) {
            if hold == 0 && self.held.is_empty() {
                self.stats.passed += 1;
                out(f);
            } else if self.held.len() >= MAX_HELD {
                self.stats.hold_full += 1;
                self.stats.passed += 1;
                out(f);
            } else {
                self.held.push_back((now_us + hold, f));
            }
        }
    }

    /// Hands every held frame whose time has come to `out`, earliest first. A frame held for
    /// reordering is overtaken by later frames due before it.
    pub fn release(&mut self, now_us: i64, out: &mut impl FnMut(T)) {
        if self.held.is_empty() {
            return;
        }
        // The hold is short (at most MAX_HELD, usually a few): one pass, keeping the undue.
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].0 <= now_us {
                let (_, f) = self.held.remove(i).expect("in range");
                self.stats.passed += 1;
                out(f);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(plan: FaultPlan, seed: u64, n: u8) -> (Vec<u8>, FaultStats) {
        let mut f = Faults::new(plan, seed);
        let mut got = Vec::new();
        for i in 0..n {
            f.push(vec![i], i64::from(i) * 100, |v| Some(v.clone()), &mut |v| got.push(v[0]));
            f.release(i64::from(i) * 100, &mut |v| got.push(v[0]));
        }
        f.release(i64::MAX, &mut |v| got.push(v[0]));
        (got, f.stats())
    }

    #[test]
    fn a_clean_plan_passes_every_frame_in_order() {
        let (got, st) = run(FaultPlan::default(), 1, 200);
        assert_eq!(got, (0..200).collect::<Vec<_>>());
        assert_eq!(st.passed, 200);
    }

    #[test]
    fn loss_duplication_and_reordering_follow_the_plan_and_the_seed() {
        let plan = FaultPlan { loss: 0.1, duplicate: 0.1, reorder: 0.1, delay: Duration::ZERO };
        let (got, st) = run(plan, 7, 250);
        assert_eq!(run(plan, 7, 250).0, got, "the same seed, the same wire");
        assert_ne!(run(plan, 8, 250).0, got, "another seed, another wire");
        assert!((10..=45).contains(&st.lost), "{st:?}");
        assert!((10..=45).contains(&st.duplicated), "{st:?}");
        assert!((10..=45).contains(&st.reordered), "{st:?}");
        assert_eq!(got.len() as u64, 250 - st.lost + st.duplicated);
        assert!(got.windows(2).any(|w| w[1] < w[0]), "some frames overtaken");
        let mut uniq = got.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len() as u64, 250 - st.lost, "each frame that was not lost arrives");
    }

    #[test]
    fn a_delay_holds_every_frame_for_its_time() {
        let plan = FaultPlan { delay: Duration::from_millis(1), ..Default::default() };
        let mut f = Faults::new(plan, 1);
        let mut got = Vec::new();
        f.push(1u8, 0, |_| None, &mut |v| got.push(v));
        f.release(999, &mut |v| got.push(v));
        assert!(got.is_empty());
        f.release(1000, &mut |v| got.push(v));
        assert_eq!(got, [1]);
    }

    #[test]
    fn a_full_hold_passes_frames_rather_than_drop_them() {
        let plan = FaultPlan { delay: Duration::from_secs(1), ..Default::default() };
        let mut f = Faults::new(plan, 1);
        let mut passed = 0;
        for i in 0..MAX_HELD + 10 {
            f.push(i, 0, |_| None, &mut |_| passed += 1);
        }
        assert_eq!((f.held(), passed, f.stats().hold_full), (MAX_HELD, 10, 10));
    }
}
