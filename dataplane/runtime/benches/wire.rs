//! The fast path against Linux on a real DPDK wire, one core each side, in one run.
//!
//! `cargo bench -p switchyard-runtime --bench wire` (root; env `SECS` per run, default 5;
//! `REPEAT`, default 3; `SHORT_CONNS` concurrent short connections, default 256; `PERSISTENT_CONNS`,
//! default 64; `CHECKSUMS=port`: smoltcp computes and checks the IPv4 and TCP checksums, instead
//! of the default `none`, both ports of the memory wire set as a trusted one, as Linux's loopback
//! skips them: see `MbufDevice::unchecked`).
//!
//! - **Fast path**: a memif pair in this process. The echo engine runs on the server side on lcore 0
//!   (CPU 0); a load-generating engine (198.18.0.1 and 7 more source addresses) runs on the client
//!   side on lcore 1 (CPU 1). Both busy-poll.
//! - **Linux**: the same workloads on the kernel's TCP over loopback. A minimal mio echo server runs
//!   on CPU 0 and a mio client on CPU 1, both busy-polling as the fast path does; the client
//!   connects from eight loopback addresses, as the load generator has eight.
//! - **Workloads**: short connections (connect, 64-byte request, 64-byte response, close; the client
//!   closes first) and persistent connections (one 64-byte request in flight each).
//!
//! Fast and Linux runs are interleaved, `REPEAT` times each, and min/median/max are printed, with
//! the median busy share of each fast-path core over its runs (`lcore::BusyMeter`): a load
//! generator near 100 % means the figure is its limit, not the echo server's.
//! Each fast run is also divided by the Linux run right after it: on a machine whose speed moves
//! within the hour, those paired ratios (min/median/max) compare runs made moments apart.
//! The line ends with the hypervisor's steal on each CPU (median share of the runs' wall time, from
//! `/proc/stat`): the machines are VMs, and the host taking a CPU away slows a run from outside.
//! `KERNEL=0` skips the Linux runs (to profile the fast path alone); `KERNEL_ONLY=1` makes only
//! them, printing one line per run with its steal (the bench driver, `control/bench`, interleaves
//! them with its two-process runs); `ONLY=short` or `ONLY=persistent` runs that workload alone.
//! `BENCH_JSON=1` prints each figure as one JSON object a line on stdout instead, with every run's
//! value, for the bench driver; what is measured is the same.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::clock::TscClock;
use dpdk::launch::run_on_lcores;
use dpdk::{Eal, Mempool, MempoolConfig, Port, PortRequest, QueueId};
use engine::phy::BurstDevice;
use engine::services::{LoadGen, LoadMode, LoadSpec, LoadStats, ServiceKind, Session};
use engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull};
use runtime::device::PortDevice;
use runtime::lcore::{BusyMeter, HostSteal};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SIZE: usize = 64;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether `BENCH_JSON=1` asks for one JSON object a line per figure in place of the human lines.
fn json_mode() -> bool {
    std::env::var("BENCH_JSON").as_deref() == Ok("1")
}

/// Prints a figure: `human` normally, `json` on one line under `BENCH_JSON=1`.
fn report(human: String, json: serde_json::Value) {
    if json_mode() {
        println!("{json}");
    } else {
        println!("{human}");
    }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity only touch it and
    // the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn clock(tsc: &TscClock) -> EngineInstant {
    EngineInstant::from_micros(tsc.micros())
}

/// How many loopback addresses the Linux client connects from (127.0.0.1 on), as the fast path's
/// load generator has eight. From one address every connect searched a port range full of
/// TIME_WAIT entries for one it may reuse: 36 % of the client's core in `__inet_hash_connect`
/// (3.5 % from eight), and 12-14k short connections/s instead of 22-24k (BENCHMARKS.md, "The
/// Linux baseline's port search").
const LINUX_SOURCES: usize = 8;

/// A nonblocking connect to `addr` from 127.0.0.`n`, its port chosen by the connect
/// (IP_BIND_ADDRESS_NO_PORT), as `switchyard`'s example load generator does with `--sources`.
fn connect_from(n: usize, addr: std::net::SocketAddr) -> mio::net::TcpStream {
    use std::os::fd::AsRawFd;
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, Some(socket2::Protocol::TCP)).unwrap();
    let one: libc::c_int = 1;
    // SAFETY: the descriptor is open (`s` owns it) and the option's value is a c_int that lives
    // across the call, its size passed with it.
    let set = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "IP_BIND_ADDRESS_NO_PORT: {}", std::io::Error::last_os_error());
    let source = Ipv4Addr::new(127, 0, 0, n as u8);
    s.bind(&std::net::SocketAddr::from((source, 0)).into()).unwrap();
    s.set_nonblocking(true).unwrap();
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => panic!("connect {addr} from {source}: {e}"),
    }
    mio::net::TcpStream::from_std(s.into())
}

