//! A connection's byte ring over memory the engine's buffer arena owns.
//!
//! A pool slot's buffers are handed back and forth between smoltcp (which runs the handshake
//! over them) and the engine's own TCP (which runs the connection from ESTABLISHED on). They are
//! never both alive at once: the engine drops the smoltcp socket before it makes its rings, and
//! makes a new socket only once its rings are gone. So a ring holds the buffer as a raw
//! [`Region`] and borrows it only for the length of a call.
#![allow(unsafe_code)]

/// A buffer of the arena: a start and a length. Carries no borrow; see the module documentation
/// for who may use it when.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a region is a pointer into an arena the engine owns; the engine (and with it every
// region) moves between threads as a whole and is used by one thread at a time.
unsafe impl Send for Region {}

impl Region {
    /// A region over `buf`, ending its borrow: the caller promises the bytes outlive every use of
    /// the region (the arena's memory lives as long as the engine).
    pub fn new(buf: &'static mut [u8]) -> Region {
        Region { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its first byte's address.
    pub fn start(&self) -> *const u8 {
        self.ptr
    }

    /// The bytes, for the smoltcp socket that runs a handshake over them.
    ///
    /// # Safety
    /// No other slice of this region (another `slice`, or a [`Ring`] made of it) may be used while
    /// the returned one lives.
    pub unsafe fn slice(&self) -> &'static mut [u8] {
        // SAFETY: the region came from a `&'static mut [u8]` of the arena (`Region::new`), which
        // lives as long as the engine; the caller promises exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A byte ring: `len` bytes from `head`, wrapping at the region's end.
#[derive(Debug)]
pub struct Ring {
    region: Region,
    head: usize,
    len: usize,
}

impl Ring {
    /// An empty ring over `region`.
    ///
    /// # Safety
    /// While the ring lives, nothing else may use the region.
    pub unsafe fn new(region: Region) -> Ring {
        Ring { region, head: 0, len: 0 }
    }

    /// A ring over no memory: what a pooled control block holds between connections.
    pub fn detached() -> Ring {
        Ring { region: Region::new(&mut []), head: 0, len: 0 }
    }

    /// A ring holding the `len` bytes at the start of `region` (what smoltcp received during the
    /// handshake: its ring was cleared before, so they start at 0).
    ///
    /// # Safety
    /// As [`Ring::new`].
    pub unsafe fn with_data(region: Region, len: usize) -> Ring {
        assert!(len <= region.len);
        Ring { region, head: 0, len }
    }

    /// The region, once the ring is done with it.
    pub fn into_region(self) -> Region {
        self.region
    }

    fn buf(&self) -> &[u8] {
        // SAFETY: the ring has the region to itself while it lives (`Ring::new`'s contract).
        unsafe { std::slice::from_raw_parts(self.region.ptr, self.region.len) }
    }

    fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `buf`; `&mut self` makes this the only slice of it now.
        unsafe { std::slice::from_raw_parts_mut(self.region.ptr, self.region.len) }
    }

    pub fn capacity(&self) -> usize {
        self.region.len
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for more bytes.
    pub fn free(&self) -> usize {
        self.region.len - self.len
    }

    /// Appends up to `data.len()` bytes; returns how many fitted.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if data.is_empty() {
            return 0;
        }
        let n = data.len().min(self.free());
        self.write_at(self.len, &data[..n]);
        self.len += n;
        n
    }

    /// Writes `data` at `offset` bytes past the head (inside the ring's capacity), without
    /// changing its length: out-of-order data beyond the end.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) {
        let cap = self.region.len;
        debug_assert!(offset + data.len() <= cap);
        let start = self.wrap(self.head + offset);
        let first = data.len().min(cap - start);
        let buf = self.buf_mut();
        buf[start..start + first].copy_from_slice(&data[..first]);
        if first < data.len() {
            buf[..data.len() - first].copy_from_slice(&data[first..]);
        }
    }

    /// `at` (less than twice the capacity, as every head plus offset is) taken into the ring: a
    /// subtraction, not a division.
    #[inline]
    fn wrap(&self, at: usize) -> usize {
        if at >= self.region.len && self.region.len > 0 {
            at - self.region.len
        } else {
            at
        }
    }

    /// Counts `n` bytes written beyond the end (by [`Ring::write_at`]) as held.
    pub fn extend(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.region.len);
        self.len += n;
    }

    /// The `n` bytes at `offset` past the head, in up to two pieces.
    pub fn get(&self, offset: usize, n: usize) -> [&[u8]; 2] {
        let cap = self.region.len;
        debug_assert!(offset + n <= self.len);
        if n == 0 {
            return [&[], &[]];
        }
        let start = self.wrap(self.head + offset);
        let first = n.min(cap - start);
        let buf = self.buf();
        [&buf[start..start + first], &buf[..n - first]]
    }

    /// Drops `n` bytes from the head. The head moves on even when the ring empties: bytes
    /// written beyond the end ([`Ring::write_at`]) keep their place.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        self.head = self.wrap(self.head + n);
    }

    /// Copies up to `out.len()` bytes from the head into `out` and drops them; returns how many.
    pub fn pop_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        let [a, b] = self.get(0, n);
        out[..a.len()].copy_from_slice(a);
        out[a.len()..n].copy_from_slice(b);
        self.consume(n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(n: usize) -> Region {
        Region::new(Box::leak(vec![0u8; n].into_boxed_slice()))
    }

    #[test]
    fn bytes_wrap_around_the_end_and_come_back_in_order() {
        // SAFETY: a leaked buffer nobody else uses.
        let mut r = unsafe { Ring::new(region(8)) };
        assert_eq!(r.push(b"abcdef"), 6);
        let mut out = [0u8; 4];
        assert_eq!(r.pop_into(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(r.push(b"ghijklmn"), 6, "two held, six free");
        let [a, b] = r.get(0, 8);
        assert_eq!((a, b), (&b"efgh"[..], &b"ijkl"[..]));
        let mut all = [0u8; 8];
        assert_eq!(r.pop_into(&mut all), 8);
        assert_eq!(&all, b"efghijkl");
    }

    #[test]
    fn out_of_order_bytes_written_beyond_the_end_join_when_extended() {
        // SAFETY: as above.
        let mut r = unsafe { Ring::new(region(8)) };
        r.push(b"ab");
        r.write_at(4, b"ef");
        r.write_at(2, b"cd");
        r.extend(4);
        let mut out = [0u8; 6];
        r.pop_into(&mut out);
        assert_eq!(&out, b"abcdef");
    }
}
