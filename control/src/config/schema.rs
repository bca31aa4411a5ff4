//! The configuration as it is written: the TOML tables, their fields and their defaults.
//!
//! Every table has `deny_unknown_fields`, so a misspelt field is an error, not a silent default.
//! Deserializing checks only types; [`super::validate`] checks the values.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

/// The whole file: one field per table (`[eal]`, `[engine]`, ...) or array of tables
/// (`[[port]]`, `[[service]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: EalSection,
    #[serde(default)]
    pub engine: EngineSection,
    #[serde(default)]
    pub switch: SwitchSection,
    #[serde(default)]
    pub control: ControlSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(rename = "port", default)]
    pub ports: Vec<PortSection>,
    #[serde(rename = "service", default)]
    pub services: Vec<ServiceSection>,
}

/// `[eal]`: how DPDK's EAL is started.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EalSection {
    pub lcores: String,
    pub memory_mb: u32,
    pub no_huge: bool,
    pub file_prefix: String,
    pub args: Vec<String>,
}

impl Default for EalSection {
    fn default() -> Self {
        EalSection {
            lcores: "0".into(),
            memory_mb: 256,
            no_huge: true,
            file_prefix: "switchyard".into(),
            args: Vec::new(),
        }
    }
}

/// `[engine]`: the engines' cores, their polling and their TCP settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Cores (EAL lcores) running an engine each; every port gets one queue pair per core.
    pub cores: u16,
    pub busy_poll: bool,
    pub idle_polls: u32,
    pub idle_sleep_max_us: u64,
    pub tcp_rx_buffer: usize,
    pub tcp_tx_buffer: usize,
    /// TIME_WAIT delay, 0 to 300 s (SEMANTICS T1).
    pub time_wait_secs: u64,
    /// Backlog values above this are clamped to it (B5).
    pub max_backlog: usize,
    /// Connections per core at most: beyond, a SYN meets its listener's `on_full` and a connect
    /// fails with ENOBUFS (counted).
    pub max_connections: usize,
    /// Half-open connections per listener and core at most (as `tcp_max_syn_backlog`): beyond,
    /// the oldest makes room for the new SYN (counted); half-open connections never make a
    /// listener refuse.
    pub syn_backlog: usize,
    /// TIME_WAIT entries per core at most (as `tcp_max_tw_buckets`): beyond, a closing
    /// connection skips TIME_WAIT (counted).
    pub max_time_wait: usize,
    /// Waiting this long for a silent peer (data, SYN-ACK or FIN unacknowledged) resets a
    /// connection; an idle one never times out.
    pub tcp_timeout_secs: u64,
    /// Idle connections give their buffer pages back after this long (0: never).
    pub buffer_idle_secs: u64,
    /// Graceful drain on SIGTERM/SIGINT: how long open connections may go on (0: none).
    pub drain_secs: u64,
    /// The engine's own TCP: congestion control, `cubic` (RFC 9438) or `reno` (RFC 5681).
    pub congestion: String,
    /// The retransmission timeout's floor (RFC 6298 §2.4), milliseconds.
    pub min_rto_ms: u64,
    /// The longest an ACK is delayed, milliseconds (under 500, RFC 9293 §3.8.6.3).
    pub delayed_ack_ms: u64,
    /// Out-of-order ranges a connection keeps at most (beyond, a segment is dropped, counted).
    pub max_ooo_ranges: usize,
    /// Keepalive: probe a peer silent this long with nothing outstanding (0: off, the default).
    pub keepalive_secs: u64,
    pub keepalive_interval_secs: u64,
    pub keepalive_probes: u32,
    /// Run established connections on smoltcp instead of the engine's own TCP (for comparison).
    pub smoltcp_established: bool,
    /// SYN cookies (RFC 4987): `auto` (once a listener's half-open budget is used up), `always`
    /// or `never` (the oldest half-open connection gives way instead).
    pub syn_cookies: String,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            cores: 1,
            busy_poll: false,
            idle_polls: 1000,
            idle_sleep_max_us: 1000,
            tcp_rx_buffer: 65536,
            tcp_tx_buffer: 65536,
            time_wait_secs: 240,
            max_backlog: 4096,
            max_connections: engine::DEFAULT_MAX_CONNECTIONS,
            syn_backlog: 4096,
            max_time_wait: engine::DEFAULT_MAX_TIME_WAIT,
            tcp_timeout_secs: 60,
            buffer_idle_secs: 30,
            drain_secs: 10,
            congestion: "cubic".into(),
            min_rto_ms: 200,
            delayed_ack_ms: 40,
            max_ooo_ranges: 32,
            keepalive_secs: 0,
            keepalive_interval_secs: 75,
            keepalive_probes: 9,
            smoltcp_established: false,
            syn_cookies: "auto".into(),
        }
    }
}

