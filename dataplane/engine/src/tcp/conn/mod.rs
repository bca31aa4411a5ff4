//! The engine's own TCP for one connection from ESTABLISHED on: its control block ([`Tcb`]),
//! what a received segment does to it ([`Tcb::input`]), what it sends ([`Tcb::output`]) and its
//! timers ([`Tcb::on_timers`]).
//!
//! A control block is made from what a handshake settled ([`Handshake`]): smoltcp's, handed over
//! when it reaches ESTABLISHED, or (for SYN cookies) one the engine validated itself. From then on
//! the engine decides, to the RFCs:
//! - RFC 9293 §3.10.7.4 for each segment: sequence acceptability, RST, SYN, ACK, data and FIN, in
//!   that order, through every state from ESTABLISHED to TIME-WAIT or CLOSED (both close orders
//!   and simultaneous close); RFC 5961's challenge ACKs for in-window RSTs and any SYN, and its
//!   ACK acceptability range; urgent data is delivered in line (the pointer is ignored).
//! - RFC 7323: window scaling, timestamps on every segment when both sides offered them, PAWS.
//! - RFC 2018 SACK both ways: the receiver reports its out-of-order ranges
//!   ([`super::reasm`]), the sender keeps a scoreboard ([`super::sack`]).
//! - RFC 8985 RACK-TLP for loss detection ([`super::rack`]), and for a peer without SACK RFC
//!   5681's fast retransmit after three duplicate ACKs with RFC 6582's partial ACKs.
//! - RFC 6298 for the retransmission timer ([`super::rtt`]), with a configurable floor (200 ms by
//!   default) and the handshake's round trip as its first sample.
//! - CUBIC (RFC 9438) or Reno (RFC 5681), the initial window of RFC 6928 ([`super::cc`]).
//! - RFC 9293 §3.8.6: receiver and sender silly-window avoidance, delayed ACKs (every second
//!   segment, at once on out-of-order data or a filled hole), window updates, zero-window probes
//!   on the persist timer.
//!
//! The control block is pure: it never reads a clock or touches a device. The engine hands it
//! parsed segments and an emitter.

use std::collections::VecDeque;
use std::time::Duration;

use smoltcp::time::Instant;

use super::cc::{Algorithm, Congestion};
use super::rack::{self, Rack, SentSegment};
use super::reasm::Reassembly;
use super::ring::Ring;
use super::rtt::{RttEstimator, DEFAULT_MIN_RTO};
use super::sack::Scoreboard;
use super::seg::{Out, Seg, ACK, FIN, MAX_SACK, PSH, RST, SYN};

mod ack;
mod fast;
mod recv;
mod send;
mod timers;

/// Settings of the engine's TCP, the same for every connection of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// The retransmission timeout's floor (RFC 6298 §2.4 allows a lower one than 1 s).
    pub min_rto: Duration,
    /// The longest an ACK is delayed (RFC 9293 §3.8.6.3: under 0.5 s).
    pub ack_delay: Duration,
    pub congestion: Algorithm,
    /// Out-of-order ranges a connection keeps at most.
    pub max_ooo_ranges: usize,
    /// Keepalive (RFC 9293 §3.8.4, RFC 1122 §4.2.3.6): after this long with nothing heard and
    /// nothing outstanding, probe the peer; `None` (the default): never.
    pub keepalive: Option<Duration>,
    /// Between keepalive probes, and how many go unanswered before the connection is reset.
    pub keepalive_interval: Duration,
    pub keepalive_probes: u32,
    /// Header prediction: the short path for in-order data and ACKs of new data on an
    /// established connection (`fast.rs`); off only to compare it with the full path.
    pub header_prediction: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            min_rto: DEFAULT_MIN_RTO,
            ack_delay: Duration::from_millis(40),
            congestion: Algorithm::Cubic,
            max_ooo_ranges: 32,
            keepalive: None,
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            header_prediction: true,
        }
    }
}

