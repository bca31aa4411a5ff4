//! The engine in memory, server time only: what one core's engine does per packet as the number
//! of established connections grows, and its handshake and short-connection rates.
//!
//! `cargo bench -p switchyard-runtime --bench engine` (env: `MAX_CONNS`, default 1000000;
//! `ROUNDS`, default 200; `REPEAT`, default 3; `CKSUM=offload`: the engine's device says the
//! checksums are a NIC's work, as with offloads; `ONLY=requests` (`ACTIVE` busy connections,
//! default 1000, of `OPEN` held open, default `ACTIVE`) or `ONLY=short`: that figure alone, for
//! profilers; `ONLY=loadgen`: a load-generating engine against the echo engine, each side's time
//! per request; `PORTS_PER_IP`, default 50000: client ports per client address, 1 gives each
//! connection its own; `ONLINK=1`: the client addresses are on the engine's link, each one a
//! neighbour, instead of behind the gateway).
//!
//! A raw packet client (not smoltcp: its socket scan would be the bottleneck) speaks TCP to one
//! [`Engine`] over an in-memory link. Client addresses are 198.19.x.y, off the engine's
//! 198.18.0.0/24, so every reply goes through the gateway 198.18.0.1, which the client answers ARP
//! for. Only the time inside `Engine::poll` is counted.
//!
//! Figures:
//! 1. **ns per packet vs established connections**: with 1k, 10k, 100k and 1M connections open,
//!    the same 1000 connections exchange 64-byte request/echo pairs. One frame in and one out per
//!    request; the figure is engine time per request. The ratio 1M/1k is the target (<= 1.2). A
//!    second engine holding 1k connections is measured in turn with the growing one at every step,
//!    so each ratio compares runs made under the same machine conditions (the machines are shared).
//!    The last column is the hypervisor's steal over each engine's runs (`lcore::HostSteal`): time
//!    the host took the CPU away inside a timed poll counts as engine time.
//! 2. **Handshakes/s**: engine time per completed handshake while opening those connections.
//! 3. **Short connections/s**: connect, 64-byte request, 64-byte echo, close (client first), 256
//!    at a time.
//! 4. **Refusals/s**: SYNs to a listener whose queue is full (a `hold` listener with backlog 0 under
//!    `solaris`), each answered with an RST; RSS and pool slots before and after `MAX_CONNS`
//!    refusals per run (they must not grow).
//! 5. **Memory at `MAX_CONNS` established connections**: RSS plus the arena's hugepages, first
//!    with most connections never having carried a byte (on normal pages their buffer pages are
//!    then untouched, so not resident), then after one request and echo on every connection.
//!
//! `BENCH_JSON=1` prints each figure as one JSON object a line on stdout instead (with every run's
//! value, not only the median), for the bench driver (`control/bench`); what is measured is the
//! same.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant as Clock};

use engine::flow::{plain_tcp, tcp_frame_len, write_tcp_frame};
use engine::phy::{BurstDevice, MemoryDevice, MemoryLink};
use engine::services::ServiceKind;
use engine::{neighbor, BacklogPolicy, Engine, EngineConfig, EngineInstant, ListenerSpec, OnFull};
use runtime::lcore::HostSteal;
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet, TcpControl, TcpPacket};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
/// Client ports per client address (env `PORTS_PER_IP`; 1 gives every connection its own address).
fn ports_per_ip() -> u32 {
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| env("PORTS_PER_IP", 50_000).clamp(1, 50_000))
}
const FIRST_PORT: u32 = 10_000;
const ECHO: u16 = 7;
/// A `hold` listener with backlog 0 under `solaris`: its queue limit is 0, every SYN is refused.
const FULL: u16 = 9;

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Idle,
    SynSent,
    Established,
    /// Short mode: request sent, waiting for the echo.
    Requested,
    /// Our FIN is out.
    FinSent,
}

#[derive(Clone, Copy)]
struct Conn {
    st: St,
    snd_nxt: u32,
    rcv_nxt: u32,
    got: u32,
    short: bool,
    echoes: u32,
}

/// Connection `i`'s address and port.
fn endpoint(i: u32) -> (Ipv4Addr, u16) {
    let ip = u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i / ports_per_ip();
    (Ipv4Addr::from(ip), (FIRST_PORT + i % ports_per_ip()) as u16)
}

