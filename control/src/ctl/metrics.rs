//! Prometheus exposition of the control socket's counters, and the HTTP endpoint that serves it.
//!
//! Each scrape takes fresh snapshots ([`Context::listeners`], [`Context::stats`]) and encodes them
//! with `prometheus-client`'s encoder for Prometheus's text format (version 0.0.4), through a
//! [`Collector`]: the figures are the cores' own counters, read at scrape time, not copies kept in
//! the crate's metric types.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::context::{Context, QueryError};
use super::protocol::{CoreStats, LaneStats, ListenerRow, PortCounters, Stats};

impl Context<'_> {
    /// The counters of `ctl listeners` and `ctl stats` in Prometheus's text format (version 0.0.4).
    pub fn prometheus(&self) -> Result<String, QueryError> {
        let uptime_secs = self.started.elapsed().as_secs_f64();
        let scrape = Scrape { uptime_secs, listeners: self.listeners()?, stats: self.stats()? };
        Ok(scrape.encode_text()?)
    }
}

/// A sample's value: counts as integers, seconds as floats.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Secs(f64),
}

/// One metric family: its name as exposed, its HELP text, its type, and its value in a row.
struct Family<R> {
    /// A counter's name ends in `_total`, which the encoder appends to the name it is given.
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: fn(&R) -> Value,
}

const fn counter<R>(name: &'static str, help: &'static str, value: fn(&R) -> Value) -> Family<R> {
    Family { name, help, kind: MetricType::Counter, value }
}

const fn gauge<R>(name: &'static str, help: &'static str, value: fn(&R) -> Value) -> Family<R> {
    Family { name, help, kind: MetricType::Gauge, value }
}

