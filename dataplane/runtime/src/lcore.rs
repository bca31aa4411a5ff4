//! The per-core loop: refill the device, poll the engine, flush the device, and back off when
//! idle.
//!
//! Idle back-off: after `idle_polls` turns in a row that moved no frame, the loop sleeps, first
//! `MIN_IDLE_SLEEP`, doubling up to `max_idle_sleep`, and never past the engine's next deadline; the
//! first frame resets it. With `busy_poll` it never sleeps (benchmarks).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use smoltcp::time::Instant;

use engine::phy::BurstDevice;
use engine::{ConnectionInfo, EngineStats, ListenerInfo, ReclaimStats, TimeWaitStats};

use crate::device::{DeviceCounters, DeviceStats};
use crate::Attachment;
use crate::Engine;

/// First sleep of an idle loop.
pub const MIN_IDLE_SLEEP: Duration = Duration::from_micros(10);

/// How a core's loop behaves when nothing happens.
#[derive(Clone, Debug)]
pub struct LoopConfig {
    /// Never sleep.
    pub busy_poll: bool,
    /// Empty turns before the first sleep.
    pub idle_polls: u32,
    /// Longest sleep.
    pub max_idle_sleep: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig { busy_poll: false, idle_polls: 1000, max_idle_sleep: Duration::from_millis(1) }
    }
}

/// A request for a core's state from another thread (the control plane), answered by the core's
/// loop between two turns: the engines are never touched from outside their core.
#[derive(Debug)]
pub struct SnapshotRequest {
    /// At most this many connections per lane (0: none).
    pub conns_limit: usize,
    pub reply: std::sync::mpsc::Sender<CoreSnapshot>,
}

/// Where snapshot requests for one core wait.
pub type SnapshotRequests = crossbeam_queue::ArrayQueue<SnapshotRequest>;

/// One lane (engine and device) as a snapshot shows it.
#[derive(Clone, Debug)]
pub struct LaneSnapshot {
    pub engine: EngineStats,
    pub listeners: Vec<ListenerInfo>,
    pub time_wait: TimeWaitStats,
    pub reclaim: ReclaimStats,
    pub device: Option<DeviceStats>,
    pub connections: Vec<ConnectionInfo>,
}

/// One core's state.
#[derive(Clone, Debug)]
pub struct CoreSnapshot {
    pub core: usize,
    pub loop_stats: LoopStats,
    pub lanes: Vec<LaneSnapshot>,
}

/// What a loop did.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopStats {
    pub turns: u64,
    pub idle_sleeps: u64,
    /// Microseconds since the loop started.
    pub elapsed_us: u64,
    /// Microseconds spent in turns that moved a frame: a busy-polling core is always running, and
    /// this is the part of its time that did work. `busy_us / elapsed_us` is its load; frames per
    /// busy second are what the core can carry when saturated.
    pub busy_us: u64,
    pub rx_frames: u64,
    pub tx_frames: u64,
}

/// How much of a polling loop's time did work, from the clock read the loop makes anyway: a turn
/// that moved a frame is busy from its start to the next turn's start, an empty one idle. The
/// appliance's loop, `switchyard loadgen` and the wire benchmark measure their load with it.
#[derive(Clone, Copy, Debug)]
pub struct BusyMeter {
    start: Instant,
    /// When the turn under way started, and whether it moved a frame.
    turn: Instant,
    moved: bool,
    busy_us: u64,
}

impl BusyMeter {
    pub fn new(now: Instant) -> Self {
        BusyMeter { start: now, turn: now, moved: false, busy_us: 0 }
    }

    /// A turn starts at `now`, ending the previous one.
    #[inline]
    pub fn start(&mut self, now: Instant) {
        if self.moved {
            self.busy_us += (now - self.turn).total_micros();
        }
        (self.turn, self.moved) = (now, false);
    }

