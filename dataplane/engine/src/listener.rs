//! Listeners: the backlog policy (SEMANTICS B1-B5), what to do when full (B3/L4), and the
//! counters of each listener.
//!
//! Two queues are told apart (B1): connections whose handshake is in progress ("half-open") and
//! connections whose handshake TCP has completed but that the application has not accepted yet
//! ("queued"). The built-in `echo` and `http` services accept a connection the moment its
//! handshake completes; `hold` never does.
//!
//! The queue limit derived from the backlog value, after clamping the backlog to the engine's
//! `max_backlog` (B5; never "unlimited"):
//!
//! | policy | limit | counts | backlog 0 1 2 3 4 5 |
//! | --- | --- | --- | --- |
//! | `bsd` (traditional Berkeley) | floor(3b/2) + 1 | half-open + queued | 1 2 4 5 7 8 |
//! | `solaris` (Solaris 2.2) | b | half-open + queued | 0 1 2 3 4 5 |
//! | `exact` | b | half-open + queued | 0 1 2 3 4 5 |
//! | `linux` | b + 1 | queued only (half-open bounded by `syn_backlog`) | 1 2 3 4 5 6 |
//!
//! `bsd` and `solaris` are the seed's table (4.4BSD compares `so_qlen + so_q0len` with the limit);
//! `exact` is the same count with the backlog value as it is, for applications that want the
//! number they asked for; `linux` follows Linux, whose accept queue is full when more than
//! `backlog` connections wait (`sk_acceptq_is_full`) and whose half-open connections are bounded
//! separately (here by `syn_backlog`).
//!
//! Half-open connections never make a listener full: when they use up their budget, the oldest
//! gives way to the new SYN ([`ListenerStats::admission`]).

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

/// How the queue limit derives from the backlog value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BacklogPolicy {
    Bsd,
    Solaris,
    Exact,
    #[default]
    Linux,
}

impl BacklogPolicy {
    pub const ALL: [BacklogPolicy; 4] =
        [BacklogPolicy::Bsd, BacklogPolicy::Solaris, BacklogPolicy::Exact, BacklogPolicy::Linux];

    /// The queue limit for `backlog`, clamped to `max_backlog` first (B5).
    pub fn limit(self, backlog: usize, max_backlog: usize) -> usize {
        let b = backlog.min(max_backlog);
        match self {
            BacklogPolicy::Bsd => 3 * b / 2 + 1,
            BacklogPolicy::Solaris | BacklogPolicy::Exact => b,
            BacklogPolicy::Linux => b + 1,
        }
    }

    /// Whether half-open connections count against the limit (else only queued ones do).
    pub fn counts_half_open(self) -> bool {
        !matches!(self, BacklogPolicy::Linux)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BacklogPolicy::Bsd => "bsd",
            BacklogPolicy::Solaris => "solaris",
            BacklogPolicy::Exact => "exact",
            BacklogPolicy::Linux => "linux",
        }
    }
}

impl fmt::Display for BacklogPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BacklogPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BacklogPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown backlog policy {s:?}: expected bsd, solaris, exact or linux"))
    }
}

/// What a listener does with a SYN when its queue is full (B3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnFull {
    /// Answer with an RST at once: the peer's connect fails with ECONNREFUSED (L4).
    #[default]
    Refuse,
    /// Ignore the SYN: the peer retransmits and may get in later (Berkeley).
    Drop,
}

impl OnFull {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFull::Refuse => "refuse",
            OnFull::Drop => "drop",
        }
    }
}

impl FromStr for OnFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(OnFull::Refuse),
            "drop" => Ok(OnFull::Drop),
            _ => Err(format!("unknown on_full {s:?}: expected refuse or drop")),
        }
    }
}

/// Counters of one listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// The queue limit in force (policy applied to the clamped backlog).
    pub limit: usize,
    /// SYNs that asked for a new connection (retransmissions of a known one not included).
    pub syns: u64,
    /// Handshakes completed.
    pub completed: u64,
    /// Handshakes in progress now.
    pub half_open: usize,
    /// Completed, not accepted by the application, now.
    pub queued: usize,
    /// Taken by the application (a service session).
    pub accepted: u64,
    /// SYNs answered with an RST because the queue was full.
    pub refused: u64,
    /// SYNs ignored because the queue was full.
    pub dropped: u64,
    /// Connections the application's switch listener closed as silent clients (SEMANTICS A4;
    /// bridged listeners only).
    pub silent_closed: u64,
    /// Half-open connections given up, the oldest first, to admit a new SYN: the listener's
    /// half-open budget (`syn_backlog`, or under a policy that counts them, the queue limit) was
    /// used up. A flood of SYNs that never complete turns over the half-open connections instead
    /// of filling the listener: a real client's handshake completes long before its turn comes.
    pub syn_evicted: u64,
    /// SYNs answered with a SYN cookie (RFC 4987 §3.6): the half-open budget was used up (or
    /// `syn_cookies = always`), and the listener kept nothing.
    pub cookies_sent: u64,
    /// Connections made from a valid cookie in a client's ACK.
    pub cookies_accepted: u64,
    /// ACKs for the listener's port that matched no connection and carried no valid cookie
    /// (answered with an RST, no state made).
    pub cookies_invalid: u64,
}

