//! Giving idle connections' buffer pages back to the kernel.
//!
//! Buffers on normal pages cost memory only where they were written: a connection that never
//! carried a byte holds none, but one that carried a 64-byte request holds a 4 KiB page of each
//! ring it wrote, for as long as it lives. A million connections that each carried one request
//! are then over 4 GiB, though they sit idle (BENCHMARKS, "Connection memory").
//!
//! So a sweep walks the pool slots, a slice every [`TICK`], once per `buffer_idle` period, with a
//! second chance: a slot serviced since the sweep last passed loses its mark and stays; one not
//! serviced for a whole pass, whose rings hold nothing, has its buffer pages given back
//! ([`BufferArena::release`](crate::mem::BufferArena::release)). A connection idle for between one and two
//! periods thus holds no buffer page; its next byte faults a zeroed page in. The per-tick slice is
//! `slots × TICK / period`, the fraction carried over, so a pass takes one period however few the
//! slots: the sweep costs a fixed amount per slot per period, nothing per packet.
//!
//! "Holds nothing" must count out-of-order data: smoltcp keeps segments that arrive beyond a hole
//! in the free part of the receive ring, and does not say when it holds some. The engine sees every
//! segment before smoltcp does, so it notes the end of any whose payload starts beyond the next
//! in-order byte (`note_segment`). That byte is the peer's ISN + 1 + what the session read + what
//! waits to be read. The ring holds no out-of-order data once in-order data reaches the noted end.
//! The note errs only toward keeping pages: a segment smoltcp then refused still counts until
//! in-order data passes it.
//!
//! Buffers on hugepages are never given back: a hugepage cannot be released in part.

use std::time::Duration;

use smoltcp::time::Instant;

use crate::flow::{seq_after, Segment};
use crate::slot::{Phase, Slot};
use crate::upper::Service;
use crate::Engine;

/// How often the sweep runs.
pub const TICK: Duration = Duration::from_millis(10);

/// Counters of buffer page reclaim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Slots whose buffer pages may be resident now: serviced since their pages were last given
    /// back (or ever). Slots on hugepages are not counted.
    pub holding: usize,
    /// Times a slot's buffer pages were given back.
    pub releases: u64,
    /// Bytes given back (whole slot buffers, resident or not at the time).
    pub released_bytes: u64,
    /// `madvise` calls that failed (the pages then stay; logged once).
    pub errors: u64,
}

/// The sweep's state.
pub(super) struct Reclaim {
    /// One pass over all slots takes this long; `None`: reclaim is off.
    period: Option<Duration>,
    cursor: usize,
    /// Slots owed to the sweep, in slot-microseconds: each tick adds slots × tick length, and a
    /// slot is visited per `period` of it (so a pass takes one period, however few the slots).
    credit: u128,
    /// When the sweep last ran.
    last: Instant,
    next_at: Instant,
    pub stats: ReclaimStats,
}

impl Reclaim {
    pub fn new(period: Option<Duration>, now: Instant) -> Self {
        Reclaim { period, cursor: 0, credit: 0, last: now, next_at: now, stats: ReclaimStats::default() }
    }

    pub fn enabled(&self) -> bool {
        self.period.is_some()
    }

    /// When the sweep next wants to run, if there is anything to sweep.
    pub fn next_deadline(&self) -> Option<Instant> {
        (self.period.is_some() && self.stats.holding > 0).then_some(self.next_at)
    }

    pub fn due(&self, now: Instant) -> bool {
        self.period.is_some() && now >= self.next_at
    }
}

/// Notes a segment about to be handed to `slot`'s socket (see the module documentation). Call it
/// before smoltcp processes the segment, and only on slots whose buffers can be given back; `nxt`
/// as [`Slot::rcv_nxt_once`] takes it.
pub(crate) fn note_segment<T>(slot: &mut Slot<T>, seg: &Segment, rx_capacity: usize, nxt: &mut Option<u32>) {
    let (syn, fin) = (u32::from(seg.flags.syn), u32::from(seg.flags.fin));
    let payload = seg.seq_len - syn - fin;
    if payload == 0 {
        return;
    }
    let start = seg.seq.wrapping_add(syn);
    let nxt = slot.rcv_nxt_once(nxt);
    let ahead = start.wrapping_sub(nxt) as i32;
    if ahead <= 0 || ahead as usize >= rx_capacity {
        // In order (or a retransmission): smoltcp appends it, nothing stays beyond a hole. Or
        // beyond the ring: smoltcp cannot store it.
        return;
    }
    // smoltcp stores no byte beyond one ring's length past the next in-order byte.
    let end = start.wrapping_add(payload);
    let limit = nxt.wrapping_add(rx_capacity as u32);
    let end = if seq_after(end, limit) { limit } else { end };
    slot.ooo_until = match slot.ooo_until {
        Some(u) if seq_after(u, end) => Some(u),
        _ => Some(end),
    };
}

