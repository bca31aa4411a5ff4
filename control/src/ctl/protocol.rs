//! The control socket's wire format: one JSON line each way.
//!
//! A request is an object tagged by `cmd`: `{"cmd": "status"}`, `{"cmd": "listeners"}`,
//! `{"cmd": "conns", "limit": N}` (`limit` defaults to 1000), `{"cmd": "stats"}` or
//! `{"cmd": "capture", "capture": {...}}`. Fields a command does not take are ignored, so a
//! `"limit"` beside any command is harmless. The response is `{"ok": true, "data": ...}` or
//! `{"ok": false, "error": "..."}`. The data types below are the responses' data, and
//! `switchyard ctl --json` prints them as they are.

use serde::{Deserialize, Serialize};

/// A request, as the client sends it and the appliance reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// `ctl status`: answered with a [`Status`].
    Status,
    /// `ctl listeners`: answered with [`ListenerRow`]s.
    Listeners,
    /// `ctl conns`: answered with [`ConnRow`]s.
    Conns {
        /// At most this many connections per core and port.
        #[serde(default = "default_limit")]
        limit: usize,
    },
    /// `ctl stats`: answered with [`Stats`].
    Stats,
    /// `ctl capture`: answered with a [`CaptureReport`] once the capture ends.
    Capture {
        /// What to capture, and where to.
        capture: CaptureRequest,
    },
}

/// The commands [`Request`] knows, as `cmd` names them.
const COMMANDS: [&str; 5] = ["status", "listeners", "conns", "stats", "capture"];

fn default_limit() -> usize {
    1000
}

/// Why a request line was not understood; the appliance answers with this text.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// `cmd` names no command.
    #[error("unknown command {0:?}: expected status, listeners, conns, stats or capture")]
    Unknown(String),
    /// `{"cmd": "capture"}` without its `capture` object.
    #[error("capture needs its parameters")]
    CaptureParameters,
    /// Not JSON, or not a request's shape.
    #[error("bad request {line:?}: {source}")]
    Malformed { line: String, source: serde_json::Error },
}

impl Request {
    /// Reads one request line (without its newline).
    pub fn parse(line: &str) -> Result<Request, RequestError> {
        serde_json::from_str(line).map_err(|source| {
            // The tag alone says which of the more useful errors applies.
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            match value.get("cmd").and_then(serde_json::Value::as_str) {
                Some(cmd) if !COMMANDS.contains(&cmd) => RequestError::Unknown(cmd.to_owned()),
                Some("capture") if value.get("capture").filter(|c| !c.is_null()).is_none() => {
                    RequestError::CaptureParameters
                }
                _ => RequestError::Malformed { line: line.to_owned(), source },
            }
        })
    }
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

/// A response: `ok` with the request's data, or not with an error.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Response {
    /// The response to a request that was answered, or that failed with `error`.
    pub fn new(answer: Result<serde_json::Value, String>) -> Response {
        match answer {
            Ok(data) => Response { ok: true, data: Some(data), error: None },
            Err(e) => Response { ok: false, data: None, error: Some(e) },
        }
    }

    /// The data, or the appliance's error (an `ok` response without data is one too).
    pub fn into_result(self) -> Result<serde_json::Value, String> {
        match self {
            Response { ok: true, data: Some(d), .. } => Ok(d),
            Response { error, .. } => Err(error.unwrap_or_else(|| "no data".into())),
        }
    }
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

/// One port of [`Status`].
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
    /// Half-open connections given up, the oldest first, to admit new SYNs (the half-open
    /// budget, `engine.syn_backlog`, was used up).
    #[serde(default)]
    pub syn_evicted: u64,
    /// SYNs answered with a SYN cookie, connections made from one, and ACKs with a bad one.
    #[serde(default)]
    pub cookies_sent: u64,
    #[serde(default)]
    pub cookies_accepted: u64,
    #[serde(default)]
    pub cookies_invalid: u64,
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

/// One core's loop and its lanes (one per port).
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

/// One core's counters for one port: its queue's frames and its engine's connections.
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
    /// Neighbour entries forgotten to make room (the table holds 65,536 addresses).
    #[serde(default)]
    pub neighbors_evicted: u64,
    /// SYNs refused or dropped because the engine held `engine.max_connections`.
    #[serde(default)]
    pub over_max_connections: u64,
    /// Connections that skipped TIME_WAIT because the table held `engine.max_time_wait`.
    #[serde(default)]
    pub time_wait_overflow: u64,
    /// Frames waiting in this core's steering ring for this port (other cores handed them over).
    pub steer_ring: usize,
    /// What the engine's own TCP counted on its connections, ended and open.
    #[serde(default)]
    pub tcp: TcpCounters,
}