    /// Whether the turn under way moved a frame.
    #[inline]
    pub fn end(&mut self, moved: bool) {
        self.moved = moved;
    }

    /// Microseconds of busy turns, up to the start of the turn under way.
    pub fn busy_us(&self) -> u64 {
        self.busy_us
    }

    /// Microseconds from the meter's start to the start of the turn under way.
    pub fn elapsed_us(&self) -> u64 {
        (self.turn - self.start).total_micros()
    }

    /// Where the meter stands (elapsed and busy microseconds), for [`BusyMeter::share_since`].
    pub fn mark(&self) -> (u64, u64) {
        (self.elapsed_us(), self.busy_us)
    }

    /// The busy share of the time since `mark`, from 0 to 1.
    pub fn share_since(&self, (t0, b0): (u64, u64)) -> f64 {
        (self.busy_us - b0) as f64 / (self.elapsed_us() - t0).max(1) as f64
    }

    /// `stats` with the meter's busy and elapsed time.
    fn stamp(&self, stats: LoopStats) -> LoopStats {
        LoopStats { busy_us: self.busy_us, elapsed_us: self.elapsed_us(), ..stats }
    }
}

/// The hypervisor's steal time per CPU, read from `/proc/stat`: time the host ran something else
/// while this VM's vCPU had work to do. A poll-mode core on a VM loses that share of its wall time
/// from outside, whatever the engine does; the benchmarks print it beside their figures.
#[derive(Clone, Debug)]
pub struct HostSteal {
    /// Steal per CPU, in clock ticks (`USER_HZ`), indexed by CPU number.
    ticks: Vec<u64>,
    at: std::time::Instant,
}

impl HostSteal {
    /// `/proc/stat`'s tick rate: the kernel's `USER_HZ`, 100 on x86 and arm64 whatever the kernel's
    /// own `HZ` (what `sysconf(_SC_CLK_TCK)` answers).
    const USER_HZ: u64 = 100;

    /// The counters now.
    pub fn now() -> std::io::Result<HostSteal> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        Ok(HostSteal { ticks: Self::parse(&stat), at: std::time::Instant::now() })
    }

    /// Steal ticks per CPU from the `cpuN` lines of `/proc/stat` (`cpuN user nice system idle iowait
    /// irq softirq steal ...`); a CPU whose line lacks the field counts 0.
    fn parse(stat: &str) -> Vec<u64> {
        let mut ticks = Vec::new();
        for line in stat.lines() {
            let mut fields = line.split_whitespace();
            let Some(cpu) = fields.next().and_then(|n| n.strip_prefix("cpu")).and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if ticks.len() <= cpu {
                ticks.resize(cpu + 1, 0);
            }
            ticks[cpu] = fields.nth(7).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        ticks
    }

    /// Time stolen from `cpu` between `earlier` and `self` (zero for a CPU not listed).
    pub fn stolen_since(&self, earlier: &HostSteal, cpu: usize) -> Duration {
        let at = |s: &HostSteal| s.ticks.get(cpu).copied().unwrap_or(0);
        Duration::from_millis(at(self).saturating_sub(at(earlier)) * 1000 / Self::USER_HZ)
    }

    /// Time stolen from all CPUs together since `earlier`: a thread that may run on any CPU
    /// loses at most this (an idle vCPU has nothing to be stolen).
    pub fn stolen_all_since(&self, earlier: &HostSteal) -> Duration {
        (0..self.ticks.len()).map(|cpu| self.stolen_since(earlier, cpu)).sum()
    }

    /// Percent of the wall time between `earlier` and `self` stolen from `cpu`.
    pub fn percent_since(&self, earlier: &HostSteal, cpu: usize) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall > 0.0 {
            100.0 * self.stolen_since(earlier, cpu).as_secs_f64() / wall
        } else {
            0.0
        }
    }
}

