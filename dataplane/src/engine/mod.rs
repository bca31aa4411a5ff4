//! The TCP engine of one core.
//!
//! An [`Engine`] owns one smoltcp [`Interface`] (ICMP echo, IPv4, TCP), its neighbours and ARP,
//! its connections, its listeners, its TIME_WAIT table and the sessions of the built-in services.
//! It is pure logic over a [`BurstDevice`] and a clock: every entry point takes `now`,
//! [`Engine::poll`] returns the next deadline, and nothing in it reads a clock, sleeps or touches
//! DPDK.
//!
//! Call order, once per loop turn: `device.refill()`, then [`Engine::poll`], then
//! `device.flush()` (the per-core loop in [`crate::lcore`] does exactly this).
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

pub mod flow;
pub mod listener;
pub mod neighbor;
pub mod reclaim;
mod stream;
#[cfg(test)]
mod tests;
pub mod time_wait;
pub mod timer;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::TxToken;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Cidr};

use crate::bridge::{self, Command, Commands, ConnectRequest, End, Incoming, ListenError, ListenerShared};
use crate::mem::{self, ArenaStats, BufferArena, StorageArena};
use crate::phy::BurstDevice;
use crate::services::{Progress, ServiceKind, Session};
use flow::{FourTuple, Frame, Segment};
pub use listener::{BacklogPolicy, ListenerStats, OnFull};
use neighbor::Ether;
pub use reclaim::ReclaimStats;
use stream::TcpStream;
pub use time_wait::TimeWaitStats;
use time_wait::{TimeWaitAction, TimeWaitTable};
use timer::TimerWheel;

/// The engine clock's instant type (microseconds since an origin the caller picks).
pub use smoltcp::time::Instant as EngineInstant;

/// LISTEN sockets kept armed per listener, ahead of SYNs.
const ARMED: usize = 2;

/// Whether an outgoing 4-tuple's replies reach this engine's core.
pub type Affinity = Box<dyn Fn(&FourTuple) -> bool + Send>;

/// Ephemeral ports for outgoing connections (Linux's default range).
pub const EPHEMERAL: std::ops::Range<u16> = 32768..61000;

/// How long an idle connection keeps its buffer pages, by default.
pub const DEFAULT_BUFFER_IDLE: Duration = Duration::from_secs(30);

/// smoltcp's smallest retransmission timeout (RFC 6298's one second): the earliest a timer it
/// starts when it sends data can fire. A test pins it (`a_lost_response_is_sent_again_after_a_second`).
const SMOLTCP_MIN_RTO: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(1);

/// Socket options every connection gets, on a socket that `listen` or `connect` has just reset.
fn configure(s: &mut tcp::Socket<'static>) {
    s.set_nagle_enabled(false); // services write whole messages
    s.set_ack_delay(Some(smoltcp::time::Duration::from_millis(10)));
    // smoltcp's reset keeps a socket's settings (smoltcp #603), and the congestion controller, a
    // setting since #907, with them: with its state (window, threshold, loss history) as the
    // socket's last connection left it. Sockets are pooled, so each connection gets a new one, in
    // slow start from the initial window
    // (`a_pooled_socket_starts_each_connection_with_a_fresh_congestion_window`).
    s.set_congestion_control(tcp::CongestionControl::Cubic);
    // smoltcp's timeout ends a connection whose peer has been silent that long, even one with
    // nothing to be acknowledged: an idle connection would die (without an RST) after
    // `tcp_timeout`. The engine times out only what waits for the peer (`Slot::waiting`).
    s.set_timeout(None);
}

/// A listener of a built-in service.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub port: u16,
    pub service: ServiceKind,
    /// The backlog value, as an application passes it to listen() (SEMANTICS B2).
    pub backlog: usize,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
}

/// Everything an engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// More addresses in the same prefix (at most 7), used in turn with `address` as the source
    /// of outgoing connections (a load generator's many clients).
    pub extra_addresses: Vec<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub listeners: Vec<ListenerSpec>,
    /// Receive and send buffer of each connection, in bytes.
    pub tcp_rx_buffer: usize,
    pub tcp_tx_buffer: usize,
    /// Seed for ISNs and ephemeral ports: take it from a real random source.
    pub random_seed: u64,
    /// How long a closed connection's 4-tuple stays in TIME_WAIT (T1: 0 to 300 s).
    pub time_wait: Duration,
    /// Backlog values above this are clamped to it (B5); also bounds half-open connections
    /// under the `linux` policy.
    pub max_backlog: usize,
    /// A connection that waits this long for its peer, which stays silent meanwhile, is reset: sent
    /// data, a SYN-ACK or a FIN unacknowledged (counted from the first segment the peer has not
    /// answered: one that answers each window probe is not silent), or (after our FIN) the peer's
    /// FIN not coming. Only segments in the receive window count as the peer's. A connection with
    /// nothing to wait for is never timed out, however long it idles.
    pub tcp_timeout: Duration,
    /// A connection idle this long (to twice as long) with nothing in its buffers gives their
    /// pages back to the kernel ([`reclaim`]); `None`: never. Buffers on hugepages never do.
    pub buffer_idle: Option<Duration>,
}

impl EngineConfig {
    /// A configuration with the defaults for everything but the addresses.
    pub fn new(mac: [u8; 6], address: Ipv4Addr, prefix_len: u8) -> Self {
        EngineConfig {
            mac,
            address,
            prefix_len,
            extra_addresses: Vec::new(),
            gateway: None,
            listeners: Vec::new(),
            tcp_rx_buffer: 65536,
            tcp_tx_buffer: 65536,
            random_seed: 0,
            time_wait: time_wait::DEFAULT_DELAY,
            max_backlog: 4096,
            tcp_timeout: Duration::from_secs(60),
            buffer_idle: Some(DEFAULT_BUFFER_IDLE),
        }
    }
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
    #[error("TCP buffer size {0} is out of range (1024..=16777216)")]
    BadBuffer(usize),
    #[error("TIME_WAIT delay {0:?} is out of range (0 to 300 s)")]
    TimeWaitOutOfRange(Duration),
    #[error("max_backlog {0} is out of range (1..=1048576)")]
    BadMaxBacklog(usize),
    #[error("TCP timeout {0:?} is out of range (1 s to 1 h)")]
    BadTimeout(Duration),
    #[error("{0} addresses: at most 8 (one address and 7 extra ones)")]
    TooManyAddresses(usize),
    #[error("extra address {0} is not a unicast address inside the engine's prefix")]
    BadExtraAddress(Ipv4Addr),
    #[error("buffer idle time {0:?} is out of range (10 ms to 1 day)")]
    BadBufferIdle(Duration),
}

/// Why [`Engine::connect`] could not start a connection (the errno it maps to, SEMANTICS C4).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// EADDRNOTAVAIL: the remote address is all zeros, or its port is 0.
    #[error("remote address {0} is not a valid destination")]
    BadRemote(std::net::SocketAddrV4),
    /// EADDRNOTAVAIL: every local address and ephemeral port toward this remote is in use, in
    /// TIME_WAIT, or (with an affinity rule) hashes to another core.
    #[error("no free local port toward {0}")]
    NoPorts(std::net::SocketAddrV4),
    /// EADDRNOTAVAIL: the local address asked for is not one of the engine's.
    #[error("local address {0} is not this engine's")]
    BadLocal(std::net::SocketAddrV4),
    /// EADDRINUSE: the 4-tuple asked for is open, or the local port has a listener.
    #[error("{local} -> {remote} is in use")]
    InUse { local: std::net::SocketAddrV4, remote: std::net::SocketAddrV4 },
    /// The 4-tuple asked for is in TIME_WAIT until this instant (SEMANTICS C6: a reconnect may
    /// wait on it).
    #[error("{local} -> {remote} is in TIME_WAIT")]
    TimeWait { local: std::net::SocketAddrV4, remote: std::net::SocketAddrV4, until: Instant },
}