/// The engine's own TCP's counters, for one core and port.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpCounters {
    /// Segments sent again (lost by RACK, SACK or duplicate ACKs, probes, timeouts).
    pub retransmits: u64,
    /// Retransmission timeouts (RFC 6298).
    pub timeouts: u64,
    /// Tail loss probes (RFC 8985 §7).
    pub tlp: u64,
    /// Loss recoveries entered without a timeout.
    pub fast_recoveries: u64,
    /// Loss episodes undone: their retransmissions proved spurious (D-SACK, timestamps).
    #[serde(default)]
    pub undos: u64,
    /// Segments that called for a challenge ACK (RFC 5961).
    pub challenge_acks: u64,
    /// ACKs owed to segments that did not fit and not sent (RFC 5961 §7's throttle).
    #[serde(default)]
    pub acks_throttled: u64,
    /// Segments dropped by PAWS (RFC 7323 §5).
    pub paws_dropped: u64,
    /// Segments outside the receive window, answered with an ACK and dropped.
    pub out_of_window: u64,
    /// Out-of-order segments the bounded store had no room for.
    pub ooo_rejected: u64,
    /// Segments with a wrong checksum or an unreadable header.
    pub bad_segments: u64,
    pub keepalive_probes: u64,
    /// Connections reset because keepalive probes went unanswered.
    pub keepalive_timeouts: u64,
}

/// One port's NIC counters and its mbuf pool.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let r: Request = serde_json::from_str(r#"{"cmd":"conns"}"#).unwrap();
        assert_eq!(r, Request::Conns { limit: 1000 });
    }

    #[test]
    fn requests_keep_their_wire_format() {
        let line = |r: &Request| serde_json::to_string(r).unwrap();
        assert_eq!(line(&Request::Status), r#"{"cmd":"status"}"#);
        assert_eq!(line(&Request::Conns { limit: 5 }), r#"{"cmd":"conns","limit":5}"#);
        let capture = CaptureRequest { port: 0, count: 3, out: "/tmp/x.pcapng".into(), snaplen: 128, secs: 2 };
        assert_eq!(
            line(&Request::Capture { capture: capture.clone() }),
            r#"{"cmd":"capture","capture":{"port":0,"count":3,"out":"/tmp/x.pcapng","snaplen":128,"secs":2}}"#
        );
        // Lines of a client that sends every field with every command.
        for (sent, read) in [
            (r#"{"cmd":"status","limit":0}"#, Request::Status),
            (r#"{"cmd":"stats","limit":0}"#, Request::Stats),
            (r#"{"cmd":"listeners","limit":0}"#, Request::Listeners),
            (r#"{"cmd":"conns","limit":7}"#, Request::Conns { limit: 7 }),
            (
                r#"{"cmd":"capture","limit":0,"capture":{"port":0,"count":3,"out":"/tmp/x.pcapng","snaplen":128,"secs":2}}"#,
                Request::Capture { capture },
            ),
        ] {
            assert_eq!(Request::parse(sent).unwrap(), read, "{sent}");
        }
    }

    #[test]
    fn bad_requests_say_what_was_wrong() {
        let error = |line: &str| Request::parse(line).unwrap_err().to_string();
        assert_eq!(
            error(r#"{"cmd":"lisenters"}"#),
            r#"unknown command "lisenters": expected status, listeners, conns, stats or capture"#
        );
        assert_eq!(error(r#"{"cmd":"capture","limit":0}"#), "capture needs its parameters");
        assert!(error("status").starts_with(r#"bad request "status": "#), "{}", error("status"));
        assert!(error(r#"{"limit":3}"#).contains("cmd"), "{}", error(r#"{"limit":3}"#));
    }
}