impl EngineSection {
    pub fn idle_sleep_max(&self) -> Duration {
        Duration::from_micros(self.idle_sleep_max_us)
    }

    /// The settings of the engine's own TCP (checked: `validate::engine`).
    pub fn tcp(&self) -> engine::tcp::conn::TcpConfig {
        use engine::tcp::cc::Algorithm;
        engine::tcp::conn::TcpConfig {
            min_rto: Duration::from_millis(self.min_rto_ms),
            ack_delay: Duration::from_millis(self.delayed_ack_ms),
            congestion: if self.congestion == "reno" { Algorithm::Reno } else { Algorithm::Cubic },
            max_ooo_ranges: self.max_ooo_ranges,
            keepalive: (self.keepalive_secs > 0).then(|| Duration::from_secs(self.keepalive_secs)),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_secs),
            keepalive_probes: self.keepalive_probes,
            header_prediction: true,
        }
    }

    /// `syn_cookies` as the engine takes it (checked: `validate::engine`).
    pub fn syn_cookies(&self) -> engine::SynCookies {
        match self.syn_cookies.as_str() {
            "always" => engine::SynCookies::Always,
            "never" => engine::SynCookies::Never,
            _ => engine::SynCookies::Auto,
        }
    }

    /// `buffer_idle_secs` as the engine takes it.
    pub fn buffer_idle(&self) -> Option<Duration> {
        (self.buffer_idle_secs > 0).then(|| Duration::from_secs(self.buffer_idle_secs))
    }
}

/// Where the appliance answers `switchyard ctl`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// The Unix socket; empty: `/run/switchyard/<eal.file_prefix>.sock`.
    pub socket: String,
}

/// Where Prometheus scrapes the appliance.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `ADDRESS:PORT` for `GET /metrics` (kernel path); empty: no metrics endpoint.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: "127.0.0.1:9464".into() }
    }
}

/// The socket switch's settings (see [`crate::switch::SwitchConfig`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwitchSection {
    pub max_first_data: usize,
    pub connect_timeout_secs: u64,
    /// `A.B.C.D/N` networks reached through the first port's gateway.
    pub fast_routes: Vec<String>,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection { max_first_data: 64 * 1024, connect_timeout_secs: 30, fast_routes: Vec::new() }
    }
}

/// `[[port]]`: one DPDK port, in the order of the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    pub profile: String,
    #[serde(default)]
    pub devargs: String,
    /// `A.B.C.D/N`.
    pub address: String,
    pub gateway: Option<Ipv4Addr>,
    /// `"port"` (default) or `"none"`: see [`ResolvedPort::unchecked`](super::ResolvedPort::unchecked).
    #[serde(default = "port_checksums")]
    pub checksums: String,
    /// A faulty wire on this port, for tests and benchmarks only: refused unless the environment
    /// sets `SWITCHYARD_ALLOW_FAULTS=1`.
    pub faults: Option<FaultsSection>,
}

/// `[port.faults]`: what the port's wire does to frames, each way, from a seed
/// (`runtime::device::faults`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSection {
    /// Frames lost, in percent.
    pub loss_percent: f64,
    /// Frames followed by a copy, in percent.
    pub duplicate_percent: f64,
    /// Frames held back so that later ones overtake them, in percent.
    pub reorder_percent: f64,
    /// Every frame's extra latency, in microseconds.
    pub delay_us: u64,
    /// The seed of the draws (each core and direction draws from its own stream).
    pub seed: u64,
}