/// Idle back-off state, separate from the loop so it can be tested without a device.
#[derive(Debug)]
pub struct Backoff {
    cfg: LoopConfig,
    empty: u32,
    sleep: Duration,
}

impl Backoff {
    pub fn new(cfg: LoopConfig) -> Self {
        Backoff { cfg, empty: 0, sleep: MIN_IDLE_SLEEP }
    }

    /// Records a turn; returns how long to sleep now (`None`: go on). `until_deadline` is the
    /// time left before the engine's next timer.
    pub fn turn(&mut self, moved: bool, until_deadline: Option<Duration>) -> Option<Duration> {
        if moved {
            self.empty = 0;
            self.sleep = MIN_IDLE_SLEEP;
            return None;
        }
        if self.cfg.busy_poll {
            return None;
        }
        self.empty = self.empty.saturating_add(1);
        if self.empty < self.cfg.idle_polls {
            return None;
        }
        let d = match until_deadline {
            Some(left) => self.sleep.min(left),
            None => self.sleep,
        };
        self.sleep = (self.sleep * 2).min(self.cfg.max_idle_sleep.max(MIN_IDLE_SLEEP));
        (!d.is_zero()).then_some(d)
    }
}

/// An engine and the device it runs over: one per port a core serves.
pub struct Lane<D> {
    pub engine: Engine,
    pub device: D,
    /// The bridge's queue for this engine, if application threads reach it.
    pub bridge: Option<Attachment>,
}

impl<D: BurstDevice> Lane<D> {
    /// A lane that application threads do not reach.
    pub fn new(engine: Engine, device: D) -> Lane<D> {
        Lane { engine, device, bridge: None }
    }

