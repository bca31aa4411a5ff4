//! The sender's SACK scoreboard: which bytes above `snd_una` the peer says it holds (RFC 2018),
//! what RFC 6675 then counts as lost, and duplicate reports (D-SACK, RFC 2883).
//!
//! Blocks are kept as offsets from `snd_una`, merged and sorted, so the sequence space's wrap is
//! handled once, where a block comes in. The scoreboard is bounded ([`MAX_BLOCKS`] ranges); a
//! block that would exceed it is dropped and counted: the bytes it reports are then retransmitted
//! needlessly at worst, never lost.

/// Ranges kept at most.
pub const MAX_BLOCKS: usize = 32;

/// What one ACK's SACK blocks said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackUpdate {
    /// Bytes newly known to be held by the peer.
    pub newly_sacked: u32,
    /// The first block reported data already received (RFC 2883 §4): a spurious retransmission,
    /// or a duplicate on the way.
    pub dsack: bool,
    /// Blocks ignored: outside `snd_una..snd_nxt`, or beyond the scoreboard's bound.
    pub ignored: u32,
}

/// The scoreboard of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scoreboard {
    /// Sorted, disjoint, non-adjacent `[start, end)` offsets from `una`.
    ranges: Vec<(u32, u32)>,
    una: u32,
    /// Blocks dropped for the bound, since the start.
    pub overflowed: u64,
}

/// `a - b` in sequence space, as an offset.
fn off(a: u32, b: u32) -> u32 {
    a.wrapping_sub(b)
}

impl Scoreboard {
    /// A scoreboard for a connection whose first unacknowledged byte is `snd_una`.
    pub fn new(snd_una: u32) -> Scoreboard {
        Scoreboard { ranges: Vec::new(), una: snd_una, overflowed: 0 }
    }

    /// Takes an ACK: the cumulative acknowledgment `snd_una` (already checked to lie in
    /// `old snd_una..=snd_nxt`) and its SACK blocks, `[left, right)` each.
    pub fn on_ack(&mut self, snd_una: u32, snd_nxt: u32, blocks: &[(u32, u32)]) -> SackUpdate {
        self.advance(snd_una);
        let mut u = SackUpdate::default();
        let window = off(snd_nxt, self.una);
        for (i, &(left, right)) in blocks.iter().enumerate() {
            let (l, r) = (off(left, self.una), off(right, self.una));
            // RFC 2883 §4: a first block at or below the cumulative ACK, or inside the second
            // block, reports a duplicate.
            let below = (right.wrapping_sub(self.una) as i32) <= 0;
            if i == 0 && (below || (blocks.len() > 1 && contains(blocks[1], (left, right)))) {
                u.dsack = true;
                continue;
            }
            // RFC 2018 §8 / RFC 6675 §5: only blocks inside the window sent and not acknowledged.
            if l >= r || r > window {
                u.ignored += 1;
                continue;
            }
            match self.insert(l, r) {
                Some(n) => u.newly_sacked += n,
                None => {
                    u.ignored += 1;
                    self.overflowed += 1;
                }
            }
        }
        u
    }

    /// Drops what the cumulative acknowledgment `snd_una` now covers (an ACK without SACK blocks).
    pub fn advance(&mut self, snd_una: u32) {
        let d = off(snd_una, self.una);
        self.una = snd_una;
        if d == 0 || self.ranges.is_empty() {
            return;
        }
        self.ranges.retain_mut(|(s, e)| {
            if *e <= d {
                return false;
            }
            *s = s.saturating_sub(d);
            *e -= d;
            true
        });
    }

    /// Adds `[l, r)`; returns the bytes it added, or `None` if the bound was reached.
    fn insert(&mut self, l: u32, r: u32) -> Option<u32> {
        let first = self.ranges.partition_point(|&(_, e)| e < l);
        let last = self.ranges.partition_point(|&(s, _)| s <= r);
        if first == last {
            if self.ranges.len() >= MAX_BLOCKS {
                return None;
            }
            self.ranges.insert(first, (l, r));
            return Some(r - l);
        }
        // Merge with the ranges it touches.
        let covered: u32 = self.ranges[first..last].iter().map(|&(s, e)| e.min(r).saturating_sub(s.max(l))).sum();
        let s = self.ranges[first].0.min(l);
        let e = self.ranges[last - 1].1.max(r);
        self.ranges.drain(first..last);
        self.ranges.insert(first, (s, e));
        Some((r - l) - covered)
    }

    /// Whether the peer holds the byte at `seq`.
    pub fn is_sacked(&self, seq: u32) -> bool {
        let o = off(seq, self.una);
        self.ranges.iter().any(|&(s, e)| s <= o && o < e)
    }

    /// Bytes the peer holds above `snd_una`.
    pub fn sacked_bytes(&self) -> u32 {
        self.ranges.iter().map(|&(s, e)| e - s).sum()
    }

    /// The end of the highest block, if any (RFC 6675's HighACK side: everything below it and
    /// not SACKed is a hole).
    pub fn highest_sacked(&self) -> Option<u32> {
        self.ranges.last().map(|&(_, e)| self.una.wrapping_add(e))
    }

