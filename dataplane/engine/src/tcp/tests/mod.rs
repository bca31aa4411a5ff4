//! Two control blocks back to back on a virtual clock ([`Pair`]), over a wire the tests control:
//! every segment a block emits is written as a frame ([`seg::write`]), logged ([`Rec`]), passed
//! through a seeded network ([`Net`]: loss, duplication, reordering, delay, a link rate) or a
//! test's own drop rules, and delivered at its time ([`seg::parse`], [`Tcb::input`]). A step runs
//! the next event: the frames due, the timers due, then each side's application and output.
//!
//! The tests are grouped by the RFC they check, one file each; each names the section it proves.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Instant;

use super::clock;
use super::conn::{Handshake, State, Tcb, TcbStats, TcpConfig};
use super::ring::{Region, Ring};
use super::seg::{self, Out, Path, ACK, FIN, MAX_SACK, RST, SYN};

mod close;
mod flow;
mod fuzzed;
mod loss;
mod prediction;
mod rfc5961;
mod rfc7323;
mod transfer;
mod undo;
mod window;

/// The two ends: A opened actively, B passively.
pub const A: usize = 0;
pub const B: usize = 1;

pub const MS: Duration = Duration::from_millis(1);
/// The virtual clock's origin (a start at 0 would hide sign errors in time arithmetic).
const T0_MS: i64 = 10_000;

/// A side's initial sequence number: A's wraps after 100 kB, B's after 1 MB, so the longer transfers
/// cross the wrap of the sequence space.
pub const ISS: [u32; 2] = [u32::MAX - 100_000, u32::MAX - 1_000_000];
/// Timestamp clock offsets: B's clock wraps 50 ms into every test.
pub const TS_OFF: [u32; 2] = [0x1000_0000, (u32::MAX - T0_MS as u32) - 50];

pub fn at(d: Duration) -> Instant {
    Instant::from_millis(T0_MS) + smoltcp::time::Duration::from_micros(d.as_micros() as u64)
}

/// Time since the start of the test.
pub fn since_start(t: Instant) -> Duration {
    Duration::from_micros((t - Instant::from_millis(T0_MS)).total_micros())
}

/// A splitmix64 generator: the network's only source of chance.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    /// A duration in `[0, max)`.
    pub fn upto(&mut self, max: Duration) -> Duration {
        let us = max.as_micros() as u64;
        Duration::from_micros(if us == 0 { 0 } else { self.next() % us })
    }
}

/// The network between the two: the same in both directions.
#[derive(Clone, Copy, Debug)]
pub struct Net {
    /// One-way propagation delay.
    pub delay: Duration,
    /// The link's rate, bits per second: frames queue behind each other (0: no serialization).
    pub rate: u64,
    pub loss: f64,
    pub dup: f64,
    /// Probability that a frame is held back by up to `reorder_by` more.
    pub reorder: f64,
    pub reorder_by: Duration,
}

impl Default for Net {
    fn default() -> Self {
        Net { delay: MS, rate: 1_000_000_000, loss: 0.0, dup: 0.0, reorder: 0.0, reorder_by: 2 * MS }
    }
}

/// Everything a pair is made from.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub cfg: TcpConfig,
    pub rx: [usize; 2],
    pub tx: [usize; 2],
    /// The MSS each side announces.
    pub mss: u16,
    pub wscale: bool,
    pub sack: bool,
    pub ts: bool,
    pub net: Net,
    pub seed: u64,
    /// A's and B's initial sequence numbers.
    pub iss: [u32; 2],
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            cfg: TcpConfig::default(),
            rx: [65536; 2],
            tx: [65536; 2],
            mss: 1460,
            wscale: true,
            sack: true,
            ts: true,
            net: Net::default(),
            seed: 1,
            iss: ISS,
        }
    }
}

/// One segment as it left a control block, and what became of it.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub at: Instant,
    pub from: usize,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub ts: Option<(u32, u32)>,
    pub sack: [(u32, u32); MAX_SACK],
    pub nsack: usize,
    pub len: u32,
    pub dropped: bool,
    /// When its first copy arrived.
    pub arrived: Option<Instant>,
}