/// Counters of an engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Handshakes completed, on all listeners.
    pub established: u64,
    /// Connections that ended (closed, reset or timed out) and went back to the pool.
    pub closed: u64,
    /// Connections open now (half-open, queued or accepted).
    pub open: usize,
    /// Slots allocated (open connections, armed LISTEN sockets and the free pool).
    pub slots: usize,
    /// Slots in the free pool.
    pub free_slots: usize,
    /// Outgoing connections whose handshake completed.
    pub connected: u64,
    /// Outgoing connections that ended before their handshake completed (refused, timed out).
    pub connect_failed: u64,
    /// Frames demultiplexed.
    pub frames: u64,
    /// TCP segments answered with an RST because no connection or listener wanted them.
    pub no_listener: u64,
    /// ARP requests sent: for next hops of outgoing connections ([`neighbor`]), and by
    /// [`Engine::announce_to`].
    pub arp_requests: u64,
    /// ARP requests for the engine's addresses that it answered (replies that left).
    pub arp_replies: u64,
    /// Addresses in the neighbour table with an answer.
    pub neighbors: usize,
}

/// What the demux decided for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demux {
    /// An open connection's segment.
    Flow(u32),
    /// A SYN for a listener with room.
    Listener(usize),
    /// A segment for a 4-tuple in TIME_WAIT.
    TimeWait(TimeWaitAction),
    /// Answered with an RST (full listener with `on_full = refuse`, or nothing wants it).
    Refuse,
    /// Dropped unseen (full listener with `on_full = drop`, or a TIME_WAIT segment with a bad
    /// checksum).
    Drop,
    /// Not TCP for us: ARP (the engine answers and learns), other IPv4 (smoltcp decides: an ICMP
    /// echo is answered), anything else (dropped).
    Other,
}

/// Whether a frame is for the engine, and why ([`Engine::classify`]): what a gateway that owns
/// the port asks before handing a frame in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A segment of an open connection, or of one in TIME_WAIT.
    Connection,
    /// A segment for a port with a listener.
    Listener,
    /// TCP for our address on a port with nothing: the engine answers it with an RST.
    ClosedPort,
    /// ARP asking for our address or answering us.
    Arp,
    /// Another IPv4 protocol for our address (ICMP echo is answered).
    OtherIp,
    /// Not for the engine (another address, another ethertype, ARP about someone else).
    NotOurs,
}

impl Verdict {
    /// Whether to hand the frame to the engine.
    pub fn is_ours(self) -> bool {
        !matches!(self, Verdict::NotOurs)
    }
}

/// Where a slot's connection is in its life.
enum Phase {
    /// In the pool.
    Free,
    /// LISTEN, in its listener's ring.
    Armed,
    /// SYN received, handshake in progress.
    HalfOpen,
    /// Handshake completed, not accepted (a service that does not accept).
    Queued,
    /// Accepted by a service session.
    Accepted(Session),
    /// An outgoing connection, run by its session once established.
    Client { session: Session, established: bool },
}

/// One connection: its socket, alone in its set, and the engine's book-keeping.
struct Slot {
    set: SocketSet<'static>,
    handle: SocketHandle,
    phase: Phase,
    listener: usize,
    tuple: Option<FourTuple>,
    /// Where its segments go: the source MAC of the peer's last segment (the router's when the
    /// peer is off the link); zero until known (see [`neighbor`]).
    peer_mac: [u8; 6],
    /// The sequence number past the peer's FIN, once seen (for TIME_WAIT).
    peer_fin_end: Option<u32>,
    /// Our FIN is queued (the session is done).
    closing: bool,
    dirty: bool,
    neighbor_wait: bool,
    /// When the connection next needs a poll (smoltcp's `poll_at`), if ever.
    timer_at: Option<Instant>,
    /// An RST arrived for it.
    rst_seen: bool,
    /// It sent at least one segment.
    emitted: bool,
    /// An outgoing connection's handshake must complete by then.
    connect_deadline: Option<Instant>,
    /// Why the engine ended it, when it did.
    ended_by_engine: Option<End>,
    /// When its handshake completed (engine time).
    established_at: Option<Instant>,
    /// Bytes its session received and sent.
    bytes: [u64; 2],
    /// The tick of this slot's live entry in the timer wheel, if it has one.
    wheel_tick: Option<i64>,
    /// What it waits for from its peer, if anything: see [`EngineConfig::tcp_timeout`].
    waiting: Option<Wait>,
    /// When its peer was last heard from: the handshake completed, or, while the connection waits,
    /// a segment in its receive window arrived (a blind sender cannot keep it waiting).
    heard_at: Instant,
    /// Where its buffers start, if their pages can be given back (normal pages, reclaim on);
    /// else 0. See [`reclaim`].
    buf: usize,
    /// The peer's initial sequence number, from its SYN or SYN-ACK.
    irs: u32,
    /// Ours, from the SYN or SYN-ACK smoltcp sent.
    iss: u32,
    /// Since when its send queue has held data (sent and not yet acknowledged, or not yet sent);
    /// `None` while it is empty. smoltcp's retransmission timer cannot have started before this,
    /// whatever else fired since ([`Slot::sent_all`]).
    in_flight_since: Option<Instant>,
    /// The end of out-of-order data smoltcp may keep for it ([`reclaim::note_segment`]).
    ooo_until: Option<u32>,
    /// Serviced since the reclaim sweep last passed.
    recent: bool,
    /// Its buffer pages may be resident: serviced since they were last given back.
    resident: bool,
}

/// What a connection waits for from its peer ([`EngineConfig::tcp_timeout`] runs while it does).
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// An answer to what it sends: data, a SYN, a SYN-ACK or a FIN not yet acknowledged. The clock
    /// runs from the first segment it sent since the peer was last heard (`None`: none since), so
    /// a peer that answers every window probe is never silent, however far apart the probes.
    Answer { asked_at: Option<Instant> },
    /// The peer's FIN, ours acknowledged (FIN-WAIT-2). The clock runs from when this began or the
    /// peer was last heard, whichever is later.
    PeerFin { since: Instant },
}

impl Slot {
    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        self.set.get_mut::<tcp::Socket>(self.handle)
    }

    /// Whether smoltcp's socket has ended (CLOSED, or TIME_WAIT, which the engine keeps in its
    /// own table): the service phase releases such a connection.
    fn ended(&self) -> bool {
        matches!(self.set.get::<tcp::Socket>(self.handle).state(), tcp::State::Closed | tcp::State::TimeWait)
    }

    /// The next in-order byte the connection expects from its peer: the ISN, one for the SYN, and
    /// every byte received in order (read by the session, or waiting).
    fn rcv_nxt(&mut self) -> u32 {
        let waiting = self.socket().recv_queue();
        self.irs.wrapping_add(1).wrapping_add(self.bytes[0] as u32).wrapping_add(waiting as u32)
    }

    /// [`Slot::rcv_nxt`], read from the socket once per segment: `once` keeps it between the
    /// checks `ingress` makes before smoltcp takes the segment.
    fn rcv_nxt_once(&mut self, once: &mut Option<u32>) -> u32 {
        match *once {
            Some(n) => n,
            None => *once.insert(self.rcv_nxt()),
        }
    }

    /// Whether `sent`, the segment smoltcp just sent for this open connection, carried the last
    /// byte its session queued (or, with nothing queued, acknowledged). Then smoltcp has nothing
    /// more to send now: no data or FIN waits, the segment carried the latest acknowledgment and
    /// window, and the only timer it may have started is the retransmission timer, at least
    /// [`SMOLTCP_MIN_RTO`] after it started: no earlier than [`Slot::in_flight_since`], since
    /// that timer restarts only when data is sent or acknowledged. Its `poll_at` need not be asked
    /// (it costs about 230 instructions per request, 6 % of the server's): the engine's timer is
    /// set to fire by then, or earlier if it was already due earlier, and asks then. A pure ACK
    /// while data waits (a zero window) does not count.
    fn sent_all(&mut self, sent: Option<neighbor::SentTcp>) -> bool {
        let Some(s) = sent else { return false };
        let end = self.iss.wrapping_add(1).wrapping_add(self.bytes[1] as u32);
        s.end == end && (s.end != s.seq || self.socket().send_queue() == 0)
    }

    /// The peer was heard from now.
    fn heard(&mut self, now: Instant) {
        self.heard_at = now;
        if let Some(Wait::Answer { asked_at }) = &mut self.waiting {
            *asked_at = None;
        }
    }

    /// When the engine gives up on a peer that stays silent, if the connection waits for it.
    fn give_up(&self, timeout: smoltcp::time::Duration) -> Option<Instant> {
        match self.waiting? {
            Wait::Answer { asked_at } => asked_at.map(|t| t + timeout),
            Wait::PeerFin { since } => Some(since.max(self.heard_at) + timeout),
        }
    }

    /// Its handshake is in progress (passive or active open).
    fn in_handshake(&self) -> bool {
        matches!(self.phase, Phase::HalfOpen | Phase::Client { established: false, .. })
    }

    /// Whether a segment that came from `seg.src_mac`, another MAC than the connection's peer's,
    /// says the peer is there now: any segment of the handshake, after it only one whose sequence
    /// numbers fall in the receive window (`rx_capacity` from the next in-order byte), which a
    /// sender that cannot see the connection's segments can only guess (RFC 5961's reasoning).
    /// `nxt` as [`Slot::rcv_nxt_once`] takes it.
    fn peer_moved_to(&mut self, seg: &Segment, rx_capacity: usize, nxt: &mut Option<u32>) -> bool {
        self.in_handshake() || seg.in_window(self.rcv_nxt_once(nxt), rx_capacity)
    }
}

