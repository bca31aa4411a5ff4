//! The TCP engine of one core.
//!
//! An [`Engine`] owns one smoltcp [`Interface`] (ICMP echo, IPv4, TCP), its neighbours and ARP,
//! its connections, its listeners, its TIME_WAIT table and the sessions of the built-in services.
//! It is pure logic over a [`BurstDevice`] and a clock: every entry point takes `now`,
//! [`Engine::poll`] returns the next deadline, and nothing in it reads a clock, sleeps or touches
//! DPDK.
//!
//! Call order, once per loop turn: `device.refill()`, then [`Engine::poll`], then
//! `device.flush()` (the runtime's per-core loop does exactly this).
//!
//! # How the crate is put together
//! What runs on the connections is the layer above's: the engine is generic over a [`Service`]
//! (per listener) and its [`Session`] (per connection), and names connections and listeners by
//! [`ConnId`] and [`ListenerId`]. The built-in services ([`services`]) are the default.
//! - `upper`: the [`Service`], [`Session`] and [`Stream`] traits, [`Accept`] and [`End`].
//! - `config`: [`EngineConfig`], [`ListenerSpec`] and their validation ([`EngineError`]).
//! - `demux` and `ingress`: each frame's decision ([`Demux`], [`Verdict`]) and its handling.
//! - [`flow`]: header parsing, the 4-tuple and the engine's own TCP frame writer.
//! - `slot` and `pool`: connection slots, pooled with their sockets and buffers, and the
//!   listeners' rings of armed LISTEN sockets.
//! - `open`: active open ([`ConnectError`]); `service`: the service phase, step by step.
//! - [`listener`]: backlog policies and listener counters; [`time_wait`]: the TIME_WAIT table;
//!   [`timer`]: the timer wheel; [`neighbor`]: ARP and the neighbour table; [`reclaim`]: giving
//!   idle connections' buffer pages back; [`mem`]: the arenas buffers and sockets come from.
//! - [`phy`]: the [`phy::BurstDevice`] trait the engine runs over, and an in-memory device.
//! - `introspect`: counters, listeners, connections and memory as operators see them.
//! - [`tcp`]: building blocks of the engine's own TCP (RTT estimator, SACK scoreboard).
//! - `testing` (in tests, and with the `testing` feature): the engine-and-client pair on a virtual
//!   clock that the crates above test with.
//!
//! # Demux: O(1) per frame, whatever the number of connections
//! smoltcp scans every socket of a set for every frame (DESIGN fact 5). The engine never hands it
//! more than one socket. Each connection lives in a slot with a one-socket `SocketSet`. For each
//! frame the engine reads the headers itself ([`flow::classify`]) and decides ([`Demux`]):
//! - **Flow**: the 4-tuple is in the flow table → `poll_ingress_single` on that connection's set.
//!   A retransmitted SYN reaches its own half-open connection this way.
//! - **TIME_WAIT**: the 4-tuple is in the TIME_WAIT table → re-ACK a FIN, accept a new
//!   incarnation's SYN, or ignore ([`time_wait`]).
//! - **Listener**: a SYN for a port with a listener that has room → one of the listener's armed
//!   LISTEN sockets takes it, and the flow table learns the 4-tuple. The ring is re-armed from the
//!   pool at once (DESIGN fact 6).
//! - **Refuse**: a full listener with `on_full = refuse`, or no connection and no listener →
//!   `poll_ingress_single` with an empty set, on which smoltcp answers with an RST (L4).
//! - **Drop**: a full listener with `on_full = drop` → the SYN is dropped unseen (B3).
//!
//! ICMP goes to smoltcp with the empty set too. smoltcp runs on IP medium: the engine answers
//! ARP and writes every Ethernet header itself ([`neighbor`]), so no packet pays for a neighbour
//! lookup.
//!
//! # Egress only where there is work
//! A connection is polled for egress, and its session run, only when something happened to it:
//! - a frame arrived for it;
//! - its timer fired (retransmission, delayed ACK, ...: `poll_at` of its one-socket set,
//!   kept in a [`timer::TimerWheel`]; after a segment that carried everything queued, the engine
//!   sets it smoltcp's smallest retransmission timeout after its data went in flight, without
//!   asking, see `Slot::sent_all`);
//! - an ARP answer came while it waited for a neighbour.
//!
//! No loop turn walks all connections.
//!
//! # Sockets and buffers are pooled
//! A slot whose connection ended keeps its socket and buffers; `listen()` re-arms it silently
//! (no RST), so a handshake allocates nothing once the pool is warm.
//!
//! # Listeners and backlog
//! See [`listener`] for the policies (`bsd`, `solaris`, `exact`, `linux`), the half-open and queued
//! counts, and `on_full`.

