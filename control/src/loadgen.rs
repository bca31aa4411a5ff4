//! `switchyard loadgen`: the load generator on the engine, over the first DPDK port of a config
//! (net_memif to an appliance in another process, for instance).
//!
//! One engine on the main lcore opens connections to a target from the port's address and the
//! `sources - 1` addresses after it, keeps `conns` of them going (short: connect, request, response,
//! close; persistent: one request in flight each), and reports completions per second over
//! `secs` seconds after half a second of warm-up.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::clock::TscClock;
use dpdk::{Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
use engine::phy::BurstDevice;
use engine::services::{LoadGen, LoadMode, LoadSpec, LoadStats, Session};
use engine::{Engine, EngineConfig, EngineInstant};
use runtime::device::PortDevice;
use runtime::lcore::BusyMeter;

use crate::appliance::{eal_args, ApplianceError};
use crate::config::Resolved;

/// What to generate.
#[derive(Clone, Debug)]
pub struct LoadgenArgs {
    pub target: SocketAddrV4,
    pub mode: LoadMode,
    pub conns: usize,
    pub secs: u64,
    pub size: usize,
    /// Source addresses: the port's and the ones after it (1 to 8).
    pub sources: u8,
}

/// What was measured.
#[derive(Clone, Copy, Debug)]
pub struct LoadgenReport {
    /// Completions per second over the measured window (connections for short, requests for
    /// persistent).
    pub rate: f64,
    pub completed: u64,
    pub connected: u64,
    pub failed: u64,
    pub cut: u64,
    /// The load generator's own core over the measured window: the share of its time in turns
    /// that moved a frame. Near 1 the rate is the load generator's limit, not the target's.
    pub busy: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Appliance(#[from] ApplianceError),
    #[error(transparent)]
    Dpdk(#[from] dpdk::DpdkError),
    #[error("port {port}: {source}")]
    Engine { port: usize, source: engine::EngineError },
    #[error("the link of port 0 did not come up within 10 s: is the peer (the appliance) running, with the matching devargs?")]
    LinkDown,
    #[error("--sources {0}: between 1 and 8 source addresses")]
    Sources(u8),
    #[error("no request completed in {secs} s ({failed} connections failed): is the target {target} listening?")]
    NothingCompleted { secs: u64, failed: u64, target: SocketAddrV4 },
}

/// Runs the load generator until `secs` have been measured (or `stop` is set).
pub fn run(r: &Resolved, args: &LoadgenArgs, stop: &AtomicBool) -> Result<LoadgenReport, LoadgenError> {
    if !(1..=8).contains(&args.sources) {
        return Err(LoadgenError::Sources(args.sources));
    }
    let eal = Eal::init(eal_args(r))?;
    let ids = eal.require_ports(1)?;
    let p = &r.ports[0];
    let pool = Mempool::new(
        &eal,
        "sy_loadgen",
        &MempoolConfig { mbufs: p.profile.mempool.mbufs, cache: p.profile.mempool.cache, ..Default::default() },
    )?;
    let req = PortRequest {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: p.profile.queues.rx_desc,
        tx_desc: p.profile.queues.tx_desc,
        rx_offloads: p.profile.offloads.rx.clone(),
        tx_offloads: p.profile.offloads.tx.clone(),
        promiscuous: p.profile.promiscuous,
        rss: None, // one queue
    };
    let port = Port::open(&eal, ids[0], &req, pool.clone())?;
    let t = Instant::now();
    while !port.link_up() {
        if t.elapsed() > Duration::from_secs(10) || stop.load(Ordering::Relaxed) {
            return Err(LoadgenError::LinkDown);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let g = &r.config.engine;
    let mut cfg: EngineConfig = EngineConfig::new(port.mac(), p.address, p.prefix_len);
    cfg.extra_addresses = (1..u32::from(args.sources)).map(|i| Ipv4Addr::from(u32::from(p.address) + i)).collect();
    cfg.gateway = p.gateway;
    cfg.tcp_rx_buffer = g.tcp_rx_buffer;
    cfg.tcp_tx_buffer = g.tcp_tx_buffer;
    cfg.time_wait = Duration::from_secs(g.time_wait_secs);
    cfg.tcp_timeout = Duration::from_secs(g.tcp_timeout_secs);
    cfg.buffer_idle = g.buffer_idle();
    cfg.random_seed = t.elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    let clock = TscClock::new(&eal);
    let now = || EngineInstant::from_micros(clock.micros());
    let mut dev = PortDevice::new(&port, QueueId(0), &pool);
    if p.unchecked {
        dev = dev.unchecked();
    }
    let mut engine = Engine::new(&cfg, &mut dev, now()).map_err(|source| LoadgenError::Engine { port: 0, source })?;
    engine.announce_to(now(), &mut dev, *args.target.ip());
    dev.flush();

    let stats = Arc::new(LoadStats::default());
    let spec = LoadSpec { size: args.size, mode: args.mode, stats: stats.clone() };
    // One clock read per loop turn, the engine's (the TSC), also for the run's window and the
    // core's load.
    let mut meter = BusyMeter::new(now());
    let warm: u64 = 500_000;
    let end = warm.saturating_add(args.secs.saturating_mul(1_000_000));
    // At the window's start: the meter's mark, and completions.
    let mut window: Option<((u64, u64), u64)> = None;
    let (mut rate, mut busy) = (0.0, 0.0);
    loop {
        let open = engine.stats().open;
        for _ in open..args.conns {
            if engine.connect(args.target, Session::LoadGen(LoadGen::new(spec.clone()))).is_err() {
                break;
            }
        }
        let t = now();
        meter.start(t);
        let elapsed = meter.elapsed_us();
        if window.is_none() && elapsed >= warm {
            window = Some((meter.mark(), stats.get(&stats.completed)));
        }
        if elapsed >= end || stop.load(Ordering::Relaxed) {
            if let Some((mark @ (t0, _), n0)) = window {
                rate = (stats.get(&stats.completed) - n0) as f64 / ((elapsed - t0).max(1) as f64 / 1e6);
                busy = meter.share_since(mark);
            }
            break;
        }
        let rx = dev.refill();
        engine.poll(t, &mut dev);
        let tx = dev.flush();
        meter.end(rx + tx > 0);
    }
    // Wind down: persistent connections close after their response in flight (bounded).
    stats.stop.store(true, Ordering::Relaxed);
    let drain = Instant::now();
    while engine.stats().open > 0 && drain.elapsed() < Duration::from_secs(3) {
        dev.refill();
        engine.poll(now(), &mut dev);
        dev.flush();
    }
    // What has not closed by then is reset, so that the server is not left holding connections
    // whose client is gone (an idle connection never times out there).
    engine.close_all();
    // Then a last moment to answer what the server still sends (a FIN sent again is ACKed from
    // TIME_WAIT), and until the port has taken every frame built: the final ACKs of the last
    // connections must leave before the process does, or the server waits in LAST-ACK for them.
    let last = Instant::now();
    while last.elapsed() < Duration::from_millis(200)
        || (dev.tx_pending() > 0 && last.elapsed() < Duration::from_secs(2))
    {
        dev.refill();
        engine.poll(now(), &mut dev);
        dev.flush();
    }
    let report = LoadgenReport {
        rate,
        completed: stats.get(&stats.completed),
        connected: stats.get(&stats.connected),
        failed: stats.get(&stats.failed),
        cut: stats.get(&stats.cut),
        busy,
    };
    drop(engine);
    drop(dev);
    drop(port);
    drop(pool);
    drop(eal);
    if report.completed == 0 {
        return Err(LoadgenError::NothingCompleted { secs: args.secs, failed: report.failed, target: args.target });
    }
    Ok(report)
}