struct Listener {
    port: u16,
    service: ServiceKind,
    policy: BacklogPolicy,
    on_full: OnFull,
    /// Armed LISTEN sockets, ready for the next SYNs.
    ring: VecDeque<u32>,
    stats: ListenerStats,
    /// Stopped listening (the port is free again); the entry stays for its connections' sake.
    closed: bool,
}

/// The TCP engine of one core. See the module documentation.
pub struct Engine {
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
    slots: Vec<Slot>,
    free: Vec<u32>,
    flows: HashMap<FourTuple, u32, foldhash::fast::RandomState>,
    listeners: Vec<Listener>,
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
    tcp_timeout: smoltcp::time::Duration,
    stats: EngineStats,
    /// Our prefix mask and gateway, to tell on-link peers from routed ones.
    mask: u32,
    gateway: Option<Ipv4Addr>,
    neighbors: neighbor::Neighbors,
    /// Whether this engine answers ARP requests for its addresses ([`Engine::set_arp_replies`]).
    arp_replies: bool,
    arena: BufferArena,
    /// Bytes of buffers per slot (rx then tx; page-aligned when reclaim is on).
    buf_stride: usize,
    reclaim: reclaim::Reclaim,
    storage: StorageArena,
    /// Requests from other threads ([`bridge`]), if this engine takes them.
    commands: Option<Arc<Commands>>,
    /// Connects waiting for their 4-tuple to leave TIME_WAIT (SEMANTICS C6).
    deferred: Vec<(Instant, ConnectRequest)>,
    /// Draining: every listener refuses new connections; open ones go on.
    draining: bool,
    wakes: Vec<Arc<bridge::ConnShared>>,
}

/// A listener as introspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub port: u16,
    pub service: &'static str,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
    pub stats: ListenerStats,
}

/// A connection as introspection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    /// The TCP state, as RFC 793 names it (ESTABLISHED, CLOSE-WAIT, ...).
    pub state: &'static str,
    /// half-open, queued (handshake done, not accepted), accepted, or outgoing.
    pub kind: &'static str,
    /// The listener it came through, while half-open or queued.
    pub listener: Option<u16>,
    /// How long since its handshake completed (SEMANTICS A5), if it has.
    pub connected: Option<Duration>,
    /// Bytes its session (service or application) received and sent.
    pub bytes_in: u64,
    pub bytes_out: u64,
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

fn tcp_state_name(s: tcp::State) -> &'static str {
    match s {
        tcp::State::Closed => "CLOSED",
        tcp::State::Listen => "LISTEN",
        tcp::State::SynSent => "SYN-SENT",
        tcp::State::SynReceived => "SYN-RECEIVED",
        tcp::State::Established => "ESTABLISHED",
        tcp::State::FinWait1 => "FIN-WAIT-1",
        tcp::State::FinWait2 => "FIN-WAIT-2",
        tcp::State::CloseWait => "CLOSE-WAIT",
        tcp::State::Closing => "CLOSING",
        tcp::State::LastAck => "LAST-ACK",
        tcp::State::TimeWait => "TIME-WAIT",
    }
}

/// Where an engine's connection memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    /// Buffer arena: bytes mapped, bytes handed out, bytes on hugepages.
    pub buffers: ArenaStats,
    /// Socket storage slots mapped (one per pool slot, plus the chunk's spare).
    pub socket_storage: usize,
    /// Pool slots.
    pub slots: usize,
    /// Flow-table capacity (entries it can hold before growing).
    pub flow_capacity: usize,
    /// Bytes per pool slot, everything counted: buffers reserved, socket storage, the slot record,
    /// the flow-table share and the pool's free list.
    pub bytes_per_slot: usize,
}