/// Labels of one sample, in the order they are written.
type Labels = Vec<(&'static str, String)>;

const APPLIANCE: &[Family<Scrape>] = &[
    gauge("switchyard_up", "1 while the appliance runs.", |_| Value::Count(1)),
    gauge("switchyard_uptime_seconds", "Seconds since the appliance started.", |s| Value::Secs(s.uptime_secs)),
];

/// Per listener; SEMANTICS rule ids in parentheses.
const LISTENER: &[Family<ListenerRow>] = &[
    counter("switchyard_listener_syns_total", "SYNs that asked for a new connection.", |r| Value::Count(r.syns)),
    counter("switchyard_listener_completed_total", "Handshakes completed.", |r| Value::Count(r.completed)),
    counter("switchyard_listener_accepted_total", "Connections taken by the service or application.", |r| {
        Value::Count(r.accepted)
    }),
    counter("switchyard_listener_refused_total", "SYNs answered with an RST because the queue was full (L4).", |r| {
        Value::Count(r.refused)
    }),
    counter("switchyard_listener_dropped_total", "SYNs ignored because the queue was full (B3).", |r| {
        Value::Count(r.dropped)
    }),
    counter("switchyard_listener_silent_closed_total", "Silent clients closed (A4).", |r| {
        Value::Count(r.silent_closed)
    }),
    counter(
        "switchyard_listener_syn_evicted_total",
        "Half-open connections given up to admit new SYNs (the half-open budget was used up; B1).",
        |r| Value::Count(r.syn_evicted),
    ),
    counter("switchyard_listener_syn_cookies_sent_total", "SYNs answered with a SYN cookie (RFC 4987).", |r| {
        Value::Count(r.cookies_sent)
    }),
    counter("switchyard_listener_syn_cookies_accepted_total", "Connections made from a valid SYN cookie.", |r| {
        Value::Count(r.cookies_accepted)
    }),
    counter(
        "switchyard_listener_syn_cookies_invalid_total",
        "ACKs matching no connection whose cookie was not valid (refused, nothing made).",
        |r| Value::Count(r.cookies_invalid),
    ),
    gauge("switchyard_listener_queued", "Handshakes completed, not accepted yet (B1).", |r| {
        Value::Count(r.queued as u64)
    }),
    gauge("switchyard_listener_half_open", "Handshakes in progress.", |r| Value::Count(r.half_open as u64)),
    gauge("switchyard_listener_backlog_limit", "The queue limit in force, per core (B2, B5).", |r| {
        Value::Count(r.backlog_limit as u64)
    }),
];

const CORE: &[Family<CoreStats>] = &[
    counter("switchyard_core_seconds_total", "Seconds the core's loop has run.", |c| {
        Value::Secs(c.elapsed_us as f64 / 1e6)
    }),
    counter("switchyard_core_busy_seconds_total", "Seconds of them spent in loop turns that moved frames.", |c| {
        Value::Secs(c.busy_us as f64 / 1e6)
    }),
];

/// Per core and port; SEMANTICS rule ids in parentheses.
const LANE: &[Family<LaneStats>] = &[
    counter("switchyard_rx_frames_total", "Frames received on the core's queue.", |l| Value::Count(l.rx_frames)),
    counter("switchyard_tx_frames_total", "Frames sent from the core's queue.", |l| Value::Count(l.tx_frames)),
    counter("switchyard_rx_bytes_total", "Bytes received on the core's queue.", |l| Value::Count(l.rx_bytes)),
    counter("switchyard_tx_bytes_total", "Bytes handed to the core's queue for sending.", |l| Value::Count(l.tx_bytes)),
    counter("switchyard_steered_in_total", "Frames other cores handed to this one.", |l| Value::Count(l.steered_in)),
    counter("switchyard_steered_out_total", "Frames handed to the core that owns their flow.", |l| {
        Value::Count(l.steered_out)
    }),
    counter("switchyard_steer_dropped_total", "Frames dropped because the owner's ring was full.", |l| {
        Value::Count(l.steer_dropped)
    }),
    counter("switchyard_tx_nombuf_total", "Frames not built for want of an mbuf.", |l| Value::Count(l.tx_nombuf)),
    counter("switchyard_tx_queue_full_total", "Frames dropped because the tx queue stayed full.", |l| {
        Value::Count(l.tx_queue_full)
    }),
    counter(
        "switchyard_rx_multiseg_dropped_total",
        "Received frames dropped because they spanned several mbufs.",
        |l| Value::Count(l.rx_multiseg_dropped),
    ),
    counter("switchyard_rx_bad_checksum_total", "Received frames dropped because a checksum was wrong.", |l| {
        Value::Count(l.rx_bad_checksum)
    }),
    counter("switchyard_connections_established_total", "Handshakes completed.", |l| Value::Count(l.established)),
    counter("switchyard_connections_closed_total", "Connections ended.", |l| Value::Count(l.closed)),
    gauge("switchyard_connections_open", "Connections open now.", |l| Value::Count(l.open as u64)),
    gauge("switchyard_time_wait_entries", "4-tuples in TIME_WAIT (T1, T2).", |l| Value::Count(l.time_wait as u64)),
    gauge("switchyard_steer_ring_frames", "Frames waiting in the core's steering ring.", |l| {
        Value::Count(l.steer_ring as u64)
    }),
    gauge(
        "switchyard_buffers_holding",
        "Connection slots whose buffer pages may be resident (not given back since last used).",
        |l| Value::Count(l.buffers_holding as u64),
    ),
    counter(
        "switchyard_buffer_releases_total",
        "Times an idle connection slot's buffer pages were given back to the kernel.",
        |l| Value::Count(l.buffer_releases),
    ),
    counter(
        "switchyard_no_listener_total",
        "TCP segments answered with an RST because no connection or listener wanted them.",
        |l| Value::Count(l.no_listener),
    ),
    counter("switchyard_arp_requests_total", "ARP requests the engine sent.", |l| Value::Count(l.arp_requests)),
    counter("switchyard_arp_replies_total", "ARP requests for the engine's addresses that it answered.", |l| {
        Value::Count(l.arp_replies)
    }),
    gauge("switchyard_neighbors", "Addresses in the engine's neighbour table with an answer.", |l| {
        Value::Count(l.neighbors as u64)
    }),
    counter("switchyard_neighbors_evicted_total", "Neighbour entries forgotten to make room.", |l| {
        Value::Count(l.neighbors_evicted)
    }),
    counter(
        "switchyard_over_max_connections_total",
        "SYNs refused or dropped because the engine held engine.max_connections.",
        |l| Value::Count(l.over_max_connections),
    ),
    counter(
        "switchyard_time_wait_overflow_total",
        "Connections that skipped TIME_WAIT because the table held engine.max_time_wait.",
        |l| Value::Count(l.time_wait_overflow),
    ),
    counter("switchyard_tcp_retransmits_total", "Segments the engine's TCP sent again.", |l| {
        Value::Count(l.tcp.retransmits)
    }),
    counter("switchyard_tcp_timeouts_total", "Retransmission timeouts (RFC 6298).", |l| Value::Count(l.tcp.timeouts)),
    counter("switchyard_tcp_tlp_total", "Tail loss probes (RFC 8985).", |l| Value::Count(l.tcp.tlp)),
    counter("switchyard_tcp_fast_recoveries_total", "Loss recoveries entered without a timeout.", |l| {
        Value::Count(l.tcp.fast_recoveries)
    }),
    counter("switchyard_tcp_undos_total", "Loss episodes undone as spurious (D-SACK, timestamps).", |l| {
        Value::Count(l.tcp.undos)
    }),
    counter("switchyard_tcp_challenge_acks_total", "Segments that called for a challenge ACK (RFC 5961).", |l| {
        Value::Count(l.tcp.challenge_acks)
    }),
    counter(
        "switchyard_tcp_acks_throttled_total",
        "ACKs owed to segments that did not fit and not sent (RFC 5961 section 7).",
        |l| Value::Count(l.tcp.acks_throttled),
    ),
    counter("switchyard_tcp_paws_dropped_total", "Segments dropped by PAWS (RFC 7323).", |l| {
        Value::Count(l.tcp.paws_dropped)
    }),
    counter("switchyard_tcp_out_of_window_total", "Segments outside the receive window, dropped.", |l| {
        Value::Count(l.tcp.out_of_window)
    }),
    counter("switchyard_tcp_ooo_rejected_total", "Out-of-order segments the bounded store had no room for.", |l| {
        Value::Count(l.tcp.ooo_rejected)
    }),
    counter(
        "switchyard_tcp_bad_segments_total",
        "Segments with a wrong checksum or an unreadable header, dropped.",
        |l| Value::Count(l.tcp.bad_segments),
    ),
    counter("switchyard_tcp_keepalive_probes_total", "Keepalive probes sent.", |l| {
        Value::Count(l.tcp.keepalive_probes)
    }),
    counter(
        "switchyard_tcp_keepalive_timeouts_total",
        "Connections reset because keepalive probes went unanswered.",
        |l| Value::Count(l.tcp.keepalive_timeouts),
    ),
];

const PORT: &[Family<PortCounters>] = &[
    counter("switchyard_port_rx_packets_total", "Packets the NIC received.", |p| Value::Count(p.rx_packets)),
    counter("switchyard_port_tx_packets_total", "Packets the NIC sent.", |p| Value::Count(p.tx_packets)),
    counter("switchyard_port_rx_bytes_total", "Bytes the NIC received.", |p| Value::Count(p.rx_bytes)),
    counter("switchyard_port_tx_bytes_total", "Bytes the NIC sent.", |p| Value::Count(p.tx_bytes)),
    counter("switchyard_port_rx_missed_total", "Packets the NIC dropped for want of room.", |p| {
        Value::Count(p.rx_missed)
    }),
    counter("switchyard_port_rx_errors_total", "Receive errors.", |p| Value::Count(p.rx_errors)),
    counter("switchyard_port_tx_errors_total", "Transmit errors.", |p| Value::Count(p.tx_errors)),
    counter("switchyard_port_rx_nombuf_total", "Receive mbuf allocation failures.", |p| Value::Count(p.rx_nombuf)),
    gauge("switchyard_mbufs_in_use", "Mbufs of the port's pool in use.", |p| Value::Count(p.mbufs_in_use.into())),
    gauge("switchyard_mbufs_available", "Mbufs of the port's pool free.", |p| Value::Count(p.mbufs_available.into())),
];

/// One scrape's figures, encoded when the registry asks.
#[derive(Debug)]
struct Scrape {
    uptime_secs: f64,
    listeners: Vec<ListenerRow>,
    stats: Stats,
}

impl Scrape {
    fn encode_text(self) -> Result<String, fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode(&mut encoder, APPLIANCE, [(Labels::new(), self)])?;
        let listeners = self.listeners.iter().map(|r| {
            let labels =
                vec![("port", r.port_index.to_string()), ("listen", r.address.clone()), ("service", r.service.clone())];
            (labels, r)
        });
        encode(&mut encoder, LISTENER, listeners)?;
        let cores = self.stats.cores.iter().map(|c| (vec![("core", c.core.to_string())], c));
        encode(&mut encoder, CORE, cores)?;
        let lanes = self.stats.cores.iter().flat_map(|c| {
            c.lanes.iter().map(|l| (vec![("core", c.core.to_string()), ("port", l.port_index.to_string())], l))
        });
        encode(&mut encoder, LANE, lanes)?;
        let ports = self
            .stats
            .ports
            .iter()
            .map(|p| (vec![("port", p.port_index.to_string()), ("device", p.device.clone())], p));
        encode(&mut encoder, PORT, ports)
    }
}

