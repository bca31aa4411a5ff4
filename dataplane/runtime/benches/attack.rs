//! What a flood costs one core's engine, in memory, engine time only: frames a second and ns a
//! frame for SYNs answered with SYN cookies, ACKs with bad cookies (answered with an RST), FIN-ACKs
//! to closed ports (answered with an RST) and RSTs to random 4-tuples (dropped), each from random
//! sources in 198.19.0.0/16; with the engine checking checksums in software, and with them left to
//! a NIC's offloads.
//!
//! `cargo bench -p switchyard-runtime --bench attack` (env: `FRAMES`, per run, default 2,000,000;
//! `REPEAT`, default 3; `BENCH_JSON=1`: one JSON object a line per figure, for the bench driver's
//! `attack` suite). Frames are made before the clock starts and handed over in bursts of 32; only
//! the time inside `Engine::poll` is counted. Every run checks that the flood left no connection,
//! no pool slot and nothing in TIME_WAIT behind, and that each frame drew its answer.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant as Clock};

use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
use engine::phy::{BurstDevice, MemoryDevice, MemoryLink};
use engine::services::ServiceKind;
use engine::{BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull, SynCookies};
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::wire::TcpControl;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const HTTP: u16 = 80;
/// Distinct frames made for each kind; a run cycles through them.
const DISTINCT: usize = 1 << 16;
/// Frames handed to the engine per poll (the runtime's burst).
const BURST: usize = 32;

/// The floods measured.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// SYNs to a listener that answers every SYN with a cookie (`syn_cookies = "always"`).
    SynCookie,
    /// ACKs to the listener with random numbers: a cookie check that fails, and an RST.
    BadCookieAck,
    /// FIN-ACKs to ports nobody listens on: an RST each.
    FinClosed,
    /// RSTs to random ports: dropped, nothing sent.
    Rst,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::SynCookie => "syn_cookies",
            Kind::BadCookieAck => "bad_cookie_acks",
            Kind::FinClosed => "fins_to_closed_ports",
            Kind::Rst => "rsts",
        }
    }

    /// Frames the engine sends for each one.
    fn answers(self) -> u64 {
        match self {
            Kind::Rst => 0,
            _ => 1,
        }
    }
}

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

/// `DISTINCT` frames of `kind` from random sources and ports, with random numbers.
fn frames(kind: Kind) -> Vec<Vec<u8>> {
    let mut rng = Rng(0xa77a_c4f1_00d5_0027 ^ kind as u64);
    (0..DISTINCT)
        .map(|_| {
            let x = rng.next();
            let src = Ipv4Addr::new(198, 19, (x >> 8) as u8, x as u8);
            let sport = 1024 + (x >> 16) as u16 % 64000;
            let (seq, ack) = (rng.next() as u32, rng.next() as u32);
            let closed = 1000 + (x >> 40) as u16 % 60000; // nobody listens on 1000..61000 but 80
            let closed = if closed == HTTP { 81 } else { closed };
            let mut tcp = match kind {
                Kind::SynCookie => plain_tcp((sport, HTTP), TcpControl::Syn, seq, None, 64240, &[]),
                Kind::BadCookieAck => plain_tcp((sport, HTTP), TcpControl::None, seq, Some(ack), 64240, &[]),
                Kind::FinClosed => plain_tcp((sport, closed), TcpControl::Fin, seq, Some(ack), 64240, &[]),
                Kind::Rst => plain_tcp((sport, closed), TcpControl::Rst, seq, None, 0, &[]),
            };
            if matches!(kind, Kind::SynCookie) {
                tcp.max_seg_size = Some(1460);
            }
            let mut f = vec![0u8; tcp_frame_len(&tcp)];
            write_tcp_frame(&mut f, (ROUTER_MAC, src), (SERVER_MAC, SERVER), &tcp);
            f
        })
        .collect()
}

struct Bench {
    engine: Engine,
    edev: MemoryDevice,
    /// The router's end: what the engine sends arrives here, and is dropped.
    router: MemoryDevice,
    now: EngineInstant,
}

