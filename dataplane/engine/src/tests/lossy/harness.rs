//! The harnesses of the tests across a faulty wire: a [`Pair`] and two engines over
//! [`FaultyLink`], a service that checks what its connections carry, the transfers the tests
//! make, and the sweep over seeds.

use std::cell::RefCell;
use std::net::SocketAddrV4;
use std::rc::Rc;

use super::super::*;
use crate::phy::faulty::{FaultStats, Faults, FaultyLink, Way};
use crate::services::Echo;

/// The longest virtual time a transfer or close may take.
const PATIENCE: Duration = Duration::from_secs(600);
pub(super) const KIB: usize = 1024;

/// How a transfer ended: exact and clean after this much virtual time, or stalled with this many
/// bytes echoed (an exact prefix) and both ends timed out.
#[derive(Debug)]
pub(super) enum Outcome {
    Exact(Duration),
    Stalled(usize),
}

impl Outcome {
    pub(super) fn exact(self) -> Duration {
        let Outcome::Exact(t) = self else { panic!("the transfer stalled: {self:?}") };
        t
    }
}

/// How the connections of a [`Checked`] service ended, and what each source got back.
#[derive(Debug, Default)]
pub(super) struct Log {
    pub(super) ends: Vec<End>,
    /// Bytes and SHA-256 of the echo each source received.
    pub(super) echoes: Vec<(usize, [u8; 32])>,
}

/// A service whose accepted connections echo and whose outgoing ones send a byte stream and hash
/// its echo; it logs how each connection ended.
#[derive(Clone, Default)]
pub(super) struct Checked(pub(super) Rc<RefCell<Log>>);

pub(super) struct Source {
    data: Rc<[u8]>,
    sent: usize,
    got: usize,
    hash: Sha256,
}

pub(super) enum Checking {
    Echo(Echo, Rc<RefCell<Log>>),
    Source(Source, Rc<RefCell<Log>>),
}

impl Checked {
    pub(super) fn source(&self, data: Rc<[u8]>) -> Checking {
        Checking::Source(Source { data, sent: 0, got: 0, hash: Sha256::new() }, self.0.clone())
    }

    pub(super) fn ends(&self) -> Vec<End> {
        self.0.borrow().ends.clone()
    }
}

impl crate::Session for Checking {
    fn drive(&mut self, _: Instant, s: &mut dyn Stream) -> Progress {
        let src = match self {
            Checking::Echo(e, _) => return e.drive(s),
            Checking::Source(src, _) => src,
        };
        src.sent += s.send_from(&src.data[src.sent..]);
        let mut buf = [0u8; 4096];
        loop {
            let n = s.recv_into(&mut buf);
            if n == 0 {
                break;
            }
            src.hash.update(&buf[..n]);
            src.got += n;
        }
        if src.got >= src.data.len() || s.peer_finished() {
            Progress::Close
        } else {
            Progress::Open
        }
    }

    fn closed(&mut self, _: bool, end: End) {
        match self {
            Checking::Echo(_, log) => log.borrow_mut().ends.push(end),
            Checking::Source(src, log) => {
                let mut log = log.borrow_mut();
                log.ends.push(end);
                log.echoes.push((src.got, std::mem::take(&mut src.hash).finalize().into()));
            }
        }
    }
}

impl Service for Checked {
    type Session = Checking;

    fn name(&self) -> &'static str {
        "checked"
    }

    fn accept(&mut self, _: ConnId, _: SocketAddrV4, _: SocketAddrV4, _: Instant) -> Accept<Checking> {
        Accept::Session(Checking::Echo(Echo::new(), self.0.clone()))
    }
}

/// `len` bytes drawn from `seed`.
pub(super) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut data: Vec<u8> =
        std::iter::repeat_with(|| r.next_u64().to_le_bytes()).take(len.div_ceil(8)).flatten().collect();
    data.truncate(len);
    data
}

/// The two ends for a faulty wire ([`MemoryLink::apart`]), both leaving their IPv4 and TCP
/// checksums to a NIC that is not there: the wire corrupts nothing, and in a debug build the
/// checksums would take two fifths of a transfer's time.
fn link() -> MemoryLink {
    let mut link = MemoryLink::apart();
    link.a.offload_checksums();
    link.b.offload_checksums();
    link
}

/// The next moment to poll at: `now` plus 1 ms, or the earliest deadline when both devices are
/// empty and it is later.
fn next_moment(now: Instant, quiet: bool, deadlines: [Option<Instant>; 3]) -> Instant {
    let tick = now + Duration::from_millis(1);
    match deadlines.into_iter().flatten().min() {
        Some(t) if quiet => t.max(tick),
        _ => tick,
    }
}

/// A [`Pair`] across a faulty wire; the client is the wire's end `a`.
pub(super) struct Lossy<S: Service + Clone = Checked> {
    pub(super) p: Pair<S>,
    pub(super) wire: FaultyLink,
    /// The engine's next deadline, from its last poll.
    pub(super) engine_at: Option<Instant>,
}

