//! Frames into an engine with live connections: the demux's classifier, ingress, the listeners,
//! TIME_WAIT, ARP, the services and the timers, under hostile input.
//!
//! Each input builds an engine (echo on 7, HTTP on 80, hold on 9, small limits) and a smoltcp
//! client on an in-memory link (`engine::testing::Pair`), opens one live connection, then runs
//! the input's operations (`switchyard_engine_fuzz::Op`): raw frames, TCP segments built field by
//! field on the engine's own 4-tuples (their sequence numbers taken from what the engine sent),
//! ARP, other IPv4, time passing with and without the peers, the real client's traffic. After
//! each operation the engine's counters must agree with each other and with its connections;
//! a frame the classifier calls not the engine's must leave the engine as it was. At the end
//! the live connection must have echoed everything sent on it (unless the input touched its
//! 4-tuple, closed it or kept its peer silent), and a new connection must get its echo.

#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use engine::flow::{self, FourTuple, Frame};
use engine::listener::{BacklogPolicy, OnFull};
use engine::services::{Echo, HttpConfig, ServiceKind, Session};
use engine::testing::{Pair, CLIENT, SERVER};
use engine::{EngineConfig, ListenerSpec, Verdict};
use libfuzzer_sys::fuzz_target;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};
use switchyard_engine_fuzz::{
    arp_frame, fix_checksums, ipv4_frame, tcp_frame, Input, Op, Seg, CLIENT_MAC, ENGINE_MAC, MAX_OPS, SETUP_GATEWAY,
    SETUP_HEADER_TIMEOUT, SETUP_OFFLOADED, SETUP_RECLAIM,
};

const MAX_CONNECTIONS: usize = 24;
const SYN_BACKLOG: usize = 3;
const MAX_TIME_WAIT: usize = 4;
const TCP_TIMEOUT: StdDuration = StdDuration::from_secs(3);
/// The live connection's client port.
const LIVE_PORT: u16 = 47000;
/// The port the last check's new connection comes from.
const FRESH_PORT: u16 = 48999;
/// Each way, for the client's sockets (the live one has four times as much: it holds the echo).
const CLIENT_BUFFER: usize = 4096;

fn config(setup: u8) -> EngineConfig {
    let mut http = HttpConfig::new(b"hello\n", "text/plain");
    if setup & SETUP_HEADER_TIMEOUT != 0 {
        http = http.with_header_timeout(StdDuration::from_secs(2));
    }
    let spec = |port, service, backlog, policy, on_full| ListenerSpec { port, service, backlog, policy, on_full };
    let mut c = EngineConfig::new(ENGINE_MAC, SERVER, 24);
    c.listeners = vec![
        spec(7, ServiceKind::Echo, 8, BacklogPolicy::Exact, OnFull::Refuse),
        spec(80, ServiceKind::Http(Arc::new(http)), 4, BacklogPolicy::Linux, OnFull::Drop),
        spec(9, ServiceKind::Hold, 2, BacklogPolicy::Bsd, OnFull::Refuse),
    ];
    if setup & SETUP_GATEWAY != 0 {
        c.gateway = Some(Ipv4Addr::new(198, 18, 0, 254));
    }
    c.tcp_rx_buffer = 4096;
    c.tcp_tx_buffer = 4096;
    c.random_seed = 7;
    c.time_wait = StdDuration::from_secs(2);
    c.max_connections = MAX_CONNECTIONS;
    c.syn_backlog = SYN_BACKLOG;
    c.max_time_wait = MAX_TIME_WAIT;
    c.tcp_timeout = TCP_TIMEOUT;
    c.buffer_idle = (setup & SETUP_RECLAIM != 0).then_some(StdDuration::from_secs(1));
    c
}

/// A 4-tuple the engine has sent on, and where its sequence numbers are.
struct Peer {
    tuple: FourTuple,
    /// The next sequence number the engine expects from the peer (its last ACK), if it sent one.
    expects: u32,
    /// The engine's next sequence number toward the peer.
    next: u32,
}

struct Harness {
    p: Pair,
    peers: Vec<Peer>,
    live: FourTuple,
    live_handle: SocketHandle,
    /// The input sent a frame on the live connection's 4-tuple, or the client closed it.
    live_disturbed: bool,
    /// How long the engine ran with its peers silent.
    silent: Duration,
    sent: Vec<u8>,
    got: Vec<u8>,
    /// Further connections of the real client.
    others: Vec<SocketHandle>,
    next_port: u16,
}

fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    if ip == CLIENT {
        CLIENT_MAC
    } else {
        [2, 0, 0, 0, 0, ip.octets()[3]]
    }
}

impl Harness {
    /// Notes where the engine's sequence numbers are from the frames it sent, leaving them on the
    /// wire for the client.
    fn track(&mut self) {
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| self.p.cdev.take_inbound()).collect();
        for f in frames {
            if trace() {
                eprintln!("{:?} engine sent {}", self.p.now, describe(&f));
            }
            if let Some((tuple, expects, next)) = engine_segment(&f) {
                if let Some(p) = self.peers.iter_mut().find(|p| p.tuple == tuple) {
                    p.expects = expects.unwrap_or(p.expects);
                    p.next = next;
                } else if self.peers.len() < 16 {
                    self.peers.push(Peer { tuple, expects: expects.unwrap_or(0), next });
                }
            }
            self.p.cdev.inject(f);
        }
    }

    fn step(&mut self, d: Duration) {
        self.p.step_by(d);
        self.track();
        self.p.recv_all(self.live_handle, &mut self.got);
    }

    /// Hands a frame to the engine and polls it; a frame the classifier calls not the engine's
    /// must change nothing but the frame count.
    fn inject(&mut self, frame: Vec<u8>) {
        if let Frame::Tcp(seg) = flow::classify(&frame, &[SERVER]) {
            if seg.tuple == self.live {
                self.live_disturbed = true;
            }
        }
        let verdict = self.p.engine.classify(&frame);
        if trace() {
            eprintln!("{:?} inject {verdict:?} {}", self.p.now, describe(&frame));
        }
        let before = (self.p.engine.stats(), self.p.engine.listeners(), self.p.engine.time_wait_stats());
        self.p.edev.inject(frame);
        self.p.engine_poll();
        if verdict == Verdict::NotOurs {
            let mut after = (self.p.engine.stats(), self.p.engine.listeners(), self.p.engine.time_wait_stats());
            after.0.frames = before.0.frames;
            assert_eq!(before, after, "a frame classified as not the engine's changed the engine");
        }
        self.track();
    }

    fn segment(&mut self, s: &Seg) {
        let (tuple, expects, next) = if s.peer < 0x80 && !self.peers.is_empty() {
            let p = &self.peers[usize::from(s.peer) % self.peers.len()];
            (p.tuple, p.expects, p.next)
        } else {
            let remote_ip = Ipv4Addr::new(198, 18, 0, 10 + (s.peer & 3));
            let remote_port = 40000 + u16::from((s.peer >> 2) & 0x1f);
            let local_port = match s.port % 5 {
                0 => 7,
                1 => 80,
                2 => 9,
                3 => 5,
                _ => u16::from(s.port) * 257,
            };
            let tuple = FourTuple { remote_ip, local_ip: SERVER, remote_port, local_port };
            match self.peers.iter().find(|p| p.tuple == tuple) {
                Some(p) => (tuple, p.expects, p.next),
                None => (tuple, 0, 0),
            }
        };
        let frame = tcp_frame(
            (mac_of(tuple.remote_ip), tuple.remote_ip, tuple.remote_port),
            (ENGINE_MAC, SERVER, tuple.local_port),
            s,
            expects.wrapping_add(s.seq),
            next.wrapping_add(s.ack),
        );
        self.inject(frame);
    }

    fn run(&mut self, op: Op) {
        if trace() {
            eprintln!("{:?} op {op:?}", self.p.now);
        }
        match op {
            Op::Raw { fix, mut frame } => {
                if fix {
                    fix_checksums(&mut frame);
                }
                self.inject(frame);
            }
            Op::Segment(s) => self.segment(&s),
            Op::Arp { op, sender_mac, sender_ip, target, flags } => {
                let mut mac = [2, 0, 0, 0, 0, sender_mac];
                if flags & 4 != 0 {
                    mac[0] |= 1;
                }
                let ip = Ipv4Addr::new(198, if flags & 2 != 0 { 19 } else { 18 }, 0, sender_ip);
                let target_ip = if flags & 1 != 0 { SERVER } else { Ipv4Addr::new(198, 18, 0, target) };
                let dst = if flags & 8 != 0 { [0xff; 6] } else { ENGINE_MAC };
                self.inject(arp_frame(dst, op, (mac, ip), ([0; 6], target_ip)));
            }
            Op::Ip { proto, frag, payload } => {
                let mut f = ipv4_frame((CLIENT_MAC, CLIENT), (ENGINE_MAC, SERVER), proto, frag, payload.len());
                f[34..].copy_from_slice(&payload);
                fix_checksums(&mut f);
                self.inject(f);
            }
            Op::Step { long, amount } => {
                // In steps of at most 200 ms: a longer one is a silence of the peers (`Silent`).
                let mut ms = (u64::from(amount) * if long { 100 } else { 1 }).max(1);
                while ms > 0 {
                    let d = ms.min(200);
                    self.step(Duration::from_millis(d));
                    ms -= d;
                }
            }
            Op::Silent { long, amount } => {
                let d = Duration::from_millis(u64::from(amount) * if long { 100 } else { 1 });
                self.silent += d;
                self.p.now += d;
                self.p.engine_poll();
                self.track();
            }
            Op::Send { data } => {
                let s = self.p.sock(self.live_handle);
                if s.can_send() {
                    let n = s.send_slice(&data).unwrap_or(0);
                    self.sent.extend_from_slice(&data[..n]);
                }
                self.step(Duration::from_millis(1));
            }
            Op::Client { action } => {
                match action % 8 {
                    0 => {
                        self.p.sock(self.live_handle).close();
                        self.live_disturbed = true;
                    }
                    1 => {
                        self.p.sock(self.live_handle).abort();
                        self.live_disturbed = true;
                    }
                    a @ 2..=4 => {
                        if self.next_port < FRESH_PORT {
                            let h = self.p.connect_with([7, 80, 9][usize::from(a - 2)], self.next_port, CLIENT_BUFFER);
                            self.next_port += 1;
                            self.others.push(h);
                        }
                    }
                    5 => {
                        if let Some(&h) = self.others.last() {
                            let s = self.p.sock(h);
                            if s.can_send() {
                                let _ = s.send_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                            }
                        }
                    }
                    6 => {
                        if let Some(&h) = self.others.last() {
                            self.p.sock(h).close();
                        }
                    }
                    _ => {
                        // An outgoing connection of the engine's own, to a peer the input plays.
                        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 10 + (action >> 3) % 4), 8000);
                        let _ = self.p.engine.connect(remote, Session::Echo(Echo::new()));
                        self.p.engine_poll();
                        self.track();
                    }
                }
                self.step(Duration::from_millis(1));
            }
        }
        self.check();
    }

    /// The engine's counters agree with each other and with its connections.
    fn check(&mut self) {
        let e = &mut self.p.engine;
        let s = e.stats();
        assert!(s.free_slots <= s.slots, "{s:?}");
        assert!(s.open <= MAX_CONNECTIONS, "{s:?}");
        let conns = e.connections(self.p.now, usize::MAX);
        assert_eq!(s.open, conns.len(), "stats().open against the connections: {s:?} {conns:?}");
        assert_eq!(e.memory().slots, s.slots);
        for l in e.listeners() {
            let st = l.stats;
            let half_open = conns.iter().filter(|c| c.kind == "half-open" && c.listener == Some(l.port)).count();
            let queued = conns.iter().filter(|c| c.kind == "queued" && c.listener == Some(l.port)).count();
            assert_eq!((st.half_open, st.queued), (half_open, queued), "listener {}: {st:?}", l.port);
            assert!(st.queued <= st.limit, "listener {}: {st:?}", l.port);
            assert!(st.half_open <= SYN_BACKLOG, "listener {}: {st:?}", l.port);
            if l.policy.counts_half_open() {
                assert!(st.half_open + st.queued <= st.limit.max(1), "listener {}: {st:?}", l.port);
            }
        }
        assert!(e.pending_timers() <= 2 * s.slots + 8, "{} timers, {s:?}", e.pending_timers());
        assert!(e.neighbor_waiters() <= s.slots, "{} neighbour waiters, {s:?}", e.neighbor_waiters());
        let tw = e.time_wait_stats();
        assert!(tw.live <= MAX_TIME_WAIT, "{tw:?}");
    }

    /// The live connection echoed everything sent on it, and still does.
    fn check_live(&mut self) {
        if self.live_disturbed || self.silent >= Duration::from_micros(TCP_TIMEOUT.as_micros() as u64 / 2) {
            return;
        }
        for _ in 0..600 {
            if self.got.len() >= self.sent.len() {
                break;
            }
            self.step(Duration::from_millis(5));
        }
        assert_eq!(self.got, self.sent, "the live connection's echo");
        let state = self.p.sock(self.live_handle).state();
        assert_eq!(state, tcp::State::Established, "the live connection");
        let mark = b"still there";
        let n = self.p.sock(self.live_handle).send_slice(mark).unwrap_or(0);
        self.sent.extend_from_slice(&mark[..n]);
        for _ in 0..600 {
            if self.got.len() >= self.sent.len() {
                break;
            }
            self.step(Duration::from_millis(5));
        }
        assert_eq!(self.got, self.sent, "the live connection's echo after the input");
    }

    /// A new connection gets its echo, unless the engine refused it for want of room (the input
    /// used up the connections or the echo listener's queue), which it counts.
    fn check_fresh(&mut self) {
        let syn = flow::test_syn_frame(CLIENT, FRESH_PORT, SERVER, 7);
        if self.p.engine.classify(&syn) != Verdict::Listener {
            return; // the input left this 4-tuple in use or in TIME_WAIT
        }
        let refusals = |e: &engine::Engine| {
            let l = e.listener_stats(7).unwrap_or_default();
            e.stats().over_max_connections + l.refused + l.dropped
        };
        let refused_before = refusals(&self.p.engine);
        let h = self.p.connect_with(7, FRESH_PORT, CLIENT_BUFFER);
        let mut up = false;
        for _ in 0..300 {
            self.step(Duration::from_millis(5));
            if self.p.sock(h).may_send() {
                up = true;
                break;
            }
        }
        if !up {
            assert!(
                refusals(&self.p.engine) > refused_before,
                "a new connection's handshake failed, and the engine counted no refusal: {:?} {:?}",
                self.p.engine.stats(),
                self.p.engine.listener_stats(7)
            );
            return;
        }
        self.p.sock(h).send_slice(b"fresh").unwrap();
        let mut got = Vec::new();
        for _ in 0..300 {
            self.step(Duration::from_millis(5));
            self.p.recv_all(h, &mut got);
            if got.len() >= 5 {
                break;
            }
        }
        assert_eq!(got, b"fresh", "a new connection's echo");
    }
}

