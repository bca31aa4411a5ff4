//! A two-port gateway that owns its DPDK loop and embeds the engine.
//!
//! It forwards every frame between its two ports, as DPDK's `l2fwd` does, except the frames for
//! its own address: those go to an embedded [`Engine`] serving echo (RFC 862) on port 7. It
//! answers ARP and ping for its address, and an RST for a port with nothing. The engine's frames
//! leave by the port where their destination MAC was last seen (both, for broadcasts).
//!
//! ```text
//!   hosts on side A ── port 0 ─┐               ┌─ port 1 ── hosts on side B
//!                              └─ gateway loop ┘
//!                                   │ classify: ours?
//!                                   ▼
//!                          MbufDevice + Engine (echo on 7)
//! ```
//!
//! Usage (root; no hugepages needed; each port is a net_tap):
//!     gateway --address 198.18.0.2/24 [--iface-a gwa] [--iface-b gwb] [--file-prefix gateway]
//!             [--no-engine] [--stats-secs N]
//! `--no-engine` forwards everything (plain l2fwd), for comparison. It prints counters every
//! `--stats-secs` seconds (default 1) and totals when SIGINT or SIGTERM stops it; with
//! `BENCH_JSON=1` in its environment it prints each of those lines (and the first, once it
//! forwards) as one JSON object instead, for the bench driver (`control/bench`).
//! `control/scripts/gateway-demo.sh` runs it between two namespaces.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use dpdk::clock::TscClock;
use dpdk::{Burst, Eal, Mbuf, Mempool, MempoolConfig, Port, PortRequest, QueueId};
use engine::services::ServiceKind;
use engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull};
use runtime::device::faults::{FaultPlan, Faults};
use runtime::device::MbufDevice;
use runtime::lcore::{Backoff, LoopConfig};

/// A two-port gateway with an embedded echo engine (see the file's documentation).
#[derive(clap::Parser)]
#[command(name = "gateway")]
struct Args {
    /// The engine's address and prefix length, like 198.18.0.2/24.
    #[arg(long, value_parser = parse_cidr)]
    address: (Ipv4Addr, u8),
    /// The tap interface of side A.
    #[arg(long = "iface-a", default_value = "gwa")]
    iface_a: String,
    /// The tap interface of side B.
    #[arg(long = "iface-b", default_value = "gwb")]
    iface_b: String,
    /// DPDK's file prefix (two gateways at once need two).
    #[arg(long, default_value = "gateway")]
    file_prefix: String,
    /// Forward everything, classify nothing: a plain l2fwd (the baseline of the gateway bench).
    #[arg(long)]
    no_engine: bool,
    /// Seconds between statistics lines.
    #[arg(long, default_value_t = 1)]
    stats_secs: u64,
    /// A faulty wire between the sides (for loss benchmarks): frames lost, in percent, each way.
    #[arg(long, default_value_t = 0.0)]
    loss_percent: f64,
    /// Frames followed by a copy, in percent, each way.
    #[arg(long, default_value_t = 0.0)]
    duplicate_percent: f64,
    /// Frames held back 0.5 ms so that later ones overtake them, in percent, each way.
    #[arg(long, default_value_t = 0.0)]
    reorder_percent: f64,
    /// The seed of the faulty wire's draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `A.B.C.D/N`.
fn parse_cidr(v: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, len) = v.split_once('/').ok_or_else(|| format!("{v:?}: expected A.B.C.D/N"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{v:?}: bad address"))?;
    let len: u8 =
        len.parse().ok().filter(|l| (1..=32).contains(l)).ok_or_else(|| format!("{v:?}: bad prefix length"))?;
    Ok((ip, len))
}

/// What the loop did.
#[derive(Clone, Copy, Default)]
struct Counters {
    /// Frames forwarded from port 0 to port 1, and from 1 to 0.
    forwarded: [u64; 2],
    /// Frames handed to the engine, and frames it sent.
    to_engine: u64,
    from_engine: u64,
    /// Frames dropped because a tx queue stayed full.
    tx_dropped: u64,
}

/// A tx burst per port, flushed when full and at the end of each turn.
struct Out<'a> {
    ports: &'a [Port; 2],
    bursts: [Burst; 2],
    dropped: u64,
}

impl Out<'_> {
    fn send(&mut self, port: usize, m: Mbuf) {
        if self.bursts[port].is_full() {
            self.flush(port);
        }
        if self.bursts[port].push(m).is_err() {
            self.dropped += 1; // still full: the mbuf is freed
        }
    }

