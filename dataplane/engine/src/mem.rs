//! Per-engine memory for connections: socket buffers and socket storage come from arenas instead
//! of one heap allocation each.
//!
//! Buffer chunks are hugepages when the system has them reserved (through hugepage-rs), else normal
//! pages. The engine logs once which one it got. Chunks grow by doubling, from [`FIRST_CHUNK`] up to
//! [`MAX_CHUNK`], and live as long as their arena: a connection's buffers are carved once, when its
//! pool slot is created, and reused by every later connection of that slot. The pool never shrinks,
//! so the arena stops growing at the peak number of connections. An arena gives its chunks back
//! when it is dropped, so what it hands out is `'static` only on a promise of the caller
//! ([`BufferArena::take`], [`StorageArena::take_one`]): the engine drops its connections' sockets
//! before its arenas.
//!
//! Chunks on normal pages are anonymous mappings of their own, page-aligned, so that the engine
//! can give an idle connection's buffer pages back to the kernel ([`BufferArena::release`]); a hugepage
//! cannot be given back in part, so buffers on hugepages stay resident.
//!
//! This is the crate's module with `unsafe` code: turning a mapping into a slice, giving pages of
//! it back, and unmapping it with the arena; `pool` calls the two takes.
#![allow(unsafe_code)]

use std::alloc::Layout;

use smoltcp::iface::SocketStorage;

/// The first chunk an arena takes.
pub const FIRST_CHUNK: usize = 256 << 10;
/// The largest chunk an arena takes at once.
pub const MAX_CHUNK: usize = 16 << 20;
const HUGEPAGE: usize = 2 << 20;
/// The size of a normal page, the unit [`BufferArena::release`] gives back.
pub const PAGE: usize = 4096;

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
    /// Whether `cur` is on hugepages.
    cur_on_hugepages: bool,
    /// The chunks on normal pages, as (start, length): the only memory `release` touches.
    normal: Vec<(usize, usize)>,
    /// The chunks on hugepages, as (start, length).
    huge: Vec<(usize, usize)>,
    stats: ArenaStats,
    /// Whether the fallback to normal pages was logged already.
    told: bool,
    label: String,
}

/// A zero-filled `len`-byte region on normal pages, page-aligned, unmapped only by the arena that
/// took it, when it is dropped.
fn normal_chunk(len: usize) -> &'static mut [u8] {
    // SAFETY: an anonymous private mapping of `len` (> 0) bytes at an address the kernel picks:
    // no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::alloc::handle_alloc_error(Layout::from_size_align(len, PAGE).expect("a valid layout"));
    }
    // Residency is counted and given back by 4 KiB page; a transparent hugepage would make one
    // touched connection hold 2 MiB. Advice only: failure changes nothing that matters.
    // SAFETY: the range is the mapping just made.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    // SAFETY: p points at `len` bytes of a fresh private anonymous mapping: zero-filled (so
    // initialised) and exclusively ours. It is unmapped only when the arena is dropped, after the
    // last use of what was carved from it (the contract of `BufferArena::take`).
    unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) }
}

