//! Prometheus exposition of the control socket's counters, and the HTTP endpoint that serves it.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::context::{Context, QueryError};
use super::protocol::{CoreStats, LaneStats, ListenerRow, PortCounters};

impl Context<'_> {
    /// The same counters in Prometheus's text format (version 0.0.4).
    pub fn prometheus(&self) -> Result<String, QueryError> {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        };
        family("switchyard_up", "gauge", "1 while the appliance runs.", vec![(String::new(), 1.0)]);
        family(
            "switchyard_uptime_seconds",
            "gauge",
            "Seconds since the appliance started.",
            vec![(String::new(), self.started.elapsed().as_secs_f64())],
        );
        let listeners = self.listeners()?;
        let l = |f: fn(&ListenerRow) -> f64| -> Vec<(String, f64)> {
            listeners
                .iter()
                .map(|r| {
                    (format!("port=\"{}\",listen=\"{}\",service=\"{}\"", r.port_index, r.address, r.service), f(r))
                })
                .collect()
        };
        for (name, kind, help, f) in [
            (
                "switchyard_listener_syns_total",
                "counter",
                "SYNs that asked for a new connection.",
                (|r: &ListenerRow| r.syns as f64) as fn(&ListenerRow) -> f64,
            ),
            ("switchyard_listener_completed_total", "counter", "Handshakes completed.", |r| r.completed as f64),
            (
                "switchyard_listener_accepted_total",
                "counter",
                "Connections taken by the service or application.",
                |r| r.accepted as f64,
            ),
            (
                "switchyard_listener_refused_total",
                "counter",
                "SYNs answered with an RST because the queue was full (L4).",
                |r| r.refused as f64,
            ),
            ("switchyard_listener_dropped_total", "counter", "SYNs ignored because the queue was full (B3).", |r| {
                r.dropped as f64
            }),
            ("switchyard_listener_silent_closed_total", "counter", "Silent clients closed (A4).", |r| {
                r.silent_closed as f64
            }),
            ("switchyard_listener_queued", "gauge", "Handshakes completed, not accepted yet (B1).", |r| {
                r.queued as f64
            }),
            ("switchyard_listener_half_open", "gauge", "Handshakes in progress.", |r| r.half_open as f64),
            ("switchyard_listener_backlog_limit", "gauge", "The queue limit in force, per core (B2, B5).", |r| {
                r.backlog_limit as f64
            }),
        ] {
            family(name, kind, help, l(f));
        }
        let stats = self.stats()?;
        let core = |f: fn(&CoreStats) -> f64| -> Vec<(String, f64)> {
            stats.cores.iter().map(|c| (format!("core=\"{}\"", c.core), f(c))).collect()
        };
        family(
            "switchyard_core_seconds_total",
            "counter",
            "Seconds the core's loop has run.",
            core(|c| c.elapsed_us as f64 / 1e6),
        );
        family(
            "switchyard_core_busy_seconds_total",
            "counter",
            "Seconds of them spent in loop turns that moved frames.",
            core(|c| c.busy_us as f64 / 1e6),
        );
        let lanes: Vec<(usize, &LaneStats)> =
            stats.cores.iter().flat_map(|c| c.lanes.iter().map(move |l| (c.core, l))).collect();
        let lane = |f: fn(&LaneStats) -> f64| -> Vec<(String, f64)> {
            lanes.iter().map(|(c, l)| (format!("core=\"{c}\",port=\"{}\"", l.port_index), f(l))).collect()
        };
        for (name, kind, help, f) in [
            (
                "switchyard_rx_frames_total",
                "counter",
                "Frames received on the core's queue.",
                (|l: &LaneStats| l.rx_frames as f64) as fn(&LaneStats) -> f64,
            ),
            ("switchyard_tx_frames_total", "counter", "Frames sent from the core's queue.", |l| l.tx_frames as f64),
            ("switchyard_rx_bytes_total", "counter", "Bytes received on the core's queue.", |l| l.rx_bytes as f64),
            ("switchyard_tx_bytes_total", "counter", "Bytes handed to the core's queue for sending.", |l| {
                l.tx_bytes as f64
            }),
            ("switchyard_steered_in_total", "counter", "Frames other cores handed to this one.", |l| {
                l.steered_in as f64
            }),
            ("switchyard_steered_out_total", "counter", "Frames handed to the core that owns their flow.", |l| {
                l.steered_out as f64
            }),
            ("switchyard_steer_dropped_total", "counter", "Frames dropped because the owner's ring was full.", |l| {
                l.steer_dropped as f64
            }),
            ("switchyard_tx_nombuf_total", "counter", "Frames not built for want of an mbuf.", |l| l.tx_nombuf as f64),
            ("switchyard_tx_queue_full_total", "counter", "Frames dropped because the tx queue stayed full.", |l| {
                l.tx_queue_full as f64
            }),
            (
                "switchyard_rx_multiseg_dropped_total",
                "counter",
                "Received frames dropped because they spanned several mbufs.",
                |l| l.rx_multiseg_dropped as f64,
            ),
            (
                "switchyard_rx_bad_checksum_total",
                "counter",
                "Received frames dropped because a checksum was wrong.",
                |l| l.rx_bad_checksum as f64,
            ),
            ("switchyard_connections_established_total", "counter", "Handshakes completed.", |l| l.established as f64),
            ("switchyard_connections_closed_total", "counter", "Connections ended.", |l| l.closed as f64),
            ("switchyard_connections_open", "gauge", "Connections open now.", |l| l.open as f64),
            ("switchyard_time_wait_entries", "gauge", "4-tuples in TIME_WAIT (T1, T2).", |l| l.time_wait as f64),
            ("switchyard_steer_ring_frames", "gauge", "Frames waiting in the core's steering ring.", |l| {
                l.steer_ring as f64
            }),
            (
                "switchyard_buffers_holding",
                "gauge",
                "Connection slots whose buffer pages may be resident (not given back since last used).",
                |l| l.buffers_holding as f64,
            ),
            (
                "switchyard_buffer_releases_total",
                "counter",
                "Times an idle connection slot's buffer pages were given back to the kernel.",
                |l| l.buffer_releases as f64,
            ),
            (
                "switchyard_no_listener_total",
                "counter",
                "TCP segments answered with an RST because no connection or listener wanted them.",
                |l| l.no_listener as f64,
            ),
            ("switchyard_arp_requests_total", "counter", "ARP requests the engine sent.", |l| l.arp_requests as f64),
            (
                "switchyard_arp_replies_total",
                "counter",
                "ARP requests for the engine's addresses that it answered.",
                |l| l.arp_replies as f64,
            ),
            ("switchyard_neighbors", "gauge", "Addresses in the engine's neighbour table with an answer.", |l| {
                l.neighbors as f64
            }),
        ] {
            family(name, kind, help, lane(f));
        }
        let port = |f: fn(&PortCounters) -> f64| -> Vec<(String, f64)> {
            stats.ports.iter().map(|p| (format!("port=\"{}\",device=\"{}\"", p.port_index, p.device), f(p))).collect()
        };
        for (name, kind, help, f) in [
            (
                "switchyard_port_rx_packets_total",
                "counter",
                "Packets the NIC received.",
                (|p: &PortCounters| p.rx_packets as f64) as fn(&PortCounters) -> f64,
            ),
            ("switchyard_port_tx_packets_total", "counter", "Packets the NIC sent.", |p| p.tx_packets as f64),
            ("switchyard_port_rx_bytes_total", "counter", "Bytes the NIC received.", |p| p.rx_bytes as f64),
            ("switchyard_port_tx_bytes_total", "counter", "Bytes the NIC sent.", |p| p.tx_bytes as f64),
            ("switchyard_port_rx_missed_total", "counter", "Packets the NIC dropped for want of room.", |p| {
                p.rx_missed as f64
            }),
            ("switchyard_port_rx_errors_total", "counter", "Receive errors.", |p| p.rx_errors as f64),
            ("switchyard_port_tx_errors_total", "counter", "Transmit errors.", |p| p.tx_errors as f64),
            ("switchyard_port_rx_nombuf_total", "counter", "Receive mbuf allocation failures.", |p| p.rx_nombuf as f64),
            ("switchyard_mbufs_in_use", "gauge", "Mbufs of the port's pool in use.", |p| f64::from(p.mbufs_in_use)),
            ("switchyard_mbufs_available", "gauge", "Mbufs of the port's pool free.", |p| f64::from(p.mbufs_available)),
        ] {
            family(name, kind, help, port(f));
        }
        Ok(out)
    }
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