/// Percent of the wall time since `earlier` the host stole from CPU 0 and from CPU 1.
fn steal_since(earlier: &HostSteal) -> [f64; 2] {
    let now = HostSteal::now().expect("/proc/stat");
    [0, 1].map(|cpu| now.percent_since(earlier, cpu))
}

/// A core's loop, metered: its busy share over the measured window, from `warm` after the run's
/// start to `warm + len`.
struct Metered {
    meter: BusyMeter,
    warm: u64,
    end: u64,
    /// The meter's mark at the window's first turn.
    opened: Option<(u64, u64)>,
    share: Option<f64>,
}

impl Metered {
    fn new(start_us: i64, warm: Duration, len: Duration) -> Self {
        let (warm, end) = (warm.as_micros() as u64, (warm + len).as_micros() as u64);
        Metered { meter: BusyMeter::new(EngineInstant::from_micros(start_us)), warm, end, opened: None, share: None }
    }

    /// One turn of the loop: refill, poll, flush.
    fn turn(&mut self, origin: &TscClock, engine: &mut Engine, dev: &mut PortDevice) {
        let now = clock(origin);
        self.meter.start(now);
        let t = self.meter.elapsed_us();
        match self.opened {
            None if t >= self.warm => self.opened = Some(self.meter.mark()),
            Some(mark) if self.share.is_none() && t >= self.end => self.share = Some(self.meter.share_since(mark)),
            _ => {}
        }
        let rx = dev.refill();
        engine.poll(now, dev);
        let tx = dev.flush();
        self.meter.end(rx + tx > 0);
    }
}

/// One run of the fast path: the server engine on the main lcore, the load generator on the
/// worker; returns operations per second over the measured window, and the busy share of the load
/// generator's core and of the server's over it.
fn fast_run(
    origin: &TscClock,
    eal: &Eal,
    server: &mut (Engine, PortDevice),
    client: &mut (Engine, PortDevice),
    mode: LoadMode,
    conns: usize,
    secs: u64,
) -> (f64, f64, f64) {
    let stop = AtomicBool::new(false);
    let stats = Arc::new(LoadStats::default());
    let spec = LoadSpec { size: SIZE, mode, stats: stats.clone() };
    let (warm, len) = (Duration::from_millis(500), Duration::from_secs(secs));
    // Engine time is monotonic across runs: one clock for the whole bench (the TSC, as the
    // appliance's loop uses).
    let start_us = origin.micros();
    let mut result = 0.0;
    let (mut client_load, mut server_load) = (Metered::new(start_us, warm, len), Metered::new(start_us, warm, len));
    let server_task = {
        let (stop, load) = (&stop, &mut server_load);
        let (engine, dev) = server;
        Box::new(move || {
            while !stop.load(Ordering::Relaxed) {
                load.turn(origin, engine, dev);
            }
        }) as Box<dyn FnOnce() + Send + '_>
    };
    let client_task = {
        let (stop, result, stats, load) = (&stop, &mut result, &stats, &mut client_load);
        let (engine, dev) = client;
        Box::new(move || {
            let remote = SocketAddrV4::new(SERVER, 7);
            let mut window: Option<(Instant, u64)> = None;
            loop {
                let open = engine.stats().open;
                for _ in open..conns {
                    if engine.connect(remote, Session::LoadGen(LoadGen::new(spec.clone()))).is_err() {
                        break;
                    }
                }
                load.turn(origin, engine, dev);
                let elapsed = Duration::from_micros(load.meter.elapsed_us());
                if window.is_none() && elapsed >= warm {
                    window = Some((Instant::now(), stats.get(&stats.completed)));
                }
                if elapsed >= warm + len {
                    let (t0, n0) = window.expect("warm-up is over");
                    *result = (stats.get(&stats.completed) - n0) as f64 / t0.elapsed().as_secs_f64();
                    break;
                }
            }
            // Wind down: no new connections; persistent ones close after their response in flight.
            stats.stop.store(true, Ordering::Relaxed);
            let drain = Instant::now();
            while engine.stats().open > 0 && drain.elapsed() < Duration::from_secs(5) {
                dev.refill();
                engine.poll(clock(origin), dev);
                dev.flush();
            }
            stop.store(true, Ordering::Relaxed);
        }) as Box<dyn FnOnce() + Send + '_>
    };
    run_on_lcores(eal, vec![server_task, client_task]).expect("two lcores");
    assert_eq!(client.0.stats().open, 0, "the load generator's connections drained");
    let failed = stats.get(&stats.failed);
    assert_eq!(failed, 0, "fast path: {failed} connections failed");
    let share = |l: Metered| l.share.unwrap_or(f64::NAN);
    (result, share(client_load), share(server_load))
}

