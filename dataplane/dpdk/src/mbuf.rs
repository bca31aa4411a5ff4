//! Owned mbufs and fixed-size bursts of them.

use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

/// One owned packet buffer; freed back to its pool when dropped.
///
/// Only single-segment use is offered: [`Mbuf::data`] is the first segment.
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; DPDK allows freeing an mbuf from any thread.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// # Safety
    /// `m` must be a valid mbuf that the caller owns and hands over.
    #[inline]
    pub(crate) unsafe fn from_raw(m: NonNull<rte_mbuf>) -> Mbuf {
        Mbuf(m)
    }

    #[inline]
    pub(crate) fn into_raw(self) -> *mut rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// The raw pointer, still owned by this `Mbuf`.
    #[inline]
    pub(crate) fn as_raw(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    /// The first segment's data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the mbuf is valid and ours while self is borrowed.
        unsafe { first_seg(self.0.as_ptr()) }
    }

    /// Total packet length over all segments.
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::rte_pktmbuf_pkt_len(self.0.as_ptr()) }
    }

    /// Whether the whole packet is in the first segment.
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::rte_pktmbuf_is_contiguous(self.0.as_ptr()) != 0 }
    }

    /// Appends `tail`'s segments after this packet's (`rte_pktmbuf_chain`), making one packet of
    /// several segments. Gives `tail` back if the packet would have more segments than an mbuf
    /// can count.
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), Mbuf> {
        // SAFETY: both mbufs are valid and owned; on success the head owns the tail's segments
        // (freeing the head frees them), so the tail's owner is given up below.
        if unsafe { dpdk_sys::rte_pktmbuf_chain(self.as_raw(), tail.as_raw()) } == 0 {
            let _ = tail.into_raw();
            Ok(())
        } else {
            Err(tail)
        }
    }

    /// Extends the data by `len` bytes at the tail and returns them for writing, or `None` if
    /// the tailroom is too small. They hold whatever the buffer held before (not zeroed).
    #[inline]
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: valid owned mbuf; append returns NULL if there is no room.
        let p = unsafe { dpdk_sys::rte_pktmbuf_append(self.0.as_ptr(), len16) };
        let p = NonNull::new(p.cast::<u8>())?;
        // SAFETY: append reserved `len` bytes at p inside the data room of an mbuf we own
        // exclusively. Data rooms live in memory DPDK mapped from the OS zero-filled and has only
        // written since, so the bytes are initialised.
        Some(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) })
    }
}

/// The first segment's data of `m`, in one call into the shim (start and length together).
///
/// # Safety
/// `m` must be a valid mbuf that stays alive, and unmodified, for `'a`.
#[inline]
unsafe fn first_seg<'a>(m: *const rte_mbuf) -> &'a [u8] {
    let mut len = 0u16;
    // SAFETY: m is valid (the caller's promise); the shim writes len and returns mtod, which points
    // at len initialised bytes of the first segment, alive for 'a.
    unsafe {
        let p = dpdk_sys::rte_pktmbuf_first_seg(m, &mut len);
        std::slice::from_raw_parts(p as *const u8, usize::from(len))
    }
}

/// What the port found of one of a received frame's checksums (DPDK's
/// `RTE_MBUF_F_RX_IP_CKSUM_*` and `RTE_MBUF_F_RX_L4_CKSUM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxChecksum {
    /// Not checked: no offload, or a protocol the port does not check.
    Unknown,
    /// Checked, and wrong.
    Bad,
    /// Checked, and right.
    Good,
    /// Not right in the frame, but the data is intact: a virtual port handed on a segment whose
    /// checksum its sender left to offload.
    Intact,
}

impl RxChecksum {
    fn from_bits(bits: u64, bad: u64, good: u64) -> RxChecksum {
        match (bits & bad != 0, bits & good != 0) {
            (false, false) => RxChecksum::Unknown,
            (true, false) => RxChecksum::Bad,
            (false, true) => RxChecksum::Good,
            (true, true) => RxChecksum::Intact,
        }
    }
}