/// The states of a synchronized connection (RFC 9293 §3.3.2), and CLOSED once it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Established,
    CloseWait,
    FinWait1,
    FinWait2,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

/// What a handshake settled: all a control block starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Our initial sequence number and the peer's.
    pub iss: u32,
    pub irs: u32,
    /// The MSS we may send: the peer's MSS option (536 without one, RFC 9293 §3.7.1), capped by
    /// our MTU.
    pub mss: u16,
    /// (the peer's shift, ours) when both offered window scaling (RFC 7323 §2.2).
    pub wscale: Option<(u8, u8)>,
    /// Both offered SACK (RFC 2018 §2).
    pub sack: bool,
    /// The peer's latest TSval, when both offered timestamps (RFC 7323 §3.2).
    pub ts_recent: Option<u32>,
    /// The peer's window from the last segment of the handshake, in bytes (scaled, unless that
    /// segment was a SYN), and that segment's sequence and acknowledgment numbers (SND.WL1,
    /// SND.WL2).
    pub window: u32,
    pub wl1: u32,
    pub wl2: u32,
    /// The handshake's round trip, if it was not retransmitted (RFC 6298 §3, Karn).
    pub rtt: Option<Duration>,
    /// Bytes received during the handshake (already in the receive ring).
    pub received: usize,
    /// The peer's FIN came with the handshake (CLOSE-WAIT).
    pub fin_received: bool,
    /// The last handshake segment still needs our ACK (an active open's SYN-ACK).
    pub ack_now: bool,
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcbStats {
    pub retransmits: u64,
    pub timeouts: u64,
    pub tlp: u64,
    pub fast_recoveries: u64,
    pub challenge_acks: u64,
    /// ACKs owed to segments that did not fit and not sent, by RFC 5961 §7's throttle.
    pub acks_throttled: u64,
    pub paws_dropped: u64,
    pub out_of_window: u64,
    pub ooo_rejected: u64,
    pub keepalive_probes: u64,
    /// Connections reset because keepalive probes went unanswered.
    pub keepalive_timeouts: u64,
    /// Loss episodes undone: their retransmissions proved spurious (D-SACK or timestamps).
    pub undos: u64,
    /// Segments taken by header prediction's short path.
    pub predicted: u64,
    /// Segments sent by the short output path ([`Tcb::output`] with nothing in flight).
    pub predicted_out: u64,
}

/// What a loss episode cut, kept until its retransmissions prove needed or spurious (RFC 3522's
/// Eifel detection by timestamps, RFC 2883 §4's D-SACKs, RFC 4015's response: the window back).
#[derive(Clone, Copy, Debug)]
pub(super) struct Undo {
    /// The congestion state before the cut.
    pub cwnd: u32,
    pub ssthresh: u32,
    /// SND.UNA when the episode began: D-SACKs above it are for this episode's retransmissions.
    pub marker: u32,
    /// Retransmissions of the episode not yet reported spurious by a D-SACK.
    pub retrans: u32,
    /// Our TSval on the episode's first retransmission and where that segment ended, until the
    /// ACK that covers it is judged.
    pub ts: Option<(u32, u32)>,
}

impl std::ops::AddAssign for TcbStats {
    fn add_assign(&mut self, o: TcbStats) {
        self.retransmits += o.retransmits;
        self.timeouts += o.timeouts;
        self.tlp += o.tlp;
        self.fast_recoveries += o.fast_recoveries;
        self.challenge_acks += o.challenge_acks;
        self.acks_throttled += o.acks_throttled;
        self.paws_dropped += o.paws_dropped;
        self.out_of_window += o.out_of_window;
        self.ooo_rejected += o.ooo_rejected;
        self.keepalive_probes += o.keepalive_probes;
        self.keepalive_timeouts += o.keepalive_timeouts;
        self.undos += o.undos;
        self.predicted += o.predicted;
        self.predicted_out += o.predicted_out;
    }
}

/// In-order segments ACKed at once after out-of-order data (Linux's `TCP_MAX_QUICKACKS`).
const QUICKACKS: u8 = 16;

