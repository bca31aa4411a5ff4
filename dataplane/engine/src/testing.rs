//! A test harness for the engine and the layers above it: the engine on one end of an in-memory
//! link, a plain smoltcp client on the other, on a virtual clock ([`Pair`]), with the frames and
//! generators the tests share. Built for the engine's own tests and, with the `testing` feature,
//! for the crates above (the runtime's bridge tests).

use std::net::Ipv4Addr;
use std::sync::Arc;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::listener::{BacklogPolicy, OnFull};
use crate::phy::{BurstDevice, MemoryDevice, MemoryLink};
use crate::services::{HttpConfig, ServiceKind};
use crate::{Engine, EngineConfig, ListenerSpec, Service};

/// The engine's address.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's address.
pub const CLIENT: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);

/// A listener spec with the `exact` policy and `refuse` when full.
pub fn listener(port: u16, service: ServiceKind, backlog: usize) -> ListenerSpec {
    ListenerSpec { port, service, backlog, policy: BacklogPolicy::Exact, on_full: OnFull::Refuse }
}

/// The engine of most tests: echo on 7, HTTP on 80, 16 KiB buffers.
pub fn config() -> EngineConfig {
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

/// Work of the layer above, run before each engine poll.
pub type BeforePoll<S> = Box<dyn FnMut(&mut Engine<S>, Instant)>;

/// The engine on one end, a smoltcp client on the other.
pub struct Pair<S: Service = ServiceKind> {
    pub now: Instant,
    pub engine: Engine<S>,
    pub edev: MemoryDevice,
    pub client: Interface,
    pub cdev: MemoryDevice,
    pub sockets: SocketSet<'static>,
    /// Runs before each engine poll: the layer above's own work (the runtime's bridge commands).
    pub before_poll: Option<BeforePoll<S>>,
}

impl<S: Service + Clone> Pair<S> {
    pub fn new(cfg: &EngineConfig<S>) -> Pair<S> {
        Pair::over(cfg, MemoryLink::new())
    }

    /// Both ends leave their IPv4 and TCP checksums to a NIC that is not there: frames cross with
    /// those fields zero, as virtio hands a guest a local sender's segments (intact, unchecksummed).
    pub fn offloaded(cfg: &EngineConfig<S>) -> Pair<S> {
        let mut link = MemoryLink::new();
        link.a.offload_checksums();
        link.b.offload_checksums();
        Pair::over(cfg, link)
    }

    pub fn over(cfg: &EngineConfig<S>, link: MemoryLink) -> Pair<S> {
        let MemoryLink { a: mut cdev, b: mut edev } = link;
        let now = Instant::from_millis(0);
        let engine = Engine::new(cfg, &mut edev, now).unwrap();
        let mut c = Config::new(HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0, 0, 1])));
        c.random_seed = 99;
        let mut client = Interface::new(c, &mut cdev, now);
        client.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(CLIENT), 24)).unwrap());
        Pair { now, engine, edev, client, cdev, sockets: SocketSet::new(Vec::new()), before_poll: None }
    }

    pub fn step(&mut self) {
        self.step_by(Duration::from_millis(1));
    }

    pub fn step_by(&mut self, d: Duration) {
        self.now += d;
        self.cdev.refill();
        self.client.poll(self.now, &mut self.cdev, &mut self.sockets);
        self.engine_poll();
    }

    /// The client's half of a step: it takes what the engine sent and sends what it has.
    pub fn client_poll(&mut self) {
        self.now += Duration::from_millis(1);
        self.cdev.refill();
        self.client.poll(self.now, &mut self.cdev, &mut self.sockets);
    }

    /// The engine's half of a step: it takes everything waiting for it, a burst at a time.
    pub fn engine_poll(&mut self) {
        while self.edev.pending() > 0 {
            self.edev.refill();
            self.poll_once();
        }
        self.poll_once();
    }

    /// One engine poll at `now`, after the layer above's work ([`Pair::before_poll`]).
    pub fn poll_once(&mut self) -> Option<Instant> {
        if let Some(hook) = &mut self.before_poll {
            hook(&mut self.engine, self.now);
        }
        self.engine.poll(self.now, &mut self.edev)
    }

    pub fn connect(&mut self, port: u16, local_port: u16) -> SocketHandle {
        self.connect_with(port, local_port, 65536)
    }

    pub fn connect_with(&mut self, port: u16, local_port: u16, buffer: usize) -> SocketHandle {
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; buffer]), tcp::SocketBuffer::new(vec![0; buffer]));
        s.connect(self.client.context(), (IpAddress::Ipv4(SERVER), port), local_port).unwrap();
        self.sockets.add(s)
    }

    pub fn sock(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Appends everything `h` has received to `got`.
    pub fn recv_all(&mut self, h: SocketHandle, got: &mut Vec<u8>) {
        let s = self.sock(h);
        while s.can_recv() {
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
    }

    pub fn run_until(&mut self, steps: usize, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        for _ in 0..steps {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

/// A small deterministic generator for property tests (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Frames the engine sent, taken off the wire (as the peer's end sees them).
pub fn sent_frames<S: Service>(p: &mut Pair<S>) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| p.cdev.take_inbound()).collect()
}

/// Polls the engine alone (the client hears nothing), every `step` for at most `within`, until
/// it sends a frame; returns when, and the last frame it sent then.
pub fn engine_alone_until_it_sends<S: Service + Clone>(
    p: &mut Pair<S>,
    step: Duration,
    within: Duration,
) -> Option<(Instant, Vec<u8>)> {
    let until = p.now + within;
    while p.now < until {
        p.now += step;
        p.poll_once();
        if let Some(f) = sent_frames(p).pop() {
            return Some((p.now, f));
        }
    }
    None
}