/// The Linux side: a mio echo server on CPU 0 and a mio client on CPU 1, over loopback; returns
/// operations per second over the measured window.
///
/// Both loops busy-poll (`poll` with a zero timeout), as the fast path's cores do. Blocking, they
/// halted their vCPUs whenever they waited, and on a busy host a halted vCPU waits to be run
/// again: in interleaved pairs the blocking baseline did 60,672-125,681 requests/s with 8-49 % of
/// both CPUs stolen, the spinning one 100,677-138,741 with 0-24 % (BENCHMARKS.md, "The host's
/// steal").
fn kernel_run(mode: LoadMode, conns: usize, secs: u64) -> f64 {
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};

    let stop = Arc::new(AtomicBool::new(false));
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            pin(0);
            let mut poll = Poll::new().unwrap();
            poll.registry().register(&mut listener, Token(usize::MAX), Interest::READABLE).unwrap();
            let mut conns: Vec<Option<TcpStream>> = Vec::new();
            let mut free: Vec<usize> = Vec::new();
            let mut events = Events::with_capacity(1024);
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
                for ev in &events {
                    if ev.token() == Token(usize::MAX) {
                        while let Ok((mut s, _)) = listener.accept() {
                            let _ = s.set_nodelay(true);
                            let i = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(&mut s, Token(i), Interest::READABLE).unwrap();
                            conns[i] = Some(s);
                        }
                        continue;
                    }
                    let i = ev.token().0;
                    let Some(s) = conns[i].as_mut() else { continue };
                    let mut close = false;
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                close = true;
                                break;
                            }
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    close = true;
                                    break;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(_) => {
                                close = true;
                                break;
                            }
                        }
                    }
                    if close {
                        let mut s = conns[i].take().unwrap();
                        let _ = poll.registry().deregister(&mut s);
                        free.push(i);
                    }
                }
            }
        })
    };
    // The client on its own thread: the calling thread is DPDK's main lcore and must keep its
    // CPU (pinning it here would put the fast path's two pollers on one CPU in later runs).
    let client = std::thread::spawn(move || {
        pin(1);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(1024);
        struct C {
            s: TcpStream,
            got: usize,
            sent: bool,
        }
        let open = |poll: &Poll, i: usize| -> C {
            let mut s = connect_from(1 + i % LINUX_SOURCES, addr);
            let _ = s.set_nodelay(true);
            poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE).unwrap();
            C { s, got: 0, sent: false }
        };
        let mut cs: Vec<C> = (0..conns).map(|i| open(&poll, i)).collect();
        let req = [0x5au8; SIZE];
        let mut buf = [0u8; 4096];
        let mut done = 0u64;
        let start = Instant::now();
        let warm = Duration::from_millis(500);
        let mut window: Option<(Instant, u64)> = None;
        loop {
            poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
            for ev in &events {
                let i = ev.token().0;
                let mut reopen = false;
                {
                    let c = &mut cs[i];
                    if !c.sent && ev.is_writable() && c.s.write(&req).is_ok_and(|n| n == SIZE) {
                        c.sent = true;
                    }
                    if ev.is_readable() {
                        loop {
                            match c.s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => c.got += n,
                                Err(_) => break,
                            }
                        }
                    }
                    if c.got >= SIZE {
                        done += 1;
                        c.got -= SIZE;
                        match mode {
                            LoadMode::Short => reopen = true,
                            LoadMode::Persistent => {
                                c.sent = c.s.write(&req).is_ok_and(|n| n == SIZE);
                            }
                        }
                    }
                }
                if reopen {
                    let _ = poll.registry().deregister(&mut cs[i].s);
                    cs[i] = open(&poll, i); // the old stream closes (client first) when dropped
                }
            }
            let elapsed = start.elapsed();
            if window.is_none() && elapsed >= warm {
                window = Some((Instant::now(), done));
            }
            if elapsed >= warm + Duration::from_secs(secs) {
                break;
            }
        }
        let (t0, n0) = window.unwrap();
        (done - n0) as f64 / t0.elapsed().as_secs_f64()
    });
    let rate = client.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    rate
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp); // NaN (a skipped run) sorts last
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// The workloads: name, mode, concurrent connections, unit; both, or the one `ONLY` names
/// (`short` or `persistent`).
fn workloads() -> Vec<(&'static str, LoadMode, usize, &'static str)> {
    let only = std::env::var("ONLY").ok();
    [
        ("short", "short connections", LoadMode::Short, env("SHORT_CONNS", 256) as usize, "conns/s"),
        ("persistent", "persistent requests", LoadMode::Persistent, env("PERSISTENT_CONNS", 64) as usize, "req/s"),
    ]
    .into_iter()
    .filter(|w| only.as_deref().is_none_or(|o| o == w.0))
    .map(|(_, name, mode, conns, unit)| (name, mode, conns, unit))
    .collect()
}