/// RFC 8985 §7.2's WCDelAckT: the longest a peer may delay its ACK of a lone segment (µs).
const PEER_ACK_DELAY_US: u64 = 200_000;
/// At most one ACK per this long answers segments that did not fit (RFC 5961 §7; Linux's
/// `tcp_invalid_ratelimit` default).
pub(crate) const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// The shortest probe timeout: a few milliseconds of scheduling noise on a shared machine are no
/// loss (Linux's floor is two jiffies). Microseconds.
const MIN_PTO_US: u64 = 10_000;

fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

use crate::earliest;

/// Engine time as a duration from the clock's origin (SYN cookies' clock).
pub(crate) fn dur(now: Instant) -> Duration {
    Duration::from_micros(us(now))
}

/// Engine time in microseconds from the clock's origin (what the RTT, RACK and CUBIC modules
/// take: integers, where `Duration`'s seconds and nanoseconds cost dozens of instructions a
/// sum).
pub(crate) fn us(now: Instant) -> u64 {
    now.total_micros().max(0) as u64
}

/// `now + us` microseconds.
#[inline]
fn plus_us(now: Instant, us: u64) -> Instant {
    now + smoltcp::time::Duration::from_micros(us)
}

/// `now + d`, rounded up to the clock's microsecond: a deadline less than a microsecond away is
/// the next microsecond, never `now` again (a timer that ran at `now` would be due at once).
fn plus(now: Instant, d: Duration) -> Instant {
    // In u64: `as_nanos` is a u128, whose division is a library call.
    let us = d.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(d.subsec_nanos().div_ceil(1000)));
    now + smoltcp::time::Duration::from_micros(us)
}

/// One connection's control block. The fields the common segment touches come first.
#[repr(C)]
pub struct Tcb {
    // Hot: what header prediction reads and writes (RFC 9293 §3.3.1's variables).
    pub state: State,
    snd_una: u32,
    snd_nxt: u32,
    /// The highest sequence number sent (past it nothing was ever sent).
    snd_max: u32,
    /// The peer's window, scaled, and the segment that set it.
    snd_wnd: u32,
    snd_wl1: u32,
    snd_wl2: u32,
    rcv_nxt: u32,
    /// The right edge of the window last advertised.
    rcv_adv: u32,
    ts_recent: u32,
    /// What we last acknowledged (RFC 7323 §4.3's Last.ACK.sent).
    last_ack_sent: u32,
    mss: u32,
    snd_shift: u8,
    rcv_shift: u8,
    ts_on: bool,
    sack_on: bool,
    /// Our FIN follows the queued data (the application closed).
    fin_queued: bool,
    /// Our FIN was acknowledged.
    fin_acked: bool,
    /// Recovering from a retransmission timeout: slow start goes on during it.
    rto_recovery: bool,
    /// The peer's FIN was taken (in order).
    peer_fin: bool,
    ack_now: bool,
    /// In-order segments received since our last ACK.
    ack_pending: u8,
    /// Segments still to be ACKed at once (quick ACKs, as Linux's quickack mode): after
    /// out-of-order data the sender is recovering, its window is small, and a delayed ACK would
    /// hold it back for the whole delay.
    quickacks: u8,
    /// Bytes in flight: sent, neither delivered nor marked lost.
    pipe: u32,
    pub tx: Ring,
    pub rx: Ring,
    // Cold: loss recovery, timers, counters.
    max_snd_wnd: u32,
    /// The peer's FIN seen beyond a hole: its sequence number.
    pending_fin: Option<u32>,
    recovery: Option<u32>,
    /// Data received again that we held already: reported once, first, in the next ACK's SACK
    /// blocks (RFC 2883 §4).
    dsack: Option<(u32, u32)>,
    /// The last loss episode (fast recovery or timeout), while it may yet prove spurious.
    undo: Option<Undo>,
    dupacks: u32,
    rto_at: Option<Instant>,
    tlp_at: Option<Instant>,
    rack_at: Option<Instant>,
    delack_at: Option<Instant>,
    persist_at: Option<Instant>,
    persist_backoff: u32,
    keepalive_at: Option<Instant>,
    /// Keepalive probes sent since the peer was last heard.
    keepalive_sent: u32,
    /// When the peer was last heard (any segment of this connection).
    heard_at: Instant,
    /// When an ACK last answered a segment that did not fit ([`Tcb::oow_ack`]).
    last_oow_ack: Option<Instant>,
    /// The connection ended because keepalive probes went unanswered.
    pub timed_out: bool,
    /// Our timestamp clock as the last output read it: (engine time, TSval), to read the clock
    /// between outputs (RTT samples from TSecr).
    ts_clock: (Instant, u32),
    /// A tail loss probe is out, up to this sequence number (RFC 8985 §7.3: one at a time).
    tlp_out: Option<u32>,
    /// Send one segment whatever the congestion window (a tail loss probe, the first
    /// retransmission of a recovery).
    probe: bool,
    /// Send an ACK with an old sequence number, which draws the peer's ACK and window: a
    /// zero-window probe (RFC 9293 §3.8.6.1, as Linux probes) or a keepalive (RFC 1122 §4.2.3.6).
    ack_probe: bool,
    rst_out: bool,
    /// The connection ended by an RST from the peer.
    pub reset: bool,
    sent: VecDeque<SentSegment>,
    rtt: RttEstimator,
    cc: Congestion,
    scoreboard: Scoreboard,
    rack: Rack,
    ooo: Reassembly,
    cfg: TcpConfig,
    pub stats: TcbStats,
}

