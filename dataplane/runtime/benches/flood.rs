//! Floods on a real DPDK wire: a flood-generating core and ordinary clients against a listening
//! engine over a memif pair, one core each side, in one process.
//!
//! `cargo bench -p switchyard-runtime --bench flood` (root, for DPDK memif; env `SECS` per run,
//! default 5; `REPEAT` rounds, default 3; `RATE` spoofed SYNs a second in the paced runs, default
//! 1,000,000; `LEGIT_RATE` client connections a second, default 10,000; `LEGIT_MAX` of them open
//! at once, default 4,096; `DELAY_MS` the clients' one-way delay, default 20; `CHECKSUMS=none`: both ends trust the memory wire, as the `wire` bench
//! does, instead of the default software checksums; `ONLY=cookies,never,...` runs those runs
//! alone; `BENCH_JSON=1` prints one JSON object a line per run, for the bench driver).
//!
//! - **The appliance** (memif server side, lcore 0 on CPU 0): an engine at 198.18.0.2/24 whose
//!   gateway is 198.18.0.1, listening on port 7 (echo), `syn_backlog` 4,096, with `syn_cookies`
//!   `auto` or `never` by run. A new engine each run.
//! - **The other end** (memif client side, lcore 1 on CPU 1), one loop that does three things:
//!   sends spoofed SYNs (sources in 198.19.0.0/16, inside 198.18.0.0/15 and off the appliance's
//!   link, so its answers go to the gateway; random ports and sequence numbers, MSS 1460), paced
//!   to `RATE` or as fast as the loop goes; opens `LEGIT_RATE` connections a second from a load
//!   generator's engine (198.18.0.1 and 198.18.0.10-16), each sending a 64-byte request, reading
//!   the echo and closing; and drops what comes back to the spoofed addresses (that engine is
//!   their gateway and owns none of them). The clients are `DELAY_MS` away: what their engine
//!   sends waits that long before it goes on the wire (`clients::Via`), so a handshake needs its
//!   half-open connection to last as long, as across the Internet; the flood does not wait.
//!
//! Runs, interleaved each round: `none` (the clients alone: the baseline), `cookies` (the flood
//! at `RATE`, `syn_cookies = "auto"`), `never` (the same flood, `syn_cookies = "never"`: the
//! half-open table turns over), `max_syn` (SYNs as fast as the generator goes, cookies: the most
//! cookies one core answers), `ack` (ACKs with random numbers to port 7: a failed cookie check
//! and an RST each) and `rst` (RSTs to random closed ports: dropped); the last three without the
//! clients, so that what they measure is the flood's frames alone. Each run measures over
//! `SECS` after 0.5 s of warm-up: the SYNs (and frames) the appliance received a second, the
//! cookies it sent, its core's busy share (loop turns that moved a frame) and so its rate per
//! busy second; the clients' connections started in the window, how many got their echo
//! (success), how many were refused, timed out or cut, and the median and 99th percentile of
//! their connect times (SYN to ESTABLISHED, engine clock); the process's resident memory and the
//! appliance's pool slots at the window's start and end. The flood goes on while the window's
//! last connections finish (up to 3 s; any still open then counts as failed).

#![recursion_limit = "256"]

#[path = "flood/clients.rs"]
mod clients;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::clock::TscClock;
use dpdk::launch::run_on_lcores;
use dpdk::{Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
use engine::phy::BurstDevice;
use engine::services::ServiceKind;
use engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull, SynCookies};
use runtime::device::PortDevice;
use runtime::lcore::{BusyMeter, HostSteal};
use smoltcp::phy::{Device, TxToken};
use smoltcp::wire::TcpControl;