mod config;
mod demux;
pub mod flow;
mod ingress;
mod introspect;
pub mod listener;
pub mod mem;
pub mod neighbor;
mod open;
mod own;
pub mod phy;
mod pool;
pub mod reclaim;
mod service;
pub mod services;
mod slot;
mod stream;
mod syncookies;
pub mod tcp;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod time_wait;
pub mod timer;
mod upper;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Cidr};

pub use config::{
    EngineConfig, EngineError, ListenerSpec, SynCookies, DEFAULT_BUFFER_IDLE, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_TIME_WAIT, MAX_CONNECTIONS,
};
pub use demux::{Demux, Verdict};
use flow::FourTuple;
pub use introspect::{ConnectionInfo, EngineStats, ListenerInfo, MemoryStats};
use listener::Listener;
pub use listener::{BacklogPolicy, ListenError, ListenerStats, OnFull};
use mem::{BufferArena, StorageArena};
use neighbor::Ether;
pub use open::{ConnectError, EPHEMERAL};
use phy::BurstDevice;
pub use reclaim::ReclaimStats;
use slot::{Phase, Slot};
pub use time_wait::TimeWaitStats;
use time_wait::TimeWaitTable;
use timer::TimerWheel;
pub use upper::{Accept, ConnId, End, ListenerId, Progress, Service, Session, Stream};

/// The engine clock's instant type (microseconds since an origin the caller picks).
pub use smoltcp::time::Instant as EngineInstant;

/// Whether an outgoing 4-tuple's replies reach this engine's core.
pub type Affinity = Box<dyn Fn(&FourTuple) -> bool + Send>;

/// The TCP engine of one core, running `S` on its listeners (the built-in services by default).
/// See the crate documentation.
pub struct Engine<S: Service = services::ServiceKind> {
    iface: Interface,
    /// Our addresses: the first one, then the extra ones.
    addresses: Vec<Ipv4Addr>,
    /// Which of `addresses` the next outgoing connection uses.
    next_source: usize,
    /// The next ephemeral port to try.
    next_port: u16,
    /// Whether an outgoing 4-tuple is this engine's to use (its replies reach this core).
    affinity: Option<Affinity>,
    mac: [u8; 6],
    slots: Vec<Slot<S::Session>>,
    free: Vec<u32>,
    flows: HashMap<FourTuple, u32, foldhash::fast::RandomState>,
    listeners: Vec<Listener<S>>,
    by_port: HashMap<u16, usize, foldhash::fast::RandomState>,
    time_wait: TimeWaitTable,
    timers: TimerWheel,
    dirty: Vec<u32>,
    /// Timer entries that fired this turn (kept to reuse its allocation).
    fired: Vec<(u32, i64)>,
    neighbor_wait: Vec<u32>,
    /// An empty set: frames smoltcp handles without a socket (ARP, ICMP, RST for refusals).
    empty: SocketSet<'static>,
    rx_buffer: usize,
    tx_buffer: usize,
    max_backlog: usize,
    /// See [`EngineConfig::max_connections`].
    max_connections: usize,
    /// See [`EngineConfig::syn_backlog`].
    syn_backlog: usize,
    /// SYNs admitted so far (wrapping): the stamp of the next half-open connection.
    next_stamp: u32,
    tcp_timeout: smoltcp::time::Duration,
    stats: EngineStats,
    /// Our prefix mask and gateway, to tell on-link peers from routed ones.
    mask: u32,
    gateway: Option<Ipv4Addr>,
    neighbors: neighbor::Neighbors,
    /// Whether this engine answers ARP requests for its addresses ([`Engine::set_arp_replies`]).
    arp_replies: bool,
    /// Bytes of buffers per slot (rx then tx; page-aligned when reclaim is on).
    buf_stride: usize,
    reclaim: reclaim::Reclaim,
    // Fields drop in this order: `slots` (whose sets borrow `storage` and whose sockets borrow
    // `arena`) before the arenas, and `storage` (the sockets) before `arena` (their buffers).
    storage: StorageArena,
    arena: BufferArena,
    /// Draining: every listener refuses new connections; open ones go on.
    draining: bool,
    /// See [`EngineConfig::engine_tcp`] and [`EngineConfig::tcp`].
    engine_tcp: bool,
    tcp: tcp::conn::TcpConfig,
    /// The timestamp clock's offset (RFC 7323 §5.4) and its value in this poll.
    ts_offset: u32,
    ts_now: u32,
    /// See [`EngineConfig::syn_cookies`]; the secret of this engine's cookies.
    syn_cookies: SynCookies,
    cookies: tcp::cookie::CookieJar,
    /// The checksums the device in this poll leaves to software (read once per poll).
    csum: smoltcp::phy::ChecksumCapabilities,
    /// Control blocks of ended connections, for the next hand-overs ([`own::Owned`]). Boxed: a
    /// control block moves between a slot and this pool as a pointer, not copied whole.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<own::Owned>>,
}