impl std::fmt::Debug for Tcb {
    /// The state a reader needs to follow a connection: sequence space, windows, queues, timers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcb")
            .field("state", &self.state)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("snd_max", &self.snd_max)
            .field("snd_wnd", &self.snd_wnd)
            .field("rcv_nxt", &self.rcv_nxt)
            .field("rcv_wnd", &self.rcv_wnd())
            .field("tx", &self.tx.len())
            .field("rx", &self.rx.len())
            .field("fin", &(self.fin_queued, self.fin_acked, self.peer_fin, self.pending_fin))
            .field("pipe", &self.pipe)
            .field("cwnd", &self.cc.cwnd())
            .field("recovery", &self.recovery)
            .field("sent", &self.sent.len())
            .field("lost", &self.sent.iter().filter(|s| s.lost).count())
            .field(
                "records",
                &self
                    .sent
                    .iter()
                    .map(|s| {
                        (
                            s.seq.wrapping_sub(self.snd_una),
                            s.end_seq.wrapping_sub(self.snd_una),
                            s.delivered,
                            s.lost,
                            s.retransmitted,
                        )
                    })
                    .collect::<Vec<_>>(),
            )
            .field("timers", &(self.rto_at, self.tlp_at, self.rack_at, self.delack_at, self.persist_at))
            .field("ooo", &self.ooo)
            .field("stats", &self.stats)
            .finish()
    }
}

/// What [`Tcb::output`] sends segments through: returns `false` when the device has no room (the
/// segment was not sent; the control block tries again on its next service).
pub trait Emit {
    fn emit(&mut self, out: &Out) -> bool;
}

impl<F: FnMut(&Out) -> bool> Emit for F {
    fn emit(&mut self, out: &Out) -> bool {
        self(out)
    }
}

