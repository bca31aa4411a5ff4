//! The receiver's out-of-order store: which ranges beyond `rcv_nxt` are held, and the SACK blocks
//! that report them (RFC 2018 §4).
//!
//! The bytes themselves sit in the receive ring at their place past its end (the window bounds
//! how far); this keeps only the ranges, as offsets from `rcv_nxt`, sorted and merged. It is
//! bounded: a segment that would need a range beyond the bound is refused and counted
//! ([`Reassembly::rejected`]); the sender sends it again.

/// One held range: `[start, end)` offsets from `rcv_nxt`, and when it last grew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    start: u32,
    end: u32,
    stamp: u32,
}

/// The out-of-order ranges of one connection.
#[derive(Clone, Debug, Default)]
pub struct Reassembly {
    ranges: Vec<Range>,
    max: usize,
    stamp: u32,
    /// Segments refused for the bound.
    pub rejected: u64,
}

impl Reassembly {
    /// A store of at most `max` ranges (at least one).
    pub fn new(max: usize) -> Reassembly {
        Reassembly { ranges: Vec::new(), max: max.max(1), stamp: 0, rejected: 0 }
    }

    /// Forgets everything (a new connection in a pooled slot).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.stamp = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Ranges held now.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The end of the highest range, as an offset from `rcv_nxt` (0 when empty).
    pub fn end(&self) -> u32 {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// Notes `len` bytes held at `off` (> 0) past `rcv_nxt`. Returns `false`, counted, when that
    /// needs a range beyond the bound (the caller then drops the bytes).
    pub fn add(&mut self, off: u32, len: u32) -> bool {
        debug_assert!(off > 0 && len > 0);
        let (start, end) = (off, off + len);
        self.stamp = self.stamp.wrapping_add(1);
        // The ranges it touches or adjoins merge into one.
        let first = self.ranges.partition_point(|r| r.end < start);
        let last = self.ranges.partition_point(|r| r.start <= end);
        if first == last {
            if self.ranges.len() >= self.max {
                self.rejected += 1;
                return false;
            }
            self.ranges.insert(first, Range { start, end, stamp: self.stamp });
            return true;
        }
        let merged = Range {
            start: start.min(self.ranges[first].start),
            end: end.max(self.ranges[last - 1].end),
            stamp: self.stamp,
        };
        self.ranges.drain(first + 1..last);
        self.ranges[first] = merged;
        true
    }

    /// `rcv_nxt` moved `n` bytes on with in-order data. Returns how many more bytes of held ranges
    /// now follow it in order (they join the in-order data; `rcv_nxt` moves past them too).
    pub fn advance(&mut self, n: u32) -> u32 {
        let mut cur = n;
        let mut gone = 0;
        for r in &self.ranges {
            if r.start > cur {
                break;
            }
            cur = cur.max(r.end);
            gone += 1;
        }
        self.ranges.drain(..gone);
        for r in &mut self.ranges {
            r.start -= cur;
            r.end -= cur;
        }
        cur - n
    }

    /// Up to `out.len()` SACK blocks for `rcv_nxt`, most recently changed first (RFC 2018 §4);
    /// returns how many.
    pub fn blocks(&self, rcv_nxt: u32, out: &mut [(u32, u32)]) -> usize {
        let mut n = 0;
        // Each pass takes the most recent range older than the one taken before.
        let mut below: Option<u32> = None;
        while n < out.len() {
            let next = self.ranges.iter().filter(|r| below.is_none_or(|b| r.stamp < b)).max_by_key(|r| r.stamp);
            let Some(r) = next else { break };
            out[n] = (rcv_nxt.wrapping_add(r.start), rcv_nxt.wrapping_add(r.end));
            below = Some(r.stamp);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_join_the_in_order_data_when_the_hole_fills() {
        let mut r = Reassembly::new(4);
        assert!(r.add(10, 10));
        assert!(r.add(30, 10));
        assert!(r.add(20, 10), "fills between the two: one range");
        assert_eq!(r.ranges.len(), 1);
        assert_eq!(r.advance(5), 0, "in order up to 5: the range at 10 does not follow yet");
        assert_eq!(r.advance(5), 30, "up to 10: the range 10..40 joins");
        assert!(r.is_empty());
    }

    #[test]
    fn the_bound_refuses_a_new_range_and_counts_it() {
        let mut r = Reassembly::new(2);
        assert!(r.add(10, 1));
        assert!(r.add(20, 1));
        assert!(!r.add(30, 1));
        assert_eq!(r.rejected, 1);
        assert!(r.add(11, 5), "growing a range is always allowed");
    }

    #[test]
    fn the_first_sack_block_is_the_most_recent_segment() {
        let mut r = Reassembly::new(8);
        r.add(10, 5);
        r.add(30, 5);
        r.add(50, 5);
        r.add(31, 10); // the range at 30 changed last
        let mut out = [(0, 0); 3];
        assert_eq!(r.blocks(1000, &mut out), 3);
        assert_eq!(out, [(1030, 1041), (1050, 1055), (1010, 1015)]);
    }
}