    /// RFC 6675 §4 IsLost(seq): `dupthresh` discontiguous SACKed ranges above it, or more than
    /// `(dupthresh - 1) * smss` bytes SACKed above it.
    pub fn is_lost(&self, seq: u32, smss: u32, dupthresh: u32) -> bool {
        let o = off(seq, self.una);
        let above: Vec<&(u32, u32)> = self.ranges.iter().filter(|&&(s, _)| s > o).collect();
        let bytes: u32 = above.iter().map(|&&(s, e)| e - s).sum();
        above.len() as u32 >= dupthresh || bytes > (dupthresh - 1) * smss
    }

    /// The first hole at or after `from` below the highest SACKed byte: `[start, end)` in sequence
    /// numbers, what RFC 6675's NextSeg retransmits first.
    pub fn next_hole(&self, from: u32) -> Option<(u32, u32)> {
        let mut at = off(from, self.una);
        for &(s, e) in &self.ranges {
            if at < s {
                return Some((self.una.wrapping_add(at), self.una.wrapping_add(s)));
            }
            at = at.max(e);
        }
        None
    }

    /// Forgets every block (RFC 6675 §5.1 after a retransmission timeout, and RFC 2018 §8: a
    /// receiver may renege).
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Whether block `outer` contains block `inner` (sequence space, same wrap).
fn contains(outer: (u32, u32), inner: (u32, u32)) -> bool {
    let len = off(outer.1, outer.0);
    let (l, r) = (off(inner.0, outer.0), off(inner.1, outer.0));
    len > 0 && len <= i32::MAX as u32 && l < r && r <= len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2018_blocks_merge_and_the_cumulative_ack_trims_them() {
        let mut sb = Scoreboard::new(1000);
        let u = sb.on_ack(1000, 9000, &[(3000, 4000), (5000, 6000)]);
        assert_eq!((u.newly_sacked, u.dsack, u.ignored), (2000, false, 0));
        let u = sb.on_ack(1000, 9000, &[(4000, 5000)]);
        assert_eq!(u.newly_sacked, 1000, "fills the gap between the two");
        assert_eq!((sb.len(), sb.sacked_bytes()), (1, 3000));
        assert!(sb.is_sacked(3000) && sb.is_sacked(5999) && !sb.is_sacked(6000) && !sb.is_sacked(2999));
        sb.on_ack(4500, 9000, &[]);
        assert_eq!(sb.sacked_bytes(), 1500, "what the ACK covers is no longer SACKed");
        sb.on_ack(6000, 9000, &[]);
        assert!(sb.is_empty());
    }

    #[test]
    fn rfc2018_8_blocks_outside_the_window_are_ignored() {
        let mut sb = Scoreboard::new(1000);
        let u = sb.on_ack(1000, 5000, &[(5000, 6000), (2000, 1500), (4000, 5000)]);
        assert_eq!((u.newly_sacked, u.ignored), (1000, 2), "{u:?}");
    }

    #[test]
    fn rfc2883_a_first_block_below_the_ack_or_inside_the_second_is_a_dsack() {
        let mut sb = Scoreboard::new(1000);
        let u = sb.on_ack(3000, 9000, &[(1000, 2000)]);
        assert!(u.dsack && u.newly_sacked == 0, "{u:?}");
        let u = sb.on_ack(3000, 9000, &[(4000, 4500), (4000, 6000)]);
        assert!(u.dsack && u.newly_sacked == 2000, "{u:?}");
        assert_eq!(sb.sacked_bytes(), 2000);
    }

    #[test]
    fn rfc6675_is_lost_and_next_hole() {
        let mut sb = Scoreboard::new(0);
        let mss = 1000;
        // Segments 0..10 sent; 1, 3, 5 and 6 SACKed: 0, 2 and 4 are holes.
        sb.on_ack(0, 10_000, &[(1000, 2000), (3000, 4000), (5000, 7000)]);
        assert!(sb.is_lost(0, mss, 3), "three ranges above");
        assert!(sb.is_lost(2000, mss, 3), "3000 bytes above, more than 2 * SMSS");
        assert!(!sb.is_lost(4000, mss, 3), "2000 bytes and one range above");
        assert_eq!(sb.next_hole(0), Some((0, 1000)));
        assert_eq!(sb.next_hole(1000), Some((2000, 3000)));
        assert_eq!(sb.next_hole(4000), Some((4000, 5000)));
        assert_eq!(sb.next_hole(7000), None, "nothing SACKed above");
        assert_eq!(sb.highest_sacked(), Some(7000));
    }

    #[test]
    fn blocks_across_the_sequence_wrap() {
        let una = u32::MAX - 1500;
        let mut sb = Scoreboard::new(una);
        let u = sb.on_ack(una, una.wrapping_add(5000), &[(una.wrapping_add(1000), una.wrapping_add(3000))]);
        assert_eq!(u.newly_sacked, 2000);
        assert!(sb.is_sacked(2) && sb.is_sacked(u32::MAX) && !sb.is_sacked(una));
        sb.on_ack(una.wrapping_add(2000), una.wrapping_add(5000), &[]);
        assert_eq!(sb.sacked_bytes(), 1000);
    }

    #[test]
    fn the_scoreboard_is_bounded_and_counts_what_it_drops() {
        let mut sb = Scoreboard::new(0);
        for i in 0..MAX_BLOCKS as u32 + 5 {
            sb.on_ack(0, 1 << 30, &[(i * 2000 + 1000, i * 2000 + 1500)]);
        }
        assert_eq!((sb.len(), sb.overflowed), (MAX_BLOCKS, 5));
    }
}