impl Tcb {
    /// A control block in ESTABLISHED (or CLOSE-WAIT) from a handshake, over the connection's
    /// rings (the receive ring holds `hs.received` bytes).
    pub fn new(hs: &Handshake, cfg: TcpConfig, tx: Ring, rx: Ring, now: Instant) -> Tcb {
        // The MSS counts no TCP options (RFC 9293 §3.7.1): timestamps take 12 bytes of each
        // segment's room.
        let mss = u32::from(hs.mss.max(64)) - if hs.ts_recent.is_some() { 12 } else { 0 };
        let (snd_shift, rcv_shift) = hs.wscale.unwrap_or((0, 0));
        let snd = hs.iss.wrapping_add(1);
        let rcv_nxt = hs.irs.wrapping_add(1).wrapping_add(hs.received as u32).wrapping_add(u32::from(hs.fin_received));
        let mut rtt = RttEstimator::new(cfg.min_rto);
        if let Some(r) = hs.rtt {
            rtt.sample(r);
        }
        let mut t = Tcb {
            state: if hs.fin_received { State::CloseWait } else { State::Established },
            snd_una: snd,
            snd_nxt: snd,
            snd_max: snd,
            snd_wnd: hs.window,
            snd_wl1: hs.wl1,
            snd_wl2: hs.wl2,
            rcv_nxt,
            rcv_adv: rcv_nxt,
            ts_recent: hs.ts_recent.unwrap_or(0),
            last_ack_sent: rcv_nxt,
            mss,
            snd_shift,
            rcv_shift,
            ts_on: hs.ts_recent.is_some(),
            sack_on: hs.sack,
            fin_queued: false,
            fin_acked: false,
            rto_recovery: false,
            peer_fin: hs.fin_received,
            ack_now: hs.ack_now || hs.fin_received,
            ack_pending: u8::from(hs.received > 0),
            quickacks: 0,
            pipe: 0,
            tx,
            rx,
            max_snd_wnd: hs.window,
            pending_fin: None,
            recovery: None,
            undo: None,
            dsack: None,
            dupacks: 0,
            rto_at: None,
            tlp_at: None,
            rack_at: None,
            delack_at: None,
            persist_at: None,
            persist_backoff: 0,
            keepalive_at: None,
            keepalive_sent: 0,
            heard_at: now,
            last_oow_ack: None,
            timed_out: false,
            ts_clock: (now, 0),
            tlp_out: None,
            probe: false,
            ack_probe: false,
            rst_out: false,
            reset: false,
            sent: VecDeque::new(),
            rtt,
            cc: Congestion::new(cfg.congestion, mss),
            scoreboard: Scoreboard::new(snd),
            rack: Rack::new(snd),
            ooo: Reassembly::new(cfg.max_ooo_ranges),
            cfg,
            stats: TcbStats::default(),
        };
        t.rcv_adv = t.rcv_nxt.wrapping_add(t.rx.free() as u32);
        t
    }

    /// Makes this control block the one [`Tcb::new`] makes, keeping the memory of its record of
    /// sent segments: a pooled control block serves its next connection without allocating.
    pub fn renew(&mut self, hs: &Handshake, cfg: TcpConfig, tx: Ring, rx: Ring, now: Instant) {
        let mut sent = std::mem::take(&mut self.sent);
        sent.clear();
        *self = Tcb::new(hs, cfg, tx, rx, now);
        self.sent = sent;
    }

    /// The records marked delivered above SND.UNA, as `[seq, end)` (tests).
    #[cfg(test)]
    pub fn sacked_records(&self) -> Vec<(u32, u32)> {
        self.sent.iter().filter(|s| s.delivered).map(|s| (s.seq, s.end_seq)).collect()
    }

    /// Whether `[l, r)` is held: below RCV.NXT or in an out-of-order range (tests).
    #[cfg(test)]
    pub fn holds(&self, l: u32, r: u32) -> bool {
        if le(r, self.rcv_nxt) {
            return true;
        }
        let mut b = [(0, 0); 32];
        let n = self.ooo.blocks(self.rcv_nxt, &mut b);
        b[..n].iter().any(|&(a, z)| le(a, l) && le(r, z))
    }

    /// Gives the rings back (the connection is over).
    pub fn into_rings(self) -> (Ring, Ring) {
        (self.tx, self.rx)
    }

    /// Gives the rings back and keeps rings over no memory (the connection is over; the control
    /// block is pooled for the next one, [`Tcb::renew`]).
    pub fn take_rings(&mut self) -> (Ring, Ring) {
        (std::mem::replace(&mut self.tx, Ring::detached()), std::mem::replace(&mut self.rx, Ring::detached()))
    }