impl Bench {
    fn new(offload: bool) -> Bench {
        let MemoryLink { a: router, b: mut edev } = MemoryLink::new();
        if offload {
            edev.offload_checksums();
        }
        let mut cfg: EngineConfig = EngineConfig::new(SERVER_MAC, SERVER, 24);
        cfg.gateway = Some(Ipv4Addr::new(198, 18, 0, 1));
        cfg.random_seed = 1;
        cfg.syn_cookies = SynCookies::Always;
        cfg.listeners = vec![ListenerSpec {
            port: HTTP,
            service: ServiceKind::Echo,
            backlog: 511,
            policy: BacklogPolicy::Linux,
            on_full: OnFull::Refuse,
        }];
        let now = EngineInstant::from_millis(0);
        let engine = Engine::new(&cfg, &mut edev, now).expect("the bench's engine config");
        Bench { engine, edev, router, now }
    }

    /// `total` frames from `frames`, in bursts; returns engine time and the frames it sent.
    fn flood(&mut self, frames: &[Vec<u8>], total: usize) -> (Duration, u64) {
        let mut time = Duration::ZERO;
        let mut answers = 0u64;
        let mut next = 0;
        let mut sent = 0;
        while sent < total {
            let n = BURST.min(total - sent);
            for _ in 0..n {
                // Through the router's end, whose frame buffers come from the link's pool: no
                // allocation per frame once warm, and the pool stays bounded.
                let f = &frames[next];
                let tok = self.router.transmit(self.now).expect("a memory link is never full");
                tok.consume(f.len(), |buf| buf.copy_from_slice(f));
                next = (next + 1) % frames.len();
            }
            sent += n;
            while self.edev.pending() > 0 {
                self.edev.refill();
                self.now += smoltcp::time::Duration::from_micros(1);
                let t = Clock::now();
                self.engine.poll(self.now, &mut self.edev);
                time += t.elapsed();
            }
            while self.router.pending() > 0 {
                self.router.refill();
                while let Some((rx, _)) = self.router.receive(self.now) {
                    rx.consume(|_| answers += 1); // its buffer back to the pool
                }
            }
        }
        (time, answers)
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
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

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let total = env("FRAMES", 2_000_000) as usize;
    let repeat = env("REPEAT", 3).max(1) as usize;
    let json = std::env::var("BENCH_JSON").as_deref() == Ok("1");
    for offload in [false, true] {
        let checksums = if offload { "offloaded" } else { "software" };
        for kind in [Kind::SynCookie, Kind::BadCookieAck, Kind::FinClosed, Kind::Rst] {
            let frames = frames(kind);
            let mut b = Bench::new(offload);
            b.flood(&frames, DISTINCT); // warm: every frame once
            let (slots0, rss0) = (b.engine.stats().slots, rss_mib());
            let mut ns = Vec::new();
            for _ in 0..repeat {
                let (time, answers) = b.flood(&frames, total);
                assert_eq!(answers, kind.answers() * total as u64, "{kind:?}: one answer per frame, or none");
                ns.push(time.as_nanos() as f64 / total as f64);
            }
            let st = b.engine.stats();
            assert_eq!(st.open, 0, "{kind:?} opened connections");
            assert_eq!(st.slots, slots0, "{kind:?} took pool slots");
            assert_eq!(b.engine.time_wait_stats().live, 0, "{kind:?} left TIME_WAIT entries");
            let l = b.engine.listener_stats(HTTP).expect("the listener");
            let rss1 = rss_mib();
            let med = median(&ns);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "figure": kind.name(),
                        "checksums": checksums,
                        "frames_per_run": total,
                        "ns_per_frame": ns,
                        "rss_mib_before": rss0,
                        "rss_mib_after": rss1,
                        "cookies_sent": l.cookies_sent,
                        "cookies_invalid": l.cookies_invalid,
                        "no_listener": st.no_listener,
                    })
                );
            } else {
                println!(
                    "{:<22} checksums {checksums:<9}: {med:6.0} ns a frame = {:5.2}M frames/s per core (runs {ns:.0?}); \
                     RSS {rss0:.1} -> {rss1:.1} MiB; cookies sent {}, invalid {}; no_listener {}",
                    kind.name(),
                    1e3 / med,
                    l.cookies_sent,
                    l.cookies_invalid,
                    st.no_listener
                );
            }
        }
    }
}
