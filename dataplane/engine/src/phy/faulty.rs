//! A faulty wire for the in-memory link: frames lost, duplicated, reordered and delayed, each
//! direction with its own [`Faults`], all of it deterministic from one seed. For tests of what TCP
//! does on a bad path (retransmission, duplicate and out-of-order segments, a long round trip) on
//! a virtual clock.
//!
//! The two ends are those of a [`MemoryLink::apart`](super::MemoryLink::apart). A test's step
//! calls [`FaultyLink::carry`] after each end's poll: it takes what both ends sent, decides each
//! frame's fate, and hands each end what is due for it at `now`. Besides the random faults, a test
//! can script losses: the next frames of a [`Kind`] ([`FaultyLink::lose`]), or a whole flight of
//! data ([`FaultyLink::lose_flight`]). [`FaultStats`] counts what the wire did.

use std::collections::VecDeque;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket};

use super::MemoryDevice;

/// A direction of the link: from its end `a` to its end `b`, or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    AToB = 0,
    BToA = 1,
}

/// What happens to the frames of one direction. Percentages are of the frames sent into it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Frames lost, in percent.
    pub loss: f64,
    /// Frames delivered twice (the copy right behind the original), in percent.
    pub duplicate: f64,
    /// Frames held back, in percent: each goes once the next 1 to 3 frames of its direction have
    /// overtaken it, or once `hold` has passed, whichever comes first.
    pub reorder: f64,
    /// The longest a held frame waits to be overtaken.
    pub hold: Duration,
    /// The one-way delay of every frame.
    pub delay: Duration,
}

impl Faults {
    /// Random loss, duplication and reordering (in percent), held frames waiting at most 5 ms, no
    /// delay.
    pub fn random(loss: f64, duplicate: f64, reorder: f64) -> Faults {
        Faults { loss, duplicate, reorder, hold: Duration::from_millis(5), delay: Duration::ZERO }
    }

    /// These faults, and every frame `delay` late.
    pub fn delayed(self, delay: Duration) -> Faults {
        Faults { delay, ..self }
    }
}

/// What a wire did to the frames of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames sent into it.
    pub sent: u64,
    /// Frames handed to the receiving end, copies included.
    pub delivered: u64,
    /// Frames lost at random.
    pub lost: u64,
    /// Frames lost by a script ([`FaultyLink::lose`], [`FaultyLink::lose_flight`]).
    pub scripted: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames held back and overtaken (or let go after their `hold`).
    pub reordered: u64,
    /// Frames that took the direction's delay.
    pub delayed: u64,
}

/// Frames a scripted loss picks by what they carry, as TCP over IPv4 (anything else is only
/// [`Kind::Any`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every frame.
    Any,
    /// A SYN without ACK (a connection request).
    Syn,
    /// A SYN with ACK (the answer to one).
    SynAck,
    /// A segment with FIN.
    Fin,
    /// A segment with payload (with or without FIN).
    Data,
    /// An ACK with no payload, SYN, FIN or RST.
    PureAck,
}

impl Kind {
    /// Whether `frame` is of this kind.
    pub fn matches(self, frame: &[u8]) -> bool {
        let Some(s) = tcp_of(frame) else { return self == Kind::Any };
        match self {
            Kind::Any => true,
            Kind::Syn => s.syn && !s.ack,
            Kind::SynAck => s.syn && s.ack,
            Kind::Fin => s.fin,
            Kind::Data => s.len > 0,
            Kind::PureAck => s.ack && !s.syn && !s.fin && !s.rst && s.len == 0,
        }
    }
}

/// What a script looks at in a TCP segment: its flags, sequence number and payload length.
struct Seg {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
    seq: u32,
    len: usize,
}

