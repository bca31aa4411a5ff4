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
    pub paws_dropped: u64,
    pub out_of_window: u64,
    pub ooo_rejected: u64,
    pub keepalive_probes: u64,
    /// Connections reset because keepalive probes went unanswered.
    pub keepalive_timeouts: u64,
}

/// In-order segments ACKed at once after out-of-order data (Linux's `TCP_MAX_QUICKACKS`).
const QUICKACKS: u8 = 16;

/// RFC 8985 §7.2's WCDelAckT: the longest a peer may delay its ACK of a lone segment.
const PEER_ACK_DELAY: Duration = Duration::from_millis(200);
/// The shortest probe timeout: a few milliseconds of scheduling noise on a shared machine are no
/// loss (Linux's floor is two jiffies).
const MIN_PTO: Duration = Duration::from_millis(10);

fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn dur(now: Instant) -> Duration {
    Duration::from_micros(now.total_micros().max(0) as u64)
}

/// `now + d`, rounded up to the clock's microsecond: a deadline less than a microsecond away is
/// the next microsecond, never `now` again (a timer that ran at `now` would be due at once).
fn plus(now: Instant, d: Duration) -> Instant {
    now + smoltcp::time::Duration::from_micros(d.as_nanos().div_ceil(1000) as u64)
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

    /// The window to offer now, as the field (RFC 7323 §2.3: scaled, at most 16 bits) and in
    /// bytes. Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): the right edge moves on
    /// only by at least min(MSS, half the ring); short of that, the last offer's edge stays.
    fn offer(&self) -> (u16, u32) {
        let free = self.rcv_wnd();
        let grew = self.rcv_nxt.wrapping_add(free).wrapping_sub(self.rcv_adv) as i32;
        let step = self.mss.min(self.rx.capacity() as u32 / 2);
        let wnd = if grew > 0 && (grew as u32) < step {
            let kept = self.rcv_adv.wrapping_sub(self.rcv_nxt) as i32;
            (kept.max(0) as u32).min(free)
        } else {
            free
        };
        let field = (wnd >> self.rcv_shift).min(u32::from(u16::MAX));
        // The edge kept is the exact one (`rcv_adv`), not the field's rounding of it: rounded
        // again at each offer, it would creep down.
        (field as u16, wnd.min(u32::from(u16::MAX) << self.rcv_shift))
    }

    fn window_field(&self) -> u16 {
        self.offer().0
    }

    /// When this connection next needs servicing without a segment, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let a = earliest(self.rto_at, self.tlp_at);
        let b = earliest(self.rack_at, self.delack_at);
        earliest(earliest(a, b), earliest(self.persist_at, self.keepalive_at))
    }

    /// Whether anything is sent and not acknowledged, or queued and not sent.
    pub fn has_unacknowledged(&self) -> bool {
        !self.tx.is_empty() || (self.fin_queued && !self.fin_acked)
    }

    /// Takes a segment of this connection (RFC 9293 §3.10.7.4). `now` is the engine's clock.
    pub fn input(&mut self, now: Instant, seg: &Seg) {
        if self.state == State::Closed {
            return;
        }
        self.heard_at = now;
        self.keepalive_sent = 0;
        self.keepalive_at = None;
        let rst = seg.has(RST);
        // RFC 7323 §5.3 PAWS: a segment whose timestamp is older than TS.Recent is a duplicate
        // from an earlier wrap of the sequence space (an RST is judged by its number alone).
        if self.ts_on && !rst {
            if let Some((val, _)) = seg.options.ts {
                if lt(val, self.ts_recent) {
                    self.stats.paws_dropped += 1;
                    self.ack_now = true;
                    return;
                }
            }
        }
        // First, the sequence number (RFC 9293 §3.10.7.4's table of four cases).
        let wnd = self.rcv_wnd();
        let len = seg.seq_len();
        let off = seg.seq.wrapping_sub(self.rcv_nxt) as i32;
        let in_wnd = |o: i32| o >= 0 && (o as u32) < wnd;
        let acceptable = match (len, wnd) {
            (0, 0) => off == 0,
            (0, _) => in_wnd(off),
            (_, 0) => false,
            (_, _) => in_wnd(off) || in_wnd(off.wrapping_add(len as i32 - 1)),
        };
        // A zero window still takes the ACK and RST of a segment at RCV.NXT (§3.10.7.4).
        let ack_only = !acceptable && wnd == 0 && off == 0;
        if !acceptable && !ack_only {
            self.stats.out_of_window += 1;
            if !rst {
                self.ack_now = true; // and drop it
            }
            return;
        }
        if ack_only && !seg.payload.is_empty() && !rst {
            // RFC 9293 §3.8.6.1: a probe of our zero window draws an ACK with the window.
            self.ack_now = true;
        }
        // Second, RST (RFC 5961 §3.2): exactly at RCV.NXT it resets; elsewhere in the window it
        // draws a challenge ACK.
        if rst {
            if off == 0 {
                self.reset = true;
                self.state = State::Closed;
            } else {
                self.stats.challenge_acks += 1;
                self.ack_now = true;
            }
            return;
        }
        // Fourth, SYN in a synchronized state (RFC 5961 §4.2): a challenge ACK, nothing else.
        if seg.has(SYN) {
            self.stats.challenge_acks += 1;
            self.ack_now = true;
            return;
        }
        // Fifth, ACK: a segment without one is dropped.
        if !seg.has(ACK) {
            return;
        }
        // RFC 7323 §4.3: TS.Recent is taken from a segment that covers Last.ACK.sent.
        if let Some((val, _)) = seg.options.ts {
            if self.ts_on && le(seg.seq, self.last_ack_sent) {
                self.ts_recent = val;
            }
        }
        if !self.on_ack(now, seg) {
            return;
        }
        // Sixth (URG) is not acted on: urgent data is delivered in line with the rest.
        // Seventh, the data.
        if !ack_only && matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            self.on_data(now, seg, off);
        }
        // Eighth, FIN: taken when it is next in order.
        if seg.has(FIN) && !ack_only {
            let fin = seg.seq.wrapping_add(seg.payload.len() as u32);
            self.pending_fin = Some(fin);
            self.ack_now = true;
        }
        self.take_fin();
    }

    /// The peer's FIN, if it is next: RFC 9293 §3.10.7.4's eighth step.
    fn take_fin(&mut self) {
        let Some(fin) = self.pending_fin else { return };
        if fin != self.rcv_nxt || self.peer_fin {
            return;
        }
        self.pending_fin = None;
        self.peer_fin = true;
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.ack_now = true;
        self.state = match self.state {
            State::Established => State::CloseWait,
            // Our FIN not yet acknowledged: simultaneous close.
            State::FinWait1 => State::Closing,
            State::FinWait2 => State::TimeWait,
            s => s,
        };
    }

    /// The ACK field (RFC 9293 §3.10.7.4 fifth step, RFC 5961 §5.2). Returns whether to go on
    /// with the segment.
    fn on_ack(&mut self, now: Instant, seg: &Seg) -> bool {
        let ack = seg.ack;
        // RFC 5961 §5.2: acceptable from SND.UNA - MAX.SND.WND to SND.NXT (our highest sent).
        let floor = self.snd_una.wrapping_sub(self.max_snd_wnd);
        if lt(ack, floor) || lt(self.snd_max, ack) {
            self.stats.challenge_acks += 1;
            self.ack_now = true;
            return false;
        }
        let advanced = lt(self.snd_una, ack);
        let old_wnd = self.snd_wnd;
        // The send window, from the most recent segment (SND.WL1/WL2).
        if lt(self.snd_wl1, seg.seq) || (self.snd_wl1 == seg.seq && le(self.snd_wl2, ack)) {
            self.snd_wnd = u32::from(seg.window) << self.snd_shift;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        }
        if self.snd_wnd > 0 {
            self.persist_at = None;
        }
        if self.snd_wnd > 0 || advanced {
            self.persist_backoff = 0; // the peer moved: probing starts afresh
        }
        let t = dur(now);
        let tsecr = seg.options.ts.filter(|_| self.ts_on).map(|(_, ecr)| ecr);
        let fin_acked = advanced && self.acknowledge(now, ack, tsecr);
        let blocks = if self.sack_on { seg.options.sack_blocks() } else { &[] };
        let mut sacked_now = false;
        if !blocks.is_empty() {
            let u = self.scoreboard.on_ack(self.snd_una, self.snd_max, blocks);
            if u.dsack {
                self.rack.on_dsack(self.snd_una, self.snd_nxt);
            }
            sacked_now = self.mark_sacked(t, blocks);
        } else if advanced {
            self.scoreboard.on_ack(self.snd_una, self.snd_max, &[]);
        }
        // RFC 5681 §3.2 for a peer without SACK: the third duplicate ACK starts fast retransmit.
        let duplicate = !advanced
            && seg.payload.is_empty()
            && !seg.has(FIN)
            && self.snd_wnd == old_wnd
            && self.snd_una != self.snd_max;
        if advanced {
            self.dupacks = 0;
        } else if duplicate && !self.sack_on {
            self.dupacks += 1;
            // Each duplicate ACK says a segment left the network (RFC 5681 §3.2 inflates the
            // window for it; here the flight shrinks instead).
            self.pipe = self.pipe.saturating_sub(self.mss);
            if self.dupacks == 3 && self.recovery.is_none() {
                if let Some(first) = self.sent.front_mut() {
                    first.lost = true;
                }
                self.recompute_pipe();
                self.enter_recovery(t);
            }
        }
        if self.sack_on && (sacked_now || (advanced && self.recovery.is_some())) {
            self.detect_losses(now);
        } else if !self.sack_on && advanced && self.recovery.is_some_and(|p| lt(self.snd_una, p)) {
            // RFC 6582 §3.2 step 3: a partial ACK in recovery: the next segment is lost too.
            if let Some(first) = self.sent.front_mut() {
                if !first.retransmitted || first.lost {
                    first.lost = true;
                }
            }
            self.recompute_pipe();
        }
        if self.recovery.is_some_and(|p| le(p, self.snd_una)) {
            self.recovery = None;
            self.rto_recovery = false;
            self.rack.on_recovery_end();
        }
        // Our FIN acknowledged: FIN-WAIT-1 to FIN-WAIT-2, CLOSING to TIME-WAIT, LAST-ACK to
        // CLOSED (RFC 9293 §3.10.7.4).
        if fin_acked {
            self.state = match self.state {
                State::FinWait1 => State::FinWait2,
                State::Closing => State::TimeWait,
                State::LastAck => State::Closed,
                s => s,
            };
        }
        true
    }

    /// SND.UNA moves to `ack`: the acknowledged bytes leave the ring, their records are delivered,
    /// the round trip is sampled and the window grows (RFC 6298 §5.3: the timer restarts).
    /// Returns whether this acknowledged our FIN. `tsecr`, the ACK's timestamp echo when the
    /// connection uses timestamps, gives the round trip when no segment it acknowledged does.
    fn acknowledge(&mut self, now: Instant, ack: u32, tsecr: Option<u32>) -> bool {
        let t = dur(now);
        let bytes = ack.wrapping_sub(self.snd_una);
        // The FIN's sequence number is no byte of the ring.
        let fin_acked = self.fin_seq().is_some_and(|f| lt(f, ack));
        let data = bytes - u32::from(fin_acked);
        self.tx.consume((data as usize).min(self.tx.len()));
        self.fin_acked |= fin_acked;
        let mut sample = None;
        while let Some(s) = self.sent.front_mut() {
            if le(s.end_seq, ack) {
                let s = self.sent.pop_front().expect("front exists");
                if !s.delivered && !s.lost {
                    self.pipe = self.pipe.saturating_sub(s.end_seq.wrapping_sub(s.seq));
                }
                if !s.delivered {
                    self.rack.on_delivered(&s, t, false);
                    if !s.retransmitted {
                        sample = Some(t.saturating_sub(s.xmit_ts));
                    }
                }
            } else if lt(s.seq, ack) {
                // Partly acknowledged: the rest stays.
                let gone = ack.wrapping_sub(s.seq);
                if !s.delivered && !s.lost {
                    self.pipe = self.pipe.saturating_sub(gone);
                }
                s.seq = ack;
                break;
            } else {
                break;
            }
        }
        self.snd_una = ack;
        if lt(self.snd_nxt, ack) {
            self.snd_nxt = ack;
        }
        // RFC 7323 §4.1: a timestamp echo measures the round trip even of a retransmitted
        // segment, where Karn's rule leaves the segments no sample (RFC 6298 §3); it ends a
        // timeout's backoff (§5.7), which otherwise lasts until new data is acknowledged.
        let from_ts = tsecr.and_then(|ecr| {
            let (at, val) = self.ts_clock;
            let clock = val.wrapping_add(((now - at).total_millis()) as u32);
            let ms = clock.wrapping_sub(ecr);
            (ecr != 0 && ms < 1 << 30).then(|| Duration::from_millis(u64::from(ms)))
        });
        if let Some(r) = sample.or(from_ts) {
            self.rtt.sample(r);
        }
        if self.tlp_out.is_some_and(|e| le(e, ack)) {
            self.tlp_out = None;
        }
        if self.recovery.is_none() || self.rto_recovery {
            let srtt = self.rtt.srtt().unwrap_or(Duration::from_millis(1));
            self.cc.on_ack(bytes, t, srtt);
        }
        // RFC 6298 §5.2/5.3: off when all is acknowledged, else restarted.
        self.rto_at = if self.snd_una == self.snd_max { None } else { Some(plus(now, self.rtt.rto())) };
        self.tlp_at = None;
        fin_acked
    }

    /// Marks delivered the records a SACK block covers whole; returns whether any was.
    fn mark_sacked(&mut self, t: Duration, blocks: &[(u32, u32)]) -> bool {
        let mut any = false;
        for &(l, r) in blocks {
            let first = self.sent.partition_point(|s| le(s.end_seq, l));
            for i in first..self.sent.len() {
                let s = self.sent[i];
                if !lt(s.seq, r) {
                    break;
                }
                if s.delivered || lt(s.seq, l) || lt(r, s.end_seq) {
                    continue;
                }
                if !s.lost {
                    self.pipe = self.pipe.saturating_sub(s.end_seq.wrapping_sub(s.seq));
                }
                let rec = &mut self.sent[i];
                rec.delivered = true;
                rec.lost = false;
                let rec = *rec;
                self.rack.on_delivered(&rec, t, false);
                any = true;
            }
        }
        any
    }

    /// RACK's loss detection (RFC 8985 §6.2 step 5), and entry into recovery when it finds a loss.
    fn detect_losses(&mut self, now: Instant) {
        let t = dur(now);
        let srtt = self.rtt.srtt().unwrap_or(Duration::from_millis(1));
        let sacked = self.sent.iter().filter(|s| s.delivered).count() as u32;
        let reo = self.rack.reo_wnd(self.recovery.is_some(), sacked, srtt);
        let lost_before = self.sent.iter().filter(|s| s.lost).count();
        let timeout = self.rack.detect_losses(t, reo, self.sent.make_contiguous());
        self.rack_at = timeout.map(|d| plus(now, d));
        let lost_after = self.sent.iter().filter(|s| s.lost).count();
        if lost_after > lost_before {
            self.recompute_pipe();
            if self.recovery.is_none() {
                self.enter_recovery(t);
            }
        }
    }

    fn enter_recovery(&mut self, t: Duration) {
        self.stats.fast_recoveries += 1;
        // RFC 6675 §5 (4.3), and PRR's (RFC 6937) at least one: the first lost segment goes at
        // once, whatever the flight.
        self.probe = true;
        let flight = self.snd_max.wrapping_sub(self.snd_una);
        self.cc.on_loss(flight, t);
        self.recovery = Some(self.snd_max);
    }

    /// Bytes in flight, counted again from the records.
    fn recompute_pipe(&mut self) {
        self.pipe = self.sent.iter().filter(|s| !s.delivered && !s.lost).map(|s| s.end_seq.wrapping_sub(s.seq)).sum();
    }

    /// In-window data at `off` from RCV.NXT (RFC 9293 §3.10.7.4 seventh step).
    fn on_data(&mut self, now: Instant, seg: &Seg, off: i32) {
        let mut data = seg.payload;
        let mut off = off;
        if seg.has(SYN) {
            return;
        }
        if off < 0 {
            // Starts before RCV.NXT: its old part is a duplicate.
            let skip = (-(off as i64)) as usize;
            if skip >= data.len() {
                if !data.is_empty() {
                    self.ack_now = true; // a retransmission we hold: the peer missed our ACK
                }
                return;
            }
            data = &data[skip..];
            off = 0;
        }
        let off = off as usize;
        let room = self.rx.free();
        if off >= room {
            return;
        }
        let data = &data[..data.len().min(room - off)];
        if data.is_empty() {
            return;
        }
        let _ = seg.has(PSH);
        if off == 0 {
            let had_holes = !self.ooo.is_empty();
            let at = self.rx.len();
            self.rx.write_at(at, data);
            self.rx.extend(data.len());
            let joined = self.ooo.advance(data.len() as u32);
            self.rx.extend(joined as usize);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(data.len() as u32 + joined);
            if had_holes || self.quickacks > 0 {
                // RFC 5681 §4.2: at once when a segment fills (part of) a hole; and in quick-ACK
                // mode, while the sender's window is small.
                self.ack_now = true;
                self.quickacks = self.quickacks.saturating_sub(1);
            } else {
                self.ack_pending = self.ack_pending.saturating_add(1);
                // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: at least every second full segment.
                if self.ack_pending >= 2 {
                    self.ack_now = true;
                } else if self.delack_at.is_none() {
                    self.delack_at = Some(plus(now, self.cfg.ack_delay));
                }
            }
        } else {
            // Out of order: kept in the ring past its end if the store has room; ACKed at once
            // either way (RFC 5681 §4.2), with SACK blocks.
            if self.ooo.add(off as u32, data.len() as u32) {
                let at = self.rx.len() + off;
                self.rx.write_at(at, data);
            } else {
                self.stats.ooo_rejected += 1;
            }
            self.ack_now = true;
            self.quickacks = QUICKACKS; // the sender is recovering: its window is small
        }
    }

    /// Runs the timers that are due (RFC 6298 §5.4-5.7, RFC 8985 §6.3 and §7.3, the delayed ACK,
    /// the persist timer).
    pub fn on_timers(&mut self, now: Instant) {
        let t = dur(now);
        if self.delack_at.is_some_and(|d| d <= now) {
            self.delack_at = None;
            self.ack_now = true;
        }
        if self.rack_at.is_some_and(|d| d <= now) {
            self.rack_at = None;
            self.detect_losses(now);
        }
        // The probe first: RFC 8985 §7.2 schedules it no later than the RTO, and one due with it
        // is sent as a probe.
        if self.tlp_at.is_some_and(|d| d <= now) {
            self.tlp_at = None;
            if self.recovery.is_none() && self.tlp_out.is_none() && self.snd_una != self.snd_max {
                // RFC 8985 §7.3: new data if the window allows, else the last segment again.
                self.stats.tlp += 1;
                let unsent = self.unsent();
                if unsent == 0 || self.usable_window() == 0 {
                    if let Some(last) = self.sent.iter_mut().rev().find(|s| !s.delivered) {
                        last.lost = true;
                    }
                    self.recompute_pipe();
                }
                self.probe = true;
                self.tlp_out = Some(self.snd_max);
                // RFC 8985 §7.3: the RTO runs again from the probe.
                self.rto_at = Some(plus(now, self.rtt.rto()));
            }
        }
        if self.rto_at.is_some_and(|d| d <= now) {
            self.rto_at = None;
            if self.snd_una != self.snd_max {
                // RFC 6298 §5.5: back off; RFC 5681 §3.1: one segment; everything outstanding is
                // sent again, SACKed or not: RFC 2018 §8 lets a receiver discard what it SACKed,
                // so after a timeout the sender forgets the SACKs (as RFC 6675 §5.1 advises).
                self.stats.timeouts += 1;
                self.rtt.on_timeout();
                let flight = self.snd_max.wrapping_sub(self.snd_una);
                self.cc.on_timeout(flight, t);
                for s in self.sent.iter_mut() {
                    s.delivered = false;
                    s.lost = true;
                }
                self.scoreboard.clear();
                self.pipe = 0;
                self.recovery = Some(self.snd_max);
                self.rto_recovery = true;
                self.tlp_out = None;
                self.tlp_at = None;
            }
        }
        if self.persist_at.is_some_and(|d| d <= now) {
            self.persist_at = None;
            self.persist_backoff = (self.persist_backoff + 1).min(6);
            if self.usable_window() == 0 {
                self.ack_probe = true; // a shut window: probe it
            } else {
                self.probe = true; // a small one: the override timeout, send what fits
            }
        }
        if self.keepalive_at.is_some_and(|d| d <= now) {
            self.keepalive_at = None;
            if self.keepalive_sent >= self.cfg.keepalive_probes {
                // RFC 1122 §4.2.3.6: the peer is gone.
                self.stats.keepalive_timeouts += 1;
                self.timed_out = true;
                self.abort();
            } else {
                self.keepalive_sent += 1;
                self.stats.keepalive_probes += 1;
                self.ack_probe = true;
            }
        }
    }

    /// Bytes queued and not yet sent.
    fn unsent(&self) -> u32 {
        let queued_end = self.snd_una.wrapping_add(self.tx.len() as u32);
        if lt(self.snd_nxt, queued_end) {
            queued_end.wrapping_sub(self.snd_nxt)
        } else {
            0
        }
    }

    /// What the peer's window still allows past SND.NXT.
    fn usable_window(&self) -> u32 {
        let right = self.snd_una.wrapping_add(self.snd_wnd);
        if lt(self.snd_nxt, right) {
            right.wrapping_sub(self.snd_nxt)
        } else {
            0
        }
    }

    /// Sends what is due now: retransmissions of lost segments, new data and our FIN within the
    /// windows, probes, and an ACK or window update if nothing else carried one. `ts_now` is our
    /// timestamp clock. Returns how many segments left.
    pub fn output(&mut self, now: Instant, ts_now: u32, emit: &mut impl Emit) -> usize {
        self.ts_clock = (now, ts_now);
        let mut n = 0;
        if self.rst_out {
            self.rst_out = false;
            if self.emit_segment(ts_now, self.snd_nxt, RST | ACK, 0, 0, emit) {
                n += 1;
            }
            return n;
        }
        if self.state == State::Closed {
            return 0;
        }
        let t = dur(now);
        let cwnd = self.cc.cwnd();
        // Retransmissions first: segments marked lost, oldest first, within the congestion
        // window (RFC 8985 §6.3 / RFC 6675 §5 NextSeg's rule 1).
        let mut i = 0;
        while i < self.sent.len() {
            let s = self.sent[i];
            i += 1;
            if !s.lost || s.delivered {
                continue;
            }
            let len = s.end_seq.wrapping_sub(s.seq);
            if self.pipe > 0 && self.pipe.saturating_add(len) > cwnd && !self.probe {
                break;
            }
            if !self.send_range(ts_now, s.seq, s.end_seq, emit) {
                return n;
            }
            n += 1;
            self.probe = false;
            self.stats.retransmits += 1;
            let r = &mut self.sent[i - 1];
            r.lost = false;
            r.retransmitted = true;
            r.xmit_ts = t;
            self.pipe = self.pipe.saturating_add(len);
        }
        // New data, then the FIN.
        let mut sws_blocked = false;
        loop {
            let unsent = self.unsent();
            let fin_due = self.fin_seq() == Some(self.snd_nxt);
            if unsent == 0 && !fin_due {
                break;
            }
            let window = self.usable_window();
            let len = unsent.min(self.mss).min(window);
            if unsent > 0 && len == 0 {
                break; // the window is shut: the persist timer probes it
            }
            let fits_cwnd = self.pipe == 0 || self.pipe.saturating_add(len.max(1)) <= cwnd;
            if !fits_cwnd && !self.probe {
                break;
            }
            // RFC 9293 §3.8.6.2.1: no small segment while more is queued, unless it is half the
            // largest window the peer offered (the persist timer below is the override timeout).
            if len < self.mss && len < unsent && len < self.max_snd_wnd / 2 && !self.probe {
                sws_blocked = true;
                break;
            }
            let with_fin = self.fin_queued && len == unsent;
            let start = self.snd_nxt;
            let end = start.wrapping_add(len).wrapping_add(u32::from(with_fin));
            if !self.send_range(ts_now, start, end, emit) {
                return n;
            }
            n += 1;
            self.probe = false;
            self.snd_nxt = end;
            if lt(self.snd_max, end) {
                self.snd_max = end;
            }
            self.sent.push_back(SentSegment {
                xmit_ts: t,
                seq: start,
                end_seq: end,
                retransmitted: false,
                delivered: false,
                lost: false,
            });
            self.pipe = self.pipe.saturating_add(end.wrapping_sub(start));
            if with_fin {
                break;
            }
        }
        // The persist timer: data waits, the window is shut (or too small to use, §3.8.6.2.1) and
        // nothing is in flight to bring an update (RFC 9293 §3.8.6.1).
        if self.unsent() > 0 && (self.usable_window() == 0 || sws_blocked) && self.snd_una == self.snd_max {
            if self.persist_at.is_none() {
                let rto = self.rtt.rto() * (1 << self.persist_backoff);
                self.persist_at = Some(plus(now, rto.min(Duration::from_secs(60))));
            }
        } else {
            self.persist_at = None;
        }
        // A window update when the application's reads opened the window by at least two
        // segments or half the ring (RFC 9293 §3.8.6.2.2), an ACK that is due, or a probe with
        // nothing to carry it (an ACK with an old sequence number draws the peer's ACK).
        let right = self.rcv_nxt.wrapping_add(self.rcv_wnd());
        let opened = right.wrapping_sub(self.rcv_adv) as i32;
        let update = opened > 0 && (opened as u32) >= (2 * self.mss).min(self.rx.capacity() as u32 / 2);
        if n == 0 && (self.ack_now || update || self.ack_probe) {
            let seq = if self.ack_probe { self.snd_una.wrapping_sub(1) } else { self.snd_nxt };
            if self.emit_segment(ts_now, seq, ACK, 0, 0, emit) {
                n += 1;
            }
        }
        self.ack_probe = false;
        // Keepalive: armed while nothing is outstanding (RFC 1122 §4.2.3.6), from when the peer
        // was last heard, then every interval while probes go unanswered.
        if let Some(idle) = self.cfg.keepalive {
            let quiet = self.snd_una == self.snd_max && self.unsent() == 0 && self.state != State::TimeWait;
            self.keepalive_at = match (quiet, self.keepalive_at) {
                (false, _) => None,
                (true, Some(at)) => Some(at),
                (true, None) if self.keepalive_sent == 0 => Some(plus(self.heard_at, idle)),
                (true, None) => Some(plus(now, self.cfg.keepalive_interval)),
            };
        }
        // Timers for what is in flight: the RTO (RFC 6298 §5.1) and the tail loss probe (RFC
        // 8985 §7.2), armed when nothing armed them yet.
        if self.snd_una != self.snd_max {
            if self.rto_at.is_none() {
                self.rto_at = Some(plus(now, self.rtt.rto()));
            }
            if self.recovery.is_none() && self.tlp_out.is_none() && self.tlp_at.is_none() {
                let segs = self.snd_max.wrapping_sub(self.snd_una).div_ceil(self.mss);
                let pto = rack::probe_timeout(self.rtt.srtt(), segs, PEER_ACK_DELAY, self.rtt.rto()).max(MIN_PTO);
                self.tlp_at = Some(plus(now, pto));
            }
        }
        n
    }

    /// Sends `[start, end)`: bytes of the ring, and the FIN if `end` is one past it.
    fn send_range(&mut self, ts_now: u32, start: u32, end: u32, emit: &mut impl Emit) -> bool {
        let fin = self.fin_seq().is_some_and(|f| f.wrapping_add(1) == end);
        let len = end.wrapping_sub(start) - u32::from(fin);
        let mut flags = ACK;
        if fin {
            flags |= FIN;
        }
        if len > 0 {
            flags |= PSH;
        }
        let off = start.wrapping_sub(self.snd_una) as usize;
        self.emit_segment(ts_now, start, flags, off, len as usize, emit)
    }

    /// Emits one segment from `seq` with `flags` and `len` bytes of the ring from `off`, carrying
    /// our ACK, window, timestamps and SACK blocks (RFC 2018 §4: on every segment while
    /// out-of-order data is held).
    fn emit_segment(&mut self, ts_now: u32, seq: u32, flags: u8, off: usize, len: usize, emit: &mut impl Emit) -> bool {
        let mut blocks = [(0u32, 0u32); MAX_SACK];
        // SACK blocks take 4 bytes and 8 per block of the segment's room (the MSS less
        // timestamps): a full data segment carries none, a shorter one as many as fit.
        let room = (self.mss as usize).saturating_sub(len);
        let fit = if room >= 12 { (room - 4) / 8 } else { 0 };
        let nb = if self.sack_on && !self.ooo.is_empty() && flags & RST == 0 {
            let max = if self.ts_on { 3 } else { 4 };
            self.ooo.blocks(self.rcv_nxt, &mut blocks[..max.min(fit)])
        } else {
            0
        };
        let out = Out {
            syn: None,
            seq,
            ack: self.rcv_nxt,
            flags,
            window: self.window_field(),
            ts: self.ts_on.then_some((ts_now, self.ts_recent)),
            sack: &blocks[..nb],
            data: self.tx.get(off, len),
        };
        if !emit.emit(&out) {
            return false;
        }
        self.sent_ack();
        true
    }

    /// An ACK of RCV.NXT left: nothing is owed any more.
    fn sent_ack(&mut self) {
        self.ack_now = false;
        self.ack_pending = 0;
        self.delack_at = None;
        self.last_ack_sent = self.rcv_nxt;
        self.rcv_adv = self.rcv_nxt.wrapping_add(self.offer().1);
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