fn port_checksums() -> String {
    "port".into()
}

/// The listen settings every service has (SEMANTICS B).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    pub port: u16,
    #[serde(default = "backlog")]
    pub backlog: usize,
    /// `bsd`, `solaris`, `exact` or `linux`.
    #[serde(default = "policy")]
    pub policy: String,
    /// `refuse` or `drop`.
    #[serde(default = "on_full")]
    pub on_full: String,
}

/// `[[service]]`: a built-in service on every port, chosen by `kind`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ServiceSection {
    Echo {
        #[serde(default = "echo_port")]
        port: u16,
        #[serde(default = "backlog")]
        backlog: usize,
        #[serde(default = "policy")]
        policy: String,
        #[serde(default = "on_full")]
        on_full: String,
    },
    Http {
        #[serde(default = "http_port")]
        port: u16,
        #[serde(default = "backlog")]
        backlog: usize,
        #[serde(default = "policy")]
        policy: String,
        #[serde(default = "on_full")]
        on_full: String,
        #[serde(default = "http_body")]
        body: String,
        #[serde(default = "content_type")]
        content_type: String,
        /// A request head not whole this long after the connection started or the previous
        /// response was queued is answered 408 and its connection closed (0: no limit).
        #[serde(default = "header_timeout_secs")]
        header_timeout_secs: u64,
    },
    Hold {
        port: u16,
        #[serde(default = "backlog")]
        backlog: usize,
        #[serde(default = "policy")]
        policy: String,
        #[serde(default = "on_full")]
        on_full: String,
    },
    /// A TCP proxy on the socket switch: accepts with first data on both providers, opens the
    /// upstream with that data (connect_ex), relays both ways.
    Proxy {
        port: u16,
        #[serde(default = "backlog")]
        backlog: usize,
        #[serde(default = "policy")]
        policy: String,
        #[serde(default = "on_full")]
        on_full: String,
        /// `ADDRESS:PORT` of each upstream, taken in turn.
        upstreams: Vec<String>,
        /// An upstream whose connect failed is skipped this long.
        #[serde(default = "retry_secs")]
        retry_secs: u64,
        /// A client connected this long without sending anything is closed (SEMANTICS A4).
        #[serde(default = "silent_secs")]
        silent_secs: u64,
        /// Wait for the client's first data before choosing an upstream (SEMANTICS A2); false
        /// for protocols where the server speaks first.
        #[serde(default = "yes")]
        first_data: bool,
    },
}

fn retry_secs() -> u64 {
    5
}
fn silent_secs() -> u64 {
    30
}
fn yes() -> bool {
    true
}

fn echo_port() -> u16 {
    7
}
fn http_port() -> u16 {
    80
}
fn backlog() -> usize {
    511
}
fn policy() -> String {
    "linux".into()
}
fn on_full() -> String {
    "refuse".into()
}
fn http_body() -> String {
    "Hello from Switchyard\n".into()
}
fn content_type() -> String {
    "text/plain".into()
}
fn header_timeout_secs() -> u64 {
    30
}

impl ServiceSection {
    /// The listen settings, whatever the kind.
    pub fn listen(&self) -> ListenSection {
        match self {
            ServiceSection::Echo { port, backlog, policy, on_full }
            | ServiceSection::Http { port, backlog, policy, on_full, .. }
            | ServiceSection::Hold { port, backlog, policy, on_full }
            | ServiceSection::Proxy { port, backlog, policy, on_full, .. } => {
                ListenSection { port: *port, backlog: *backlog, policy: policy.clone(), on_full: on_full.clone() }
            }
        }
    }
    pub fn port(&self) -> u16 {
        self.listen().port
    }
    pub fn backlog(&self) -> usize {
        self.listen().backlog
    }
    pub fn kind(&self) -> &'static str {
        match self {
            ServiceSection::Echo { .. } => "echo",
            ServiceSection::Http { .. } => "http",
            ServiceSection::Hold { .. } => "hold",
            ServiceSection::Proxy { .. } => "proxy",
        }
    }
}
