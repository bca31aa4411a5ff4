//! One control block of the engine's own TCP (`engine::tcp::conn::Tcb`), ESTABLISHED from a
//! handshake the input's setup picks, fed the operations the input decodes
//! (`switchyard_engine_fuzz::tcp`): segments from the peer (arbitrary bytes parsed in place, and
//! segments built near the live numbers), time passing, the application's reads, writes, close,
//! abort and echo, outputs into a device that may be full.
//!
//! Every segment the control block emits is written as a frame, parsed back and checked: ACK set,
//! no SYN; the acknowledgement RCV.NXT; a window within the free receive ring that never moves
//! its right edge left; timestamps as negotiated; SACK blocks above RCV.NXT and within the ring (a
//! D-SACK first and below); at most an MSS of data, exactly the bytes the application queued at
//! that place, nothing past the peer's window but a probe of one byte or the FIN, the FIN only
//! after a close and after the last byte. After every operation: SND.UNA <= SND.NXT <= SND.MAX,
//! SND.MAX the end of what left, the flight within the send ring, the pipe and the sent-segment
//! records within the flight, a window of at least one byte, the send ring what the application
//! queued less what was acknowledged, RCV.NXT never back, only the state changes of RFC 9293;
//! every eighth operation and at the end, the records tile the flight, the out-of-order ranges
//! are at most the configured number, sorted, apart and inside the ring, and the receive ring
//! holds the peer's stream. Bytes the application reads are the peer's stream at their offsets
//! (unless arbitrary bytes carried data). A second output at the same instant sends nothing.
//!
//! At the end, unless the peer was inconsistent (arbitrary bytes, FIN, SYN or RST, a timestamp
//! off its clock), a cooperative peer takes over (it acknowledges what arrives in order, opens
//! its window and answers probes) and the control block must deliver everything queued within
//! bounded virtual time.
//!
//! The control block's private numbers (SND.NXT, SND.MAX, SND.WND, the pipe, the records and the
//! out-of-order ranges) are read from its `Debug` output: `tcb.rs` of this target.

#![no_main]

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use engine::tcp::cc::Algorithm;
use engine::tcp::clock;
use engine::tcp::conn::{Handshake, State, Tcb, TcpConfig};
use engine::tcp::ring::{Region, Ring};
use engine::tcp::seg::{self, Out, Path, ACK, FIN, RST, SYN, URG};
use libfuzzer_sys::fuzz_target;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::time::Instant;
use switchyard_engine_fuzz::tcp::{self as input, SegOp, Setup, TcpOp, MAX_TCP_OPS, RING_SIZES};
use switchyard_engine_fuzz::Input;

#[path = "tcp/stream.rs"]
mod stream;
#[path = "tcp/tcb.rs"]
mod tcb;
use stream::{differs, stream, OURS, PEER};
use tcb::{le, lt, Deep, Numbers};

/// Tolerate the control block's defects reported and not yet fixed (docs/fuzzing.md): off, the
/// target finds them again.
const KNOWN_DEFECTS: bool = false;

/// `TCP_TRACE=1`: each operation and the control block before it, on stderr.
fn trace() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("TCP_TRACE").is_some())
}

/// Two buffers of the largest ring, made once: each input's rings are over them (a leaked buffer
/// per input would grow the process without bound).
fn ring(which: usize, n: usize, held: usize) -> Ring {
    static BUFS: OnceLock<[usize; 2]> = OnceLock::new();
    let max = RING_SIZES[RING_SIZES.len() - 1];
    let base = BUFS.get_or_init(|| [0, 1].map(|_| Box::leak(vec![0u8; max].into_boxed_slice()).as_mut_ptr() as usize));
    // SAFETY: the buffers are leaked, so they live for ever; libFuzzer runs one input at a time
    // on one thread, and the previous input's control block (the only other user of this buffer)
    // was dropped before this one is built.
    let buf: &'static mut [u8] = unsafe { std::slice::from_raw_parts_mut(base[which] as *mut u8, n) };
    // What a ring must never show: bytes of no stream.
    buf.fill(0xee);
    let mut first = Vec::with_capacity(held);
    stream(PEER, 0, held, &mut first);
    buf[..held].copy_from_slice(&first);
    // SAFETY: as above, the ring is the buffer's only user while it lives.
    unsafe { Ring::with_data(Region::new(buf), held) }
}

