//! The engine against a plain smoltcp client over an in-memory link, on a virtual clock
//! ([`crate::testing::Pair`]), or against a second engine ([`Duo`]). The helpers are here; the
//! tests are grouped by what they check, one file each.

use std::net::Ipv4Addr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::*;
use crate::listener::{BacklogPolicy, OnFull};
use crate::phy::{MemoryDevice, MemoryLink};
use crate::pool::ARMED;
use crate::services::{HttpConfig, ServiceKind};
use crate::testing::*;

mod arp;
mod backlog;
mod buffer_pages;
mod handshake;
mod hostile;
mod lossy;
mod outgoing;
mod serving;
mod syncookies;
mod time_wait_table;
mod timeouts;

fn hold_config(backlog: usize, policy: BacklogPolicy, on_full: OnFull) -> EngineConfig {
    let mut c = config();
    c.listeners = vec![ListenerSpec { port: 9000, service: ServiceKind::Hold, backlog, policy, on_full }];
    c
}

/// Connects one client after the other to the hold listener until one is refused; returns how
/// many got a completed handshake.
fn queued_before_refusal(p: &mut Pair, max: u16) -> usize {
    for i in 0..max {
        let h = p.connect(9000, 43000 + i);
        let done = p.run_until(2000, |p| matches!(p.sock(h).state(), tcp::State::Established | tcp::State::Closed));
        assert!(done, "client {i} neither connected nor was refused");
        if p.sock(h).state() == tcp::State::Closed {
            return i as usize;
        }
    }
    max as usize
}

/// Client side of a server-initiated close: an HTTP request with `Connection: close` makes the
/// engine close first, so its side ends in TIME_WAIT.
fn close_from_the_server(p: &mut Pair, local_port: u16) -> SocketHandle {
    let h = p.connect(80, local_port);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        p.sock(h).state() == tcp::State::CloseWait
    }));
    p.sock(h).close();
    h
}

/// Two engines back to back on a virtual clock: a load generator (198.18.0.1 and 7 more source
/// addresses) against an echo server (198.18.0.2).
struct Duo {
    now: Instant,
    server: Engine,
    sdev: MemoryDevice,
    client: Engine,
    cdev: MemoryDevice,
}

impl Duo {
    fn new(client_time_wait: std::time::Duration) -> Duo {
        Duo::with_announce(client_time_wait, true)
    }

    fn with_announce(client_time_wait: std::time::Duration, announce: bool) -> Duo {
        let MemoryLink { a: mut cdev, b: mut sdev } = MemoryLink::new();
        let now = Instant::from_millis(0);
        let server = Engine::new(&config(), &mut sdev, now).unwrap();
        let mut c = EngineConfig::new([0x02, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), 24);
        c.extra_addresses = (10..17).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
        c.tcp_rx_buffer = 4096;
        c.tcp_tx_buffer = 4096;
        c.random_seed = 3;
        c.time_wait = client_time_wait;
        let mut client = Engine::new(&c, &mut cdev, now).unwrap();
        if announce {
            client.announce_to(now, &mut cdev, SERVER);
        }
        Duo { now, server, sdev, client, cdev }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        for _ in 0..8 {
            self.cdev.refill();
            self.client.poll(self.now, &mut self.cdev);
            self.sdev.refill();
            self.server.poll(self.now, &mut self.sdev);
            if self.cdev.pending() == 0 && self.sdev.pending() == 0 {
                break;
            }
        }
    }

    /// Advances the clock by `dt` and polls each engine once (frames cross one hop per tick).
    fn tick(&mut self, dt: Duration) {
        self.now += dt;
        self.cdev.refill();
        self.client.poll(self.now, &mut self.cdev);
        self.sdev.refill();
        self.server.poll(self.now, &mut self.sdev);
    }
}

fn load(size: usize, mode: crate::services::LoadMode) -> (crate::services::LoadSpec, Arc<crate::services::LoadStats>) {
    let stats = Arc::new(crate::services::LoadStats::default());
    (crate::services::LoadSpec { size, mode, stats: stats.clone() }, stats)
}

