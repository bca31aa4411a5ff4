//! The `tcp` target's input: a setup that picks the handshake's outcome and the rings, then
//! operations on one control block of the engine's own TCP (`engine::tcp::conn::Tcb`), each a tag
//! byte and its fields ([`TcpOp::decode`], [`TcpOp::encode`]). As for `frames`, fields missing
//! at the input's end read as zeros, so every input decodes.

use crate::Input;

/// Setup flag: both sides offered window scaling.
pub const WSCALE: u8 = 1;
/// Setup flag: both sides offered SACK.
pub const SACK: u8 = 2;
/// Setup flag: both sides offered timestamps.
pub const TS: u8 = 4;
/// Setup flag: Reno rather than CUBIC.
pub const RENO: u8 = 8;
/// Setup flag: header prediction off (every segment takes the full path).
pub const NO_PREDICTION: u8 = 16;
/// Setup flag: keepalive on (after 10 s, every 1 s, 3 probes).
pub const KEEPALIVE: u8 = 32;
/// Setup flag: the peer's FIN came with the handshake (CLOSE-WAIT from the start).
pub const FIN_RECEIVED: u8 = 64;
/// Setup flag: the handshake was retransmitted (no first RTT sample).
pub const NO_RTT: u8 = 128;

/// Ring sizes a setup picks from (the send ring by the low nibble of [`Setup::rings`], the
/// receive ring by the high one): from one byte to 256 KiB.
pub const RING_SIZES: [usize; 16] =
    [1, 2, 7, 64, 536, 1000, 1460, 3000, 4096, 8192, 16384, 20000, 65535, 65536, 100_000, 262_144];

/// What the handshake settled and how the connection is built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// [`WSCALE`], [`SACK`], ...
    pub flags: u8,
    pub rings: u8,
    /// The MSS we may send (at most 1460, as the engine caps it; the control block takes at
    /// least 64).
    pub mss: u16,
    /// The peer's window shift (taken modulo 15).
    pub peer_shift: u8,
    /// Out-of-order ranges kept at most: 1, 2, 3, 4, 8, 16, 32 or 64 (bits 0-2).
    pub ooo: u8,
    pub iss: u32,
    pub irs: u32,
    /// The peer's timestamp clock at the start (and our clock's offset, xored).
    pub ts: u32,
    /// The window field of the handshake's last segment (scaled by the peer's shift).
    pub window: u16,
    /// Bytes received during the handshake (modulo the receive ring's size plus one).
    pub received: u16,
    /// Bytes the application queued before the first operation.
    pub queued: u16,
}

impl Setup {
    pub fn decode(inp: &mut Input) -> Setup {
        Setup {
            flags: inp.byte(),
            rings: inp.byte(),
            mss: inp.u16(),
            peer_shift: inp.byte(),
            ooo: inp.byte(),
            iss: inp.u32(),
            irs: inp.u32(),
            ts: inp.u32(),
            window: inp.u16(),
            received: inp.u16(),
            queued: inp.u16(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.flags, self.rings]);
        out.extend_from_slice(&self.mss.to_le_bytes());
        out.extend_from_slice(&[self.peer_shift, self.ooo]);
        for v in [self.iss, self.irs, self.ts] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.window, self.received, self.queued] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// A segment from the peer, built near the connection's live numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegOp {
    /// FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08 and URG 0x20 as on the wire; ACK (0x10) is set
    /// unless this bit is; 0x40: the window is `window`, else the peer's last; 0x80: timestamps
    /// are left out (or, on a connection without them, put in).
    pub flags: u8,
    /// Bits 0-1: `seq` is shifted left by 0, 4, 8 or 12 bits; bit 2: the sequence number is
    /// RCV.NXT - 1 (a probe's); bit 3: the payload is at most one MSS.
    pub seq_mode: u8,
    /// Added to RCV.NXT.
    pub seq: i16,
    /// Payload bytes: the peer's stream at the segment's place (at most 65,000).
    pub len: u16,
    /// Bits 0-2: the acknowledgement number: 0 everything sent, 1 SND.UNA, 2 part of the
    /// flight, 3 past what was sent, 4 below SND.UNA, 5 anywhere, 6 `ack` segments of the flight,
    /// 7 SND.UNA + `ack`; bit 3: SACK blocks count in MSSs.
    pub ack_mode: u8,
    pub ack: u16,
    pub window: u16,
    /// Bits 0-1: TSval is the peer's clock, plus `ts`, our last TSecr plus `ts`, or far in the
    /// past (a PAWS failure); bit 2: TSecr is our last TSval plus `ts`.
    pub ts_mode: u8,
    pub ts: i16,
    /// Up to four SACK blocks, as (start, length) from SND.UNA (three beside timestamps).
    pub sack: Vec<(u16, u16)>,
}