/// The TCP segment `frame` carries, if it carries one.
fn tcp_of(frame: &[u8]) -> Option<Seg> {
    let eth = EthernetFrame::new_checked(frame).ok().filter(|e| e.ethertype() == EthernetProtocol::Ipv4)?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok().filter(|p| p.next_header() == IpProtocol::Tcp)?;
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (syn, ack, fin, rst) = (tcp.syn(), tcp.ack(), tcp.fin(), tcp.rst());
    Some(Seg { syn, ack, fin, rst, seq: tcp.seq_number().0 as u32, len: tcp.payload().len() })
}

/// A link's two directions of faults, between the ends of a
/// [`MemoryLink::apart`](super::MemoryLink::apart). See the module documentation.
pub struct FaultyLink {
    ways: [Direction; 2],
}

impl FaultyLink {
    /// A wire with `a_to_b` faults one way and `b_to_a` the other, its random choices from `seed`.
    pub fn new(seed: u64, a_to_b: Faults, b_to_a: Faults) -> FaultyLink {
        FaultyLink { ways: [Direction::new(seed, 1, a_to_b), Direction::new(seed, 2, b_to_a)] }
    }

    /// A wire with the same faults both ways.
    pub fn both(seed: u64, faults: Faults) -> FaultyLink {
        FaultyLink::new(seed, faults, faults)
    }

    /// Loses the next `n` frames of `kind` sent `way`, besides the random losses.
    pub fn lose(&mut self, way: Way, kind: Kind, n: u32) {
        self.ways[way as usize].script.push((kind, n));
    }

    /// Loses a whole flight of data sent `way`: from the next data segment on, every segment of
    /// new data, until the sender sends data again that it sent before (its retransmission,
    /// which passes).
    pub fn lose_flight(&mut self, way: Way) {
        self.ways[way as usize].flight = Flight::Armed;
    }

    /// Takes what `a` and `b` sent since the last call, and hands each end the frames due for it
    /// at `now`. Call it after each end's poll.
    pub fn carry(&mut self, now: Instant, a: &mut MemoryDevice, b: &mut MemoryDevice) {
        let [ab, ba] = &mut self.ways;
        ab.take(now, a);
        ba.take(now, b);
        ab.deliver(now, b);
        ba.deliver(now, a);
    }

    /// When the next frame on its way is due, if any is.
    pub fn next_due(&self) -> Option<Instant> {
        self.ways.iter().filter_map(Direction::next_due).min()
    }

    /// Frames on their way, both directions.
    pub fn in_flight(&self) -> usize {
        self.ways.iter().map(|d| d.queue.len() + d.held.len()).sum()
    }

    /// What the wire did to the frames sent `way`.
    pub fn stats(&self, way: Way) -> FaultStats {
        self.ways[way as usize].stats
    }
}

/// A scripted flight loss ([`FaultyLink::lose_flight`]): off, waiting for the flight's first data
/// segment, or losing new data (`end`: the sequence number past the last segment lost).
#[derive(Clone, Copy)]
enum Flight {
    Off,
    Armed,
    Losing { end: u32 },
}

/// A frame held back for reordering.
struct Held {
    /// Its place in the order sent: frames with a greater one overtake it.
    order: u64,
    /// Frames still to overtake it.
    overtakers: u8,
    /// When it goes anyway.
    until: Instant,
    frame: Vec<u8>,
}

/// One direction of a [`FaultyLink`].
struct Direction {
    faults: Faults,
    /// xorshift64* state, never zero.
    rng: u64,
    /// Frames on their way, in the order sent: when each is due, and its place in that order.
    queue: VecDeque<(Instant, u64, Vec<u8>)>,
    held: Vec<Held>,
    next_order: u64,
    /// Scripted losses: how many more frames of each kind to lose.
    script: Vec<(Kind, u32)>,
    flight: Flight,
    stats: FaultStats,
}

