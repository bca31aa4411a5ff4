//! Switchyard's commands in DPDK's telemetry socket, beside DPDK's own (`/ethdev/...`): the same
//! figures as the control socket's, as DPDK's dictionaries and lists.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use dpdk::telemetry;

use super::context::Context;

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
                // The rest of a port is DPDK's own (/ethdev/info,N); who does its checksums is
                // Switchyard's.
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
                    ("syn_evicted".into(), u(l.syn_evicted)),
                    ("syn_cookies_sent".into(), u(l.cookies_sent)),
                    ("syn_cookies_accepted".into(), u(l.cookies_accepted)),
                    ("syn_cookies_invalid".into(), u(l.cookies_invalid)),
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
                        ("neighbors_evicted", l.neighbors_evicted),
                        ("over_max_connections", l.over_max_connections),
                        ("time_wait_overflow", l.time_wait_overflow),
                        ("tcp_retransmits", l.tcp.retransmits),
                        ("tcp_timeouts", l.tcp.timeouts),
                        ("tcp_tlp", l.tcp.tlp),
                        ("tcp_fast_recoveries", l.tcp.fast_recoveries),
                        ("tcp_undos", l.tcp.undos),
                        ("tcp_challenge_acks", l.tcp.challenge_acks),
                        ("tcp_acks_throttled", l.tcp.acks_throttled),
                        ("tcp_paws_dropped", l.tcp.paws_dropped),
                        ("tcp_out_of_window", l.tcp.out_of_window),
                        ("tcp_ooo_rejected", l.tcp.ooo_rejected),
                        ("tcp_bad_segments", l.tcp.bad_segments),
                        ("tcp_keepalive_probes", l.tcp.keepalive_probes),
                        ("tcp_keepalive_timeouts", l.tcp.keepalive_timeouts),
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
