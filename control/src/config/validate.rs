//! Validation of the configuration's values, one function per section.
//!
//! [`Config::parse`](super::Config::parse) calls these in the order the sections are listed
//! here, after deserializing; the first bad value stops it. Each error is a
//! [`ConfigError::Value`] naming the file, the field (`port[0].address`) and the value as it was
//! written, and saying what would be accepted.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use engine::{BacklogPolicy, OnFull};

use runtime::device::faults::FaultPlan;

use super::schema::{
    ControlSection, EalSection, EngineSection, FaultsSection, MetricsSection, PortSection, ServiceSection,
    SwitchSection,
};
use super::{default_control_socket, ConfigError, ResolvedPort};
use crate::profile::NicProfile;

/// The PMDs whose wire is memory inside this host, where `checksums = "none"` is allowed.
const MEMORY_WIRES: [&str; 2] = ["net_memif", "net_ring"];

/// Makes the errors of one config file.
#[derive(Clone, Copy)]
pub(super) struct Errors<'a> {
    /// The file (or other origin) the errors name.
    pub(super) file: &'a str,
}

impl Errors<'_> {
    /// `field = value` is bad, and `why` says what would be accepted.
    fn bad(self, field: impl Into<String>, value: String, why: &str) -> ConfigError {
        ConfigError::Value { file: self.file.to_owned(), field: field.into(), value, why: why.to_owned() }
    }

    /// `field = value` must lie in `lo..=hi`; `why` says so in words.
    fn range(self, field: &str, value: u64, lo: u64, hi: u64, why: &str) -> Result<(), ConfigError> {
        if (lo..=hi).contains(&value) {
            Ok(())
        } else {
            Err(self.bad(field, value.to_string(), why))
        }
    }
}

/// `[eal]`: enough memory, an lcore list and a file prefix that is a plain name.
pub(super) fn eal(errors: Errors, e: &EalSection) -> Result<(), ConfigError> {
    if e.memory_mb < 64 {
        return Err(errors.bad("eal.memory_mb", e.memory_mb.to_string(), "at least 64 MiB"));
    }
    if e.lcores.is_empty() {
        return Err(errors.bad("eal.lcores", "\"\"".into(), "an EAL --lcores value such as \"0\" or \"0@(0-1)\""));
    }
    if e.file_prefix.is_empty() || e.file_prefix.contains('/') {
        return Err(errors.bad("eal.file_prefix", format!("{:?}", e.file_prefix), "a non-empty name without '/'"));
    }
    Ok(())
}

