//! An engine's configuration ([`EngineConfig`]), its listeners ([`ListenerSpec`]), and the checks
//! that refuse a bad one before anything is built ([`EngineError`]).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::listener::{BacklogPolicy, OnFull};
use crate::services::ServiceKind;
use crate::{neighbor, reclaim, time_wait};

/// Connections per engine, by default ([`EngineConfig::max_connections`]): with the default 64 KiB
/// buffers each way, at most 8 GiB of buffers per core.
pub const DEFAULT_MAX_CONNECTIONS: usize = 65_536;
/// The largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1 << 24;
/// TIME_WAIT entries per engine, by default (Linux's `tcp_max_tw_buckets` on a large machine);
/// at about 40 bytes an entry, about 10 MiB.
pub const DEFAULT_MAX_TIME_WAIT: usize = 262_144;

/// How long an idle connection keeps its buffer pages, by default.
pub const DEFAULT_BUFFER_IDLE: Duration = Duration::from_secs(30);

/// When listeners answer a SYN with a SYN cookie instead of keeping a half-open connection
/// ([`crate::tcp::cookie`], RFC 4987 §3.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SynCookies {
    /// Once a listener's half-open budget (`syn_backlog`) is used up, as Linux's
    /// `tcp_syncookies = 1`.
    #[default]
    Auto,
    /// For every SYN.
    Always,
    /// Never: the oldest half-open connection gives way instead.
    Never,
}

/// A listener the engine starts with, running `S` (a built-in service by default).
#[derive(Clone, Debug)]
pub struct ListenerSpec<S = ServiceKind> {
    pub port: u16,
    pub service: S,
    /// The backlog value, as an application passes it to listen() (SEMANTICS B2).
    pub backlog: usize,
    pub policy: BacklogPolicy,
    pub on_full: OnFull,
}

/// Everything an engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig<S = ServiceKind> {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// More addresses in the same prefix (at most 7), used in turn with `address` as the source
    /// of outgoing connections (a load generator's many clients).
    pub extra_addresses: Vec<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub listeners: Vec<ListenerSpec<S>>,
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
    /// Connections this engine holds at most (half-open, queued, accepted and outgoing): a SYN
    /// beyond it meets its listener's `on_full` (refused or dropped, counted in
    /// [`crate::EngineStats::over_max_connections`]), a connect fails with
    /// [`crate::ConnectError::TooMany`] (ENOBUFS). The flow table is sized for it at start, so
    /// it never grows on the packet path.
    pub max_connections: usize,
    /// Half-open connections per listener at most (as Linux's `tcp_max_syn_backlog`): a SYN
    /// beyond it makes the listener give up its oldest half-open connection
    /// ([`crate::ListenerStats::syn_evicted`]); half-open connections never make a listener
    /// refuse (B1).
    pub syn_backlog: usize,
    /// TIME_WAIT entries this engine holds at most, as Linux's `tcp_max_tw_buckets`: a connection
    /// that closes beyond it skips TIME_WAIT, counted ([`crate::TimeWaitStats::overflow`]).
    pub max_time_wait: usize,
    /// A connection that waits this long for its peer, which stays silent meanwhile, is reset: sent
    /// data, a SYN-ACK or a FIN unacknowledged (counted from the first segment the peer has not
    /// answered: one that answers each window probe is not silent), or (after our FIN) the peer's
    /// FIN not coming. Only segments in the receive window count as the peer's. A connection with
    /// nothing to wait for is never timed out, however long it idles.
    pub tcp_timeout: Duration,
    /// A connection idle this long (to twice as long) with nothing in its buffers gives their
    /// pages back to the kernel ([`crate::reclaim`]); `None`: never. Buffers on hugepages never do.
    pub buffer_idle: Option<Duration>,
    /// Who runs a connection once its handshake completed: the engine's own TCP (the default:
    /// RFC 6298 timers with `tcp.min_rto`, SACK, RACK-TLP, CUBIC or Reno; see [`crate::tcp`]), or
    /// smoltcp as during the handshake (`false`; kept to compare the two byte for byte).
    pub engine_tcp: bool,
    /// Settings of the engine's own TCP.
    pub tcp: crate::tcp::conn::TcpConfig,
    /// When a SYN gets a SYN cookie (only with `engine_tcp`: a cookie's connection is the engine
    /// TCP's from its start).
    pub syn_cookies: SynCookies,
}