fn reclaim_config() -> EngineConfig {
    let mut c = config();
    c.buffer_idle = Some(std::time::Duration::from_secs(1));
    c
}

/// The slot of the one open connection, and its buffer pages resident now.
fn the_connection(p: &Pair) -> (usize, usize) {
    let id = *p.engine.flows.values().next().expect("a connection") as usize;
    let slot = &p.engine.slots[id];
    assert_ne!(slot.buf, 0, "buffers on normal pages, reclaim on");
    (id, crate::mem::resident_pages(slot.buf, p.engine.buf_stride))
}

/// Sends `data` on `h` and waits for all of it to come back (the echo service).
fn echo(p: &mut Pair, h: SocketHandle, data: &[u8]) -> Vec<u8> {
    let (mut sent, mut got) = (0, Vec::new());
    let ok = p.run_until(10_000, |p| {
        let s = p.sock(h);
        if sent < data.len() && s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        p.recv_all(h, &mut got);
        got.len() >= data.len()
    });
    assert!(ok, "echoed {} of {} bytes", got.len(), data.len());
    got
}

/// An engine with a 20 s TCP timeout whose client, on `local_port`, sent one more request after an
/// echo and vanished: the engine waits for the ACK of that echo, which never comes.
fn vanished_client(local_port: u16) -> Pair {
    let mut c = config();
    c.tcp_timeout = std::time::Duration::from_secs(20);
    let mut p = Pair::new(&c);
    let h = p.connect(7, local_port);
    echo(&mut p, h, b"hello");
    p.sock(h).send_slice(b"are you there").unwrap();
    p.step();
    p
}

/// Polls the engine alone every 10 ms for up to 30 s, calling `each` with the turn first; returns
/// how long until it held no connection, if it came to that.
fn time_to_close(p: &mut Pair, mut each: impl FnMut(&mut Pair, u32)) -> Option<Duration> {
    let start = p.now;
    for i in 0..3000u32 {
        p.now += Duration::from_millis(10);
        each(p, i);
        p.edev.refill();
        p.engine.poll(p.now, &mut p.edev);
        if p.engine.stats().open == 0 {
            return Some(p.now - start);
        }
    }
    None
}

/// Injects `f`, steps, and reads each frame the engine sent with `read` (its Ethernet frame and the
/// IPv4 packet inside).
fn answers<T>(
    p: &mut Pair,
    f: Vec<u8>,
    read: impl Fn(&smoltcp::wire::EthernetFrame<&[u8]>, &smoltcp::wire::Ipv4Packet<&[u8]>) -> T,
) -> Vec<T> {
    p.edev.inject(f);
    p.step();
    sent_frames(p)
        .iter()
        .map(|f| {
            let eth = smoltcp::wire::EthernetFrame::new_checked(&f[..]).unwrap();
            let ip = smoltcp::wire::Ipv4Packet::new_checked(eth.payload()).unwrap();
            read(&eth, &ip)
        })
        .collect()
}

/// What the engine's echo sends back at once for `len` bytes a client sends in one flight (the
/// client without congestion control, so all of it arrives together): the server's first flight,
/// as the client finds it in its next poll, before it acknowledges any of it. Then the rest is
/// echoed and the client closes.
fn first_echo_flight(p: &mut Pair, local_port: u16, len: usize) -> usize {
    let h = p.connect(7, local_port);
    p.sock(h).set_congestion_control(tcp::CongestionControl::None);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    let data = vec![0x5a; len];
    assert_eq!(p.sock(h).send_slice(&data).unwrap(), len);
    p.step(); // the client sends it all; the engine takes it in and echoes what its window allows
    p.now += Duration::from_millis(1);
    p.cdev.refill();
    p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
    let first = p.sock(h).recv_queue();
    let mut got = Vec::new();
    assert!(p.run_until(10_000, |p| {
        p.recv_all(h, &mut got);
        got.len() == len
    }));
    p.sock(h).close();
    assert!(p.run_until(10_000, |p| p.engine.stats().open == 0), "the connection on {local_port} ended");
    p.sockets.remove(h);
    first
}