fn index(ip: Ipv4Addr, port: u16) -> u32 {
    (u32::from(ip) - u32::from(Ipv4Addr::new(198, 19, 0, 0))) * ports_per_ip() + (u32::from(port) - FIRST_PORT)
}

struct Client {
    dev: MemoryDevice,
    conns: Vec<Conn>,
    payload: [u8; 64],
    established: u64,
    finished: u64,
    /// The port SYNs go to.
    dst_port: u16,
    refused: u64,
    /// Acknowledge each echo at once, as a client with nothing more to send does (after its delayed
    /// ACK); otherwise the next request carries the ACK.
    ack_echoes: bool,
}

impl Client {
    fn send_tcp(&mut self, i: u32, control: TcpControl, ack: bool, payload: &[u8]) {
        let (ip, port) = endpoint(i);
        let c = self.conns[i as usize];
        let mut tcp = plain_tcp((port, self.dst_port), control, c.snd_nxt, ack.then_some(c.rcv_nxt), 65535, payload);
        tcp.max_seg_size = (control == TcpControl::Syn).then_some(1460);
        let len = tcp_frame_len(&tcp);
        let tok = self.dev.transmit(EngineInstant::from_millis(0)).expect("memory link never full");
        tok.consume(len, |buf| write_tcp_frame(buf, (CLIENT_MAC, ip), (SERVER_MAC, SERVER), &tcp));
        let c = &mut self.conns[i as usize];
        c.snd_nxt = c.snd_nxt.wrapping_add(payload.len() as u32)
            + u32::from(matches!(control, TcpControl::Syn | TcpControl::Fin));
    }

    fn syn(&mut self, i: u32, short: bool) {
        let c = &mut self.conns[i as usize];
        *c = Conn { st: St::SynSent, snd_nxt: i.wrapping_mul(2_654_435_761), rcv_nxt: 0, got: 0, short, echoes: 0 };
        self.send_tcp(i, TcpControl::Syn, false, &[]);
    }

    fn request(&mut self, i: u32) {
        let p = self.payload;
        self.send_tcp(i, TcpControl::Psh, true, &p);
    }

    /// Handles every frame the engine sent.
    fn drain(&mut self) {
        self.dev.refill();
        while let Some((rx, _)) = self.dev.receive(EngineInstant::from_millis(0)) {
            let frame = rx.consume(|f| f.to_vec());
            self.handle(&frame);
            self.dev.refill();
        }
    }

    fn handle(&mut self, frame: &[u8]) {
        let eth = EthernetFrame::new_checked(frame).expect("engine frames are well formed");
        if eth.ethertype() == EthernetProtocol::Arp {
            let a = neighbor::parse_arp(frame).expect("engine ARP frames are well formed");
            if a.request && a.target_ip == GATEWAY {
                self.arp(Some(a.sender_mac), a.sender_ip);
            }
            return;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let i = index(ip.dst_addr(), tcp.dst_port());
        let c = self.conns[i as usize];
        let len = tcp.payload().len() as u32;
        if tcp.rst() {
            assert!(c.st == St::SynSent && tcp.src_port() == FULL, "connection {i} reset by the engine");
            self.conns[i as usize].st = St::Idle;
            self.refused += 1;
            return;
        }
        match c.st {
            St::SynSent if tcp.syn() && tcp.ack() => {
                let c = &mut self.conns[i as usize];
                c.rcv_nxt = (tcp.seq_number().0 as u32).wrapping_add(1);
                c.st = St::Established;
                self.established += 1;
                if c.short {
                    c.st = St::Requested;
                    let p = self.payload;
                    self.send_tcp(i, TcpControl::Psh, true, &p); // ACK with the request
                } else {
                    self.send_tcp(i, TcpControl::None, true, &[]);
                }
            }
            St::Established | St::Requested | St::FinSent => {
                let c = &mut self.conns[i as usize];
                c.rcv_nxt = c.rcv_nxt.wrapping_add(len);
                c.got += len;
                if len > 0 && c.got.is_multiple_of(64) {
                    c.echoes += 1;
                }
                if tcp.fin() {
                    c.rcv_nxt = c.rcv_nxt.wrapping_add(1);
                    if c.st == St::FinSent {
                        c.st = St::Idle;
                        self.finished += 1;
                        self.send_tcp(i, TcpControl::None, true, &[]); // the last ACK
                    }
                    return;
                }
                if c.st == St::Requested && c.got >= 64 {
                    c.st = St::FinSent;
                    self.send_tcp(i, TcpControl::Fin, true, &[]);
                } else if len > 0 && self.ack_echoes {
                    self.send_tcp(i, TcpControl::None, true, &[]);
                }
            }
            _ => {}
        }
    }

    /// The gateway asks for the engine's address, as a router would before forwarding to it; the
    /// engine learns the gateway's MAC from the request.
    fn announce(&mut self) {
        self.arp(None, SERVER);
    }

    /// An ARP frame from the gateway: a request for `to_ip`, or the reply to `reply_to`'s request.
    fn arp(&mut self, reply_to: Option<[u8; 6]>, to_ip: Ipv4Addr) {
        let now = EngineInstant::from_millis(0);
        assert!(neighbor::send_arp(&mut self.dev, now, CLIENT_MAC, GATEWAY, to_ip, reply_to), "room to send");
    }
}

struct Bench {
    engine: Engine,
    edev: MemoryDevice,
    client: Client,
    now: EngineInstant,
    engine_time: Duration,
}

impl Bench {
    fn new(max_conns: u32) -> Bench {
        Bench::with_buffers(max_conns, 2048, 2048)
    }

