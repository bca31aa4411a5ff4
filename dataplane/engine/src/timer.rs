//! A hashed timer wheel for connection deadlines (retransmission, delayed ACK, keep-alive, ...).
//!
//! Deadlines are rounded up to 1 ms ticks and hashed into `SLOTS` slots. Advancing visits only the
//! slots of the ticks that passed; a deadline more than one turn of the wheel away stays in its
//! slot until its tick comes. Insert and expiry are O(1) amortised, whatever the number of
//! connections.
//!
//! Entries are never removed early. The engine keeps at most one live entry per connection slot:
//! a deadline that moves later does not add an entry (the old one, when it fires, is re-armed at the
//! new deadline), and a released slot's entry is simply ignored when it fires. So the wheel holds
//! about one entry per slot of the pool, whatever the connection rate.

use smoltcp::time::Instant;

const SLOTS: usize = 1024;
const TICK_US: i64 = 1000;
/// Ticks [`TimerWheel::next_deadline`] looks ahead.
pub const LOOK_AHEAD: i64 = 16;

#[derive(Clone, Copy, Debug)]
struct Entry {
    id: u32,
    tick: i64,
}

pub struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// The next tick not yet expired.
    cursor: i64,
    len: usize,
}

/// The tick a deadline falls in, rounded up: never fire early.
pub fn tick_of(t: Instant) -> i64 {
    (t.total_micros() + TICK_US - 1).div_euclid(TICK_US)
}

impl TimerWheel {
    pub fn new(now: Instant) -> Self {
        TimerWheel { slots: (0..SLOTS).map(|_| Vec::new()).collect(), cursor: tick_of(now), len: 0 }
    }

    /// Schedules `id` at `at` (a past deadline fires on the next advance); returns the tick it
    /// was filed under.
    pub fn insert(&mut self, id: u32, at: Instant) -> i64 {
        let tick = tick_of(at).max(self.cursor);
        self.slots[(tick as usize) % SLOTS].push(Entry { id, tick });
        self.len += 1;
        tick
    }

    /// Moves time to `now`, calling `fire(id, tick)` for each entry whose tick has come.
    pub fn advance(&mut self, now: Instant, mut fire: impl FnMut(u32, i64)) {
        let end = now.total_micros().div_euclid(TICK_US);
        if self.len == 0 {
            self.cursor = self.cursor.max(end + 1);
            return;
        }
        // Never visit more than one turn: beyond that every slot has been seen.
        let last = end.min(self.cursor + SLOTS as i64 - 1);
        let mut tick = self.cursor;
        while tick <= last {
            let slot = &mut self.slots[(tick as usize) % SLOTS];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].tick <= end {
                    let e = slot.swap_remove(i);
                    self.len -= 1;
                    fire(e.id, e.tick);
                } else {
                    i += 1;
                }
            }
            tick += 1;
        }
        self.cursor = self.cursor.max(end + 1);
    }

    /// A time by which the next entry may fire: exact when it is within [`LOOK_AHEAD`] ticks,
    /// else `now + LOOK_AHEAD` (the caller only needs a bound on how long it may sleep, and polls
    /// again by then). Costs at most `LOOK_AHEAD` slot visits.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let start = self.cursor.max(now.total_micros().div_euclid(TICK_US));
        for tick in start..start + LOOK_AHEAD {
            if self.slots[(tick as usize) % SLOTS].iter().any(|e| e.tick <= tick) {
                return Some(Instant::from_micros(tick * TICK_US));
            }
        }
        Some(Instant::from_micros((start + LOOK_AHEAD) * TICK_US))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(w: &mut TimerWheel, now_ms: i64) -> Vec<u32> {
        let mut v = Vec::new();
        w.advance(Instant::from_millis(now_ms), |id, _| v.push(id));
        v.sort();
        v
    }

    #[test]
    fn fires_at_the_deadline_never_before() {
        let mut w = TimerWheel::new(Instant::from_millis(0));
        w.insert(1, Instant::from_micros(5_500));
        w.insert(2, Instant::from_millis(3));
        assert!(fired(&mut w, 2).is_empty());
        assert_eq!(fired(&mut w, 3), vec![2]);
        assert!(fired(&mut w, 5).is_empty(), "5.5 ms rounds up to tick 6");
        assert_eq!(fired(&mut w, 6), vec![1]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_wait_for_their_turn() {
        let mut w = TimerWheel::new(Instant::from_millis(0));
        w.insert(7, Instant::from_millis(2500)); // beyond one 1024-tick turn
        for t in (0..2500).step_by(100) {
            assert!(fired(&mut w, t).is_empty(), "fired early at {t}");
        }
        assert_eq!(fired(&mut w, 2500), vec![7]);
    }

    #[test]
    fn a_long_jump_fires_everything_due() {
        let mut w = TimerWheel::new(Instant::from_millis(0));
        for i in 0..100 {
            w.insert(i, Instant::from_millis(i as i64 * 37));
        }
        assert_eq!(fired(&mut w, 100_000).len(), 100);
    }

    #[test]
    fn next_deadline_bounds_the_next_firing() {
        let mut w = TimerWheel::new(Instant::from_millis(0));
        assert_eq!(w.next_deadline(Instant::from_millis(0)), None);
        w.insert(1, Instant::from_millis(10));
        assert_eq!(w.next_deadline(Instant::from_millis(0)), Some(Instant::from_millis(10)));
        w.advance(Instant::from_millis(10), |_, _| {});
        w.insert(2, Instant::from_millis(500));
        assert_eq!(w.next_deadline(Instant::from_millis(10)), Some(Instant::from_millis(11 + LOOK_AHEAD)), "a bound");
    }
}