/// The earlier of two optional deadlines (`None`: never). Written out rather than as a `min` over
/// an array of options, which the compiler builds in memory and reads back with wider loads than
/// it wrote (a stall on every connection serviced).
#[inline]
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl<S: Service> Engine<S> {
    /// Builds an engine; `now` is the engine clock's start.
    pub fn new<D: BurstDevice + ?Sized>(
        cfg: &EngineConfig<S>,
        device: &mut D,
        now: Instant,
    ) -> Result<Engine<S>, EngineError>
    where
        S: Clone,
    {
        config::validate(cfg)?;
        // smoltcp runs on IP medium: the engine owns the Ethernet layer ([`neighbor`]).
        let mut icfg = Config::new(HardwareAddress::Ip);
        icfg.random_seed = cfg.random_seed;
        let mut iface = Interface::new(icfg, &mut Ether::new(device, cfg.mac, [0; 6]), now);
        let addresses: Vec<Ipv4Addr> =
            std::iter::once(cfg.address).chain(cfg.extra_addresses.iter().copied()).collect();
        // smoltcp holds the port's address only: it scans its address list several times per
        // packet (the source and destination broadcast checks), and every extra address would add
        // to that on every frame. The extra ones share the prefix, so the broadcast address is
        // the same; with them, smoltcp takes any destination (`any_ip`), as the engine hands it
        // only frames addressed to one of its own (`flow::classify`).
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::Ipv4(Ipv4Cidr::new(cfg.address, cfg.prefix_len))).expect("one address fits");
        });
        iface.set_any_ip(!cfg.extra_addresses.is_empty());
        if let Some(gw) = cfg.gateway {
            iface.routes_mut().add_default_ipv4_route(gw).expect("one route fits");
        }
        let mut engine = Engine {
            iface,
            addresses,
            next_source: 0,
            next_port: EPHEMERAL.start + (cfg.random_seed % u64::from(EPHEMERAL.end - EPHEMERAL.start)) as u16,
            affinity: None,
            mac: cfg.mac,
            slots: Vec::new(),
            free: Vec::new(),
            flows: HashMap::with_capacity_and_hasher(cfg.max_connections, Default::default()),
            listeners: Vec::new(),
            by_port: HashMap::default(),
            time_wait: TimeWaitTable::new(cfg.time_wait, cfg.max_time_wait),
            timers: TimerWheel::new(now),
            dirty: Vec::new(),
            fired: Vec::new(),
            neighbor_wait: Vec::new(),
            empty: SocketSet::new(Vec::new()),
            rx_buffer: cfg.tcp_rx_buffer,
            tx_buffer: cfg.tcp_tx_buffer,
            max_backlog: cfg.max_backlog,
            max_connections: cfg.max_connections,
            syn_backlog: cfg.syn_backlog,
            next_stamp: 0,
            tcp_timeout: smoltcp::time::Duration::from_micros(cfg.tcp_timeout.as_micros() as u64),
            stats: EngineStats::default(),
            mask: u32::MAX.checked_shl(32 - u32::from(cfg.prefix_len)).unwrap_or(0),
            gateway: cfg.gateway,
            neighbors: neighbor::Neighbors::default(),
            arp_replies: true,
            arena: BufferArena::new(format!("engine {}", cfg.address)),
            buf_stride: match cfg.buffer_idle {
                Some(_) => (cfg.tcp_rx_buffer + cfg.tcp_tx_buffer).next_multiple_of(mem::PAGE),
                None => cfg.tcp_rx_buffer + cfg.tcp_tx_buffer,
            },
            reclaim: reclaim::Reclaim::new(cfg.buffer_idle, now),
            storage: StorageArena::default(),
            draining: false,
            engine_tcp: cfg.engine_tcp,
            tcp: cfg.tcp,
            ts_offset: (cfg.random_seed >> 32) as u32 ^ cfg.random_seed as u32,
            ts_now: 0,
            syn_cookies: if cfg.engine_tcp { cfg.syn_cookies } else { SynCookies::Never },
            cookies: tcp::cookie::CookieJar::new(cfg.random_seed ^ 0x5359_4e43_4f4f_4b49),
            csum: device.capabilities().checksum,
            spare: Vec::new(),
        };
        for spec in &cfg.listeners {
            engine.add_listener(spec.port, spec.service.clone(), spec.backlog, spec.policy, spec.on_full);
        }
        Ok(engine)
    }

    /// Processes the frames the device holds, runs the services of the connections that had
    /// something happen, and queues what they send. Returns when the engine next needs a poll
    /// without new frames (a timer), if ever; after a poll that handled frames or connections that
    /// is `now` (a busy loop polls again at once anyway, and the timer wheel is not consulted).
    pub fn poll<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D) -> Option<Instant> {
        self.iface.poll_maintenance(now);
        self.ts_now = tcp::clock::set(now, self.ts_offset);
        self.csum = device.capabilities().checksum;
        let frames_before = self.stats.frames;
        let mut busy = false;
        let mut reopened = None;
        loop {
            // Set when a frame must wait for the service phase: see `ingress`.
            let mut wait = None;
            while let Some(frame) = device.peek() {
                self.stats.frames += 1;
                if !neighbor::addressed_to(frame, self.mac) {
                    device.skip(); // another station's (what smoltcp's Ethernet layer dropped)
                    continue;
                }
                let src: [u8; 6] = frame[6..12].try_into().expect("addressed_to checked the length");
                let class = flow::classify(frame, &self.addresses);
                if let Some(t) = self.ingress(now, device, class, src, reopened) {
                    wait = Some(t);
                    break;
                }
            }
            if wait.is_none() {
                self.timers_due(now);
            }
            busy |= self.stats.frames != frames_before || !self.dirty.is_empty();
            while let Some(id) = self.dirty.pop() {
                self.service(now, device, id);
            }
            match wait {
                Some(t) => reopened = Some(t),
                None => break,
            }
        }
        if busy {
            return Some(now);
        }
        let timers = earliest(self.timers.next_deadline(now), self.time_wait.next_expiry(now));
        earliest(timers, self.reclaim.next_deadline())
    }

    /// Expires TIME_WAIT entries, and marks the connections whose timers are due.
    fn timers_due(&mut self, now: Instant) {
        self.time_wait.expire(now);
        let mut fired = std::mem::take(&mut self.fired);
        self.timers.advance(now, |id, tick| fired.push((id, tick)));
        for (id, tick) in fired.drain(..) {
            let s = &mut self.slots[id as usize];
            if s.wheel_tick != Some(tick) {
                continue; // superseded by an earlier entry that fired before
            }
            s.wheel_tick = None;
            match s.timer_at {
                Some(at) if at <= now => {
                    s.timer_at = None;
                    self.mark_dirty(id);
                }
                // The deadline moved later since this entry was filed: re-arm at it.
                Some(at) => s.wheel_tick = Some(self.timers.insert(id, at)),
                None => {}
            }
        }
        self.fired = fired;
        if self.reclaim.due(now) {
            self.sweep(now);
        }
    }

    /// Whether `ip` is on the link of one of the engine's addresses.
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addresses.iter().any(|a| (u32::from(*a) ^ u32::from(ip)) & self.mask == 0)
    }

    /// Limits outgoing connections to 4-tuples for which `mine` holds: with several cores and
    /// RSS (or software steering), the source port is chosen so that the replies reach this core.
    pub fn set_affinity(&mut self, mine: impl Fn(&FourTuple) -> bool + Send + 'static) {
        self.affinity = Some(Box::new(mine));
    }

    /// Whether this engine answers ARP requests for its addresses (the default). With several
    /// cores on a port every core's engine sees every ARP frame, and learns from it; only one of
    /// them should answer, or a peer gets one reply per core.
    pub fn set_arp_replies(&mut self, answer: bool) {
        self.arp_replies = answer;
    }

    /// Starts draining: from now on every listener answers SYNs with an RST, as a full one does
    /// (counted as refused); open connections go on. See [`Engine::close_all`] for the end.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Resets every open connection (the RSTs leave on the next `poll`): the end of a drain whose
    /// deadline passed. Returns how many there were.
    pub fn close_all(&mut self) -> usize {
        let mut n = 0;
        for id in 0..self.slots.len() as u32 {
            let slot = &mut self.slots[id as usize];
            if slot.tuple.is_none() || matches!(slot.phase, Phase::Free | Phase::Armed) {
                continue;
            }
            if let Some(t) = &slot.tcb {
                tracing::info!(tuple = ?slot.tuple, tcb = ?t, "reset at the end of a drain");
            }
            slot.ended_by_engine = Some(End::Aborted);
            slot.abort();
            n += 1;
            self.mark_dirty(id);
        }
        n
    }

    /// Services connection `conn` on the next poll: the layer above has something for it (an
    /// application read, wrote or closed). Nothing happens if no connection holds that id.
    pub fn wake(&mut self, conn: ConnId) {
        let Some(slot) = self.slots.get(conn.0 as usize) else { return };
        if slot.session().is_some() {
            self.mark_dirty(conn.0);
        }
    }

    /// The session of connection `conn`, if a session runs it (accepted, or outgoing).
    pub fn session(&self, conn: ConnId) -> Option<&S::Session> {
        self.slots.get(conn.0 as usize)?.session()
    }

    /// The engine's first address (the port's).
    pub fn address(&self) -> Ipv4Addr {
        self.addresses[0]
    }

    fn mark_dirty(&mut self, id: u32) {
        let s = &mut self.slots[id as usize];
        if !s.dirty {
            s.dirty = true;
            self.dirty.push(id);
        }
    }

    /// Polls again every connection that may have been waiting for a neighbour. The list holds
    /// each slot at most once (`Slot::neighbor_wait` says it is in it, across reuse of the slot), so
    /// it never outgrows the pool.
    fn wake_neighbor_waiters(&mut self) {
        let mut waiting = std::mem::take(&mut self.neighbor_wait);
        for &id in &waiting {
            let slot = &mut self.slots[id as usize];
            slot.neighbor_wait = false;
            if !matches!(slot.phase, Phase::Free | Phase::Armed) {
                self.mark_dirty(id);
            }
        }
        waiting.clear();
        self.neighbor_wait = waiting;
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}
