//! The TCP engine of one core.
//!
//! An [`Engine`] owns a smoltcp [`Interface`] (ARP, ICMP echo, IPv4, TCP), its sockets, the
//! listeners of the built-in services and the sessions running on accepted connections. It is
//! pure logic over a [`BurstDevice`] and a clock: every entry point takes `now` and
//! [`Engine::poll`] returns the next deadline; it never reads a clock, sleeps or touches DPDK.
//!
//! Call order, once per loop turn: `device.refill()`, then [`Engine::poll`], then
//! `device.flush()` (the per-core loop in [`crate::lcore`] does exactly this).
//!
//! Listeners keep `backlog` sockets in LISTEN and re-arm a fresh one right after each frame that
//! takes one out of LISTEN (DESIGN fact 6), so a burst of SYNs finds a listening socket for each.
//! A SYN for a port with no listener is refused with an RST by smoltcp. What this engine does not do
//! yet: its own 4-tuple demux (smoltcp still scans every socket per frame, DESIGN fact 5), the
//! accept-queue limit and `on_full` policies of SEMANTICS B1-B5/L4, and the compact TIME_WAIT
//! table of T1-T2 (smoltcp keeps the whole socket for its fixed 10 s).

mod stream;
#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::phy::BurstDevice;
use crate::services::{Progress, ServiceKind, Session};
use stream::TcpStream;

/// The engine clock's instant type (microseconds since an origin the caller picks).
pub use smoltcp::time::Instant as EngineInstant;

/// A listener of a built-in service.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub port: u16,
    pub service: ServiceKind,
    /// Sockets kept in LISTEN: how many handshakes may be in progress at once.
    pub backlog: usize,
}

/// Everything an engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub listeners: Vec<ListenerSpec>,
    /// Receive and send buffer of each connection, in bytes.
    pub tcp_rx_buffer: usize,
    pub tcp_tx_buffer: usize,
    /// Seed for ISNs and ephemeral ports: take it from a real random source.
    pub random_seed: u64,
}

/// Why an engine could not be built from its config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("address {0} is not a usable unicast IPv4 address")]
    BadAddress(Ipv4Addr),
    #[error("prefix length {0} is out of range (1..=32)")]
    BadPrefix(u8),
    #[error("MAC address {0} is not unicast")]
    BadMac(String),
    #[error("gateway {gateway} is not inside {address}/{prefix_len}")]
    GatewayOffLink { gateway: Ipv4Addr, address: Ipv4Addr, prefix_len: u8 },
    #[error("two listeners on TCP port {0}")]
    DuplicatePort(u16),
    #[error("listener on TCP port {0}: port 0 cannot be listened on")]
    ZeroPort(u16),
    #[error("listener on TCP port {port}: backlog must be at least 1")]
    ZeroBacklog { port: u16 },
    #[error("TCP buffer size {0} is out of range (1024..=16777216)")]
    BadBuffer(usize),
}

/// Counters of an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Connections whose handshake completed.
    pub accepted: u64,
    /// Connections that ended (closed or reset) and were freed.
    pub closed: u64,
    /// Connections open now.
    pub open: u64,
}

struct Listener {
    port: u16,
    service: ServiceKind,
    /// Sockets in LISTEN (and those that just left it, until promoted).
    listening: Vec<SocketHandle>,
}

struct Conn {
    handle: SocketHandle,
    session: Session,
    /// Our FIN is queued; the session is done.
    closing: bool,
    /// The handshake has completed (the session may run).
    established: bool,
}

/// The TCP engine of one core. See the module documentation for the call order.
pub struct Engine {
    iface: Interface,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    conns: Vec<Conn>,
    rx_buffer: usize,
    tx_buffer: usize,
    stats: EngineStats,
}