    pub fn snd_una(&self) -> u32 {
        self.snd_una
    }

    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt
    }

    /// The peer's FIN was taken: [`Tcb::rcv_nxt`] is then one past it.
    pub fn peer_fin(&self) -> bool {
        self.peer_fin
    }

    /// The smoothed round trip and the RTO in force.
    pub fn rtt(&self) -> (Option<Duration>, Duration) {
        (self.rtt.srtt(), self.rtt.rto())
    }

    pub fn cwnd(&self) -> u32 {
        self.cc.cwnd()
    }

    /// Whether any out-of-order data is held.
    pub fn holds_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Copies received in-order bytes into `buf`; returns how many.
    pub fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.rx.pop_into(buf)
    }

    /// Drops up to `max` received bytes unread; returns how many.
    pub fn discard(&mut self, max: usize) -> usize {
        let n = max.min(self.rx.len());
        self.rx.consume(n);
        n
    }

    /// Queues bytes to send; returns how many fitted (none once our side is closed).
    pub fn send(&mut self, data: &[u8]) -> usize {
        if self.may_send() {
            self.tx.push(data)
        } else {
            0
        }
    }

    /// Moves up to `max` received bytes to the send queue, ring to ring (an echo); returns how
    /// many.
    pub fn loop_back(&mut self, max: usize) -> usize {
        let n = max.min(self.rx.len()).min(self.send_room());
        let [a, b] = self.rx.get(0, n);
        self.tx.push(a);
        self.tx.push(b);
        self.rx.consume(n);
        n
    }

    /// Bytes [`Tcb::send`] would take now.
    pub fn send_room(&self) -> usize {
        if self.may_send() {
            self.tx.free()
        } else {
            0
        }
    }

    /// Whether the application may still queue data.
    pub fn may_send(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued
    }

    /// Whether the peer has closed its side and everything it sent has been read.
    pub fn peer_finished(&self) -> bool {
        (self.peer_fin || self.state == State::Closed) && self.rx.is_empty()
    }

    /// The application closed its sending side: a FIN follows the queued data (RFC 9293
    /// §3.10.4: ESTABLISHED to FIN-WAIT-1, CLOSE-WAIT to LAST-ACK).
    pub fn close(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::Established => self.state = State::FinWait1,
            State::CloseWait => self.state = State::LastAck,
            _ => return,
        }
        self.fin_queued = true;
    }

    /// Resets the connection: an RST leaves on the next output, and it is CLOSED (RFC 9293
    /// §3.10.5, ABORT).
    pub fn abort(&mut self) {
        if self.state != State::Closed {
            self.rst_out = true;
            self.state = State::Closed;
        }
    }

    /// The sequence number of our FIN, when queued and not yet acknowledged: past every queued
    /// byte.
    fn fin_seq(&self) -> Option<u32> {
        (self.fin_queued && !self.fin_acked).then(|| self.snd_una.wrapping_add(self.tx.len() as u32))
    }

    /// The receive window we can offer: the free part of the ring.
    fn rcv_wnd(&self) -> u32 {
        self.rx.free() as u32
    }

    /// Whether anything is sent and not acknowledged, or queued and not sent.
    pub fn has_unacknowledged(&self) -> bool {
        !self.tx.is_empty() || (self.fin_queued && !self.fin_acked)
    }
}

#[cfg(test)]
mod size {
    use super::*;

    /// The control block's size, and where its hot fields end (issue 26 asks for both): printed
    /// by `cargo test -p switchyard-engine control_block_size -- --nocapture`, bounded here.
    #[test]
    fn control_block_size() {
        let size = std::mem::size_of::<Tcb>();
        let hot_end = std::mem::offset_of!(Tcb, rx) + std::mem::size_of::<Ring>();
        eprintln!("Tcb: {size} bytes; hot fields end at byte {hot_end}");
        assert!(hot_end <= 128, "the hot fields take more than two cache lines: {hot_end}");
        assert!(size <= 1024, "{size}");
    }
}