impl Engine {
    /// Builds an engine; `now` is the engine clock's start.
    pub fn new<D: BurstDevice + ?Sized>(
        cfg: &EngineConfig,
        device: &mut D,
        now: Instant,
    ) -> Result<Engine, EngineError> {
        validate(cfg)?;
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
            flows: HashMap::default(),
            listeners: Vec::new(),
            by_port: HashMap::default(),
            time_wait: TimeWaitTable::new(cfg.time_wait),
            timers: TimerWheel::new(now),
            dirty: Vec::new(),
            fired: Vec::new(),
            neighbor_wait: Vec::new(),
            empty: SocketSet::new(Vec::new()),
            rx_buffer: cfg.tcp_rx_buffer,
            tx_buffer: cfg.tcp_tx_buffer,
            max_backlog: cfg.max_backlog,
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
            commands: None,
            deferred: Vec::new(),
            draining: false,
            wakes: Vec::new(),
        };
        for spec in &cfg.listeners {
            engine.add_listener(spec.port, spec.service.clone(), spec.backlog, spec.policy, spec.on_full);
        }
        Ok(engine)
    }

    /// Starts a listener (the port is free: validated or checked by the caller) and arms its
    /// ring. A closed entry no connection refers to any more is reused (slots name their listener
    /// only while half-open or queued).
    fn add_listener(
        &mut self,
        port: u16,
        service: ServiceKind,
        backlog: usize,
        policy: BacklogPolicy,
        on_full: OnFull,
    ) {
        let limit = policy.limit(backlog, self.max_backlog);
        tracing::info!(
            port,
            service = service.name(),
            backlog,
            policy = %policy,
            on_full = on_full.as_str(),
            queue_limit = limit,
            "listening"
        );
        let entry = Listener {
            port,
            service,
            policy,
            on_full,
            ring: VecDeque::with_capacity(ARMED),
            stats: ListenerStats { limit, ..Default::default() },
            closed: false,
        };
        let li = match self.listeners.iter().position(|l| l.closed && l.stats.half_open == 0 && l.stats.queued == 0) {
            Some(li) => {
                self.listeners[li] = entry;
                li
            }
            None => {
                self.listeners.push(entry);
                self.listeners.len() - 1
            }
        };
        self.by_port.insert(port, li);
        self.rearm(li);
    }

    /// Processes the frames the device holds, runs the services of the connections that had
    /// something happen, and queues what they send. Returns when the engine next needs a poll
    /// without new frames (a timer), if ever; after a poll that handled frames or connections that
    /// is `now` (a busy loop polls again at once anyway, and the timer wheel is not consulted).
    pub fn poll<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D) -> Option<Instant> {
        self.iface.poll_maintenance(now);
        self.commands(now);
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
        let deferred = self.deferred.iter().map(|d| d.0).min();
        let timers = earliest(self.timers.next_deadline(now), self.time_wait.next_expiry(now));
        earliest(timers, earliest(deferred, self.reclaim.next_deadline()))
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

    /// Says whether `frame` is for this engine, reading only its headers and the engine's tables
    /// (a few dozen nanoseconds; nothing changes). A gateway hands the engine the frames for which
    /// [`Verdict::is_ours`] holds and forwards the others.
    pub fn classify(&self, frame: &[u8]) -> Verdict {
        use smoltcp::wire::{ArpPacket, EthernetFrame};
        match flow::classify(frame, &self.addresses) {
            Frame::Tcp(seg) => {
                if self.flows.contains_key(&seg.tuple) || self.time_wait.contains(&seg.tuple) {
                    Verdict::Connection
                } else if self.by_port.contains_key(&seg.tuple.local_port) {
                    Verdict::Listener
                } else {
                    Verdict::ClosedPort
                }
            }
            Frame::Arp => {
                let Ok(eth) = EthernetFrame::new_checked(frame) else { return Verdict::NotOurs };
                match ArpPacket::new_checked(eth.payload()) {
                    Ok(arp) if self.addresses.iter().any(|a| a.octets() == arp.target_protocol_addr()) => Verdict::Arp,
                    _ => Verdict::NotOurs,
                }
            }
            Frame::OtherIp => Verdict::OtherIp,
            Frame::Other => Verdict::NotOurs,
        }
    }

    /// Whether `ip` is on the link of one of the engine's addresses.
    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addresses.iter().any(|a| (u32::from(*a) ^ u32::from(ip)) & self.mask == 0)
    }

    /// An ARP frame: learn its sender if it is aimed at us from our link, and answer a request
    /// for one of our addresses (see [`neighbor`]). An ARP frame about another address (a
    /// gratuitous one, a request to another host) only moves a neighbour we already know, as
    /// Linux does.
    fn arp<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D) {
        let arp = device.peek().and_then(neighbor::parse_arp);
        device.skip();
        let Some(a) = arp else { return };
        if a.sender_mac[0] & 1 == 1 || !self.on_link(a.sender_ip) {
            return;
        }
        if !self.addresses.contains(&a.target_ip) {
            self.neighbors.update(a.sender_ip, a.sender_mac, now);
            return;
        }
        self.neighbors.learn(a.sender_ip, a.sender_mac, now);
        self.wake_neighbor_waiters();
        // Counted once it has left, as every ARP frame the engine sends.
        if a.request
            && self.arp_replies
            && neighbor::send_arp(device, now, self.mac, a.target_ip, a.sender_ip, Some(a.sender_mac))
        {
            self.stats.arp_replies += 1;
        }
    }

    /// The MAC a connection the engine opened sends its first segments to: its next hop's (the
    /// peer on the link, else the gateway), from the neighbour table, which is asked by ARP when
    /// it does not know (at most once a second per address). `None`: wait for an ARP frame.
    fn resolve<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, t: &FourTuple) -> Option<[u8; 6]> {
        let hop = if self.on_link(t.remote_ip) { t.remote_ip } else { self.gateway? };
        let (mac, ask) = match self.neighbors.lookup(hop, now) {
            neighbor::Lookup::Found { mac, ask } => (Some(mac), ask),
            neighbor::Lookup::Missing { ask } => (None, ask),
        };
        if ask && neighbor::send_arp(device, now, self.mac, t.local_ip, hop, None) {
            self.neighbors.note_asked(hop, now);
        }
        mac
    }

    /// Decides about one frame and hands it on.
    ///
    /// `src` is the frame's source MAC: what smoltcp sends while it takes a frame no connection owns
    /// (an RST, an ICMP echo reply) goes back there; its answer to a connection's segment goes to
    /// that connection's peer.
    ///
    /// Leaves the frame where it is and returns its 4-tuple if it is a new SYN on the 4-tuple of
    /// a connection that ended in this burst (its last ACK or an RST came before it, and the
    /// service phase has not released it yet), unless that is `reopened` (the one that waited
    /// last). The peer opens again at once, as a Linux client does when its TIME_WAIT table is
    /// full. The ended connection's socket would answer with an RST; after the service phase,
    /// which releases that connection, the SYN meets TIME_WAIT's rules and the listener.
    fn ingress<D: BurstDevice + ?Sized>(
        &mut self,
        now: Instant,
        device: &mut D,
        class: Frame,
        src: [u8; 6],
        reopened: Option<FourTuple>,
    ) -> Option<FourTuple> {
        match self.demux(&class, device) {
            Demux::Flow(id) => {
                let slot = &mut self.slots[id as usize];
                let Frame::Tcp(seg) = class else { unreachable!("only TCP segments have a flow") };
                let f = seg.flags;
                if f.syn && !f.ack && !f.rst && slot.ended() && reopened != Some(seg.tuple) {
                    self.stats.frames -= 1; // counted again when it is taken
                    return Some(seg.tuple);
                }
                // The next in-order byte, read at most once for the checks below. The two before the
                // SYN's note read it only after the handshake, when the initial sequence number it
                // counts from no longer moves; the reclaim note reads it after that.
                let mut nxt = None;
                if seg.src_mac != slot.peer_mac && slot.peer_moved_to(&seg, self.rx_buffer, &mut nxt) {
                    slot.peer_mac = seg.src_mac; // where the peer is now (the router's, off the link)
                }
                // The peer is heard from when it sends what a sender that cannot see the
                // connection can only guess: a segment in the receive window (or it completes the
                // handshake, see `service`). Only a connection that waits for its peer uses it.
                if slot.waiting.is_some()
                    && !slot.in_handshake()
                    && seg.in_window(slot.rcv_nxt_once(&mut nxt), self.rx_buffer)
                {
                    slot.heard(now);
                }
                if seg.flags.syn && !seg.flags.rst && slot.in_handshake() {
                    slot.irs = seg.seq; // a SYN-ACK (or a retransmitted SYN: the same)
                    slot.ooo_until = None;
                }
                if slot.buf != 0 {
                    reclaim::note_segment(slot, &seg, self.rx_buffer, &mut nxt);
                }
                // What smoltcp answers at once goes where the connection's peer is, not to whoever
                // sent this frame.
                let dst = if slot.peer_mac == [0; 6] { src } else { slot.peer_mac };
                self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, dst), &mut slot.set);
                if seg.flags.rst || seg.flags.fin {
                    // Noted only when smoltcp took it (its state says so): one with numbers it
                    // refused, whoever sent it, neither makes a clean close look reset nor sets
                    // what TIME_WAIT re-ACKs.
                    let state = slot.socket().state();
                    slot.rst_seen |= seg.flags.rst && state == tcp::State::Closed;
                    let fin_taken = matches!(
                        state,
                        tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
                    );
                    if seg.flags.fin && fin_taken && slot.peer_fin_end.is_none() {
                        slot.peer_fin_end = Some(seg.seq_end());
                    }
                }
                self.mark_dirty(id);
            }
            Demux::Listener(li) => {
                let Frame::Tcp(seg) = class else { unreachable!("only SYNs reach a listener") };
                self.syn(now, device, li, seg);
            }
            Demux::TimeWait(TimeWaitAction::ReAck) => {
                let Frame::Tcp(seg) = class else { unreachable!() };
                device.skip();
                if let Some(tok) = device.transmit(now) {
                    tok.consume(time_wait::ACK_FRAME_LEN, |buf| time_wait::write_ack(buf, self.mac, &seg));
                }
            }
            Demux::TimeWait(_) | Demux::Drop => device.skip(),
            Demux::Refuse => {
                self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, src), &mut self.empty);
            }
            Demux::Other if matches!(class, Frame::Arp) => self.arp(now, device),
            Demux::Other => {
                // IPv4 for one of the engine's addresses (ICMP, UDP, a fragment) goes to smoltcp;
                // the rest is not ours (smoltcp takes any destination when the engine has extra
                // addresses).
                if matches!(class, Frame::OtherIp) {
                    self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, src), &mut self.empty);
                } else {
                    device.skip();
                }
            }
        }
        None
    }

    /// The demux decision for a classified frame (counts what it decides).
    fn demux<D: BurstDevice + ?Sized>(&mut self, class: &Frame, device: &mut D) -> Demux {
        let Frame::Tcp(seg) = class else { return Demux::Other };
        if let Some(&id) = self.flows.get(&seg.tuple) {
            return Demux::Flow(id);
        }
        if self.time_wait.contains(&seg.tuple) {
            // Act only on segments that are what they claim. The engine answers these itself, so
            // it checks what smoltcp would have checked on this device: what a port's receive
            // offload verified (or found intact, as virtio does for a local sender's segment whose
            // checksum it left to offload) is not checked again.
            let c = device.capabilities().checksum;
            let (ip, tcp) = (c.ipv4.rx(), c.tcp.rx());
            if !device.peek().is_some_and(|f| crate::phy::checksums_ok(f, ip, tcp)) {
                return Demux::Drop;
            }
            match self.time_wait.on_segment(seg) {
                TimeWaitAction::Reuse => {} // the entry is gone: a new connection
                action => return Demux::TimeWait(action),
            }
        }
        let f = seg.flags;
        if f.syn && !f.ack && !f.rst {
            if let Some(&li) = self.by_port.get(&seg.tuple.local_port) {
                let l = &mut self.listeners[li];
                l.stats.syns += 1;
                if let ServiceKind::Bridge(shared) = &l.service {
                    l.stats.queued = shared.queued(); // B1: queued until an application takes it
                }
                if self.draining {
                    l.stats.refused += 1;
                    return Demux::Refuse;
                }
                if !l.stats.is_full(l.policy, self.max_backlog) {
                    return Demux::Listener(li);
                }
                let bridged = match &l.service {
                    ServiceKind::Bridge(shared) => Some(shared),
                    _ => None,
                };
                return match l.on_full {
                    OnFull::Refuse => {
                        l.stats.refused += 1;
                        bridged.map(|b| b.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                        Demux::Refuse
                    }
                    OnFull::Drop => {
                        l.stats.dropped += 1;
                        bridged.map(|b| b.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                        Demux::Drop
                    }
                };
            }
        }
        if !f.rst {
            self.stats.no_listener += 1;
        }
        Demux::Refuse
    }

    /// A SYN for listener `li`, which has room: an armed LISTEN socket takes it.
    fn syn<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, li: usize, seg: Segment) {
        let id = match self.listeners[li].ring.pop_front() {
            Some(id) => id,
            None => self.arm(li),
        };
        let slot = &mut self.slots[id as usize];
        self.iface.poll_ingress_single(now, &mut Ether::new(device, self.mac, seg.src_mac), &mut slot.set);
        if slot.socket().state() == tcp::State::Listen {
            // Not taken (a bad checksum, say): it stays armed.
            self.listeners[li].ring.push_front(id);
            return;
        }
        slot.tuple = Some(seg.tuple);
        slot.peer_mac = seg.src_mac;
        slot.heard_at = now;
        slot.irs = seg.seq;
        slot.ooo_until = None;
        slot.phase = Phase::HalfOpen;
        self.flows.insert(seg.tuple, id);
        self.listeners[li].stats.half_open += 1;
        self.stats.open += 1;
        self.mark_dirty(id); // its SYN-ACK goes out on egress
        self.rearm(li);
    }

    /// Tops the listener's ring up to [`ARMED`] LISTEN sockets.
    fn rearm(&mut self, li: usize) {
        while self.listeners[li].ring.len() < ARMED {
            let id = self.arm(li);
            self.listeners[li].ring.push_back(id);
        }
    }

    /// A slot from the pool (or a new one), in LISTEN on listener `li`'s port.
    fn arm(&mut self, li: usize) -> u32 {
        let id = self.take_slot();
        let port = self.listeners[li].port;
        let slot = &mut self.slots[id as usize];
        slot.phase = Phase::Armed;
        slot.listener = li;
        let s = slot.socket();
        // listen() resets a Closed or TimeWait socket without sending anything.
        s.listen(port).expect("a pooled socket is closed and the port is non-zero");
        configure(s);
        id
    }

    /// A free slot: from the pool, or a new one whose memory comes from the arenas.
    fn take_slot(&mut self) -> u32 {
        match self.free.pop() {
            Some(id) => id,
            None => {
                // A new pool slot: its buffers and socket storage come from the arenas, once.
                let (bufs, on_hugepages) = self.arena.take(self.buf_stride);
                let buf = bufs.as_ptr() as usize;
                let buf =
                    if self.reclaim.enabled() && !on_hugepages && buf.is_multiple_of(mem::PAGE) { buf } else { 0 };
                let (rx, rest) = bufs.split_at_mut(self.rx_buffer);
                let tx = &mut rest[..self.tx_buffer];
                let mut set = SocketSet::new(self.storage.take_one());
                let handle = set.add(tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx)));
                self.slots.push(Slot {
                    set,
                    handle,
                    phase: Phase::Free,
                    listener: 0,
                    tuple: None,
                    peer_mac: [0; 6],
                    peer_fin_end: None,
                    closing: false,
                    dirty: false,
                    neighbor_wait: false,
                    timer_at: None,
                    wheel_tick: None,
                    rst_seen: false,
                    emitted: false,
                    connect_deadline: None,
                    ended_by_engine: None,
                    established_at: None,
                    bytes: [0; 2],
                    waiting: None,
                    heard_at: Instant::ZERO,
                    buf,
                    irs: 0,
                    iss: 0,
                    in_flight_since: None,
                    ooo_until: None,
                    recent: false,
                    resident: false,
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 connections")
            }
        }
    }

    /// Sends an ARP request for `peer` from each of the engine's addresses. The peer learns every
    /// source address at once instead of asking for each when its first SYN-ACK is due (a smoltcp
    /// peer asks at most once a second), and this engine learns the peer from its answer. Call it
    /// before opening connections from several addresses.
    pub fn announce_to<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, peer: Ipv4Addr) {
        for &ip in &self.addresses {
            if neighbor::send_arp(device, now, self.mac, ip, peer, None) {
                self.neighbors.note_asked(peer, now);
            }
        }
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

    /// Opens a connection to `remote` (SEMANTICS C1), run by `session` once established. The source
    /// address is the engine's addresses in turn; the source port is a free ephemeral port (not in
    /// use toward `remote`, not in TIME_WAIT, and this core's under [`Engine::set_affinity`]). The
    /// SYN leaves on the next poll. Returns the connection's slot id.
    pub fn connect(&mut self, remote: SocketAddrV4, session: Session) -> Result<u32, ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 {
            return Err(ConnectError::BadRemote(remote));
        }
        let t = self.pick_tuple(remote)?;
        Ok(self.open(t, session, None))
    }

    /// Opens a connection from `local` (when the caller bound one; port 0: an ephemeral port) to
    /// `remote`, whose handshake must complete within `timeout` (ETIMEDOUT, or EHOSTUNREACH when
    /// not even the SYN could leave for lack of an ARP answer). A 4-tuple in TIME_WAIT is
    /// reported with its expiry ([`ConnectError::TimeWait`]).
    pub fn connect_from(
        &mut self,
        now: Instant,
        local: Option<SocketAddrV4>,
        remote: SocketAddrV4,
        timeout: Option<Duration>,
        session: Session,
    ) -> Result<u32, ConnectError> {
        if remote.ip().is_unspecified() || remote.port() == 0 || remote.ip().is_broadcast() {
            return Err(ConnectError::BadRemote(remote));
        }
        let t = match local {
            Some(l) if l.port() != 0 || !l.ip().is_unspecified() => {
                let ip = if l.ip().is_unspecified() { self.addresses[0] } else { *l.ip() };
                if !self.addresses.contains(&ip) {
                    return Err(ConnectError::BadLocal(l));
                }
                if l.port() == 0 {
                    self.pick_tuple_from(ip, remote)?
                } else {
                    let t = FourTuple {
                        remote_ip: *remote.ip(),
                        local_ip: ip,
                        remote_port: remote.port(),
                        local_port: l.port(),
                    };
                    let local = SocketAddrV4::new(ip, l.port());
                    if self.flows.contains_key(&t) || self.by_port.contains_key(&l.port()) {
                        return Err(ConnectError::InUse { local, remote });
                    }
                    if let Some(until) = self.time_wait.expiry(&t, now) {
                        return Err(ConnectError::TimeWait { local, remote, until });
                    }
                    t
                }
            }
            _ => self.pick_tuple(remote)?,
        };
        let deadline = timeout.map(|d| now + smoltcp::time::Duration::from_micros(d.as_micros() as u64));
        Ok(self.open(t, session, deadline))
    }

    /// A free 4-tuple toward `remote` from the next source address in turn.
    fn pick_tuple(&mut self, remote: SocketAddrV4) -> Result<FourTuple, ConnectError> {
        let local_ip = self.addresses[self.next_source % self.addresses.len()];
        self.next_source = self.next_source.wrapping_add(1);
        self.pick_tuple_from(local_ip, remote)
    }

    /// A free ephemeral port from `local_ip` toward `remote`.
    fn pick_tuple_from(&mut self, local_ip: Ipv4Addr, remote: SocketAddrV4) -> Result<FourTuple, ConnectError> {
        let span = EPHEMERAL.end - EPHEMERAL.start;
        let mut tuple = None;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port + 1 >= EPHEMERAL.end { EPHEMERAL.start } else { port + 1 };
            let t = FourTuple { remote_ip: *remote.ip(), local_ip, remote_port: remote.port(), local_port: port };
            if self.flows.contains_key(&t) || self.time_wait.contains(&t) || self.by_port.contains_key(&port) {
                continue;
            }
            if self.affinity.as_ref().is_some_and(|mine| !mine(&t)) {
                continue;
            }
            tuple = Some(t);
            break;
        }
        tuple.ok_or(ConnectError::NoPorts(remote))
    }

    /// Starts the handshake of an outgoing connection on `t`; returns its slot.
    fn open(&mut self, t: FourTuple, session: Session, deadline: Option<Instant>) -> u32 {
        let id = self.take_slot();
        let slot = &mut self.slots[id as usize];
        let s = slot.set.get_mut::<tcp::Socket>(slot.handle);
        s.connect(self.iface.context(), (t.remote_ip, t.remote_port), (t.local_ip, t.local_port))
            .expect("a pooled socket is closed; remote and local were checked");
        configure(s);
        slot.phase = Phase::Client { session, established: false };
        slot.tuple = Some(t);
        slot.peer_mac = [0; 6]; // its next hop is resolved before the SYN leaves
        slot.connect_deadline = deadline;
        if let Phase::Client { session: Session::Bridge(end), .. } = &slot.phase {
            end.attach(id, SocketAddrV4::new(t.local_ip, t.local_port), SocketAddrV4::new(t.remote_ip, t.remote_port));
        }
        self.flows.insert(t, id);
        self.stats.open += 1;
        self.mark_dirty(id); // the SYN goes out on egress
        id
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
            slot.ended_by_engine = Some(End::Aborted);
            slot.socket().abort();
            n += 1;
            self.mark_dirty(id);
        }
        n
    }

    /// Takes requests from other threads through `commands` from now on ([`bridge`]).
    pub fn attach_commands(&mut self, commands: Arc<Commands>) {
        self.commands = Some(commands);
    }

    /// Runs the queued commands, and the deferred connects whose time has come.
    fn commands(&mut self, now: Instant) {
        // Taken out for the turn (and put back below): no reference count touched per poll.
        let Some(q) = self.commands.take() else { return };
        let mut wakes = std::mem::take(&mut self.wakes);
        q.take_overflow(&mut wakes);
        for shared in wakes.drain(..) {
            self.wake(&shared);
        }
        self.wakes = wakes;
        while let Some(c) = q.pop() {
            match c {
                Command::Wake(shared) => self.wake(&shared),
                Command::Listen(shared, reply) => {
                    let _ = reply.send(self.listen_bridged(shared));
                }
                Command::Unlisten(port) => self.unlisten(port),
                Command::Connect(req) => self.connect_bridged(now, req),
            }
        }
        if !self.deferred.is_empty() {
            let due: Vec<ConnectRequest> = {
                let (due, later): (Vec<_>, Vec<_>) = self.deferred.drain(..).partition(|d| d.0 <= now);
                self.deferred = later;
                due.into_iter().map(|d| d.1).collect()
            };
            for req in due {
                self.connect_bridged(now, req);
            }
        }
        self.commands = Some(q);
    }

    /// An application touched a bridged connection: drive it on this turn.
    fn wake(&mut self, shared: &Arc<bridge::ConnShared>) {
        let id = bridge::slot_of(shared);
        let Some(slot) = self.slots.get(id as usize) else { return };
        let ours = match &slot.phase {
            Phase::Accepted(Session::Bridge(end)) | Phase::Client { session: Session::Bridge(end), .. } => {
                Arc::ptr_eq(end.shared(), shared)
            }
            _ => false,
        };
        if ours {
            self.mark_dirty(id);
        }
    }

    /// Opens a bridged connection; failures end it at once with the reason the application sees.
    fn connect_bridged(&mut self, now: Instant, req: ConnectRequest) {
        // SEMANTICS C6: a reconnect from a bound port to the same remote waits out the previous
        // 4-tuple's TIME_WAIT.
        if let Some(l) = req.local.filter(|l| l.port() != 0) {
            let local_ip = if l.ip().is_unspecified() { self.addresses[0] } else { *l.ip() };
            let t = FourTuple {
                remote_ip: *req.remote.ip(),
                local_ip,
                remote_port: req.remote.port(),
                local_port: l.port(),
            };
            if let Some(until) = self.time_wait.expiry(&t, now) {
                self.deferred.push((until, req));
                return;
            }
        }
        let ConnectRequest { end, local, remote, timeout } = req;
        let shared = end.shared().clone();
        if let Err(e) = self.connect_from(now, local, remote, timeout, Session::Bridge(end)) {
            bridge::fail(&shared, &e);
        }
    }

    /// Listens on `shared.port`, handing connections to the shared accept queue.
    fn listen_bridged(&mut self, shared: Arc<ListenerShared>) -> Result<(), ListenError> {
        let port = shared.port;
        if port == 0 {
            return Err(ListenError::ZeroPort);
        }
        if self.by_port.contains_key(&port) {
            return Err(ListenError::InUse(port));
        }
        let (backlog, policy, on_full) = (shared.backlog, shared.policy, shared.on_full);
        self.add_listener(port, ServiceKind::Bridge(shared), backlog, policy, on_full);
        Ok(())
    }

    /// Stops listening on `port`: its armed sockets go back to the pool; connections it already
    /// handed over stay; half-open ones are reset when their handshake completes.
    fn unlisten(&mut self, port: u16) {
        let Some(li) = self.by_port.remove(&port) else { return };
        let l = &mut self.listeners[li];
        l.closed = true;
        // Connections handed over but never accepted are reset, as a closed listening socket's
        // are; then the accept queue is let go.
        if let ServiceKind::Bridge(shared) = std::mem::replace(&mut l.service, ServiceKind::Hold) {
            while let Some(incoming) = shared.pop() {
                incoming.end.abort();
            }
            l.stats.queued = 0; // a bridged listener's count was the shared queue's
        }
        for id in l.ring.drain(..) {
            let slot = &mut self.slots[id as usize];
            slot.socket().abort(); // LISTEN → CLOSED, nothing sent
            slot.phase = Phase::Free;
            self.free.push(id);
        }
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

    /// Runs a connection that had something happen: handshake completion, its session, egress,
    /// its next timer, or its end.
    fn service<D: BurstDevice + ?Sized>(&mut self, now: Instant, device: &mut D, id: u32) {
        self.touch(id);
        let slot = &mut self.slots[id as usize];
        slot.dirty = false;
        let sock = slot.socket();
        let state = sock.state();
        if sock.send_queue() == 0 {
            slot.in_flight_since = None; // all acknowledged (the session has not queued more yet)
        }
        if matches!(slot.phase, Phase::HalfOpen) && state == tcp::State::Listen {
            // An RST in SYN-RECEIVED returns smoltcp's socket to LISTEN (RFC 793, passive open):
            // for the engine that connection is over. Without this the slot would stay half-open
            // for ever, counted against the backlog.
            slot.socket().abort();
            slot.ended_by_engine = Some(End::Reset);
            self.release(now, id, false);
            return;
        }
        if matches!(slot.phase, Phase::HalfOpen)
            && !matches!(state, tcp::State::Listen | tcp::State::SynReceived | tcp::State::Closed)
        {
            let l = &mut self.listeners[slot.listener];
            l.stats.half_open -= 1;
            l.stats.completed += 1;
            slot.established_at = Some(now);
            slot.heard(now);
            self.stats.established += 1;
            slot.phase = match (&l.service, l.service.session()) {
                (_, Some(session)) => {
                    l.stats.accepted += 1;
                    Phase::Accepted(session)
                }
                (_, None) if l.closed => {
                    // The listener went away while this handshake was in flight: reset it.
                    l.stats.queued += 1;
                    slot.socket().abort();
                    slot.ended_by_engine = Some(End::Aborted);
                    Phase::Queued
                }
                (ServiceKind::Bridge(shared), None) => {
                    let t = slot.tuple.expect("a half-open connection has its 4-tuple");
                    let (local, remote) =
                        (SocketAddrV4::new(t.local_ip, t.local_port), SocketAddrV4::new(t.remote_ip, t.remote_port));
                    let commands = self.commands.clone().expect("bridged listeners come through commands");
                    let (end, app) = bridge::pair(shared.ring_bytes, shared.ring_bytes, commands);
                    end.attach(id, local, remote);
                    end.established();
                    if shared.push(Incoming { end: app, local, remote }).is_err() {
                        // Other cores filled the shared queue first.
                        l.stats.refused += 1;
                        slot.socket().abort();
                        slot.ended_by_engine = Some(End::Aborted);
                    } else {
                        l.stats.accepted += 1;
                    }
                    Phase::Accepted(Session::Bridge(end))
                }
                (_, None) => {
                    l.stats.queued += 1;
                    Phase::Queued
                }
            };
        }
        if let Phase::Client { established, session } = &mut slot.phase {
            if !*established && !matches!(state, tcp::State::SynSent | tcp::State::Closed) {
                *established = true;
                slot.connect_deadline = None;
                slot.established_at = Some(now);
                self.stats.connected += 1;
                if let Session::Bridge(end) = session {
                    end.established();
                }
                slot.heard(now);
            }
        }
        if let Some(deadline) = slot.connect_deadline {
            if now >= deadline {
                // The handshake did not complete in time: ETIMEDOUT, or EHOSTUNREACH if not even
                // the SYN could leave (no ARP answer).
                slot.connect_deadline = None;
                slot.ended_by_engine = Some(if slot.emitted { End::TimedOut } else { End::Unreachable });
                slot.socket().abort();
            }
        }
        if slot.give_up(self.tcp_timeout).is_some_and(|t| now >= t) && slot.ended_by_engine.is_none() {
            // Waited for the peer, which stayed silent, for `tcp_timeout`: reset.
            slot.ended_by_engine = Some(End::TimedOut);
            slot.socket().abort();
        }
        let abort = match &slot.phase {
            Phase::Accepted(Session::Bridge(end)) | Phase::Client { session: Session::Bridge(end), .. } => {
                end.abort_requested()
            }
            _ => false,
        };
        if abort && slot.ended_by_engine.is_none() {
            slot.ended_by_engine = Some(End::Aborted);
            slot.socket().abort();
        }
        // Every abort above says why in `ended_by_engine`: without one, the state is as read.
        let state = if slot.ended_by_engine.is_some() { slot.socket().state() } else { state };
        let handshaking = matches!(state, tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived);
        if !slot.closing && !handshaking && !matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
            let sock = slot.set.get_mut::<tcp::Socket>(slot.handle);
            let close = match &mut slot.phase {
                Phase::Accepted(session) | Phase::Client { session, .. } => {
                    session.drive(&mut TcpStream(sock, &mut slot.bytes)) == Progress::Close
                }
                // A queued connection whose peer has gone leaves the queue.
                Phase::Queued => state == tcp::State::CloseWait,
                _ => false,
            };
            if close {
                sock.close();
                // The ACK of the peer's FIN must leave before the socket is recycled into the
                // TIME_WAIT table (smoltcp delays it 10 ms otherwise).
                sock.set_ack_delay(None);
                slot.closing = true;
            }
        }
        // smoltcp sends at most one segment per call. After each, its `poll_at` (which mirrors
        // the start of its dispatch) says whether another is due now; asking it is cheaper than a
        // call that sends nothing, and its answer is needed below anyway. An open connection
        // whose segment carried the last byte queued needs no asking (see `Slot::sent_all`).
        let open = matches!(slot.socket().state(), tcp::State::Established | tcp::State::CloseWait);
        let mut emitted = false;
        let mut poll_at = None;
        if slot.peer_mac == [0; 6] && matches!(slot.phase, Phase::Client { .. }) {
            // A connection the engine opened that has not heard its peer yet: its next hop's MAC.
            let t = slot.tuple.expect("an outgoing connection has its 4-tuple");
            match self.resolve(now, device, &t) {
                Some(mac) => self.slots[id as usize].peer_mac = mac,
                // Wait for an ARP frame, or ask again in a second.
                None => poll_at = Some(Some(now + neighbor::ASK_EVERY)),
            }
        }
        let slot = &mut self.slots[id as usize];
        let dst = slot.peer_mac;
        let mut dev = Ether::new(device, self.mac, dst);
        while dst != [0; 6] && self.iface.poll_egress(now, &mut dev, &mut slot.set) == PollResult::SocketStateChanged {
            emitted = true;
            let sent = dev.sent();
            if let Some(s) = sent.filter(|s| s.syn) {
                slot.iss = s.seq;
            }
            // The retransmission timer started no earlier than the data in flight did: this
            // segment's, or older data's that another timer firing since (a delayed ACK's, say)
            // has not moved. Once that is a second old, smoltcp is asked.
            let rto_at = slot.in_flight_since.unwrap_or(now) + SMOLTCP_MIN_RTO;
            if open && rto_at > now && slot.sent_all(sent) {
                let at = earliest(slot.timer_at, Some(rto_at));
                debug_assert!(
                    self.iface.poll_at(now, &slot.set).is_none_or(|t| t > now && Some(t) >= at),
                    "smoltcp's next poll is before the engine's"
                );
                poll_at = Some(at);
                break;
            }
            let at = self.iface.poll_at(now, &slot.set);
            if at.is_none_or(|t| t > now) {
                poll_at = Some(at);
                break;
            }
        }
        slot.emitted |= emitted;
        let sock = slot.set.get_mut::<tcp::Socket>(slot.handle);
        let state = sock.state();
        if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
            self.release(now, id, state == tcp::State::TimeWait);
            return;
        }
        let queued = sock.send_queue() > 0;
        slot.in_flight_since = if queued { Some(slot.in_flight_since.unwrap_or(now)) } else { None };
        let wants_to_send = queued
            || matches!(
                state,
                tcp::State::SynSent
                    | tcp::State::SynReceived
                    | tcp::State::FinWait1
                    | tcp::State::Closing
                    | tcp::State::LastAck
            );
        slot.waiting = match (slot.waiting, wants_to_send) {
            (Some(Wait::Answer { asked_at }), true) => {
                Some(Wait::Answer { asked_at: asked_at.or(emitted.then_some(now)) })
            }
            (_, true) => Some(Wait::Answer { asked_at: emitted.then_some(now) }),
            (Some(w @ Wait::PeerFin { .. }), false) if state == tcp::State::FinWait2 => Some(w),
            (_, false) if state == tcp::State::FinWait2 => Some(Wait::PeerFin { since: now }),
            (_, false) => None,
        };
        let give_up = slot.give_up(self.tcp_timeout);
        let poll_at = poll_at.unwrap_or_else(|| self.iface.poll_at(now, &slot.set));
        let at = earliest(earliest(poll_at, slot.connect_deadline), give_up);
        if !emitted && wants_to_send && !slot.neighbor_wait {
            // Maybe blocked on ARP: poll it again when an ARP frame arrives.
            slot.neighbor_wait = true;
            self.neighbor_wait.push(id);
        }
        slot.timer_at = at;
        if let Some(at) = at {
            // One live entry per slot: add one only if none is filed at or before this deadline.
            if slot.wheel_tick.is_none_or(|t| timer::tick_of(at) < t) {
                slot.wheel_tick = Some(self.timers.insert(id, at));
            }
        }
    }

    /// Returns an ended connection's slot to the pool; a connection in TIME_WAIT leaves an entry.
    fn release(&mut self, now: Instant, id: u32, time_wait: bool) {
        let slot = &mut self.slots[id as usize];
        let end = match slot.ended_by_engine.take() {
            Some(e) => e,
            None if slot.rst_seen => End::Reset,
            None if time_wait || slot.peer_fin_end.is_some() => End::Graceful,
            None if slot.emitted => End::TimedOut,
            None => End::Unreachable,
        };
        if let Some(t) = slot.tuple.take() {
            self.flows.remove(&t);
            if time_wait {
                self.time_wait.insert(t, slot.peer_fin_end.unwrap_or(0), now);
            }
        }
        match std::mem::replace(&mut slot.phase, Phase::Free) {
            Phase::HalfOpen => self.listeners[slot.listener].stats.half_open -= 1,
            Phase::Queued => self.listeners[slot.listener].stats.queued -= 1,
            Phase::Accepted(mut session) => session.closed(true, end),
            Phase::Client { mut session, established } => {
                if !established {
                    self.stats.connect_failed += 1;
                }
                session.closed(established, end);
            }
            Phase::Armed | Phase::Free => unreachable!("only connections are released"),
        }
        self.stats.open -= 1;
        self.stats.closed += 1;
        slot.peer_fin_end = None;
        slot.peer_mac = [0; 6];
        slot.closing = false;
        slot.rst_seen = false;
        slot.emitted = false;
        slot.connect_deadline = None;
        slot.waiting = None;
        slot.established_at = None;
        slot.bytes = [0; 2];
        slot.in_flight_since = None;
        slot.ooo_until = None;
        // `neighbor_wait` stays: the slot may still be in the list (it is skipped while free).
        slot.timer_at = None; // a wheel entry still filed for it fires and is ignored
        self.free.push(id);
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            slots: self.slots.len(),
            free_slots: self.free.len(),
            arp_requests: self.neighbors.asked,
            neighbors: self.neighbors.len(),
            ..self.stats
        }
    }

    /// Every listener of the engine, with its settings and counters (for introspection).
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        let mut v: Vec<ListenerInfo> = self
            .by_port
            .values()
            .map(|&li| {
                let l = &self.listeners[li];
                let mut stats = l.stats;
                if let ServiceKind::Bridge(shared) = &l.service {
                    stats.queued = shared.queued();
                    stats.silent_closed = shared.silent_closed.load(std::sync::atomic::Ordering::Relaxed);
                }
                ListenerInfo { port: l.port, service: l.service.name(), policy: l.policy, on_full: l.on_full, stats }
            })
            .collect();
        v.sort_by_key(|l| l.port);
        v
    }

    /// Up to `limit` open connections (handshakes in progress included), for introspection; a
    /// walk over the slots, so for operators, not for the packet path.
    pub fn connections(&mut self, now: Instant, limit: usize) -> Vec<ConnectionInfo> {
        let mut v = Vec::new();
        for slot in &mut self.slots {
            if v.len() >= limit {
                break;
            }
            let Some(t) = slot.tuple else { continue };
            let (kind, listener) = match &slot.phase {
                Phase::HalfOpen => ("half-open", Some(self.listeners[slot.listener].port)),
                Phase::Queued => ("queued", Some(self.listeners[slot.listener].port)),
                Phase::Accepted(_) => ("accepted", None),
                Phase::Client { .. } => ("outgoing", None),
                Phase::Free | Phase::Armed => continue,
            };
            let state = slot.set.get_mut::<tcp::Socket>(slot.handle).state();
            v.push(ConnectionInfo {
                local: SocketAddrV4::new(t.local_ip, t.local_port),
                remote: SocketAddrV4::new(t.remote_ip, t.remote_port),
                state: tcp_state_name(state),
                kind,
                listener,
                connected: slot.established_at.map(|at| Duration::from_micros((now - at).total_micros())),
                bytes_in: slot.bytes[0],
                bytes_out: slot.bytes[1],
            });
        }
        v
    }

    /// The counters of the listener on `port`.
    pub fn listener_stats(&self, port: u16) -> Option<ListenerStats> {
        self.by_port.get(&port).map(|&li| self.listeners[li].stats)
    }

    pub fn time_wait_stats(&self) -> TimeWaitStats {
        self.time_wait.stats()
    }

    /// Where the engine's connection memory is, and what a pool slot costs all told.
    pub fn memory(&self) -> MemoryStats {
        let slots = self.slots.len().max(1);
        let flow_bucket = std::mem::size_of::<(FourTuple, u32)>() + 1;
        let total = self.arena.stats().reserved
            + self.storage.reserved() * std::mem::size_of::<SocketStorage>()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.flows.capacity() * flow_bucket
            + self.free.capacity() * 4;
        MemoryStats {
            buffers: self.arena.stats(),
            socket_storage: self.storage.reserved(),
            slots: self.slots.len(),
            flow_capacity: self.flows.capacity(),
            bytes_per_slot: total / slots,
        }
    }

    /// Slots on the list of connections polled again when an ARP frame arrives (at most the pool).
    pub fn neighbor_waiters(&self) -> usize {
        self.neighbor_wait.len()
    }

    /// Entries in the timer wheel, live or waiting to be ignored (about one per slot at most).
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
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
    if cfg.time_wait > time_wait::MAX_DELAY {
        return Err(EngineError::TimeWaitOutOfRange(cfg.time_wait));
    }
    if !(1..=1 << 20).contains(&cfg.max_backlog) {
        return Err(EngineError::BadMaxBacklog(cfg.max_backlog));
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&cfg.tcp_timeout) {
        return Err(EngineError::BadTimeout(cfg.tcp_timeout));
    }
    if let Some(d) = cfg.buffer_idle {
        if !(reclaim::TICK..=Duration::from_secs(86400)).contains(&d) {
            return Err(EngineError::BadBufferIdle(d));
        }
    }
    // Every frame's destination is looked up in the engine's addresses (`flow::classify`), one
    // by one: eight keep that short.
    if cfg.extra_addresses.len() > 7 {
        return Err(EngineError::TooManyAddresses(1 + cfg.extra_addresses.len()));
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(cfg.prefix_len)).unwrap_or(0);
    for &x in &cfg.extra_addresses {
        if x.is_unspecified()
            || x.is_broadcast()
            || x.is_multicast()
            || u32::from(x) & mask != u32::from(a) & mask
            || x == a
        {
            return Err(EngineError::BadExtraAddress(x));
        }
    }
    let mut ports = std::collections::HashSet::new();
    for l in &cfg.listeners {
        if l.port == 0 {
            return Err(EngineError::ZeroPort(l.port));
        }
        if !ports.insert(l.port) {
            return Err(EngineError::DuplicatePort(l.port));
        }
    }
    Ok(())
}