/// `[engine]`: every number within its range. How many cores the ports allow is checked with the
/// ports ([`ports`]).
pub(super) fn engine(errors: Errors, g: &EngineSection) -> Result<(), ConfigError> {
    let buffer = "between 1024 and 16777216 bytes";
    errors.range("engine.tcp_rx_buffer", g.tcp_rx_buffer as u64, 1024, 16 << 20, buffer)?;
    errors.range("engine.tcp_tx_buffer", g.tcp_tx_buffer as u64, 1024, 16 << 20, buffer)?;
    errors.range("engine.cores", g.cores.into(), 1, 64, "between 1 and 64 (and no more than eal.lcores gives)")?;
    errors.range(
        "engine.time_wait_secs",
        g.time_wait_secs,
        0,
        300,
        "between 0 and 300 seconds (2*MSL; the default 240 is MSL = 120 s)",
    )?;
    errors.range("engine.max_backlog", g.max_backlog as u64, 1, 1 << 20, "between 1 and 1048576")?;
    let max = engine::MAX_CONNECTIONS as u64;
    errors.range("engine.max_connections", g.max_connections as u64, 1, max, "between 1 and 16777216")?;
    errors.range("engine.syn_backlog", g.syn_backlog as u64, 1, 1 << 20, "between 1 and 1048576")?;
    errors.range("engine.max_time_wait", g.max_time_wait as u64, 0, max, "between 0 and 16777216")?;
    errors.range("engine.tcp_timeout_secs", g.tcp_timeout_secs, 1, 3600, "between 1 and 3600 seconds")?;
    errors.range("engine.buffer_idle_secs", g.buffer_idle_secs, 0, 86400, "between 0 (never) and 86400 seconds")?;
    errors.range("engine.drain_secs", g.drain_secs, 0, 3600, "between 0 and 3600 seconds")?;
    errors.range("engine.idle_sleep_max_us", g.idle_sleep_max_us, 0, 1_000_000, "at most 1000000 (1 s)")?;
    if !matches!(g.congestion.as_str(), "cubic" | "reno") {
        return Err(errors.bad("engine.congestion", format!("{:?}", g.congestion), "\"cubic\" or \"reno\""));
    }
    if !matches!(g.syn_cookies.as_str(), "auto" | "always" | "never") {
        return Err(errors.bad(
            "engine.syn_cookies",
            format!("{:?}", g.syn_cookies),
            "\"auto\", \"always\" or \"never\"",
        ));
    }
    errors.range("engine.min_rto_ms", g.min_rto_ms, 1, 60_000, "between 1 and 60000 ms")?;
    errors.range("engine.delayed_ack_ms", g.delayed_ack_ms, 0, 499, "between 0 and 499 ms (RFC 9293: under 0.5 s)")?;
    errors.range("engine.max_ooo_ranges", g.max_ooo_ranges as u64, 1, 1024, "between 1 and 1024")?;
    errors.range("engine.keepalive_secs", g.keepalive_secs, 0, 86400, "between 0 (off) and 86400 seconds")?;
    errors.range("engine.keepalive_interval_secs", g.keepalive_interval_secs, 1, 3600, "between 1 and 3600 seconds")?;
    errors.range("engine.keepalive_probes", g.keepalive_probes.into(), 1, 100, "between 1 and 100")?;
    Ok(())
}

/// `[[port]]`: at least one, each resolved with its profile (relative profile paths from `base`)
/// and able to give each of the engine's `cores` a queue pair.
pub(super) fn ports(
    errors: Errors,
    ports: &[PortSection],
    cores: u16,
    base: Option<&Path>,
) -> Result<Vec<ResolvedPort>, ConfigError> {
    if ports.is_empty() {
        return Err(errors.bad("port", "[]".into(), "at least one [[port]] section"));
    }
    ports.iter().enumerate().map(|(i, p)| port(errors, i, p, cores, base)).collect()
}

/// `port[i]`: its profile, a unicast address with a prefix length, a gateway inside that network,
/// devargs without spaces, and checksums left off only on a memory wire.
fn port(
    errors: Errors,
    i: usize,
    p: &PortSection,
    cores: u16,
    base: Option<&Path>,
) -> Result<ResolvedPort, ConfigError> {
    let profile = NicProfile::resolve(&p.profile, base)?;
    let (address, prefix_len) = parse_cidr(&p.address).ok_or_else(|| {
        errors.bad(
            format!("port[{i}].address"),
            format!("{:?}", p.address),
            "an IPv4 address with a prefix length, like \"198.18.0.2/24\"",
        )
    })?;
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback() {
        return Err(errors.bad(format!("port[{i}].address"), format!("{:?}", p.address), "a unicast address"));
    }
    if let Some(gw) = p.gateway {
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
        if u32::from(gw) & mask != u32::from(address) & mask || gw == address {
            return Err(errors.bad(
                format!("port[{i}].gateway"),
                format!("\"{gw}\""),
                &format!("another address inside {}", p.address),
            ));
        }
    }
    let most = profile.queues.rx.min(profile.queues.tx);
    if cores > most {
        return Err(errors.bad(
            "engine.cores",
            cores.to_string(),
            &format!("port[{i}]'s profile {} allows at most {most} queue pair(s), one per core", profile.name),
        ));
    }
    if p.devargs.contains(char::is_whitespace) {
        return Err(errors.bad(
            format!("port[{i}].devargs"),
            format!("{:?}", p.devargs),
            "no spaces: key=value pairs separated by commas",
        ));
    }
    let unchecked = match p.checksums.as_str() {
        "port" => false,
        "none" if MEMORY_WIRES.contains(&profile.device.driver.as_str()) => true,
        "none" => {
            return Err(errors.bad(
                format!("port[{i}].checksums"),
                "\"none\"".into(),
                &format!(
                    "\"port\" on a {} port: \"none\" only on a memory wire ({})",
                    profile.device.driver,
                    MEMORY_WIRES.join(", ")
                ),
            ))
        }
        other => return Err(errors.bad(format!("port[{i}].checksums"), format!("{other:?}"), "\"port\" or \"none\"")),
    };
    let faults = p.faults.as_ref().map(|f| faults(errors, i, f)).transpose()?;
    Ok(ResolvedPort { profile, devargs: p.devargs.clone(), address, prefix_len, gateway: p.gateway, unchecked, faults })
}

