//! TIME_WAIT owned by the engine (SEMANTICS T1-T2).
//!
//! A connection that we closed first ends in TIME_WAIT. Its socket and buffers go back to the pool
//! at once (no RST is sent), and the 4-tuple is remembered in a compact entry until `delay` has
//! passed (2*MSL: 240 s by default, 0-300 s).
//!
//! While the entry lives:
//! - A retransmitted FIN is re-ACKed. The ACK is built from the FIN itself: our sequence number is
//!   what the peer acknowledges, and we acknowledge the FIN's end. So the entry needs no stored
//!   sequence numbers of ours.
//! - A new SYN for the same 4-tuple is accepted only if its sequence number is past the old
//!   connection's end (`peer_next`), the rule of RFC 1122 4.2.2.13 that RFC 6191 builds on;
//!   otherwise it is ignored and counted.
//! - Every other segment is ignored, including RSTs (RFC 1337).
//!
//! Every entry gets the same delay, so expiry order is insertion order. A FIFO of (tuple, expiry)
//! beside the map expires entries in O(1) each, with no timer per entry.
//!
//! The table is bounded, as Linux's `tcp_max_tw_buckets` bounds its own: the map is sized at start
//! for `max` entries and the FIFO for a quarter more, and neither grows. A connection that closes
//! while `max` entries live skips TIME_WAIT (its socket is freed as with a zero delay), counted in
//! [`TimeWaitStats::overflow`]. The FIFO holds every live entry, and also the stale slots of
//! tuples reused early (a new SYN past the old end) until their time comes; when those fill the
//! spare quarter, one pass drops them all (amortised: at least `max / 4` reuses pay for a pass over
//! `max` slots). Bounding live entries by the FIFO's length instead would let tuple reuse shrink
//! the table: each reuse would hold a slot for the whole delay, and a peer that reuses its tuples
//! would make every other connection skip TIME_WAIT.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use smoltcp::time::Instant;
use smoltcp::wire::TcpControl;

use crate::flow::{plain_tcp, seq_after, write_tcp_frame, FourTuple, Segment};

/// The longest TIME_WAIT delay accepted (T1).
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// The default: 2 * MSL with MSL = 120 s (T1).
pub const DEFAULT_DELAY: Duration = Duration::from_secs(240);

/// One entry: 8 bytes beside its 12-byte key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// Expiry, in engine milliseconds (wrapping; delays are far below 2^31 ms).
    expires_ms: u32,
    /// The sequence number just past the peer's FIN.
    peer_next: u32,
}

/// What to do with a segment whose 4-tuple is in TIME_WAIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeWaitAction {
    /// Send this ACK (a retransmitted FIN).
    ReAck,
    /// A new incarnation's SYN: the entry is gone, treat the SYN as new.
    Reuse,
    /// Ignore the segment.
    Ignore,
}

/// Counters of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWaitStats {
    pub entered: u64,
    pub expired: u64,
    pub reacked: u64,
    pub reused: u64,
    pub ignored: u64,
    /// Entries alive now.
    pub live: usize,
    /// Connections that skipped TIME_WAIT because the table was full (its bound, `max`).
    pub overflow: u64,
}

/// The engine's TIME_WAIT entries.
pub struct TimeWaitTable {
    map: HashMap<FourTuple, Entry, foldhash::fast::RandomState>,
    fifo: VecDeque<(FourTuple, u32)>,
    delay_ms: u32,
    /// The bound on live entries (the map).
    max: usize,
    /// FIFO slots beyond `max`, for stale ones.
    spare: usize,
    stats: TimeWaitStats,
}

fn ms(t: Instant) -> u32 {
    t.total_millis() as u32
}

fn expired(expires_ms: u32, now_ms: u32) -> bool {
    (now_ms.wrapping_sub(expires_ms) as i32) >= 0
}

impl TimeWaitTable {
    /// A table holding at most `max` entries, each for `delay` (at most [`MAX_DELAY`]; checked by
    /// the engine config). Its memory is taken now, for `max` entries.
    pub fn new(delay: Duration, max: usize) -> Self {
        debug_assert!(delay <= MAX_DELAY);
        let reserve = if delay.is_zero() { 0 } else { max };
        let spare = reserve.div_ceil(4);
        TimeWaitTable {
            map: HashMap::with_capacity_and_hasher(reserve, Default::default()),
            fifo: VecDeque::with_capacity(reserve + spare),
            delay_ms: delay.as_millis() as u32,
            max,
            spare,
            stats: TimeWaitStats::default(),
        }
    }