    fn with_buffers(max_conns: u32, rx: usize, tx: usize) -> Bench {
        let MemoryLink { a, b: mut edev } = MemoryLink::new();
        if std::env::var("CKSUM").as_deref() == Ok("offload") {
            edev.offload_checksums(); // what a NIC's checksum offloads leave the engine
        }
        // ONLINK=1: the clients are on the engine's link (198.18.0.0/15), each address a neighbour.
        let onlink = std::env::var("ONLINK").as_deref() == Ok("1");
        let mut cfg: EngineConfig = EngineConfig::new(SERVER_MAC, SERVER, if onlink { 15 } else { 24 });
        cfg.gateway = Some(GATEWAY);
        cfg.tcp_rx_buffer = rx;
        cfg.tcp_tx_buffer = tx;
        cfg.random_seed = 1;
        cfg.max_backlog = 1 << 20;
        cfg.max_connections = max_conns as usize + 65_536;
        cfg.listeners = vec![
            ListenerSpec {
                port: ECHO,
                service: ServiceKind::Echo,
                backlog: 1 << 20,
                policy: BacklogPolicy::Linux,
                on_full: OnFull::Refuse,
            },
            ListenerSpec {
                port: FULL,
                service: ServiceKind::Hold,
                backlog: 0,
                policy: BacklogPolicy::Solaris,
                on_full: OnFull::Refuse,
            },
        ];
        let now = EngineInstant::from_millis(0);
        let engine = Engine::new(&cfg, &mut edev, now).unwrap();
        let conns =
            vec![Conn { st: St::Idle, snd_nxt: 0, rcv_nxt: 0, got: 0, short: false, echoes: 0 }; max_conns as usize];
        let client = Client {
            dev: a,
            conns,
            payload: [0x5a; 64],
            established: 0,
            finished: 0,
            dst_port: ECHO,
            refused: 0,
            ack_echoes: false,
        };
        let mut b = Bench { engine, edev, client, now, engine_time: Duration::ZERO };
        b.client.announce();
        b.settle();
        b
    }

    /// Lets engine time pass with no traffic, polling every 10 ms of it (its timers and sweeps run).
    fn idle(&mut self, d: Duration) {
        let end = self.now + d.into();
        while self.now < end {
            self.timed_poll(smoltcp::time::Duration::from_millis(10));
            self.client.drain();
        }
    }

    /// Advances engine time by `step` and polls the engine once, counting the poll's time.
    fn timed_poll(&mut self, step: smoltcp::time::Duration) {
        self.edev.refill();
        self.now += step;
        let t = Clock::now();
        self.engine.poll(self.now, &mut self.edev);
        self.engine_time += t.elapsed();
    }

