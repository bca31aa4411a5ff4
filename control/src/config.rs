//! The appliance's TOML configuration. Unknown fields are errors; every bad value is reported with
//! the file, the field and the value.
//!
//! ```toml
//! [eal]                     # how DPDK's EAL is started
//! lcores = "0@(0-1)"        # --lcores
//! memory_mb = 256           # -m
//! no_huge = true            # --no-huge (no hugepages needed)
//! file_prefix = "switchyard"
//! args = []                 # further EAL arguments, passed as they are
//!
//! [engine]
//! cores = 1                 # engines (one per EAL lcore); each port gets a queue pair per core
//! busy_poll = false         # true: never sleep when idle (benchmarks)
//! idle_polls = 1000         # empty loop turns before the first sleep
//! idle_sleep_max_us = 1000  # longest idle sleep
//! tcp_rx_buffer = 65536     # per connection
//! tcp_tx_buffer = 65536
//! time_wait_secs = 240      # TIME_WAIT delay, 0-300 (SEMANTICS T1)
//! max_backlog = 4096        # backlogs above are clamped (B5)
//! tcp_timeout_secs = 60     # waiting this long for a silent peer resets a connection (never
//!                           # an idle one)
//! buffer_idle_secs = 30     # a connection idle 1-2x this long with empty buffers gives their
//!                           # pages back to the kernel (normal pages only; 0: never)
//! drain_secs = 10           # on SIGTERM: listeners refuse, open connections get this long, then
//!                           # the rest are reset (0: stop at once)
//!
//! [control]
//! socket = "/run/switchyard/switchyard.sock"  # `switchyard ctl` talks to the appliance here;
//!                           # default /run/switchyard/<eal.file_prefix>.sock
//!
//! [metrics]
//! listen = "127.0.0.1:9464" # Prometheus `GET /metrics`, on the kernel path; "" turns it off
//!
//! [switch]                  # the socket switch, for applications (appliance::run_with_switch)
//! max_first_data = 65536    # largest connect_ex first buffer (SEMANTICS C5); also the size of
//!                           # each direction's ring of a fast-path connection
//! connect_timeout_secs = 30 # a connect not done by then fails with ETIMEDOUT
//! fast_routes = []          # networks reached through the first port's gateway, e.g.
//!                           # ["198.19.0.0/16"]; other destinations go to the kernel path
//!
//! [[port]]                  # one per DPDK port, in order
//! profile = "net_tap"       # a built-in profile, or a path to a profile TOML
//! devargs = "iface=sy0"     # appended to the profile's devargs
//! address = "198.18.0.2/24"
//! gateway = "198.18.0.1"    # optional
//! checksums = "port"        # "port": the port's offloads, smoltcp the rest; "none": no IPv4/TCP
//!                           # checksums sent or checked, only on a memory wire (net_memif,
//!                           # net_ring) whose other end is trusted and set the same (as Linux's
//!                           # loopback)
//!
//! [[service]]               # built-in services, on every port
//! kind = "echo"             # "echo" (port 7), "http" (port 80) or "hold" (port required)
//! port = 7
//! backlog = 511             # the listen() backlog value (SEMANTICS B2)
//! policy = "linux"          # queue limit from backlog: bsd, solaris, exact or linux
//! on_full = "refuse"        # full queue: refuse (RST at once, L4) or drop (ignore the SYN)
//!
//! [[service]]
//! kind = "http"
//! body = "Hello from Switchyard\n"
//! content_type = "text/plain"
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use engine::{BacklogPolicy, OnFull};

use crate::profile::{NicProfile, ProfileError};

/// The built-in default configuration (`control/configs/demo.toml`).
pub const DEMO: &str = include_str!("../configs/demo.toml");