impl Mbuf {
    /// What the port found of this received frame's IPv4 header checksum and its L4 (TCP, UDP)
    /// checksum.
    #[inline]
    pub fn rx_checksums(&self) -> (RxChecksum, RxChecksum) {
        // SAFETY: valid owned mbuf.
        let f = unsafe { dpdk_sys::rte_mbuf_ol_flags(self.0.as_ptr()) };
        (
            RxChecksum::from_bits(
                f,
                u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_BAD),
                u64::from(dpdk_sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD),
            ),
            RxChecksum::from_bits(
                f,
                u64::from(dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_BAD),
                u64::from(dpdk_sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD),
            ),
        )
    }

    /// Asks the port to fill in this IPv4 frame's checksums on transmit: the IPv4 header's (`ip`,
    /// whose field must then be zero) and the TCP segment's (`tcp`). `l3_len` is the IPv4
    /// header's length; the Ethernet header is 14 bytes. [`Port::tx_burst`] prepares the frame
    /// for the port (the pseudo-header sum some NICs want in the TCP checksum field).
    ///
    /// [`Port::tx_burst`]: super::Port::tx_burst
    #[inline]
    pub fn offload_tx_checksums(&mut self, ip: bool, tcp: bool, l3_len: u16) {
        let mut flags = dpdk_sys::RTE_MBUF_F_TX_IPV4;
        if ip {
            flags |= dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM;
        }
        if tcp {
            flags |= dpdk_sys::RTE_MBUF_F_TX_TCP_CKSUM;
        }
        // SAFETY: valid owned mbuf; this sets its offload flags and header lengths only.
        unsafe { dpdk_sys::rte_mbuf_tx_offload(self.0.as_ptr(), flags, 14, l3_len) }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is not used after this.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Burst size for rx and tx (DPDK's customary 32).
pub const BURST: usize = 32;

/// A fixed-size queue of up to [`BURST`] owned mbufs, filled by `rx_burst` or by pushes and
/// drained by pops or `tx_burst`. Whatever is left in it is freed on drop. No allocation.
pub struct Burst {
    bufs: [*mut rte_mbuf; BURST],
    head: usize,
    tail: usize,
}

// SAFETY: the burst exclusively owns the mbufs between head and tail.
unsafe impl Send for Burst {}

impl Default for Burst {
    fn default() -> Self {
        Burst { bufs: [std::ptr::null_mut(); BURST], head: 0, tail: 0 }
    }
}

impl Burst {
    pub fn new() -> Burst {
        Burst::default()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() == BURST
    }

    /// Takes the oldest mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.head == self.tail {
            return None;
        }
        let m = self.bufs[self.head];
        self.head += 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        // SAFETY: slots between head and tail hold owned, non-null mbufs.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(m)) })
    }

    /// Appends an mbuf; gives it back if the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.tail == BURST {
            self.compact();
            if self.tail == BURST {
                return Err(m);
            }
        }
        self.bufs[self.tail] = m.into_raw();
        self.tail += 1;
        Ok(())
    }

    fn compact(&mut self) {
        if self.head > 0 {
            self.bufs.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Free slots, as a raw array for rx_burst to fill. Only for the port module.
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut rte_mbuf, u16) {
        self.compact();
        let spare = BURST - self.tail;
        // SAFETY: tail <= BURST, so the pointer is in bounds or one past.
        (unsafe { self.bufs.as_mut_ptr().add(self.tail) }, spare as u16)
    }

    /// Records that rx_burst filled `n` slots after tail.
    pub(crate) fn commit(&mut self, n: u16) {
        self.tail += usize::from(n);
        debug_assert!(self.tail <= BURST);
    }

    /// The owned mbufs, as a raw array for tx_burst to take from.
    pub(crate) fn filled_raw(&mut self) -> (*mut *mut rte_mbuf, u16) {
        // SAFETY: head <= tail <= BURST.
        (unsafe { self.bufs.as_mut_ptr().add(self.head) }, self.len() as u16)
    }

    /// Frees the `i`-th owned mbuf and closes the gap (`i < len`).
    pub(crate) fn drop_at(&mut self, i: usize) {
        let at = self.head + i;
        assert!(at < self.tail, "drop_at({i}) of a burst of {}", self.len());
        // SAFETY: the slot holds an owned mbuf; it leaves the burst here, so it is freed once.
        drop(unsafe { Mbuf::from_raw(NonNull::new_unchecked(self.bufs[at])) });
        self.bufs.copy_within(at + 1..self.tail, at);
        self.tail -= 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Records that tx_burst took the first `n` mbufs.
    pub(crate) fn consumed(&mut self, n: u16) {
        self.head += usize::from(n);
        debug_assert!(self.head <= self.tail);
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        let n = self.len();
        if n > 0 {
            // SAFETY: slots between head and tail hold owned mbufs, freed exactly once here.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.bufs.as_mut_ptr().add(self.head), n as u32) };
        }
    }
}