impl Rec {
    pub fn sack(&self) -> &[(u32, u32)] {
        &self.sack[..self.nsack]
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The end of its sequence space (data and FIN).
    pub fn end(&self) -> u32 {
        self.seq.wrapping_add(self.len).wrapping_add(u32::from(self.has(FIN)))
    }

    pub fn t(&self) -> Duration {
        since_start(self.at)
    }
}

/// A rule that drops one matching segment from one side, once.
type DropRule = (usize, Box<dyn Fn(&Rec) -> bool>);

/// What each side's application does on every step: sends `total` bytes of its pattern, reads
/// and checks what arrives, and closes once all is queued if `close_at_end`.
#[derive(Clone, Copy, Debug, Default)]
pub struct App {
    pub total: u64,
    pub pushed: u64,
    pub reads: bool,
    /// Bytes read at most per step (0: all).
    pub read_chunk: usize,
    pub got: u64,
    /// The offset of the first received byte that differs from the peer's pattern.
    pub bad: Option<u64>,
    pub close_at_end: bool,
    /// Request and reply: push the next `request` bytes only once every byte pushed was answered
    /// (as many received as pushed); 0: push freely.
    pub request: u64,
    /// Push no more than was received (a reply to each request).
    pub reply: bool,
}

/// The byte pattern a side sends: a random block of prime length, repeated (a misplaced segment
/// shows unless it moved by a multiple of the period).
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut r = Rng(42);
        (0..65_521).map(|_| r.next() as u8).collect()
    })
}

/// Copies side `side`'s stream from offset `off` into `buf`, or compares it with `buf`.
fn stream(side: usize, off: u64, buf: &mut [u8], check: bool) -> Option<usize> {
    let p = pattern();
    let mut done = 0;
    while done < buf.len() {
        let at = ((off + done as u64 + side as u64 * 7919) % p.len() as u64) as usize;
        let n = (p.len() - at).min(buf.len() - done);
        if check {
            if buf[done..done + n] != p[at..at + n] {
                let i = (0..n).find(|&i| buf[done + i] != p[at + i]).expect("a byte differs");
                return Some(done + i);
            }
        } else {
            buf[done..done + n].copy_from_slice(&p[at..at + n]);
        }
        done += n;
    }
    None
}

/// A ring over a leaked buffer of `n` bytes.
pub fn ring(n: usize) -> Ring {
    // SAFETY: the buffer is leaked for the ring alone; nothing else ever sees it.
    unsafe { Ring::new(Region::new(Box::leak(vec![0u8; n].into_boxed_slice()))) }
}

/// A frame on the wire: (arrival µs, order, to, index of its record, bytes).
type Flight = Reverse<(i64, u64, usize, usize, Vec<u8>)>;

pub struct Pair {
    pub now: Instant,
    pub tcb: [Tcb; 2],
    pub app: [App; 2],
    pub net: Net,
    /// Every segment either side emitted, in order.
    pub log: Vec<Rec>,
    /// Frames from this side are dropped while set.
    pub cut: [bool; 2],
    pub drops: Vec<DropRule>,
    /// Each side's states, in the order it went through them.
    pub states: [Vec<State>; 2],
    pub setup: Setup,
    rng: Rng,
    wire: BinaryHeap<Flight>,
    order: u64,
    /// When each direction's link is free again.
    link_free: [Instant; 2],
    /// When each side's timers last ran.
    timers_ran: [Option<Instant>; 2],
    /// Times a side's deadline was still due right after its timers ran at that instant (a real
    /// engine would spin until its clock ticked; the harness moves on by one microsecond).
    pub stale_deadlines: u32,
    paths: [Path; 2],
}