    /// Lets the engine take everything the client sent, and the client answer, until quiet.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while self.edev.pending() > 0 {
                moved = true;
                self.timed_poll(smoltcp::time::Duration::from_micros(1));
            }
            if self.client.dev.pending() > 0 {
                moved = true;
                self.client.drain();
            }
            if !moved {
                break;
            }
        }
    }

    /// Opens connections `from..to` in batches; returns engine ns per handshake.
    fn open(&mut self, from: u32, to: u32) -> f64 {
        let t0 = self.engine_time;
        let mut i = from;
        while i < to {
            let end = (i + 256).min(to);
            for j in i..end {
                self.client.syn(j, false);
            }
            self.settle();
            i = end;
        }
        (self.engine_time - t0).as_nanos() as f64 / f64::from(to - from)
    }

    /// `rounds` request/echo exchanges on each of the first `active` connections; returns engine
    /// ns per request (one frame in, one frame out).
    fn exchange(&mut self, active: u32, rounds: u32) -> f64 {
        let t0 = self.engine_time;
        let before: u32 = (0..active).map(|i| self.client.conns[i as usize].echoes).sum();
        for _ in 0..rounds {
            for i in 0..active {
                self.client.request(i);
            }
            self.settle();
        }
        let after: u32 = (0..active).map(|i| self.client.conns[i as usize].echoes).sum();
        assert_eq!(after - before, active * rounds, "every request echoed");
        (self.engine_time - t0).as_nanos() as f64 / f64::from(active * rounds)
    }

    /// `total` short connections, `parallel` at a time, on connection slots from `base`; returns
    /// engine ns per connection.
    fn short(&mut self, base: u32, parallel: u32, total: u32) -> f64 {
        let t0 = self.engine_time;
        let done0 = self.client.finished;
        let mut started = 0;
        while started < total {
            let n = parallel.min(total - started);
            for j in 0..n {
                self.client.syn(base + j, true);
            }
            started += n;
            self.settle();
            // let delayed ACKs and the engine's LAST_ACK resolve
            self.now += smoltcp::time::Duration::from_millis(20);
            self.edev.refill();
            self.engine.poll(self.now, &mut self.edev);
            self.settle();
        }
        assert_eq!(self.client.finished - done0, u64::from(total), "every short connection finished");
        (self.engine_time - t0).as_nanos() as f64 / f64::from(total)
    }
}

impl Bench {
    /// `total` SYNs to the full listener, 256 at a time, each answered with an RST; returns engine
    /// ns per refusal.
    fn refuse(&mut self, total: u32) -> f64 {
        let t0 = self.engine_time;
        let before = self.client.refused;
        self.client.dst_port = FULL;
        let mut sent = 0;
        while sent < total {
            let n = 256.min(total - sent);
            for j in 0..n {
                self.client.syn(j, false);
            }
            sent += n;
            self.settle();
        }
        self.client.dst_port = ECHO;
        assert_eq!(self.client.refused - before, u64::from(total), "every SYN refused with an RST");
        (self.engine_time - t0).as_nanos() as f64 / f64::from(total)
    }
}

