//! The HTTP service's request parser and session (`engine::services::Http::drive`) over a stream of
//! fuzzed bytes, delivered in chunks and with send room of fuzzed sizes.
//!
//! Input: a flags byte, a seed byte, then the bytes the peer sends. The seed drives the chunk
//! sizes and the send room of each step (flags bits 0-2 bound them); flags bit 3: the peer closes
//! its side after its last byte; bit 4: the service has a head timeout and time passes.
//!
//! Without the timeout, what the session answers must not depend on how the bytes were split
//! or how much room the send buffer had: the chunked run's output and end are compared with a
//! run that gets everything at once with room to spare. Every output must be a sequence of the
//! service's prebuilt responses, one per request answered, and nothing may follow an error.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use engine::services::{Http, HttpConfig, Progress, Stream};
use libfuzzer_sys::fuzz_target;
use smoltcp::time::Instant;

const BODY: &[u8] = b"hello\n";

/// The peer's side of a connection: the bytes it sends, how many arrived so far, how many the
/// session read; what the session sent, and the room left in the send buffer.
struct Peer {
    input: Vec<u8>,
    arrived: usize,
    read: usize,
    fin: bool,
    output: Vec<u8>,
    room: usize,
    closed: bool,
}

impl Stream for Peer {
    fn recv_into(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.arrived - self.read);
        buf[..n].copy_from_slice(&self.input[self.read..self.read + n]);
        self.read += n;
        n
    }
    fn recv_waiting(&self) -> usize {
        self.arrived - self.read
    }
    fn discard(&mut self, max: usize) -> usize {
        let n = max.min(self.recv_waiting());
        self.read += n;
        n
    }
    fn send_from(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.send_room());
        self.output.extend_from_slice(&data[..n]);
        self.room -= n;
        n
    }
    fn send_room(&self) -> usize {
        if self.closed {
            0
        } else {
            self.room
        }
    }
    fn peer_finished(&self) -> bool {
        self.fin && self.read == self.input.len()
    }
    fn close(&mut self) {
        self.closed = true;
    }
}

/// xorshift64*: chunk sizes, send room and time steps from the seed byte.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// How a run went: what the session sent, whether it asked to close, requests it answered.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    output: Vec<u8>,
    closed: bool,
    requests: u64,
}

/// Plenty of room: a whole response fits.
const ROOM: usize = 1 << 20;

/// Runs a session over `input`, delivered in chunks of 1 to `max_chunk` bytes with send room of
/// 0 to `4 * max_chunk` bytes per step (everything at once, and room to spare, for `usize::MAX`);
/// with `clock`, time passes between steps. Then, everything arrived, it runs with room to spare
/// until it asks to close or stops moving.
fn run(cfg: &Arc<HttpConfig>, input: &[u8], fin: bool, max_chunk: usize, seed: u8, clock: bool) -> Outcome {
    let mut h = Http::new(cfg.clone());
    let mut peer =
        Peer { input: input.to_vec(), arrived: 0, read: 0, fin: false, output: Vec::new(), room: 0, closed: false };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(seed));
    let mut now = Instant::ZERO;
    let mut drive = |peer: &mut Peer, rng: &mut Rng, room: usize| {
        peer.fin = fin && peer.arrived == peer.input.len();
        peer.room = room;
        if clock {
            now += smoltcp::time::Duration::from_millis(rng.below(1500) as u64);
        }
        let p = h.drive(now, peer);
        assert!(peer.read <= peer.arrived);
        (p == Progress::Close, h.requests)
    };
    loop {
        let (chunk, room) = match max_chunk {
            usize::MAX => (usize::MAX, ROOM),
            m => (1 + rng.below(m), rng.below(4 * m)),
        };
        peer.arrived = peer.arrived.saturating_add(chunk).min(input.len());
        let (closed, requests) = drive(&mut peer, &mut rng, room);
        if closed {
            return Outcome { output: peer.output, closed, requests };
        }
        if peer.arrived == input.len() {
            break;
        }
    }
    // Everything arrived: room to spare until nothing moves.
    let mut last = (peer.read, peer.output.len());
    for _ in 0..64 {
        let (closed, requests) = drive(&mut peer, &mut rng, ROOM);
        if closed {
            return Outcome { output: peer.output, closed, requests };
        }
        if (peer.read, peer.output.len()) == last && !clock {
            return Outcome { output: peer.output, closed, requests };
        }
        last = (peer.read, peer.output.len());
    }
    assert!(clock, "the session kept moving with nothing new");
    Outcome { output: peer.output, closed: false, requests: h.requests }
}