impl Pair {
    pub fn new(s: Setup) -> Pair {
        let now = at(Duration::ZERO);
        let shift = |side: usize| if s.wscale { crate::own::our_wscale(s.rx[side]) } else { 0 };
        let ts = |side: usize| s.ts.then(|| clock::value(now, TS_OFF[side]));
        let rtt = Some(2 * s.net.delay);
        // A sent the SYN, B the SYN-ACK (its window unscaled, RFC 7323 §2.2), A the final ACK.
        let iss = s.iss;
        let hs_a = Handshake {
            iss: iss[A],
            irs: iss[B],
            mss: s.mss,
            wscale: s.wscale.then(|| (shift(B), shift(A))),
            sack: s.sack,
            ts_recent: ts(B),
            window: s.rx[B].min(65535) as u32,
            wl1: iss[B],
            wl2: iss[A].wrapping_add(1),
            rtt,
            received: 0,
            fin_received: false,
            ack_now: true,
        };
        let hs_b = Handshake {
            iss: iss[B],
            irs: iss[A],
            wscale: s.wscale.then(|| (shift(A), shift(B))),
            ts_recent: ts(A),
            window: ((s.rx[A] >> shift(A)).min(65535) << shift(A)) as u32,
            wl1: iss[A].wrapping_add(1),
            wl2: iss[B].wrapping_add(1),
            ack_now: false,
            ..hs_a
        };
        let tcb = |hs: &Handshake, side: usize| Tcb::new(hs, s.cfg, ring(s.tx[side]), ring(s.rx[side]), now);
        let ends = [
            ([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), 40000),
            ([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 18, 0, 2), 80),
        ];
        let path = |from: usize| Path {
            src_mac: ends[from].0,
            dst_mac: ends[1 - from].0,
            src_ip: ends[from].1,
            dst_ip: ends[1 - from].1,
            src_port: ends[from].2,
            dst_port: ends[1 - from].2,
        };
        Pair {
            now,
            tcb: [tcb(&hs_a, A), tcb(&hs_b, B)],
            app: [App::default(); 2],
            net: s.net,
            log: Vec::new(),
            cut: [false; 2],
            drops: Vec::new(),
            states: [vec![State::Established], vec![State::Established]],
            setup: s,
            rng: Rng(s.seed),
            wire: BinaryHeap::new(),
            order: 0,
            link_free: [now; 2],
            timers_ran: [None; 2],
            stale_deadlines: 0,
            paths: [path(A), path(B)],
        }
    }

    /// A pair with A's opening ACK delivered.
    pub fn settled(s: Setup) -> Pair {
        let mut p = Pair::new(s);
        p.service();
        p.run_for(10 * MS);
        p
    }

    pub fn t(&self) -> Duration {
        since_start(self.now)
    }

    /// Side `side`'s timestamp clock now.
    pub fn ts_now(&self, side: usize) -> u32 {
        clock::value(self.now, TS_OFF[side])
    }

    /// Drops the first segment from `from` that `pred` matches (each rule once).
    pub fn drop_once(&mut self, from: usize, pred: impl Fn(&Rec) -> bool + 'static) {
        self.drops.push((from, Box::new(pred)));
    }

    /// Runs each side's application, then its output.
    pub fn service(&mut self) {
        for side in [A, B] {
            self.run_app(side);
            self.output(side);
        }
        self.note_states();
    }

    fn note_states(&mut self) {
        for side in [A, B] {
            let s = self.tcb[side].state;
            if self.states[side].last() != Some(&s) {
                self.states[side].push(s);
            }
        }
    }

    fn run_app(&mut self, side: usize) {
        let app = &mut self.app[side];
        let tcb = &mut self.tcb[side];
        let mut buf = [0u8; 16384];
        let limit = match (app.request, app.reply) {
            (0, false) => app.total,
            (0, true) => app.got.min(app.total),
            (r, _) if app.got >= app.pushed => (app.pushed + r).min(app.total),
            _ => app.pushed,
        };
        while app.pushed < limit && tcb.send_room() > 0 {
            let n = (tcb.send_room() as u64).min(limit - app.pushed).min(buf.len() as u64) as usize;
            stream(side, app.pushed, &mut buf[..n], false);
            let took = tcb.send(&buf[..n]);
            app.pushed += took as u64;
            if took < n {
                break;
            }
        }
        if app.close_at_end && app.pushed == app.total {
            tcb.close();
        }
        if app.reads {
            let mut budget = if app.read_chunk == 0 { usize::MAX } else { app.read_chunk };
            while budget > 0 {
                let n = tcb.recv(&mut buf[..budget.min(16384)]);
                if n == 0 {
                    break;
                }
                budget -= n;
                if let Some(i) = stream(1 - side, app.got, &mut buf[..n], true) {
                    app.bad.get_or_insert(app.got + i as u64);
                }
                app.got += n as u64;
            }
        }
    }