/// A load generator engine (persistent requests on `active` connections from 8 addresses) against
/// the echo engine over an in-memory link, until `requests` responses came back; returns the ns
/// per request spent in each side's `poll` (client, server).
fn loadgen_against_echo(active: u32, requests: u32) -> (f64, f64) {
    use engine::services::{LoadGen, LoadMode, LoadSpec, LoadStats, Session};
    let MemoryLink { a: mut cdev, b: mut sdev } = MemoryLink::new();
    let mut now = EngineInstant::from_millis(0);
    let mut s: EngineConfig = EngineConfig::new(SERVER_MAC, SERVER, 24);
    s.listeners = vec![ListenerSpec {
        port: ECHO,
        service: ServiceKind::Echo,
        backlog: 4096,
        policy: BacklogPolicy::Linux,
        on_full: OnFull::Refuse,
    }];
    let mut server = Engine::new(&s, &mut sdev, now).unwrap();
    let mut c: EngineConfig = EngineConfig::new(CLIENT_MAC, GATEWAY, 24);
    c.extra_addresses = (10..17).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    let mut client = Engine::new(&c, &mut cdev, now).unwrap();
    client.announce_to(now, &mut cdev, SERVER);
    let stats = std::sync::Arc::new(LoadStats::default());
    let spec = LoadSpec { size: 64, mode: LoadMode::Persistent, stats: stats.clone() };
    for _ in 0..active {
        client
            .connect(std::net::SocketAddrV4::new(SERVER, ECHO), Session::LoadGen(LoadGen::new(spec.clone())))
            .unwrap();
    }
    let (mut tc, mut ts) = (Duration::ZERO, Duration::ZERO);
    let mut turn = |tc: &mut Duration, ts: &mut Duration, now: EngineInstant| {
        cdev.refill();
        let t = Clock::now();
        client.poll(now, &mut cdev);
        *tc += t.elapsed();
        sdev.refill();
        let t = Clock::now();
        server.poll(now, &mut sdev);
        *ts += t.elapsed();
    };
    let (mut warm_c, mut warm_s) = (Duration::ZERO, Duration::ZERO); // handshakes, first requests
    while stats.get(&stats.completed) < u64::from(active) * 20 {
        now += smoltcp::time::Duration::from_micros(10);
        turn(&mut warm_c, &mut warm_s, now);
    }
    let done0 = stats.get(&stats.completed);
    while stats.get(&stats.completed) - done0 < u64::from(requests) {
        now += smoltcp::time::Duration::from_micros(10);
        turn(&mut tc, &mut ts, now);
    }
    let n = (stats.get(&stats.completed) - done0) as f64;
    (tc.as_nanos() as f64 / n, ts.as_nanos() as f64 / n)
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

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let max_conns = env("MAX_CONNS", 1_000_000);
    let rounds = env("ROUNDS", 200);
    let repeat = env("REPEAT", 3).max(1);
    let active = 1000.min(max_conns);
    report(
        format!("engine in memory, server time only (MAX_CONNS={max_conns} ROUNDS={rounds} REPEAT={repeat})"),
        serde_json::json!({ "figure": "settings", "max_conns": max_conns, "rounds": rounds, "repeat": repeat }),
    );
    if std::env::var("ONLY").as_deref() == Ok("requests") {
        // For profilers (callgrind, perf) and A/B runs: only the request/echo exchange on ACTIVE
        // connections (default 1000), out of OPEN held open (default ACTIVE).
        let active = env("ACTIVE", active);
        let open = env("OPEN", active).max(active);
        let mut b = Bench::new(open);
        b.open(0, open);
        b.exchange(active, 20);
        let v: Vec<f64> = (0..repeat).map(|_| b.exchange(active, rounds)).collect();
        report(
            format!("requests only: {active} of {open} connections, {rounds} rounds: ns/request {v:.0?}"),
            serde_json::json!({ "figure": "requests_only", "active": active, "open": open, "rounds": rounds, "ns_per_request": v }),
        );
        return;
    }
    if std::env::var("ONLY").as_deref() == Ok("loadgen") {
        // Which side costs more per request: a load-generating engine (persistent mode, ACTIVE
        // connections, default 64) against the echo engine, each side's poll timed on its own.
        let active = env("ACTIVE", 64);
        let v: Vec<(f64, f64)> = (0..repeat).map(|_| loadgen_against_echo(active, rounds * 1000)).collect();
        report(
            format!(
                "loadgen against echo, {active} connections, {} requests per run: ns/request client, server {v:.0?}",
                rounds * 1000
            ),
            serde_json::json!({
                "figure": "loadgen_against_echo",
                "active": active,
                "requests": rounds * 1000,
                "client_ns_per_request": v.iter().map(|r| r.0).collect::<Vec<_>>(),
                "server_ns_per_request": v.iter().map(|r| r.1).collect::<Vec<_>>(),
            }),
        );
        return;
    }
    if std::env::var("ONLY").as_deref() == Ok("short") {
        // The same for short connections: ROUNDS x 1000 of them, 256 at a time.
        let mut b = Bench::new(4096);
        b.short(0, 256, 4096);
        let v: Vec<f64> = (0..repeat).map(|_| b.short(0, 256, rounds * 1000)).collect();
        report(
            format!("short connections only: {} per run: ns/connection {v:.0?}", rounds * 1000),
            serde_json::json!({ "figure": "short_only", "per_run": rounds * 1000, "ns_per_connection": v }),
        );
        return;
    }

    // Short connections on a fresh engine.
    let mut b = Bench::new(4096);
    b.short(0, 256, 4096); // warm the pools
    let mut v: Vec<f64> = (0..repeat).map(|_| b.short(0, 256, 20_000)).collect();
    let runs = v.clone();
    let (lo, med, hi) = stats(&mut v);
    report(
        format!(
            "short connections (connect, 64 B request, 64 B echo, close; 256 at a time): {:.0} ns each = {:.0}k conns/s (min {:.0}k, max {:.0}k)",
            med,
            1e6 / med,
            1e6 / hi,
            1e6 / lo
        ),
        serde_json::json!({ "figure": "short_connections", "parallel": 256, "per_run": 20_000, "ns_per_connection": runs }),
    );
    drop(b);

    // Refusal at line rate (L4): a full backlog answers SYNs with RSTs, and memory must not grow.
    let mut b = Bench::new(4096);
    b.refuse(100_000); // warm
    let (rss0, slots0) = (rss_mib(), b.engine.stats().slots);
    let mut v: Vec<f64> = (0..repeat).map(|_| b.refuse(max_conns)).collect();
    let runs = v.clone();
    let (lo, med, hi) = stats(&mut v);
    let st = b.engine.listener_stats(FULL).unwrap();
    let (rss1, slots1) = (rss_mib(), b.engine.stats().slots);
    report(
        format!(
            "refusals (SYN to a full backlog, RST at once; {} per run): {med:.0} ns each = {:.2}M/s (min {:.2}M, max {:.2}M); RSS {rss0:.1} -> {:.1} MiB, slots {slots0} -> {}, refused {}",
            max_conns,
            1e3 / med,
            1e3 / hi,
            1e3 / lo,
            rss1,
            slots1,
            st.refused
        ),
        serde_json::json!({
            "figure": "refusals",
            "per_run": max_conns,
            "ns_per_refusal": runs,
            "rss_mib_before": rss0,
            "rss_mib_after": rss1,
            "slots_before": slots0,
            "slots_after": slots1,
            "refused": st.refused,
        }),
    );
    drop(b);

    // Embedding (issue 6): what Engine::classify costs a gateway per frame, on a 1k-connection
    // engine: a segment of an open connection, a SYN for a listener, TCP to a closed port, and a
    // frame for another address (the one a gateway forwards).
    {
        let mut b = Bench::new(active);
        b.open(0, active);
        let c = b.client.conns[7];
        b.client.send_tcp(7, TcpControl::None, true, &[0x5a; 64]);
        let seg = b.edev.peek_owned().expect("a data segment");
        b.client.conns[7] = c; // not sent, as far as the connection knows
        let mut syn = seg.clone();
        syn[14 + 20 + 13] = 0x02; // flags: SYN only
        syn[14 + 20..14 + 22].copy_from_slice(&60000u16.to_be_bytes()); // a new source port
        let mut closed = syn.clone();
        closed[14 + 22..14 + 24].copy_from_slice(&4444u16.to_be_bytes()); // no listener there
        let mut other = seg.clone();
        other[14 + 19] ^= 0x40; // another destination address
        let frames = [
            ("open connection", seg),
            ("SYN for a listener", syn),
            ("closed port", closed),
            ("another address", other),
        ];
        let n = 2_000_000u32;
        let mut line = String::new();
        let mut costs = Vec::new();
        for (what, f) in &frames {
            let mut v: Vec<f64> = (0..repeat)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let mut ours = 0u32;
                    for _ in 0..n {
                        ours += u32::from(std::hint::black_box(&b.engine).classify(std::hint::black_box(f)).is_ours());
                    }
                    std::hint::black_box(ours);
                    t.elapsed().as_nanos() as f64 / f64::from(n)
                })
                .collect();
            let (_, med, _) = stats(&mut v);
            line.push_str(&format!("{what} {:?} {med:.1} ns; ", b.engine.classify(f)));
            costs.push(
                serde_json::json!({ "frame": what, "class": format!("{:?}", b.engine.classify(f)), "median_ns": med }),
            );
        }
        report(
            format!("classify (embedding, {active} connections open, median of {repeat}): {line}"),
            serde_json::json!({ "figure": "classify", "open": active, "frames": costs }),
        );
    }

    // A 1k-connection engine stays beside the growing one; at every step the two are measured
    // in turn, REPEAT times, so the ratio compares runs made under the same machine conditions.
    let mut base = Bench::new(active);
    base.open(0, active);
    base.exchange(active, 20);
    let (rx_buf, tx_buf) = (env("RX_BUF", 2048) as usize, env("TX_BUF", 2048) as usize);
    let mut b = Bench::with_buffers(max_conns, rx_buf, tx_buf);
    let mut opened = 0;
    if !json_mode() {
        println!("| established | ns/request (min / median / max) | same run, 1k engine (median) | ratio to 1k | handshake ns | RSS MiB | host steal % (its runs / 1k runs) |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
    }
    for target in [1_000u32, 10_000, 100_000, 1_000_000] {
        let target = target.min(max_conns);
        if target <= opened {
            continue;
        }
        let hs = b.open(opened, target);
        opened = target;
        assert_eq!(b.engine.stats().open, opened as usize, "all connections established");
        b.exchange(active, 20); // warm
        let (mut big, mut small) = (Vec::new(), Vec::new());
        // The host's steal over each engine's runs (wall time, stolen time): the machines are VMs,
        // and a stolen millisecond inside a timed poll counts as engine time.
        let (mut big_steal, mut small_steal) = ((Duration::ZERO, Duration::ZERO), (Duration::ZERO, Duration::ZERO));
        let timed = |steal: &mut (Duration, Duration), run: &mut dyn FnMut() -> f64| {
            let t0 = HostSteal::now().expect("/proc/stat");
            let clock = std::time::Instant::now();
            let ns = run();
            steal.0 += clock.elapsed();
            steal.1 += HostSteal::now().expect("/proc/stat").stolen_all_since(&t0);
            ns
        };
        for _ in 0..repeat {
            small.push(timed(&mut small_steal, &mut || base.exchange(active, rounds)));
            big.push(timed(&mut big_steal, &mut || b.exchange(active, rounds)));
        }
        let (big_runs, small_runs) = (big.clone(), small.clone());
        let (lo, med, hi) = stats(&mut big);
        let (_, base_med, _) = stats(&mut small);
        let pct = |(wall, stolen): (Duration, Duration)| 100.0 * stolen.as_secs_f64() / wall.as_secs_f64();
        let rss = rss_mib();
        report(
            format!(
                "| {target} | {lo:.0} / {med:.0} / {hi:.0} | {base_med:.0} | {:.2} | {hs:.0} | {:.0} | {:.1} / {:.1} |",
                med / base_med,
                rss,
                pct(big_steal),
                pct(small_steal)
            ),
            serde_json::json!({
                "figure": "requests",
                "established": target,
                "active": active,
                "ns_per_request": big_runs,
                "base_established": active,
                "base_ns_per_request": small_runs,
                "handshake_ns": hs,
                "rss_mib": rss,
                "steal_percent": pct(big_steal),
                "base_steal_percent": pct(small_steal),
            }),
        );
        if target == max_conns {
            report(
                format!(
                    "ratio {target}/1000 (median ns/request, interleaved runs): {:.2}   target <= 1.2   ({active} active connections, 64 B each way)",
                    med / base_med
                ),
                serde_json::json!({
                    "figure": "per_packet_ratio",
                    "established": target,
                    "base_established": active,
                    "ratio": med / base_med,
                }),
            );
        }
    }
    let s = b.engine.stats();
    let m = b.engine.memory();
    let rss = rss_mib();
    report(
        format!(
            "memory at {} connections ({rx_buf} B rx + {tx_buf} B tx buffers): RSS {rss:.0} MiB = {:.0} B per connection; engine accounts {} B per pool slot; buffer arena {:.0} MiB in {} chunks, {:.0} MiB of it on hugepages",
            s.open,
            rss * 1048576.0 / s.open as f64,
            m.bytes_per_slot,
            m.buffers.reserved as f64 / 1048576.0,
            m.buffers.chunks,
            m.buffers.on_hugepages as f64 / 1048576.0,
        ),
        serde_json::json!({
            "figure": "memory",
            "open": s.open,
            "rx_buffer": rx_buf,
            "tx_buffer": tx_buf,
            "rss_mib": rss,
            "bytes_per_connection": rss * 1048576.0 / s.open as f64,
            "bytes_per_slot": m.bytes_per_slot,
            "arena_mib": m.buffers.reserved as f64 / 1048576.0,
            "arena_chunks": m.buffers.chunks,
            "arena_hugepages_mib": m.buffers.on_hugepages as f64 / 1048576.0,
        }),
    );
    if s.open >= 1_000_000 {
        // Hugepages are not in RSS: add the arena's. Pages of normal-page buffers that idle
        // connections never touched are not resident: "reserved" counts them too.
        let gib = 1024.0 * 1024.0 * 1024.0;
        let resident = rss * 1048576.0 + m.buffers.on_hugepages as f64;
        let reserved = (m.bytes_per_slot * m.slots) as f64;
        report(
            format!(
                "1M established connections: {:.2} GiB resident (RSS + hugepages), {:.2} GiB reserved (all memory mapped for them)   target <= 4 GiB",
                resident / gib,
                reserved.max(resident) / gib
            ),
            serde_json::json!({
                "figure": "memory_1m_established",
                "resident_gib": resident / gib,
                "reserved_gib": reserved.max(resident) / gib,
            }),
        );
        // The same connections once each has carried one request and its echo: a touched buffer
        // page is resident from then on (the engine gives no page back while a connection lives).
        let t = std::time::Instant::now();
        b.client.ack_echoes = true;
        for from in (0..s.open as u32).step_by(4096) {
            for i in from..(from + 4096).min(s.open as u32) {
                b.client.request(i);
            }
            b.settle();
        }
        let rss = rss_mib();
        report(
            format!(
                "after one 64 B request and echo on each of them ({:.1} s): RSS {rss:.0} MiB; {:.2} GiB resident (RSS + hugepages)   target <= 4 GiB",
                t.elapsed().as_secs_f64(),
                (rss * 1048576.0 + m.buffers.on_hugepages as f64) / gib
            ),
            serde_json::json!({
                "figure": "memory_1m_after_one_request",
                "rss_mib": rss,
                "resident_gib": (rss * 1048576.0 + m.buffers.on_hugepages as f64) / gib,
            }),
        );
        // Then idle: the engine gives the pages of connections with empty buffers back after one
        // to two `buffer_idle` periods (engine time; on normal pages only).
        let idle = engine::DEFAULT_BUFFER_IDLE;
        let t = std::time::Instant::now();
        let engine_before = b.engine_time;
        b.idle(2 * idle + Duration::from_secs(1));
        let rss = rss_mib();
        let r = b.engine.reclaim_stats();
        report(
            format!(
                "then idle for {} s of engine time (buffer_idle {} s; engine CPU {:.2} s, {:.1} s wall): {} connections open, {} slot buffers given back, {} still held; RSS {rss:.0} MiB; {:.2} GiB resident (RSS + hugepages)   target <= 4 GiB",
                (2 * idle + Duration::from_secs(1)).as_secs(),
                idle.as_secs(),
                (b.engine_time - engine_before).as_secs_f64(),
                t.elapsed().as_secs_f64(),
                b.engine.stats().open,
                r.releases,
                r.holding,
                (rss * 1048576.0 + m.buffers.on_hugepages as f64) / gib
            ),
            serde_json::json!({
                "figure": "memory_1m_after_idle",
                "idle_secs": (2 * idle + Duration::from_secs(1)).as_secs(),
                "open": b.engine.stats().open,
                "buffers_given_back": r.releases,
                "buffers_held": r.holding,
                "rss_mib": rss,
                "resident_gib": (rss * 1048576.0 + m.buffers.on_hugepages as f64) / gib,
            }),
        );
        assert_eq!(b.engine.stats().open, s.open, "idle connections stay open");
        // They carry on: one more request on a sample of them, echoed on fresh pages.
        let sample = 0..4096.min(s.open as u32);
        let before: u32 = sample.clone().map(|i| b.client.conns[i as usize].echoes).sum();
        for i in sample.clone() {
            b.client.request(i);
        }
        b.settle();
        let after: u32 = sample.clone().map(|i| b.client.conns[i as usize].echoes).sum();
        assert_eq!(after - before, sample.len() as u32, "every sampled connection echoed after the idle time");
    }
}