fn main() {
    let secs = env("SECS", 5);
    let repeat = env("REPEAT", 3).max(1) as usize;
    if env("KERNEL_ONLY", 0) != 0 {
        for _ in 0..repeat {
            for (name, mode, conns, unit) in workloads() {
                let taken = HostSteal::now().expect("/proc/stat");
                let rate = kernel_run(mode, conns, secs);
                let [s0, s1] = steal_since(&taken);
                report(
                    format!("linux {name} ({conns} concurrent, {SIZE} B): {rate:.0} {unit}; host steal CPU 0 / CPU 1: {s0:.1}% / {s1:.1}%"),
                    serde_json::json!({
                        "figure": "linux",
                        "workload": name,
                        "conns": conns,
                        "size": SIZE,
                        "rate": rate,
                        "unit": unit,
                        "steal_percent": [s0, s1],
                    }),
                );
            }
        }
        return;
    }
    let prefix = format!("--file-prefix=sy-wire-{}", std::process::id());
    let sock = format!("/tmp/sy-wire-{}.sock", std::process::id());
    let _ = std::fs::remove_file(&sock);
    let args = [
        "wire".to_owned(),
        "--no-huge".into(),
        "-m".into(),
        "1024".into(),
        "--no-pci".into(),
        prefix.clone(),
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
        (Mempool::new(&eal, "wire0", &cfg_pool).unwrap(), Mempool::new(&eal, "wire1", &cfg_pool).unwrap());
    let port0 = Port::open(&eal, ids[0], &req, pool0.clone()).unwrap();
    let port1 = Port::open(&eal, ids[1], &req, pool1.clone()).unwrap();
    let t = Instant::now();
    while !(port0.link_up() && port1.link_up()) {
        assert!(t.elapsed() < Duration::from_secs(10), "memif link did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let origin = TscClock::new(&eal);
    let now = clock(&origin);
    let unchecked = std::env::var("CHECKSUMS").as_deref() != Ok("port");
    let device = |port, pool| {
        let d = PortDevice::new(port, QueueId(0), pool);
        if unchecked {
            d.unchecked()
        } else {
            d
        }
    };
    let mut sdev = device(&port0, &pool0);
    let mut scfg: EngineConfig = EngineConfig::new(port0.mac(), SERVER, 24);
    scfg.tcp_rx_buffer = 2048;
    scfg.tcp_tx_buffer = 2048;
    scfg.random_seed = 11;
    scfg.max_backlog = 65536;
    scfg.listeners = vec![ListenerSpec {
        port: 7,
        service: ServiceKind::Echo,
        backlog: 65536,
        policy: BacklogPolicy::Linux,
        on_full: OnFull::Refuse,
    }];
    let server_engine = Engine::new(&scfg, &mut sdev, now).unwrap();
    let mut cdev = device(&port1, &pool1);
    let mut ccfg: EngineConfig = EngineConfig::new(port1.mac(), CLIENT, 24);
    ccfg.extra_addresses = (10..17).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    ccfg.tcp_rx_buffer = 2048;
    ccfg.tcp_tx_buffer = 2048;
    ccfg.random_seed = 12;
    ccfg.time_wait = Duration::ZERO; // as Linux reuses TIME_WAIT tuples on loopback (tcp_tw_reuse)
    let mut client_engine = Engine::new(&ccfg, &mut cdev, now).unwrap();
    client_engine.announce_to(now, &mut cdev, SERVER);
    cdev.flush();
    let mut server = (server_engine, sdev);
    let mut client = (client_engine, cdev);

    report(
        format!(
            "fast path (memif pair, engine per side, one core each; checksums {}) vs Linux (loopback, mio, one core each); {secs} s runs, {repeat} each, interleaved",
            if unchecked { "none: a trusted memory wire, as Linux's loopback" } else { "computed and checked by smoltcp" }
        ),
        serde_json::json!({
            "figure": "settings",
            "secs": secs,
            "repeat": repeat,
            "checksums": if unchecked { "none" } else { "port" },
        }),
    );
    for (name, mode, conns, unit) in workloads() {
        let (mut fast, mut kern, mut client_busy, mut server_busy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Per CPU: [CPU 0 in fast runs, CPU 1 in fast runs, CPU 0 in Linux runs, CPU 1 in Linux runs].
        let mut steal: [Vec<f64>; 4] = Default::default();
        for _ in 0..repeat {
            let taken = HostSteal::now().expect("/proc/stat");
            let (rate, c, s) = fast_run(&origin, &eal, &mut server, &mut client, mode, conns, secs);
            let [s0, s1] = steal_since(&taken);
            fast.push(rate);
            client_busy.push(100.0 * c);
            server_busy.push(100.0 * s);
            steal[0].push(s0);
            steal[1].push(s1);
            let taken = HostSteal::now().expect("/proc/stat");
            if env("KERNEL", 1) != 0 {
                kern.push(kernel_run(mode, conns, secs));
            } else {
                kern.push(f64::NAN);
            }
            let [k0, k1] = steal_since(&taken);
            steal[2].push(k0);
            steal[3].push(k1);
        }
        let runs = serde_json::json!({
            "fast": fast,
            "linux": kern,
            "loadgen_busy_percent": client_busy,
            "echo_busy_percent": server_busy,
            "steal_percent_fast": [steal[0], steal[1]],
            "steal_percent_linux": [steal[2], steal[3]],
        });
        let [sf0, sf1, sk0, sk1] = steal.each_mut().map(|v| stats(v).1);
        let mut paired: Vec<f64> = fast.iter().zip(&kern).map(|(f, k)| f / k).collect();
        let paired_runs = paired.clone();
        let (p_lo, p_med, p_hi) = stats(&mut paired);
        let (f_lo, f_med, f_hi) = stats(&mut fast);
        let (k_lo, k_med, k_hi) = stats(&mut kern);
        let (cb, sb) = (stats(&mut client_busy).1, stats(&mut server_busy).1);
        let mut json = serde_json::json!({
            "figure": "one_process",
            "workload": name,
            "conns": conns,
            "size": SIZE,
            "unit": unit,
            "paired_ratios": paired_runs,
        });
        json.as_object_mut().expect("an object").extend(runs.as_object().expect("an object").clone());
        report(
            format!(
                "{name} ({conns} concurrent, {SIZE} B): fast {f_med:.0} {unit} (min {f_lo:.0}, max {f_hi:.0}); Linux {k_med:.0} (min {k_lo:.0}, max {k_hi:.0}); ratio fast/Linux {:.1}; paired ratios {p_med:.1} (min {p_lo:.1}, max {p_hi:.1}); fast cores busy (medians): load generator {cb:.1}%, echo server {sb:.1}%; host steal on CPU 0 / CPU 1 (medians): fast runs {sf0:.1}% / {sf1:.1}%, Linux runs {sk0:.1}% / {sk1:.1}%",
                f_med / k_med
            ),
            json,
        );
    }
    let (s, c) = (server.0.stats(), client.0.stats());
    let (sd, cd) = (server.1.stats(), client.1.stats());
    let (srx_missed, crx_missed) = (server.1.port().stats().rx_missed, client.1.port().stats().rx_missed);
    report(
        format!(
            "fast path totals: server established {} closed {}; client connected {} failed {}; frames server rx {} tx {} client rx {} tx {}; tx_nombuf {}/{}; tx_queue_full {}/{}; port rx_missed {}/{}",
            s.established,
            s.closed,
            c.connected,
            c.connect_failed,
            sd.rx_frames,
            sd.tx_frames,
            cd.rx_frames,
            cd.tx_frames,
            sd.tx_nombuf,
            cd.tx_nombuf,
            sd.tx_queue_full,
            cd.tx_queue_full,
            srx_missed,
            crx_missed
        ),
        serde_json::json!({
            "figure": "totals",
            "server_established": s.established,
            "server_closed": s.closed,
            "client_connected": c.connected,
            "client_connect_failed": c.connect_failed,
            "server_frames": [sd.rx_frames, sd.tx_frames],
            "client_frames": [cd.rx_frames, cd.tx_frames],
            "tx_nombuf": [sd.tx_nombuf, cd.tx_nombuf],
            "tx_queue_full": [sd.tx_queue_full, cd.tx_queue_full],
            "rx_missed": [srx_missed, crx_missed],
        }),
    );
    drop(server);
    drop(client);
    drop(port0);
    drop(port1);
    let _ = std::fs::remove_file(&sock);
    drop(eal);
    // EAL's runtime folder for this run's own file prefix.
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", prefix.trim_start_matches("--file-prefix=")));
}