/// The PMDs whose wire is memory inside this host, where `checksums = "none"` is allowed.
const MEMORY_WIRES: [&str; 2] = ["net_memif", "net_ring"];

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// The config is not valid TOML, or has a field that is unknown or of the wrong type.
    #[error("{file}: {message}")]
    Toml { file: String, message: String },
    /// A field's value is out of its range or does not fit with another field.
    #[error("{file}: {field} = {value}: {why}")]
    Value { file: String, field: String, value: String, why: String },
    /// A port's NIC profile is unknown, unreadable or invalid; the message is the profile's own.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

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
    /// Waiting this long for a silent peer (data, SYN-ACK or FIN unacknowledged) resets a
    /// connection; an idle one never times out.
    pub tcp_timeout_secs: u64,
    /// Idle connections give their buffer pages back after this long (0: never).
    pub buffer_idle_secs: u64,
    /// Graceful drain on SIGTERM/SIGINT: how long open connections may go on (0: none).
    pub drain_secs: u64,
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
            tcp_timeout_secs: 60,
            buffer_idle_secs: 30,
            drain_secs: 10,
        }
    }
}

impl EngineSection {
    pub fn idle_sleep_max(&self) -> Duration {
        Duration::from_micros(self.idle_sleep_max_us)
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

/// The control socket's path for a file prefix, when the config does not name one.
pub fn default_control_socket(file_prefix: &str) -> PathBuf {
    PathBuf::from(format!("/run/switchyard/{file_prefix}.sock"))
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    pub profile: String,
    #[serde(default)]
    pub devargs: String,
    /// `A.B.C.D/N`.
    pub address: String,
    pub gateway: Option<Ipv4Addr>,
    /// `"port"` (default) or `"none"`: see [`ResolvedPort::unchecked`].
    #[serde(default = "port_checksums")]
    pub checksums: String,
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

/// A port with its profile resolved and its address parsed.
#[derive(Clone, Debug)]
pub struct ResolvedPort {
    pub profile: NicProfile,
    pub devargs: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// `checksums = "none"`: no IPv4 or TCP checksums are sent or checked on this port (a memory
    /// wire to a trusted process; `runtime::device::MbufDevice::unchecked`).
    pub unchecked: bool,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub config: Config,
    pub ports: Vec<ResolvedPort>,
    /// `switch.fast_routes`, parsed.
    pub fast_routes: Vec<(Ipv4Addr, u8)>,
    /// Where `switchyard ctl` reaches this appliance.
    pub control_socket: PathBuf,
    /// Where Prometheus scrapes it, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where it came from, for messages.
    pub origin: String,
}

impl Resolved {
    /// The socket switch's settings.
    pub fn switch_config(&self) -> crate::switch::SwitchConfig {
        crate::switch::SwitchConfig {
            max_first_data: self.config.switch.max_first_data,
            connect_timeout: Duration::from_secs(self.config.switch.connect_timeout_secs),
            fast_routes: self.fast_routes.clone(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Resolved, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Io { file: path.display().to_string(), message: e.to_string() })?;
        Config::parse(&text, &path.display().to_string(), path.parent().map(Path::to_path_buf))
    }

    /// The built-in default.
    pub fn demo() -> Resolved {
        Config::parse(DEMO, "built-in demo config", None).expect("the built-in config is valid (tested)")
    }

    /// Parses and validates config text; `origin` names it in errors, `base` resolves relative
    /// profile paths.
    pub fn parse(text: &str, origin: &str, base: Option<PathBuf>) -> Result<Resolved, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Toml { file: origin.to_owned(), message: e.to_string() })?;
        let bad = |field: String, value: String, why: &str| ConfigError::Value {
            file: origin.to_owned(),
            field,
            value,
            why: why.to_owned(),
        };
        let e = &config.eal;
        if e.memory_mb < 64 {
            return Err(bad("eal.memory_mb".into(), e.memory_mb.to_string(), "at least 64 MiB"));
        }
        if e.lcores.is_empty() {
            return Err(bad("eal.lcores".into(), "\"\"".into(), "an EAL --lcores value such as \"0\" or \"0@(0-1)\""));
        }
        if e.file_prefix.is_empty() || e.file_prefix.contains('/') {
            return Err(bad("eal.file_prefix".into(), format!("{:?}", e.file_prefix), "a non-empty name without '/'"));
        }
        let g = &config.engine;
        let range = |field: &str, v: u64, lo: u64, hi: u64, why: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(field.into(), v.to_string(), why))
            }
        };
        range("engine.tcp_rx_buffer", g.tcp_rx_buffer as u64, 1024, 16 << 20, "between 1024 and 16777216 bytes")?;
        range("engine.tcp_tx_buffer", g.tcp_tx_buffer as u64, 1024, 16 << 20, "between 1024 and 16777216 bytes")?;
        range("engine.cores", g.cores.into(), 1, 64, "between 1 and 64 (and no more than eal.lcores gives)")?;
        range(
            "engine.time_wait_secs",
            g.time_wait_secs,
            0,
            300,
            "between 0 and 300 seconds (2*MSL; the default 240 is MSL = 120 s)",
        )?;
        range("engine.max_backlog", g.max_backlog as u64, 1, 1 << 20, "between 1 and 1048576")?;
        range("engine.tcp_timeout_secs", g.tcp_timeout_secs, 1, 3600, "between 1 and 3600 seconds")?;
        range("engine.buffer_idle_secs", g.buffer_idle_secs, 0, 86400, "between 0 (never) and 86400 seconds")?;
        range("engine.drain_secs", g.drain_secs, 0, 3600, "between 0 and 3600 seconds")?;
        range("engine.idle_sleep_max_us", g.idle_sleep_max_us, 0, 1_000_000, "at most 1000000 (1 s)")?;
        if config.ports.is_empty() {
            return Err(bad("port".into(), "[]".into(), "at least one [[port]] section"));
        }
        let mut ports = Vec::new();
        for (i, p) in config.ports.iter().enumerate() {
            let profile = NicProfile::resolve(&p.profile, base.as_deref())?;
            let (address, prefix_len) = parse_cidr(&p.address).ok_or_else(|| {
                bad(
                    format!("port[{i}].address"),
                    format!("{:?}", p.address),
                    "an IPv4 address with a prefix length, like \"198.18.0.2/24\"",
                )
            })?;
            if address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback() {
                return Err(bad(format!("port[{i}].address"), format!("{:?}", p.address), "a unicast address"));
            }
            if let Some(gw) = p.gateway {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
                if u32::from(gw) & mask != u32::from(address) & mask || gw == address {
                    return Err(bad(
                        format!("port[{i}].gateway"),
                        format!("\"{gw}\""),
                        &format!("another address inside {}", p.address),
                    ));
                }
            }
            let most = profile.queues.rx.min(profile.queues.tx);
            if config.engine.cores > most {
                return Err(bad(
                    "engine.cores".into(),
                    config.engine.cores.to_string(),
                    &format!("port[{i}]'s profile {} allows at most {most} queue pair(s), one per core", profile.name),
                ));
            }
            if p.devargs.contains(char::is_whitespace) {
                return Err(bad(
                    format!("port[{i}].devargs"),
                    format!("{:?}", p.devargs),
                    "no spaces: key=value pairs separated by commas",
                ));
            }
            let unchecked = match p.checksums.as_str() {
                "port" => false,
                "none" if MEMORY_WIRES.contains(&profile.device.driver.as_str()) => true,
                "none" => {
                    return Err(bad(
                        format!("port[{i}].checksums"),
                        "\"none\"".into(),
                        &format!(
                            "\"port\" on a {} port: \"none\" only on a memory wire ({})",
                            profile.device.driver,
                            MEMORY_WIRES.join(", ")
                        ),
                    ))
                }
                other => return Err(bad(format!("port[{i}].checksums"), format!("{other:?}"), "\"port\" or \"none\"")),
            };
            ports.push(ResolvedPort {
                profile,
                devargs: p.devargs.clone(),
                address,
                prefix_len,
                gateway: p.gateway,
                unchecked,
            });
        }
        let sw = &config.switch;
        range("switch.max_first_data", sw.max_first_data as u64, 4096, 16 << 20, "between 4096 and 16777216 bytes")?;
        range("switch.connect_timeout_secs", sw.connect_timeout_secs, 1, 3600, "between 1 and 3600 seconds")?;
        let mut fast_routes = Vec::new();
        for (i, r) in sw.fast_routes.iter().enumerate() {
            let net = parse_cidr(r).ok_or_else(|| {
                bad(format!("switch.fast_routes[{i}]"), format!("{r:?}"), "a network like \"198.19.0.0/16\"")
            })?;
            if ports[0].gateway.is_none() {
                return Err(bad(
                    format!("switch.fast_routes[{i}]"),
                    format!("{r:?}"),
                    "routes go through a gateway: give port[0].gateway",
                ));
            }
            fast_routes.push(net);
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in config.services.iter().enumerate() {
            if s.port() == 0 {
                return Err(bad(format!("service[{i}].port"), "0".into(), "a TCP port from 1 to 65535"));
            }
            if !seen.insert(s.port()) {
                return Err(bad(format!("service[{i}].port"), s.port().to_string(), "already used by another service"));
            }
            let l = s.listen();
            if l.backlog > 1 << 20 {
                return Err(bad(
                    format!("service[{i}].backlog"),
                    l.backlog.to_string(),
                    "between 0 and 1048576 (values above engine.max_backlog are clamped to it)",
                ));
            }
            if let Err(why) = l.policy.parse::<BacklogPolicy>() {
                return Err(bad(format!("service[{i}].policy"), format!("{:?}", l.policy), &why));
            }
            if let Err(why) = l.on_full.parse::<OnFull>() {
                return Err(bad(format!("service[{i}].on_full"), format!("{:?}", l.on_full), &why));
            }
            if let ServiceSection::Proxy { upstreams, retry_secs, silent_secs, .. } = s {
                if upstreams.is_empty() {
                    return Err(bad(format!("service[{i}].upstreams"), "[]".into(), "at least one ADDRESS:PORT"));
                }
                for (j, u) in upstreams.iter().enumerate() {
                    if u.parse::<std::net::SocketAddr>().is_err() {
                        return Err(bad(
                            format!("service[{i}].upstreams[{j}]"),
                            format!("{u:?}"),
                            "ADDRESS:PORT, like \"198.18.0.1:8080\"",
                        ));
                    }
                }
                range(&format!("service[{i}].retry_secs"), *retry_secs, 1, 3600, "between 1 and 3600 seconds")?;
                range(&format!("service[{i}].silent_secs"), *silent_secs, 1, 3600, "between 1 and 3600 seconds")?;
            }
            if let ServiceSection::Http { content_type, .. } = s {
                if content_type.is_empty() || content_type.contains(['\r', '\n']) {
                    return Err(bad(
                        format!("service[{i}].content_type"),
                        format!("{content_type:?}"),
                        "a media type on one line",
                    ));
                }
            }
        }
        let control_socket = if config.control.socket.is_empty() {
            default_control_socket(&config.eal.file_prefix)
        } else {
            let p = PathBuf::from(&config.control.socket);
            if p.file_name().is_none() || config.control.socket.ends_with('/') || config.control.socket.len() > 100 {
                return Err(bad(
                    "control.socket".into(),
                    format!("{:?}", config.control.socket),
                    "a file path of at most 100 bytes (a Unix socket's limit)",
                ));
            }
            p
        };
        let metrics = match config.metrics.listen.as_str() {
            "" => None,
            a => Some(a.parse().map_err(|_| {
                bad(
                    "metrics.listen".into(),
                    format!("{a:?}"),
                    "ADDRESS:PORT, like \"127.0.0.1:9464\", or \"\" for none",
                )
            })?),
        };
        Ok(Resolved { config, ports, fast_routes, control_socket, metrics, origin: origin.to_owned() })
    }
}