    /// Lets side `side` send what it has, and puts its frames on the wire.
    pub fn output(&mut self, side: usize) {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let path = self.paths[side];
        let caps = ChecksumCapabilities::default();
        let mut emit = |o: &Out| {
            let mut buf = vec![0u8; o.frame_len()];
            seg::write(&mut buf, &path, o, &caps);
            frames.push(buf);
            true
        };
        let ts = self.ts_now(side);
        self.tcb[side].output(self.now, ts, &mut emit);
        for f in frames {
            self.transmit(side, f);
        }
    }

    /// Logs a frame from `from` and sends it through the network.
    pub fn transmit(&mut self, from: usize, frame: Vec<u8>) {
        let s = seg::parse(&frame).expect("a frame the writer wrote parses");
        let mut rec = Rec {
            at: self.now,
            from,
            seq: s.seq,
            ack: s.ack,
            flags: s.flags,
            window: s.window,
            ts: s.options.ts,
            sack: s.options.sack,
            nsack: usize::from(s.options.nsack),
            len: s.payload.len() as u32,
            dropped: false,
            arrived: None,
        };
        let ruled = self.drops.iter().position(|(side, pred)| *side == from && pred(&rec));
        if let Some(i) = ruled {
            drop(self.drops.remove(i));
        }
        let net = self.net;
        // The link: the frame leaves once those before it have.
        let start = self.now.max(self.link_free[from]);
        let bits = (frame.len() as u64 + 24) * 8; // preamble, FCS and gap
        let ser = (bits * 1_000_000).checked_div(net.rate).unwrap_or(0);
        let left = start + smoltcp::time::Duration::from_micros(ser);
        self.link_free[from] = left;
        rec.dropped = ruled.is_some() || self.cut[from] || self.rng.chance(net.loss);
        let idx = self.log.len();
        self.log.push(rec);
        if rec.dropped {
            return;
        }
        let copies = if self.rng.chance(net.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut d = net.delay;
            if self.rng.chance(net.reorder) {
                d += self.rng.upto(net.reorder_by);
            }
            let arrive = left + smoltcp::time::Duration::from_micros(d.as_micros() as u64);
            self.order += 1;
            self.wire.push(Reverse((arrive.total_micros(), self.order, 1 - from, idx, frame.clone())));
        }
    }

    /// Hands `out` to side `to` now, as if side `1 - to` had sent it (a forged or crafted
    /// segment); it is logged like the others.
    pub fn inject(&mut self, to: usize, out: &Out) {
        let mut buf = vec![0u8; out.frame_len()];
        seg::write(&mut buf, &self.paths[1 - to], out, &ChecksumCapabilities::default());
        self.deliver(to, usize::MAX, &buf);
        self.service();
    }

    fn deliver(&mut self, to: usize, idx: usize, frame: &[u8]) {
        assert!(crate::phy::checksums_ok(frame, true, true), "a frame on the wire lost its checksum");
        if let Some(r) = self.log.get_mut(idx) {
            r.arrived.get_or_insert(self.now);
        }
        let s = seg::parse(frame).expect("frames on the wire parse");
        self.tcb[to].input(self.now, &s);
        self.note_states();
    }

    /// When the next thing happens: a frame arrives, a timer is due, or an application that reads
    /// `read_chunk` at a time reads again (every 10 µs while bytes wait).
    pub fn next_event(&self) -> Option<Instant> {
        let frame = self.wire.peek().map(|Reverse((t, ..))| Instant::from_micros(*t));
        let timers = self.tcb.iter().filter(|t| t.state != State::Closed).filter_map(|t| t.next_deadline());
        let reader = (0..2).any(|s| self.app[s].reads && self.app[s].read_chunk > 0 && !self.tcb[s].rx.is_empty());
        let read = reader.then(|| self.now + smoltcp::time::Duration::from_micros(10));
        frame.into_iter().chain(timers).chain(read).min()
    }

