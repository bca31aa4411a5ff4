//! Per-engine memory for connections: socket buffers and socket storage come from arenas instead
//! of one heap allocation each.
//!
//! Buffer chunks are hugepages when the system has them reserved (through hugepage-rs), else normal
//! pages. The engine logs once which one it got. Chunks grow by doubling, from [`FIRST_CHUNK`] up to
//! [`MAX_CHUNK`], and live as long as the process: a connection's buffers are carved once, when its
//! pool slot is created, and reused by every later connection of that slot. The pool never shrinks,
//! so the arena stops growing at the peak number of connections. Because chunks are never freed,
//! the `'static` borrows smoltcp's sockets hold into them are true ones.
//!
//! This is the crate's second and last module with `unsafe` code: turning a hugepage mapping into
//! a slice.
#![allow(unsafe_code)]

use std::alloc::Layout;

use smoltcp::iface::SocketStorage;

/// The first chunk an arena takes.
pub const FIRST_CHUNK: usize = 256 << 10;
/// The largest chunk an arena takes at once.
pub const MAX_CHUNK: usize = 16 << 20;
const HUGEPAGE: usize = 2 << 20;

/// Counters of an arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Bytes mapped, in all chunks.
    pub reserved: usize,
    /// Bytes handed out.
    pub used: usize,
    /// Bytes of the reserved ones on hugepages.
    pub on_hugepages: usize,
    pub chunks: usize,
}

/// Byte buffers for socket buffers.
pub struct BufferArena {
    cur: &'static mut [u8],
    next_chunk: usize,
    stats: ArenaStats,
    /// Whether the fallback to normal pages was logged already.
    told: bool,
    label: String,
}

/// A zero-filled `len`-byte region on hugepages, never unmapped; `None` if none are free.
fn hugepage_chunk(len: usize) -> Option<&'static mut [u8]> {
    let layout = Layout::from_size_align(len, 4096).ok()?;
    // SAFETY: layout has a non-zero size. hugepage_rs::alloc maps fresh anonymous memory or
    // returns null.
    let p = unsafe { hugepage_rs::alloc(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: p points at `len` bytes of a private anonymous mapping: zero-filled (so initialised),
    // exclusively ours, and never unmapped (chunks live for the process), so a 'static unique
    // borrow of it is sound.
    Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

impl BufferArena {
    /// An empty arena; `label` names it in the log line about hugepages.
    pub fn new(label: impl Into<String>) -> Self {
        BufferArena {
            cur: &mut [],
            next_chunk: FIRST_CHUNK,
            stats: ArenaStats::default(),
            told: false,
            label: label.into(),
        }
    }

    /// `len` zero-initialised bytes, carved from the current chunk (or a new one).
    pub fn take(&mut self, len: usize) -> &'static mut [u8] {
        if self.cur.len() < len {
            self.grow(len);
        }
        let (taken, rest) = std::mem::take(&mut self.cur).split_at_mut(len);
        self.cur = rest;
        self.stats.used += len;
        taken
    }

    fn grow(&mut self, need: usize) {
        let size = self.next_chunk.max(need).next_multiple_of(HUGEPAGE.min(self.next_chunk));
        self.next_chunk = (self.next_chunk * 2).min(MAX_CHUNK);
        let chunk = match hugepage_chunk(size.next_multiple_of(HUGEPAGE)) {
            Some(c) => {
                self.stats.on_hugepages += c.len();
                c
            }
            None => {
                if !self.told {
                    tracing::info!(arena = %self.label, "no hugepages free: connection buffers are on normal pages");
                    self.told = true;
                }
                vec![0u8; size].leak()
            }
        };
        self.stats.reserved += chunk.len();
        self.stats.chunks += 1;
        self.cur = chunk;
    }

    pub fn stats(&self) -> ArenaStats {
        self.stats
    }
}

/// Storage for one-socket sets: slots of `SocketStorage`, carved from leaked chunks.
#[derive(Default)]
pub struct StorageArena {
    cur: &'static mut [SocketStorage<'static>],
    reserved: usize,
}

impl StorageArena {
    /// Room for one socket.
    pub fn take_one(&mut self) -> &'static mut [SocketStorage<'static>] {
        if self.cur.is_empty() {
            let n = self.reserved.clamp(64, 1 << 16);
            self.cur = (0..n).map(|_| SocketStorage::EMPTY).collect::<Vec<_>>().leak();
            self.reserved += n;
        }
        let (one, rest) = std::mem::take(&mut self.cur).split_at_mut(1);
        self.cur = rest;
        one
    }

    /// Socket storage slots mapped so far.
    pub fn reserved(&self) -> usize {
        self.reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_disjoint_zeroed_buffers_and_grows_by_doubling() {
        let mut a = BufferArena::new("test");
        let mut all = Vec::new();
        for i in 0..1000u32 {
            let b = a.take(3072);
            assert!(b.iter().all(|&x| x == 0));
            b.fill((i % 251) as u8);
            all.push(b);
        }
        for (i, b) in all.iter().enumerate() {
            assert!(b.iter().all(|&x| x == (i as u32 % 251) as u8), "buffer {i} overwritten");
        }
        let s = a.stats();
        assert_eq!(s.used, 1000 * 3072);
        assert!(s.reserved >= s.used && s.reserved < 2 * s.used + MAX_CHUNK, "{s:?}");
        assert!(s.chunks < 10, "{s:?}");
    }

    #[test]
    fn storage_slots_are_single() {
        let mut s = StorageArena::default();
        for _ in 0..200 {
            assert_eq!(s.take_one().len(), 1);
        }
        assert!(s.reserved() >= 200);
    }
}