/// What the service answers `req` with, all of it arrived and room to spare, at 0 s and then at
/// 10 s (past a head timeout).
fn answer(cfg: &Arc<HttpConfig>, req: &[u8]) -> Vec<u8> {
    let mut h = Http::new(cfg.clone());
    let mut peer = Peer {
        input: req.to_vec(),
        arrived: req.len(),
        read: 0,
        fin: false,
        output: Vec::new(),
        room: ROOM,
        closed: false,
    };
    h.drive(Instant::ZERO, &mut peer);
    h.drive(Instant::from_secs(10), &mut peer);
    assert!(!peer.output.is_empty(), "no answer to {:?}", String::from_utf8_lossy(req));
    peer.output
}

/// The service's responses, learnt from the service itself: the three persistences of a
/// response with a body, the same without (HEAD), then its errors (400, 431, 501, 505, 408).
fn responses() -> Responses {
    let cfg = Arc::new(HttpConfig::new(BODY, "text/plain"));
    let ok = [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ]
    .map(|r| answer(&cfg, r));
    let mut errors: Vec<Vec<u8>> = [
        &b"x\r\n"[..],
        &[b'x'; engine::services::http::MAX_HEAD],
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
    ]
    .map(|r| answer(&cfg, r))
    .to_vec();
    let timed = Arc::new(HttpConfig::new(BODY, "text/plain").with_header_timeout(Duration::from_secs(2)));
    errors.push(answer(&timed, b"GET"));
    (ok.to_vec(), errors)
}

/// `output` is a sequence of the service's responses, one per request answered, an error only
/// last and only when the session closed.
fn check_responses(o: &Outcome, ok: &[Vec<u8>], errors: &[Vec<u8>]) {
    let mut rest = &o.output[..];
    let mut count = 0u64;
    while !rest.is_empty() {
        count += 1;
        if let Some(r) = ok.iter().find(|r| rest.starts_with(r)) {
            rest = &rest[r.len()..];
            continue;
        }
        assert!(
            o.closed && errors.iter().any(|r| rest == &r[..]),
            "not a response of the service, or something after an error: {:?}",
            String::from_utf8_lossy(rest)
        );
        rest = &[];
    }
    assert_eq!(count, o.requests, "responses sent for the requests answered");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (flags, seed, input) = (data[0], data[1], &data[2..]);
    let fin = flags & 8 != 0;
    let clock = flags & 16 != 0;
    let mut cfg = HttpConfig::new(BODY, "text/plain");
    if clock {
        cfg = cfg.with_header_timeout(Duration::from_secs(2));
    }
    let cfg = Arc::new(cfg);
    let plain = RESPONSES.get_or_init(responses);
    let chunked = run(&cfg, input, fin, 4 << (flags & 7), seed, clock);
    check_responses(&chunked, &plain.0, &plain.1);
    if !clock {
        let whole = run(&cfg, input, fin, usize::MAX, seed, false);
        check_responses(&whole, &plain.0, &plain.1);
        assert_eq!(
            (String::from_utf8_lossy(&chunked.output), chunked.closed, chunked.requests),
            (String::from_utf8_lossy(&whole.output), whole.closed, whole.requests),
            "the answer depends on how the request was split"
        );
    }
});

/// The service's successful responses, then its errors.
type Responses = (Vec<Vec<u8>>, Vec<Vec<u8>>);

static RESPONSES: std::sync::OnceLock<Responses> = std::sync::OnceLock::new();
