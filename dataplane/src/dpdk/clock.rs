//! A microsecond clock on the TSC (`rte_rdtsc`), for per-core loops that read the time every
//! turn: a single instruction, where `clock_gettime` costs a large share of an idle turn on some
//! virtual machines.

use super::Eal;

/// Microseconds since the clock was made, from the TSC at `rte_get_tsc_hz`.
#[derive(Clone, Copy, Debug)]
pub struct TscClock {
    start: u64,
    hz: u64,
}

impl TscClock {
    /// Needs EAL (it measured the TSC rate at init).
    pub fn new(_eal: &Eal) -> Self {
        // SAFETY: both read EAL's TSC calibration and the TSC itself; no preconditions after init.
        let (start, hz) = unsafe { (dpdk_sys::rte_rdtsc(), dpdk_sys::rte_get_tsc_hz()) };
        TscClock { start, hz: hz.max(1) }
    }

    /// Microseconds since [`TscClock::new`].
    #[inline]
    pub fn micros(&self) -> i64 {
        // SAFETY: reads the TSC.
        let now = unsafe { dpdk_sys::rte_rdtsc() };
        (u128::from(now.wrapping_sub(self.start)) * 1_000_000 / u128::from(self.hz)) as i64
    }
}