impl Engine {
    /// Builds an engine; `now` is the engine clock's start.
    pub fn new<D: BurstDevice + ?Sized>(
        cfg: &EngineConfig,
        device: &mut D,
        now: Instant,
    ) -> Result<Engine, EngineError> {
        validate(cfg)?;
        let mut icfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(cfg.mac)));
        icfg.random_seed = cfg.random_seed;
        let mut iface = Interface::new(icfg, device, now);
        let addr: Ipv4Address = cfg.address;
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::Ipv4(Ipv4Cidr::new(addr, cfg.prefix_len))).expect("one address fits");
        });
        if let Some(gw) = cfg.gateway {
            iface.routes_mut().add_default_ipv4_route(gw).expect("one route fits");
        }
        let mut engine = Engine {
            iface,
            sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            conns: Vec::new(),
            rx_buffer: cfg.tcp_rx_buffer,
            tx_buffer: cfg.tcp_tx_buffer,
            stats: EngineStats::default(),
        };
        for spec in &cfg.listeners {
            let mut l = Listener { port: spec.port, service: spec.service.clone(), listening: Vec::new() };
            for _ in 0..spec.backlog {
                let h = engine.listen_socket(spec.port);
                l.listening.push(h);
            }
            tracing::info!(port = spec.port, service = spec.service.name(), backlog = spec.backlog, "listening");
            engine.listeners.push(l);
        }
        Ok(engine)
    }

    fn listen_socket(&mut self, port: u16) -> SocketHandle {
        let rx = tcp::SocketBuffer::new(vec![0; self.rx_buffer]);
        let tx = tcp::SocketBuffer::new(vec![0; self.tx_buffer]);
        let mut s = tcp::Socket::new(rx, tx);
        s.set_nagle_enabled(false); // services write whole messages
        s.listen(port).expect("port validated non-zero; socket fresh");
        self.sockets.add(s)
    }

    /// Processes the frames the device holds, runs the services, and queues what they send.
    /// Returns when the engine next needs a poll without new frames (a timer), if ever.
    ///
    /// Frames are taken one at a time (`poll_ingress_single`) so that a listener is re-armed right
    /// after a SYN takes one of its LISTEN sockets, even when many SYNs arrive in one burst.
    pub fn poll<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D) -> Option<Instant> {
        self.iface.poll_maintenance(now);
        loop {
            match self.iface.poll_ingress_single(now, device, &mut self.sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => self.promote(),
            }
        }
        self.drive();
        while self.iface.poll_egress(now, device, &mut self.sockets) != PollResult::None {}
        self.iface.poll_at(now, &self.sockets)
    }

    /// Moves sockets that left LISTEN to the connection list and re-arms their listeners.
    fn promote(&mut self) {
        for li in 0..self.listeners.len() {
            let mut i = 0;
            while i < self.listeners[li].listening.len() {
                let h = self.listeners[li].listening[i];
                if self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen {
                    i += 1;
                    continue;
                }
                let port = self.listeners[li].port;
                let fresh = self.listen_socket(port);
                let l = &mut self.listeners[li];
                l.listening[i] = fresh;
                let session = l.service.session();
                self.conns.push(Conn { handle: h, session, closing: false, established: false });
                self.stats.open += 1;
                i += 1;
            }
        }
    }

    /// Runs every session once; frees ended connections.
    fn drive(&mut self) {
        let mut i = 0;
        while i < self.conns.len() {
            let c = &mut self.conns[i];
            let sock = self.sockets.get_mut::<tcp::Socket>(c.handle);
            match sock.state() {
                tcp::State::Closed => {
                    let c = self.conns.swap_remove(i);
                    self.sockets.remove(c.handle);
                    self.stats.closed += 1;
                    self.stats.open -= 1;
                    continue;
                }
                tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            if !c.established {
                c.established = true;
                self.stats.accepted += 1;
            }
            if !c.closing {
                let mut stream = TcpStream(sock);
                if c.session.drive(&mut stream) == Progress::Close {
                    stream.0.close();
                    c.closing = true;
                }
            }
            i += 1;
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        match self.iface.hardware_addr() {
            HardwareAddress::Ethernet(e) => e.0,
        }
    }
}

fn validate(cfg: &EngineConfig) -> Result<(), EngineError> {
    let a = cfg.address;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err(EngineError::BadAddress(a));
    }
    if !(1..=32).contains(&cfg.prefix_len) {
        return Err(EngineError::BadPrefix(cfg.prefix_len));
    }
    if cfg.mac[0] & 1 != 0 || cfg.mac == [0; 6] {
        return Err(EngineError::BadMac(crate::dpdk::format_mac(&cfg.mac)));
    }
    if let Some(gw) = cfg.gateway {
        let mask = u32::MAX.checked_shl(32 - u32::from(cfg.prefix_len)).unwrap_or(0);
        if u32::from(gw) & mask != u32::from(a) & mask {
            return Err(EngineError::GatewayOffLink { gateway: gw, address: a, prefix_len: cfg.prefix_len });
        }
    }
    for b in [cfg.tcp_rx_buffer, cfg.tcp_tx_buffer] {
        if !(1024..=16 << 20).contains(&b) {
            return Err(EngineError::BadBuffer(b));
        }
    }
    let mut ports = std::collections::HashSet::new();
    for l in &cfg.listeners {
        if l.port == 0 {
            return Err(EngineError::ZeroPort(l.port));
        }
        if l.backlog == 0 {
            return Err(EngineError::ZeroBacklog { port: l.port });
        }
        if !ports.insert(l.port) {
            return Err(EngineError::DuplicatePort(l.port));
        }
    }
    Ok(())
}