use clients::{Clients, Delay, Probe, Tally, Via};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PORT: u16 = 7;
/// Distinct flood frames made for each kind; a run cycles through them.
const DISTINCT: usize = 1 << 16;
/// Flood frames sent per loop turn at most.
const BURST: usize = 64;
const WARM: Duration = Duration::from_millis(500);
/// How long the window's last client connections may take after it closes.
const DRAIN: Duration = Duration::from_secs(3);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A run: what floods, how fast, and the listener's cookie setting.
#[derive(Clone, Copy, Debug)]
struct RunKind {
    name: &'static str,
    flood: Option<Flood>,
    /// Spoofed frames a second; `None`: as fast as the loop goes.
    paced: bool,
    cookies: SynCookies,
    /// Whether the clients run beside the flood (not in the runs that measure a frame's cost).
    clients: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flood {
    Syn,
    Ack,
    Rst,
}

const RUNS: [RunKind; 6] = [
    RunKind { name: "none", flood: None, paced: true, cookies: SynCookies::Auto, clients: true },
    RunKind { name: "cookies", flood: Some(Flood::Syn), paced: true, cookies: SynCookies::Auto, clients: true },
    RunKind { name: "never", flood: Some(Flood::Syn), paced: true, cookies: SynCookies::Never, clients: true },
    RunKind { name: "max_syn", flood: Some(Flood::Syn), paced: false, cookies: SynCookies::Auto, clients: false },
    RunKind { name: "ack", flood: Some(Flood::Ack), paced: false, cookies: SynCookies::Auto, clients: false },
    RunKind { name: "rst", flood: Some(Flood::Rst), paced: false, cookies: SynCookies::Auto, clients: false },
];

/// xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Flood frames one after the other in one buffer, and each frame's offset and length.
type Frames = (Vec<u8>, Vec<(usize, usize)>);

/// `DISTINCT` frames of `kind`, from random sources in 198.19.0.0/16 and random ports, with
/// random numbers, one after the other in one buffer; returns it and the frames' offsets.
fn frames(kind: Flood, macs: ([u8; 6], [u8; 6])) -> Frames {
    let mut rng = Rng(0xf100_d5ee_d000_0027 ^ kind as u64);
    let (mut buf, mut at) = (Vec::new(), Vec::with_capacity(DISTINCT));
    for _ in 0..DISTINCT {
        let x = rng.next();
        let src = Ipv4Addr::new(198, 19, (x >> 8) as u8, x as u8);
        let sport = 1024 + (x >> 16) as u16 % 64000;
        let (seq, ack) = (rng.next() as u32, rng.next() as u32);
        let closed = 1000 + (x >> 40) as u16 % 60000; // nobody listens on 1000..61000
        let mut tcp = match kind {
            Flood::Syn => plain_tcp((sport, PORT), TcpControl::Syn, seq, None, 64240, &[]),
            Flood::Ack => plain_tcp((sport, PORT), TcpControl::None, seq, Some(ack), 64240, &[]),
            Flood::Rst => plain_tcp((sport, closed), TcpControl::Rst, seq, None, 0, &[]),
        };
        if kind == Flood::Syn {
            tcp.max_seg_size = Some(1460);
        }
        let len = tcp_frame_len(&tcp);
        let start = buf.len();
        buf.resize(start + len, 0);
        write_tcp_frame(&mut buf[start..], (macs.0, src), (macs.1, SERVER), &tcp);
        at.push((start, len));
    }
    (buf, at)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn clock(tsc: &TscClock) -> EngineInstant {
    EngineInstant::from_micros(tsc.micros())
}

/// The appliance's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Snap {
    syns: u64,
    cookies_sent: u64,
    cookies_accepted: u64,
    syn_evicted: u64,
    rx_frames: u64,
    tx_frames: u64,
    slots: usize,
    half_open: usize,
    busy: (u64, u64),
    /// The appliance thread's CPU time, in µs: what the host let it run.
    cpu_us: u64,
    /// Time in loop turns that received frames and were not preempted, and the frames they
    /// received ([`Work`]).
    work: Work,
}

/// Loop turns that received frames, timed, those longer than [`PREEMPTED`] left out: on a
/// shared machine the host takes the appliance's CPU away for milliseconds at a time, and a turn
/// it lands in counts that time as busy. What is left is the core's cost per frame received
/// (all it did in those turns, answers and the clients' frames included).
#[derive(Clone, Copy, Debug, Default)]
struct Work {
    ns: u64,
    frames: u64,
    /// Turns left out.
    preempted: u64,
}

/// A turn longer than this was preempted: a burst of 32 frames takes a few µs.
const PREEMPTED: Duration = Duration::from_micros(200);

/// The calling thread's CPU time in µs (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec the call writes; the clock id is a constant.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn snap(engine: &Engine, dev: &PortDevice, meter: &BusyMeter, work: Work) -> Snap {
    let l = engine.listener_stats(PORT).expect("the listener");
    let d = dev.stats();
    Snap {
        syns: l.syns,
        cookies_sent: l.cookies_sent,
        cookies_accepted: l.cookies_accepted,
        syn_evicted: l.syn_evicted,
        rx_frames: d.rx_frames,
        tx_frames: d.tx_frames,
        slots: engine.stats().slots,
        half_open: l.half_open,
        busy: meter.mark(),
        cpu_us: thread_cpu_us(),
        work,
    }
}