    /// Remembers a connection that just entered TIME_WAIT. With a zero delay nothing is kept; with
    /// the table full, nothing either (counted as overflow).
    pub fn insert(&mut self, tuple: FourTuple, peer_next: u32, now: Instant) {
        self.stats.entered += 1;
        if self.delay_ms == 0 {
            self.stats.expired += 1;
            return;
        }
        if self.map.len() >= self.max {
            self.stats.overflow += 1;
            return;
        }
        if self.fifo.len() >= self.max + self.spare {
            // At least `spare` slots are stale (tuples reused early): drop them all.
            let map = &self.map;
            self.fifo.retain(|(tuple, expires_ms)| map.get(tuple).is_some_and(|e| e.expires_ms == *expires_ms));
        }
        let expires_ms = ms(now).wrapping_add(self.delay_ms);
        self.map.insert(tuple, Entry { expires_ms, peer_next });
        self.fifo.push_back((tuple, expires_ms));
        self.stats.live = self.map.len();
    }

    pub fn contains(&self, tuple: &FourTuple) -> bool {
        self.map.contains_key(tuple)
    }

    /// When `tuple`'s entry expires, if it is in the table (`now` tells the clock's epoch).
    pub fn expiry(&self, tuple: &FourTuple, now: Instant) -> Option<Instant> {
        self.map.get(tuple).map(|e| {
            let left = e.expires_ms.wrapping_sub(ms(now)) as i32;
            now + smoltcp::time::Duration::from_millis(left.max(0) as u64)
        })
    }

    /// Decides about a segment for a 4-tuple in TIME_WAIT (call only when [`Self::contains`]).
    pub fn on_segment(&mut self, seg: &Segment) -> TimeWaitAction {
        let Some(entry) = self.map.get(&seg.tuple).copied() else {
            return TimeWaitAction::Ignore;
        };
        let f = seg.flags;
        let action = if f.rst {
            TimeWaitAction::Ignore
        } else if f.syn && !f.ack {
            if seq_after(seg.seq, entry.peer_next) {
                self.map.remove(&seg.tuple);
                self.stats.live = self.map.len();
                TimeWaitAction::Reuse
            } else {
                TimeWaitAction::Ignore
            }
        } else if f.fin {
            TimeWaitAction::ReAck
        } else {
            TimeWaitAction::Ignore
        };
        match action {
            TimeWaitAction::ReAck => self.stats.reacked += 1,
            TimeWaitAction::Reuse => self.stats.reused += 1,
            TimeWaitAction::Ignore => self.stats.ignored += 1,
        }
        action
    }

    /// Drops the entries whose delay has passed; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let now_ms = ms(now);
        let mut n = 0;
        while let Some(&(tuple, expires_ms)) = self.fifo.front() {
            if !expired(expires_ms, now_ms) {
                break;
            }
            self.fifo.pop_front();
            // The tuple may have been reused and entered TIME_WAIT again later.
            if self.map.get(&tuple).is_some_and(|e| e.expires_ms == expires_ms) {
                self.map.remove(&tuple);
                n += 1;
            }
        }
        self.stats.expired += n as u64;
        self.stats.live = self.map.len();
        n
    }

    /// When the oldest entry expires.
    pub fn next_expiry(&self, now: Instant) -> Option<Instant> {
        self.fifo.front().map(|&(_, e)| {
            let left = e.wrapping_sub(ms(now)) as i32;
            now + smoltcp::time::Duration::from_millis(left.max(0) as u64)
        })
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> TimeWaitStats {
        self.stats
    }

    /// Heap bytes held per live entry: the map's buckets (key, value and control byte) and the
    /// FIFO's slots, at their current capacity.
    pub fn bytes_per_entry(&self) -> Option<usize> {
        if self.map.is_empty() {
            return None;
        }
        let bucket = std::mem::size_of::<(FourTuple, Entry)>() + 1;
        let fifo = std::mem::size_of::<(FourTuple, u32)>();
        Some((self.map.capacity() * bucket + self.fifo.capacity() * fifo) / self.map.len())
    }
}

