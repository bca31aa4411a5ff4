//! Live introspection: the appliance answers on a Unix socket, `switchyard ctl` asks.
//!
//! The protocol is one JSON line each way: a request `{"cmd": "status" | "listeners" | "conns" |
//! "stats", "limit": N}` and a response `{"ok": true, "data": ...}` or `{"ok": false, "error":
//! "..."}`. The data types below are the response's, and `--json` prints them as they are.
//!
//! The engines are never touched from outside their core: the control thread asks each core's
//! loop for a [`CoreSnapshot`] (answered between two turns) and merges the answers.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dpdk::{telemetry, Mempool, Port};
use runtime::lcore::{CoreSnapshot, SnapshotRequest, SnapshotRequests};
use serde::{Deserialize, Serialize};

/// A request, as the client sends it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    pub cmd: String,
    /// For `conns`: at most this many connections per core and port.
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// For `capture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureRequest>,
}

/// `ctl capture`: frames of one port, both directions, into a pcapng file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureRequest {
    pub port: usize,
    pub count: u64,
    /// Absolute path the appliance writes.
    pub out: String,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Give up waiting for `count` frames after this long.
    pub secs: u64,
}

/// What a capture wrote.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureReport {
    pub file: String,
    pub written: u64,
    /// Frames not copied: the capture's ring or pool was full.
    pub dropped: u64,
    /// Whether it stopped at `secs` before `count` frames came.
    pub timed_out: bool,
}

fn default_limit() -> usize {
    1000
}