/// Whether to say what happens (`FRAMES_TRACE=1`, to read a crash).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FRAMES_TRACE").is_some())
}

/// A frame in a line, for the trace.
fn describe(f: &[u8]) -> String {
    match engine_segment(f) {
        Some((t, ack, next)) => {
            let flags = f.get(47).copied().unwrap_or(0);
            format!("TCP {t:?} flags {flags:#04x} ack {ack:?} next {next} len {}", f.len())
        }
        None => format!("{} bytes {:02x?}", f.len(), &f[..f.len().min(42)]),
    }
}

/// A TCP segment the engine sent: its 4-tuple (the engine's side), the ACK it carries, and the
/// sequence number past it.
fn engine_segment(f: &[u8]) -> Option<(FourTuple, Option<u32>, u32)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.src_addr() != SERVER || ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    let tuple =
        FourTuple { remote_ip: ip.dst_addr(), local_ip: SERVER, remote_port: t.dst_port(), local_port: t.src_port() };
    let len = t.payload().len() as u32 + u32::from(t.syn()) + u32::from(t.fin());
    let ack = t.ack().then(|| t.ack_number().0 as u32);
    Some((tuple, ack, (t.seq_number().0 as u32).wrapping_add(len)))
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let setup = inp.byte();
    let cfg = config(setup);
    let p = if setup & SETUP_OFFLOADED != 0 { Pair::offloaded(&cfg) } else { Pair::new(&cfg) };
    let live = FourTuple { remote_ip: CLIENT, local_ip: SERVER, remote_port: LIVE_PORT, local_port: 7 };
    let mut h = Harness {
        p,
        peers: Vec::new(),
        live,
        live_handle: SocketHandle::default(),
        live_disturbed: false,
        silent: Duration::ZERO,
        sent: Vec::new(),
        got: Vec::new(),
        others: Vec::new(),
        next_port: 47001,
    };
    h.live_handle = h.p.connect_with(7, LIVE_PORT, 4 * CLIENT_BUFFER);
    for _ in 0..20 {
        h.step(Duration::from_millis(1));
        if h.p.sock(h.live_handle).may_send() && !h.peers.is_empty() {
            break;
        }
    }
    assert!(h.p.sock(h.live_handle).may_send(), "the live connection's handshake");
    let mut ops = 0;
    while let Some(op) = Op::decode(&mut inp) {
        h.run(op);
        ops += 1;
        if ops == MAX_OPS {
            break;
        }
    }
    h.check_live();
    h.check_fresh();
    h.check();
});