/// One operation of a `tcp` input. The tag's bit 7 holds the output back: without it, the
/// control block sends what it has after the operation, as the engine's service does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOp {
    /// Bytes parsed in place by `seg::parse` after an Ethernet header, and behind an IPv4 header
    /// of the right length when `ip`.
    Raw {
        ip: bool,
        bytes: Vec<u8>,
    },
    Seg(SegOp),
    /// Time passes: `amount` squared ms, or to the next deadline and `amount` * 100 µs more;
    /// then the timers due run.
    Time {
        to_deadline: bool,
        amount: u8,
    },
    /// The application reads up to `n` bytes.
    Read {
        n: u16,
    },
    /// The application queues up to `n` bytes of its stream.
    Write {
        n: u16,
    },
    /// The application: 0 closes, 1 aborts, 2 discards up to `n` bytes, 3 echoes up to `n`.
    App {
        action: u8,
        n: u16,
    },
    /// An output whose device takes `budget` frames at most (0: full).
    Output {
        budget: u8,
    },
    /// The peer sends `len` bytes in order (at most one MSS) and acknowledges everything sent.
    InOrder {
        len: u16,
    },
}

/// The most operations of one input decoded.
pub const MAX_TCP_OPS: usize = 96;

impl TcpOp {
    /// The next operation and whether it holds the output back, if the input has one.
    pub fn decode(inp: &mut Input) -> Option<(TcpOp, bool)> {
        if inp.is_empty() {
            return None;
        }
        let tag = inp.byte();
        let bit = tag & 8 != 0;
        let op = match tag & 7 {
            0 => {
                let len = usize::from(inp.u16()).min(1600);
                TcpOp::Raw { ip: bit, bytes: inp.bytes(len) }
            }
            1 => {
                let mut s = SegOp {
                    flags: inp.byte(),
                    seq_mode: inp.byte(),
                    seq: inp.u16() as i16,
                    len: inp.u16(),
                    ack_mode: inp.byte(),
                    ack: inp.u16(),
                    window: inp.u16(),
                    ts_mode: inp.byte(),
                    ts: inp.u16() as i16,
                    sack: Vec::new(),
                };
                for _ in 0..inp.byte() % 5 {
                    s.sack.push((inp.u16(), inp.u16()));
                }
                TcpOp::Seg(s)
            }
            2 => TcpOp::Time { to_deadline: bit, amount: inp.byte() },
            3 => TcpOp::Read { n: inp.u16() },
            4 => TcpOp::Write { n: inp.u16() },
            5 => TcpOp::App { action: inp.byte(), n: inp.u16() },
            6 => TcpOp::Output { budget: inp.byte() },
            _ => TcpOp::InOrder { len: inp.u16() },
        };
        Some((op, tag & 0x80 != 0))
    }

    /// Appends the bytes [`TcpOp::decode`] reads back as this operation.
    pub fn encode(&self, hold: bool, out: &mut Vec<u8>) {
        let h = if hold { 0x80 } else { 0 };
        match self {
            TcpOp::Raw { ip, bytes } => {
                out.push(h | if *ip { 8 } else { 0 });
                out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            TcpOp::Seg(s) => {
                out.extend_from_slice(&[h | 1, s.flags, s.seq_mode]);
                out.extend_from_slice(&s.seq.to_le_bytes());
                out.extend_from_slice(&s.len.to_le_bytes());
                out.push(s.ack_mode);
                out.extend_from_slice(&s.ack.to_le_bytes());
                out.extend_from_slice(&s.window.to_le_bytes());
                out.push(s.ts_mode);
                out.extend_from_slice(&s.ts.to_le_bytes());
                assert!(s.sack.len() <= 4);
                out.push(s.sack.len() as u8);
                for (l, n) in &s.sack {
                    out.extend_from_slice(&l.to_le_bytes());
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
            TcpOp::Time { to_deadline, amount } => {
                out.extend_from_slice(&[h | 2 | if *to_deadline { 8 } else { 0 }, *amount])
            }
            TcpOp::Read { n } => {
                out.push(h | 3);
                out.extend_from_slice(&n.to_le_bytes());
            }
            TcpOp::Write { n } => {
                out.push(h | 4);
                out.extend_from_slice(&n.to_le_bytes());
            }
            TcpOp::App { action, n } => {
                out.extend_from_slice(&[h | 5, *action]);
                out.extend_from_slice(&n.to_le_bytes());
            }
            TcpOp::Output { budget } => out.extend_from_slice(&[h | 6, *budget]),
            TcpOp::InOrder { len } => {
                out.push(h | 7);
                out.extend_from_slice(&len.to_le_bytes());
            }
        }
    }
}