/// The window scale the engine offers for a receive ring (`own::our_wscale`).
fn our_wscale(cap: usize) -> u8 {
    (usize::BITS - cap.leading_zeros()).saturating_sub(16).min(14) as u8
}

/// A segment the control block emitted, parsed back.
struct Emitted {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ts: Option<(u32, u32)>,
    sack: Vec<(u32, u32)>,
    payload: Vec<u8>,
}

impl Emitted {
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.payload.len() as u32).wrapping_add(u32::from(self.flags & FIN != 0))
    }
}

struct Run {
    now: Instant,
    tcb: Tcb,
    /// Our timestamp clock's offset; the peer's clock's start.
    ts_off: u32,
    peer_ts: u32,
    path: Path,
    back: Path,
    irs: u32,
    rcv_shift: u8,
    ts_on: bool,
    sack_on: bool,
    /// The data the control block may put in one segment (the MSS less timestamps).
    mss: u32,
    max_ooo: usize,
    /// The peer's last window field, our last TSval and TSecr it saw.
    window: u16,
    last_tsval: u32,
    last_tsecr: u32,
    /// Bytes of the peer's stream the application read (or echoed, or discarded).
    got: u32,
    /// Arbitrary bytes carried data: the receive side's bytes are no longer the peer's stream.
    tainted: bool,
    /// The peer sent only what a real peer would (no arbitrary bytes, FIN, SYN or RST).
    consistent: bool,
    /// The highest sequence number of the peer's segments that may have been taken (SND.WL1).
    peer_hi: u32,
    /// The bytes the application queued from SND.UNA on, and its stream's next offset.
    ours: VecDeque<u8>,
    queued: u32,
    /// SND.UNA when last seen, and the end of what the control block emitted (SND.MAX).
    una: u32,
    snd_max: u32,
    closed: bool,
    fin_acked: bool,
    /// The right edge of the window last offered.
    edge: Option<u32>,
    state: State,
    rcv_nxt: u32,
    steps: u32,
    scratch: Vec<u8>,
}