/// Encodes each of `families`, with one sample per row.
fn encode<'r, R: 'r>(
    encoder: &mut DescriptorEncoder,
    families: &[Family<R>],
    rows: impl IntoIterator<Item = (Labels, &'r R)>,
) -> fmt::Result {
    let rows: Vec<(Labels, &R)> = rows.into_iter().collect();
    for f in families {
        let name = match f.kind {
            MetricType::Counter => f.name.strip_suffix("_total").unwrap_or(f.name),
            _ => f.name,
        };
        let mut metric = encoder.encode_descriptor(name, f.help, None, f.kind)?;
        for (labels, row) in &rows {
            let sample = metric.encode_family(labels)?;
            match (f.kind, (f.value)(row)) {
                (MetricType::Counter, Value::Count(v)) => ConstCounter::new(v).encode(sample)?,
                (MetricType::Counter, Value::Secs(v)) => ConstCounter::new(v).encode(sample)?,
                (_, Value::Count(v)) => ConstGauge::new(v).encode(sample)?,
                (_, Value::Secs(v)) => ConstGauge::new(v).encode(sample)?,
            }
        }
    }
    Ok(())
}

/// Serves `GET /metrics` (Prometheus) on `listener` until one of `stops` is set.
pub fn serve_metrics(listener: TcpListener, ctx: &Context<'_>, stops: &[&AtomicBool]) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = answer_metrics(s, ctx);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Hand-written: one GET path answered and closed needs no HTTP crate's threads or async runtime.
fn answer_metrics(s: TcpStream, ctx: &Context<'_>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&s);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    // The rest of the head, up to the blank line.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = first.split_whitespace();
    let (status, body) = match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics")) => match ctx.prometheus() {
            Ok(b) => ("200 OK", b),
            Err(e) => ("503 Service Unavailable", format!("{e}\n")),
        },
        (Some("GET"), Some(_)) => ("404 Not Found", "try /metrics\n".to_owned()),
        _ => ("400 Bad Request", "GET /metrics\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    (&s).write_all(head.as_bytes())?;
    (&s).write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::protocol::{CoreStats, LaneStats, PortCounters, TcpCounters};

    fn lane() -> LaneStats {
        LaneStats {
            port_index: 0,
            rx_frames: 11,
            tx_frames: 12,
            rx_bytes: 1300,
            tx_bytes: 1400,
            steered_in: 0,
            steered_out: 0,
            steer_dropped: 0,
            tx_nombuf: 0,
            tx_queue_full: 0,
            rx_multiseg_dropped: 0,
            rx_bad_checksum: 0,
            established: 8,
            closed: 2,
            open: 6,
            time_wait: 1,
            buffers_holding: 3,
            buffer_releases: 0,
            no_listener: 1,
            arp_requests: 0,
            arp_replies: 1,
            neighbors: 1,
            neighbors_evicted: 1,
            over_max_connections: 1,
            time_wait_overflow: 1,
            steer_ring: 0,
            tcp: TcpCounters { retransmits: 5, timeouts: 1, ..TcpCounters::default() },
        }
    }

    fn port() -> PortCounters {
        PortCounters {
            port_index: 0,
            device: "net_tap0".into(),
            rx_packets: 21,
            tx_packets: 20,
            rx_bytes: 1500,
            tx_bytes: 1600,
            rx_missed: 0,
            rx_errors: 0,
            tx_errors: 0,
            rx_nombuf: 0,
            mbufs_in_use: 9,
            mbufs_available: 10,
        }
    }

    fn listener() -> ListenerRow {
        ListenerRow {
            port_index: 0,
            address: "198.18.0.2:9000".into(),
            service: "hold".into(),
            policy: "bsd".into(),
            on_full: "refuse".into(),
            backlog_limit: 4,
            queued: 4,
            half_open: 0,
            syns: 5,
            completed: 4,
            accepted: 0,
            refused: 1,
            dropped: 0,
            silent_closed: 0,
            syn_evicted: 0,
            cookies_sent: 0,
            cookies_accepted: 0,
            cookies_invalid: 0,
        }
    }

    #[test]
    fn exposition_keeps_names_types_labels_and_help() {
        let core = CoreStats {
            core: 0,
            turns: 9,
            idle_sleeps: 0,
            elapsed_us: 2_500_000,
            busy_us: 1_234_567,
            lanes: vec![lane()],
        };
        let scrape = Scrape {
            uptime_secs: 12.5,
            listeners: vec![listener()],
            stats: Stats { cores: vec![core], ports: vec![port()] },
        };
        let text = scrape.encode_text().unwrap();
        let hold = r#"{port="0",listen="198.18.0.2:9000",service="hold"}"#;
        for line in [
            "# HELP switchyard_up 1 while the appliance runs.",
            "# TYPE switchyard_up gauge",
            "switchyard_up 1",
            "switchyard_uptime_seconds 12.5",
            "# HELP switchyard_listener_refused_total SYNs answered with an RST because the queue was full (L4).",
            "# TYPE switchyard_listener_refused_total counter",
            &format!("switchyard_listener_refused_total{hold} 1"),
            "# TYPE switchyard_listener_queued gauge",
            &format!("switchyard_listener_queued{hold} 4"),
            r#"switchyard_core_busy_seconds_total{core="0"} 1.234567"#,
            r#"switchyard_core_seconds_total{core="0"} 2.5"#,
            "# HELP switchyard_connections_open Connections open now.",
            r#"switchyard_connections_open{core="0",port="0"} 6"#,
            r#"switchyard_no_listener_total{core="0",port="0"} 1"#,
            r#"switchyard_tcp_retransmits_total{core="0",port="0"} 5"#,
            r#"switchyard_tcp_timeouts_total{core="0",port="0"} 1"#,
            r#"switchyard_port_rx_packets_total{port="0",device="net_tap0"} 21"#,
            r#"switchyard_mbufs_available{port="0",device="net_tap0"} 10"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
        }
    }

    #[test]
    fn every_family_is_shown_even_without_samples() {
        let scrape = Scrape { uptime_secs: 1.0, listeners: vec![], stats: Stats { cores: vec![], ports: vec![] } };
        let text = scrape.encode_text().unwrap();
        let families = APPLIANCE.len() + LISTENER.len() + CORE.len() + LANE.len() + PORT.len();
        let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        assert_eq!(types.len(), families, "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP ")).count(), families);
        for t in types {
            let (name, kind) = t.split_once(' ').unwrap();
            assert_eq!(name.ends_with("_total"), kind == "counter", "{t}");
        }
    }
}