    /// One turn of the lane at `now`: the bridge's commands, then the engine's poll over what the
    /// device holds. Returns the engine's next deadline (or the bridge's, if earlier).
    #[inline]
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        let Some(bridge) = &mut self.bridge else {
            return self.engine.poll(now, &mut self.device);
        };
        bridge.run(&mut self.engine, now);
        let next = self.engine.poll(now, &mut self.device);
        match (next, bridge.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A monotonic clock in microseconds, read once per loop turn (the appliance uses the TSC).
pub trait Clock {
    fn micros(&self) -> i64;
}

impl Clock for dpdk::clock::TscClock {
    fn micros(&self) -> i64 {
        dpdk::clock::TscClock::micros(self)
    }
}

/// Runs every lane, in turn, until `stop` is set, reading `clock` once per turn.
pub fn run<D: BurstDevice + DeviceCounters>(
    lanes: &mut [Lane<D>],
    cfg: &LoopConfig,
    stop: &AtomicBool,
    clock: &impl Clock,
) -> LoopStats {
    run_answering(lanes, cfg, stop, clock, None, None)
}

/// Sets `stop` if the thread unwinds while it is held: a core whose engine panicked (or another
/// thread the cores depend on) stops every core that shares `stop`, so the process ends and says
/// why, instead of running on with part of it gone (peers of a dead core's connections would wait
/// out their own timeouts).
pub struct StopOnPanic<'a> {
    stop: &'a AtomicBool,
    /// What panicked, for the log line.
    what: &'static str,
}

impl<'a> StopOnPanic<'a> {
    pub fn new(stop: &'a AtomicBool, what: &'static str) -> Self {
        StopOnPanic { stop, what }
    }
}

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(what = self.what, "panicked: stopping every core");
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// [`run`], also answering snapshot requests for core `core` from `requests` between turns, and
/// draining its engines once `drain` is set (listeners refuse, connections go on). When `stop`
/// comes, the open connections are reset on a last turn. A panic in the loop sets `stop` as it
/// unwinds, so the other cores end too.
pub fn run_answering<D: BurstDevice + DeviceCounters>(
    lanes: &mut [Lane<D>],
    cfg: &LoopConfig,
    stop: &AtomicBool,
    clock: &impl Clock,
    requests: Option<(&SnapshotRequests, usize)>,
    drain: Option<&AtomicBool>,
) -> LoopStats {
    let _stop_on_panic = StopOnPanic::new(stop, "a core's loop");
    let clock = || Instant::from_micros(clock.micros());
    let mut backoff = Backoff::new(cfg.clone());
    let mut stats = LoopStats::default();
    let mut meter = BusyMeter::new(clock());
    while !stop.load(Ordering::Relaxed) {
        let now = clock();
        meter.start(now);
        if drain.is_some_and(|d| d.load(Ordering::Relaxed)) {
            for lane in lanes.iter_mut().filter(|l| !l.engine.is_draining()) {
                lane.engine.drain();
            }
        }
        let (mut moved, mut next) = (0usize, None::<Instant>);
        for lane in lanes.iter_mut() {
            let rx = lane.device.refill();
            let deadline = lane.poll(now);
            let tx = lane.device.flush();
            stats.rx_frames += rx as u64;
            stats.tx_frames += tx as u64;
            moved += rx + tx;
            next = match (next, deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        stats.turns += 1;
        // `is_empty` first: two loads, where `pop` on an empty queue also makes a fence.
        if let Some((q, core)) = requests.filter(|(q, _)| !q.is_empty()) {
            while let Some(r) = q.pop() {
                let lanes = lanes
                    .iter_mut()
                    .map(|l| LaneSnapshot {
                        engine: l.engine.stats(),
                        listeners: l.engine.listeners(),
                        time_wait: l.engine.time_wait_stats(),
                        reclaim: l.engine.reclaim_stats(),
                        device: l.device.device_stats(),
                        connections: l.engine.connections(now, r.conns_limit),
                    })
                    .collect();
                let _ = r.reply.send(CoreSnapshot { core, loop_stats: meter.stamp(stats), lanes });
            }
        }
        meter.end(moved > 0);
        let left = next.map(|d| if d > now { Duration::from_micros((d - now).total_micros()) } else { Duration::ZERO });
        if let Some(d) = backoff.turn(moved > 0, left) {
            stats.idle_sleeps += 1;
            std::thread::sleep(d);
        }
    }
    if drain.is_some() {
        // What a drain left open is reset, not abandoned: the peers hear of it.
        let now = clock();
        for lane in lanes.iter_mut() {
            if lane.engine.close_all() > 0 {
                lane.poll(now);
                stats.tx_frames += lane.device.flush() as u64;
            }
        }
    }
    meter.stamp(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_steal_reads_the_eighth_counter_of_each_cpu_line() {
        let stat =
            "cpu  10 0 5 100 1 0 2 9 0 0\ncpu0 5 0 2 50 1 0 1 4 0 0\ncpu1 5 0 3 50 0 0 1 5 0 0\nintr 1 2 3\nctxt 7\n";
        assert_eq!(HostSteal::parse(stat), vec![4, 5], "the aggregate line and other lines skipped");
        assert_eq!(HostSteal::parse("cpu3 1 2 3\n"), vec![0, 0, 0, 0], "a short line counts 0");
        let hz = HostSteal::USER_HZ;
        let t = std::time::Instant::now();
        let before = HostSteal { ticks: vec![4, 5], at: t };
        let after = HostSteal { ticks: vec![4 + hz / 10, 5 + hz], at: t + Duration::from_secs(2) };
        assert_eq!(after.stolen_since(&before, 1), Duration::from_secs(1));
        assert_eq!(after.stolen_since(&before, 7), Duration::ZERO, "a CPU not listed");
        assert_eq!(after.stolen_all_since(&before), Duration::from_millis(1100));
        assert!((after.percent_since(&before, 1) - 50.0).abs() < 1e-9);
        assert!(!HostSteal::now().expect("/proc/stat").ticks.is_empty(), "this machine's CPUs");
    }

    /// A clock that panics at its `n`th reading, as a core whose engine hits a bug.
    struct PanicsAt(std::sync::atomic::AtomicU32, u32);

    impl Clock for PanicsAt {
        fn micros(&self) -> i64 {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            assert!(n + 1 < self.1, "injected failure");
            i64::from(n)
        }
    }

    #[test]
    fn a_core_that_panics_stops_the_others() {
        let stop = AtomicBool::new(false);
        let cfg = LoopConfig::default();
        let (failed, stopped, others) = std::thread::scope(|s| {
            let healthy = s.spawn(|| {
                let lanes: &mut [Lane<engine::phy::MemoryDevice>] = &mut [];
                run(lanes, &cfg, &stop, &PanicsAt(Default::default(), u32::MAX)).turns
            });
            let failing = s.spawn(|| {
                let lanes: &mut [Lane<engine::phy::MemoryDevice>] = &mut [];
                run(lanes, &cfg, &stop, &PanicsAt(Default::default(), 1_000))
            });
            let failed = failing.join();
            // Read before the test stops the healthy core itself (so a failure does not hang).
            let stopped = stop.swap(true, Ordering::Relaxed);
            (failed, stopped, healthy.join())
        });
        assert!(failed.is_err(), "the failing core's loop panicked");
        assert!(stopped, "stop was set as the panic unwound");
        assert!(others.expect("the healthy core's loop returned") > 0);
    }

    #[test]
    fn busy_poll_never_sleeps() {
        let mut b = Backoff::new(LoopConfig { busy_poll: true, idle_polls: 1, ..Default::default() });
        assert!((0..10_000).all(|_| b.turn(false, None).is_none()));
    }

    #[test]
    fn a_turn_that_moved_a_frame_is_busy_until_the_next_one_starts() {
        let at = Instant::from_micros;
        let mut m = BusyMeter::new(at(1_000));
        m.start(at(1_000));
        m.end(true); // busy: 1,000..1,010
        m.start(at(1_010));
        m.end(false); // idle: 1,010..1,050
        m.start(at(1_050));
        m.end(true); // busy: 1,050..1,100
        assert_eq!((m.busy_us(), m.elapsed_us()), (10, 50), "the turn under way is not counted yet");
        m.start(at(1_100));
        assert_eq!((m.busy_us(), m.elapsed_us()), (60, 100));
        m.start(at(1_200)); // the turn from 1,100 did not say it moved
        assert_eq!((m.busy_us(), m.elapsed_us()), (60, 200));
    }

    #[test]
    fn sleeps_after_idle_polls_doubling_to_the_cap_and_resets_on_traffic() {
        let mut b =
            Backoff::new(LoopConfig { busy_poll: false, idle_polls: 3, max_idle_sleep: Duration::from_micros(50) });
        assert_eq!(b.turn(false, None), None);
        assert_eq!(b.turn(false, None), None);
        assert_eq!(b.turn(false, None), Some(Duration::from_micros(10)));
        assert_eq!(b.turn(false, None), Some(Duration::from_micros(20)));
        assert_eq!(b.turn(false, None), Some(Duration::from_micros(40)));
        assert_eq!(b.turn(false, None), Some(Duration::from_micros(50)));
        assert_eq!(b.turn(false, None), Some(Duration::from_micros(50)));
        assert_eq!(b.turn(true, None), None);
        assert_eq!(b.turn(false, None), None, "a frame resets the idle count");
    }

    #[test]
    fn never_sleeps_past_the_engine_deadline() {
        let mut b =
            Backoff::new(LoopConfig { busy_poll: false, idle_polls: 1, max_idle_sleep: Duration::from_millis(1) });
        for _ in 0..10 {
            b.turn(false, None);
        }
        assert_eq!(b.turn(false, Some(Duration::from_micros(3))), Some(Duration::from_micros(3)));
        assert_eq!(b.turn(false, Some(Duration::ZERO)), None);
    }
}