/// Settings shared by every run.
struct Settings {
    secs: u64,
    rate: u64,
    legit_rate: u64,
    legit_max: usize,
    /// The clients' one-way delay to the appliance, in µs.
    delay_us: i64,
    checked: bool,
}

fn server_engine(mac: [u8; 6], kind: RunKind, dev: &mut PortDevice, now: EngineInstant) -> Engine {
    let mut cfg: EngineConfig = EngineConfig::new(mac, SERVER, 24);
    cfg.gateway = Some(CLIENT);
    cfg.tcp_rx_buffer = 2048;
    cfg.tcp_tx_buffer = 2048;
    cfg.random_seed = 11;
    cfg.syn_cookies = kind.cookies;
    cfg.listeners = vec![ListenerSpec {
        port: PORT,
        service: ServiceKind::Echo,
        backlog: 4096,
        policy: BacklogPolicy::Linux,
        on_full: OnFull::Refuse,
    }];
    Engine::new(&cfg, dev, now).expect("the appliance's config")
}

fn client_engine(mac: [u8; 6], dev: &mut PortDevice, now: EngineInstant) -> Engine<Clients> {
    let mut cfg: EngineConfig<Clients> = EngineConfig::new(mac, CLIENT, 24);
    cfg.extra_addresses = (10..17).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    cfg.tcp_rx_buffer = 2048;
    cfg.tcp_tx_buffer = 2048;
    cfg.random_seed = 12;
    cfg.time_wait = Duration::ZERO;
    cfg.tcp_timeout = Duration::from_secs(10);
    Engine::new(&cfg, dev, now).expect("the clients' config")
}