/// `A.B.C.D/N` with N in 1..=32.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok()?;
    (1..=32).contains(&n).then_some(())?;
    Some((a.parse().ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_is_valid() {
        let r = Config::demo();
        assert_eq!(r.ports.len(), 1);
        assert_eq!(r.ports[0].address, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(r.ports[0].prefix_len, 24);
        assert_eq!(r.config.services.len(), 3);
        let hold = r.config.services[2].listen();
        assert_eq!((r.config.services[2].kind(), hold.port, hold.backlog), ("hold", 9000, 2));
        assert_eq!((hold.policy.as_str(), hold.on_full.as_str()), ("bsd", "refuse"));
    }

    /// T1: 0 and 300 s are the edges.
    #[test]
    fn t1_time_wait_edges_are_accepted() {
        for v in [0, 300] {
            let text = format!(
                "[engine]\ntime_wait_secs = {v}\n[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n"
            );
            assert_eq!(Config::parse(&text, "t", None).unwrap().config.engine.time_wait_secs, v);
        }
    }

    #[test]
    fn buffer_idle_zero_turns_reclaim_off_and_defaults_to_30_s() {
        let port = "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n";
        let parse = |engine: &str| Config::parse(&format!("{engine}{port}"), "t", None).unwrap().config.engine;
        assert_eq!(parse("").buffer_idle(), Some(Duration::from_secs(30)));
        assert_eq!(parse("[engine]\nbuffer_idle_secs = 0\n").buffer_idle(), None);
        assert_eq!(parse("[engine]\nbuffer_idle_secs = 86400\n").buffer_idle(), Some(Duration::from_secs(86400)));
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let r = Config::parse(
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.1.2/24\"\n[[service]]\nkind = \"http\"\n",
            "t",
            None,
        )
        .unwrap();
        assert_eq!(r.config.eal.memory_mb, 256);
        assert!(r.config.eal.no_huge);
        assert_eq!(r.config.services[0].port(), 80);
        assert_eq!(r.config.services[0].backlog(), 511);
        assert_eq!(r.config.services[0].listen().policy, "linux");
        assert_eq!(r.config.engine.time_wait_secs, 240);
        let sw = r.switch_config();
        assert_eq!((sw.max_first_data, sw.connect_timeout.as_secs()), (65536, 30));
        assert!(sw.fast_routes.is_empty());
    }

    /// `checksums = "none"` is taken on a memory wire; the default leaves them to the port.
    #[test]
    fn port_checksums_none_on_a_memory_wire() {
        let memif = |extra: &str| {
            Config::parse(
                &format!("[[port]]\nprofile = \"net_memif\"\naddress = \"198.18.0.2/24\"\n{extra}"),
                "t",
                None,
            )
            .unwrap()
        };
        assert!(memif("checksums = \"none\"\n").ports[0].unchecked);
        assert!(!memif("").ports[0].unchecked);
        assert!(!memif("checksums = \"port\"\n").ports[0].unchecked);
    }

    #[test]
    fn switch_fast_routes_parse_with_a_gateway() {
        let r = Config::parse(
            "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"198.18.0.1\"\n[switch]\nfast_routes = [\"198.19.0.0/16\"]\n",
            "t",
            None,
        )
        .unwrap();
        assert_eq!(r.switch_config().fast_routes, [("198.19.0.0".parse().unwrap(), 16)]);
    }

    /// Each bad config, and words its error must contain.
    #[test]
    fn bad_configs_name_the_field_and_value() {
        let port = "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\n";
        let cases: &[(String, &[&str])] = &[
            (format!("{port}[[service]]\nkind = \"echo\"\nprot = 7\n"), &["unknown field", "prot"]),
            (format!("{port}[[service]]\nkind = \"ftp\"\n"), &["ftp", "echo", "http"]),
            (format!("{port}[[service]]\nkind = \"echo\"\nport = 70000\n"), &["70000"]),
            (format!("{port}[[service]]\nkind = \"echo\"\nport = 0\n"), &["service[0].port", "0"]),
            (
                format!("{port}[[service]]\nkind = \"echo\"\n[[service]]\nkind = \"http\"\nport = 7\n"),
                &["service[1].port", "7", "already"],
            ),
            (format!("{port}[[service]]\nkind = \"echo\"\nbacklog = 2000000\n"), &["service[0].backlog", "2000000"]),
            (
                format!("{port}[[service]]\nkind = \"hold\"\nport = 9000\npolicy = \"berkeley\"\n"),
                &["service[0].policy", "berkeley", "bsd"],
            ),
            (
                format!("{port}[[service]]\nkind = \"hold\"\nport = 9000\non_full = \"reject\"\n"),
                &["service[0].on_full", "reject", "refuse"],
            ),
            (format!("{port}[[service]]\nkind = \"hold\"\n"), &["port"]),
            (format!("{port}[engine]\ntime_wait_secs = 301\n"), &["engine.time_wait_secs", "301", "300"]),
            (format!("{port}[engine]\nmax_backlog = 0\n"), &["engine.max_backlog", "0"]),
            (format!("{port}[engine]\nbuffer_idle_secs = 86401\n"), &["engine.buffer_idle_secs", "86401"]),
            (format!("{port}[engine]\ncores = 0\n"), &["engine.cores", "0"]),
            (format!("{port}[engine]\ntcp_timeout_secs = 0\n"), &["engine.tcp_timeout_secs"]),
            (
                "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2\"\n".into(),
                &["port[0].address", "198.18.0.2", "prefix"],
            ),
            ("[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.300/24\"\n".into(), &["port[0].address"]),
            ("[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/33\"\n".into(), &["port[0].address"]),
            (
                "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"198.19.0.1\"\n".into(),
                &["port[0].gateway", "198.19.0.1"],
            ),
            (
                "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ngateway = \"nope\"\n".into(),
                &["gateway", "nope"],
            ),
            ("[[port]]\nprofile = \"net_tapp\"\naddress = \"198.18.0.2/24\"\n".into(), &["net_tapp", "net_tap"]),
            (format!("{port}checksums = \"none\"\n"), &["port[0].checksums", "none", "net_tap", "net_memif"]),
            (format!("{port}checksums = \"off\"\n"), &["port[0].checksums", "off", "\"port\" or \"none\""]),
            (format!("{port}[switch]\nmax_first_data = 100\n"), &["switch.max_first_data", "100", "4096"]),
            (format!("{port}[switch]\nconnect_timeout_secs = 0\n"), &["switch.connect_timeout_secs", "0"]),
            (format!("{port}[switch]\nfast_routes = [\"198.19.0.0\"]\n"), &["switch.fast_routes[0]", "198.19.0.0"]),
            (format!("{port}[switch]\nfast_routes = [\"198.19.0.0/16\"]\n"), &["fast_routes[0]", "gateway"]),
            (format!("{port}[switch]\nfast_route = []\n"), &["unknown field", "fast_route"]),
            (format!("{port}[control]\nsocket = \"/tmp/\"\n"), &["control.socket", "/tmp/"]),
            (format!("{port}[control]\nsokcet = \"/tmp/x\"\n"), &["unknown field", "sokcet"]),
            (format!("{port}[metrics]\nlisten = \"localhost\"\n"), &["metrics.listen", "localhost", "ADDRESS:PORT"]),
            (format!("{port}[engine]\ndrain_secs = 3601\n"), &["engine.drain_secs", "3601"]),
            (
                format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\nupstreams = []\n"),
                &["service[0].upstreams", "at least one"],
            ),
            (
                format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\nupstreams = [\"198.18.0.1\"]\n"),
                &["service[0].upstreams[0]", "198.18.0.1", "ADDRESS:PORT"],
            ),
            (format!("{port}[[service]]\nkind = \"proxy\"\nport = 8080\n"), &["upstreams"]),
            (
                "[[port]]\nprofile = \"net_tap\"\naddress = \"198.18.0.2/24\"\ndevargs = \"iface=a b\"\n".into(),
                &["port[0].devargs"],
            ),
            (format!("{port}[engine]\ntcp_rx_buffer = 10\n"), &["engine.tcp_rx_buffer", "10"]),
            (format!("{port}[engine]\nbusy_pol = true\n"), &["busy_pol"]),
            (format!("{port}[eal]\nmemory_mb = 1\n"), &["eal.memory_mb", "1"]),
            ("".into(), &["[[port]]"]),
            ("[[port]\n".into(), &["t.toml"]),
        ];
        for (text, words) in cases {
            let e = Config::parse(text, "t.toml", None).expect_err(text).to_string();
            assert!(e.starts_with("t.toml") || e.contains("profile"), "{e}");
            for w in *words {
                assert!(e.contains(w), "error for\n{text}\nwas {e:?}, lacks {w:?}");
            }
        }
    }
}