impl Direction {
    fn new(seed: u64, way: u64, faults: Faults) -> Direction {
        // splitmix64 of the seed and the direction, so that each direction draws on its own.
        let mut z = seed.wrapping_add(way.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Direction {
            faults,
            rng: z.max(1),
            queue: VecDeque::new(),
            held: Vec::new(),
            next_order: 0,
            script: Vec::new(),
            flight: Flight::Off,
            stats: FaultStats::default(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with `percent` percent odds (to a ten-thousandth of a percent).
    fn roll(&mut self, percent: f64) -> bool {
        self.next_u64() % 1_000_000 < (percent * 10_000.0) as u64
    }

    /// Whether a scripted loss takes `frame` (and counts it against its script).
    fn scripted(&mut self, frame: &[u8]) -> bool {
        let Some(at) = self.script.iter().position(|&(k, n)| n > 0 && k.matches(frame)) else { return false };
        self.script[at].1 -= 1;
        self.script.retain(|&(_, n)| n > 0);
        true
    }

    /// Whether a scripted flight loss takes `frame`.
    fn in_flight_lost(&mut self, frame: &[u8]) -> bool {
        let Some(s) = tcp_of(frame).filter(|s| s.len > 0) else { return false };
        let end = s.seq.wrapping_add(s.len as u32);
        match self.flight {
            Flight::Off => return false,
            // Data sent before, at least in part: the retransmission ends the flight.
            Flight::Losing { end: lost } if (s.seq.wrapping_sub(lost) as i32) < 0 => {
                self.flight = Flight::Off;
                return false;
            }
            Flight::Armed | Flight::Losing { .. } => self.flight = Flight::Losing { end },
        }
        true
    }

    /// Takes what `from` sent and decides each frame's fate.
    fn take(&mut self, now: Instant, from: &mut MemoryDevice) {
        while let Some(frame) = from.take_sent() {
            self.stats.sent += 1;
            if self.in_flight_lost(&frame) || self.scripted(&frame) {
                self.stats.scripted += 1;
                continue;
            }
            if self.roll(self.faults.loss) {
                self.stats.lost += 1;
                continue;
            }
            if self.roll(self.faults.duplicate) {
                self.stats.duplicated += 1;
                self.enter(now, frame.clone());
            }
            self.enter(now, frame);
        }
    }

    /// Puts a frame on its way: held back for reordering, or queued behind the others.
    fn enter(&mut self, now: Instant, frame: Vec<u8>) {
        let order = self.next_order;
        self.next_order += 1;
        let due = now + self.faults.delay;
        if self.faults.delay > Duration::ZERO {
            self.stats.delayed += 1;
        }
        if self.roll(self.faults.reorder) {
            self.stats.reordered += 1;
            let overtakers = 1 + (self.next_u64() % 3) as u8;
            self.held.push(Held { order, overtakers, until: due + self.faults.hold, frame });
        } else {
            self.queue.push_back((due, order, frame));
        }
    }

    /// Hands `to` every frame due at `now`: queued frames in order, each held frame right behind
    /// the last frame it waited for, and held frames whose time is up.
    fn deliver(&mut self, now: Instant, to: &mut MemoryDevice) {
        while self.queue.front().is_some_and(|&(due, _, _)| due <= now) {
            let Some((_, order, frame)) = self.queue.pop_front() else { break };
            self.hand(to, order, frame);
        }
        while let Some(i) = self.held.iter().position(|h| h.until <= now) {
            let h = self.held.remove(i);
            self.hand(to, h.order, h.frame);
        }
    }

    /// Hands `to` a frame, which overtakes every held frame sent before it; then each held frame
    /// overtaken enough, in the order sent (each overtaking the ones held before it).
    fn hand(&mut self, to: &mut MemoryDevice, order: u64, frame: Vec<u8>) {
        let mut next = Some((order, frame));
        while let Some((order, frame)) = next.take() {
            self.stats.delivered += 1;
            to.inject(frame);
            for h in self.held.iter_mut().filter(|h| h.order < order) {
                h.overtakers = h.overtakers.saturating_sub(1);
            }
            if let Some(i) = self.held.iter().position(|h| h.overtakers == 0) {
                let h = self.held.remove(i);
                next = Some((h.order, h.frame));
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let queued = self.queue.front().map(|&(due, _, _)| due);
        let held = self.held.iter().map(|h| h.until).min();
        queued.into_iter().chain(held).min()
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::phy::{Device, TxToken};

    use super::*;
    use crate::phy::MemoryLink;

    /// Sends `n` numbered frames from `a` to `b` across `wire`, one per millisecond, then lets
    /// everything on its way arrive; returns the numbers as `b` received them.
    fn run(wire: &mut FaultyLink, n: u32) -> Vec<u32> {
        let MemoryLink { mut a, mut b } = MemoryLink::apart();
        let mut got = Vec::new();
        for i in 0..n + 1000 {
            let now = Instant::from_millis(i64::from(i));
            if i < n {
                a.transmit(now).unwrap().consume(4, |f| f.copy_from_slice(&i.to_be_bytes()));
            }
            wire.carry(now, &mut a, &mut b);
            got.extend(std::iter::from_fn(|| b.take_inbound()).map(|f| u32::from_be_bytes(f[..4].try_into().unwrap())));
        }
        assert_eq!(wire.in_flight(), 0);
        got
    }

    #[test]
    fn faults_come_at_their_rates_are_counted_and_repeat_with_their_seed() {
        let faults = Faults::random(5.0, 2.0, 5.0);
        let mut wire = FaultyLink::both(7, faults);
        let got = run(&mut wire, 20_000);
        assert_eq!(got, run(&mut FaultyLink::both(7, faults), 20_000), "the same seed, the same faults");
        assert_ne!(got, run(&mut FaultyLink::both(8, faults), 20_000));
        let s = wire.stats(Way::AToB);
        assert_eq!(s.sent, 20_000);
        assert_eq!(got.len() as u64, s.delivered);
        assert_eq!(s.delivered, s.sent - s.lost + s.duplicated);
        assert!((800..1200).contains(&s.lost), "{s:?}");
        assert!((300..500).contains(&s.duplicated), "{s:?}");
        assert!((800..1200).contains(&s.reordered), "{s:?}");
        let late = got.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(late > 500, "{late} frames arrived behind a later one");
        assert_eq!(wire.stats(Way::BToA), FaultStats::default(), "nothing went the other way");
    }

    /// A held frame is overtaken by 1 to 3 frames sent after it (fewer when its 5 ms hold ends
    /// first), and no frame that is not held is overtaken at all.
    #[test]
    fn a_held_frame_is_overtaken_by_one_to_three_later_frames() {
        let mut wire = FaultyLink::both(9, Faults::random(0.0, 0.0, 10.0));
        let got = run(&mut wire, 5000);
        assert_eq!(got.len(), 5000);
        let mut overtaken = 0;
        for (at, &n) in got.iter().enumerate() {
            let by = got[..at].iter().filter(|&&m| m > n).count();
            assert!(by <= 3, "frame {n} arrived behind {by} later ones");
            overtaken += usize::from(by > 0);
        }
        // Only the last frames sent can be let go by their hold, overtaken by none.
        let held = wire.stats(Way::AToB).reordered as usize;
        assert!(overtaken <= held && held <= overtaken + 3, "{overtaken} frames overtaken, {held} held");
    }

    #[test]
    fn a_delay_holds_every_frame_that_long() {
        let mut wire = FaultyLink::both(1, Faults::default().delayed(Duration::from_millis(20)));
        let MemoryLink { mut a, mut b } = MemoryLink::apart();
        a.transmit(Instant::ZERO).unwrap().consume(4, |f| f.fill(1));
        for ms in 0..20 {
            wire.carry(Instant::from_millis(ms), &mut a, &mut b);
            assert_eq!(b.pending(), 0, "not yet at {ms} ms");
        }
        assert_eq!(wire.next_due(), Some(Instant::from_millis(20)));
        wire.carry(Instant::from_millis(20), &mut a, &mut b);
        assert_eq!((b.pending(), wire.stats(Way::AToB).delayed), (1, 1));
    }
}