/// One run: returns its figures as JSON.
#[allow(clippy::too_many_arguments)]
fn run(
    origin: &TscClock,
    eal: &Eal,
    set: &Settings,
    kind: RunKind,
    flood: Option<&Frames>,
    sdev: &mut PortDevice,
    cdev: &mut PortDevice,
    macs: ([u8; 6], [u8; 6]),
) -> serde_json::Value {
    let before = (sdev.stats(), cdev.stats());
    let now = clock(origin);
    let mut server = server_engine(macs.1, kind, sdev, now);
    let mut client = client_engine(macs.0, cdev, now);
    client.announce_to(now, cdev, SERVER);
    cdev.flush();
    let (tally, warm) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let stop = AtomicBool::new(false);
    // Set by the appliance's loop once it has read its counters at the window's end.
    let closed = AtomicBool::new(false);
    let t0 = origin.micros();
    let (open_at, close_at) =
        (t0 + WARM.as_micros() as i64, t0 + (WARM + Duration::from_secs(set.secs)).as_micros() as i64);
    let mut marks: [Option<(Snap, f64)>; 2] = [None, None];
    let mut legit = (0u64, 0u64); // (started in the window, connects that failed at once)
    let mut gen = (0u64, 0u64, 0u64); // (frames handed to the device, in the window: at open, at close)
    let mut drained = false;
    let server_task = {
        let (stop, closed, marks, server) = (&stop, &closed, &mut marks, &mut server);
        let sdev = &mut *sdev;
        Box::new(move || {
            let mut meter = BusyMeter::new(clock(origin));
            let mut work = Work::default();
            while !stop.load(Ordering::Relaxed) {
                let turn = Instant::now();
                let now = clock(origin);
                meter.start(now);
                let t = now.total_micros();
                if marks[0].is_none() && t >= open_at {
                    marks[0] = Some((snap(server, sdev, &meter, work), rss_mib()));
                } else if marks[1].is_none() && t >= close_at {
                    marks[1] = Some((snap(server, sdev, &meter, work), rss_mib()));
                    closed.store(true, Ordering::Release);
                }
                let rx = sdev.refill();
                server.poll(now, sdev);
                let tx = sdev.flush();
                meter.end(rx + tx > 0);
                if rx > 0 {
                    let took = turn.elapsed();
                    if took < PREEMPTED {
                        work.ns += took.as_nanos() as u64;
                        work.frames += rx as u64;
                    } else {
                        work.preempted += 1;
                    }
                }
            }
        }) as Box<dyn FnOnce() + Send + '_>
    };
    let client_task = {
        let (stop, closed, tally, warm, legit, gen, drained, client) =
            (&stop, &closed, &tally, &warm, &mut legit, &mut gen, &mut drained, &mut client);
        let cdev = &mut *cdev;
        Box::new(move || {
            let remote = SocketAddrV4::new(SERVER, PORT);
            let (mut next, mut sent) = (0usize, 0u64);
            let (mut credit, mut last) = (0.0f64, t0);
            let mut delay = Delay { us: set.delay_us, ..Default::default() };
            let cap = (set.rate as f64 / 1000.0).max(4.0 * BURST as f64); // 1 ms of flood
            let mut opened = 0u64; // client connections due so far
            let us_per_conn = 1e6 / set.legit_rate.max(1) as f64;
            loop {
                let now = clock(origin);
                let t = now.total_micros();
                if let Some((buf, at)) = flood {
                    // Paced: credit at `RATE`, at most 1 ms's worth (after a stall the flood
                    // does not catch up). Either way, only while the wire takes them: past
                    // that the device would drop the oldest frames staged, the clients' among
                    // them, where a NIC would drop at random.
                    credit = (credit + (t - last) as f64 * set.rate as f64 / 1e6).min(cap);
                    last = t;
                    let n = match (cdev.tx_pending() < BURST, kind.paced) {
                        (false, _) => 0,
                        (true, true) => credit as usize,
                        (true, false) => BURST,
                    };
                    for _ in 0..n {
                        let (start, len) = at[next];
                        let Some(tok) = cdev.transmit(now) else { break };
                        tok.consume(len, |b| b.copy_from_slice(&buf[start..start + len]));
                        next = (next + 1) % at.len();
                        sent += 1;
                        credit -= 1.0;
                    }
                    if gen.1 == 0 && t >= open_at {
                        gen.1 = sent;
                    }
                    if gen.2 == 0 && t >= close_at {
                        gen.2 = sent;
                    }
                }
                // Clients: open what is due, from the start (the warm-up's fill the pools) to the
                // window's end; those started in the window are counted.
                if kind.clients && t < close_at {
                    let due = ((t - t0) as f64 / us_per_conn) as u64;
                    let counted = t >= open_at;
                    while opened < due && client.stats().open < set.legit_max {
                        opened += 1;
                        let tally = if counted { tally.clone() } else { warm.clone() };
                        let p = Probe { tally, started: t, sent: 0, got: 0, done: false };
                        let failed = client.connect(remote, p).is_err();
                        if counted {
                            legit.0 += 1;
                            legit.1 += u64::from(failed);
                        }
                    }
                    opened = opened.max(due); // the ones over LEGIT_MAX are not made up later
                }
                let mut via = Via { dev: &mut *cdev, delay: &mut delay, now_us: t };
                via.refill();
                client.poll(now, &mut via);
                via.flush();
                let over = client.stats().open == 0 || t >= close_at + DRAIN.as_micros() as i64;
                if t >= close_at && over && closed.load(Ordering::Acquire) {
                    *drained = client.stats().open == 0;
                    break;
                }
            }
            gen.0 = sent;
            stop.store(true, Ordering::Relaxed);
        }) as Box<dyn FnOnce() + Send + '_>
    };
    let steal = HostSteal::now().expect("/proc/stat");
    run_on_lcores(eal, vec![server_task, client_task]).expect("two lcores");
    let steal = [0, 1].map(|cpu| HostSteal::now().expect("/proc/stat").percent_since(&steal, cpu));
    // Let what is in flight on the wire arrive before the next run's engines.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(100) {
        let now = clock(origin);
        sdev.refill();
        server.poll(now, sdev);
        sdev.flush();
        cdev.refill();
        client.poll(now, cdev);
        cdev.flush();
    }
    let ((a, rss0), (b, rss1)) = (marks[0].expect("window opened"), marks[1].expect("window closed"));
    let secs = (close_at - open_at) as f64 / 1e6;
    let per_s = |x: u64, y: u64| (y - x) as f64 / secs;
    let busy = {
        let (dt, db) = (b.busy.0 - a.busy.0, b.busy.1 - a.busy.1);
        if dt == 0 {
            f64::NAN
        } else {
            db as f64 / dt as f64
        }
    };
    // Of the window's wall time, the share the host ran the appliance's thread.
    let cpu = (b.cpu_us - a.cpu_us) as f64 / (close_at - open_at) as f64;
    let (work_ns, work_frames) = (b.work.ns - a.work.ns, b.work.frames - a.work.frames);
    let ns_per_frame = work_ns as f64 / work_frames.max(1) as f64;
    let mut times = std::mem::take(&mut *tally.connect_us.lock().expect("no panics while held"));
    times.sort_unstable();
    let pct = |p: f64| times.get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1))).copied();
    let ok = Tally::get(&tally.ok);
    let ended = ok
        + Tally::get(&tally.refused)
        + Tally::get(&tally.timed_out)
        + Tally::get(&tally.cut)
        + Tally::get(&tally.other);
    let started = legit.0;
    let syns_per_s = per_s(a.syns, b.syns);
    let rx_per_s = per_s(a.rx_frames, b.rx_frames);
    let cookies_per_s = per_s(a.cookies_sent, b.cookies_sent);
    let d = (sdev.stats(), cdev.stats());
    serde_json::json!({
        "figure": "flood",
        "run": kind.name,
        "syn_cookies": format!("{:?}", kind.cookies).to_lowercase(),
        "flood": kind.flood.map(|f| format!("{f:?}").to_lowercase()),
        "target_rate": if kind.flood.is_some() && kind.paced { Some(set.rate) } else { None },
        "secs": secs,
        "generated_per_s": per_s(gen.1, gen.2),
        "syns_per_s": syns_per_s,
        "rx_frames_per_s": rx_per_s,
        "tx_frames_per_s": per_s(a.tx_frames, b.tx_frames),
        "cookies_per_s": cookies_per_s,
        "server_busy": busy,
        "server_cpu": cpu,
        "cookies_per_busy_s": cookies_per_s / busy,
        "rx_frames_per_busy_s": rx_per_s / busy,
        "cookies_per_cpu_s": cookies_per_s / cpu,
        "ns_per_frame": ns_per_frame,
        "frames_per_core_s": 1e9 / ns_per_frame,
        "turns_preempted": b.work.preempted - a.work.preempted,
        "rx_frames_per_cpu_s": rx_per_s / cpu,
        "cookies_accepted": b.cookies_accepted - a.cookies_accepted,
        "syn_evicted": b.syn_evicted - a.syn_evicted,
        "half_open_end": b.half_open,
        "slots": [a.slots, b.slots],
        "rss_mib": [rss0, rss1],
        "legit_started": started,
        "legit_ok": ok,
        "legit_refused": Tally::get(&tally.refused),
        "legit_timed_out": Tally::get(&tally.timed_out),
        "legit_cut": Tally::get(&tally.cut),
        "legit_other": Tally::get(&tally.other),
        "legit_unfinished": started.saturating_sub(ended + legit.1),
        "legit_connect_failed_at_once": legit.1,
        "legit_drained": drained,
        "legit_success_percent": if started > 0 { 100.0 * ok as f64 / started as f64 } else { f64::NAN },
        "connect_us_p50": pct(0.5),
        "connect_us_p99": pct(0.99),
        "connect_us_max": times.last().copied(),
        "client_tx_queue_full": d.1.tx_queue_full - before.1.tx_queue_full,
        "client_tx_nombuf": d.1.tx_nombuf - before.1.tx_nombuf,
        "server_tx_queue_full": d.0.tx_queue_full - before.0.tx_queue_full,
        "steal_percent": steal,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One line for a person: the run's main figures.
fn human(v: &serde_json::Value) -> String {
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:<8} SYNs {:>6.2}M/s (generated {:.2}M/s), frames {:.2}M/s, cookies {:.2}M/s = {:.2}M per busy s (core {:.0}% busy, ran {:.0}%); {:.0} ns a frame = {:.2}M/s per core; \
         clients {}/{} ok ({:.2}%), refused {}, timed out {}, cut {}, unfinished {}; connect p50 {} µs p99 {} µs; \
         RSS {:.1} -> {:.1} MiB, slots {} -> {}, half-open {}, evicted {}; tx queue full: generator {}, appliance {}; steal {}",
        v["run"].as_str().unwrap_or("?"),
        f("syns_per_s") / 1e6,
        f("generated_per_s") / 1e6,
        f("rx_frames_per_s") / 1e6,
        f("cookies_per_s") / 1e6,
        f("cookies_per_busy_s") / 1e6,
        100.0 * f("server_busy"),
        100.0 * f("server_cpu"),
        f("ns_per_frame"),
        f("frames_per_core_s") / 1e6,
        v["legit_ok"],
        v["legit_started"],
        f("legit_success_percent"),
        v["legit_refused"],
        v["legit_timed_out"],
        v["legit_cut"],
        v["legit_unfinished"],
        v["connect_us_p50"],
        v["connect_us_p99"],
        v["rss_mib"][0].as_f64().unwrap_or(f64::NAN),
        v["rss_mib"][1].as_f64().unwrap_or(f64::NAN),
        v["slots"][0],
        v["slots"][1],
        v["half_open_end"],
        v["syn_evicted"],
        v["client_tx_queue_full"],
        v["server_tx_queue_full"],
        v["steal_percent"],
    )
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let set = Settings {
        secs: env("SECS", 5).max(1),
        rate: env("RATE", 1_000_000).max(1),
        legit_rate: env("LEGIT_RATE", 10_000).max(1),
        legit_max: env("LEGIT_MAX", 4096).max(1) as usize,
        delay_us: env("DELAY_MS", 20) as i64 * 1000,
        checked: std::env::var("CHECKSUMS").as_deref() != Ok("none"),
    };
    let repeat = env("REPEAT", 3).max(1) as usize;
    let json = std::env::var("BENCH_JSON").as_deref() == Ok("1");
    let only: Option<Vec<String>> = std::env::var("ONLY").ok().map(|o| o.split(',').map(str::to_owned).collect());
    let runs: Vec<RunKind> =
        RUNS.into_iter().filter(|r| only.as_ref().is_none_or(|o| o.iter().any(|n| n == r.name))).collect();
    assert!(!runs.is_empty(), "ONLY names no run (none, cookies, never, max_syn, ack, rst)");

    let pid = std::process::id();
    let prefix = format!("sy-flood-{pid}");
    let sock = format!("/tmp/sy-flood-{pid}.sock");
    let _ = std::fs::remove_file(&sock);
    let _cleanup = Cleanup { sock: sock.clone(), prefix: prefix.clone() };
    let args = [
        "flood".to_owned(),
        "--no-huge".into(),
        "-m".into(),
        "1024".into(),
        "--no-pci".into(),
        format!("--file-prefix={prefix}"),
        "--lcores=0@0,1@1".into(),
        "--log-level=warning".into(),
        format!("--vdev=net_memif0,role=server,socket={sock},id=0"),
        format!("--vdev=net_memif1,role=client,socket={sock},id=0"),
    ];
    let eal = Eal::init(&args).expect("EAL with a memif pair (run as root)");
    let ids = eal.require_ports(2).expect("two memif ports");
    let req = PortRequest { rx_desc: 1024, tx_desc: 1024, ..Default::default() };
    let cfg_pool = MempoolConfig { mbufs: 16383, cache: 256, ..Default::default() };
    let (pool0, pool1) =
        (Mempool::new(&eal, "flood0", &cfg_pool).unwrap(), Mempool::new(&eal, "flood1", &cfg_pool).unwrap());
    let port0 = Port::open(&eal, ids[0], &req, pool0.clone()).unwrap();
    let port1 = Port::open(&eal, ids[1], &req, pool1.clone()).unwrap();
    let t = Instant::now();
    while !(port0.link_up() && port1.link_up()) {
        assert!(t.elapsed() < Duration::from_secs(10), "memif link did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let origin = TscClock::new(&eal);
    let device = |port, pool| {
        let d = PortDevice::new(port, QueueId(0), pool);
        if set.checked {
            d
        } else {
            d.unchecked()
        }
    };
    let (mut sdev, mut cdev) = (device(&port0, &pool0), device(&port1, &pool1));
    // (the load generator's end, the appliance's)
    let macs = (port1.mac(), port0.mac());
    let floods: Vec<(Flood, Frames)> =
        [Flood::Syn, Flood::Ack, Flood::Rst].into_iter().map(|f| (f, frames(f, macs))).collect();
    let settings = serde_json::json!({
        "figure": "settings",
        "secs": set.secs,
        "repeat": repeat,
        "rate": set.rate,
        "legit_rate": set.legit_rate,
        "legit_max": set.legit_max,
        "client_delay_ms": set.delay_us / 1000,
        "checksums": if set.checked { "software" } else { "none" },
        "syn_backlog": 4096,
    });
    if json {
        println!("{settings}");
    } else {
        println!(
            "floods on a memif pair, one core each side: appliance CPU 0, flood generator and clients CPU 1; \
             {} s runs, {repeat} rounds; paced flood {} SYN/s; clients {} conns/s (at most {} open, {} ms away); checksums {}",
            set.secs,
            set.rate,
            set.legit_rate,
            set.legit_max,
            set.delay_us / 1000,
            settings["checksums"].as_str().unwrap_or("?")
        );
    }
    let mut all: Vec<serde_json::Value> = Vec::new();
    for round in 1..=repeat {
        for &kind in &runs {
            let flood = kind.flood.and_then(|k| floods.iter().find(|f| f.0 == k)).map(|f| &f.1);
            let mut v = run(&origin, &eal, &set, kind, flood, &mut sdev, &mut cdev, macs);
            v["round"] = round.into();
            if json {
                println!("{v}");
            } else {
                println!("round {round}: {}", human(&v));
            }
            all.push(v);
        }
    }
    if !json {
        for kind in &runs {
            let of = |k: &str| -> Vec<f64> {
                all.iter().filter(|v| v["run"] == kind.name).filter_map(|v| v[k].as_f64()).collect()
            };
            println!(
                "median {:<8} SYNs {:.2}M/s, cookies {:.2}M/s ({:.2}M per busy s), frames {:.2}M/s ({:.2}M per busy s), clients ok {:.2}%, connect p50 {:.0} µs p99 {:.0} µs",
                kind.name,
                median(&of("syns_per_s")) / 1e6,
                median(&of("cookies_per_s")) / 1e6,
                median(&of("cookies_per_busy_s")) / 1e6,
                median(&of("rx_frames_per_s")) / 1e6,
                median(&of("rx_frames_per_busy_s")) / 1e6,
                median(&of("legit_success_percent")),
                median(&of("connect_us_p50")),
                median(&of("connect_us_p99")),
            );
        }
    }
    drop(sdev);
    drop(cdev);
    drop(port0);
    drop(port1);
    drop(eal);
}

/// Removes the memif socket and EAL's runtime folder for this process's own file prefix, also
/// when a run panics.
struct Cleanup {
    sock: String,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}