impl Run {
    fn new(s: &Setup) -> Run {
        let now = Instant::from_millis(10_000);
        let ws = s.flags & input::WSCALE != 0;
        let sack = s.flags & input::SACK != 0;
        let ts = s.flags & input::TS != 0;
        let tx_cap = RING_SIZES[usize::from(s.rings & 15)];
        let rx_cap = RING_SIZES[usize::from(s.rings >> 4)];
        let snd_shift = if ws { s.peer_shift % 15 } else { 0 };
        let rcv_shift = if ws { our_wscale(rx_cap) } else { 0 };
        let received = usize::from(s.received) % (rx_cap + 1);
        let max_ooo = [1, 2, 3, 4, 8, 16, 32, 64][usize::from(s.ooo & 7)];
        let ts_off = s.ts ^ 0x5a5a_5a5a;
        let cfg = TcpConfig {
            congestion: if s.flags & input::RENO != 0 { Algorithm::Reno } else { Algorithm::Cubic },
            max_ooo_ranges: max_ooo,
            keepalive: (s.flags & input::KEEPALIVE != 0).then_some(Duration::from_secs(10)),
            keepalive_interval: Duration::from_secs(1),
            keepalive_probes: 3,
            header_prediction: s.flags & input::NO_PREDICTION == 0,
            ..TcpConfig::default()
        };
        let fin = s.flags & input::FIN_RECEIVED != 0;
        // The engine caps the peer's MSS by its own (`own.rs`): 1460.
        let mss = s.mss.min(1460);
        let hs = Handshake {
            iss: s.iss,
            irs: s.irs,
            mss,
            wscale: ws.then_some((snd_shift, rcv_shift)),
            sack,
            ts_recent: ts.then_some(s.ts),
            window: u32::from(s.window) << snd_shift,
            wl1: s.irs,
            wl2: s.iss.wrapping_add(1),
            rtt: (s.flags & input::NO_RTT == 0).then_some(Duration::from_millis(u64::from(s.ooo >> 3) + 1)),
            received,
            fin_received: fin,
            ack_now: s.ooo & 0x80 != 0,
        };
        let tcb = Tcb::new(&hs, cfg, ring(0, tx_cap, 0), ring(1, rx_cap, received), now);
        let ends = [
            ([2, 0, 0, 0, 0, 2], Ipv4Addr::new(198, 18, 0, 2), 80),
            ([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 1), 40000),
        ];
        let path = |a: usize, b: usize| Path {
            src_mac: ends[a].0,
            dst_mac: ends[b].0,
            src_ip: ends[a].1,
            dst_ip: ends[b].1,
            src_port: ends[a].2,
            dst_port: ends[b].2,
        };
        let mss = u32::from(mss.max(64)) - if ts { 12 } else { 0 };
        let rcv_nxt = tcb.rcv_nxt();
        let mut run = Run {
            now,
            state: tcb.state,
            tcb,
            ts_off,
            peer_ts: s.ts,
            path: path(0, 1),
            back: path(1, 0),
            irs: s.irs,
            rcv_shift,
            ts_on: ts,
            sack_on: sack,
            mss,
            max_ooo,
            window: s.window,
            last_tsval: 0,
            last_tsecr: s.ts,
            got: 0,
            tainted: false,
            consistent: true,
            peer_hi: s.irs.wrapping_add(1),
            ours: VecDeque::new(),
            queued: 0,
            una: s.iss.wrapping_add(1),
            snd_max: s.iss.wrapping_add(1),
            closed: false,
            fin_acked: false,
            edge: None,
            rcv_nxt,
            steps: 0,
            scratch: Vec::new(),
        };
        run.write(usize::from(s.queued));
        run
    }

    /// The peer's timestamp clock now.
    fn peer_clock(&self) -> u32 {
        self.peer_ts.wrapping_add((self.now.total_millis() - 10_000) as u32)
    }

    fn write(&mut self, n: usize) {
        let room = self.tcb.send_room();
        let mut bytes = Vec::new();
        stream(OURS, self.queued, n.min(room), &mut bytes);
        let took = self.tcb.send(&bytes);
        assert_eq!(took, bytes.len(), "send took less than its room");
        self.ours.extend(&bytes);
        self.queued = self.queued.wrapping_add(took as u32);
    }

    /// Checks `bytes`, the next of the peer's stream the application takes, and counts them.
    fn take(&mut self, bytes: &[u8]) {
        if !self.tainted {
            if let Some(i) = differs(PEER, self.got, bytes) {
                panic!("received byte at offset {} is not the peer's", self.got.wrapping_add(i as u32));
            }
        }
        self.got = self.got.wrapping_add(bytes.len() as u32);
    }

