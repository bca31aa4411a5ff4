//! What the control thread knows about the running appliance, and the queries it answers from it.
//!
//! The engines are never touched from outside their core: each query asks every core's loop for a
//! [`CoreSnapshot`] (answered between two turns) and merges the answers into the rows of
//! [`super::protocol`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use dpdk::{Mempool, Port};
use runtime::lcore::{CoreSnapshot, SnapshotRequest, SnapshotRequests};

use super::protocol::{
    CaptureReport, CaptureRequest, ConnRow, CoreStats, LaneStats, ListenerRow, PortCounters, PortStatus, Stats, Status,
    TcpCounters,
};

/// What the control thread knows about the running appliance.
pub struct Context<'a> {
    pub started: Instant,
    pub config: String,
    pub ports: &'a [Port],
    pub pools: &'a [Arc<Mempool>],
    /// Address/prefix and gateway of each port, as configured.
    pub addresses: Vec<(String, Option<String>)>,
    /// Per port, who does its checksums ([`runtime::device::ChecksumMode`], as shown).
    pub checksums: Vec<String>,
    pub cores: u16,
    /// One snapshot queue per core.
    pub requests: &'a [SnapshotRequests],
    pub eal: &'a dpdk::Eal,
    /// Per port, each core's capture hook.
    pub captures: Vec<Vec<Arc<dpdk::pcapng::CaptureHook>>>,
    /// Per port, the length of each core's steering ring (empty with one core).
    pub steer_rings: Vec<Vec<Arc<dyn Fn() -> usize + Send + Sync + 'a>>>,
}

/// Why a query of the running appliance failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a core's request queue is full: try again")]
    QueueFull,
    #[error("a core did not answer within 2 s")]
    NoAnswer,
    #[error("no port {port} (ports: 0..{ports})")]
    NoPort { port: usize, ports: usize },
    #[error("capture wants --count >= 1, --snaplen 64..=9000 and an absolute --out path")]
    CaptureParameters,
    #[error(transparent)]
    Capture(#[from] dpdk::DpdkError),
    /// An answer that did not serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The Prometheus encoder failed.
    #[error("encoding the metrics: {0}")]
    Metrics(#[from] std::fmt::Error),
}

impl Context<'_> {
    fn snapshots(&self, conns_limit: usize) -> Result<Vec<CoreSnapshot>, QueryError> {
        let (tx, rx) = mpsc::channel();
        for q in self.requests {
            q.push(SnapshotRequest { conns_limit, reply: tx.clone() }).map_err(|_| QueryError::QueueFull)?;
        }
        let mut v = Vec::new();
        for _ in self.requests {
            v.push(rx.recv_timeout(Duration::from_secs(2)).map_err(|_| QueryError::NoAnswer)?);
        }
        v.sort_by_key(|s| s.core);
        Ok(v)
    }

    /// Connections open on every core now (for the drain).
    pub fn open_connections(&self) -> Result<usize, QueryError> {
        Ok(self.snapshots(0)?.iter().flat_map(|s| s.lanes.iter()).map(|l| l.engine.open).sum())
    }

    /// `ctl status`.
    pub fn status(&self) -> Status {
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

    /// `ctl listeners`: one row per listening port, summed over cores.
    pub fn listeners(&self) -> Result<Vec<ListenerRow>, QueryError> {
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
                                syn_evicted: 0,
                                cookies_sent: 0,
                                cookies_accepted: 0,
                                cookies_invalid: 0,
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
                    row.syn_evicted += s.syn_evicted;
                    row.cookies_sent += s.cookies_sent;
                    row.cookies_accepted += s.cookies_accepted;
                    row.cookies_invalid += s.cookies_invalid;
                }
            }
        }
        Ok(rows)
    }

    /// `ctl conns`: at most `limit` connections per core and port.
    pub fn conns(&self, limit: usize) -> Result<Vec<ConnRow>, QueryError> {
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

    /// `ctl stats`: every core's loop and lanes, and every port's counters.
    pub fn stats(&self) -> Result<Stats, QueryError> {
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
                            neighbors_evicted: l.engine.neighbors_evicted,
                            over_max_connections: l.engine.over_max_connections,
                            time_wait_overflow: l.time_wait.overflow,
                            steer_ring: self.steer_rings.get(pi).and_then(|r| r.get(snap.core)).map_or(0, |f| f()),
                            tcp: tcp_counters(&l.engine),
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

    /// `ctl capture`: arms every core's hook on the port, writes frames until `count` or `secs`.
    pub fn capture(&self, c: &CaptureRequest) -> Result<CaptureReport, QueryError> {
        use dpdk::pcapng::{Capture, PcapngFile};
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let hooks = self.captures.get(c.port).ok_or(QueryError::NoPort { port: c.port, ports: self.ports.len() })?;
        if c.count == 0 || !(64..=9000).contains(&c.snaplen) || !Path::new(&c.out).is_absolute() {
            return Err(QueryError::CaptureParameters);
        }
        let port = &self.ports[c.port];
        let name = format!("sy_cap_{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let cap = Capture::new(self.eal, &name, port.id().0, c.count, c.snaplen)?;
        let comment = format!("switchyard capture, port {} ({})", c.port, port.name());
        let mut file = PcapngFile::create(self.eal, Path::new(&c.out), &comment)?;
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
                    result = Err(e);
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
}

/// The engine's own TCP's counters as `ctl stats` shows them.
fn tcp_counters(e: &engine::EngineStats) -> TcpCounters {
    let t = &e.tcp;
    TcpCounters {
        retransmits: t.retransmits,
        timeouts: t.timeouts,
        tlp: t.tlp,
        fast_recoveries: t.fast_recoveries,
        undos: t.undos,
        challenge_acks: t.challenge_acks,
        acks_throttled: t.acks_throttled,
        paws_dropped: t.paws_dropped,
        out_of_window: t.out_of_window,
        ooo_rejected: t.ooo_rejected,
        bad_segments: e.tcp_bad_segments,
        keepalive_probes: t.keepalive_probes,
        keepalive_timeouts: t.keepalive_timeouts,
    }
}
