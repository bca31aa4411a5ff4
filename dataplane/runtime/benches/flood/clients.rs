//! The flood bench's clients: their sessions ([`Probe`], counted in a [`Tally`]), their engine's
//! service ([`Clients`], which listens on nothing), and the device that puts them a one-way delay
//! away from the appliance ([`Via`]).

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use engine::phy::BurstDevice;
use engine::{Accept, ConnId, End, EngineInstant, Progress, Service, Session, Stream};
use runtime::device::PortDevice;
use smoltcp::phy::{Device, TxToken};

/// The request each client sends, echoed back.
pub const SIZE: usize = 64;
const REQUEST: [u8; SIZE] = [0x5a; SIZE];

/// What the clients' connections came to, in one run.
#[derive(Default)]
pub struct Tally {
    /// Connections that got their whole echo.
    pub ok: AtomicU64,
    pub refused: AtomicU64,
    pub timed_out: AtomicU64,
    /// Established, then ended before the echo was back.
    pub cut: AtomicU64,
    pub other: AtomicU64,
    /// Connect times of the connections that established, in µs.
    pub connect_us: Mutex<Vec<u32>>,
}

impl Tally {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One client connection: a 64-byte request, its echo, close; its times on the engine clock.
pub struct Probe {
    pub tally: Arc<Tally>,
    pub started: i64,
    pub sent: usize,
    pub got: usize,
    pub done: bool,
}

impl Session for Probe {
    fn drive(&mut self, _now: EngineInstant, s: &mut dyn Stream) -> Progress {
        if self.sent < SIZE {
            self.sent += s.send_from(&REQUEST[self.sent..]);
        }
        self.got += s.discard(usize::MAX);
        if self.got >= SIZE {
            if !self.done {
                self.done = true;
                self.tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            return Progress::Close;
        }
        if s.peer_finished() {
            Progress::Close
        } else {
            Progress::Open
        }
    }

    fn established(&mut self, now: EngineInstant) {
        let us = (now.total_micros() - self.started).clamp(0, i64::from(u32::MAX)) as u32;
        self.tally.connect_us.lock().expect("no panics while held").push(us);
    }

    fn closed(&mut self, established: bool, end: End) {
        let t = &self.tally;
        let c = match (self.done, established, end) {
            (true, _, _) => return,
            (false, true, _) => &t.cut,
            (false, false, End::Reset) => &t.refused,
            (false, false, End::TimedOut) => &t.timed_out,
            _ => &t.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The clients' engine listens on nothing.
#[derive(Clone, Debug)]
pub struct Clients;

impl Service for Clients {
    type Session = Probe;

    fn name(&self) -> &'static str {
        "flood-clients"
    }

    fn accept(&mut self, _: ConnId, _: SocketAddrV4, _: SocketAddrV4, _: EngineInstant) -> Accept<Probe> {
        Accept::Queue
    }
}

/// The clients' frames on their way: each waits out the one-way delay before it reaches the wire
/// (a client that far away); the flood's frames do not wait.
#[derive(Default)]
pub struct Delay {
    pub us: i64,
    pub queue: VecDeque<(i64, Vec<u8>)>,
}

/// Frames a delay holds at most (past it the clients' engine finds no room, as on a full queue).
const MAX_DELAYED: usize = 1 << 16;

/// The clients' engine's device: the port, with what it sends held back by `delay`.
pub struct Via<'a, 'p> {
    pub dev: &'a mut PortDevice<'p>,
    pub delay: &'a mut Delay,
    pub now_us: i64,
}

pub struct DelayedTx<'a> {
    queue: &'a mut VecDeque<(i64, Vec<u8>)>,
    due: i64,
}

impl TxToken for DelayedTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.queue.push_back((self.due, frame));
        r
    }
}

impl<'p> Device for Via<'_, 'p> {
    type RxToken<'a>
        = <PortDevice<'p> as Device>::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = DelayedTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, now: EngineInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.delay.queue.len() >= MAX_DELAYED {
            return None;
        }
        let due = self.now_us + self.delay.us;
        let (rx, _) = self.dev.receive(now)?;
        Some((rx, DelayedTx { queue: &mut self.delay.queue, due }))
    }

    fn transmit(&mut self, _now: EngineInstant) -> Option<Self::TxToken<'_>> {
        if self.delay.queue.len() >= MAX_DELAYED {
            return None;
        }
        Some(DelayedTx { queue: &mut self.delay.queue, due: self.now_us + self.delay.us })
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.dev.capabilities()
    }
}

impl BurstDevice for Via<'_, '_> {
    fn refill(&mut self) -> usize {
        self.dev.refill()
    }

    fn flush(&mut self) -> usize {
        let now = EngineInstant::from_micros(self.now_us);
        while self.delay.queue.front().is_some_and(|f| f.0 <= self.now_us) {
            let Some(tok) = self.dev.transmit(now) else { break };
            let (_, frame) = self.delay.queue.pop_front().expect("a frame is due");
            tok.consume(frame.len(), |b| b.copy_from_slice(&frame));
        }
        self.dev.flush()
    }

    fn peek(&mut self) -> Option<&[u8]> {
        self.dev.peek()
    }

    fn skip(&mut self) {
        self.dev.skip()
    }
}