/// Whether a slot's rings hold nothing anyone will read: a pool slot or a LISTEN socket, or a
/// connection with all data read and acknowledged and no out-of-order data kept.
fn drained<T>(slot: &mut Slot<T>) -> bool {
    match slot.phase {
        Phase::Free | Phase::Armed => true,
        Phase::HalfOpen => false,
        Phase::Queued | Phase::Accepted(_) | Phase::Client { .. } => {
            if let Some(t) = &slot.tcb {
                // The control block knows its out-of-order data exactly.
                return t.rx.is_empty() && t.tx.is_empty() && !t.holds_out_of_order();
            }
            let s = slot.socket();
            if s.recv_queue() != 0 || s.send_queue() != 0 {
                return false;
            }
            match slot.ooo_until {
                None => true,
                Some(end) => {
                    let caught_up = !seq_after(end, slot.rcv_nxt());
                    if caught_up {
                        slot.ooo_until = None;
                    }
                    caught_up
                }
            }
        }
    }
}

impl<S: Service> Engine<S> {
    /// Marks a slot as active (called whenever it is serviced).
    pub(crate) fn touch(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        if slot.buf != 0 {
            slot.recent = true;
            if !slot.resident {
                slot.resident = true;
                self.reclaim.stats.holding += 1;
            }
        }
    }

    /// One tick of the sweep: the next slice of slots.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let Some(period) = self.reclaim.period else { return };
        let elapsed: u64 = (now - self.reclaim.last).total_micros();
        self.reclaim.last = now;
        self.reclaim.next_at = now + TICK.into();
        let n = self.slots.len();
        if n == 0 || self.reclaim.stats.holding == 0 {
            self.reclaim.credit = 0;
            return;
        }
        // Slots due since the last tick: n per period, the remainder carried to the next tick.
        let period = period.as_micros().max(1);
        self.reclaim.credit = (self.reclaim.credit + n as u128 * u128::from(elapsed)).min(n as u128 * period);
        let slice = (self.reclaim.credit / period) as usize;
        self.reclaim.credit -= slice as u128 * period;
        let stride = self.buf_stride;
        // Adjacent slots are usually adjacent in memory: one madvise for a run of them.
        let mut run: Option<(usize, usize)> = None;
        for _ in 0..slice.min(n) {
            let id = self.reclaim.cursor;
            self.reclaim.cursor = (id + 1) % n;
            let slot = &mut self.slots[id];
            if !slot.resident || std::mem::take(&mut slot.recent) || !drained(slot) {
                continue;
            }
            slot.resident = false;
            let buf = slot.buf;
            self.reclaim.stats.holding -= 1;
            self.reclaim.stats.releases += 1;
            run = match run {
                Some((start, len)) if start + len == buf => Some((start, len + stride)),
                other => {
                    if let Some(r) = other {
                        self.release_run(r);
                    }
                    Some((buf, stride))
                }
            };
        }
        if let Some(r) = run {
            self.release_run(r);
        }
    }

    fn release_run(&mut self, (start, len): (usize, usize)) {
        match self.arena.release(start, len) {
            Ok(()) => self.reclaim.stats.released_bytes += len as u64,
            Err(e) => {
                if self.reclaim.stats.errors == 0 {
                    tracing::warn!(error = %e, "cannot give idle connection buffer pages back");
                }
                self.reclaim.stats.errors += 1;
            }
        }
    }

    /// Counters of buffer page reclaim.
    pub fn reclaim_stats(&self) -> ReclaimStats {
        self.reclaim.stats
    }
}