/// Length of the ACK frame [`write_ack`] builds.
pub const ACK_FRAME_LEN: usize = 14 + 20 + 20;

/// Writes into `buf` the ACK of `seg` (a retransmitted FIN) from `our_mac`: seq = what the peer
/// acknowledges, ack = the end of its FIN.
pub fn write_ack(buf: &mut [u8], our_mac: [u8; 6], seg: &Segment) {
    let t = seg.tuple;
    let tcp = plain_tcp((t.local_port, t.remote_port), TcpControl::None, seg.ack, Some(seg.seq_end()), 0, &[]);
    write_tcp_frame(buf, (our_mac, t.local_ip), (seg.src_mac, t.remote_ip), &tcp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Flags;
    use smoltcp::wire::{EthernetFrame, Ipv4Packet, TcpPacket};
    use std::net::Ipv4Addr;

    fn seg(flags: Flags, seq: u32) -> Segment {
        Segment {
            tuple: FourTuple {
                remote_ip: Ipv4Addr::new(198, 18, 0, 1),
                local_ip: Ipv4Addr::new(198, 18, 0, 2),
                remote_port: 40000,
                local_port: 80,
            },
            flags,
            seq,
            ack: 7777,
            seq_len: u32::from(flags.fin) + u32::from(flags.syn),
            src_mac: [2, 0, 0, 0, 0, 1],
        }
    }

    fn tuple(remote_port: u16) -> FourTuple {
        FourTuple { remote_port, ..seg(FIN, 0).tuple }
    }

    const FIN: Flags = Flags { syn: false, ack: true, fin: true, rst: false };
    const SYN: Flags = Flags { syn: true, ack: false, fin: false, rst: false };
    const RST: Flags = Flags { syn: false, ack: false, fin: false, rst: true };

    #[test]
    fn t1_entry_lives_for_the_delay_then_expires() {
        let mut t = TimeWaitTable::new(Duration::from_secs(240), 1024);
        let s = seg(FIN, 1000);
        t.insert(s.tuple, 1001, Instant::from_secs(10));
        assert!(t.contains(&s.tuple));
        assert_eq!(t.expire(Instant::from_secs(249)), 0);
        assert!(t.contains(&s.tuple));
        assert_eq!(t.next_expiry(Instant::from_secs(249)), Some(Instant::from_secs(250)));
        assert_eq!(t.expire(Instant::from_secs(250)), 1);
        assert!(!t.contains(&s.tuple));
        assert_eq!(t.stats().expired, 1);
    }

    #[test]
    fn t1_zero_delay_keeps_nothing() {
        let mut t = TimeWaitTable::new(Duration::ZERO, 1024);
        let s = seg(FIN, 1);
        t.insert(s.tuple, 2, Instant::from_secs(1));
        assert!(t.is_empty());
        assert_eq!(t.stats().entered, 1);
    }

    #[test]
    fn t2_fin_is_reacked_rst_and_data_ignored() {
        let mut t = TimeWaitTable::new(DEFAULT_DELAY, 1024);
        let s = seg(FIN, 5000);
        t.insert(s.tuple, 5001, Instant::from_secs(0));
        assert_eq!(t.on_segment(&s), TimeWaitAction::ReAck);
        assert_eq!(t.on_segment(&seg(RST, 5001)), TimeWaitAction::Ignore);
        assert_eq!(t.on_segment(&seg(Flags { ack: true, ..Default::default() }, 5001)), TimeWaitAction::Ignore);
        assert!(t.contains(&s.tuple), "RST does not end TIME_WAIT (RFC 1337)");
    }

    #[test]
    fn t2_new_syn_reuses_only_past_the_old_sequence() {
        let mut t = TimeWaitTable::new(DEFAULT_DELAY, 1024);
        let s = seg(SYN, 100);
        t.insert(s.tuple, 5001, Instant::from_secs(0));
        assert_eq!(t.on_segment(&seg(SYN, 4000)), TimeWaitAction::Ignore);
        assert!(t.contains(&s.tuple));
        assert_eq!(t.on_segment(&seg(SYN, 9000)), TimeWaitAction::Reuse);
        assert!(!t.contains(&s.tuple));
        // a reused tuple's old FIFO slot does not expire a newer entry
        t.insert(s.tuple, 1, Instant::from_secs(100));
        assert_eq!(t.expire(Instant::from_secs(240)), 0);
        assert!(t.contains(&s.tuple));
        assert_eq!(t.expire(Instant::from_secs(340)), 1);
    }

    #[test]
    fn the_re_ack_acknowledges_the_fin_with_a_valid_checksum() {
        let s = seg(FIN, 5000);
        let mut buf = [0u8; ACK_FRAME_LEN];
        write_ack(&mut buf, [2, 0, 0, 0, 0, 2], &s);
        assert!(crate::phy::checksums_ok(&buf, true, true));
        let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(eth.dst_addr().0, s.src_mac);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.dst_addr(), s.tuple.remote_ip);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.ack() && !tcp.fin() && !tcp.syn() && !tcp.rst());
        assert_eq!(tcp.seq_number().0 as u32, 7777);
        assert_eq!(tcp.ack_number().0 as u32, 5001);
        assert_eq!((tcp.src_port(), tcp.dst_port()), (80, 40000));
    }

    #[test]
    fn an_entry_costs_at_most_64_bytes() {
        let mut t = TimeWaitTable::new(DEFAULT_DELAY, 1024);
        for i in 0..100_000u32 {
            let mut s = seg(FIN, i);
            s.tuple.remote_port = (i % 60000) as u16;
            s.tuple.remote_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i / 60000);
            t.insert(s.tuple, i, Instant::from_secs(0));
        }
        let b = t.bytes_per_entry().unwrap();
        eprintln!("TIME_WAIT entry: {b} bytes (key 12 + value 8 in the map, 16 in the FIFO)");
        assert!(b <= 64, "{b} bytes per entry");
    }

    /// Tuples reused early leave stale FIFO slots behind: they must not count against the bound
    /// (a peer reusing its tuples would otherwise make every connection skip TIME_WAIT for the
    /// whole delay), and the FIFO must not grow past its reserve either.
    #[test]
    fn t1_reused_tuples_do_not_shrink_the_table() {
        let mut t = TimeWaitTable::new(DEFAULT_DELAY, 8);
        let reserved = t.fifo.capacity();
        let mut now = Instant::from_secs(1);
        for round in 0..100u32 {
            // Eight tuples fill the table; a new incarnation of each reuses its tuple, then
            // closes into TIME_WAIT again.
            for port in 0..8 {
                let mut s = seg(SYN, 0);
                s.tuple = tuple(port);
                if t.contains(&s.tuple) {
                    s.seq = round * 10_000 + 5_000;
                    assert_eq!(t.on_segment(&s), TimeWaitAction::Reuse);
                }
                t.insert(s.tuple, round * 10_000 + 9_000, now);
                now += smoltcp::time::Duration::from_millis(1);
            }
            assert_eq!(t.len(), 8, "round {round}: {:?}", t.stats());
        }
        assert_eq!(t.stats().overflow, 0, "{:?}", t.stats());
        t.insert(tuple(100), 1, now);
        assert_eq!(t.stats().overflow, 1, "full with eight live entries");
        assert_eq!(t.fifo.capacity(), reserved, "the FIFO did not grow");
        // Every live entry still expires on time.
        assert_eq!(t.expire(now + smoltcp::time::Duration::from_secs(240)), 8);
        assert!(t.is_empty());
    }

    #[test]
    fn t1_a_full_table_lets_the_closing_connection_skip_time_wait() {
        let now = Instant::from_secs(1);
        let mut t = TimeWaitTable::new(DEFAULT_DELAY, 2);
        for port in 0..3 {
            t.insert(tuple(port), 1, now);
        }
        let st = t.stats();
        assert_eq!((st.entered, st.live, st.overflow), (3, 2, 1), "{st:?}");
        assert!(t.contains(&tuple(0)) && t.contains(&tuple(1)) && !t.contains(&tuple(2)));
        // Room again once an entry expires.
        t.expire(now + smoltcp::time::Duration::from_secs(241));
        t.insert(tuple(2), 1, now + smoltcp::time::Duration::from_secs(241));
        assert!(t.contains(&tuple(2)));
        assert_eq!(t.stats().overflow, 1);
    }
}