    fn flush(&mut self, port: usize) -> usize {
        let n = self.ports[port].tx_burst(QueueId(0), &mut self.bursts[port]);
        if !self.bursts[port].is_empty() && n == 0 {
            // The queue does not move: drop what waits rather than stall the loop.
            while self.bursts[port].pop().is_some() {
                self.dropped += 1;
            }
        }
        n
    }
}

/// Whether `BENCH_JSON=1` asks for one JSON object a line in place of the human lines.
fn json_mode() -> bool {
    std::env::var("BENCH_JSON").as_deref() == Ok("1")
}

/// Prints a line: `human` normally, `json` on one line under `BENCH_JSON=1`.
fn report(human: String, json: serde_json::Value) {
    if json_mode() {
        println!("{json}");
    } else {
        println!("{human}");
    }
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let (address, prefix_len) = args.address;
    let ifaces = [args.iface_a.clone(), args.iface_b.clone()];
    let engine_on = !args.no_engine;
    let stats_every = Duration::from_secs(args.stats_secs);
    let percent = |p: f64| p.clamp(0.0, 100.0) / 100.0;
    let plan = FaultPlan {
        loss: percent(args.loss_percent),
        duplicate: percent(args.duplicate_percent),
        reorder: percent(args.reorder_percent),
        delay: Duration::ZERO,
    };
    // One faulty direction per side's way out: frames forwarded to side B, and to side A.
    let mut faults: Option<[Faults<Mbuf>; 2]> =
        plan.is_active().then(|| [Faults::new(plan, args.seed), Faults::new(plan, args.seed.wrapping_add(1))]);
    let start = StdInstant::now();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).expect("installing a signal handler");
    }
    let eal_args = [
        "gateway".to_owned(),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        format!("--file-prefix={}", args.file_prefix),
        "-l".into(),
        "0".into(),
        format!("--vdev=net_tap0,iface={}", ifaces[0]),
        format!("--vdev=net_tap1,iface={}", ifaces[1]),
    ];
    let eal = Eal::init(&eal_args).unwrap_or_else(|e| {
        eprintln!("gateway: {e}");
        std::process::exit(1)
    });
    let ids = eal.require_ports(2).unwrap_or_else(|e| {
        eprintln!("gateway: {e}");
        std::process::exit(1)
    });
    let pool = Mempool::new(&eal, "gw_pool", &MempoolConfig { mbufs: 16383, cache: 256, ..Default::default() })
        .expect("mempool");
    // Promiscuous: the engine's MAC and every host's frames arrive on either port.
    let req = PortRequest { rx_desc: 1024, tx_desc: 1024, promiscuous: true, ..Default::default() };
    let ports = [
        Port::open(&eal, ids[0], &req, pool.clone()).expect("port 0"),
        Port::open(&eal, ids[1], &req, pool.clone()).expect("port 1"),
    ];

    // The embedded engine: its own config, a device the loop hands frames to, the loop's clock.
    let clock = TscClock::new(&eal);
    let now = || EngineInstant::from_micros(clock.micros());
    let mut cfg: EngineConfig = EngineConfig::new(ports[0].mac(), address, prefix_len);
    cfg.listeners = vec![ListenerSpec {
        port: 7,
        service: ServiceKind::Echo,
        backlog: 128,
        policy: BacklogPolicy::Linux,
        on_full: OnFull::Refuse,
    }];
    cfg.tcp_rx_buffer = 16384;
    cfg.tcp_tx_buffer = 16384;
    cfg.random_seed = clock.micros() as u64 ^ u64::from(std::process::id()) << 32;
    let mut dev = MbufDevice::new(&pool);
    let mut engine = Engine::new(&cfg, &mut dev, now()).unwrap_or_else(|e| {
        eprintln!("gateway: {e}");
        std::process::exit(2)
    });
    report(
        format!(
            "gateway: forwarding {} <-> {}, engine at {}/{} ({}), echo on port 7",
            ifaces[0],
            ifaces[1],
            address,
            prefix_len,
            if engine_on { "on" } else { "off: plain l2fwd" }
        ),
        serde_json::json!({
            "event": "forwarding",
            "ifaces": ifaces,
            "address": format!("{address}/{prefix_len}"),
            "engine": engine_on,
        }),
    );

    let mut learned: HashMap<[u8; 6], usize> = HashMap::new();
    let mut out = Out { ports: &ports, bursts: [Burst::new(), Burst::new()], dropped: 0 };
    let mut c = Counters::default();
    let mut backoff = Backoff::new(LoopConfig::default());
    let (mut last, mut last_c) = (StdInstant::now(), c);
    let mut rx = Burst::new();
    while !stop.load(Ordering::Relaxed) {
        let mut moved = 0;
        for (p, port) in ports.iter().enumerate() {
            let n = port.rx_burst(QueueId(0), &mut rx);
            moved += n;
            while let Some(m) = rx.pop() {
                let d = m.data();
                if d.len() >= 12 {
                    let src: [u8; 6] = d[6..12].try_into().expect("6 bytes");
                    if src[0] & 1 == 0 {
                        learned.insert(src, p);
                    }
                }
                if engine_on && engine.classify(m.data()).is_ours() {
                    match dev.handle(m) {
                        Ok(()) => c.to_engine += 1,
                        Err(m) => drop(m), // the engine's queue is full: dropped
                    }
                } else {
                    c.forwarded[p] += 1;
                    match &mut faults {
                        None => out.send(1 - p, m),
                        Some(f) => {
                            let now_us = start.elapsed().as_micros() as i64;
                            f[1 - p].push(m, now_us, |m| pool.alloc_copy(m.data()), &mut |m| out.send(1 - p, m));
                        }
                    }
                }
            }
        }
        if let Some(f) = &mut faults {
            let now_us = start.elapsed().as_micros() as i64;
            for (side, dir) in f.iter_mut().enumerate() {
                dir.release(now_us, &mut |m| out.send(side, m));
            }
        }
        let deadline = engine.poll(now(), &mut dev);
        while let Some(m) = dev.pop_tx() {
            c.from_engine += 1;
            let dst: [u8; 6] = m.data()[0..6].try_into().expect("an Ethernet header");
            match learned.get(&dst) {
                Some(&p) if dst[0] & 1 == 0 => out.send(p, m),
                _ => {
                    // Broadcast, or a host not seen yet: both sides.
                    if let Some(copy) = pool.alloc_copy(m.data()) {
                        out.send(1, copy);
                    }
                    out.send(0, m);
                }
            }
        }
        moved += out.flush(0) + out.flush(1);
        c.tx_dropped = out.dropped;

        if last.elapsed() >= stats_every {
            let secs = last.elapsed().as_secs_f64();
            let rates = [
                (c.forwarded[0] - last_c.forwarded[0]) as f64 / secs,
                (c.forwarded[1] - last_c.forwarded[1]) as f64 / secs,
                (c.to_engine - last_c.to_engine) as f64 / secs,
                (c.from_engine - last_c.from_engine) as f64 / secs,
            ];
            report(
                format!(
                    "gateway: a->b {:.0} pps, b->a {:.0} pps, engine in {:.0} out {:.0} fps, open {}, tx dropped {}",
                    rates[0],
                    rates[1],
                    rates[2],
                    rates[3],
                    engine.stats().open,
                    c.tx_dropped
                ),
                serde_json::json!({
                    "event": "stats",
                    "a_to_b_pps": rates[0],
                    "b_to_a_pps": rates[1],
                    "engine_in_fps": rates[2],
                    "engine_out_fps": rates[3],
                    "open": engine.stats().open,
                    "tx_dropped": c.tx_dropped,
                }),
            );
            (last, last_c) = (StdInstant::now(), c);
        }
        let t = now();
        let left = deadline.map(|d| if d > t { Duration::from_micros((d - t).total_micros()) } else { Duration::ZERO });
        if let Some(sleep) = backoff.turn(moved > 0, left) {
            std::thread::sleep(sleep);
        }
    }
    let e = engine.stats();
    report(
        format!(
            "gateway: totals: forwarded a->b {} b->a {}, engine in {} out {}, established {}, refused {}, tx dropped {}",
            c.forwarded[0], c.forwarded[1], c.to_engine, c.from_engine, e.established, e.no_listener, c.tx_dropped
        ),
        serde_json::json!({
            "event": "totals",
            "forwarded": c.forwarded,
            "engine_in": c.to_engine,
            "engine_out": c.from_engine,
            "established": e.established,
            "refused": e.no_listener,
            "tx_dropped": c.tx_dropped,
        }),
    );
    drop(out);
    drop(ports);
}