impl<S> EngineConfig<S> {
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
            max_connections: DEFAULT_MAX_CONNECTIONS,
            syn_backlog: 4096,
            max_time_wait: DEFAULT_MAX_TIME_WAIT,
            tcp_timeout: Duration::from_secs(60),
            buffer_idle: Some(DEFAULT_BUFFER_IDLE),
            engine_tcp: true,
            tcp: crate::tcp::conn::TcpConfig::default(),
            syn_cookies: SynCookies::Auto,
        }
    }

    /// The same configuration with each listener's service turned into a `T` (a layer above that
    /// composes the built-in services with its own takes a config of built-in ones this way).
    pub fn map_services<T>(self, mut f: impl FnMut(S) -> T) -> EngineConfig<T> {
        let EngineConfig {
            mac,
            address,
            prefix_len,
            extra_addresses,
            gateway,
            listeners,
            tcp_rx_buffer,
            tcp_tx_buffer,
            random_seed,
            time_wait,
            max_backlog,
            max_connections,
            syn_backlog,
            max_time_wait,
            tcp_timeout,
            buffer_idle,
            engine_tcp,
            tcp,
            syn_cookies,
        } = self;
        let listeners = listeners
            .into_iter()
            .map(|l| ListenerSpec {
                port: l.port,
                service: f(l.service),
                backlog: l.backlog,
                policy: l.policy,
                on_full: l.on_full,
            })
            .collect();
        EngineConfig {
            mac,
            address,
            prefix_len,
            extra_addresses,
            gateway,
            listeners,
            tcp_rx_buffer,
            tcp_tx_buffer,
            random_seed,
            time_wait,
            max_backlog,
            max_connections,
            syn_backlog,
            max_time_wait,
            tcp_timeout,
            buffer_idle,
            engine_tcp,
            tcp,
            syn_cookies,
        }
    }
}

/// Why an engine could not be built from its config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("address {0} is not a usable unicast IPv4 address")]
    BadAddress(Ipv4Addr),
    #[error("TCP setting: {0}")]
    BadTcp(String),
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
    #[error("max_connections {0} is out of range (1..=16777216)")]
    BadMaxConnections(usize),
    #[error("syn_backlog {0} is out of range (1..=1048576)")]
    BadSynBacklog(usize),
    #[error("max_time_wait {0} is out of range (0..=16777216)")]
    BadMaxTimeWait(usize),
    #[error("TCP timeout {0:?} is out of range (1 s to 1 h)")]
    BadTimeout(Duration),
    #[error("{0} addresses: at most 8 (one address and 7 extra ones)")]
    TooManyAddresses(usize),
    #[error("extra address {0} is not a unicast address inside the engine's prefix")]
    BadExtraAddress(Ipv4Addr),
    #[error("buffer idle time {0:?} is out of range (10 ms to 1 day)")]
    BadBufferIdle(Duration),
}

pub(crate) fn validate<S>(cfg: &EngineConfig<S>) -> Result<(), EngineError> {
    let a = cfg.address;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err(EngineError::BadAddress(a));
    }
    if !(1..=32).contains(&cfg.prefix_len) {
        return Err(EngineError::BadPrefix(cfg.prefix_len));
    }
    if cfg.mac[0] & 1 != 0 || cfg.mac == [0; 6] {
        return Err(EngineError::BadMac(neighbor::format_mac(&cfg.mac)));
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
    if !(1..=MAX_CONNECTIONS).contains(&cfg.max_connections) {
        return Err(EngineError::BadMaxConnections(cfg.max_connections));
    }
    if !(1..=1 << 20).contains(&cfg.syn_backlog) {
        return Err(EngineError::BadSynBacklog(cfg.syn_backlog));
    }
    if cfg.max_time_wait > MAX_CONNECTIONS {
        return Err(EngineError::BadMaxTimeWait(cfg.max_time_wait));
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&cfg.tcp_timeout) {
        return Err(EngineError::BadTimeout(cfg.tcp_timeout));
    }
    let t = &cfg.tcp;
    if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&t.min_rto) {
        return Err(EngineError::BadTcp(format!("min_rto {:?} is outside 1 ms..=60 s", t.min_rto)));
    }
    // RFC 9293 §3.8.6.3: an ACK is delayed less than 0.5 s.
    if t.ack_delay >= Duration::from_millis(500) {
        return Err(EngineError::BadTcp(format!("ack_delay {:?} is not below 500 ms", t.ack_delay)));
    }
    if !(1..=1024).contains(&t.max_ooo_ranges) {
        return Err(EngineError::BadTcp(format!("max_ooo_ranges {} is outside 1..=1024", t.max_ooo_ranges)));
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