/// A zero-filled `len`-byte region on hugepages, unmapped only by the arena that took it;
/// `None` if none are free.
fn hugepage_chunk(len: usize) -> Option<&'static mut [u8]> {
    let layout = Layout::from_size_align(len, PAGE).ok()?;
    // SAFETY: layout has a non-zero size. hugepage_rs::alloc maps fresh anonymous memory or
    // returns null.
    let p = unsafe { hugepage_rs::alloc(layout) };
    if p.is_null() {
        return None;
    }
    // SAFETY: p points at `len` bytes of a private anonymous mapping: zero-filled (so initialised)
    // and exclusively ours. It is unmapped only when the arena is dropped, after the last use of
    // what was carved from it (the contract of `BufferArena::take`).
    Some(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

impl BufferArena {
    /// An empty arena; `label` names it in the log line about hugepages.
    pub fn new(label: impl Into<String>) -> Self {
        BufferArena {
            cur: &mut [],
            next_chunk: FIRST_CHUNK,
            cur_on_hugepages: false,
            normal: Vec::new(),
            huge: Vec::new(),
            stats: ArenaStats::default(),
            told: false,
            label: label.into(),
        }
    }

    /// `len` zero-initialised bytes, carved from the current chunk (or a new one), and whether they
    /// are on hugepages. On normal pages, takes of a multiple of [`PAGE`] are page-aligned.
    ///
    /// # Safety
    /// The bytes must not be used once the arena is dropped: it unmaps its chunks then. The
    /// `'static` lifetime only lets them outlive the borrow of the arena.
    pub unsafe fn take(&mut self, len: usize) -> (&'static mut [u8], bool) {
        if self.cur.len() < len {
            self.grow(len);
        }
        let (taken, rest) = std::mem::take(&mut self.cur).split_at_mut(len);
        self.cur = rest;
        self.stats.used += len;
        (taken, self.cur_on_hugepages)
    }

    fn grow(&mut self, need: usize) {
        let size = self.next_chunk.max(need).next_multiple_of(HUGEPAGE.min(self.next_chunk));
        self.next_chunk = (self.next_chunk * 2).min(MAX_CHUNK);
        let (chunk, huge) = match hugepage_chunk(size.next_multiple_of(HUGEPAGE)) {
            Some(c) => {
                self.stats.on_hugepages += c.len();
                self.huge.push((c.as_ptr() as usize, c.len()));
                (c, true)
            }
            None => {
                if !self.told {
                    tracing::info!(arena = %self.label, "no hugepages free: connection buffers are on normal pages");
                    self.told = true;
                }
                let chunk = normal_chunk(size);
                self.normal.push((chunk.as_ptr() as usize, chunk.len()));
                (chunk, false)
            }
        };
        self.cur_on_hugepages = huge;
        self.stats.reserved += chunk.len();
        self.stats.chunks += 1;
        self.cur = chunk;
    }

    pub fn stats(&self) -> ArenaStats {
        self.stats
    }

    /// Gives the pages of `[addr, addr + len)` back to the kernel: they read as zeros afterwards,
    /// and count as resident again only once written. `addr` and `len` must be multiples of
    /// [`PAGE`], and the range must lie in one of this arena's chunks on normal pages (both are
    /// checked). Its bytes must be ones no one reads before writing them: the empty rings of a
    /// connection whose data is all delivered and acknowledged, or of a pool slot with no
    /// connection.
    pub fn release(&self, addr: usize, len: usize) -> std::io::Result<()> {
        assert!(addr.is_multiple_of(PAGE) && len.is_multiple_of(PAGE), "release({addr:#x}, {len}): not page-aligned");
        assert!(
            self.normal.iter().any(|&(start, n)| addr >= start && addr + len <= start + n),
            "release({addr:#x}, {len}): not in this arena's chunks on normal pages"
        );
        // SAFETY: the range lies in a private anonymous mapping this arena made (checked above),
        // so MADV_DONTNEED only replaces its pages by zero-filled ones. smoltcp's rings keep
        // unique borrows of these bytes, but only read bytes they wrote since (the range is the
        // free part of an empty ring), and no call into them is in progress on this thread:
        // nothing reads a value the kernel changed.
        if unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Drop for BufferArena {
    /// Unmaps every chunk.
    fn drop(&mut self) {
        self.cur = &mut [];
        for &(start, len) in &self.normal {
            // SAFETY: a mapping of `len` bytes this arena made (`normal_chunk`) and unmaps once;
            // nothing carved from it is used any more (the contract of `take`).
            unsafe { libc::munmap(start as *mut libc::c_void, len) };
        }
        for &(start, len) in &self.huge {
            let layout = Layout::from_size_align(len, PAGE).expect("the layout it was taken with");
            // SAFETY: memory hugepage_rs::alloc gave this arena with this layout (`hugepage_chunk`),
            // given back once; nothing carved from it is used any more (the contract of `take`).
            unsafe { hugepage_rs::dealloc(start as *mut u8, layout) };
        }
    }
}

/// Storage for one-socket sets: slots of `SocketStorage`, carved from chunks on the heap that the
/// arena frees (with the sockets in them) when it is dropped.
#[derive(Default)]
pub struct StorageArena {
    cur: &'static mut [SocketStorage<'static>],
    /// Every chunk, as (start, length).
    chunks: Vec<(usize, usize)>,
    reserved: usize,
}

impl StorageArena {
    /// Room for one socket.
    ///
    /// # Safety
    /// The slot must not be used once the arena is dropped: it frees its chunks then, dropping the
    /// sockets in them. The `'static` lifetime only lets it outlive the borrow of the arena.
    pub unsafe fn take_one(&mut self) -> &'static mut [SocketStorage<'static>] {
        if self.cur.is_empty() {
            let n = self.reserved.clamp(64, 1 << 16);
            let chunk: Box<[SocketStorage<'static>]> = (0..n).map(|_| SocketStorage::EMPTY).collect();
            self.cur = Box::leak(chunk);
            self.chunks.push((self.cur.as_ptr() as usize, n));
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

impl Drop for StorageArena {
    /// Frees every chunk, and the sockets in it.
    fn drop(&mut self) {
        self.cur = &mut [];
        for &(start, n) in &self.chunks {
            let chunk = std::ptr::slice_from_raw_parts_mut(start as *mut SocketStorage<'static>, n);
            // SAFETY: a boxed slice of `n` slots this arena leaked in `take_one` and frees once;
            // nothing carved from it is used any more (the contract of `take_one`).
            drop(unsafe { Box::from_raw(chunk) });
        }
    }
}

/// Pages of `[addr, addr + len)` resident now, by mincore(2); `addr` is page-aligned.
#[cfg(test)]
pub(crate) fn resident_pages(addr: usize, len: usize) -> usize {
    let mut v = vec![0u8; len.div_ceil(PAGE)];
    // SAFETY: mincore only reads the page tables of the range, and writes one byte per page of it
    // into v, which has that many.
    let r = unsafe { libc::mincore(addr as *mut libc::c_void, len, v.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore({addr:#x}, {len}): {}", std::io::Error::last_os_error());
    v.iter().filter(|&&x| x & 1 != 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(b: &[u8]) -> usize {
        resident_pages(b.as_ptr() as usize, b.len())
    }

    #[test]
    fn hands_out_disjoint_zeroed_buffers_and_grows_by_doubling() {
        let mut a = BufferArena::new("test");
        let mut all = Vec::new();
        for i in 0..1000u32 {
            // SAFETY: `all` is dropped before `a`.
            let (b, _) = unsafe { a.take(3072) };
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
    fn normal_page_takes_are_aligned_and_released_pages_read_zero_and_stop_counting() {
        let mut a = BufferArena::new("test");
        // SAFETY: `bufs` and `b` are dropped before `a`.
        let bufs: Vec<&'static mut [u8]> = (0..100).map(|_| unsafe { a.take(4 * PAGE) }).map(|(b, _)| b).collect();
        if a.stats().on_hugepages > 0 {
            // This machine has hugepages free: the arena took them, and they cannot be released.
            return;
        }
        for b in &bufs {
            assert!((b.as_ptr() as usize).is_multiple_of(PAGE));
        }
        let b = &mut *bufs.into_iter().nth(7).unwrap();
        b.fill(0xa5);
        assert_eq!(resident(b), 4);
        a.release(b.as_ptr() as usize + PAGE, 2 * PAGE).unwrap();
        assert_eq!(resident(b), 2, "the two middle pages are gone");
        b[PAGE] = 1;
        assert_eq!(resident(b), 3, "a write brings a page back");
        // (Reading the last released page maps the shared zero page, which mincore counts.)
        assert!(b[PAGE + 1..3 * PAGE].iter().all(|&x| x == 0), "released pages read as zeros");
        assert!(b[..PAGE].iter().chain(&b[3 * PAGE..]).all(|&x| x == 0xa5), "the others are untouched");
    }

    #[test]
    #[should_panic(expected = "not page-aligned")]
    fn releasing_a_partial_page_is_refused() {
        let _ = BufferArena::new("test").release(PAGE + 8, PAGE);
    }

    #[test]
    fn storage_slots_are_single() {
        let mut s = StorageArena::default();
        for _ in 0..200 {
            // SAFETY: the slot is not kept.
            assert_eq!(unsafe { s.take_one() }.len(), 1);
        }
        assert!(s.reserved() >= 200);
    }
}