impl<S: Service + Clone> Lossy<S> {
    pub(super) fn new(cfg: &EngineConfig<S>, wire: FaultyLink) -> Self {
        Lossy { p: Pair::over(cfg, link()), wire, engine_at: None }
    }

    /// Moves the clock ([`next_moment`]), then polls the client and the engine, the wire carrying
    /// what each sent.
    pub(super) fn step(&mut self) {
        let p = &mut self.p;
        let quiet = p.cdev.pending() == 0 && p.edev.pending() == 0;
        let client_at = p.client.poll_at(p.now, &p.sockets);
        p.now = next_moment(p.now, quiet, [client_at, self.engine_at, self.wire.next_due()]);
        self.wire.carry(p.now, &mut p.cdev, &mut p.edev);
        p.cdev.refill();
        p.client.poll(p.now, &mut p.cdev, &mut p.sockets);
        self.wire.carry(p.now, &mut p.cdev, &mut p.edev);
        while p.edev.pending() > 0 {
            p.edev.refill();
            p.poll_once();
        }
        self.engine_at = p.poll_once();
        self.wire.carry(p.now, &mut p.cdev, &mut p.edev);
    }

    /// Steps until `done`, for at most [`PATIENCE`]; returns whether it came.
    pub(super) fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let until = self.p.now + PATIENCE;
        while self.p.now < until {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

/// Arms a scripted loss on the wire.
pub(super) type Arm = fn(&mut FaultyLink);

/// Losses scripted on the wire during an [`echo_across`].
#[derive(Default)]
pub(super) struct Script {
    /// Each is armed once this many bytes have come back, in turn.
    pub(super) echoed: Vec<(usize, Arm)>,
    /// Armed just before the client closes (everything back, the path quiet for 50 ms).
    pub(super) closing: Option<Arm>,
}

/// A smoltcp client sends `len` bytes drawn from `seed` to the engine's echo across `wire`, reads
/// them back and closes, with the losses of `script`. RFC 9293 §3.4 and §3.10.7.4 (duplicates
/// dropped, segments out of order put back in order) hold when the echo's SHA-256 is the data's;
/// the end is graceful when the client is in TIME-WAIT (a reset would have closed it) and the
/// engine's connection ended by FIN exchange. Returns how it ended (the virtual time from connect
/// to the engine's end) and the wire's counts. A stall (see the module documentation) is the
/// engine's timeout with an exact prefix echoed.
pub(super) fn echo_across(wire: FaultyLink, seed: u64, len: usize, mut script: Script) -> (Outcome, [FaultStats; 2]) {
    let log = Checked::default();
    let mut l = Lossy::new(&config().map_services(|_| log.clone()), wire);
    let h = l.p.connect(7, 40000);
    let data = bytes(seed, len);
    let (mut sent, mut got) = (0, Vec::new());
    l.run_until(|l| {
        let s = l.p.sock(h);
        if s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap();
        }
        l.p.recv_all(h, &mut got);
        while script.echoed.first().is_some_and(|&(at, _)| got.len() >= at) {
            (script.echoed.remove(0).1)(&mut l.wire);
        }
        got.len() >= len || !log.0.borrow().ends.is_empty()
    });
    let stats = |l: &Lossy| [l.wire.stats(Way::AToB), l.wire.stats(Way::BToA)];
    if got.len() < len {
        assert!(got == data[..got.len()], "seed {seed}: the echo differs from the data");
        assert_eq!(log.ends(), [End::TimedOut], "seed {seed}: {} of {len} bytes echoed", got.len());
        return (Outcome::Stalled(got.len()), stats(&l));
    }
    assert!(Sha256::digest(&got) == Sha256::digest(&data), "seed {seed}: the echo differs from the data");
    let quiet_until = l.p.now + Duration::from_millis(50);
    l.run_until(|l| l.p.now >= quiet_until);
    if let Some(closing) = script.closing {
        closing(&mut l.wire);
    }
    l.p.sock(h).close();
    assert!(l.run_until(|l| l.p.engine.stats().open == 0), "seed {seed}: the engine's connection ended");
    assert_eq!(l.p.sock(h).state(), tcp::State::TimeWait, "seed {seed}: the client closed gracefully");
    assert_eq!(log.ends(), [End::Graceful], "seed {seed}: the engine's end");
    assert_eq!(l.p.engine.stats().closed, 1);
    (Outcome::Exact(l.p.now - Instant::ZERO), stats(&l))
}

/// Two engines across a faulty wire: a client (198.18.0.1, the wire's end `a`) and a server.
pub(super) struct Net<S: Service + Clone> {
    pub(super) now: Instant,
    pub(super) client: Engine<S>,
    pub(super) cdev: MemoryDevice,
    pub(super) server: Engine<S>,
    pub(super) sdev: MemoryDevice,
    pub(super) wire: FaultyLink,
    /// Each engine's next deadline, from its last poll.
    pub(super) at: [Option<Instant>; 2],
}

impl<S: Service + Clone> Net<S> {
    pub(super) fn new(client: &EngineConfig<S>, server: &EngineConfig<S>, wire: FaultyLink) -> Self {
        let MemoryLink { a: mut cdev, b: mut sdev } = link();
        let now = Instant::ZERO;
        let client = Engine::new(client, &mut cdev, now).unwrap();
        let server = Engine::new(server, &mut sdev, now).unwrap();
        Net { now, client, cdev, server, sdev, wire, at: [None; 2] }
    }

