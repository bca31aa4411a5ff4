//! `switchyard ctl`'s side of the control socket: it sends one request, reads the answer, and
//! renders the answer's data as tables (or leaves it to `--json`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{CaptureReport, ConnRow, ListenerRow, Request, Response, Stats, Status};

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
    // A capture answers when it ends, up to its `secs` later.
    let wait = match req {
        Request::Capture { capture } => capture.secs + 10,
        _ => 10,
    };
    s.set_read_timeout(Some(Duration::from_secs(wait))).map_err(io)?;
    let mut line = serde_json::to_vec(req).expect("a request serializes");
    line.push(b'\n');
    (&s).write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).map_err(io)?;
    let resp: Response = serde_json::from_str(&answer)
        .map_err(|e| io(io::Error::new(io::ErrorKind::InvalidData, format!("unreadable answer: {e}"))))?;
    resp.into_result().map_err(CtlError::Refused)
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
pub fn render(req: &Request, data: serde_json::Value) -> Result<String, serde_json::Error> {
    Ok(match req {
        Request::Status => {
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
        Request::Listeners => {
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
                        l.syn_evicted.to_string(),
                        l.cookies_sent.to_string(),
                        l.cookies_accepted.to_string(),
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
                    "SYN_EVICTED",
                    "COOKIES",
                    "COOKIE_CONNS",
                    "SILENT_CLOSED",
                ],
                &rows,
            )
        }
        Request::Conns { .. } => {
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
        Request::Capture { .. } => {
            let r: CaptureReport = serde_json::from_value(data)?;
            format!(
                "{} frame(s) written to {}{}{}",
                r.written,
                r.file,
                if r.dropped > 0 { format!(", {} not copied (ring or pool full)", r.dropped) } else { String::new() },
                if r.timed_out { ", stopped at --secs before --count frames came" } else { "" }
            )
        }
        Request::Stats => {
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
            let tcp: Vec<Vec<String>> = s
                .cores
                .iter()
                .flat_map(|c| {
                    c.lanes.iter().map(move |l| {
                        let t = &l.tcp;
                        [
                            c.core as u64,
                            l.port_index as u64,
                            t.retransmits,
                            t.timeouts,
                            t.tlp,
                            t.fast_recoveries,
                            t.undos,
                            t.challenge_acks,
                            t.acks_throttled,
                            t.paws_dropped,
                            t.out_of_window,
                            t.ooo_rejected,
                            t.bad_segments,
                        ]
                        .iter()
                        .map(u64::to_string)
                        .collect()
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
                "{}\n\n{}\n\n{}\n\n{}",
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
                    &[
                        "CORE",
                        "PORT",
                        "RETRANSMITS",
                        "TIMEOUTS",
                        "TLP",
                        "RECOVERIES",
                        "UNDOS",
                        "CHALLENGE_ACKS",
                        "THROTTLED",
                        "PAWS_DROPPED",
                        "OUT_OF_WINDOW",
                        "OOO_REJECTED",
                        "BAD_SEGMENTS"
                    ],
                    &tcp
                ),
                table(
                    &["PORT", "DEVICE", "RX_PKTS", "TX_PKTS", "RX_BYTES", "TX_BYTES", "ERRORS", "MBUFS_IN_USE"],
                    &ports
                )
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn table_pads_columns() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()], vec!["y".into(), "z".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\ny          z");
    }

    #[test]
    fn a_client_with_no_appliance_says_what_to_do() {
        let path = std::env::temp_dir().join(format!("sy-ctl-none-{}.sock", std::process::id()));
        let e = request(&path, &Request::Status).unwrap_err();
        assert!(matches!(e, CtlError::NotRunning(_)));
        assert!(e.to_string().contains("switchyard run"), "{e}");
        // A socket file nobody answers on: stale.
        let l = UnixListener::bind(&path).unwrap();
        drop(l);
        let e = request(&path, &Request::Status).unwrap_err();
        assert!(matches!(e, CtlError::Stale(_)), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
