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
//!
//! # Layout
//!
//! - this module: the API the rest of the crate uses, [`Config::load`], [`Config::parse`] and
//!   [`Config::demo`] giving a [`Resolved`] configuration, and [`ConfigError`];
//! - `schema`: the TOML tables as serde structs ([`Config`], [`EngineSection`], [`PortSection`],
//!   [`ServiceSection`], ...) with their defaults; deserializing checks types and rejects unknown
//!   fields;
//! - `validate`: one function per section checking its values, in the order
//!   [`Config::parse`] calls them.
//!
//! NIC profiles ([`crate::profile`]) are resolved while the ports are validated; a bad profile is
//! a [`ConfigError::Profile`]. The profile module knows nothing of this one.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime::device::faults::FaultPlan;

use crate::profile::{NicProfile, ProfileError};

mod schema;
#[cfg(test)]
mod tests;
mod validate;

pub use schema::{
    Config, ControlSection, EalSection, EngineSection, FaultsSection, ListenSection, MetricsSection, PortSection,
    ServiceSection, SwitchSection,
};

/// The built-in default configuration (`control/configs/demo.toml`).
pub const DEMO: &str = include_str!("../../configs/demo.toml");

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

/// The control socket's path for a file prefix, when the config does not name one.
pub fn default_control_socket(file_prefix: &str) -> PathBuf {
    PathBuf::from(format!("/run/switchyard/{file_prefix}.sock"))
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
    /// `[port.faults]`: the faulty wire's plan (the same each way) and seed, if the port has one.
    pub faults: Option<(FaultPlan, u64)>,
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
    pub metrics: Option<SocketAddr>,
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
    ///
    /// Deserializing rejects unknown fields and values of the wrong type; then each section is
    /// validated in turn (`[eal]`, `[engine]`, `[[port]]` with their profiles, `[switch]`,
    /// `[[service]]`, `[control]`, `[metrics]`), and the first bad value is the error.
    pub fn parse(text: &str, origin: &str, base: Option<PathBuf>) -> Result<Resolved, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Toml { file: origin.to_owned(), message: e.to_string() })?;
        let errors = validate::Errors { file: origin };
        validate::eal(errors, &config.eal)?;
        validate::engine(errors, &config.engine)?;
        // Never empty: validate::ports rejects a config without a port.
        let ports = validate::ports(errors, &config.ports, config.engine.cores, base.as_deref())?;
        let fast_routes = validate::switch(errors, &config.switch, ports[0].gateway)?;
        validate::services(errors, &config.services)?;
        let control_socket = validate::control(errors, &config.control, &config.eal)?;
        let metrics = validate::metrics(errors, &config.metrics)?;
        Ok(Resolved { config, ports, fast_routes, control_socket, metrics, origin: origin.to_owned() })
    }
}
