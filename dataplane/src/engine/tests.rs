//! The engine against a plain smoltcp client over an in-memory link, on a virtual clock.

use std::net::Ipv4Addr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use super::*;
use crate::phy::{MemoryDevice, MemoryLink};
use crate::services::{HttpConfig, ServiceKind};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);

fn listener(port: u16, service: ServiceKind, backlog: usize) -> ListenerSpec {
    ListenerSpec { port, service, backlog, policy: BacklogPolicy::Exact, on_full: OnFull::Refuse }
}

fn config() -> EngineConfig {
    let mut c = EngineConfig::new([0x02, 0, 0, 0, 0, 2], SERVER, 24);
    c.listeners = vec![
        listener(7, ServiceKind::Echo, 64),
        listener(80, ServiceKind::Http(Arc::new(HttpConfig::new(b"hello\n", "text/plain"))), 64),
    ];
    c.tcp_rx_buffer = 16384;
    c.tcp_tx_buffer = 16384;
    c.random_seed = 7;
    c
}

/// The engine on one end, a smoltcp client on the other.
struct Pair {
    now: Instant,
    engine: Engine,
    edev: MemoryDevice,
    client: Interface,
    cdev: MemoryDevice,
    sockets: SocketSet<'static>,
}

impl Pair {
    fn new(cfg: &EngineConfig) -> Pair {
        let MemoryLink { a: mut cdev, b: mut edev } = MemoryLink::new();
        let now = Instant::from_millis(0);
        let engine = Engine::new(cfg, &mut edev, now).unwrap();
        let mut c = Config::new(HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1])));
        c.random_seed = 99;
        let mut client = Interface::new(c, &mut cdev, now);
        client.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(CLIENT), 24)).unwrap());
        Pair { now, engine, edev, client, cdev, sockets: SocketSet::new(Vec::new()) }
    }

    fn step(&mut self) {
        self.now += Duration::from_millis(1);
        self.cdev.refill();
        self.client.poll(self.now, &mut self.cdev, &mut self.sockets);
        while self.edev.pending() > 0 {
            self.edev.refill();
            self.engine.poll(self.now, &mut self.edev);
        }
        self.engine.poll(self.now, &mut self.edev);
    }

    fn connect(&mut self, port: u16, local_port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 65536]), tcp::SocketBuffer::new(vec![0; 65536]));
        s.connect(self.client.context(), (IpAddress::Ipv4(SERVER), port), local_port).unwrap();
        self.sockets.add(s)
    }

    fn sock(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Appends everything `h` has received to `got`.
    fn recv_all(&mut self, h: SocketHandle, got: &mut Vec<u8>) {
        let s = self.sock(h);
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
    }

    fn run_until(&mut self, steps: usize, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        for _ in 0..steps {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

#[test]
fn echo_round_trip_of_one_mib_has_equal_sha256() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40000);
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (mut sent, mut got) = (0usize, Vec::new());
    let ok = p.run_until(100_000, |p| {
        let s = p.sock(h);
        if s.can_send() && sent < data.len() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        p.recv_all(h, &mut got);
        got.len() == data.len()
    });
    assert!(ok, "echoed {} of {} bytes", got.len(), data.len());
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    assert_eq!(p.engine.stats().established, 1);
}

#[test]
fn echo_closes_after_peer_fin_and_frees_the_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(7, 40001);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    p.sock(h).send_slice(b"ping").unwrap();
    p.sock(h).close();
    let mut got = Vec::new();
    assert!(p.run_until(1000, |p| {
        p.recv_all(h, &mut got);
        matches!(p.sock(h).state(), tcp::State::TimeWait | tcp::State::Closed)
    }));
    assert_eq!(got, b"ping");
    // The engine frees the socket once smoltcp reports it closed (LAST_ACK -> CLOSED).
    assert!(p.run_until(1000, |p| p.engine.stats().open == 0));
    assert_eq!(p.engine.stats().closed, 1);
}

#[test]
fn http_keep_alive_serves_many_requests_on_one_connection() {
    let mut p = Pair::new(&config());
    let h = p.connect(80, 40002);
    assert!(p.run_until(100, |p| p.sock(h).may_send()));
    let mut got = Vec::new();
    for i in 0..200 {
        p.sock(h).send_slice(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let want = (i + 1) * b"hello\n".len();
        assert!(p.run_until(1000, |p| {
            p.recv_all(h, &mut got);
            got.windows(6).filter(|w| w == b"hello\n").count() * 6 == want
        }));
    }
    assert_eq!(p.engine.stats().established, 1);
    assert!(p.sock(h).is_active());
}

#[test]
fn syn_to_a_closed_port_is_refused() {
    let mut p = Pair::new(&config());
    let h = p.connect(9, 40003);
    assert!(p.run_until(100, |p| p.sock(h).state() == tcp::State::Closed), "RST closes the client at once");
    assert_eq!(p.engine.stats().established, 0);
}

#[test]
fn a_burst_of_syns_beyond_the_backlog_is_all_served() {
    // 20 clients connect in the same instant; the listener keeps only a couple of LISTEN sockets
    // armed and re-arms after each SYN (DESIGN fact 6), so none is refused.
    let mut p = Pair::new(&config());
    let handles: Vec<_> = (0..20).map(|i| p.connect(7, 41000 + i)).collect();
    let mut done = vec![false; handles.len()];
    let ok = p.run_until(5_000, |p| {
        for (i, h) in handles.iter().enumerate() {
            let s = p.sock(*h);
            assert_ne!(s.state(), tcp::State::Closed, "client {i} was refused");
            if s.may_send() && s.send_queue() == 0 && s.recv_queue() == 0 && !done[i] {
                let _ = s.send_slice(b"x");
            }
            if s.can_recv() {
                let mut b = [0u8; 16];
                if s.recv_slice(&mut b).unwrap() > 0 {
                    done[i] = true;
                }
            }
        }
        done.iter().all(|d| *d)
    });
    assert!(ok, "served {} of 20", done.iter().filter(|d| **d).count());
    assert_eq!(p.engine.stats().established, 20);
}

#[test]
fn config_errors_name_what_is_wrong() {
    let mut link = MemoryLink::new();
    let now = Instant::from_millis(0);
    let mut c = config();
    c.listeners.push(listener(7, ServiceKind::Echo, 1));
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::DuplicatePort(7)));
    let mut c = config();
    c.gateway = Some(Ipv4Addr::new(198, 19, 0, 1));
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::GatewayOffLink { .. })));
    let mut c = config();
    c.prefix_len = 33;
    assert_eq!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadPrefix(33)));
    let mut c = config();
    c.time_wait = std::time::Duration::from_secs(301);
    assert_eq!(
        Engine::new(&c, &mut link.b, now).err(),
        Some(EngineError::TimeWaitOutOfRange(std::time::Duration::from_secs(301)))
    );
    c.time_wait = std::time::Duration::from_secs(300);
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 300 s is the upper edge");
    c.time_wait = std::time::Duration::ZERO;
    assert!(Engine::new(&c, &mut link.b, now).is_ok(), "T1: 0 s is the lower edge");
    let mut c = config();
    c.mac = [1, 0, 0, 0, 0, 1];
    assert!(matches!(Engine::new(&c, &mut link.b, now).err(), Some(EngineError::BadMac(_))));
}