/// What a listener does with a new SYN ([`ListenerStats::admission`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new half-open connection.
    Admit,
    /// A new half-open connection, once the oldest one is given up.
    EvictOldest,
    /// Completed connections fill the queue: the listener's `on_full` (L4, B3).
    Full,
}

impl ListenerStats {
    /// What a new SYN meets. Only completed connections make the listener full (B1: the backlog
    /// bounds connections TCP accepted and the application has not); half-open ones have a budget
    /// of their own, `syn_backlog`, and under a policy that counts them against the limit (`bsd`,
    /// `solaris`, `exact`: the seed's table) they share it with the queued ones. When the budget
    /// is used up the oldest half-open connection makes room, as FreeBSD's syncache does.
    pub fn admission(&self, policy: BacklogPolicy, syn_backlog: usize) -> Admission {
        if self.queued >= self.limit {
            return Admission::Full;
        }
        let shared = policy.counts_half_open() && self.half_open + self.queued >= self.limit;
        if self.half_open > 0 && (shared || self.half_open >= syn_backlog.max(1)) {
            Admission::EvictOldest
        } else {
            Admission::Admit
        }
    }
}

/// A listener of an engine: its service, settings and counters, and its ring of armed LISTEN
/// sockets.
pub(crate) struct Listener<S> {
    pub(crate) port: u16,
    pub(crate) service: S,
    pub(crate) policy: BacklogPolicy,
    pub(crate) on_full: OnFull,
    /// Armed LISTEN sockets, ready for the next SYNs.
    pub(crate) ring: VecDeque<u32>,
    /// Its half-open connections, oldest first, as (slot, the slot's SYN stamp): entries whose
    /// slot has moved on since are skipped (and compacted away when they pile up).
    pub(crate) half_open: VecDeque<(u32, u32)>,
    pub(crate) stats: ListenerStats,
    /// Stopped listening (the port is free again); the entry stays for its connections' sake.
    pub(crate) closed: bool,
}

/// Why an engine could not listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// EADDRINUSE: the port has a listener or is a built-in service's.
    #[error("TCP port {0} already has a listener on the fast path")]
    InUse(u16),
    /// EINVAL: port 0.
    #[error("port 0 cannot be listened on")]
    ZeroPort,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B2: the seed's table, row by row.
    #[test]
    fn b2_bsd_backlog_table() {
        let table = [(0, 1), (1, 2), (2, 4), (3, 5), (4, 7), (5, 8)];
        for (backlog, limit) in table {
            assert_eq!(BacklogPolicy::Bsd.limit(backlog, 4096), limit, "bsd backlog {backlog}");
        }
    }

    /// B2: the seed's table, row by row.
    #[test]
    fn b2_solaris_backlog_table() {
        let table = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
        for (backlog, limit) in table {
            assert_eq!(BacklogPolicy::Solaris.limit(backlog, 4096), limit, "solaris backlog {backlog}");
        }
    }

    #[test]
    fn b2_exact_and_linux_as_documented() {
        for b in 0..6 {
            assert_eq!(BacklogPolicy::Exact.limit(b, 4096), b);
            assert_eq!(BacklogPolicy::Linux.limit(b, 4096), b + 1);
        }
    }

    /// B5: a backlog above the maximum is clamped, never unlimited.
    #[test]
    fn b5_backlog_is_clamped_to_the_maximum() {
        assert_eq!(BacklogPolicy::Exact.limit(1_000_000, 128), 128);
        assert_eq!(BacklogPolicy::Bsd.limit(usize::MAX, 128), 193);
        assert_eq!(BacklogPolicy::Linux.limit(usize::MAX, 128), 129);
    }

    #[test]
    fn b1_half_open_and_queued_are_counted_apart_per_policy() {
        use Admission::*;
        let s = ListenerStats { limit: 2, half_open: 1, queued: 1, ..Default::default() };
        assert_eq!(s.admission(BacklogPolicy::Bsd, 4096), EvictOldest, "the table counts both");
        assert_eq!(s.admission(BacklogPolicy::Linux, 4096), Admit, "linux counts queued only");
        let s = ListenerStats { limit: 2, half_open: 0, queued: 2, ..Default::default() };
        assert_eq!(s.admission(BacklogPolicy::Linux, 4096), Full);
        assert_eq!(s.admission(BacklogPolicy::Bsd, 4096), Full);
        let s = ListenerStats { limit: 2, half_open: 8, queued: 0, ..Default::default() };
        assert_eq!(s.admission(BacklogPolicy::Linux, 8), EvictOldest, "half-open bounded by syn_backlog");
        let s = ListenerStats { limit: 0, half_open: 0, queued: 0, ..Default::default() };
        assert_eq!(s.admission(BacklogPolicy::Solaris, 8), Full, "a zero limit admits nothing");
    }

    #[test]
    fn names_parse_and_print() {
        for p in BacklogPolicy::ALL {
            assert_eq!(p.as_str().parse::<BacklogPolicy>().unwrap(), p);
        }
        assert!("berkeley".parse::<BacklogPolicy>().unwrap_err().contains("bsd, solaris"));
        assert_eq!("drop".parse::<OnFull>().unwrap(), OnFull::Drop);
        assert!("reject".parse::<OnFull>().is_err());
    }
}