#[derive(Debug, Serialize, Deserialize)]
struct Response {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `ctl status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub dpdk: String,
    pub pid: u32,
    pub config: String,
    pub uptime_secs: f64,
    pub cores: u16,
    pub ports: Vec<PortStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PortStatus {
    pub port: usize,
    pub device: String,
    pub mac: String,
    pub address: String,
    pub gateway: Option<String>,
    pub link_up: bool,
    /// Who computes and checks IPv4 and TCP checksums: `port`, `software`, `none` (a trusted
    /// memory wire), or each way (`rx port, tx software`).
    pub checksums: String,
}

/// `ctl listeners`: one row per port, summed over cores.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListenerRow {
    pub port_index: usize,
    pub address: String,
    pub service: String,
    pub policy: String,
    pub on_full: String,
    /// The queue limit in force (per core).
    pub backlog_limit: usize,
    pub queued: usize,
    pub half_open: usize,
    pub syns: u64,
    pub completed: u64,
    pub accepted: u64,
    pub refused: u64,
    pub dropped: u64,
    pub silent_closed: u64,
}

/// `ctl conns`: one row per connection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConnRow {
    pub local: String,
    pub remote: String,
    pub state: String,
    pub kind: String,
    pub core: usize,
    pub port_index: usize,
    /// Seconds since the handshake completed (SEMANTICS A5), if it has.
    pub connected_secs: Option<f64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// `ctl stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub cores: Vec<CoreStats>,
    pub ports: Vec<PortCounters>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CoreStats {
    pub core: usize,
    pub turns: u64,
    pub idle_sleeps: u64,
    /// Microseconds since the core's loop started.
    pub elapsed_us: u64,
    /// Microseconds of it spent in turns that moved frames (the core's load, even when it busy-polls).
    pub busy_us: u64,
    pub lanes: Vec<LaneStats>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LaneStats {
    pub port_index: usize,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub steered_in: u64,
    pub steered_out: u64,
    pub steer_dropped: u64,
    pub tx_nombuf: u64,
    pub tx_queue_full: u64,
    pub rx_multiseg_dropped: u64,
    pub rx_bad_checksum: u64,
    pub established: u64,
    pub closed: u64,
    pub open: usize,
    pub time_wait: usize,
    /// Connections (and pool slots) whose buffer pages may be resident: serviced since the idle
    /// sweep last gave them back.
    pub buffers_holding: usize,
    /// Times an idle slot's buffer pages were given back to the kernel.
    pub buffer_releases: u64,
    /// TCP segments answered with an RST because no connection or listener wanted them.
    pub no_listener: u64,
    /// ARP requests the engine sent (next hops of its own connections, announcements).
    pub arp_requests: u64,
    /// ARP requests for the engine's addresses it answered (replies that left).
    pub arp_replies: u64,
    /// Addresses in the engine's neighbour table with an answer.
    pub neighbors: usize,
    /// Frames waiting in this core's steering ring for this port (other cores handed them over).
    pub steer_ring: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortCounters {
    pub port_index: usize,
    pub device: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_nombuf: u64,
    pub mbufs_in_use: u32,
    pub mbufs_available: u32,
}

/// What the control thread knows about the running appliance.
pub struct Context<'a> {
    pub started: Instant,
    pub config: String,
    pub ports: &'a [Port],
    pub pools: &'a [std::sync::Arc<Mempool>],
    /// Address/prefix and gateway of each port, as configured.
    pub addresses: Vec<(String, Option<String>)>,
    /// Per port, who does its checksums ([`runtime::device::ChecksumMode`], as shown).
    pub checksums: Vec<String>,
    pub cores: u16,
    /// One snapshot queue per core.
    pub requests: &'a [SnapshotRequests],
    pub eal: &'a dpdk::Eal,
    /// Per port, each core's capture hook.
    pub captures: Vec<Vec<std::sync::Arc<dpdk::pcapng::CaptureHook>>>,
    /// Per port, the length of each core's steering ring (empty with one core).
    pub steer_rings: Vec<Vec<std::sync::Arc<dyn Fn() -> usize + Send + Sync + 'a>>>,
}

impl Context<'_> {
    fn snapshots(&self, conns_limit: usize) -> Result<Vec<CoreSnapshot>, String> {
        let (tx, rx) = mpsc::channel();
        for q in self.requests {
            q.push(SnapshotRequest { conns_limit, reply: tx.clone() })
                .map_err(|_| "a core's request queue is full: try again".to_owned())?;
        }
        let mut v = Vec::new();
        for _ in self.requests {
            v.push(rx.recv_timeout(Duration::from_secs(2)).map_err(|_| "a core did not answer within 2 s".to_owned())?);
        }
        v.sort_by_key(|s| s.core);
        Ok(v)
    }

    /// Connections open on every core now (for the drain).
    pub fn open_connections(&self) -> Result<usize, String> {
        Ok(self.snapshots(0)?.iter().flat_map(|s| s.lanes.iter()).map(|l| l.engine.open).sum())
    }

    fn status(&self) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            dpdk: dpdk::version(),
            pid: std::process::id(),
            config: self.config.clone(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            cores: self.cores,
            ports: self
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| PortStatus {
                    port: i,
                    device: p.name().to_owned(),
                    mac: dpdk::format_mac(&p.mac()),
                    address: self.addresses[i].0.clone(),
                    gateway: self.addresses[i].1.clone(),
                    link_up: p.link_up(),
                    checksums: self.checksums[i].clone(),
                })
                .collect(),
        }
    }

    fn listeners(&self) -> Result<Vec<ListenerRow>, String> {
        let mut rows: Vec<ListenerRow> = Vec::new();
        for snap in self.snapshots(0)? {
            for (pi, lane) in snap.lanes.iter().enumerate() {
                for l in &lane.listeners {
                    let row = match rows
                        .iter_mut()
                        .find(|r| r.port_index == pi && r.address.ends_with(&format!(":{}", l.port)))
                    {
                        Some(r) => r,
                        None => {
                            let ip = self.addresses[pi].0.split('/').next().unwrap_or_default().to_owned();
                            rows.push(ListenerRow {
                                port_index: pi,
                                address: format!("{ip}:{}", l.port),
                                service: l.service.to_owned(),
                                policy: l.policy.as_str().to_owned(),
                                on_full: l.on_full.as_str().to_owned(),
                                backlog_limit: l.stats.limit,
                                queued: 0,
                                half_open: 0,
                                syns: 0,
                                completed: 0,
                                accepted: 0,
                                refused: 0,
                                dropped: 0,
                                silent_closed: 0,
                            });
                            rows.last_mut().expect("just pushed")
                        }
                    };
                    let s = &l.stats;
                    if l.service == "switch" {
                        // One accept queue and one silent-client count for all cores.
                        row.queued = s.queued;
                        row.silent_closed = s.silent_closed;
                    } else {
                        row.queued += s.queued;
                    }
                    row.half_open += s.half_open;
                    row.syns += s.syns;
                    row.completed += s.completed;
                    row.accepted += s.accepted;
                    row.refused += s.refused;
                    row.dropped += s.dropped;
                }
            }
        }
        Ok(rows)
    }

    fn conns(&self, limit: usize) -> Result<Vec<ConnRow>, String> {
        let mut rows = Vec::new();
        for snap in self.snapshots(limit)? {
            for (pi, lane) in snap.lanes.iter().enumerate() {
                for c in &lane.connections {
                    rows.push(ConnRow {
                        local: c.local.to_string(),
                        remote: c.remote.to_string(),
                        state: c.state.to_owned(),
                        kind: c.kind.to_owned(),
                        core: snap.core,
                        port_index: pi,
                        connected_secs: c.connected.map(|d| d.as_secs_f64()),
                        bytes_in: c.bytes_in,
                        bytes_out: c.bytes_out,
                    });
                }
            }
        }
        Ok(rows)
    }

    fn stats(&self) -> Result<Stats, String> {
        let cores = self
            .snapshots(0)?
            .into_iter()
            .map(|snap| CoreStats {
                core: snap.core,
                turns: snap.loop_stats.turns,
                idle_sleeps: snap.loop_stats.idle_sleeps,
                elapsed_us: snap.loop_stats.elapsed_us,
                busy_us: snap.loop_stats.busy_us,
                lanes: snap
                    .lanes
                    .iter()
                    .enumerate()
                    .map(|(pi, l)| {
                        let d = l.device.unwrap_or_default();
                        LaneStats {
                            port_index: pi,
                            rx_frames: d.rx_frames,
                            tx_frames: d.tx_frames,
                            rx_bytes: d.rx_bytes,
                            tx_bytes: d.tx_bytes,
                            steered_in: d.steered_in,
                            steered_out: d.steered_out,
                            steer_dropped: d.steer_dropped,
                            tx_nombuf: d.tx_nombuf,
                            tx_queue_full: d.tx_queue_full,
                            rx_multiseg_dropped: d.rx_multiseg_dropped,
                            rx_bad_checksum: d.rx_bad_checksum,
                            established: l.engine.established,
                            closed: l.engine.closed,
                            open: l.engine.open,
                            time_wait: l.time_wait.live,
                            buffers_holding: l.reclaim.holding,
                            buffer_releases: l.reclaim.releases,
                            no_listener: l.engine.no_listener,
                            arp_requests: l.engine.arp_requests,
                            arp_replies: l.engine.arp_replies,
                            neighbors: l.engine.neighbors,
                            steer_ring: self.steer_rings.get(pi).and_then(|r| r.get(snap.core)).map_or(0, |f| f()),
                        }
                    })
                    .collect(),
            })
            .collect();
        let ports = self
            .ports
            .iter()
            .zip(self.pools)
            .enumerate()
            .map(|(i, (p, pool))| {
                let s = p.stats();
                PortCounters {
                    port_index: i,
                    device: p.name().to_owned(),
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_missed: s.rx_missed,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                    rx_nombuf: s.rx_nombuf,
                    mbufs_in_use: pool.in_use(),
                    mbufs_available: pool.available(),
                }
            })
            .collect();
        Ok(Stats { cores, ports })
    }

    fn capture(&self, c: &CaptureRequest) -> Result<CaptureReport, String> {
        use dpdk::pcapng::{Capture, PcapngFile};
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let hooks =
            self.captures.get(c.port).ok_or_else(|| format!("no port {} (ports: 0..{})", c.port, self.ports.len()))?;
        if c.count == 0 || !(64..=9000).contains(&c.snaplen) || !Path::new(&c.out).is_absolute() {
            return Err("capture wants --count >= 1, --snaplen 64..=9000 and an absolute --out path".into());
        }
        let port = &self.ports[c.port];
        let name = format!("sy_cap_{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let cap = Capture::new(self.eal, &name, port.id().0, c.count, c.snaplen).map_err(|e| e.to_string())?;
        let comment = format!("switchyard capture, port {} ({})", c.port, port.name());
        let mut file = PcapngFile::create(self.eal, Path::new(&c.out), &comment).map_err(|e| e.to_string())?;
        for h in hooks {
            h.arm(cap.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(c.secs);
        let mut timed_out = false;
        let mut result = Ok(());
        loop {
            let mut got = Vec::new();
            cap.take(&mut got);
            got.truncate((c.count - file.written) as usize);
            if !got.is_empty() {
                if let Err(e) = file.write(got) {
                    result = Err(e.to_string());
                    break;
                }
            }
            if file.written >= c.count {
                break;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for h in hooks {
            h.disarm();
        }
        result?;
        Ok(CaptureReport {
            file: c.out.clone(),
            written: file.written,
            dropped: cap.dropped.load(Ordering::Relaxed),
            timed_out,
        })
    }

    fn answer(&self, req: &Request) -> Result<serde_json::Value, String> {
        let to_json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
        match req.cmd.as_str() {
            "status" => to_json(serde_json::to_value(self.status())),
            "listeners" => to_json(serde_json::to_value(self.listeners()?)),
            "conns" => to_json(serde_json::to_value(self.conns(req.limit)?)),
            "stats" => to_json(serde_json::to_value(self.stats()?)),
            "capture" => {
                let c = req.capture.as_ref().ok_or("capture needs its parameters")?;
                to_json(serde_json::to_value(self.capture(c)?))
            }
            other => Err(format!("unknown command {other:?}: expected status, listeners, conns, stats or capture")),
        }
    }
}

impl Context<'_> {
    /// The same counters in Prometheus's text format (version 0.0.4).
    pub fn prometheus(&self) -> Result<String, String> {
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

/// Switchyard's commands in DPDK's telemetry (`dpdk-telemetry.py -f <file_prefix>`).
pub const TELEMETRY_COMMANDS: &[(&str, &str)] = &[
    ("/switchyard/status", "Switchyard: version, uptime, cores, ports, who does each port's checksums."),
    ("/switchyard/listeners", "Switchyard: the listeners' addresses. Parameter for /switchyard/listener."),
    ("/switchyard/listener", "Switchyard: one listener's policy and counters. Parameter: ADDRESS:PORT."),
    ("/switchyard/cores", "Switchyard: the cores running an engine. Parameter for /switchyard/core."),
    (
        "/switchyard/core",
        "Switchyard: one core's loop, frame and connection counters, per port. Parameter: core number.",
    ),
];

impl Context<'_> {
    /// The answer to a telemetry command (`None`: bad parameters).
    pub fn telemetry(&self, cmd: &str, params: &str) -> Option<telemetry::Reply> {
        use telemetry::{Reply, Value};
        let u = |n: u64| Value::U64(n);
        match cmd {
            "/switchyard/status" => {
                let s = self.status();
                let mut d = vec![
                    ("version".into(), Value::Str(s.version)),
                    ("dpdk".into(), Value::Str(s.dpdk)),
                    ("pid".into(), u(s.pid.into())),
                    ("uptime_s".into(), u(s.uptime_secs as u64)),
                    ("cores".into(), u(s.cores.into())),
                    ("ports".into(), u(s.ports.len() as u64)),
                ];
                // The rest of a port is DPDK's own (/ethdev/info,N); who does its checksums is ours.
                d.extend(s.ports.into_iter().map(|p| (format!("port{}_checksums", p.port), Value::Str(p.checksums))));
                Some(Reply::Dict(d))
            }
            "/switchyard/listeners" => {
                let v = self.listeners().ok()?;
                Some(Reply::List(v.into_iter().map(|l| Value::Str(l.address)).collect()))
            }
            "/switchyard/listener" => {
                let l = self.listeners().ok()?.into_iter().find(|l| l.address == params.trim())?;
                Some(Reply::Dict(vec![
                    ("service".into(), Value::Str(l.service)),
                    ("policy".into(), Value::Str(l.policy)),
                    ("on_full".into(), Value::Str(l.on_full)),
                    ("backlog_limit".into(), u(l.backlog_limit as u64)),
                    ("queued".into(), u(l.queued as u64)),
                    ("half_open".into(), u(l.half_open as u64)),
                    ("syns".into(), u(l.syns)),
                    ("completed".into(), u(l.completed)),
                    ("accepted".into(), u(l.accepted)),
                    ("refused".into(), u(l.refused)),
                    ("dropped".into(), u(l.dropped)),
                    ("silent_closed".into(), u(l.silent_closed)),
                ]))
            }
            "/switchyard/cores" => Some(Reply::List((0..u64::from(self.cores)).map(u).collect())),
            "/switchyard/core" => {
                let n: usize = params.trim().parse().ok()?;
                let stats = self.stats().ok()?;
                let c = stats.cores.into_iter().find(|c| c.core == n)?;
                let mut d = vec![
                    ("turns".into(), u(c.turns)),
                    ("idle_sleeps".into(), u(c.idle_sleeps)),
                    ("elapsed_us".into(), u(c.elapsed_us)),
                    ("busy_us".into(), u(c.busy_us)),
                ];
                for l in c.lanes {
                    let p = l.port_index;
                    for (k, v) in [
                        ("rx_frames", l.rx_frames),
                        ("tx_frames", l.tx_frames),
                        ("rx_bytes", l.rx_bytes),
                        ("tx_bytes", l.tx_bytes),
                        ("steered_in", l.steered_in),
                        ("steered_out", l.steered_out),
                        ("steer_dropped", l.steer_dropped),
                        ("tx_nombuf", l.tx_nombuf),
                        ("tx_queue_full", l.tx_queue_full),
                        ("established", l.established),
                        ("closed", l.closed),
                        ("open", l.open as u64),
                        ("time_wait", l.time_wait as u64),
                        ("steer_ring", l.steer_ring as u64),
                        ("buffers_holding", l.buffers_holding as u64),
                        ("buffer_releases", l.buffer_releases),
                        ("rx_multiseg_dropped", l.rx_multiseg_dropped),
                        ("rx_bad_checksum", l.rx_bad_checksum),
                        ("no_listener", l.no_listener),
                        ("arp_requests", l.arp_requests),
                        ("arp_replies", l.arp_replies),
                        ("neighbors", l.neighbors as u64),
                    ] {
                        d.push((format!("port{p}_{k}"), u(v)));
                    }
                }
                Some(Reply::Dict(d))
            }
            _ => None,
        }
    }
}

/// Answers telemetry requests until one of `stops` is set, then disconnects the commands.
pub fn serve_telemetry(requests: mpsc::Receiver<telemetry::Request>, ctx: &Context<'_>, stops: &[&AtomicBool]) {
    while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
        if let Ok(r) = requests.recv_timeout(Duration::from_millis(50)) {
            let _ = r.reply.send(ctx.telemetry(&r.cmd, &r.params));
        }
    }
    telemetry::disconnect();
}

/// Serves `GET /metrics` (Prometheus) on `listener` until one of `stops` is set.
pub fn serve_metrics(listener: std::net::TcpListener, ctx: &Context<'_>, stops: &[&AtomicBool]) {
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

fn answer_metrics(s: std::net::TcpStream, ctx: &Context<'_>) -> io::Result<()> {
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

/// Binds the control socket (removing a stale one left by a process that is gone).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match UnixStream::connect(path) {
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another appliance answers there (give this one its own [control] socket)", path.display()),
            ))
        }
        Err(_) => {
            let _ = std::fs::remove_file(path);
        }
    }
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Answers requests until one of `stops` is set, then removes the socket file.
pub fn serve(listener: UnixListener, path: PathBuf, ctx: &Context<'_>, stops: &[&AtomicBool]) {
    while !stops.iter().any(|s| s.load(Ordering::Relaxed)) {
        match listener.accept() {
            Ok((s, _)) => {
                if let Err(e) = answer_one(s, ctx) {
                    tracing::debug!(error = %e, "control request");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(error = %e, "control socket");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn answer_one(s: UnixStream, ctx: &Context<'_>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    let resp = match serde_json::from_str::<Request>(line.trim()) {
        Ok(req) => match ctx.answer(&req) {
            Ok(data) => Response { ok: true, data: Some(data), error: None },
            Err(e) => Response { ok: false, data: None, error: Some(e) },
        },
        Err(e) => Response { ok: false, data: None, error: Some(format!("bad request {:?}: {e}", line.trim())) },
    };
    let mut out = serde_json::to_vec(&resp).map_err(io::Error::other)?;
    out.push(b'\n');
    (&s).write_all(&out)
}

/// Why `switchyard ctl` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("the appliance is not running: no control socket at {0} (start it with `switchyard run`, or point --socket or --config at the one that runs)")]
    NotRunning(PathBuf),
    #[error("the appliance is not running: {0} is left from one that stopped (start it with `switchyard run`)")]
    Stale(PathBuf),
    #[error("talking to the appliance at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the appliance answered: {0}")]
    Refused(String),
}

/// Sends one request and returns the response's data.
pub fn request(path: &Path, req: &Request) -> Result<serde_json::Value, CtlError> {
    let io = |source| CtlError::Io { path: path.to_owned(), source };
    let s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CtlError::NotRunning(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(CtlError::Stale(path.to_owned())),
        Err(e) => return Err(io(e)),
    };
    let wait = req.capture.as_ref().map_or(10, |c| c.secs + 10);
    s.set_read_timeout(Some(Duration::from_secs(wait))).map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("a request serializes");
    line.push(b'\n');
    (&s).write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(io)?;
    let resp: Response = serde_json::from_str(&answer)
        .map_err(|e| io(io::Error::new(io::ErrorKind::InvalidData, format!("unreadable answer: {e}"))))?;
    match resp {
        Response { ok: true, data: Some(d), .. } => Ok(d),
        Response { error, .. } => Err(CtlError::Refused(error.unwrap_or_else(|| "no data".into()))),
    }
}

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// The human-readable form of a response's data.
pub fn render(cmd: &str, data: serde_json::Value) -> Result<String, serde_json::Error> {
    Ok(match cmd {
        "status" => {
            let s: Status = serde_json::from_value(data)?;
            let mut out = format!(
                "switchyard {} ({}), pid {}, up {:.0} s, {} core(s), config {}\n",
                s.version, s.dpdk, s.pid, s.uptime_secs, s.cores, s.config
            );
            let rows: Vec<Vec<String>> = s
                .ports
                .iter()
                .map(|p| {
                    vec![
                        p.port.to_string(),
                        p.device.clone(),
                        p.mac.clone(),
                        p.address.clone(),
                        p.gateway.clone().unwrap_or_else(|| "-".into()),
                        if p.link_up { "up" } else { "down" }.into(),
                        p.checksums.clone(),
                    ]
                })
                .collect();
            out.push_str(&table(&["PORT", "DEVICE", "MAC", "ADDRESS", "GATEWAY", "LINK", "CHECKSUMS"], &rows));
            out
        }
        "listeners" => {
            let v: Vec<ListenerRow> = serde_json::from_value(data)?;
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|l| {
                    vec![
                        l.address.clone(),
                        l.service.clone(),
                        l.policy.clone(),
                        l.on_full.clone(),
                        l.backlog_limit.to_string(),
                        l.queued.to_string(),
                        l.half_open.to_string(),
                        l.accepted.to_string(),
                        l.refused.to_string(),
                        l.dropped.to_string(),
                        l.silent_closed.to_string(),
                    ]
                })
                .collect();
            table(
                &[
                    "LISTEN",
                    "SERVICE",
                    "POLICY",
                    "ON_FULL",
                    "LIMIT",
                    "QUEUED",
                    "HALF_OPEN",
                    "ACCEPTED",
                    "REFUSED",
                    "DROPPED",
                    "SILENT_CLOSED",
                ],
                &rows,
            )
        }
        "conns" => {
            let v: Vec<ConnRow> = serde_json::from_value(data)?;
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|c| {
                    vec![
                        c.local.clone(),
                        c.remote.clone(),
                        c.state.clone(),
                        c.kind.clone(),
                        c.core.to_string(),
                        c.connected_secs.map_or_else(|| "-".into(), |s| format!("{s:.1}")),
                        c.bytes_in.to_string(),
                        c.bytes_out.to_string(),
                    ]
                })
                .collect();
            table(&["LOCAL", "REMOTE", "STATE", "KIND", "CORE", "CONNECTED_S", "BYTES_IN", "BYTES_OUT"], &rows)
        }
        "capture" => {
            let r: CaptureReport = serde_json::from_value(data)?;
            format!(
                "{} frame(s) written to {}{}{}",
                r.written,
                r.file,
                if r.dropped > 0 { format!(", {} not copied (ring or pool full)", r.dropped) } else { String::new() },
                if r.timed_out { ", stopped at --secs before --count frames came" } else { "" }
            )
        }
        "stats" => {
            let s: Stats = serde_json::from_value(data)?;
            let cores: Vec<Vec<String>> = s
                .cores
                .iter()
                .map(|c| {
                    let frames: u64 = c.lanes.iter().map(|l| l.rx_frames + l.tx_frames).sum();
                    vec![
                        c.core.to_string(),
                        c.turns.to_string(),
                        format!("{:.1}", c.elapsed_us as f64 / 1e6),
                        format!("{:.1}", 100.0 * c.busy_us as f64 / c.elapsed_us.max(1) as f64),
                        // Frames per busy second: what the core carries when saturated.
                        if c.busy_us > 0 {
                            format!("{:.0}", frames as f64 * 1e6 / c.busy_us as f64)
                        } else {
                            "-".into()
                        },
                    ]
                })
                .collect();
            let lanes: Vec<Vec<String>> = s
                .cores
                .iter()
                .flat_map(|c| {
                    c.lanes.iter().map(move |l| {
                        vec![
                            c.core.to_string(),
                            l.port_index.to_string(),
                            l.rx_frames.to_string(),
                            l.tx_frames.to_string(),
                            l.rx_bytes.to_string(),
                            l.tx_bytes.to_string(),
                            l.steered_in.to_string(),
                            l.steered_out.to_string(),
                            (l.steer_dropped
                                + l.tx_nombuf
                                + l.tx_queue_full
                                + l.rx_multiseg_dropped
                                + l.rx_bad_checksum)
                                .to_string(),
                            l.open.to_string(),
                            l.established.to_string(),
                            l.time_wait.to_string(),
                            l.steer_ring.to_string(),
                            l.no_listener.to_string(),
                            l.neighbors.to_string(),
                        ]
                    })
                })
                .collect();
            let ports: Vec<Vec<String>> = s
                .ports
                .iter()
                .map(|p| {
                    vec![
                        p.port_index.to_string(),
                        p.device.clone(),
                        p.rx_packets.to_string(),
                        p.tx_packets.to_string(),
                        p.rx_bytes.to_string(),
                        p.tx_bytes.to_string(),
                        (p.rx_missed + p.rx_errors + p.tx_errors + p.rx_nombuf).to_string(),
                        format!("{}/{}", p.mbufs_in_use, p.mbufs_in_use + p.mbufs_available),
                    ]
                })
                .collect();
            format!(
                "{}\n\n{}\n\n{}",
                table(&["CORE", "TURNS", "SECS", "BUSY_%", "FRAMES_PER_BUSY_SEC"], &cores),
                table(
                    &[
                        "CORE",
                        "PORT",
                        "RX_FRAMES",
                        "TX_FRAMES",
                        "RX_BYTES",
                        "TX_BYTES",
                        "STEERED_IN",
                        "STEERED_OUT",
                        "DROPS",
                        "OPEN",
                        "ESTABLISHED",
                        "TIME_WAIT",
                        "RING",
                        "NO_LISTENER",
                        "NEIGHBORS"
                    ],
                    &lanes
                ),
                table(
                    &["PORT", "DEVICE", "RX_PKTS", "TX_PKTS", "RX_BYTES", "TX_BYTES", "ERRORS", "MBUFS_IN_USE"],
                    &ports
                )
            )
        }
        _ => serde_json::to_string_pretty(&data)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_pads_columns() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()], vec!["y".into(), "z".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\ny          z");
    }

    #[test]
    fn a_client_with_no_appliance_says_what_to_do() {
        let path = std::env::temp_dir().join(format!("sy-ctl-none-{}.sock", std::process::id()));
        let e = request(&path, &Request { cmd: "status".into(), limit: 1, capture: None }).unwrap_err();
        assert!(matches!(e, CtlError::NotRunning(_)));
        assert!(e.to_string().contains("switchyard run"), "{e}");
        // A socket file nobody answers on: stale.
        let l = UnixListener::bind(&path).unwrap();
        drop(l);
        let e = request(&path, &Request { cmd: "status".into(), limit: 1, capture: None }).unwrap_err();
        assert!(matches!(e, CtlError::Stale(_)), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r: Request = serde_json::from_str(r#"{"cmd":"conns"}"#).unwrap();
        assert_eq!(r, Request { cmd: "conns".into(), limit: 1000, capture: None });
    }
}