/// The environment variable that allows `[port.faults]`.
pub const ALLOW_FAULTS: &str = "SWITCHYARD_ALLOW_FAULTS";

/// `port[i].faults`: percentages in 0..=100 and a delay of at most a second, and only where the
/// environment allows a faulty wire (tests and benchmarks set `SWITCHYARD_ALLOW_FAULTS=1`): a
/// production appliance never loses frames on purpose because of a stray table.
fn faults(errors: Errors, i: usize, f: &FaultsSection) -> Result<(FaultPlan, u64), ConfigError> {
    if std::env::var(ALLOW_FAULTS).as_deref() != Ok("1") {
        return Err(errors.bad(
            format!("port[{i}].faults"),
            "a faulty wire".into(),
            &format!("no [port.faults] outside tests and benchmarks (they set {ALLOW_FAULTS}=1)"),
        ));
    }
    let percent = |field: &str, v: f64| {
        if (0.0..=100.0).contains(&v) {
            Ok(v / 100.0)
        } else {
            Err(errors.bad(format!("port[{i}].faults.{field}"), v.to_string(), "a percentage, 0 to 100"))
        }
    };
    errors.range(&format!("port[{i}].faults.delay_us"), f.delay_us, 0, 1_000_000, "at most 1000000 (1 s)")?;
    let plan = FaultPlan {
        loss: percent("loss_percent", f.loss_percent)?,
        duplicate: percent("duplicate_percent", f.duplicate_percent)?,
        reorder: percent("reorder_percent", f.reorder_percent)?,
        delay: std::time::Duration::from_micros(f.delay_us),
    };
    Ok((plan, f.seed))
}

/// `[switch]`: its limits, and its fast routes parsed; routes go through the first port's
/// `gateway`, so they need one.
pub(super) fn switch(
    errors: Errors,
    sw: &SwitchSection,
    gateway: Option<Ipv4Addr>,
) -> Result<Vec<(Ipv4Addr, u8)>, ConfigError> {
    errors.range(
        "switch.max_first_data",
        sw.max_first_data as u64,
        4096,
        16 << 20,
        "between 4096 and 16777216 bytes",
    )?;
    errors.range("switch.connect_timeout_secs", sw.connect_timeout_secs, 1, 3600, "between 1 and 3600 seconds")?;
    let mut fast_routes = Vec::new();
    for (i, r) in sw.fast_routes.iter().enumerate() {
        let net = parse_cidr(r).ok_or_else(|| {
            errors.bad(format!("switch.fast_routes[{i}]"), format!("{r:?}"), "a network like \"198.19.0.0/16\"")
        })?;
        if gateway.is_none() {
            return Err(errors.bad(
                format!("switch.fast_routes[{i}]"),
                format!("{r:?}"),
                "routes go through a gateway: give port[0].gateway",
            ));
        }
        fast_routes.push(net);
    }
    Ok(fast_routes)
}