    /// A client engine's configuration: `buffer` bytes each way per connection.
    pub(super) fn client_config(buffer: usize) -> EngineConfig<S> {
        let mut c = EngineConfig::new([0x02, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), 24);
        (c.tcp_rx_buffer, c.tcp_tx_buffer, c.random_seed) = (buffer, buffer, 3);
        c
    }

    /// Moves the clock ([`next_moment`]), then polls each engine in turn, the wire carrying what
    /// each sent, until neither has frames waiting (8 rounds at most).
    pub(super) fn step(&mut self) {
        let quiet = self.cdev.pending() == 0 && self.sdev.pending() == 0;
        self.now = next_moment(self.now, quiet, [self.at[0], self.at[1], self.wire.next_due()]);
        for _ in 0..8 {
            self.wire.carry(self.now, &mut self.cdev, &mut self.sdev);
            self.cdev.refill();
            self.at[0] = self.client.poll(self.now, &mut self.cdev);
            self.wire.carry(self.now, &mut self.cdev, &mut self.sdev);
            self.sdev.refill();
            self.at[1] = self.server.poll(self.now, &mut self.sdev);
            self.wire.carry(self.now, &mut self.cdev, &mut self.sdev);
            if self.cdev.pending() == 0 && self.sdev.pending() == 0 {
                break;
            }
        }
    }

    /// Steps until `done`, for at most [`PATIENCE`]; returns whether it came.
    pub(super) fn run_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let until = self.now + PATIENCE;
        while self.now < until {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }
}

/// An engine sends `len` bytes drawn from `seed` to another engine's echo across `wire`, checks
/// the echo's SHA-256 and closes; both connections end gracefully (the client's through TIME-WAIT,
/// which answers the server's FIN again if its ACK is lost).
pub(super) fn engine_to_engine(wire: FaultyLink, seed: u64, len: usize) -> Outcome {
    let log = Checked::default();
    let server = config().map_services(|_| log.clone());
    let mut n = Net::new(&Net::client_config(16 * KIB), &server, wire);
    let data: Rc<[u8]> = bytes(seed, len).into();
    n.client.connect(SocketAddrV4::new(SERVER, 7), log.source(data.clone())).unwrap();
    let ended = n.run_until(|_| log.0.borrow().ends.len() == 2);
    assert!(ended, "seed {seed}: both connections ended within {PATIENCE}: {:?}", log.0.borrow());
    let (got, digest) = log.0.borrow().echoes[0];
    if got < len && log.ends() == [End::TimedOut, End::TimedOut] {
        assert!(digest == *Sha256::digest(&data[..got]), "seed {seed}: the echo differs from the data");
        return Outcome::Stalled(got);
    }
    assert_eq!(log.ends(), [End::Graceful, End::Graceful], "seed {seed}");
    assert_eq!((got, digest), (len, Sha256::digest(&data).into()), "seed {seed}: the echo");
    assert_eq!(n.client.time_wait_stats().entered, 1, "seed {seed}: the client closed first");
    assert_eq!((n.client.stats().open, n.server.stats().open), (0, 0));
    Outcome::Exact(n.now - Instant::ZERO)
}

/// Runs `transfer` across `faults` for each seed, and prints the virtual times they took. Only the
/// seeds in `stalls` may stall (see the module documentation).
pub(super) fn sweep(
    what: &str,
    seeds: u64,
    faults: Faults,
    stalls: &[u64],
    transfer: impl Fn(FaultyLink, u64) -> Outcome,
) {
    let (mut times, mut stalled) = (Vec::new(), Vec::new());
    for seed in 1..=seeds {
        match transfer(FaultyLink::both(seed, faults), seed) {
            Outcome::Exact(t) => times.push(t),
            Outcome::Stalled(got) => {
                assert!(stalls.contains(&seed), "{what}, seed {seed}: stalled after {got} bytes echoed");
                stalled.push(seed);
            }
        }
    }
    let each = times.iter().map(|t| t.total_millis().to_string()).collect::<Vec<_>>().join(" ");
    let total = times.iter().fold(Duration::ZERO, |a, &t| a + t);
    times.sort();
    eprintln!(
        "{what}: {} of {seeds} seeds exact, virtual time min {} median {} max {} total {total}; \
         stalled (smoltcp): {stalled:?}; ms each: {each}",
        times.len(),
        times[0],
        times[times.len() / 2],
        times[times.len() - 1],
    );
}