    fn read(&mut self, n: usize) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(n.min(self.tcb.rx.len()), 0);
        let got = self.tcb.recv(&mut buf);
        self.take(&buf[..got]);
        self.scratch = buf;
    }

    fn app(&mut self, action: u8, n: usize) {
        match action % 4 {
            0 => {
                self.closed |= self.tcb.may_send();
                self.tcb.close();
            }
            1 => self.tcb.abort(),
            2 => {
                let k = n.min(self.tcb.rx.len());
                let [a, b] = self.tcb.rx.get(0, k);
                let bytes = [a, b].concat();
                assert_eq!(self.tcb.discard(n), k);
                self.take(&bytes);
            }
            _ => {
                let k = n.min(self.tcb.rx.len()).min(self.tcb.send_room());
                let [a, b] = self.tcb.rx.get(0, k);
                let bytes = [a, b].concat();
                assert_eq!(self.tcb.loop_back(n), k);
                self.take(&bytes);
                self.ours.extend(&bytes);
                self.queued = self.queued.wrapping_add(k as u32);
            }
        }
    }

    /// Hands the control block a segment built from `s` near its live numbers.
    fn segment(&mut self, s: &SegOp) {
        let rcv_nxt = self.tcb.rcv_nxt();
        let una = self.tcb.snd_una();
        let seq = if s.seq_mode & 4 != 0 {
            rcv_nxt.wrapping_sub(1)
        } else {
            rcv_nxt.wrapping_add((i32::from(s.seq) << ((s.seq_mode & 3) * 4)) as u32)
        };
        let mut len = usize::from(s.len).min(65_000);
        if s.seq_mode & 8 != 0 {
            len = len.min(self.mss as usize);
        }
        let base = self.irs.wrapping_add(1);
        let mut payload = Vec::new();
        stream(PEER, seq.wrapping_sub(base), len, &mut payload);
        let mut flags = s.flags & (FIN | SYN | RST | URG | seg::PSH);
        if s.flags & 0x10 == 0 {
            flags |= ACK;
        }
        if flags & (FIN | SYN | RST) != 0 {
            self.consistent = false;
        }
        let flight = self.snd_max.wrapping_sub(una);
        let v = u32::from(s.ack);
        let ack = match s.ack_mode & 7 {
            0 => self.snd_max,
            1 => una,
            2 => una.wrapping_add(v % flight.wrapping_add(1).max(1)),
            3 => self.snd_max.wrapping_add(v),
            4 => una.wrapping_sub(v),
            5 => v.wrapping_mul(65_537),
            6 => una.wrapping_add(v.wrapping_mul(self.mss).min(flight)),
            _ => una.wrapping_add(v),
        };
        if s.flags & 0x40 != 0 {
            self.window = s.window;
        }
        let d = s.ts as i32 as u32;
        let tsval = match s.ts_mode & 3 {
            0 => self.peer_clock(),
            1 => self.peer_clock().wrapping_add(d),
            2 => self.last_tsecr.wrapping_add(d),
            _ => self.peer_clock().wrapping_sub(0x8000_0000).wrapping_add(d),
        };
        let tsecr = if s.ts_mode & 4 != 0 { self.last_tsval.wrapping_add(d) } else { self.last_tsval };
        let with_ts = self.ts_on != (s.flags & 0x80 != 0);
        // A timestamp off the peer's clock may leave TS.Recent where the cooperative peer cannot
        // know it (its segments would fail PAWS).
        if with_ts && s.ts_mode & 3 != 0 {
            self.consistent = false;
        }
        let scale = if s.ack_mode & 8 != 0 { self.mss } else { 1 };
        let blocks: Vec<(u32, u32)> = s
            .sack
            .iter()
            .take(if with_ts { 3 } else { 4 })
            .map(|&(l, n)| {
                let l = una.wrapping_add(u32::from(l).wrapping_mul(scale));
                (l, l.wrapping_add(u32::from(n).wrapping_mul(scale)))
            })
            .collect();
        // The highest sequence number the control block may take as SND.WL1: the cooperative
        // peer at the end sends from there.
        let off = seq.wrapping_sub(rcv_nxt) as i32;
        if off >= -(len as i32) && off <= self.tcb.rx.free() as i32 && lt(self.peer_hi, seq) {
            self.peer_hi = seq;
        }
        let out = Out {
            syn: None,
            seq,
            ack,
            flags,
            window: self.window,
            ts: with_ts.then_some((tsval, tsecr)),
            sack: &blocks,
            data: [&payload, &[]],
        };
        let mut frame = vec![0u8; out.frame_len()];
        seg::write(&mut frame, &self.back, &out, &ChecksumCapabilities::default());
        let parsed = seg::parse(&frame).expect("a segment the writer wrote parses");
        self.tcb.input(self.now, &parsed);
    }

    /// Arbitrary bytes after an Ethernet header (and an IPv4 header when `ip`), parsed in place.
    fn raw(&mut self, ip: bool, bytes: &[u8]) {
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(&[8, 0]);
        if ip {
            let total = (20 + bytes.len()) as u16;
            frame.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 6, 0, 0]);
            frame.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        }
        frame.extend_from_slice(bytes);
        if let Some(s) = seg::parse(&frame) {
            self.consistent = false;
            self.tainted |= !s.payload.is_empty();
            self.tcb.input(self.now, &s);
        }
    }

    fn time(&mut self, to_deadline: bool, amount: u8) {
        let us = if to_deadline {
            let next = self.tcb.next_deadline().unwrap_or(self.now).max(self.now);
            (next - self.now).total_micros() + u64::from(amount) * 100
        } else {
            u64::from(amount) * u64::from(amount) * 1000
        };
        self.now += smoltcp::time::Duration::from_micros(us);
        if self.tcb.next_deadline().is_some_and(|d| d <= self.now) {
            self.tcb.on_timers(self.now);
        }
    }

    /// Lets the control block send into a device with room for `budget` frames; checks each.
    fn output(&mut self, budget: usize) -> Vec<Emitted> {
        self.sync();
        let pre = Numbers::read(&self.tcb);
        let rcv_nxt = self.tcb.rcv_nxt();
        let free = self.tcb.rx.free() as u32;
        let ts_now = clock::value(self.now, self.ts_off);
        let (path, caps) = (self.path, ChecksumCapabilities::default());
        let mut seen = Vec::new();
        let mut left = budget;
        let mut emit = |o: &Out| {
            if left == 0 {
                return false;
            }
            left -= 1;
            let mut buf = vec![0u8; o.frame_len()];
            assert_eq!(seg::write(&mut buf, &path, o, &caps), buf.len());
            assert!(engine::phy::checksums_ok(&buf, true, true), "an emitted frame's checksums");
            let s = seg::parse(&buf).unwrap_or_else(|| {
                panic!("an emitted frame parses: seq {} data {} header {} bytes", o.seq, o.data_len(), o.header_len())
            });
            assert_eq!((s.seq, s.ack, s.flags, s.window, s.options.ts), (o.seq, o.ack, o.flags, o.window, o.ts));
            assert_eq!(s.options.sack_blocks(), o.sack);
            assert_eq!(s.payload.len(), o.data_len());
            seen.push(Emitted {
                seq: s.seq,
                ack: s.ack,
                flags: s.flags,
                window: s.window,
                ts: s.options.ts,
                sack: s.options.sack_blocks().to_vec(),
                payload: s.payload.to_vec(),
            });
            true
        };
        let n = self.tcb.output(self.now, ts_now, &mut emit);
        assert_eq!(n, seen.len(), "output's count of segments sent");
        for e in &seen {
            self.check_emitted(&pre, rcv_nxt, free, ts_now, e);
        }
        seen
    }

    fn check_emitted(&mut self, pre: &Numbers, rcv_nxt: u32, free: u32, ts_now: u32, e: &Emitted) {
        let ctx = || format!("{:?} seq {} len {} flags {:#x}", pre, e.seq, e.payload.len(), e.flags);
        assert!(e.flags & ACK != 0 && e.flags & (SYN | URG) == 0, "flags: {}", ctx());
        assert_eq!(e.ack, rcv_nxt, "the ACK is RCV.NXT: {}", ctx());
        let wnd = u32::from(e.window) << self.rcv_shift;
        assert!(wnd <= free, "a window {wnd} past the free ring {free}: {}", ctx());
        let edge = rcv_nxt.wrapping_add(wnd);
        if let Some(prev) = self.edge {
            let slack = (1u32 << self.rcv_shift) - 1;
            assert!(
                le(prev, edge.wrapping_add(slack)),
                "the window's right edge went left, {prev} to {edge}: {}",
                ctx()
            );
        }
        if self.edge.is_none_or(|p| lt(p, edge)) {
            self.edge = Some(edge);
        }
        match e.ts {
            Some((val, ecr)) => {
                assert!(self.ts_on, "timestamps on a connection without: {}", ctx());
                assert_eq!(val, ts_now, "TSval is our clock");
                self.last_tsval = val;
                self.last_tsecr = ecr;
            }
            None => assert!(!self.ts_on || e.flags & RST != 0, "no timestamps: {}", ctx()),
        }
        assert!(e.sack.len() <= if self.ts_on { 3 } else { 4 }, "SACK blocks: {}", ctx());
        assert!(self.sack_on || e.sack.is_empty(), "SACK blocks without SACK: {}", ctx());
        for (i, &(l, r)) in e.sack.iter().enumerate() {
            assert!(lt(l, r), "an empty or reversed SACK block {:?}: {}", (l, r), ctx());
            let dsack = i == 0 && le(r, rcv_nxt);
            assert!(
                dsack || (lt(rcv_nxt, l) && le(r, rcv_nxt.wrapping_add(free))),
                "a SACK block {:?} outside (RCV.NXT {rcv_nxt}, + free {free}]: {}",
                (l, r),
                ctx()
            );
        }
        if e.flags & RST != 0 {
            assert!(e.payload.is_empty(), "an RST with data");
            return;
        }
        let len = e.payload.len() as u32;
        let fin = e.flags & FIN != 0;
        assert!(len <= self.mss, "{len} bytes in one segment, MSS {}: {}", self.mss, ctx());
        if len == 0 && !fin {
            let probe = e.seq == pre.snd_una.wrapping_sub(1);
            assert!(probe || (le(pre.snd_una, e.seq) && le(e.seq, pre.snd_nxt)), "an ACK's sequence number: {}", ctx());
            return;
        }
        let off = e.seq.wrapping_sub(pre.snd_una) as usize;
        assert!(off + len as usize <= self.ours.len(), "data past what was queued ({}): {}", self.ours.len(), ctx());
        let queued = &self.ours.make_contiguous()[off..off + len as usize];
        assert!(queued == e.payload, "sent bytes at {off} are not what was queued: {}", ctx());
        if fin {
            assert!(self.closed, "a FIN without a close: {}", ctx());
            assert_eq!(off + len as usize, self.ours.len(), "the FIN is not after the last byte: {}", ctx());
        }
        let right = pre.snd_una.wrapping_add(pre.snd_wnd);
        assert!(
            len <= 1 || le(e.seq.wrapping_add(len), right),
            "data past the peer's window (right edge {right}): {}",
            ctx()
        );
        if lt(self.snd_max, e.end()) {
            self.snd_max = e.end();
        }
    }

    /// Follows SND.UNA: what it acknowledged leaves the model of the send ring.
    fn sync(&mut self) {
        let una = self.tcb.snd_una();
        let acked = una.wrapping_sub(self.una) as usize;
        assert!(acked < 1 << 31, "SND.UNA went back from {} to {una}", self.una);
        let data = acked.min(self.ours.len());
        self.ours.drain(..data);
        if acked > data {
            assert!(acked == data + 1 && self.closed && !self.fin_acked, "SND.UNA {una} past the FIN");
            self.fin_acked = true;
        }
        self.una = una;
    }

    /// The invariants after an operation (see the module documentation).
    fn check(&mut self, deep: bool) {
        self.sync();
        let n = Numbers::read(&self.tcb);
        let t = &self.tcb;
        assert_eq!(n.snd_una, t.snd_una(), "{n:?}");
        assert!(le(n.snd_una, n.snd_nxt) && le(n.snd_nxt, n.snd_max), "SND.UNA <= SND.NXT <= SND.MAX: {n:?}");
        assert_eq!(n.snd_max, self.snd_max, "SND.MAX is the end of what left: {n:?}");
        let flight = n.snd_max.wrapping_sub(n.snd_una);
        assert!(flight as usize <= t.tx.len() + 1, "a flight past the send ring: {n:?}");
        assert!(n.pipe <= flight, "the pipe past the flight: {n:?}");
        assert!(n.sent as u32 <= flight, "more records than bytes in flight: {n:?}");
        assert!(n.cwnd > 0, "a shut congestion window: {n:?}");
        assert_eq!(self.ours.len(), t.tx.len(), "the send ring is what was queued and not acknowledged: {n:?}");
        assert_eq!(n.tx, t.tx.len());
        assert!(t.rx.len() <= t.rx.capacity());
        let rcv_nxt = t.rcv_nxt();
        assert!(le(self.rcv_nxt, rcv_nxt), "RCV.NXT went back from {} to {rcv_nxt}", self.rcv_nxt);
        self.rcv_nxt = rcv_nxt;
        let (from, to) = (self.state, t.state);
        use State::*;
        let allowed = from == to
            || match from {
                Established => true,
                CloseWait => matches!(to, LastAck | Closed),
                FinWait1 => matches!(to, FinWait2 | Closing | TimeWait | Closed),
                FinWait2 | Closing => matches!(to, TimeWait | Closed),
                LastAck | TimeWait => to == Closed,
                Closed => false,
            };
        assert!(allowed, "{from:?} to {to:?}");
        self.state = to;
        if deep {
            let d = Deep::read(t);
            let mut at = 0u32;
            for &(s, e) in &d.records {
                assert!(s == at && lt(s, e), "records do not tile the flight: {:?}, flight {flight}", d.records);
                at = e;
            }
            assert_eq!(at, flight, "records do not tile the flight: {:?}", d.records);
            assert!(d.ooo.len() <= self.max_ooo, "{} out-of-order ranges, {} at most", d.ooo.len(), self.max_ooo);
            let mut end = 0;
            for &(s, e) in &d.ooo {
                assert!(s > end && s < e, "out-of-order ranges not sorted and apart: {:?}", d.ooo);
                end = e;
            }
            assert!(
                end as usize <= t.rx.free(),
                "out-of-order ranges past the ring: {:?}, free {}",
                d.ooo,
                t.rx.free()
            );
            if !self.tainted {
                let [a, b] = t.rx.get(0, t.rx.len());
                let bad = differs(PEER, self.got, a)
                    .or_else(|| differs(PEER, self.got.wrapping_add(a.len() as u32), b).map(|i| a.len() + i));
                if let Some(i) = bad {
                    panic!("held byte at offset {} is not the peer's", self.got.wrapping_add(i as u32));
                }
            }
        }
    }

    /// One operation, its output unless held, and the checks.
    fn step(&mut self, op: &TcpOp, hold: bool) {
        clock::set(self.now, self.ts_off);
        if trace() {
            eprintln!(
                "{:>10} µs {op:?}{}\n  before: {:?}",
                self.now.total_micros(),
                if hold { " (held)" } else { "" },
                self.tcb
            );
        }
        match op {
            TcpOp::Raw { ip, bytes } => self.raw(*ip, bytes),
            TcpOp::Seg(s) => self.segment(s),
            TcpOp::Time { to_deadline, amount } => self.time(*to_deadline, *amount),
            TcpOp::Read { n } => self.read(usize::from(*n)),
            TcpOp::Write { n } => self.write(usize::from(*n)),
            TcpOp::App { action, n } => self.app(*action, usize::from(*n)),
            TcpOp::Output { budget } => {
                self.output(usize::from(*budget % 4));
            }
            TcpOp::InOrder { len } => self.segment(&SegOp { len: *len, seq_mode: 8, ..SegOp::default() }),
        }
        self.check(false);
        if !hold {
            self.output(usize::MAX);
            let again = self.output(usize::MAX);
            // Known defect (docs/fuzzing.md): with more free ring than the window field can offer
            // (no window scaling, a ring over 64 KiB), every output with nothing else to send
            // sends a "window update" that offers the same window.
            let capped = u64::from(u16::MAX) << self.rcv_shift < self.tcb.rx.free() as u64;
            let update = again.len() == 1 && again[0].payload.is_empty() && again[0].flags == ACK;
            assert!(
                again.is_empty() || (capped && update && KNOWN_DEFECTS),
                "a second output sent {} segments (first: seq {} len {} flags {:#x}) after {op:?}: {:?}",
                again.len(),
                again[0].seq,
                again[0].payload.len(),
                again[0].flags,
                self.tcb
            );
        }
        self.steps += 1;
        self.check(self.steps.is_multiple_of(8));
    }

    /// Everything queued was delivered, or the connection is over.
    fn settled(&self) -> bool {
        matches!(self.tcb.state, State::Closed | State::TimeWait) || !self.tcb.has_unacknowledged()
    }

    /// A cooperative peer: it takes in order what arrives, acknowledges it with an open window
    /// and timestamps that pass PAWS, sends the rest of its own stream, answers probes. Everything
    /// queued must be delivered in bounded virtual time.
    fn settle(&mut self) {
        let start = self.now;
        let mut peer_rcv = self.tcb.snd_una();
        let mut answer = true;
        let mut dups = 0;
        for _ in 0..4000 {
            self.read(usize::MAX);
            if self.settled() {
                return;
            }
            if lt(peer_rcv, self.tcb.snd_una()) {
                peer_rcv = self.tcb.snd_una();
            }
            let rcv_before = self.tcb.rcv_nxt();
            if answer {
                let rcv_nxt = self.tcb.rcv_nxt();
                let takes = matches!(self.tcb.state, State::Established | State::FinWait1 | State::FinWait2);
                let len = if takes && lt(rcv_nxt, self.peer_hi) {
                    self.peer_hi.wrapping_sub(rcv_nxt).min(self.tcb.rx.free() as u32).min(65_000)
                } else {
                    0
                };
                let seq = if len == 0 && lt(rcv_nxt, self.peer_hi) { self.peer_hi } else { rcv_nxt };
                let base = self.irs.wrapping_add(1);
                let mut payload = Vec::new();
                stream(PEER, seq.wrapping_sub(base), len as usize, &mut payload);
                let tsval = if lt(self.last_tsecr, self.peer_clock()) { self.peer_clock() } else { self.last_tsecr };
                let out = Out {
                    syn: None,
                    seq,
                    ack: peer_rcv,
                    flags: ACK,
                    window: u16::MAX,
                    ts: self.ts_on.then_some((tsval, self.last_tsval)),
                    sack: &[],
                    data: [&payload, &[]],
                };
                let mut frame = vec![0u8; out.frame_len()];
                seg::write(&mut frame, &self.back, &out, &ChecksumCapabilities::default());
                self.tcb.input(self.now, &seg::parse(&frame).expect("parses"));
                self.check(false);
            }
            let una = self.tcb.snd_una();
            let sent = self.output(usize::MAX);
            self.check(false);
            // The peer sends the rest of its stream without waiting, while it gets in.
            let takes = matches!(self.tcb.state, State::Established | State::FinWait1 | State::FinWait2);
            let moved = self.tcb.rcv_nxt() != rcv_before;
            answer = takes && moved && lt(self.tcb.rcv_nxt(), self.peer_hi);
            let before = peer_rcv;
            let mut news = false;
            for e in &sent {
                if le(e.seq, peer_rcv) && lt(peer_rcv, e.end()) {
                    peer_rcv = e.end();
                }
                news |= !e.payload.is_empty() || e.flags & FIN != 0 || e.seq == una.wrapping_sub(1);
            }
            // Duplicate ACKs for data past a hole: at most three in a row, then the peer's ACKs
            // are late (time passes to the next deadline). Each one at the same instant lets a
            // new segment out, and the hole waits for the retransmission timer, which needs time.
            dups = if peer_rcv == before { dups + 1 } else { 0 };
            answer |= news && dups <= 3;
            if !answer {
                if self.settled() {
                    return;
                }
                let Some(next) = self.tcb.next_deadline() else {
                    panic!("stalled with nothing due: {:?} {:?}", self.tcb.state, Numbers::read(&self.tcb));
                };
                self.now = self.now.max(next);
                assert!(
                    self.now - start < smoltcp::time::Duration::from_secs(3600),
                    "an hour and not delivered: {:?}",
                    self.tcb
                );
                clock::set(self.now, self.ts_off);
                self.tcb.on_timers(self.now);
                answer = true;
                dups = 0;
            }
        }
        panic!("not delivered after 4000 rounds: {:?}", self.tcb);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let setup = Setup::decode(&mut inp);
    if trace() {
        eprintln!("{setup:?}");
    }
    let mut run = Run::new(&setup);
    run.check(true);
    let mut ops = 0;
    while let Some((op, hold)) = TcpOp::decode(&mut inp) {
        run.step(&op, hold);
        ops += 1;
        if ops == MAX_TCP_OPS {
            break;
        }
    }
    run.check(true);
    if run.consistent {
        run.settle();
        run.check(true);
    }
});