    /// Runs the next event; returns `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(mut next) = self.next_event() else { return false };
        if next <= self.now {
            let frame_due = self.wire.peek().is_some_and(|Reverse((t, ..))| *t <= self.now.total_micros());
            let fresh = (0..2).any(|s| {
                self.tcb[s].next_deadline().is_some_and(|d| d <= self.now) && self.timers_ran[s] != Some(self.now)
            });
            if !frame_due && !fresh {
                self.stale_deadlines += 1;
                next = self.now + smoltcp::time::Duration::from_micros(1);
            }
        }
        self.now = self.now.max(next);
        while let Some(Reverse((t, ..))) = self.wire.peek() {
            if *t > self.now.total_micros() {
                break;
            }
            let Reverse((_, _, to, idx, frame)) = self.wire.pop().expect("peeked");
            self.deliver(to, idx, &frame);
        }
        for (t, ran) in self.tcb.iter_mut().zip(&mut self.timers_ran) {
            if t.next_deadline().is_some_and(|d| d <= self.now) {
                t.on_timers(self.now);
                *ran = Some(self.now);
            }
        }
        self.service();
        true
    }

    /// Steps until `done` holds (true) or `limit` of virtual time passed or nothing is left to
    /// happen (false). Events at the same instant are bounded: a livelock fails the test.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + smoltcp::time::Duration::from_micros(limit.as_micros() as u64);
        let mut same = (self.now, 0u32);
        loop {
            if done(self) {
                return true;
            }
            if self.next_event().is_none_or(|t| t > end) {
                if self.now < end {
                    self.now = end;
                }
                return done(self);
            }
            self.step();
            if same.0 == self.now {
                same.1 += 1;
                assert!(
                    same.1 < 100_000,
                    "livelock at {:?}: deadlines {:?}, states {:?}, frames due {}\n{}",
                    self.t(),
                    self.tcb.iter().map(|t| t.next_deadline().map(since_start)).collect::<Vec<_>>(),
                    self.tcb.iter().map(|t| t.state).collect::<Vec<_>>(),
                    self.wire.len(),
                    dump(&self.log[self.log.len().saturating_sub(20)..])
                );
            } else {
                same = (self.now, 0);
            }
        }
    }

    /// Steps through `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// The segments side `from` emitted from log index `since` on.
    pub fn sent_by(&self, from: usize, since: usize) -> impl Iterator<Item = &Rec> + '_ {
        self.log[since..].iter().filter(move |r| r.from == from)
    }

    /// The data segments side `from` emitted (first transmissions and retransmissions) since `since`.
    pub fn data_by(&self, from: usize, since: usize) -> impl Iterator<Item = &Rec> + '_ {
        self.sent_by(from, since).filter(|r| r.len > 0)
    }

    /// A segment as side `1 - to` would send it now, for [`Pair::inject`]: its numbers as they
    /// stand, its timestamps current.
    pub fn forge(&self, to: usize, flags: u8) -> Out<'static> {
        let from = 1 - to;
        Out {
            syn: None,
            seq: self.tcb[to].rcv_nxt(),
            ack: self.tcb[from].rcv_nxt(),
            flags,
            window: 1000,
            ts: self.setup.ts.then(|| (self.ts_now(from), self.ts_now(to))),
            sack: &[],
            data: [&[], &[]],
        }
    }

    /// Whether both sides ended (TIME-WAIT or CLOSED) without a reset.
    pub fn closed_cleanly(&self) -> bool {
        self.tcb.iter().all(|t| matches!(t.state, State::TimeWait | State::Closed) && !t.reset)
    }
}

/// Shorthand for a flag set's names in messages.
pub fn flags(f: u8) -> String {
    [(SYN, "S"), (FIN, "F"), (RST, "R"), (ACK, ".")].iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect()
}

/// One line per segment of the log, for failure messages: numbers relative to the ISSs.
pub fn dump(log: &[Rec]) -> String {
    log.iter()
        .map(|r| {
            format!(
                "{:>10.3} ms {} {:>3} seq {} ack {} len {} win {} sack {:?}{}\n",
                r.t().as_secs_f64() * 1e3,
                ["A>B", "B>A"][r.from],
                flags(r.flags),
                r.seq.wrapping_sub(ISS[r.from]),
                r.ack.wrapping_sub(ISS[1 - r.from]),
                r.len,
                r.window,
                r.sack()
                    .iter()
                    .map(|&(l, h)| (l.wrapping_sub(ISS[1 - r.from]), h.wrapping_sub(ISS[1 - r.from])))
                    .collect::<Vec<_>>(),
                if r.dropped { " DROPPED" } else { "" }
            )
        })
        .collect()
}
