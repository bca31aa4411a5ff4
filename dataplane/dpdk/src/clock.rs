//! A microsecond clock on the TSC (`rte_rdtsc`), for per-core loops that read the time every
//! turn: a single instruction, where `clock_gettime` costs a large share of an idle turn on some
//! virtual machines.

use super::Eal;

/// Microseconds since the clock was made, from the TSC at `rte_get_tsc_hz`.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    start: u64,
    /// Microseconds per TSC tick, as a fixed-point number with [`SHIFT`] fraction bits: a multiply
    /// and a shift per reading instead of a 128-bit division.
    per_tick: u64,
}

/// Fraction bits of [`TscClock`]'s multiplier: at 3 GHz it is exact to 3 parts in 10^9 (10 µs an
/// hour), far below the error of the TSC rate EAL measured at init.
const SHIFT: u32 = 40;

impl TscClock {
    /// Needs EAL (it measured the TSC rate at init).
    pub fn new(_eal: &Eal) -> Self {
        // SAFETY: EAL measured the TSC rate at init; reading it has no other precondition.
        let hz = unsafe { dpdk_sys::rte_get_tsc_hz() }.max(1);
        TscClock::at_rate(tsc(), hz)
    }

    /// A clock started at TSC reading `start`, on a TSC of `hz` ticks per second.
    fn at_rate(start: u64, hz: u64) -> Self {
        // At least 1 MHz (every TSC is faster): the multiplier then fits in 64 bits.
        let per_tick = ((1_000_000u128 << SHIFT) / u128::from(hz.max(1_000_000))) as u64;
        TscClock { start, per_tick }
    }

    /// Microseconds since [`TscClock::new`].
    #[inline]
    pub fn micros(&self) -> i64 {
        self.micros_at(tsc())
    }

    #[inline]
    fn micros_at(&self, now: u64) -> i64 {
        ((u128::from(now.wrapping_sub(self.start)) * u128::from(self.per_tick)) >> SHIFT) as i64
    }
}

/// The TSC: on x86-64 the `rdtsc` instruction itself, which is what `rte_rdtsc` is; elsewhere
/// DPDK's `rte_rdtsc` through the shim.
#[inline]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions (x86-64 always has it).
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the TSC; no preconditions after EAL init (a TscClock exists only after it).
    unsafe {
        dpdk_sys::rte_rdtsc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_point_rate_matches_the_division() {
        for hz in [1_000_000u64, 2_100_000_000, 2_999_999_999, 3_700_000_000] {
            let c = TscClock::at_rate(1_000, hz);
            for ticks in [0u64, 1, hz / 1_000_000, hz, 3_600 * hz, 86_400 * hz] {
                let exact = (u128::from(ticks) * 1_000_000 / u128::from(hz)) as i64;
                let got = c.micros_at(1_000 + ticks);
                // One microsecond of rounding, plus 10 per hour at most.
                let slack = 1 + exact / 360_000_000;
                assert!((got - exact).abs() <= slack, "{hz} Hz, {ticks} ticks: {got} against {exact}");
            }
        }
        // Wrapping start: readings after the counter wraps still count forward.
        let c = TscClock::at_rate(u64::MAX - 9, 1_000_000);
        assert_eq!(c.micros_at(10), 20);
    }
}
