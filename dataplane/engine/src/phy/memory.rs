//! An in-memory Ethernet link: two [`MemoryDevice`] ends, frames as byte vectors, for
//! deterministic tests of the engine without DPDK. Loss can be injected per direction
//! ([`MemoryDevice::drop_next`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use super::BURST;
use super::{BurstDevice, MAX_FRAME};

type Wire = Rc<RefCell<VecDeque<Vec<u8>>>>;
/// Frame buffers both ends recycle, so a frame costs no allocation once warm.
type Pool = Rc<RefCell<Vec<Vec<u8>>>>;

/// Both ends of an in-memory link.
pub struct MemoryLink {
    pub a: MemoryDevice,
    pub b: MemoryDevice,
}

impl MemoryLink {
    pub fn new() -> Self {
        let ab: Wire = Rc::default();
        let ba: Wire = Rc::default();
        let pool: Pool = Rc::default();
        MemoryLink { a: MemoryDevice::end(ba.clone(), ab.clone(), pool.clone()), b: MemoryDevice::end(ab, ba, pool) }
    }

    /// Both ends with their wires apart: what one end sends waits on its own outbound wire until a
    /// carrier takes it ([`MemoryDevice::take_sent`]) and hands it to the other end
    /// ([`MemoryDevice::inject`]), as [`super::faulty::FaultyLink`] does.
    pub fn apart() -> Self {
        let pool: Pool = Rc::default();
        MemoryLink {
            a: MemoryDevice::end(Rc::default(), Rc::default(), pool.clone()),
            b: MemoryDevice::end(Rc::default(), Rc::default(), pool),
        }
    }
}

impl Default for MemoryLink {
    fn default() -> Self {
        Self::new()
    }
}

/// One end of a [`MemoryLink`].
pub struct MemoryDevice {
    inbound: Wire,
    outbound: Wire,
    staged: VecDeque<Vec<u8>>,
    drop_next: u64,
    /// No room to send: [`phy::Device::transmit`] gives no token ([`MemoryDevice::set_full`]).
    full: bool,
    pool: Pool,
    /// IPv4 and TCP checksums are the port's work (as with a NIC's offloads): smoltcp neither
    /// computes nor verifies them.
    no_checksums: bool,
}

impl MemoryDevice {
    /// One end of a link: it receives from `inbound` and sends on `outbound`.
    fn end(inbound: Wire, outbound: Wire, pool: Pool) -> Self {
        MemoryDevice {
            inbound,
            outbound,
            staged: VecDeque::new(),
            drop_next: 0,
            full: false,
            pool,
            no_checksums: false,
        }
    }

    /// Says the IPv4 and TCP checksums are done elsewhere, as a NIC with checksum offloads does:
    /// smoltcp on this device then neither computes nor verifies them (the in-memory wire loses
    /// nothing). Call it before the engine is made over the device. For measuring what offload
    /// saves (`CKSUM=offload` in the engine bench).
    pub fn offload_checksums(&mut self) {
        self.no_checksums = true;
    }

    /// Drops the next `n` frames this end sends.
    pub fn drop_next(&mut self, n: u64) {
        self.drop_next = n;
    }

    /// While `full`, [`phy::Device::transmit`] gives no token, as a port whose transmit burst is
    /// full: tests of what the engine does (and counts) when a frame it sends of its own cannot
    /// leave. The token that comes with a received frame still sends.
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// Puts a frame on this end's inbound wire, as if the other end had sent it (tests of hostile
    /// input).
    pub fn inject(&mut self, frame: Vec<u8>) {
        self.inbound.borrow_mut().push_back(frame);
    }

    /// Takes the next frame off this end's inbound wire, unseen (tests reorder frames with this and
    /// [`inject`](Self::inject)).
    pub fn take_inbound(&mut self) -> Option<Vec<u8>> {
        self.inbound.borrow_mut().pop_front()
    }

    /// Takes the next frame this end sent that its peer has not received yet (on a link made with
    /// [`MemoryLink::apart`], every frame it sends waits for this).
    pub fn take_sent(&mut self) -> Option<Vec<u8>> {
        self.outbound.borrow_mut().pop_front()
    }

    /// A copy of the next frame waiting on this end's inbound wire, if any.
    pub fn peek_owned(&self) -> Option<Vec<u8>> {
        self.inbound.borrow().front().cloned()
    }

    /// Frames waiting to be received by this end.
    pub fn pending(&self) -> usize {
        self.inbound.borrow().len() + self.staged.len()
    }

    fn send(&mut self, frame: Vec<u8>) {
        if self.drop_next > 0 {
            self.drop_next -= 1;
            self.pool.borrow_mut().push(frame);
            return;
        }
        self.outbound.borrow_mut().push_back(frame);
    }
}

impl BurstDevice for MemoryDevice {
    fn refill(&mut self) -> usize {
        let mut inbound = self.inbound.borrow_mut();
        let n = inbound.len().min(BURST - self.staged.len().min(BURST));
        self.staged.extend(inbound.drain(..n));
        n
    }

    fn flush(&mut self) -> usize {
        0
    }

    fn peek(&mut self) -> Option<&[u8]> {
        self.staged.front().map(Vec::as_slice)
    }

    fn skip(&mut self) {
        if let Some(f) = self.staged.pop_front() {
            self.pool.borrow_mut().push(f);
        }
    }
}

impl phy::Device for MemoryDevice {
    type RxToken<'a> = MemRxToken;
    type TxToken<'a> = MemTxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.staged.pop_front()?;
        Some((MemRxToken(frame, self.pool.clone()), MemTxToken(self)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        (!self.full).then_some(MemTxToken(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        if self.no_checksums {
            caps.checksum.ipv4 = smoltcp::phy::Checksum::None;
            caps.checksum.tcp = smoltcp::phy::Checksum::None;
        }
        caps
    }
}

pub struct MemRxToken(Vec<u8>, Pool);

impl phy::RxToken for MemRxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.0);
        self.1.borrow_mut().push(self.0);
        r
    }
}

pub struct MemTxToken<'a>(&'a mut MemoryDevice);

impl phy::TxToken for MemTxToken<'_> {
    /// A recycled frame buffer keeps its old bytes, as a DPDK mbuf does (mbufs are not zeroed):
    /// only the part beyond the buffer's last length is zeroed, so a writer that leaves a byte
    /// unwritten sends stale data here as it would on a port, and the benchmark does not count a
    /// fill the real device never does.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.0.pool.borrow_mut().pop().unwrap_or_default();
        frame.resize(len, 0);
        let r = f(&mut frame);
        self.0.send(frame);
        r
    }
}