/// `[[service]]`: each on a port of its own.
pub(super) fn services(errors: Errors, services: &[ServiceSection]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, s) in services.iter().enumerate() {
        if s.port() == 0 {
            return Err(errors.bad(format!("service[{i}].port"), "0".into(), "a TCP port from 1 to 65535"));
        }
        if !seen.insert(s.port()) {
            return Err(errors.bad(
                format!("service[{i}].port"),
                s.port().to_string(),
                "already used by another service",
            ));
        }
        service(errors, i, s)?;
    }
    Ok(())
}

/// `service[i]`: its listen settings (SEMANTICS B), then what its kind adds.
fn service(errors: Errors, i: usize, s: &ServiceSection) -> Result<(), ConfigError> {
    let l = s.listen();
    if l.backlog > 1 << 20 {
        return Err(errors.bad(
            format!("service[{i}].backlog"),
            l.backlog.to_string(),
            "between 0 and 1048576 (values above engine.max_backlog are clamped to it)",
        ));
    }
    if let Err(why) = l.policy.parse::<BacklogPolicy>() {
        return Err(errors.bad(format!("service[{i}].policy"), format!("{:?}", l.policy), &why));
    }
    if let Err(why) = l.on_full.parse::<OnFull>() {
        return Err(errors.bad(format!("service[{i}].on_full"), format!("{:?}", l.on_full), &why));
    }
    match s {
        ServiceSection::Proxy { upstreams, retry_secs, silent_secs, .. } => {
            if upstreams.is_empty() {
                return Err(errors.bad(format!("service[{i}].upstreams"), "[]".into(), "at least one ADDRESS:PORT"));
            }
            for (j, u) in upstreams.iter().enumerate() {
                if u.parse::<SocketAddr>().is_err() {
                    return Err(errors.bad(
                        format!("service[{i}].upstreams[{j}]"),
                        format!("{u:?}"),
                        "ADDRESS:PORT, like \"198.18.0.1:8080\"",
                    ));
                }
            }
            let secs = "between 1 and 3600 seconds";
            errors.range(&format!("service[{i}].retry_secs"), *retry_secs, 1, 3600, secs)?;
            errors.range(&format!("service[{i}].silent_secs"), *silent_secs, 1, 3600, secs)?;
        }
        ServiceSection::Http { content_type, header_timeout_secs, .. } => {
            if content_type.is_empty() || content_type.contains(['\r', '\n']) {
                return Err(errors.bad(
                    format!("service[{i}].content_type"),
                    format!("{content_type:?}"),
                    "a media type on one line",
                ));
            }
            let why = "between 0 (no limit) and 3600 seconds";
            errors.range(&format!("service[{i}].header_timeout_secs"), *header_timeout_secs, 0, 3600, why)?;
        }
        ServiceSection::Echo { .. } | ServiceSection::Hold { .. } => {}
    }
    Ok(())
}

/// `[control]`: the socket's path, or the default for `eal.file_prefix`.
pub(super) fn control(errors: Errors, control: &ControlSection, eal: &EalSection) -> Result<PathBuf, ConfigError> {
    let socket = &control.socket;
    if socket.is_empty() {
        return Ok(default_control_socket(&eal.file_prefix));
    }
    let path = PathBuf::from(socket);
    if path.file_name().is_none() || socket.ends_with('/') || socket.len() > 100 {
        return Err(errors.bad(
            "control.socket",
            format!("{socket:?}"),
            "a file path of at most 100 bytes (a Unix socket's limit)",
        ));
    }
    Ok(path)
}

/// `[metrics]`: the address to serve on, or none for `""`.
pub(super) fn metrics(errors: Errors, metrics: &MetricsSection) -> Result<Option<SocketAddr>, ConfigError> {
    match metrics.listen.as_str() {
        "" => Ok(None),
        a => a.parse().map(Some).map_err(|_| {
            errors.bad("metrics.listen", format!("{a:?}"), "ADDRESS:PORT, like \"127.0.0.1:9464\", or \"\" for none")
        }),
    }
}

/// `A.B.C.D/N` with N in 1..=32.
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok()?;
    (1..=32).contains(&n).then_some(())?;
    Some((a.parse().ok()?, n))
}
